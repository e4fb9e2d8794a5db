internal import CLMDB

/// Unique-value reservations (`unique`: key → owner), for values such as a campaign name that
/// must be unique in a tenant; taken and released in the same transaction as the events.
struct UniqueReservations: Sendable {
    let table: MDB_dbi

    static func validate(_ key: String) throws {
        let count = key.utf8.count
        guard count > 0, count <= 500 else { throw EventStoreError.invalidKey("unique key must be 1–500 bytes") }
    }

    func owner(of key: String, in txn: Txn) throws -> String? {
        try UniqueReservations.validate(key)
        return try txn.withValue(table, Array(key.utf8)) { String(decoding: $0, as: UTF8.self) }
    }

    /// Fails when another owner holds the value; taking one's own value again is fine.
    func check(_ claim: UniqueClaim, in txn: Txn) throws {
        if let owner = try owner(of: claim.key, in: txn), owner != claim.owner {
            throw EventStoreError.uniqueValueTaken(key: claim.key, owner: owner)
        }
    }

    func take(_ claim: UniqueClaim, in txn: Txn) throws {
        try txn.put(table, Array(claim.key.utf8), Array(claim.owner.utf8))
    }

    /// Releases the value only if `claim.owner` holds it.
    func release(_ claim: UniqueClaim, in txn: Txn) throws {
        if try owner(of: claim.key, in: txn) == claim.owner {
            try txn.delete(table, Array(claim.key.utf8))
        }
    }
}
