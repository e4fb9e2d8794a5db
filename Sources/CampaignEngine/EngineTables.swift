import CampaignDomain
import CampaignProjections
import EventStore
import Foundation

/// The engine's tables that are not read models (those are projections, rebuilt from the log):
/// - `contact-values` (``PersonalData``): the personal data that events only commit to; written
///   with the contact's events, deleted on erasure.
/// - `publish-rate`: tenant ‖ 0 ‖ platform ‖ 0 ‖ accountId ‖ 0 ‖ window start (s, u64) → attempts
///   (u64), each tenant's publish budget for an account, counted in the transaction that records
///   an attempt. Per tenant, so one tenant can neither spend another's budget nor learn that it
///   uses the same account id; the platform's own 429 stays the authority on the real shared limit.
struct EngineTables: Sendable {
    let personalData: Table
    let publishRate: Table

    init(store: EventStore) throws {
        personalData = try store.table(named: PersonalData.tableName)
        publishRate = try store.table(named: "publish-rate")
    }

    func personalValues(tenant: String, contactId: String, in txn: ReadTransaction) throws -> JSONObject {
        try PersonalData.values(tenant: tenant, contactId: contactId, table: personalData, in: txn)
    }

    func write(_ change: PersonalDataChange, tenant: String, in txn: WriteTransaction) throws {
        try PersonalData.write(change, tenant: tenant, table: personalData, in: txn)
    }

    static func rateKey(tenant: String, platform: String, accountId: String, windowStart: UInt64) -> [UInt8] {
        Key.make([tenant, platform, accountId]) + [0] + Key.u64(windowStart)
    }

    func publishCount(_ key: [UInt8], in txn: ReadTransaction) throws -> UInt64 {
        try txn.value(forKey: key, in: publishRate).map { Key.readU64($0) } ?? 0
    }

    func setPublishCount(_ key: [UInt8], _ count: UInt64, in txn: WriteTransaction) throws {
        try txn.put(Key.u64(count), forKey: key, in: publishRate)
    }
}
