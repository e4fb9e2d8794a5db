import CampaignDomain
import Foundation
import Hashing

/// The schedule index the scheduler reads, and which segments scheduled or active campaigns use.
///
/// Keys: `r‖tenant‖campaignId` → what the other keys are made of (``Row``, a few bytes: no names or
/// content); `d‖` + sendAt (ms, u64) + `tenant‖campaignId` → empty, for scheduled campaigns (read in
/// time order, so a tick stops at the first entry not yet due); `u‖tenant‖segmentId‖campaignId` →
/// empty, for scheduled and active campaigns.
public struct ScheduleIndex: Projection {
    /// Creates the projection.
    public init() {}
    /// `schedule-index`, the name its tables and `campaign projections` use.
    public var name: String { "schedule-index" }
    /// 2: compact rows (1: a full JSON copy of every campaign).
    public var version: Int { 2 }
    /// Inline: the segment-in-use rule reads it inside the write transaction.
    public var mode: ProjectionMode { .inline }

    static let duePrefix: [UInt8] = [UInt8(ascii: "d"), 0]

    /// The time-index key of an item due at `at`.
    public static func dueKey(_ at: Date, _ tenant: String, _ id: String) -> [UInt8] {
        duePrefix + Key.time(at) + Key.make([tenant, id])
    }

    /// Reads a time index (`d‖time‖tenant‖id`) up to `now`, earliest first.
    public static func due(
        _ reader: ProjectionReader, at now: Date, limit: Int
    ) throws -> [(tenant: String, id: String)] {
        let bound = Key.readU64(Key.time(now))
        var due = [(String, String)]()
        try reader.scan(duePrefix) { key, _ in
            guard key.count > 10, due.count < limit, Key.readU64(key[2..<10]) <= bound else { return false }
            let parts = Key.split(Array(key[10...]))
            if parts.count == 2 { due.append((parts[0], parts[1])) }
            return true
        }
        return due
    }

    /// Campaigns in scheduled or active state that use a segment.
    public static func campaignsUsing(_ reader: ProjectionReader, tenant: String, segmentId: String) throws -> [String]
    {
        try reader.names(under: ["u", tenant, segmentId])
    }

    /// What the schedule of one campaign depends on: its status, send time and segment.
    ///
    /// Stored as status ‖ `0x00` ‖ format (1) ‖ present fields (1 segmentId, 8 sendAt) ‖ sendAt
    /// (signed ms, when present) ‖ segmentId (u32 length, UTF-8, when present).
    struct Row: Equatable {
        var status: CampaignStatus
        var sendAt: Date?
        var segmentId: String?

        init(status: CampaignStatus, sendAt: Date?, segmentId: String?) {
            self.status = status
            self.sendAt = sendAt
            self.segmentId = segmentId
        }

        init(_ state: CampaignState) {
            self.init(status: state.status, sendAt: state.sendAt, segmentId: state.segmentId)
        }

        init?(bytes: [UInt8]) {
            guard let separator = bytes.firstIndex(of: 0),
                let status = CampaignStatus(rawValue: String(decoding: bytes[..<separator], as: UTF8.self))
            else { return nil }
            var row = RowReader(bytes[(separator + 1)...])
            guard row.u8() == 1, let present = row.u8() else { return nil }
            self.status = status
            if present & 8 != 0 {
                guard let time = row.time() else { return nil }
                sendAt = time
            }
            if present & 1 != 0 {
                guard let segment = row.string() else { return nil }
                segmentId = segment
            }
            guard row.isAtEnd else { return nil }
        }

        var bytes: [UInt8] {
            var row = RowWriter(capacity: 32)
            for byte in status.rawValue.utf8 { row.u8(byte) }
            row.u8(0)
            row.u8(1)
            row.u8((segmentId == nil ? 0 : 1) | (sendAt == nil ? 0 : 8))
            if let sendAt { row.time(sendAt) }
            if let segmentId { row.string(segmentId) }
            return row.bytes
        }

        /// A campaign state holding only these fields, for folding the next event: the fields a
        /// schedule depends on evolve from themselves and the event alone.
        func state(id: String) -> CampaignState {
            CampaignState(
                id: id, name: "", channel: "", segmentId: segmentId, content: nil, sendAt: sendAt, status: status,
                createdAt: .distantPast, updatedAt: .distantPast, version: 0)
        }

        /// The index keys of a campaign in this state.
        func keys(_ tenant: String, _ id: String) -> [[UInt8]] {
            var keys = [[UInt8]]()
            if status == .scheduled, let sendAt { keys.append(ScheduleIndex.dueKey(sendAt, tenant, id)) }
            if status == .scheduled || status == .active, let segmentId {
                keys.append(Key.make(["u", tenant, segmentId, id]))
            }
            return keys
        }
    }

    /// The key of a campaign's ``Row``.
    static func rowKey(_ tenant: String, _ id: String) -> [UInt8] { Key.make(["r", tenant, id]) }

    /// Every campaign event type but `campaign.updated`.
    public var eventTypes: Set<String>? {
        Set(CampaignEvent.Kind.allCases.filter { $0 != .updated }.map(\.rawValue))
    }

    /// Folds a campaign event, with the state the writer folded when it has one. Name and content
    /// changes cannot move a campaign in the schedule, so `campaign.updated` is skipped.
    public func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws {
        guard let kind = CampaignEvent.Kind(rawValue: event.envelope.type), kind != .updated else { return }
        let known = event.stateAfter as? CampaignState
        guard let id = known?.id ?? event.payload["campaignId"]?.stringValue else { return }
        let tenant = event.envelope.tenant
        let key = ScheduleIndex.rowKey(tenant, id)
        let before = try table.get(key).flatMap(Row.init(bytes:))
        let after = (known ?? Campaign.evolve(before?.state(id: id), event.record)).map(Row.init)
        guard after != before else { return }
        let (old, new) = (before?.keys(tenant, id) ?? [], after?.keys(tenant, id) ?? [])
        for stale in old where !new.contains(stale) { try table.delete(stale) }
        for fresh in new where !old.contains(fresh) { try table.put(fresh) }
        if let after, after.status != .deleted {
            try table.put(key, after.bytes)
        } else {
            try table.delete(key)
        }
    }
}

extension ScheduleIndex: FoldedRebuild {
    /// Keeps each campaign's ``Row`` as a value while it folds and makes the index keys once.
    public func makeFold() -> any RebuildFold { Fold() }

    /// The rebuild's fold: ``apply(_:to:)``'s evolve of each campaign's row, the rows kept as
    /// values where the event-by-event fold decoded and encoded a row and put and deleted index keys
    /// at every event. A campaign's index keys follow from its last row alone, so they are made once,
    /// at the end.
    final class Fold: RebuildFold {
        /// Each campaign's row (deleted ones have none), by its row key.
        private var campaigns: [ByteKey: (tenant: String, id: String, row: Row)] = [:]

        /// Folds a campaign event as ``apply(_:to:)`` does with no state from the writer.
        func fold(_ event: ProjectedEvent) throws {
            guard let kind = CampaignEvent.Kind(rawValue: event.envelope.type), kind != .updated,
                let id = event.payload["campaignId"]?.stringValue
            else { return }
            let tenant = event.envelope.tenant
            let key = ByteKey(ScheduleIndex.rowKey(tenant, id))
            let after = Campaign.evolve(campaigns[key]?.row.state(id: id), event.record).map(Row.init)
            if let after, after.status != .deleted {
                campaigns[key] = (tenant, id, after)
            } else {
                campaigns[key] = nil
            }
        }

        /// Every campaign's row and index keys, in key order.
        func rows(_: PersonalDataReader) throws -> SortedRows {
            var entries = [(key: [UInt8], value: [UInt8])]()
            entries.reserveCapacity(2 * campaigns.count)
            for (key, campaign) in campaigns {
                entries.append((key.bytes, campaign.row.bytes))
                for index in campaign.row.keys(campaign.tenant, campaign.id) { entries.append((index, [])) }
            }
            campaigns = [:]
            entries.sort { ByteOrder.precedes($0.key, $1.key) }
            var rows = SortedRows(
                reservingBytes: entries.reduce(0) { $0 + $1.key.count + $1.value.count }, rows: entries.count)
            for entry in entries { rows.append(key: entry.key, value: entry.value) }
            return rows
        }
    }
}
