import CampaignDomain
import EventStore
import Foundation

/// Tables the engine keeps beside the log, each written in the same transaction as the events
/// that change it:
/// - `contact-values`: tenant ‖ 0 ‖ contactId → `{"salt", "values"}`, the personal data that
///   events only commit to; erasure deletes the entry.
/// - `segment-usage`: tenant ‖ 0 ‖ segmentId ‖ 0 ‖ campaignId → empty, for every scheduled or
///   active campaign; a segment with entries may not be updated or archived.
/// - `campaign-schedule`: sendAt (ms, u64) ‖ tenant ‖ 0 ‖ campaignId → empty, for every scheduled
///   campaign; the scheduler reads it in time order, so a tick costs the same however many
///   campaigns wait.
struct EngineTables: Sendable {
    let personalData: Table
    let segmentUsage: Table
    let schedule: Table

    init(store: EventStore) throws {
        personalData = try store.table(named: "contact-values")
        segmentUsage = try store.table(named: "segment-usage")
        schedule = try store.table(named: "campaign-schedule")
    }

    // MARK: Personal data

    static func personalKey(_ tenant: String, _ contactId: String) -> [UInt8] {
        Array(tenant.utf8) + [0] + Array(contactId.utf8)
    }

    func personalValues(tenant: String, contactId: String, in txn: ReadTransaction) throws -> [String: JSON] {
        guard let bytes = try txn.value(forKey: EngineTables.personalKey(tenant, contactId), in: personalData),
              let stored = try? JSON.parse(bytes) else { return [:] }
        return stored["values"]?.objectValue ?? [:]
    }

    func write(_ change: PersonalDataChange, tenant: String, in txn: WriteTransaction) throws {
        let key = EngineTables.personalKey(tenant, change.contactId)
        if let values = change.values {
            try txn.put(JSON.object(["salt": .string(change.salt ?? ""), "values": .object(values)]).bytes, forKey: key, in: personalData)
        } else {
            try txn.delete(key: key, in: personalData)
        }
    }

    // MARK: Segment usage

    static func usagePrefix(_ tenant: String, _ segmentId: String) -> [UInt8] {
        Array(tenant.utf8) + [0] + Array(segmentId.utf8) + [0]
    }

    /// Campaigns in scheduled or active state that use the segment.
    func campaignsUsing(tenant: String, segmentId: String, in txn: ReadTransaction) throws -> [String] {
        let prefix = EngineTables.usagePrefix(tenant, segmentId)
        var campaigns = [String]()
        try txn.forEach(in: segmentUsage, from: prefix) { key, _ in
            guard key.starts(with: prefix) else { return false }
            campaigns.append(String(decoding: key.dropFirst(prefix.count), as: UTF8.self))
            return true
        }
        return campaigns
    }

    // MARK: Schedule

    static func scheduleKey(_ sendAt: Date, _ tenant: String, _ campaignId: String) -> [UInt8] {
        var key = [UInt8]()
        let millis = UInt64(max(0, (sendAt.timeIntervalSince1970 * 1000).rounded()))
        for shift in stride(from: 56, through: 0, by: -8) { key.append(UInt8(truncatingIfNeeded: millis >> UInt64(shift))) }
        return key + Array(tenant.utf8) + [0] + Array(campaignId.utf8)
    }

    /// Campaigns whose send time is at or before `now`, earliest first, at most `limit`.
    func dueCampaigns(at now: Date, limit: Int, in txn: ReadTransaction) throws -> [(tenant: String, campaignId: String)] {
        let bound = UInt64(max(0, (now.timeIntervalSince1970 * 1000).rounded()))
        var due = [(String, String)]()
        try txn.forEach(in: schedule) { key, _ in
            guard key.count > 8, due.count < limit else { return false }
            let millis = key.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            guard millis <= bound else { return false }
            let rest = key.dropFirst(8)
            guard let separator = rest.firstIndex(of: 0) else { return true }
            due.append((String(decoding: rest[rest.startIndex..<separator], as: UTF8.self),
                        String(decoding: rest[(separator + 1)...], as: UTF8.self)))
            return true
        }
        return due
    }

    /// Keeps the usage and schedule tables in step with a campaign's change from `before` to `after`.
    func recordCampaignChange(tenant: String, before: CampaignState?, after: CampaignState?, in txn: WriteTransaction) throws {
        func usageKey(_ state: CampaignState?) -> [UInt8]? {
            guard let state, state.status == .scheduled || state.status == .active, let segmentId = state.segmentId else { return nil }
            return EngineTables.usagePrefix(tenant, segmentId) + Array(state.id.utf8)
        }
        func scheduleKey(_ state: CampaignState?) -> [UInt8]? {
            guard let state, state.status == .scheduled, let sendAt = state.sendAt else { return nil }
            return EngineTables.scheduleKey(sendAt, tenant, state.id)
        }
        for (old, new, table) in [(usageKey(before), usageKey(after), segmentUsage), (scheduleKey(before), scheduleKey(after), schedule)]
        where old != new {
            if let old { try txn.delete(key: old, in: table) }
            if let new { try txn.put([], forKey: new, in: table) }
        }
    }
}
