import CampaignDomain
import Foundation
import Hashing

/// The campaign board: every live campaign of a tenant by status, with counts.
///
/// Keys: `r‖tenant‖campaignId` → the campaign's status ‖ `0x00` ‖ its state as a typed row
/// (``encode(_:)``); `s‖tenant‖status‖campaignId` → empty; `n‖tenant‖status` → count. Deleted
/// campaigns leave the board. The status leads the row so an event whose state the engine already
/// folded moves the campaign between statuses without reading the stored state.
public struct CampaignBoard: Projection {
    /// Creates the projection.
    public init() {}
    /// `campaign-board`, the name its tables and `campaign projections` use.
    public var name: String { "campaign-board" }
    /// 3: typed rows (2: rows led by the status, then snapshot JSON).
    public var version: Int { 3 }
    /// Inline: a list right after a command shows it.
    public var mode: ProjectionMode { .inline }

    /// The key of a campaign's row.
    public static func row(_ tenant: String, _ id: String) -> [UInt8] { Key.make(["r", tenant, id]) }

    /// A campaign's state from its row, or nil.
    public static func state(_ row: [UInt8]) -> CampaignState? {
        guard let separator = row.firstIndex(of: 0),
            let status = CampaignStatus(rawValue: String(decoding: row[..<separator], as: UTF8.self))
        else { return nil }
        return decode(row[(separator + 1)...], status: status)
    }

    /// The typed form of a campaign's state, after the status and its `0x00`:
    ///
    /// ```
    /// 1   row format (1)
    /// 8   stream version
    /// 8   createdAt, 8 updatedAt: signed milliseconds since 1970
    /// 1   present fields: 1 segmentId, 2 content, 4 content subject, 8 sendAt
    /// 8   sendAt (when present)
    /// …   strings (u32 length, UTF-8): id, name, channel, then segmentId, subject, body when present
    /// ```
    public static func encode(_ state: CampaignState) -> [UInt8] {
        var row = RowWriter(capacity: capacity(state))
        write(state, into: &row)
        return row.bytes
    }

    /// A campaign's stored row: its status, `0x00`, then ``encode(_:)``, made in one buffer.
    public static func storedRow(_ state: CampaignState, status: String) -> [UInt8] {
        var row = RowWriter(capacity: status.utf8.count + 1 + capacity(state))
        row.unframed(status)
        row.u8(0)
        write(state, into: &row)
        return row.bytes
    }

    private static func capacity(_ state: CampaignState) -> Int {
        48 + state.id.utf8.count + state.name.utf8.count + (state.content?.body.utf8.count ?? 0)
    }

    private static func write(_ state: CampaignState, into row: inout RowWriter) {
        row.u8(rowFormat)
        row.u64(state.version)
        row.time(state.createdAt)
        row.time(state.updatedAt)
        var present: UInt8 = 0
        if state.segmentId != nil { present |= 1 }
        if state.content != nil { present |= 2 }
        if state.content?.subject != nil { present |= 4 }
        if state.sendAt != nil { present |= 8 }
        row.u8(present)
        if let sendAt = state.sendAt { row.time(sendAt) }
        row.string(state.id)
        row.string(state.name)
        row.string(state.channel)
        if let segmentId = state.segmentId { row.string(segmentId) }
        if let subject = state.content?.subject { row.string(subject) }
        if let body = state.content?.body { row.string(body) }
    }

    /// Reads back ``encode(_:)`` with the status the row leads with; nil for anything else.
    static func decode(_ bytes: ArraySlice<UInt8>, status: CampaignStatus) -> CampaignState? {
        var row = RowReader(bytes)
        guard row.u8() == rowFormat, let version = row.u64(), let createdAt = row.time(),
            let updatedAt = row.time(), let present = row.u8()
        else { return nil }
        var sendAt: Date?
        if present & 8 != 0 {
            guard let time = row.time() else { return nil }
            sendAt = time
        }
        guard let id = row.string(), let name = row.string(), let channel = row.string() else { return nil }
        var segmentId: String?
        var subject: String?
        var content: Content?
        if present & 1 != 0 {
            guard let value = row.string() else { return nil }
            segmentId = value
        }
        if present & 4 != 0 {
            guard let value = row.string() else { return nil }
            subject = value
        }
        if present & 2 != 0 {
            guard let body = row.string() else { return nil }
            content = Content(subject: subject, body: body)
        }
        guard row.isAtEnd else { return nil }
        return CampaignState(
            id: id, name: name, channel: channel, segmentId: segmentId, content: content, sendAt: sendAt,
            status: status, createdAt: createdAt, updatedAt: updatedAt, version: version)
    }

    static let rowFormat: UInt8 = 1

    /// Every campaign event type.
    public var eventTypes: Set<String>? { Set(CampaignEvent.Kind.allCases.map(\.rawValue)) }

    /// Folds a campaign event: with the state the writer folded when it has one, else by folding
    /// the stored row.
    public func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws {
        // A state the writer folded is a campaign's: only another event's type need be checked.
        let known = event.stateAfter as? CampaignState
        guard known != nil || CampaignEvent.Kind(rawValue: event.envelope.type) != nil else { return }
        let tenant = event.envelope.tenant
        guard let id = known?.id ?? event.payload["campaignId"]?.stringValue else { return }
        let rowKey = Self.row(tenant, id)
        let row = try table.get(rowKey)
        let beforeStatus = row.flatMap { row in
            row.firstIndex(of: 0).map { String(decoding: row[..<$0], as: UTF8.self) }
        }
        let after = known ?? Campaign.evolve(row.flatMap(Self.state), event.record)
        let afterStatus = after.flatMap { $0.status == .deleted ? nil : $0.status.rawValue }
        if beforeStatus != afterStatus {
            if let beforeStatus {
                try table.delete(Key.make(["s", tenant, beforeStatus, id]))
                try table.add(-1, to: Key.make(["n", tenant, beforeStatus]))
            }
            if let afterStatus {
                try table.put(Key.make(["s", tenant, afterStatus, id]))
                try table.add(1, to: Key.make(["n", tenant, afterStatus]))
            }
        }
        if let after, let afterStatus {
            try table.put(rowKey, Self.storedRow(after, status: afterStatus))
        } else {
            try table.delete(rowKey)
        }
    }
}

extension CampaignBoard: FoldedRebuild {
    /// Keeps each campaign's state decoded while it folds, and makes the rows once at the end.
    public func makeFold() -> any RebuildFold { Fold() }

    /// The rebuild's fold: the same `evolve` as ``apply(_:to:)``, on a state kept as a value instead
    /// of decoded from its row and encoded back on every event (a row reads back exactly as it was
    /// written). A deleted campaign leaves, as its row does, so a later event folds from nothing as
    /// `apply` would; the status keys and counts follow from the final states.
    final class Fold: RebuildFold {
        private var campaigns: [ByteKey: (tenant: String, id: String, state: CampaignState)] = [:]

        /// Folds a campaign event.
        func fold(_ event: ProjectedEvent) throws {
            guard CampaignEvent.Kind(rawValue: event.envelope.type) != nil,
                let id = event.payload["campaignId"]?.stringValue
            else { return }
            let tenant = event.envelope.tenant
            let key = ByteKey(CampaignBoard.row(tenant, id))
            if let after = Campaign.evolve(campaigns[key]?.state, event.record), after.status != .deleted {
                campaigns[key] = (tenant, id, after)
            } else {
                campaigns[key] = nil
            }
        }

        /// Every live campaign's row and status key, and each status's count, in key order.
        func rows(_: PersonalDataReader) throws -> SortedRows {
            let rows = MemoryRows()
            var counts: [ByteKey: UInt64] = [:]
            for (key, campaign) in campaigns {
                let status = campaign.state.status.rawValue
                rows.values[key] = CampaignBoard.storedRow(campaign.state, status: status)
                rows.values[ByteKey(Key.make(["s", campaign.tenant, status, campaign.id]))] = []
                counts[ByteKey(Key.make(["n", campaign.tenant, status])), default: 0] += 1
            }
            campaigns = [:]
            for (key, count) in counts { rows.values[key] = Key.u64(count) }
            return rows.takeSorted()
        }
    }
}
