internal import CLMDB

/// Named positions (`checkpoints`: name → u64), used by catch-up projections.
struct Checkpoints: Sendable {
    let table: MDB_dbi

    func position(of name: String, in txn: Txn) throws -> UInt64 {
        try txn.withValue(table, Array(name.utf8)) { $0.count == 8 ? $0.bigEndianUInt64() : 0 } ?? 0
    }

    func set(_ name: String, to position: UInt64, in txn: Txn) throws {
        try txn.put(table, Array(name.utf8), .bigEndian(position))
    }

    /// Deletes a checkpoint; false when there was none.
    func remove(_ name: String, in txn: Txn) throws -> Bool {
        try txn.delete(table, Array(name.utf8))
    }
}
