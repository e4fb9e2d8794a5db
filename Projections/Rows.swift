import Foundation

/// Writes a typed projection row: fixed-width big-endian integers and length-prefixed strings, in
/// an order the projection fixes (and versions with itself). No field names, no parsing to read.
public struct RowWriter {
    /// The row's bytes so far, ready to store once the last field is appended.
    public private(set) var bytes: [UInt8]

    /// Starts a row, reserving `capacity` bytes.
    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Appends one byte (a tag or a small count).
    public mutating func u8(_ value: UInt8) { bytes.append(value) }

    /// Appends a string's UTF-8 bytes with no length before them, for a part its reader finds by a
    /// terminator that follows.
    public mutating func unframed(_ value: String) { bytes.append(contentsOf: value.utf8) }

    /// Appends a big-endian UInt64.
    public mutating func u64(_ value: UInt64) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    /// Appends a time as signed milliseconds since 1970, rounded (the log's own precision).
    public mutating func time(_ date: Date) {
        u64(UInt64(bitPattern: Int64((date.timeIntervalSince1970 * 1000).rounded())))
    }

    /// Appends a string: its UTF-8 byte count (big-endian UInt32), then the bytes.
    public mutating func string(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            withUnsafeBytes(of: UInt32(utf8.count).bigEndian) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: utf8)
        }
    }
}

/// Reads a row written by ``RowWriter`` in the same order. Every read is nil past the end or on
/// malformed text, so a damaged row reads as no row rather than trapping.
public struct RowReader {
    private let bytes: ArraySlice<UInt8>
    private var offset: Int

    /// Reads `bytes` from their start.
    public init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        offset = bytes.startIndex
    }

    /// Whether every byte has been read.
    public var isAtEnd: Bool { offset == bytes.endIndex }

    /// The next byte, or nil past the end.
    public mutating func u8() -> UInt8? {
        guard offset < bytes.endIndex else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }

    /// The next big-endian UInt64.
    public mutating func u64() -> UInt64? {
        guard bytes.endIndex - offset >= 8 else { return nil }
        var value: UInt64 = 0
        for index in offset..<(offset + 8) { value = value << 8 | UInt64(bytes[index]) }
        offset += 8
        return value
    }

    /// The next time (signed milliseconds since 1970).
    public mutating func time() -> Date? {
        u64().map { Date(timeIntervalSince1970: Double(Int64(bitPattern: $0)) / 1000) }
    }

    /// The next string (a big-endian UInt32 byte count, then UTF-8), or nil past the end or on invalid UTF-8.
    public mutating func string() -> String? {
        guard bytes.endIndex - offset >= 4 else { return nil }
        var count = 0
        for index in offset..<(offset + 4) { count = count << 8 | Int(bytes[index]) }
        guard bytes.endIndex - offset - 4 >= count else { return nil }
        let start = offset + 4
        offset = start + count
        return String(validating: bytes[start..<(start + count)], as: UTF8.self)
    }
}
