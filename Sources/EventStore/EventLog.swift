internal import CLMDB
import Foundation

/// The append-only global log (`events`: position → record) and the index that finds a stream's
/// events in it, written together.
struct EventLog: Sendable {
    let events: MDB_dbi
    let index: Index

    /// How the store finds a stream's events.
    enum Index: Sendable {
        /// Heads, links and marks: what appends write.
        case linked(StreamIndex)
        /// `streams`, one entry a version (streamId ‖ 0x00 ‖ version → position), as stores kept it
        /// before the linked index. Read only: a store that has it is opened read-only (opened
        /// writable, it is upgraded first).
        case everyVersion(MDB_dbi)
    }

    /// The main database's record `streams` in a store with the linked index: where the older
    /// index's table was, so that a binary from before it cannot open one there.
    static let streamsMoved = Array("the stream index is in stream-heads, stream-links and stream-marks".utf8)

    /// The largest stream id, in UTF-8 bytes, leaving room in LMDB's 511-byte key for the version.
    static let maximumStreamIdBytes = 400

    /// Where the next append goes; read fresh at the start of every write transaction, so an
    /// append made by another process is never overwritten.
    struct Head {
        var position: UInt64
        var hash: [UInt8]
    }

    static func validate(streamId: String) throws {
        let utf8 = streamId.utf8
        guard !utf8.isEmpty else { throw EventStoreError.invalidKey("stream id is empty") }
        guard utf8.count <= maximumStreamIdBytes else {
            throw EventStoreError.invalidKey("stream id is longer than \(maximumStreamIdBytes) bytes")
        }
        guard !utf8.contains(0) else { throw EventStoreError.invalidKey("stream id contains a NUL byte") }
    }

    func head(in txn: Txn) throws -> Head {
        try txn.withCursor(events) { cursor in
            guard let last = try cursor.last() else { return Head(position: 0, hash: RecordCodec.zeroHash) }
            return Head(position: last.key.bigEndianUInt64(), hash: RecordCodec.storedHash(last.value))
        }
    }

    /// The stream's current version (0 when it has none).
    func streamVersion(_ streamId: String, in txn: Txn) throws -> UInt64 {
        try streamHead(streamId, in: txn).version
    }

    /// The stream's last event: its version (0 when it has none) and position.
    func streamHead(_ streamId: String, in txn: Txn) throws -> StreamIndex.Head {
        try EventLog.validate(streamId: streamId)
        switch index {
        case let .linked(linked): return try linked.head(of: Array(streamId.utf8), in: txn)
        case let .everyVersion(streams):
            let prefix = Array(streamId.utf8) + [0]
            return try txn.withCursor(streams) { cursor in
                let candidate =
                    try cursor.seek(atLeast: Array(streamId.utf8) + [1]) != nil
                    ? try cursor.previous() : try cursor.last()
                guard let entry = candidate, entry.key.count == prefix.count + 8, entry.key.starts(with: prefix),
                    entry.value.count == 8
                else { return .empty }
                return StreamIndex.Head(
                    version: entry.key.bigEndianUInt64(at: prefix.count), position: entry.value.bigEndianUInt64())
            }
        }
    }

    /// The ids of the streams (with at least one event) that begin with `prefix`, in byte order,
    /// after the stream id `after` (nil: from the first), at most `limit` of them.
    func streamIds(withPrefix prefix: String, after: String?, limit: Int, in txn: Txn) throws -> [String] {
        let wanted = Array(prefix.utf8)
        var ids = [String]()
        switch index {
        case let .linked(linked):
            try txn.withCursor(linked.heads) { cursor in
                // The first key after `after` is `after` with a 0x00 byte added.
                var entry = try cursor.seek(atLeast: after.map { Array($0.utf8) + [0] } ?? wanted)
                while let current = entry, ids.count < limit, current.key.starts(with: wanted) {
                    ids.append(String(decoding: current.key, as: UTF8.self))
                    entry = try cursor.next()
                }
            }
        case let .everyVersion(streams):
            // Keys are streamId ‖ 0x00 ‖ version: after a stream's entries comes streamId ‖ 0x01.
            try txn.withCursor(streams) { cursor in
                var entry = try cursor.seek(atLeast: after.map { Array($0.utf8) + [1] } ?? wanted)
                while let current = entry, ids.count < limit, current.key.starts(with: wanted),
                    let end = current.key.firstIndex(of: 0)
                {
                    let id = Array(current.key[..<end])
                    ids.append(String(decoding: id, as: UTF8.self))
                    entry = try cursor.seek(atLeast: id + [1])
                }
            }
        }
        return ids
    }

    /// Writes `events` to the end of the log and indexes them after the stream's `current` head,
    /// which the caller read and checked against the expected version in this same transaction;
    /// adds each one as recorded to `recorded` (a request's receipt gathers its streams' events
    /// there, each made once rather than copied from a stream's array).
    func append(
        _ newEvents: [NewEvent], to streamId: String, after current: StreamIndex.Head, head: inout Head,
        recorded: inout [RecordedEvent], in txn: Txn
    ) throws {
        guard case let .linked(linked) = index else { throw EventStoreError.readOnly }
        var version = current.version
        let firstPosition = head.position + 1
        for event in newEvents {
            version += 1
            let position = head.position + 1
            let count = try RecordCodec.count(of: event, streamId: streamId)
            let previousHash = head.hash
            let hash = try withUnsafeBytes(of: position.bigEndian) { key in
                guard
                    let space = try txn.reserve(events, key, count: count, flags: UInt32(MDB_APPEND | MDB_NOOVERWRITE))
                else { throw EventStoreError.corruptRecord(position: position, reason: "position already taken") }
                return RecordCodec.write(
                    event, position: position, streamId: streamId, streamVersion: version, previousHash: previousHash,
                    into: space)
            }
            recorded.append(
                RecordedEvent(
                    position: position, streamId: streamId, streamVersion: version, type: event.type,
                    schemaVersion: event.schemaVersion,
                    occurredAt: Date(
                        timeIntervalSince1970: (event.occurredAt.timeIntervalSince1970 * 1000).rounded() / 1000),
                    tenant: event.tenant, actor: event.actor, requestId: event.requestId,
                    causationId: event.causationId,
                    payload: event.payload, previousHash: head.hash, hash: hash))
            head = Head(position: position, hash: hash)
        }
        try linked.record(
            Array(streamId.utf8), after: current, firstPosition: firstPosition, count: newEvents.count, in: txn)
    }

    func event(at position: UInt64, in txn: Txn) throws -> RecordedEvent? {
        try txn.withValue(events, .bigEndian(position)) { try RecordCodec.decode($0, position: position) }
    }

    /// Reads up to `limit` events of the global log from `position` on.
    func events(from position: UInt64, limit: Int, hashes: Bool = true, in txn: Txn) throws -> [RecordedEvent] {
        var out = [RecordedEvent]()
        var decoder = RecordDecoder()
        decoder.hashes = hashes
        try txn.withCursor(events) { cursor in
            var entry = try cursor.seek(atLeast: .bigEndian(position))
            while let current = entry, out.count < limit {
                out.append(try decoder.decode(current.value, position: current.key.bigEndianUInt64()))
                entry = try cursor.next()
            }
        }
        return out
    }

    /// The events at positions `position` through `last` whose type is in `types` (every one when
    /// nil), decoding no other record past its type.
    /// With `lastFirst`, the last event comes first: a visitor takes them off the end with
    /// `popLast()` in position order, each moved out of the page (iterating a page copies each event,
    /// a retain and a release of each of its strings and arrays, and so does reversing one).
    func events(
        from position: UInt64, through last: UInt64, types: Set<String>?, hashes: Bool, payloads: Bool = true,
        lastFirst: Bool = false, in txn: Txn
    ) throws -> [RecordedEvent] {
        var out = [RecordedEvent]()
        var decoder = RecordDecoder()
        decoder.hashes = hashes
        decoder.payloads = payloads
        decoder.types = types
        guard position <= last else { return out }
        try txn.withCursor(events) { cursor in
            var entry =
                try lastFirst ? cursor.seek(atMost: .bigEndian(last)) : cursor.seek(atLeast: .bigEndian(position))
            while let current = entry {
                let at = current.key.bigEndianUInt64()
                if lastFirst ? at < position : at > last { break }
                if decoder.wants(current.value) { out.append(try decoder.decode(current.value, position: at)) }
                entry = try lastFirst ? cursor.previous() : cursor.next()
            }
        }
        return out
    }

    /// Reads up to `limit` events of one stream starting at `version`, forward or backward.
    func streamEvents(
        _ streamId: String, from version: UInt64, backward: Bool, limit: Int, hashes: Bool = true, in txn: Txn
    ) throws -> [RecordedEvent] {
        try EventLog.validate(streamId: streamId)
        guard limit > 0 else { return [] }
        let positions: [UInt64]
        switch index {
        case let .linked(linked):
            let key = Array(streamId.utf8)
            let head = try linked.head(of: key, in: txn)
            let wanted = UInt64(limit) - 1
            let versions: ClosedRange<UInt64>
            if backward {
                let highest = min(version, head.version)
                guard highest >= 1 else { return [] }
                versions = (highest - min(highest - 1, wanted))...highest
            } else {
                let lowest = max(version, 1)
                guard lowest <= head.version else { return [] }
                versions = lowest...(lowest + min(head.version - lowest, wanted))
            }
            let ascending = try linked.positions(of: key, versions: versions, head: head, in: txn)
            positions = backward ? ascending.reversed() : ascending
        case let .everyVersion(streams):
            positions = try EventLog.legacyPositions(
                streams, streamId, from: version, backward: backward, limit: limit, in: txn)
        }
        var out = [RecordedEvent]()
        out.reserveCapacity(positions.count)
        var decoder = RecordDecoder()
        decoder.hashes = hashes
        // One cursor for the page: a seek near the last one (a stream's events are often close
        // together) searches only the leaf the cursor is on.
        try txn.withCursor(events) { cursor in
            for position in positions {
                let key = [UInt8].bigEndian(position)
                guard let entry = try cursor.seek(atLeast: key), entry.key.elementsEqual(key) else {
                    throw EventStoreError.corruptRecord(position: position, reason: "indexed event is missing")
                }
                out.append(try decoder.decode(entry.value, position: position))
            }
        }
        // The index must lead to this stream's events, one version after another.
        let step: Int64 = backward ? -1 : 1
        for (offset, event) in out.enumerated() {
            guard event.streamId == streamId,
                offset == 0 || Int64(bitPattern: event.streamVersion &- out[offset - 1].streamVersion) == step
            else { throw StreamIndex.damaged("the entry that leads to position \(event.position)") }
        }
        return out
    }

    /// Visits every stream with its version, in stream-id byte order, while `body` returns true.
    func forEachStream(in txn: Txn, _ body: (_ streamId: String, _ version: UInt64) throws -> Bool) throws {
        switch index {
        case let .linked(linked): try linked.forEachStream(in: txn, body)
        case let .everyVersion(streams):
            try txn.withCursor(streams) { cursor in
                var current: (id: [UInt8], version: UInt64)?
                var entry = try cursor.first()
                while let (key, _) = entry {
                    guard key.count > 9 else {
                        entry = try cursor.next()
                        continue
                    }
                    let id = Array(key.prefix(key.count - 9))
                    let version = key.bigEndianUInt64(at: key.count - 8)
                    if let previous = current, previous.id != id {
                        guard try body(String(decoding: previous.id, as: UTF8.self), previous.version) else { return }
                    }
                    current = (id, version)
                    entry = try cursor.next()
                }
                if let last = current { _ = try body(String(decoding: last.id, as: UTF8.self), last.version) }
            }
        }
    }

    /// What is wrong with the stream index, given the log's records; nil when it is theirs exactly.
    func streamIndexProblem(in txn: Txn) throws -> String? {
        switch index {
        case let .linked(linked): return try linked.problem(against: events, in: txn)
        case let .everyVersion(streams):
            var problem: String?
            _ = try StreamIndex.derive(from: events, in: txn) { position, streamKey, version, _ in
                guard problem == nil else { return }
                // The older index's keys have a mark's shape: stream ‖ 0x00 ‖ version.
                let indexed = try txn.withValue(streams, StreamIndex.markKey(streamKey, version)) {
                    $0.count == 8 ? $0.bigEndianUInt64() : nil
                }
                if indexed != position {
                    problem = "version \(version) of \(String(decoding: streamKey, as: UTF8.self)) is not indexed"
                }
            }
            if let problem { return problem }
            guard try txn.entryCount(streams) == (try txn.entryCount(events)) else {
                return "entries left over for versions the log does not have"
            }
            return nil
        }
    }

    /// The positions a read of the `streams` table of an older store finds, in the order read.
    private static func legacyPositions(
        _ streams: MDB_dbi, _ streamId: String, from version: UInt64, backward: Bool, limit: Int, in txn: Txn
    ) throws -> [UInt64] {
        let prefix = Array(streamId.utf8) + [0]
        var out = [UInt64]()
        try txn.withCursor(streams) { cursor in
            let start = prefix + Array.bigEndian(version)
            var entry = backward ? try cursor.seek(atMost: start) : try cursor.seek(atLeast: start)
            while let current = entry, out.count < limit,
                current.key.count == prefix.count + 8, current.key.starts(with: prefix)
            {
                out.append(current.value.bigEndianUInt64())
                entry = backward ? try cursor.previous() : try cursor.next()
            }
        }
        return out
    }

    /// Replaces an older store's `streams` table with the linked index, made from the log itself
    /// (not from the table it replaces), in the caller's write transaction.
    static func upgrade(events: MDB_dbi, legacy streams: MDB_dbi, to index: StreamIndex, in txn: Txn) throws {
        try index.rebuild(from: events, in: txn)
        let code = mdb_drop(txn.pointer, streams, 1)
        if code == MDB_MAP_FULL { throw MapFullSignal() }
        try LMDB.check(code, "mdb_drop streams")
    }
}
