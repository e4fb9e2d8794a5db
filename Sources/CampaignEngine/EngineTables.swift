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
/// - `post-schedule`: due time (ms) ‖ tenant ‖ 0 ‖ postId → empty, for every post the scheduler
///   must look at (publish time, retry time, or when an attempt without outcome becomes in doubt).
/// - `publish-rate`: platform ‖ 0 ‖ accountId ‖ 0 ‖ window start (s, u64) → attempts (u64), the
///   per-account publish budget, counted in the transaction that records an attempt.
/// - `experiments`: tenant ‖ 0 ‖ experimentId → the experiment's state as JSON (definition and
///   counts), updated with every experiment event; exposures and results read it in O(1).
/// - `experiment-contacts`: tenant ‖ 0 ‖ experimentId ‖ 0 ‖ contactId → variant key, then `\n1`
///   once converted; it makes repeated exposures and conversions count once.
struct EngineTables: Sendable {
    let personalData: Table
    let segmentUsage: Table
    let schedule: Table
    let postSchedule: Table
    let publishRate: Table
    let experiments: Table
    let experimentContacts: Table

    init(store: EventStore) throws {
        personalData = try store.table(named: "contact-values")
        segmentUsage = try store.table(named: "segment-usage")
        schedule = try store.table(named: "campaign-schedule")
        postSchedule = try store.table(named: "post-schedule")
        publishRate = try store.table(named: "publish-rate")
        experiments = try store.table(named: "experiments")
        experimentContacts = try store.table(named: "experiment-contacts")
    }

    static func timeKey(_ at: Date, _ tenant: String, _ id: String) -> [UInt8] {
        var key = [UInt8]()
        let millis = UInt64(max(0, (at.timeIntervalSince1970 * 1000).rounded()))
        for shift in stride(from: 56, through: 0, by: -8) { key.append(UInt8(truncatingIfNeeded: millis >> UInt64(shift))) }
        return key + Array(tenant.utf8) + [0] + Array(id.utf8)
    }

    /// Entries of a time index due at or before `now`, earliest first.
    func due(in table: Table, at now: Date, limit: Int, in txn: ReadTransaction) throws -> [(tenant: String, id: String)] {
        let bound = UInt64(max(0, (now.timeIntervalSince1970 * 1000).rounded()))
        var due = [(String, String)]()
        try txn.forEach(in: table) { key, _ in
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

    /// Moves a post's entry in the time index from its old due time to its new one.
    func recordPostChange(tenant: String, before: PostState?, after: PostState?, in txn: WriteTransaction) throws {
        let old = Post.nextDue(before).map { EngineTables.timeKey($0, tenant, before!.id) }
        let new = Post.nextDue(after).map { EngineTables.timeKey($0, tenant, after!.id) }
        guard old != new else { return }
        if let old { try txn.delete(key: old, in: postSchedule) }
        if let new { try txn.put([], forKey: new, in: postSchedule) }
    }

    static func rateKey(platform: String, accountId: String, windowStart: UInt64) -> [UInt8] {
        var key = Array(platform.utf8) + [0] + Array(accountId.utf8) + [0]
        for shift in stride(from: 56, through: 0, by: -8) { key.append(UInt8(truncatingIfNeeded: windowStart >> UInt64(shift))) }
        return key
    }

    func publishCount(_ key: [UInt8], in txn: ReadTransaction) throws -> UInt64 {
        guard let bytes = try txn.value(forKey: key, in: publishRate), bytes.count == 8 else { return 0 }
        return bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    func setPublishCount(_ key: [UInt8], _ count: UInt64, in txn: WriteTransaction) throws {
        try txn.put((0..<8).map { UInt8(truncatingIfNeeded: count >> UInt64(56 - $0 * 8)) }, forKey: key, in: publishRate)
    }

    static func experimentKey(_ tenant: String, _ experimentId: String) -> [UInt8] {
        Array(tenant.utf8) + [0] + Array(experimentId.utf8)
    }

    static func experimentContactKey(_ tenant: String, _ experimentId: String, _ contactId: String) -> [UInt8] {
        experimentKey(tenant, experimentId) + [0] + Array(contactId.utf8)
    }

    func experiment(tenant: String, id: String, in txn: ReadTransaction) throws -> ExperimentState? {
        guard let bytes = try txn.value(forKey: EngineTables.experimentKey(tenant, id), in: experiments) else { return nil }
        return (try? JSON.parse(bytes)).flatMap(ExperimentState.init(json:))
    }

    /// Folds an experiment's new events into its stored read model.
    func recordExperimentEvents(tenant: String, id: String, _ events: [RecordedEvent], in txn: WriteTransaction) throws {
        var state = try experiment(tenant: tenant, id: id, in: txn)
        for event in events {
            guard let payload = try? JSON.parse(event.payload) else { continue }
            state = Experiment.evolve(state, EventRecord(type: event.type, payload: payload, occurredAt: event.occurredAt, version: event.streamVersion))
        }
        if let state { try txn.put(state.json.bytes, forKey: EngineTables.experimentKey(tenant, id), in: experiments) }
    }

    /// The variant a contact was exposed to, and whether it converted.
    func experimentContact(tenant: String, experimentId: String, contactId: String, in txn: ReadTransaction) throws -> (variant: String, converted: Bool)? {
        guard let bytes = try txn.value(forKey: EngineTables.experimentContactKey(tenant, experimentId, contactId), in: experimentContacts) else { return nil }
        let parts = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        return (String(parts.first ?? ""), parts.count > 1)
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

    /// Campaigns whose send time is at or before `now`, earliest first, at most `limit`.
    func dueCampaigns(at now: Date, limit: Int, in txn: ReadTransaction) throws -> [(tenant: String, campaignId: String)] {
        try due(in: schedule, at: now, limit: limit, in: txn).map { ($0.tenant, $0.id) }
    }

    /// Keeps the usage and schedule tables in step with a campaign's change from `before` to `after`.
    func recordCampaignChange(tenant: String, before: CampaignState?, after: CampaignState?, in txn: WriteTransaction) throws {
        func usageKey(_ state: CampaignState?) -> [UInt8]? {
            guard let state, state.status == .scheduled || state.status == .active, let segmentId = state.segmentId else { return nil }
            return EngineTables.usagePrefix(tenant, segmentId) + Array(state.id.utf8)
        }
        func scheduleKey(_ state: CampaignState?) -> [UInt8]? {
            guard let state, state.status == .scheduled, let sendAt = state.sendAt else { return nil }
            return EngineTables.timeKey(sendAt, tenant, state.id)
        }
        for (old, new, table) in [(usageKey(before), usageKey(after), segmentUsage), (scheduleKey(before), scheduleKey(after), schedule)]
        where old != new {
            if let old { try txn.delete(key: old, in: table) }
            if let new { try txn.put([], forKey: new, in: table) }
        }
    }
}
