internal import CLMDB
import Foundation
import Hashing

/// Where a stream's events are in the log (README, "On-disk format"):
/// - `stream-heads`: streamId → version u64 ‖ position u64 of the stream's last event;
/// - `stream-links`: position → the position of the same stream's event before it (0 for its first);
/// - `stream-marks`: streamId ‖ 0x00 ‖ version → position, for each version that is a multiple of
///   ``markInterval``.
///
/// An append rewrites one head a stream and adds its links in position order, at the end of their
/// table, so a batch that touches many long streams dirties a few pages. (An entry a version, keyed
/// by stream, dirtied a page a stream.) A read walks the links back from the nearest mark at or
/// after the highest version it wants, at most ``markInterval`` − 1 steps past what it returns.
struct StreamIndex: Sendable {
    let heads: MDB_dbi
    let links: MDB_dbi
    let marks: MDB_dbi

    /// The table names, in the order of the fields.
    static let tableNames = ["stream-heads", "stream-links", "stream-marks"]

    /// Every how many versions a stream has a mark.
    static let markInterval: UInt64 = 64

    /// A stream's last event: its version (0 for a stream with none) and its position.
    struct Head: Equatable {
        var version: UInt64
        var position: UInt64

        static let empty = Head(version: 0, position: 0)

        init(version: UInt64, position: UInt64) {
            self.version = version
            self.position = position
        }

        /// A stored head (version ‖ position); nil when it is not 16 bytes.
        init?(stored value: UnsafeRawBufferPointer) {
            guard value.count == 16 else { return nil }
            self.init(version: value.bigEndianUInt64(at: 0), position: value.bigEndianUInt64(at: 8))
        }
    }

    /// A mark's key: stream ‖ 0x00 ‖ version.
    static func markKey(_ streamKey: [UInt8], _ version: UInt64) -> [UInt8] {
        var key = streamKey
        key.reserveCapacity(key.count + 9)
        key.append(0)
        key.appendBigEndian(version)
        return key
    }

    /// The stream's head, ``Head/empty`` when it has no events.
    func head(of streamKey: [UInt8], in txn: Txn) throws -> Head {
        let stored = try txn.withValue(heads, streamKey) { value in
            guard let head = Head(stored: value) else {
                throw StreamIndex.damaged("the head of \(String(decoding: streamKey, as: UTF8.self))")
            }
            return head
        }
        return stored ?? .empty
    }

    /// Indexes `count` events of one stream just written at `firstPosition…`, after `head`.
    func record(_ streamKey: [UInt8], after head: Head, firstPosition: UInt64, count: Int, in txn: Txn) throws {
        var previous = head
        for position in firstPosition..<firstPosition + UInt64(count) {
            try link(streamKey, position, version: previous.version + 1, after: previous, in: txn)
            previous = Head(version: previous.version + 1, position: position)
        }
        try txn.put(heads, streamKey, StreamIndex.value(of: previous))
    }

    /// Links the event at `position` (its stream's `version`) to the stream's event before it, and
    /// marks it when its version is a multiple of ``markInterval``. Positions only grow.
    private func link(
        _ streamKey: [UInt8], _ position: UInt64, version: UInt64, after before: Head, in txn: Txn
    )
        throws
    {
        guard try txn.put(links, bigEndian: position, before.position, flags: UInt32(MDB_APPEND)) else {
            throw EventStoreError.corruptRecord(
                position: position, reason: "the stream index already links this position or a later one")
        }
        if version % StreamIndex.markInterval == 0 {
            try txn.put(marks, StreamIndex.markKey(streamKey, version), .bigEndian(position))
        }
    }

    /// The positions of `versions` (within the head's), lowest version first.
    func positions(
        of streamKey: [UInt8], versions: ClosedRange<UInt64>, head: Head, in txn: Txn
    ) throws -> [UInt64] {
        precondition(versions.lowerBound >= 1 && versions.upperBound <= head.version)
        let interval = StreamIndex.markInterval
        let markVersion = (versions.upperBound + interval - 1) / interval * interval
        var version = head.version
        var position = head.position
        if markVersion < head.version {
            version = markVersion
            position = try StreamIndex.position(
                in: marks, StreamIndex.markKey(streamKey, markVersion),
                "mark \(markVersion) of \(String(decoding: streamKey, as: UTF8.self))", txn)
        }
        var out = [UInt64](repeating: 0, count: Int(versions.upperBound - versions.lowerBound + 1))
        // One cursor for the walk: each link's key is below the last, often on the same leaf, and
        // a seek there searches only that leaf.
        return try txn.withCursor(links) { cursor in
            while true {
                if version <= versions.upperBound { out[Int(version - versions.lowerBound)] = position }
                if version == versions.lowerBound { return out }
                let key = [UInt8].bigEndian(position)
                guard let link = try cursor.seek(atLeast: key), link.key.elementsEqual(key), link.value.count == 8
                else {
                    throw StreamIndex.damaged("the link of position \(position)")
                }
                position = link.value.bigEndianUInt64()
                guard position > 0 else { throw StreamIndex.damaged("the link of a stream's version \(version)") }
                version -= 1
            }
        }
    }

    /// Visits every stream with its version, in stream-id byte order, while `body` returns true.
    func forEachStream(in txn: Txn, _ body: (_ streamId: String, _ version: UInt64) throws -> Bool) throws {
        try txn.withCursor(heads) { cursor in
            var entry = try cursor.first()
            while let (key, value) = entry {
                guard let head = Head(stored: value) else {
                    throw StreamIndex.damaged("the head of \(String(decoding: key, as: UTF8.self))")
                }
                guard try body(String(decoding: key, as: UTF8.self), head.version) else { return }
                entry = try cursor.next()
            }
        }
    }

    /// The position stored under `key`; damage (`what` is missing) when there is none or it is
    /// not 8 bytes.
    private static func position(in table: MDB_dbi, _ key: [UInt8], _ what: String, _ txn: Txn) throws -> UInt64 {
        let stored = try txn.withValue(table, key) { value in value.count == 8 ? value.bigEndianUInt64() : nil }
        guard let position = stored ?? nil else { throw damaged(what) }
        return position
    }

    /// Walks the log's records in order, calling `body` with each one's position, stream and
    /// version and the head its stream had before it. Returns every stream's head after the last.
    /// Throws a corrupt record where a version does not follow its stream's last.
    static func derive(
        from events: MDB_dbi, streams expected: Int = 0, in txn: Txn,
        _ body: (_ position: UInt64, _ streamKey: [UInt8], _ version: UInt64, _ before: Head) throws -> Void
    ) throws -> [ByteKey: Head] {
        var heads = [ByteKey: Head](minimumCapacity: expected)
        try txn.withCursor(events) { cursor in
            var entry = try cursor.first()
            while let (key, value) = entry {
                let position = key.bigEndianUInt64()
                guard let (streamKey, version) = RecordCodec.stream(of: value) else {
                    throw EventStoreError.corruptRecord(position: position, reason: "too short to name its stream")
                }
                // One lookup a record: the stream's head is read and replaced in place.
                let before = StreamIndex.replace(
                    &heads[ByteKey(streamKey), default: .empty], with: Head(version: version, position: position))
                guard version == before.version + 1 else {
                    throw EventStoreError.corruptRecord(
                        position: position, reason: "version \(version) follows version \(before.version) of its stream"
                    )
                }
                try body(position, streamKey, version, before)
                entry = try cursor.next()
            }
        }
        return heads
    }

    private static func replace(_ head: inout Head, with new: Head) -> Head {
        defer { head = new }
        return head
    }

    /// Empties the index and makes it again from the log's records, in the caller's write transaction.
    func rebuild(from events: MDB_dbi, in txn: Txn) throws {
        for table in [heads, links, marks] { try txn.clear(table) }
        let derived = try StreamIndex.derive(from: events, in: txn) { position, streamKey, version, before in
            try link(streamKey, position, version: version, after: before, in: txn)
        }
        for (streamKey, head) in derived { try txn.put(heads, streamKey.bytes, StreamIndex.value(of: head)) }
    }

    /// What is wrong with the index, given the log's records (nil when it is theirs exactly): a head,
    /// link or mark missing, different or left over.
    func problem(against events: MDB_dbi, in txn: Txn) throws -> String? {
        var problem: String?
        var marksExpected = 0
        let storedHeads = try txn.entryCount(heads)
        let derived: [ByteKey: Head] = try txn.withCursor(links) { linkCursor in
            var link = try linkCursor.first()
            return try StreamIndex.derive(from: events, streams: storedHeads, in: txn) {
                position, streamKey, version, before in
                guard problem == nil else { return }
                let stored = link.flatMap { $0.key.count == 8 && $0.value.count == 8 ? $0 : nil }
                guard let stored, stored.key.bigEndianUInt64() == position else {
                    problem = "position \(position) has no link"
                    return
                }
                guard stored.value.bigEndianUInt64() == before.position else {
                    problem = "position \(position) links to \(stored.value.bigEndianUInt64()), not \(before.position)"
                    return
                }
                link = try linkCursor.next()
                if version % StreamIndex.markInterval == 0 {
                    marksExpected += 1
                    let marked = try txn.withValue(marks, StreamIndex.markKey(streamKey, version)) {
                        $0.count == 8 ? $0.bigEndianUInt64() : nil
                    }
                    if marked != position {
                        problem = "version \(version) of \(String(decoding: streamKey, as: UTF8.self)) is not marked"
                    }
                }
            }
        }
        if let problem { return problem }
        if try txn.entryCount(links) != (try txn.entryCount(events)) { return "links left over past the log's head" }
        if try txn.entryCount(marks) != marksExpected { return "marks left over for versions the log does not have" }
        guard storedHeads == derived.count else { return "\(storedHeads) heads for the log's \(derived.count) streams" }
        // As many heads as streams: each stored one must be its stream's.
        return try txn.withCursor(heads) { cursor in
            var entry = try cursor.first()
            while let (key, value) = entry {
                let streamKey = Array(key)
                guard let head = derived[ByteKey(streamKey)], Head(stored: value) == head else {
                    return "the head of \(String(decoding: streamKey, as: UTF8.self)) is not its stream's last event"
                }
                entry = try cursor.next()
            }
            return nil
        }
    }

    /// A head's stored value: version ‖ position.
    static func value(of head: Head) -> [UInt8] {
        var value = [UInt8]()
        value.reserveCapacity(16)
        value.appendBigEndian(head.version)
        value.appendBigEndian(head.position)
        return value
    }

    /// The error for a part of the index that is missing or malformed: damage, like LMDB's own.
    static func damaged(_ what: String) -> EventStoreError {
        .corrupted(message: "the stream index is damaged: \(what) is missing or malformed")
    }
}
