internal import CLMDB
import Foundation

/// One LMDB transaction. Lives only inside an `Environment.read` or `write` closure; the bytes it
/// hands out point into the map and are valid only until that closure returns (STYLE.md 6), so
/// every public accessor copies them.
final class Txn {
    let pointer: OpaquePointer
    let writable: Bool

    init(_ pointer: OpaquePointer, writable: Bool) {
        self.pointer = pointer
        self.writable = writable
    }

    /// Calls `body` with the stored value for `key`, or returns nil when there is none.
    func withValue<T>(_ dbi: MDB_dbi, _ key: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T? {
        // No stored key is empty or longer than LMDB allows (LMDB calls asking for one misuse).
        guard Txn.isStorable(key) else { return nil }
        return try key.withUnsafeBytes { keyBytes in
            var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            var v = MDB_val()
            let code = mdb_get(pointer, dbi, &k, &v)
            if code == MDB_NOTFOUND { return nil }
            try LMDB.check(code, "mdb_get")
            return try body(UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
        }
    }

    /// Whether `dbi` may be used in this transaction: a table opened after the transaction began
    /// (by another thread, or inside a read's closure) is not, and LMDB calls that misuse.
    func knows(_ dbi: MDB_dbi) -> Bool {
        var flags: UInt32 = 0
        return mdb_dbi_flags(pointer, dbi, &flags) == MDB_SUCCESS
    }

    /// Whether LMDB can store `key`: 1 to 511 bytes.
    static func isStorable(_ key: [UInt8]) -> Bool { !key.isEmpty && key.count <= Cursor.maximumKeySize }

    func get(_ dbi: MDB_dbi, _ key: [UInt8]) throws -> [UInt8]? {
        try withValue(dbi, key) { Array($0) }
    }

    /// Stores `value` under `key`. Returns false instead of throwing for `MDB_KEYEXIST` when the
    /// flags include `MDB_NOOVERWRITE`; throws ``MapFullSignal`` when the map is full.
    @discardableResult
    func put(_ dbi: MDB_dbi, _ key: [UInt8], _ value: [UInt8], flags: UInt32 = 0) throws -> Bool {
        try value.withUnsafeBytes { valueBytes in
            try put(dbi, key, valueBytes, flags: flags)
        }
    }

    @discardableResult
    func put(_ dbi: MDB_dbi, _ key: [UInt8], _ value: UnsafeRawBufferPointer, flags: UInt32 = 0) throws -> Bool {
        guard Txn.isStorable(key) else {
            throw EventStoreError.invalidKey(
                "a key must be 1–\(Cursor.maximumKeySize) bytes (this one is \(key.count))")
        }
        return try key.withUnsafeBytes { try put(dbi, $0, value, flags: flags) }
    }

    /// Stores `value` under `key` (which must be storable), as the array form does, from bytes
    /// the caller already holds.
    @discardableResult
    func put(
        _ dbi: MDB_dbi, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, flags: UInt32 = 0
    ) throws -> Bool {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val(mv_size: value.count, mv_data: UnsafeMutableRawPointer(mutating: value.baseAddress))
        let code = mdb_put(pointer, dbi, &k, &v, flags)
        if code == MDB_KEYEXIST { return false }
        if code == MDB_MAP_FULL { throw MapFullSignal() }
        try LMDB.check(code, "mdb_put")
        return true
    }

    /// Stores the u64 `value` under the u64 `key`, both big-endian, from the stack (the array forms
    /// allocate two arrays a put).
    @discardableResult
    func put(_ dbi: MDB_dbi, bigEndian key: UInt64, _ value: UInt64, flags: UInt32 = 0) throws -> Bool {
        try withUnsafeBytes(of: key.bigEndian) { key in
            try withUnsafeBytes(of: value.bigEndian) { try put(dbi, key, $0, flags: flags) }
        }
    }

    /// Makes room for a value of `count` bytes under `key` (`MDB_RESERVE`) and returns it, to be
    /// filled before this transaction's next write: the value is written once, in its page, instead
    /// of built elsewhere and copied in. Returns nil for `MDB_KEYEXIST` under `MDB_NOOVERWRITE`;
    /// throws ``MapFullSignal`` when the map is full.
    func reserve(
        _ dbi: MDB_dbi, _ key: UnsafeRawBufferPointer, count: Int, flags: UInt32 = 0
    ) throws -> UnsafeMutableRawBufferPointer? {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val(mv_size: count, mv_data: nil)
        let code = mdb_put(pointer, dbi, &k, &v, flags | UInt32(MDB_RESERVE))
        if code == MDB_KEYEXIST { return nil }
        if code == MDB_MAP_FULL { throw MapFullSignal() }
        try LMDB.check(code, "mdb_put")
        return UnsafeMutableRawBufferPointer(start: v.mv_data, count: count)
    }

    @discardableResult
    func delete(_ dbi: MDB_dbi, _ key: [UInt8]) throws -> Bool {
        guard Txn.isStorable(key) else { return false }
        return try key.withUnsafeBytes { keyBytes in
            var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            let code = mdb_del(pointer, dbi, &k, nil)
            if code == MDB_NOTFOUND { return false }
            if code == MDB_MAP_FULL { throw MapFullSignal() }
            try LMDB.check(code, "mdb_del")
            return true
        }
    }

    /// Empties a table, keeping its handle.
    func clear(_ dbi: MDB_dbi) throws {
        let code = mdb_drop(pointer, dbi, 0)
        if code == MDB_MAP_FULL { throw MapFullSignal() }
        try LMDB.check(code, "mdb_drop")
    }

    /// Entries and bytes of pages (branch, leaf and overflow) of a table.
    func usage(_ dbi: MDB_dbi) throws -> (entries: Int, bytes: Int) {
        var stat = MDB_stat()
        try LMDB.check(mdb_stat(pointer, dbi, &stat), "mdb_stat")
        let pages = stat.ms_branch_pages + stat.ms_leaf_pages + stat.ms_overflow_pages
        return (stat.ms_entries, pages * Int(stat.ms_psize))
    }

    func entryCount(_ dbi: MDB_dbi) throws -> Int {
        var stat = MDB_stat()
        try LMDB.check(mdb_stat(pointer, dbi, &stat), "mdb_stat")
        return stat.ms_entries
    }

    /// Opens a cursor for the length of `body`.
    func withCursor<T>(_ dbi: MDB_dbi, _ body: (Cursor) throws -> T) throws -> T {
        var cursor: OpaquePointer?
        try LMDB.check(mdb_cursor_open(pointer, dbi, &cursor), "mdb_cursor_open")
        defer { mdb_cursor_close(cursor) }
        return try body(Cursor(cursor!))
    }
}

/// A positioned LMDB cursor; the key and value it yields are views into the map.
struct Cursor {
    let pointer: OpaquePointer

    typealias Entry = (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)

    init(_ pointer: OpaquePointer) { self.pointer = pointer }

    private func move(_ op: MDB_cursor_op, key: [UInt8]? = nil) throws -> Entry? {
        var k = MDB_val()
        var v = MDB_val()
        let code: Int32
        if let key {
            code = key.withUnsafeBytes { keyBytes in
                k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
                return mdb_cursor_get(pointer, &k, &v, op)
            }
        } else {
            code = mdb_cursor_get(pointer, &k, &v, op)
        }
        if code == MDB_NOTFOUND { return nil }
        try LMDB.check(code, "mdb_cursor_get")
        return (
            UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size),
            UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
        )
    }

    func first() throws -> Entry? { try move(MDB_FIRST) }
    func last() throws -> Entry? { try move(MDB_LAST) }
    func next() throws -> Entry? { try move(MDB_NEXT) }
    func previous() throws -> Entry? { try move(MDB_PREV) }
    /// The first entry whose key is greater than or equal to `key`. Any key may be asked for:
    /// the empty key is before every key, and a key longer than LMDB's 511 bytes is sought by its
    /// first 511 (a stored key equal to those is less than it, so it is skipped).
    func seek(atLeast key: [UInt8]) throws -> Entry? {
        if key.isEmpty { return try first() }
        guard key.count > Cursor.maximumKeySize else { return try move(MDB_SET_RANGE, key: key) }
        let head = Array(key.prefix(Cursor.maximumKeySize))
        guard let entry = try move(MDB_SET_RANGE, key: head) else { return nil }
        return entry.key.elementsEqual(head) ? try next() : entry
    }

    /// LMDB's largest key (its default build).
    static let maximumKeySize = 511

    /// The last entry whose key is less than or equal to `key`.
    func seek(atMost key: [UInt8]) throws -> Entry? {
        if let entry = try seek(atLeast: key) {
            if entry.key.elementsEqual(key) { return entry }
            return try previous()
        }
        return try last()
    }
}

/// A named key-value table inside the store, for modules above `EventStore` (projections,
/// snapshots, personal data) that must write in the same transaction as the events.
public struct Table: Hashable, Sendable {
    /// The table's name in the environment.
    public let name: String
    let dbi: UInt32
    /// The ``Environment/serial`` of the store that opened it.
    let store: UInt64
}

/// A read-only view of the store for the length of a closure. Bytes it returns are copies.
public class ReadTransaction {
    let txn: Txn
    let store: EventStore

    init(txn: Txn, store: EventStore) {
        self.txn = txn
        self.store = store
    }

    /// The handle of `table` in this transaction.
    /// - Throws: ``EventStoreError/tableUnavailable(name:reason:)`` for a table of another store, or
    ///   one opened after this transaction began (open tables before reading or writing them).
    func dbi(_ table: Table) throws -> UInt32 {
        guard table.store == store.environment.serial else {
            throw EventStoreError.tableUnavailable(name: table.name, reason: "it was opened by another store")
        }
        guard txn.knows(table.dbi) else {
            throw EventStoreError.tableUnavailable(
                name: table.name, reason: "it was opened after this transaction began (open tables first)")
        }
        return table.dbi
    }

    /// The value stored under `key` in `table`, or nil.
    public func value(forKey key: [UInt8], in table: Table) throws -> [UInt8]? {
        try txn.get(try dbi(table), key)
    }

    /// Visits the entries of `table` in key order from the first key ≥ `start` (or from the end
    /// backwards when `reverse`, starting at the last key ≤ `start`), while `body` returns true.
    public func forEach(
        in table: Table,
        from start: [UInt8]? = nil,
        reverse: Bool = false,
        _ body: (_ key: [UInt8], _ value: [UInt8]) throws -> Bool
    ) throws {
        try txn.withCursor(try dbi(table)) { cursor in
            var entry: Cursor.Entry?
            switch (start, reverse) {
            case (nil, false): entry = try cursor.first()
            case (nil, true): entry = try cursor.last()
            case let (key?, false): entry = try cursor.seek(atLeast: key)
            case let (key?, true): entry = try cursor.seek(atMost: key)
            }
            while let current = entry {
                guard try body(Array(current.key), Array(current.value)) else { return }
                entry = reverse ? try cursor.previous() : try cursor.next()
            }
        }
    }

    /// Visits the entries of `table` whose keys begin with `prefix`, in key order (from the first
    /// key at or after `prefix ‖ start` when given), while `body` returns true, lending each key
    /// (without the prefix) and value in place: the bytes are valid only during the call, and no
    /// array is made for them.
    public func forEachEntry(
        in table: Table, withPrefix prefix: [UInt8], from start: [UInt8] = [],
        _ body: (_ rest: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try txn.withCursor(try dbi(table)) { cursor in
            var entry = try cursor.seek(atLeast: prefix + start)
            while let current = entry, current.key.starts(with: prefix) {
                guard try body(UnsafeRawBufferPointer(rebasing: current.key[prefix.count...]), current.value) else {
                    return
                }
                entry = try cursor.next()
            }
        }
    }

    /// How many entries `table` holds.
    public func count(of table: Table) throws -> Int {
        try txn.entryCount(try dbi(table))
    }

    /// The current version of a stream (0 when it has no events), as this transaction sees it.
    public func streamVersion(_ streamId: String) throws -> UInt64 {
        try store.log.streamVersion(streamId, in: txn)
    }

    /// The ids of the streams with events whose ids begin with `prefix` (`acme:con_` for tenant
    /// acme's social connections), in byte order, after the stream id `after` (nil: from the
    /// first), at most `limit` of them.
    public func streamIds(withPrefix prefix: String, after: String? = nil, limit: Int) throws -> [String] {
        try store.log.streamIds(withPrefix: prefix, after: after, limit: limit, in: txn)
    }

    /// Up to `limit` events of a stream from `version` on, as this transaction sees them (through
    /// the stream index, as ``EventStore/readStream(_:from:backward:limit:hashes:)`` reads them);
    /// with `hashes` false the events' two hashes are left empty.
    public func streamEvents(
        _ streamId: String, from version: UInt64, limit: Int, hashes: Bool = true
    ) throws -> [RecordedEvent] {
        try store.log.streamEvents(streamId, from: version, backward: false, limit: limit, hashes: hashes, in: txn)
    }

    /// The event at a global position, or nil.
    public func event(at position: UInt64) throws -> RecordedEvent? {
        try store.log.event(at: position, in: txn)
    }

    /// Up to `limit` events of the global log from `position` on, as this transaction sees them.
    /// - Parameter hashes: false leaves each event's `previousHash` and `hash` empty, for a reader
    ///   that never looks at them (a projection's fold): two arrays an event fewer.
    public func events(from position: UInt64, limit: Int, hashes: Bool = true) throws -> [RecordedEvent] {
        try store.log.events(from: position, limit: limit, hashes: hashes, in: txn)
    }

    /// The events at positions `position` through `last` whose type is in `types` (every one when
    /// nil), as this transaction sees them: a record of another type is read no further than its
    /// type, so a reader of a few types skips the rest of the log at the speed of the scan.
    /// - Parameters:
    ///   - hashes: as in ``events(from:limit:hashes:)``.
    ///   - payloads: false to leave every event's payload empty, for a reader of envelopes alone (a
    ///     payload is the largest part of most records, and copying it out of the map the largest
    ///     cost of decoding one).
    ///   - lastFirst: true to have the last event first, for a reader that takes them off the end
    ///     with `popLast()` in position order, each moved out rather than copied as iterating does.
    public func events(
        from position: UInt64, through last: UInt64, types: Set<String>?, hashes: Bool = true, payloads: Bool = true,
        lastFirst: Bool = false
    ) throws -> [RecordedEvent] {
        try store.log.events(
            from: position, through: last, types: types, hashes: hashes, payloads: payloads, lastFirst: lastFirst,
            in: txn)
    }

    /// The last global position (0 for an empty log).
    public func headPosition() throws -> UInt64 {
        try store.log.head(in: txn).position
    }

    /// The saved position of a checkpoint (0 when never saved).
    public func checkpoint(_ name: String) throws -> UInt64 {
        try store.checkpoints.position(of: name, in: txn)
    }

    /// Visits saved checkpoints in name order from the first name ≥ `start`, while `body` returns true.
    func forEachCheckpoint(from start: [UInt8], _ body: ([UInt8], UInt64) throws -> Bool) throws {
        try txn.withCursor(store.checkpoints.table) { cursor in
            var entry = try cursor.seek(atLeast: start)
            while let current = entry {
                let position = current.value.count == 8 ? current.value.bigEndianUInt64() : 0
                guard try body(Array(current.key), position) else { return }
                entry = try cursor.next()
            }
        }
    }
}

/// A write transaction for the length of a closure; committed when the closure returns.
public final class WriteTransaction: ReadTransaction {
    /// What writers keep for the rest of this transaction, by key, each with the work that writes
    /// it back just before the transaction commits (see ``local(_:make:finish:)``).
    private var locals: [ObjectIdentifier: AnyObject] = [:]
    private var finishers: [(key: ObjectIdentifier, work: (WriteTransaction) throws -> Void)] = []

    /// A value a writer keeps for the rest of this transaction: made by `make` on the first call
    /// with `key`, the same object on every later call, and handed to `finish` once, just before
    /// the transaction commits. A group commit runs many requests in one transaction; a row every
    /// request touches (a projection's checkpoint) is then read and written once, not per request.
    /// If the transaction fails, the value goes with it, unwritten.
    public func local<Value: AnyObject>(
        _ key: ObjectIdentifier, make: () -> Value, finish: @escaping (Value, WriteTransaction) throws -> Void
    ) -> Value {
        if let value = locals[key] as? Value { return value }
        let value = make()
        locals[key] = value
        finishers.append((key, { try finish(value, $0) }))
        return value
    }

    /// Runs the finishers ``local(_:make:finish:)`` registered, in order; the store calls it
    /// just before committing.
    func finish() throws {
        // A value is forgotten as its finisher runs, so a later finisher that asks for it again gets
        // a new one, whose own finisher runs too: nothing set after a write-back is lost.
        var next = 0
        while next < finishers.count {
            let (key, work) = finishers[next]
            locals[key] = nil
            try work(self)
            next += 1
        }
    }

    /// Stores `value` under `key` in `table`, replacing any old value.
    public func put(_ value: [UInt8], forKey key: [UInt8], in table: Table) throws {
        try txn.put(try dbi(table), key, value)
    }

    /// Stores `value` under `key`, which must sort after every key already in `table`: LMDB then
    /// fills pages in order (`MDB_APPEND`) instead of searching for each key, for bulk loads of rows
    /// written in key order.
    /// - Throws: ``EventStoreError/invalidKey(_:)`` when `key` does not sort after the table's last key.
    public func append(_ value: [UInt8], forKey key: [UInt8], in table: Table) throws {
        guard try txn.put(try dbi(table), key, value, flags: UInt32(MDB_APPEND)) else {
            throw EventStoreError.invalidKey("an appended key must sort after the table's last key")
        }
    }

    /// Stores `value` under `key`, which must sort after every key already in `table`, as the
    /// array form does, from bytes the caller holds (a bulk load of packed rows makes no array a row).
    /// - Throws: ``EventStoreError/invalidKey(_:)`` when `key` is empty, longer than LMDB allows, or
    ///   does not sort after the table's last key.
    public func append(_ value: UnsafeRawBufferPointer, forKey key: UnsafeRawBufferPointer, in table: Table) throws {
        guard !key.isEmpty && key.count <= Cursor.maximumKeySize else {
            throw EventStoreError.invalidKey(
                "a key must be 1–\(Cursor.maximumKeySize) bytes (this one is \(key.count))")
        }
        guard try txn.put(try dbi(table), key, value, flags: UInt32(MDB_APPEND)) else {
            throw EventStoreError.invalidKey("an appended key must sort after the table's last key")
        }
    }

    /// Removes `key` from `table`; returns whether it was there.
    @discardableResult
    public func delete(key: [UInt8], in table: Table) throws -> Bool {
        try txn.delete(try dbi(table), key)
    }

    /// Removes every entry of `table`.
    public func clear(_ table: Table) throws {
        try txn.clear(try dbi(table))
    }

    /// Saves a checkpoint position in this transaction.
    public func setCheckpoint(_ name: String, to position: UInt64) throws {
        try store.checkpoints.set(name, to: position, in: txn)
    }

    /// Deletes a checkpoint in this transaction; false when there was none.
    public func removeCheckpoint(_ name: String) throws -> Bool {
        try store.checkpoints.remove(name, in: txn)
    }
}
