import CampaignDomain
import EventStore
import Foundation
import Hashing

/// The fixed keys of a JSON object the engine writes once per event of the log (an exported
/// CloudEvent, a replayed audit line), each made bytes once with what goes before it (`{` or `,`)
/// and after it (`:`), so that ``DocumentWriter`` writes the object member by member in key order,
/// with the same bytes as its JSON tree's canonical encoding but without making the tree or sorting
/// it.
struct MemberKeys: Sendable {
    private let prefixes: [[UInt8]]

    /// The keys, which must be in key order (by their UTF-8 bytes) and need no escaping.
    init(_ names: [String]) {
        precondition(zip(names, names.dropFirst()).allSatisfy { ByteOrder.precedes($0, $1) }, "keys out of order")
        prefixes = names.enumerated().map { index, name in Array("\(index == 0 ? "{" : ",")\"\(name)\":".utf8) }
    }

    /// How many keys there are.
    var count: Int { prefixes.count }

    /// Appends member `index`'s key, with what goes before it and after it.
    func append(_ index: Int, to out: inout [UInt8]) {
        out.append(contentsOf: prefixes[index])
    }

    /// Whether member `index` is `name` (checked by an assertion where it is written).
    func names(_ index: Int, _ name: StaticString) -> Bool {
        prefixes[index].dropFirst(2).starts(with: name.description.utf8)
    }
}

/// Writes one object of ``MemberKeys`` into a buffer, a member a call, each value as the JSON
/// tree's canonical encoding writes it; the members must come in the keys' order (checked in debug
/// builds).
struct DocumentWriter {
    private let keys: MemberKeys
    private var next = 0
    private var bytes: [UInt8] = []

    private init(_ keys: MemberKeys) { self.keys = keys }

    /// Appends the object `members` writes to `out`: the buffer is moved into the writer and back,
    /// never copied.
    static func append(_ keys: MemberKeys, to out: inout [UInt8], _ members: (inout DocumentWriter) -> Void) {
        var writer = DocumentWriter(keys)
        swap(&writer.bytes, &out)
        members(&writer)
        assert(writer.next == keys.count, "members left out")
        writer.bytes.append(UInt8(ascii: "}"))
        swap(&writer.bytes, &out)
    }

    private mutating func key(_ name: StaticString) {
        assert(keys.names(next, name), "member \(name) out of order")
        keys.append(next, to: &bytes)
        next += 1
    }

    /// A string member whose value is `head` followed by what `tail` appends (bytes no JSON string
    /// escapes), escaped as one string.
    mutating func string(_ name: StaticString, _ head: String, _ tail: (inout [UInt8]) -> Void = { _ in }) {
        key(name)
        JSON.appendString(head, to: &bytes)
        bytes.removeLast()
        tail(&bytes)
        bytes.append(UInt8(ascii: "\""))
    }

    /// A string member: `value` as lower-case hexadecimal, as `hexString` writes it.
    mutating func hex(_ name: StaticString, _ value: [UInt8]) {
        string(name, "") { Hex.append(value, to: &$0) }
    }

    /// A string member: `date` as ``Timestamp/format(_:)`` writes it.
    mutating func time(_ name: StaticString, _ date: Date) {
        string(name, "") { Timestamp.append(date, to: &$0) }
    }

    /// A number member: a whole number as the tree's `.number(Double(value))` encodes it.
    mutating func number(_ name: StaticString, _ value: UInt64) {
        key(name)
        if value < 1_000_000_000_000_000 {
            DocumentWriter.appendDigits(value, to: &bytes)
        } else {
            JSON.appendNumber(Double(value), to: &bytes)
        }
    }

    /// A member whose value is a stored payload, as the tree's `(try? JSON.parse(payload)) ?? .null`
    /// encodes it: copied when it is canonical already (as the engine writes payloads), else parsed
    /// and encoded (`null` when it is not JSON).
    mutating func payload(_ name: StaticString, _ payload: [UInt8]) {
        key(name)
        if JSON.isCanonical(payload) {
            bytes.append(contentsOf: payload)
        } else {
            ((try? JSON.parse(payload)) ?? .null).append(to: &bytes)
        }
    }

    /// `value` in decimal, zero-padded to `width` digits (at most 24).
    static func appendDigits(_ value: UInt64, width: Int = 0, to out: inout [UInt8]) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for UInt64's 20 digits
        withUnsafeMutableBytes(of: &digits) { buffer in
            var rest = value
            var index = buffer.count
            repeat {
                index -= 1
                buffer[index] = UInt8(48 + rest % 10)
                rest /= 10
            } while rest > 0
            while buffer.count - index < min(width, buffer.count) {
                index -= 1
                buffer[index] = 48
            }
            out.append(contentsOf: buffer[index...])
        }
    }
}
