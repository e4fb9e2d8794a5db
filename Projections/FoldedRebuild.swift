import CampaignDomain
import EventStore
import Foundation

/// A projection that rebuilds by folding the whole log in memory first, writing nothing, and then
/// writing each of its final rows once, in key order.
///
/// For a model whose event-by-event fold does much more work than its final rows: a segment's rule
/// change re-evaluates every contact of the tenant, so folding event by event evaluates each
/// contact once per rule change, while the final rows need each contact evaluated once. The fold
/// reads the log in read transactions, so the writer is free while it runs; the rows are then
/// written with `MDB_APPEND` in writer jobs that each stay within the runner's time budget. Events
/// appended after the fold began are applied afterwards with ``Projection/apply(_:to:)``, as in any
/// rebuild, so the fold must arrive at exactly the rows that applying its events one by one would.
public protocol FoldedRebuild: Projection {
    /// A fold with no events in it.
    func makeFold() -> any RebuildFold
    /// Whether the fold's state grows large (tens of bytes per event, or per contact): a rebuild
    /// gives such a fold a pass over the log of its own, and a lane holds at most one of them at a
    /// time. False by default.
    var foldIsLarge: Bool { get }
    /// How costly the fold is beside the other small folds, roughly (1 by default): on several
    /// lanes a rebuild starts the costliest small folds first, so that the last pass to finish is
    /// a short one and the lanes end together.
    var foldWeight: Int { get }
}

extension FoldedRebuild {
    /// False: the fold's state is small next to the log.
    public var foldIsLarge: Bool { false }
    /// 1: as costly as most small folds.
    public var foldWeight: Int { 1 }
}

/// The in-memory state of a ``FoldedRebuild`` projection's rebuild.
public protocol RebuildFold: AnyObject {
    /// Folds the next event of the log (events arrive in position order, each once).
    func fold(_ event: ProjectedEvent) throws
    /// The rows the projection's table holds after the folded events, in key order (asked once, at
    /// the end: a fold may hand its rows over rather than copy them). Personal data is read as it is
    /// now, as ``Projection/apply(_:to:)`` reads it.
    func rows(_ personalData: PersonalDataReader) throws -> SortedRows
}

/// Read access to the personal values kept beside the log, for a fold's final rows.
public struct PersonalDataReader {
    let txn: ReadTransaction
    let table: Table

    /// The current personal values of a contact (empty once erased).
    public func values(tenant: String, contactId: String) throws -> JSONObject {
        try PersonalData.values(tenant: tenant, contactId: contactId, table: table, in: txn)
    }

    /// Visits the contacts of `tenant` that have stored values, in the byte order of their ids,
    /// while `body` returns true: each id and its stored document are lent in place (valid only
    /// during the call), for ``values(stored:only:into:)``. A walk in key order where a lookup a contact
    /// would descend the table's tree each time.
    public func forEachStored(
        tenant: String, _ body: (_ contactId: UnsafeRawBufferPointer, _ stored: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try txn.forEachEntry(in: table, withPrefix: Key.prefix([tenant]), body)
    }

    /// The values named in `fields` (``PersonalData/selection(_:)``) of a document
    /// ``forEachStored(tenant:_:)`` lent, into `values`, a slot a selected name
    /// (``JSON/members(_:in:into:)``): ``values(tenant:contactId:)`` for that contact kept to those
    /// names, the others checked but not made.
    public static func values(stored: UnsafeRawBufferPointer, only fields: JSONSelection, into values: inout [JSON?]) {
        JSON.members(fields, in: stored, into: &values)
    }
}

/// Key-value rows in strictly increasing key order: packed in one buffer (a million small rows
/// cost their bytes plus 16 bytes each, not two arrays apiece), or made a run at a time from their
/// indexes as they are written, for a fold that can order its rows without holding their bytes.
public struct SortedRows: Sendable {
    private var bytes: [UInt8] = []
    /// For row `i`: where its key ends (`ends[2i]`) and where its value ends (`ends[2i + 1]`).
    private var ends: [Int] = []
    /// Rows with empty values whose keys are made on demand: their count and the maker.
    private var made: (count: Int, keys: KeyMaker)?

    /// Appends the keys of the rows in `rows` to `keys` back to back, and after each the offset in
    /// `keys` where it ends to `ends`.
    public typealias KeyMaker = @Sendable (_ rows: Range<Int>, _ keys: inout [UInt8], _ ends: inout [Int]) -> Void

    /// An empty set, which grows as rows are appended in key order.
    public init() {}

    /// No rows yet, with room for `rows` rows of `bytes` bytes of keys and values in all.
    public init(reservingBytes bytes: Int, rows: Int) {
        self.bytes.reserveCapacity(bytes)
        ends.reserveCapacity(2 * rows)
    }

    /// `count` rows with empty values, whose keys `keys` makes a few hundred rows at a time as they
    /// are written (one call a run of rows, so a maker reaches its storage once a run, not once a
    /// key); row `i + 1`'s key must sort after row `i`'s.
    public init(count: Int, keys: @escaping KeyMaker) {
        made = (count, keys)
    }

    /// How many rows there are.
    public var count: Int { made?.count ?? ends.count / 2 }

    /// Adds a row; its key must sort after the previous row's (the writer refuses it otherwise).
    /// - Precondition: the rows are packed, not made from their index.
    public mutating func append(key: [UInt8], value: [UInt8] = []) {
        precondition(made == nil, "rows made from their index take no appended rows")
        bytes.append(contentsOf: key)
        ends.append(bytes.count)
        bytes.append(contentsOf: value)
        ends.append(bytes.count)
    }

    /// Adds a row whose key and value `key` and `value` append, in turn, to the bytes they are
    /// handed (the rows' own buffer, which they must only append to): a key made of parts is
    /// written in place, never made an array of its own. The key must sort after the previous
    /// row's.
    /// - Precondition: the rows are packed, not made from their index.
    public mutating func append(key: (inout [UInt8]) -> Void, value: (inout [UInt8]) -> Void = { _ in }) {
        precondition(made == nil, "rows made from their index take no appended rows")
        key(&bytes)
        ends.append(bytes.count)
        value(&bytes)
        ends.append(bytes.count)
    }

    /// Moves `other`'s rows after these, leaving it empty; its first key must sort after the last
    /// key here.
    /// - Precondition: both are packed, not made from their index.
    public mutating func append(contentsOf other: inout SortedRows) {
        precondition(made == nil && other.made == nil, "rows made from their index take no appended rows")
        let base = bytes.count
        bytes.append(contentsOf: other.bytes)
        ends.append(contentsOf: other.ends.lazy.map { $0 + base })
        other = SortedRows()
    }

    /// The bytes of every key and value.
    public var byteCount: Int { bytes.count }

    /// Appends the rows from `start` on to `table` (which must hold only keys before them) until
    /// they are all written or `stop` says so (asked every 256 rows).
    /// - Returns: the index of the next row to write (``count`` when done).
    func append(
        from start: Int, to table: Table, in txn: WriteTransaction, until stop: () -> Bool
    ) throws -> Int {
        let count = count
        // The maker is taken out once, not once a row (each take retains its closure); keys and
        // values reach LMDB as pointers into one buffer, with no array made a row.
        if let made {
            var index = start
            var keys = [UInt8]()
            var ends = [Int]()
            let empty = [UInt8]()
            try empty.withUnsafeBytes { empty in
                while index < count {
                    let run = index..<min(count, index + 256)
                    keys.removeAll(keepingCapacity: true)
                    ends.removeAll(keepingCapacity: true)
                    made.keys(run, &keys, &ends)
                    precondition(ends.count == run.count, "a key maker made \(ends.count) keys for \(run.count) rows")
                    try keys.withUnsafeBytes { keys in
                        var from = 0
                        for end in ends {
                            try txn.append(empty, forKey: UnsafeRawBufferPointer(rebasing: keys[from..<end]), in: table)
                            from = end
                        }
                    }
                    index = run.upperBound
                    if stop() { break }
                }
            }
            return index
        }
        return try bytes.withUnsafeBytes { bytes in
            try ends.withUnsafeBufferPointer { ends in
                var index = start
                while index < count {
                    let keyStart = index == 0 ? 0 : ends[2 * index - 1]
                    let key = UnsafeRawBufferPointer(rebasing: bytes[keyStart..<ends[2 * index]])
                    let value = UnsafeRawBufferPointer(rebasing: bytes[ends[2 * index]..<ends[2 * index + 1]])
                    try txn.append(value, forKey: key, in: table)
                    index += 1
                    if index % 256 == 0, stop() { break }
                }
                return index
            }
        }
    }

    /// Row `index`'s key and value.
    public subscript(index: Int) -> (key: ArraySlice<UInt8>, value: ArraySlice<UInt8>) {
        if let made {
            var key = [UInt8]()
            var ends = [Int]()
            made.keys(index..<index + 1, &key, &ends)
            return (key[...], [])
        }
        let start = index == 0 ? 0 : ends[2 * index - 1]
        return (bytes[start..<ends[2 * index]], bytes[ends[2 * index]..<ends[2 * index + 1]])
    }
}

/// Byte strings packed back to back in one buffer, to be put in byte order at once. Each sorts by
/// its first 16 bytes read as two big-endian integers (zero-padded, so a string sorts before the
/// longer ones it begins), its bytes compared only where those agree, equal strings in the order
/// they came. An array of arrays sorted by their bytes reached two arrays a comparison (retaining
/// and releasing each): 7% of the `segments` rebuild's CPU.
struct PackedKeys {
    private var bytes: [UInt8] = []
    private var ends: [Int] = []
    private var heads: [(UInt64, UInt64)] = []

    /// No strings yet, with room for `count` of them.
    init(reservingCapacity count: Int) {
        ends.reserveCapacity(count)
        heads.reserveCapacity(count)
    }

    /// Adds a string.
    mutating func append(_ key: some Collection<UInt8>) {
        var head: (UInt64, UInt64) = (0, 0)
        for (at, byte) in key.prefix(16).enumerated() {
            if at < 8 {
                head.0 |= UInt64(byte) << UInt64(56 - 8 * at)
            } else {
                head.1 |= UInt64(byte) << UInt64(120 - 8 * at)
            }
        }
        bytes.append(contentsOf: key)
        ends.append(bytes.count)
        heads.append(head)
    }

    /// How many strings there are.
    var count: Int { ends.count }

    /// Where string `index` lies in the buffer.
    private func range(_ index: Int) -> Range<Int> { (index == 0 ? 0 : ends[index - 1])..<ends[index] }

    /// Whether strings `a` and `b` are the same.
    func same(_ a: Int, _ b: Int) -> Bool {
        guard heads[a] == heads[b] else { return false }
        let (x, y) = (range(a), range(b))
        return x.count == y.count && bytes[x].elementsEqual(bytes[y])
    }

    /// Calls `body` with string `index`, in place.
    func withKey<R>(_ index: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let range = range(index)
        return try bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[range])) }
    }

    /// Appends string `index` to `key`.
    func appendKey(_ index: Int, to key: inout [UInt8]) {
        let range = range(index)
        bytes.withUnsafeBufferPointer { key.append(contentsOf: UnsafeBufferPointer(rebasing: $0[range])) }
    }

    /// The strings in the order `order` gives (indexes of these), in one new buffer.
    func reordered(_ order: [Int]) -> PackedKeys {
        var out = PackedKeys(reservingCapacity: order.count)
        out.bytes.reserveCapacity(bytes.count)
        for index in order {
            appendKey(index, to: &out.bytes)
            out.ends.append(out.bytes.count)
            out.heads.append(heads[index])
        }
        return out
    }

    /// The strings' indexes in their byte order, equal strings in the order they were added.
    func sortedIndices() -> [Int] {
        var order = Array(ends.indices)
        bytes.withUnsafeBytes { bytes in
            ends.withUnsafeBufferPointer { ends in
                heads.withUnsafeBufferPointer { heads in
                    func string(_ index: Int) -> UnsafeRawBufferPointer {
                        UnsafeRawBufferPointer(rebasing: bytes[(index == 0 ? 0 : ends[index - 1])..<ends[index]])
                    }
                    order.sort { a, b in
                        let (x, y) = (heads[a], heads[b])
                        if x != y { return x < y }
                        let order = ByteOrder.compare(string(a), string(b))
                        return order != 0 ? order < 0 : a < b
                    }
                }
            }
        }
        return order
    }
}
