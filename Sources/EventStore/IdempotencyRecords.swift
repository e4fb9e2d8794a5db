internal import CLMDB

/// Idempotency records (`idempotency`: key → 32-byte request fingerprint ‖ stored result),
/// written in the same transaction as the events they answer for.
struct IdempotencyRecords: Sendable {
    let table: MDB_dbi

    enum Lookup {
        case unseen
        case replay([UInt8])
    }

    /// The stored result for `key` if the fingerprint matches; throws when it does not.
    func lookup(_ key: String, fingerprint: [UInt8], in txn: Txn) throws -> Lookup {
        let stored: Lookup? = try txn.withValue(table, Array(key.utf8)) { value in
            guard value.count >= 32, value.prefix(32).elementsEqual(fingerprint) else {
                throw EventStoreError.idempotencyKeyReused(key: key)
            }
            return .replay(Array(value.dropFirst(32)))
        }
        return stored ?? .unseen
    }

    func record(_ key: String, fingerprint: [UInt8], result: [UInt8], in txn: Txn) throws {
        try txn.put(table, Array(key.utf8), fingerprint + result)
    }
}
