internal import CLMDB
import Foundation

/// Idempotency records (`idempotency`: key → 32-byte request fingerprint ‖ `0xFF` ‖ the time it
/// was recorded, milliseconds since 1970 as a big-endian u64 ‖ stored result), written in the
/// same transaction as the events they answer for. Records written before times were kept have
/// no `0xFF` and time after the fingerprint (a stored result is JSON, which never starts with
/// that byte); ``prune(before:stamp:from:limit:in:)`` stamps them when it first meets them.
struct IdempotencyRecords: Sendable {
    let table: MDB_dbi

    enum Lookup {
        case unseen
        case replay([UInt8])
    }

    /// The byte after the fingerprint that says a time follows.
    static let timed: UInt8 = 0xFF
    /// Fingerprint, the marker and the time: where a timed record's result starts.
    static let timedHeader = 32 + 1 + 8

    /// The stored result for `key` if the fingerprint matches; throws when it does not.
    func lookup(_ key: String, fingerprint: [UInt8], in txn: Txn) throws -> Lookup {
        let stored: Lookup? = try txn.withValue(table, Array(key.utf8)) { value in
            guard value.count >= 32, value.prefix(32).elementsEqual(fingerprint) else {
                throw EventStoreError.idempotencyKeyReused(key: key)
            }
            return .replay(Array(value.dropFirst(Self.resultStart(value))))
        }
        return stored ?? .unseen
    }

    func record(_ key: String, fingerprint: [UInt8], at time: Date, result: [UInt8], in txn: Txn) throws {
        try txn.put(table, Array(key.utf8), Self.timedValue(fingerprint: fingerprint, at: time, result: result))
    }

    /// A timed record's stored value: fingerprint ‖ `0xFF` ‖ milliseconds since 1970 ‖ result.
    static func timedValue(
        fingerprint: some Collection<UInt8>, at time: Date, result: some Collection<UInt8>
    )
        -> [UInt8]
    {
        var value = [UInt8]()
        value.reserveCapacity(timedHeader + result.count)
        value += fingerprint
        value.append(timed)
        value.appendBigEndian(Int64((time.timeIntervalSince1970 * 1_000).rounded()))
        value += result
        return value
    }

    /// Where the result starts in a stored value: after the time of a timed record, else right
    /// after the fingerprint.
    static func resultStart(_ value: UnsafeRawBufferPointer) -> Int {
        value.count >= timedHeader && value[32] == timed ? timedHeader : 32
    }

    /// The time a timed record was recorded; nil for a record of before times were kept.
    static func recordedAt(_ value: UnsafeRawBufferPointer) -> Date? {
        guard resultStart(value) == timedHeader else { return nil }
        let millis = Int64(bitPattern: value.bigEndianUInt64(at: 33))
        return Date(timeIntervalSince1970: Double(millis) / 1_000)
    }

    /// Deletes up to `limit` records recorded before `cutoff`, in key order from `start` (nil: from
    /// the first), and stamps each untimed record it meets with `stamp`, so that it expires a
    /// retention after that. Returns how many it deleted and stamped, and the key to start from
    /// next (nil: it reached the end).
    func prune(
        before cutoff: Date, stamp: Date, from start: [UInt8]?, limit: Int, in txn: Txn
    ) throws -> (deleted: Int, stamped: Int, next: [UInt8]?) {
        var expired = [[UInt8]]()
        var untimed = [([UInt8], [UInt8])]()
        var looked = 0
        var next: [UInt8]?
        try txn.withCursor(table) { cursor in
            var entry = try start.map { try cursor.seek(atLeast: $0) } ?? cursor.first()
            while let (key, value) = entry {
                if looked == limit {
                    next = Array(key)
                    return
                }
                looked += 1
                if let time = Self.recordedAt(value) {
                    if time < cutoff { expired.append(Array(key)) }
                } else if value.count >= 32 {
                    let stamped = Self.timedValue(fingerprint: value.prefix(32), at: stamp, result: value.dropFirst(32))
                    untimed.append((Array(key), stamped))
                }
                entry = try cursor.next()
            }
        }
        for key in expired { _ = try txn.delete(table, key) }
        for (key, value) in untimed { _ = try txn.put(table, key, value) }
        return (expired.count, untimed.count, next)
    }
}
