import Foundation
import Hashing

/// The byte layout of a stored event (README, "On-disk format"). All integers are big-endian.
///
/// ```
/// offset  size  field
/// 0       1     record format (1)
/// 1       8     position
/// 9       8     stream version
/// 17      8     occurredAt, milliseconds since 1970-01-01T00:00:00Z, signed
/// 25      2     schema version
/// 27      …     six strings, each a u16 length then UTF-8 bytes:
///               streamId, type, tenant, actor, requestId, causationId
/// …       4+n   payload: u32 length then the JSON bytes
/// …       32    previous hash
/// …       32    hash = SHA-256(previous hash ‖ bytes [0, start of previous hash))
/// ```
enum RecordCodec {
    static let formatVersion: UInt8 = 1
    static let hashSize = 32
    static let zeroHash = [UInt8](repeating: 0, count: 32)

    /// The bytes the record of `event` takes (`streamId` being its stream): the canonical bytes and
    /// the two hashes. Throws for a field longer than its u16 length or a payload over u32.
    static func count(of event: NewEvent, streamId: String) throws -> Int {
        func length(_ field: String) throws -> Int {
            let length = field.utf8.count
            guard length <= Int(UInt16.max) else { throw EventStoreError.invalidKey("field longer than 65535 bytes") }
            return 2 + length
        }
        // Six fields named one by one: an array of them would be allocated for every record.
        let count =
            try 27 + length(streamId) + length(event.type) + length(event.tenant) + length(event.actor)
            + length(event.requestId) + length(event.causationId) + 4 + event.payload.count + 2 * hashSize
        guard event.payload.count <= Int(UInt32.max) else { throw EventStoreError.invalidKey("payload too large") }
        return count
    }

    /// Writes the record of `event` into `out`, which holds exactly ``count(of:streamId:)`` bytes
    /// (a value LMDB reserved in its page, so the record is written once): the canonical bytes,
    /// the previous hash, then the new hash, which it also returns.
    static func write(
        _ event: NewEvent, position: UInt64, streamId: String, streamVersion: UInt64, previousHash: [UInt8],
        into out: UnsafeMutableRawBufferPointer
    ) -> [UInt8] {
        var writer = ByteWriter(out)
        writer.u8(formatVersion)
        writer.u64(position)
        writer.u64(streamVersion)
        writer.u64(UInt64(bitPattern: Int64((event.occurredAt.timeIntervalSince1970 * 1000).rounded())))
        writer.u16(event.schemaVersion)
        writer.field(streamId)
        writer.field(event.type)
        writer.field(event.tenant)
        writer.field(event.actor)
        writer.field(event.requestId)
        writer.field(event.causationId)
        writer.u32(UInt32(event.payload.count))
        event.payload.withUnsafeBytes { writer.bytes($0) }
        let canonical = UnsafeRawBufferPointer(rebasing: out[0..<writer.offset])
        previousHash.withUnsafeBytes { writer.bytes($0) }
        var hasher = SHA256()
        hasher.update(UnsafeRawBufferPointer(rebasing: out[writer.offset - hashSize..<writer.offset]))
        hasher.update(canonical)
        let stored = UnsafeMutableRawBufferPointer(rebasing: out[writer.offset...])
        precondition(stored.count == hashSize, "a record fills exactly the bytes counted for it")
        hasher.finalize(into: stored)
        return Array(stored.bindMemory(to: UInt8.self))
    }

    /// Decodes a stored record. Throws ``EventStoreError/corruptRecord(position:reason:)``.
    static func decode(_ bytes: UnsafeRawBufferPointer, position: UInt64) throws -> RecordedEvent {
        var decoder = RecordDecoder()
        decoder.shares = false
        return try decoder.decode(bytes, position: position)
    }

    /// Checks one stored record against the chain: the hash it stores must be SHA-256 of the
    /// previous hash it stores and its canonical bytes, and its previous hash must be `expectedPrevious`.
    /// Returns the record's hash, or a reason it is bad.
    static func verify(
        _ bytes: UnsafeRawBufferPointer, position: UInt64, expectedPrevious: [UInt8]
    ) -> Result<[UInt8], EventStoreError> {
        let problem = expectedPrevious.withUnsafeBytes { check(bytes, position: position, expectedPrevious: $0) }
        if let problem { return .failure(.corruptRecord(position: position, reason: problem)) }
        return .success(storedHash(bytes))
    }

    /// What is wrong with one stored record, or nil when it checks out (see
    /// ``verify(_:position:expectedPrevious:)``). Allocates nothing and reads only `bytes` and
    /// `expectedPrevious`, so records can be checked on several threads at once.
    static func check(
        _ bytes: UnsafeRawBufferPointer, position: UInt64, expectedPrevious: UnsafeRawBufferPointer
    ) -> String? {
        guard bytes.count >= 27 + 12 + 4 + 2 * hashSize else { return "record too short" }
        guard bytes[0] == formatVersion else { return "unknown record format" }
        var reader = ByteReader(bytes)
        _ = reader.u8()
        guard reader.u64() == position else { return "stored position does not match its key" }
        let canonicalCount = bytes.count - 2 * hashSize
        let previous = UnsafeRawBufferPointer(rebasing: bytes[canonicalCount..<(canonicalCount + hashSize)])
        let stored = UnsafeRawBufferPointer(rebasing: bytes[(canonicalCount + hashSize)...])
        guard memcmp(previous.baseAddress!, expectedPrevious.baseAddress!, hashSize) == 0 else {
            return "previous hash does not match the record before"
        }
        var hasher = SHA256()
        hasher.update(previous)
        hasher.update(UnsafeRawBufferPointer(rebasing: bytes[0..<canonicalCount]))
        return withUnsafeTemporaryAllocation(byteCount: hashSize, alignment: 8) { computed in
            hasher.finalize(into: computed)
            return memcmp(stored.baseAddress!, computed.baseAddress!, hashSize) == 0
                ? nil : "hash does not match the record's bytes"
        }
    }

    /// The stored hash of a record as a view of its bytes (the last 32), for records long enough
    /// to hold one.
    static func storedHashBytes(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[(bytes.count - hashSize)...])
    }

    /// The stored hash of a record (its last 32 bytes).
    static func storedHash(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        Array(bytes.suffix(hashSize))
    }

    /// A record's stream id (UTF-8) and stream version, read at their offsets; nil when the record
    /// is too short to hold them.
    static func stream(of bytes: UnsafeRawBufferPointer) -> (id: [UInt8], version: UInt64)? {
        guard bytes.count >= 29 else { return nil }
        let length = Int(bytes[27]) << 8 | Int(bytes[28])
        guard bytes.count >= 29 + length else { return nil }
        return (Array(bytes[29..<29 + length]), bytes.bigEndianUInt64(at: 9))
    }
}

/// Decodes the records of one read, sharing what consecutive records repeat: an event type,
/// tenant or actor seen before in the read is the same `String` again (a few hundred distinct ones
/// at most), and a stream, request or causation id equal to the previous record's is too. A log
/// read then allocates for its payloads and the ids that change, not for six strings an event.
///
/// The previous record's fields are views of LMDB's map, so a decoder lives within one read
/// transaction.
struct RecordDecoder {
    /// Whether records keep their two hashes (a fold that never looks at them saves two arrays).
    var hashes = true
    /// Whether records keep their payload (a reader of envelopes alone leaves each one empty; the
    /// payload's length is still checked).
    var payloads = true
    /// Whether strings recurring across records are shared (false for a decoder of one record,
    /// which would only pay for the table).
    var shares = true
    /// The event types wanted, or nil for all (see ``wants(_:)``).
    var types: Set<String>?
    /// The shared strings by hash, allocated with the first one (a decoder of one record never
    /// makes the table).
    private var interned: [Interned?] = []
    private var previous: (stream: Remembered?, request: Remembered?, causation: Remembered?)

    /// A field of the previous record, as a view of the map, and its text.
    private struct Remembered {
        var bytes: UnsafeRawBufferPointer
        var text: String
    }

    private struct Interned {
        var bytes: [UInt8]
        var text: String
        /// Whether `types` holds it (computed once).
        var wanted: Bool
    }

    /// Whether the record's type is one of ``types``, read from the record's type field alone. A
    /// record too short to tell is wanted, so that decoding it reports the damage.
    mutating func wants(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard types != nil else { return true }
        guard shares else { return true }
        var reader = ByteReader(bytes)
        guard reader.skip(27), let streamLength = reader.u16(), reader.skip(Int(streamLength)),
            let typeLength = reader.u16(), let raw = reader.span(Int(typeLength))
        else { return true }
        // Interning looks the type up (adding it when new), so its entry tells; a type too long to
        // keep is wanted and decoded, and the folds that do not read it skip it.
        guard intern(raw) != nil, let entry = interned[RecordDecoder.slot(raw)], RecordDecoder.matches(entry, raw)
        else { return true }
        return entry.wanted
    }

    /// Slots of the intern table: ``slot(_:)`` takes a hash's top eight bits.
    private static let internSlots = 256

    /// Decodes one record (see ``RecordCodec``).
    mutating func decode(_ bytes: UnsafeRawBufferPointer, position: UInt64) throws -> RecordedEvent {
        var reader = ByteReader(bytes)
        func fail(_ reason: String) -> EventStoreError { .corruptRecord(position: position, reason: reason) }
        guard let format = reader.u8(), format == RecordCodec.formatVersion else { throw fail("unknown record format") }
        guard let storedPosition = reader.u64(), let version = reader.u64(), let millis = reader.u64(),
            let schema = reader.u16()
        else { throw fail("truncated header") }
        func hash(_ reader: inout ByteReader) -> [UInt8]? {
            hashes ? reader.bytes(RecordCodec.hashSize) : reader.span(RecordCodec.hashSize).map { _ in [] }
        }
        func field(_ reader: inout ByteReader) throws -> UnsafeRawBufferPointer {
            guard let length = reader.u16(), let raw = reader.span(Int(length)) else { throw fail("truncated field") }
            return raw
        }
        let streamId = try RecordDecoder.repeated(&previous.stream, field(&reader))
        let type = try intern(field(&reader))
        let tenant = try intern(field(&reader))
        let actor = try intern(field(&reader))
        let requestId = try RecordDecoder.repeated(&previous.request, field(&reader))
        let causationRaw = try field(&reader)
        let causationId =
            RecordDecoder.same(causationRaw, previous.request?.bytes)
            ? requestId : RecordDecoder.repeated(&previous.causation, causationRaw)
        guard let streamId, let type, let tenant, let actor, let requestId, let causationId else {
            throw fail("field is not UTF-8")
        }
        guard let payloadLength = reader.u32(),
            let payload = payloads
                ? reader.bytes(Int(payloadLength)) : reader.span(Int(payloadLength)).map({ _ in [] }),
            let previousHash = hash(&reader), let hash = hash(&reader),
            reader.isAtEnd
        else { throw fail("truncated payload or hashes") }
        return RecordedEvent(
            position: storedPosition, streamId: streamId, streamVersion: version, type: type,
            schemaVersion: schema, occurredAt: Date(timeIntervalSince1970: Double(Int64(bitPattern: millis)) / 1000),
            tenant: tenant, actor: actor, requestId: requestId, causationId: causationId,
            payload: payload, previousHash: previousHash, hash: hash
        )
    }

    private static func same(_ raw: UnsafeRawBufferPointer, _ other: UnsafeRawBufferPointer?) -> Bool {
        guard let other, other.count == raw.count else { return false }
        return raw.isEmpty || memcmp(raw.baseAddress!, other.baseAddress!, raw.count) == 0
    }

    /// The text of a field that often repeats the previous record's (stream, request, causation):
    /// the previous record's string when the bytes are the same.
    private static func repeated(_ last: inout Remembered?, _ raw: UnsafeRawBufferPointer) -> String? {
        if let last, RecordDecoder.same(raw, last.bytes) { return last.text }
        guard let text = ByteReader.text(raw) else { return nil }
        last = Remembered(bytes: raw, text: text)
        return text
    }

    /// The text of a field whose values recur throughout a log (type, tenant, actor).
    private mutating func intern(_ raw: UnsafeRawBufferPointer) -> String? {
        guard shares else { return ByteReader.text(raw) }
        let slot = RecordDecoder.slot(raw)
        if interned.isEmpty {
            interned = [Interned?](repeating: nil, count: RecordDecoder.internSlots)
        } else if let entry = interned[slot], RecordDecoder.matches(entry, raw) {
            return entry.text
        }
        guard let text = ByteReader.text(raw) else { return nil }
        if raw.count <= 64 {
            interned[slot] = Interned(bytes: Array(raw), text: text, wanted: types?.contains(text) ?? true)
        }
        return text
    }

    /// The intern slot of some bytes: their length and their first and last eight bytes, mixed by
    /// two multiplications, the slot the product's top eight bits (``internSlots`` is 256). Fields
    /// that differ only in their middle share a slot and take it from each other, which costs a
    /// decode, never a wrong string (an entry is used only when its bytes match). A byte-at-a-time
    /// hash cost 4% of a read of the demo-shaped log.
    private static func slot(_ raw: UnsafeRawBufferPointer) -> Int {
        let count = raw.count
        var hash = UInt64(truncatingIfNeeded: count)
        if count >= 8 {
            hash = (hash ^ raw.loadUnaligned(as: UInt64.self)) &* 0x9E37_79B9_7F4A_7C15
            hash = (hash ^ raw.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self)) &* 0xBF58_476D_1CE4_E5B9
        } else {
            for byte in raw { hash = hash << 8 | UInt64(byte) }
            hash = hash &* 0x9E37_79B9_7F4A_7C15
        }
        return Int(truncatingIfNeeded: hash >> 56)
    }

    private static func matches(_ entry: Interned, _ raw: UnsafeRawBufferPointer) -> Bool {
        entry.bytes.count == raw.count && entry.bytes.withUnsafeBytes { same(raw, $0) }
    }
}

/// Reads big-endian integers and byte runs from a buffer without trapping on short input.
struct ByteReader {
    private let bytes: UnsafeRawBufferPointer
    private var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var isAtEnd: Bool { offset == bytes.count }

    mutating func bytes(_ count: Int) -> [UInt8]? {
        guard count >= 0, bytes.count - offset >= count else { return nil }
        defer { offset += count }
        // From a typed buffer: `Array` of a slice of the buffer went through the generic copy, and
        // `Array(unsafeUninitializedCapacity:)` looks the array type's metadata up on every call.
        return Array(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)]).bindMemory(to: UInt8.self))
    }

    /// Moves past `count` bytes; false (not moving) when fewer are left.
    mutating func skip(_ count: Int) -> Bool {
        guard count >= 0, bytes.count - offset >= count else { return false }
        offset += count
        return true
    }

    /// The next `count` bytes, without copying them (valid as long as the buffer).
    mutating func span(_ count: Int) -> UnsafeRawBufferPointer? {
        guard count >= 0, bytes.count - offset >= count else { return nil }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
    }

    /// `bytes` as text, or nil when they are not UTF-8. Envelope fields are ASCII nearly always:
    /// those are copied straight into a string, the rest validated.
    static func text(_ bytes: UnsafeRawBufferPointer) -> String? {
        let utf8 = bytes.bindMemory(to: UInt8.self)
        if utf8.allSatisfy({ $0 < 0x80 }) { return String(decoding: utf8, as: UTF8.self) }
        return String(validating: utf8, as: UTF8.self)
    }

    /// The next big-endian integer, read in one load (a byte-at-a-time loop here was 2.7% of a
    /// rebuild's CPU, in the type check every pass makes of every record).
    @inline(__always)
    private mutating func integer<T: FixedWidthInteger>(_: T.Type) -> T? {
        let size = MemoryLayout<T>.size
        guard bytes.count - offset >= size else { return nil }
        let value = T(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += size
        return value
    }

    mutating func u8() -> UInt8? { integer(UInt8.self) }
    mutating func u16() -> UInt16? { integer(UInt16.self) }
    mutating func u32() -> UInt32? { integer(UInt32.self) }
    mutating func u64() -> UInt64? { integer(UInt64.self) }
}

/// Writes big-endian integers, length-prefixed strings and byte runs into a buffer sized for them
/// beforehand (``RecordCodec/count(of:streamId:)``).
struct ByteWriter {
    private let out: UnsafeMutableRawBufferPointer
    /// Bytes written so far.
    private(set) var offset = 0

    init(_ out: UnsafeMutableRawBufferPointer) { self.out = out }

    mutating func u8(_ value: UInt8) { integer(value) }
    mutating func u16(_ value: UInt16) { integer(value) }
    mutating func u32(_ value: UInt32) { integer(value) }
    mutating func u64(_ value: UInt64) { integer(value) }

    private mutating func integer<T: FixedWidthInteger>(_ value: T) {
        out.storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
    }

    mutating func bytes(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        out.baseAddress!.advanced(by: offset).copyMemory(from: base, byteCount: bytes.count)
        offset += bytes.count
    }

    /// A u16 length, then the UTF-8 bytes of `text` (copied as one block from a native string).
    mutating func field(_ text: String) {
        let utf8 = text.utf8
        u16(UInt16(utf8.count))
        if utf8.withContiguousStorageIfAvailable({ bytes(UnsafeRawBufferPointer($0)) }) == nil {
            for byte in utf8 { u8(byte) }
        }
    }
}

extension Array where Element == UInt8 {
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        var big = value.bigEndian
        Swift.withUnsafeBytes(of: &big) { append(contentsOf: $0) }
    }

    /// An integer key in big-endian order, so LMDB's byte order is numeric order.
    static func bigEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(MemoryLayout<T>.size)
        out.appendBigEndian(value)
        return out
    }
}

extension UnsafeRawBufferPointer {
    /// Reads a big-endian UInt64 from the first 8 bytes.
    func bigEndianUInt64(at offset: Int = 0) -> UInt64 {
        var value: UInt64 = 0
        for index in 0..<8 { value = value << 8 | UInt64(self[offset + index]) }
        return value
    }
}
