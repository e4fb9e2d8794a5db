import CampaignDomain
import Foundation

/// The schedule index the scheduler reads, and which segments scheduled or active campaigns use.
///
/// Keys: `r‖tenant‖campaignId` → state; `d‖` + sendAt (ms, u64) + `tenant‖campaignId` → empty,
/// for scheduled campaigns (read in time order, so a tick stops at the first entry not yet due);
/// `u‖tenant‖segmentId‖campaignId` → empty, for scheduled and active campaigns.
public struct ScheduleIndex: Projection {
    /// Creates the projection.
    public init() {}
    /// `schedule-index`.
    public var name: String { "schedule-index" }
    /// 1.
    public var version: Int { 1 }
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
        var campaigns = [String]()
        let prefix = Key.prefix(["u", tenant, segmentId])
        try reader.scan(prefix) { key, _ in
            campaigns.append(String(decoding: key.dropFirst(prefix.count), as: UTF8.self))
            return true
        }
        return campaigns
    }

    /// Folds a campaign event. Name and content changes cannot move a campaign in the schedule,
    /// so `campaign.updated` is skipped (the row keeps the fields the keys are made of).
    public func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws {
        guard let kind = CampaignEvent.Kind(rawValue: event.envelope.type), kind != .updated,
            let id = event.payload["campaignId"]?.stringValue
        else { return }
        let tenant = event.envelope.tenant
        let row = Key.make(["r", tenant, id])
        let before = try table.json(row).flatMap(CampaignState.init(snapshot:))
        let after = Campaign.evolve(before, event.record)
        func keys(_ state: CampaignState?) -> [[UInt8]] {
            guard let state else { return [] }
            var keys = [[UInt8]]()
            if state.status == .scheduled, let sendAt = state.sendAt { keys.append(Self.dueKey(sendAt, tenant, id)) }
            if state.status == .scheduled || state.status == .active, let segment = state.segmentId {
                keys.append(Key.make(["u", tenant, segment, id]))
            }
            return keys
        }
        for key in keys(before) { try table.delete(key) }
        for key in keys(after) { try table.put(key) }
        if let after, after.status != .deleted {
            try table.put(row, json: after.snapshot)
        } else {
            try table.delete(row)
        }
    }
}
