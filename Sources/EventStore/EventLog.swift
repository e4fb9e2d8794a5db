internal import CLMDB
import Foundation

/// The append-only global log (`events`: position → record) and the stream index
/// (`streams`: streamId ‖ 0x00 ‖ version → position), written together.
struct EventLog: Sendable {
    let events: MDB_dbi
    let streams: MDB_dbi

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

    static func indexKey(_ streamId: String, _ version: UInt64) -> [UInt8] {
        var key = Array(streamId.utf8)
        key.reserveCapacity(key.count + 9)
        key.append(0)
        key.appendBigEndian(version)
        return key
    }

    func head(in txn: Txn) throws -> Head {
        try txn.withCursor(events) { cursor in
            guard let last = try cursor.last() else { return Head(position: 0, hash: RecordCodec.zeroHash) }
            return Head(position: last.key.bigEndianUInt64(), hash: RecordCodec.storedHash(last.value))
        }
    }

    /// The stream's current version (0 when it has none): the last index key with its prefix.
    func streamVersion(_ streamId: String, in txn: Txn) throws -> UInt64 {
        try EventLog.validate(streamId: streamId)
        var prefix = Array(streamId.utf8)
        prefix.append(0)
        var upper = Array(streamId.utf8)
        upper.append(1)
        return try txn.withCursor(streams) { cursor in
            let candidate = try cursor.seek(atLeast: upper) != nil ? try cursor.previous() : try cursor.last()
            guard let entry = candidate, entry.key.count == prefix.count + 8,
                entry.key.starts(with: prefix)
            else { return 0 }
            return entry.key.bigEndianUInt64(at: prefix.count)
        }
    }

    /// Writes `events` to the end of the log and the stream index. The expected version must have
    /// been checked by the caller in this same transaction.
    func append(
        _ newEvents: [NewEvent], to streamId: String, fromVersion current: UInt64, head: inout Head, in txn: Txn
    ) throws -> [RecordedEvent] {
        var recorded = [RecordedEvent]()
        recorded.reserveCapacity(newEvents.count)
        var version = current
        for event in newEvents {
            version += 1
            let position = head.position + 1
            let (bytes, hash) = try RecordCodec.encode(
                event, position: position, streamId: streamId, streamVersion: version, previousHash: head.hash)
            guard try txn.put(events, .bigEndian(position), bytes, flags: UInt32(MDB_APPEND | MDB_NOOVERWRITE)) else {
                throw EventStoreError.corruptRecord(position: position, reason: "position already taken")
            }
            guard
                try txn.put(
                    streams, EventLog.indexKey(streamId, version), .bigEndian(position),
                    flags: UInt32(MDB_NOOVERWRITE))
            else {
                throw EventStoreError.wrongExpectedVersion(
                    streamId: streamId, expected: .exact(current), current: version)
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
        return recorded
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
    func events(
        from position: UInt64, through last: UInt64, types: Set<String>?, hashes: Bool, in txn: Txn
    ) throws -> [RecordedEvent] {
        var out = [RecordedEvent]()
        var decoder = RecordDecoder()
        decoder.hashes = hashes
        decoder.types = types
        guard position <= last else { return out }
        try txn.withCursor(events) { cursor in
            var entry = try cursor.seek(atLeast: .bigEndian(position))
            while let current = entry {
                let at = current.key.bigEndianUInt64()
                if at > last { break }
                if decoder.wants(current.value) { out.append(try decoder.decode(current.value, position: at)) }
                entry = try cursor.next()
            }
        }
        return out
    }

    /// Reads up to `limit` events of one stream starting at `version`, forward or backward.
    func streamEvents(
        _ streamId: String, from version: UInt64, backward: Bool, limit: Int, in txn: Txn
    ) throws -> [RecordedEvent] {
        try EventLog.validate(streamId: streamId)
        var prefix = Array(streamId.utf8)
        prefix.append(0)
        var out = [RecordedEvent]()
        var decoder = RecordDecoder()
        try txn.withCursor(streams) { cursor in
            let start = EventLog.indexKey(streamId, version)
            var entry = backward ? try cursor.seek(atMost: start) : try cursor.seek(atLeast: start)
            while let current = entry, out.count < limit,
                current.key.count == prefix.count + 8, current.key.starts(with: prefix)
            {
                let position = current.value.bigEndianUInt64()
                let record = try txn.withValue(events, .bigEndian(position)) {
                    try decoder.decode($0, position: position)
                }
                guard let event = record else {
                    throw EventStoreError.corruptRecord(position: position, reason: "indexed event is missing")
                }
                out.append(event)
                entry = backward ? try cursor.previous() : try cursor.next()
            }
        }
        return out
    }
}
