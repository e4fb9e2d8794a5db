import CampaignDomain
import EventStore

/// The fixed keys of a JSON object the engine writes once per event of the log (an exported
/// CloudEvent, a replayed audit line), each made bytes once with what goes before it (`{` or `,`)
/// and after it (`:`), so the object is written member by member in key order, with the same bytes
/// as its JSON tree's canonical encoding but without making the tree or sorting it.
struct MemberKeys: Sendable {
    private let prefixes: [[UInt8]]

    /// The keys, which must be in key order (by their UTF-8 bytes) and need no escaping.
    init(_ names: [String]) {
        precondition(zip(names, names.dropFirst()).allSatisfy { ByteOrder.precedes($0, $1) }, "keys out of order")
        prefixes = names.enumerated().map { index, name in Array("\(index == 0 ? "{" : ",")\"\(name)\":".utf8) }
    }

    /// Appends member `index`'s key, with what goes before it and after it.
    func append(_ index: Int, to out: inout [UInt8]) {
        out.append(contentsOf: prefixes[index])
    }

    /// Whether member `index` is `name` (for an assertion at the call that writes it).
    func names(_ index: Int, _ name: StaticString) -> Bool {
        prefixes[index].dropFirst(2).starts(with: name.description.utf8)
    }
}

/// Values written into such an object as its JSON tree would encode them.
enum EventDocument {
    /// A string whose value is `head` followed by what `tail` appends (bytes no JSON string
    /// escapes), as one escaped string.
    static func appendString(_ head: String, to out: inout [UInt8], _ tail: (inout [UInt8]) -> Void) {
        JSON.appendString(head, to: &out)
        out.removeLast()
        tail(&out)
        out.append(UInt8(ascii: "\""))
    }

    /// `bytes` as lower-case hexadecimal, as `hexString` writes them.
    static func appendHex(_ bytes: [UInt8], to out: inout [UInt8]) {
        let digits: StaticString = "0123456789abcdef"
        let table = digits.utf8Start
        for byte in bytes {
            out.append(table[Int(byte >> 4)])
            out.append(table[Int(byte & 0x0f)])
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

    /// A whole number as the JSON tree's `.number(Double(value))` encodes it.
    static func appendNumber(_ value: UInt64, to out: inout [UInt8]) {
        if value < 1_000_000_000_000_000 {
            appendDigits(value, to: &out)
        } else {
            JSON.appendNumber(Double(value), to: &out)
        }
    }

    /// A stored payload as the tree's `(try? JSON.parse(payload)) ?? .null` encodes it: parsed, so
    /// that it comes out canonical (`null` when it is not JSON).
    static func appendPayload(_ payload: [UInt8], to out: inout [UInt8]) {
        ((try? JSON.parse(payload)) ?? .null).append(to: &out)
    }
}
