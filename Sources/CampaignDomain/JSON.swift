import Foundation

/// A JSON value. The engine parses requests into it with its own strict parser (so that a
/// duplicate key, a lone surrogate or invalid UTF-8 is an error, and every error has a byte
/// offset), and writes events and responses from it with sorted keys, so equal values always
/// give equal bytes (request fingerprints and hashed payloads depend on that).
public enum JSON: Sendable, Equatable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number; integers are exact up to 2^53.
    case number(Double)
    /// A string.
    case string(String)
    /// An array.
    case array([JSON])
    /// An object: its members sorted by key bytes, keys unique.
    case object(JSONObject)

    /// The value of `key` when this is an object.
    public subscript(key: String) -> JSON? {
        if case let .object(members) = self { return members[key] }
        return nil
    }

    /// The string, when this is one.
    public var stringValue: String? {
        if case let .string(value) = self { return value }
        return nil
    }

    /// The number, when this is one.
    public var numberValue: Double? {
        if case let .number(value) = self { return value }
        return nil
    }

    /// The integer, when this is a number with no fraction within ±2^53.
    public var integerValue: Int? {
        guard case let .number(value) = self, value.rounded() == value, abs(value) <= 9_007_199_254_740_992 else {
            return nil
        }
        return Int(value)
    }

    /// The boolean, when this is one.
    public var boolValue: Bool? {
        if case let .bool(value) = self { return value }
        return nil
    }

    /// The elements, when this is an array.
    public var arrayValue: [JSON]? {
        if case let .array(value) = self { return value }
        return nil
    }

    /// The members, when this is an object.
    public var objectValue: JSONObject? {
        if case let .object(value) = self { return value }
        return nil
    }

    /// The JSON type's name, for error messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    /// Whether arrays and objects nest more than `levels` deep in this value, the value itself
    /// being level 1 when it is one. Walked without recursion, and never below level `levels` + 1,
    /// so a value built deeper than a thread's stack could encode is judged at little cost.
    public func nests(deeperThan levels: Int) -> Bool {
        switch self {
        case .array, .object: break
        default: return false
        }
        var pending: [(value: JSON, level: Int)] = [(self, 1)]
        while let (value, level) = pending.popLast() {
            switch value {
            case let .array(items):
                guard level <= levels else { return true }
                pending += items.lazy.map { ($0, level + 1) }
            case let .object(members):
                guard level <= levels else { return true }
                pending += members.lazy.map { ($0.value, level + 1) }
            default:
                break
            }
        }
        return false
    }
}

// MARK: - Writing

extension JSON {
    /// Canonical UTF-8 bytes: no white space, object keys sorted by their UTF-8 bytes.
    public var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(256)
        write(into: &out)
        return out
    }

    /// The canonical text: ``bytes`` as a string (no white space, keys sorted by their UTF-8 bytes).
    public var text: String { String(decoding: bytes, as: UTF8.self) }

    /// Appends the canonical bytes of the string `value` (quoted and escaped, as ``bytes`` writes
    /// it) to `out`: for a caller that writes a document around values it already has as bytes.
    public static func appendString(_ value: String, to out: inout [UInt8]) {
        writeString(value, into: &out)
    }

    /// Appends the value's canonical bytes (``bytes``) to `out`, for a caller writing a document
    /// around it.
    public func append(to out: inout [UInt8]) {
        write(into: &out)
    }

    /// Appends the canonical bytes of the number `value` (as ``bytes`` writes it) to `out`.
    public static func appendNumber(_ value: Double, to out: inout [UInt8]) {
        out.append(contentsOf: format(value).utf8)
    }

    /// The canonical bytes of an object whose member values are already encoded (each its value's
    /// ``bytes``): the same bytes as ``bytes`` of the object of those values, without encoding
    /// them again. Keys must be unique.
    public static func objectBytes(_ members: [(key: String, bytes: [UInt8])]) -> [UInt8] {
        // Members given in key order (as the engine's answers are) are written as they are.
        let inOrder = zip(members, members.dropFirst()).allSatisfy { ByteOrder.precedes($0.key, $1.key) }
        let sorted = inOrder ? members : members.sorted { ByteOrder.precedes($0.key, $1.key) }
        var out = [UInt8]()
        out.reserveCapacity(sorted.reduce(2) { $0 + $1.key.utf8.count + $1.bytes.count + 4 })
        out.append(UInt8(ascii: "{"))
        for (index, member) in sorted.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            JSON.writeString(member.key, into: &out)
            out.append(UInt8(ascii: ":"))
            out += member.bytes
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    private func write(into out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case let .bool(value): out.append(contentsOf: (value ? "true" : "false").utf8)
        case let .number(value): out.append(contentsOf: JSON.format(value).utf8)
        case let .string(value): JSON.writeString(value, into: &out)
        case let .array(values):
            out.append(UInt8(ascii: "["))
            for (index, value) in values.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                value.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case let .object(members):
            out.append(UInt8(ascii: "{"))
            // The members are kept in key order: nothing to sort.
            for (index, member) in members.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSON.writeString(member.key, into: &out)
                out.append(UInt8(ascii: ":"))
                member.value.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func format(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        if value.rounded() == value, abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    /// Whether `bytes` hold no byte a string must escape (a control byte, a quote, a backslash,
    /// DEL), looked at eight at a time: a byte at a time, the scan was a sixth of a campaign answer's
    /// encoding.
    private static func escapesNothing(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var index = 0
        if let base = bytes.baseAddress {
            while index + 8 <= bytes.count {
                let word = EightBytes.load(base, index)
                let found =
                    EightBytes.has(0x22, in: word) | EightBytes.has(0x5C, in: word) | EightBytes.has(0x7F, in: word)
                    | EightBytes.hasBelow(0x20, in: word)
                if found != 0 { return false }
                index += 8
            }
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte < 0x20 || byte == 0x22 || byte == 0x5C || byte == 0x7f { return false }
            index += 1
        }
        return true
    }

    private static func writeString(_ value: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Fast path: most strings are native and need no escaping; they are scanned and copied
        // as one buffer.
        let copied: Bool? = value.utf8.withContiguousStorageIfAvailable { bytes in
            guard escapesNothing(bytes) else { return false }
            out.append(contentsOf: bytes)
            return true
        }
        if copied == true {
            out.append(UInt8(ascii: "\""))
            return
        }
        let hex = Array("0123456789abcdef".utf8)
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [92, 34])
            case UInt8(ascii: "\\"): out.append(contentsOf: [92, 92])
            case 0x0a: out.append(contentsOf: [92, UInt8(ascii: "n")])
            case 0x0d: out.append(contentsOf: [92, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [92, UInt8(ascii: "t")])
            case 0..<0x20, 0x7f:
                out.append(contentsOf: [92, UInt8(ascii: "u"), 48, 48, hex[Int(byte >> 4)], hex[Int(byte & 0xf)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

// MARK: - Canonical bytes

extension JSON {
    /// Whether `bytes` are exactly the canonical bytes (``bytes``) of the value they parse to, so
    /// that a writer may copy them where it would parse them and encode the value again. Decided in
    /// one scan and conservatively: false for anything it does not decide cheaply (a key with an
    /// escape, a number that is not a whole one below 10^15, nesting deeper than 16, more than
    /// 1 MiB), which must then be parsed; never true for bytes that do not parse (text that is not
    /// well-formed UTF-8 included), or that parse to a value encoded otherwise.
    public static func isCanonical(_ bytes: [UInt8]) -> Bool {
        guard bytes.count <= 1 << 20 else { return false }
        return bytes.withUnsafeBufferPointer { buffer in
            var scanner = CanonicalScanner(bytes: buffer)
            return scanner.value(depth: 0) && scanner.index == buffer.count
        }
    }
}

/// Well-formed UTF-8, checked in place: what `String(validating:as:)` accepts, without making a
/// string (and without the run-time type lookup that generic initializer makes on every call).
enum UTF8Sequence {
    /// The length of the well-formed sequence of two to four bytes at `index` of `bytes`
    /// (Unicode's table 3-7: no overlong form, no surrogate, nothing past U+10FFFF), or nil.
    static func length(in bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> Int? {
        guard index < bytes.count else { return nil }
        let length: Int
        var second: ClosedRange<UInt8> = 0x80...0xBF
        switch bytes[index] {
        case 0xC2...0xDF: length = 2
        case 0xE0:
            length = 3
            second = 0xA0...0xBF
        case 0xED:
            length = 3
            second = 0x80...0x9F
        case 0xE1...0xEF: length = 3
        case 0xF0:
            length = 4
            second = 0x90...0xBF
        case 0xF4:
            length = 4
            second = 0x80...0x8F
        case 0xF1...0xF3: length = 4
        default: return nil
        }
        guard index + length <= bytes.count, second.contains(bytes[index + 1]) else { return nil }
        for offset in 2..<length where !(0x80...0xBF).contains(bytes[index + offset]) { return nil }
        return length
    }

    /// Whether all of `bytes` is well-formed UTF-8.
    static func isWellFormed(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var index = 0
        while index < bytes.count {
            if bytes[index] < 0x80 {
                index += 1
            } else if let length = length(in: bytes, at: index) {
                index += length
            } else {
                return false
            }
        }
        return true
    }
}

/// The scan behind ``JSON/isCanonical(_:)``: each rule is the writer's (``JSON/bytes``) read
/// backwards: no white space; object keys in strictly increasing byte order (so no repeats);
/// strings of printable ASCII and well-formed UTF-8 beyond it, with only the writer's escapes
/// (`\"`, `\\`, `\n`, `\r`, `\t`, and `\u00xx` in lower case for the other control bytes and DEL);
/// numbers as the writer prints a whole number below 10^15 (no `-0`, no leading zero).
private struct CanonicalScanner {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0

    init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    private func at(_ offset: Int) -> UInt8? {
        index + offset < bytes.count ? bytes[index + offset] : nil
    }

    mutating func value(depth: Int) -> Bool {
        guard let byte = at(0) else { return false }
        switch byte {
        case UInt8(ascii: "{"): return container(depth: depth + 1, object: true)
        case UInt8(ascii: "["): return container(depth: depth + 1, object: false)
        case UInt8(ascii: "\""): return string(isKey: false) != nil
        case UInt8(ascii: "t"): return literal("true")
        case UInt8(ascii: "f"): return literal("false")
        case UInt8(ascii: "n"): return literal("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return number()
        default: return false
        }
    }

    /// An object or an array, its opening byte at `index`.
    private mutating func container(depth: Int, object: Bool) -> Bool {
        guard depth <= 16 else { return false }
        let close = object ? UInt8(ascii: "}") : UInt8(ascii: "]")
        index += 1
        if at(0) == close {
            index += 1
            return true
        }
        var previousKey: Range<Int>?
        while true {
            if object {
                guard let key = string(isKey: true) else { return false }
                if let previousKey {
                    let ordered = ByteOrder.precedes(
                        UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[previousKey])),
                        UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[key])))
                    guard ordered else { return false }
                }
                previousKey = key
                guard at(0) == UInt8(ascii: ":") else { return false }
                index += 1
            }
            guard value(depth: depth) else { return false }
            switch at(0) {
            case UInt8(ascii: ","): index += 1
            case close:
                index += 1
                return true
            default: return false
            }
        }
    }

    /// A string at `index`: the range of its bytes between the quotes, or nil when it is not as
    /// the writer writes strings (a key may hold no escape at all: keys are ordered by their
    /// unescaped bytes).
    private mutating func string(isKey: Bool) -> Range<Int>? {
        guard at(0) == UInt8(ascii: "\"") else { return nil }
        index += 1
        let start = index
        while let byte = at(0) {
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return start..<(index - 1)
            case UInt8(ascii: "\\"):
                guard !isKey, let escaped = at(1) else { return nil }
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    index += 2
                case UInt8(ascii: "u"):
                    // `\u00xx`, lower-case hexadecimal, for a control byte the writer has no short
                    // escape for, or DEL.
                    guard at(2) == UInt8(ascii: "0"), at(3) == UInt8(ascii: "0"), let high = at(4).flatMap(Self.hex),
                        let low = at(5).flatMap(Self.hex)
                    else { return nil }
                    let code = high << 4 | low
                    guard (code < 0x20 && code != 0x09 && code != 0x0A && code != 0x0D) || code == 0x7F else {
                        return nil
                    }
                    index += 6
                default: return nil
                }
            case 0x20...0x7E: index += 1
            case 0xC2...0xF4:
                // Text outside ASCII, which the writer copies as it is: one well-formed UTF-8
                // sequence (what the parser's validation accepts), in a key as in a value (keys are
                // ordered by their bytes).
                guard let length = UTF8Sequence.length(in: bytes, at: index) else { return nil }
                index += length
            default: return nil  // a control byte, DEL, or a byte that starts no UTF-8 sequence
            }
        }
        return nil
    }

    /// A lower-case hexadecimal digit's value.
    private static func hex(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        default: nil
        }
    }

    /// A whole number as the writer prints one below 10^15: `0`, or an optional `-` and 1–15 digits
    /// without a leading zero, not followed by a fraction or an exponent.
    private mutating func number() -> Bool {
        let negative = at(0) == UInt8(ascii: "-")
        if negative { index += 1 }
        var digits = 0
        let first = at(0)
        while let byte = at(0), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
            digits += 1
            index += 1
        }
        guard digits > 0, digits <= 15, first != UInt8(ascii: "0") || (digits == 1 && !negative) else { return false }
        switch at(0) {
        case UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"): return false
        default: return true
        }
    }

    private mutating func literal(_ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { return false }
        index += count
        return true
    }
}

// MARK: - Parsing

/// Hard limits on what the parser accepts; inputs beyond them are rejected, never truncated.
public struct JSONLimits: Sendable {
    /// The largest document, in bytes.
    public var maximumBytes: Int
    /// The deepest nesting of arrays and objects.
    public var maximumDepth: Int

    /// The smallest limits a request can pass: 1,024 bytes, nesting 3 (a request's principal is an
    /// object in it, and its scopes an array in that). An engine refuses smaller ones.
    public static let smallestUsable = JSONLimits(maximumBytes: 1_024, maximumDepth: 3)

    /// Defaults: 64 MiB (a 100,000-contact import fits), nesting 32.
    public init(maximumBytes: Int = 64 << 20, maximumDepth: Int = 32) {
        self.maximumBytes = maximumBytes
        self.maximumDepth = maximumDepth
    }
}

/// Why a document is not JSON, and where.
public struct JSONParseError: Error, Equatable, Sendable {
    /// The byte offset of the problem.
    public var offset: Int
    /// What is wrong there, such as `invalid literal` or `duplicate key "name"`.
    public var reason: String
}

extension JSON {
    /// Parses one JSON document (RFC 8259, strictly: no duplicate keys, no lone surrogates,
    /// valid UTF-8 only, nothing after the value but white space).
    public static func parse(_ bytes: [UInt8], limits: JSONLimits = JSONLimits()) throws(JSONParseError) -> JSON {
        guard bytes.count <= limits.maximumBytes else {
            throw JSONParseError(
                offset: limits.maximumBytes, reason: "document is larger than \(limits.maximumBytes) bytes")
        }
        // The parser reads the bytes through a buffer pointer: no bounds checks or reference
        // counting per byte (every index is checked against `count` by the parser itself).
        return try bytes.withUnsafeBufferPointer { (buffer) throws(JSONParseError) -> JSON in
            var parser = Parser(bytes: buffer, maximumDepth: limits.maximumDepth)
            return try parser.document()
        }
    }

    /// Parses a string's UTF-8 bytes.
    public static func parse(_ text: String, limits: JSONLimits = JSONLimits()) throws(JSONParseError) -> JSON {
        try parse(Array(text.utf8), limits: limits)
    }

    /// The object `bytes` holds, parsed as ``parse(_:limits:)`` would parse it, except that its
    /// top-level member `name` is not made into a value: its value is checked as strictly and left
    /// as the range of bytes it takes (nil when the member is absent). Nil when the document is not
    /// an object, does not parse, or has a top-level key with an escape or a byte outside ASCII:
    /// the caller then parses it whole, for the same value or the same error.
    public static func parse(
        _ bytes: [UInt8], limits: JSONLimits, keepingRaw name: String
    ) -> (members: JSONObject, raw: Range<Int>?)? {
        guard bytes.count <= limits.maximumBytes else { return nil }
        let key = Array(name.utf8)
        return bytes.withUnsafeBufferPointer { buffer in
            var parser = Parser(bytes: buffer, maximumDepth: limits.maximumDepth)
            var members: [JSONObject.Element] = []
            var raw: Range<Int>?
            do throws(Parser.Skip) {
                try parser.document { parser, keyRange throws(Parser.Skip) in
                    if parser.same(keyRange, key) {
                        let start = parser.index
                        try parser.skipValue()
                        raw = start..<parser.index
                    } else {
                        let text = String(decoding: UnsafeBufferPointer(rebasing: buffer[keyRange]), as: UTF8.self)
                        members.append((text, try parser.make()))
                    }
                }
            } catch {
                return nil
            }
            // The scan refused repeated keys, so sorting finds none.
            guard case let .success(sorted) = JSONObject.sorted(members) else { return nil }
            return (JSONObject(sortedUnique: sorted), raw)
        }
    }

    /// Member `name` of the object `bytes` holds: exactly what `(try? JSON.parse(bytes))?[name]`
    /// gives (nil when the document does not parse, is not an object or lacks the member), with
    /// the other members checked as strictly but not made into values. Where a key holds an escape
    /// or a byte outside ASCII (which the full parse decodes or validates), it parses the whole
    /// document instead.
    public static func member(_ name: String, of bytes: [UInt8]) -> JSON? {
        let key = Array(name.utf8)
        switch scan(bytes, { (parser) throws(Parser.Skip) in try parser.member(named: key) }) {
        case let .success(value): return value
        case .failure(.invalid): return nil
        case .failure(.unsure): return (try? parse(bytes))?[name]
        }
    }

    /// The selected members of the object that is the selection's member of the object `bytes`
    /// holds: exactly `(try? JSON.parse(bytes))?[outer]?.objectValue ?? [:]` kept to the selected
    /// names (empty when the document does not parse, or the outer member is absent or not an
    /// object), with everything else checked as strictly but not made. Falls back to the full parse
    /// as ``member(_:of:)`` does.
    public static func members(_ selection: JSONSelection, in bytes: [UInt8]) -> JSONObject {
        bytes.withUnsafeBytes { members(selection, in: $0) }
    }

    /// ``members(_:in:)-([UInt8])`` of bytes the caller lends (a stored value read in place).
    public static func members(_ selection: JSONSelection, in bytes: UnsafeRawBufferPointer) -> JSONObject {
        var values = [JSON?](repeating: nil, count: selection.names.count)
        members(selection, in: bytes, into: &values)
        // The names are in byte order, the order an object keeps its members in.
        return JSONObject(
            sortedUnique: zip(selection.names, values).compactMap { name, value in value.map { (name, $0) } })
    }

    /// ``members(_:in:)-([UInt8])`` into `values`, one slot a selected name (its index in
    /// ``JSONSelection/names``; nil where the member is absent): no object is made, and a caller
    /// that reads many documents with one selection reuses one array.
    public static func members(
        _ selection: JSONSelection, in bytes: UnsafeRawBufferPointer, into values: inout [JSON?]
    ) {
        precondition(values.count == selection.names.count, "one value slot a selected name")
        for index in values.indices { values[index] = nil }
        let buffer = bytes.assumingMemoryBound(to: UInt8.self)
        let outcome = values.withUnsafeMutableBufferPointer { slots in
            scan(buffer) { (parser) throws(Parser.Skip) in try parser.members(selection, into: slots) }
        }
        switch outcome {
        case .success: return
        case .failure(.invalid):
            for index in values.indices { values[index] = nil }
        case .failure(.unsure):
            let all = (try? parse(Array(buffer)))?[selection.outer]?.objectValue ?? [:]
            for (index, name) in selection.names.enumerated() { values[index] = all[name] }
        }
    }

    /// Runs a scan over `bytes` with the default limits (a document over the size limit is
    /// ``Parser/Skip/invalid``, as it fails to parse).
    private static func scan<T>(
        _ bytes: [UInt8], _ body: (inout Parser) throws(Parser.Skip) -> T
    ) -> Result<T, Parser.Skip> {
        bytes.withUnsafeBufferPointer { scan($0, body) }
    }

    /// Runs a scan over bytes the caller lends, as ``scan(_:_:)-([UInt8],_)`` does.
    private static func scan<T>(
        _ buffer: UnsafeBufferPointer<UInt8>, _ body: (inout Parser) throws(Parser.Skip) -> T
    ) -> Result<T, Parser.Skip> {
        let limits = JSONLimits()
        guard buffer.count <= limits.maximumBytes else { return .failure(.invalid) }
        var parser = Parser(bytes: buffer, maximumDepth: limits.maximumDepth)
        do throws(Parser.Skip) {
            return .success(try body(&parser))
        } catch {
            return .failure(error)
        }
    }
}

/// Member names for ``JSON/members(_:in:)``, with their bytes made once.
public struct JSONSelection: Sendable {
    /// The member holding the object whose members are wanted.
    public let outer: String
    let outerBytes: [UInt8]
    /// The selected names, each once, in the byte order of their UTF-8: a name's index here is
    /// its slot in ``JSON/members(_:in:into:)``.
    public let names: [String]
    /// The names' UTF-8 back to back, and where each name's bytes end in it.
    let nameBytes: [UInt8]
    let nameEnds: [Int]

    /// Selects the members `names` of the object in member `outer`.
    public init(_ names: some Collection<String>, of outer: String) {
        self.outer = outer
        outerBytes = Array(outer.utf8)
        self.names = Set(names).sorted(by: ByteOrder.precedes)
        var bytes = [UInt8]()
        var ends = [Int]()
        for name in self.names {
            bytes.append(contentsOf: name.utf8)
            ends.append(bytes.count)
        }
        nameBytes = bytes
        nameEnds = ends
    }

    /// The slot of `name`, or nil when it is not selected.
    public func slot(of name: String) -> Int? {
        names.firstIndex(of: name)
    }
}

private struct Parser {
    let bytes: UnsafeBufferPointer<UInt8>
    let maximumDepth: Int
    var index = 0
    var depth = 0

    init(bytes: UnsafeBufferPointer<UInt8>, maximumDepth: Int) {
        self.bytes = bytes
        self.maximumDepth = maximumDepth
    }

    func fail(_ reason: String, at offset: Int? = nil) -> JSONParseError {
        JSONParseError(offset: offset ?? index, reason: reason)
    }

    mutating func document() throws(JSONParseError) -> JSON {
        skipWhiteSpace()
        let value = try self.value()
        skipWhiteSpace()
        guard index == bytes.count else { throw fail("unexpected content after the JSON value") }
        return value
    }

    mutating func skipWhiteSpace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0a, 0x0d: index += 1
            default: return
            }
        }
    }

    mutating func value() throws(JSONParseError) -> JSON {
        guard index < bytes.count else { throw fail("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"):
            try literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try literal("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        default: throw fail("unexpected character")
        }
    }

    mutating func literal(_ word: StaticString) throws(JSONParseError) {
        let count = word.utf8CodeUnitCount
        guard bytes.count - index >= count,
            memcmp(bytes.baseAddress! + index, word.utf8Start, count) == 0
        else { throw fail("invalid literal") }
        index += count
    }

    mutating func enter() throws(JSONParseError) {
        depth += 1
        guard depth <= maximumDepth else { throw fail("nesting deeper than \(maximumDepth)") }
    }

    mutating func object() throws(JSONParseError) -> JSON {
        let start = index
        try enter()
        index += 1
        skipWhiteSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            depth -= 1
            return .object(JSONObject())
        }
        // Room for most objects' members at once: grown from empty, an object of five members
        // was allocated four times.
        var members: [JSONObject.Element] = []
        members.reserveCapacity(8)
        // Whether the keys so far came in strictly rising byte order with no escapes, compared in
        // the document itself: then the members are already sorted and unique (as every event's
        // payload, written canonically, is), and need no comparison of strings.
        var inOrder = true
        var previousKey: UnsafeBufferPointer<UInt8>?
        while true {
            skipWhiteSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let keyStart = index + 1
            let key = try string()
            if inOrder {
                let raw = UnsafeBufferPointer(rebasing: bytes[keyStart..<(index - 1)])
                // An escape always takes more bytes than what it stands for.
                inOrder = raw.count == key.utf8.count && (previousKey.map { Parser.precedes($0, raw) } ?? true)
                previousKey = raw
            }
            skipWhiteSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            index += 1
            skipWhiteSpace()
            members.append((key, try self.value()))
            skipWhiteSpace()
            guard index < bytes.count else { throw fail("unexpected end of input in an object") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            if bytes[index] == UInt8(ascii: "}") {
                index += 1
                break
            }
            throw fail("expected ',' or '}'")
        }
        depth -= 1
        if inOrder { return .object(JSONObject(sortedUnique: members)) }
        switch JSONObject.sorted(members) {
        case let .success(sorted): return .object(JSONObject(sortedUnique: sorted))
        case let .failure(repeated):
            throw fail("duplicate key \"\(repeated.key)\"", at: keyOffset(repeated.index, inObjectAt: start))
        }
    }

    /// Whether `a` comes strictly before `b` in byte order.
    static func precedes(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        let shared = min(a.count, b.count)
        let order = shared == 0 ? 0 : memcmp(a.baseAddress!, b.baseAddress!, shared)
        return order != 0 ? order < 0 : a.count < b.count
    }

    /// Where the key of member `member` of the object at `start` begins (the object already
    /// parsed once): a repeated key's offset, found again only when there is one to report.
    func keyOffset(_ member: Int, inObjectAt start: Int) -> Int {
        var again = Parser(bytes: bytes, maximumDepth: maximumDepth)
        again.index = start + 1
        for _ in 0..<member {
            again.skipWhiteSpace()
            _ = try? again.string()
            again.skipWhiteSpace()
            again.index += 1  // ':'
            again.skipWhiteSpace()
            _ = try? again.value()
            again.skipWhiteSpace()
            again.index += 1  // ','
        }
        again.skipWhiteSpace()
        return again.index
    }

    mutating func array() throws(JSONParseError) -> JSON {
        try enter()
        index += 1
        skipWhiteSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            depth -= 1
            return .array([])
        }
        var elements = [JSON]()
        elements.reserveCapacity(4)
        while true {
            skipWhiteSpace()
            elements.append(try value())
            skipWhiteSpace()
            guard index < bytes.count else { throw fail("unexpected end of input in an array") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            if bytes[index] == UInt8(ascii: "]") {
                index += 1
                break
            }
            throw fail("expected ',' or ']'")
        }
        depth -= 1
        return .array(elements)
    }

    /// Why a scan (``member(named:)``, ``members(_:)``) gave up: the document is not JSON, or it
    /// holds a key the scan does not compare itself (the caller parses the whole document then).
    enum Skip: Error {
        case invalid
        case unsure
    }

    /// The value of the top-level member `name` (nil when absent), every other value checked as
    /// ``value()`` would check it but not made. `name` must be ASCII without escapes to be found.
    mutating func member(named name: [UInt8]) throws(Skip) -> JSON? {
        var found: JSON?
        try document { parser, key throws(Skip) in
            if parser.same(key, name) { found = try parser.make() } else { try parser.skipValue() }
        }
        return found
    }

    /// The selected members of the object that is the selection's top-level member (none when it
    /// is absent or not an object) into their slots, everything else checked but not made. Written
    /// as loops, not through ``skipObject(_:)``'s closure: a `segments` rebuild reads every
    /// contact's values this way, and the closures, their captures and an object made and sorted
    /// for each contact were most of the cost.
    mutating func members(_ selection: JSONSelection, into slots: UnsafeMutableBufferPointer<JSON?>) throws(Skip) {
        skipWhiteSpace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { throw .unsure }
        try withUnsafeTemporaryAllocation(of: Range<Int>.self, capacity: 16) { (first) throws(Skip) in
            var keys = Keys(first: first)
            guard try open(closing: UInt8(ascii: "}")) else { return }
            repeat {
                let key = try memberKey(&keys)
                if same(key, selection.outerBytes), index < bytes.count, bytes[index] == UInt8(ascii: "{") {
                    try selected(selection, into: slots)
                } else {
                    try skipValue()
                }
            } while try more(closing: UInt8(ascii: "}"))
            depth -= 1
        }
        skipWhiteSpace()
        guard index == bytes.count else { throw .invalid }
    }

    /// The inner object of ``members(_:into:)``: each member whose key is a selected name is made
    /// into its slot, every other one checked.
    private mutating func selected(
        _ selection: JSONSelection, into slots: UnsafeMutableBufferPointer<JSON?>
    ) throws(Skip) {
        try withUnsafeTemporaryAllocation(of: Range<Int>.self, capacity: 16) { (first) throws(Skip) in
            var keys = Keys(first: first)
            guard try open(closing: UInt8(ascii: "}")) else { return }
            try selection.nameBytes.withUnsafeBufferPointer { (names) throws(Skip) in
                try selection.nameEnds.withUnsafeBufferPointer { (ends) throws(Skip) in
                    repeat {
                        let key = try memberKey(&keys)
                        var slot = -1
                        var start = 0
                        for (at, end) in ends.enumerated() {
                            if end - start == key.count,
                                key.isEmpty
                                    || memcmp(
                                        bytes.baseAddress! + key.lowerBound, names.baseAddress! + start, key.count) == 0
                            {
                                slot = at
                                break
                            }
                            start = end
                        }
                        if slot >= 0 { slots[slot] = try make() } else { try skipValue() }
                    } while try more(closing: UInt8(ascii: "}"))
                }
            }
            depth -= 1
        }
    }

    /// Checks a document that is an object, handing each member to `member` positioned at its
    /// value (which it must read or skip).
    mutating func document(_ member: (inout Parser, Range<Int>) throws(Skip) -> Void) throws(Skip) {
        skipWhiteSpace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { throw .unsure }
        try skipObject(member)
        skipWhiteSpace()
        guard index == bytes.count else { throw .invalid }
    }

    /// ``value()``, its failure as ``Skip/invalid``.
    mutating func make() throws(Skip) -> JSON {
        do { return try value() } catch { throw .invalid }
    }

    /// Whether the bytes in `range` are `other`.
    func same(_ range: Range<Int>, _ other: [UInt8]) -> Bool {
        range.count == other.count
            && other.withUnsafeBytes { other in
                other.isEmpty || memcmp(bytes.baseAddress! + range.lowerBound, other.baseAddress!, other.count) == 0
            }
    }

    /// Checks an object as ``object()`` does, handing each member to `member` positioned at its
    /// value (which it must read or skip). Keys are compared as bytes, so one with an escape or a
    /// byte outside ASCII is ``Skip/unsure``; a repeated key is ``Skip/invalid``, as in ``object()``.
    mutating func skipObject(_ member: (inout Parser, Range<Int>) throws(Skip) -> Void) throws(Skip) {
        // The keys seen, to refuse a repeated one: the first 16 on the stack, any more on the heap.
        try withUnsafeTemporaryAllocation(of: Range<Int>.self, capacity: 16) { (first) throws(Skip) in
            var keys = Keys(first: first)
            try skipObject(member, keys: &keys)
        }
    }

    /// The keys of one object being checked.
    struct Keys {
        let first: UnsafeMutableBufferPointer<Range<Int>>
        var count = 0
        var more: [Range<Int>] = []

        /// Adds `key`; false when an equal one is there already.
        mutating func insert(_ key: Range<Int>, in bytes: UnsafeBufferPointer<UInt8>) -> Bool {
            func same(_ other: Range<Int>) -> Bool {
                other.count == key.count
                    && memcmp(bytes.baseAddress! + other.lowerBound, bytes.baseAddress! + key.lowerBound, key.count)
                        == 0
            }
            for index in 0..<min(count, first.count) where same(first[index]) { return false }
            if more.contains(where: same) { return false }
            if count < first.count { first[count] = key } else { more.append(key) }
            count += 1
            return true
        }
    }

    private mutating func skipObject(
        _ member: (inout Parser, Range<Int>) throws(Skip) -> Void, keys: inout Keys
    ) throws(Skip) {
        guard try open(closing: UInt8(ascii: "}")) else { return }
        repeat {
            let key = try memberKey(&keys)
            try member(&self, key)
        } while try more(closing: UInt8(ascii: "}"))
        depth -= 1
    }

    /// Reads a member's key and the `:` after it, leaving the parser at its value: the key's
    /// bytes (inside the quotes), refused when `keys` holds it already. A key with an escape or a
    /// byte outside ASCII is ``Skip/unsure`` (compared as bytes, it might equal another).
    private mutating func memberKey(_ keys: inout Keys) throws(Skip) -> Range<Int> {
        skipWhiteSpace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw .invalid }
        index += 1
        let start = index
        // The plain run ends at the closing quote, or at a byte the key may not hold as it is.
        index = plainEnd(from: index)
        guard index < bytes.count else { throw .invalid }
        switch bytes[index] {
        case UInt8(ascii: "\""): break
        case UInt8(ascii: "\\"), 0x80...: throw .unsure
        default: throw .invalid
        }
        let key = start..<index
        index += 1
        guard keys.insert(key, in: bytes) else { throw .invalid }
        skipWhiteSpace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw .invalid }
        index += 1
        skipWhiteSpace()
        return key
    }

    /// Enters the object or array whose opening byte is next: false, and out of it again, when it
    /// is empty (`close` follows).
    mutating func open(closing close: UInt8) throws(Skip) -> Bool {
        do { try enter() } catch { throw .invalid }
        index += 1
        skipWhiteSpace()
        guard index < bytes.count, bytes[index] == close else { return true }
        index += 1
        depth -= 1
        return false
    }

    /// After a member or an element: true past a `,`, false past `close`.
    mutating func more(closing close: UInt8) throws(Skip) -> Bool {
        skipWhiteSpace()
        guard index < bytes.count else { throw .invalid }
        let byte = bytes[index]
        guard byte == UInt8(ascii: ",") || byte == close else { throw .invalid }
        index += 1
        return byte == UInt8(ascii: ",")
    }

    /// Checks a value as ``value()`` does without making it.
    mutating func skipValue() throws(Skip) {
        guard index < bytes.count else { throw .invalid }
        switch bytes[index] {
        case UInt8(ascii: "{"): try skipObject { parser, _ throws(Skip) in try parser.skipValue() }
        case UInt8(ascii: "["): try skipArray()
        case UInt8(ascii: "\""): try skipString()
        default:
            // A literal or a number: nothing to allocate.
            do { _ = try value() } catch { throw .invalid }
        }
    }

    /// Checks a string as ``string()`` does: one of plain ASCII is read past, any other is parsed.
    mutating func skipString() throws(Skip) {
        let start = index
        index += 1
        while true {
            index = plainEnd(from: index)
            guard index < bytes.count else { throw .invalid }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return
            }
            // Text outside ASCII is checked in place (making a string of it to drop it was a sixth
            // of a `segments` rebuild over contacts with accented names); an escape, a control byte
            // or a byte that is not UTF-8 goes to the full parse, which decides.
            guard byte >= 0x80, let length = UTF8Sequence.length(in: bytes, at: index) else { break }
            index += length
        }
        index = start
        do { _ = try string() } catch { throw .invalid }
    }

    /// The index of the first byte at or after `start` that ends a run of plain ASCII in a string
    /// (a quote, a backslash, a control byte or a byte outside ASCII), or the end. Eight bytes are
    /// looked at at once while none of them is such a byte.
    func plainEnd(from start: Int) -> Int {
        var index = start
        if let base = bytes.baseAddress {
            while index + 8 <= bytes.count {
                let word = EightBytes.load(base, index)
                let found =
                    EightBytes.hasHigh(word) | EightBytes.has(0x22, in: word) | EightBytes.has(0x5C, in: word)
                    | EightBytes.hasBelow(0x20, in: word)
                if found != 0 { break }
                index += 8
            }
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 || byte >= 0x80 { return index }
            index += 1
        }
        return index
    }

    /// Checks an array as ``array()`` does without making it.
    mutating func skipArray() throws(Skip) {
        guard try open(closing: UInt8(ascii: "]")) else { return }
        while true {
            skipWhiteSpace()
            try skipValue()
            guard try more(closing: UInt8(ascii: "]")) else { break }
        }
        depth -= 1
    }

    mutating func number() throws(JSONParseError) -> Double {
        let start = index
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        func digits(_ parser: inout Parser) -> Int {
            let from = parser.index
            while parser.index < parser.bytes.count, (48...57).contains(parser.bytes[parser.index]) {
                parser.index += 1
            }
            return parser.index - from
        }
        guard index < bytes.count else { throw fail("truncated number") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if index < bytes.count, (48...57).contains(bytes[index]) { throw fail("leading zero in a number") }
        } else if digits(&self) == 0 {
            throw fail("invalid number")
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard digits(&self) > 0 else { throw fail("digits expected after '.'") }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                index += 1
            }
            guard digits(&self) > 0 else { throw fail("digits expected in the exponent") }
        }
        guard index - start <= 64 else { throw fail("number literal longer than 64 characters", at: start) }
        // Fast path: a plain integer of at most 15 digits is exact as a Double.
        let negative = bytes[start] == UInt8(ascii: "-")
        let digitsStart = negative ? start + 1 : start
        if index - digitsStart <= 15, bytes[digitsStart..<index].allSatisfy({ (48...57).contains($0) }) {
            var value: Int64 = 0
            for byte in bytes[digitsStart..<index] { value = value * 10 + Int64(byte - 48) }
            return Double(negative ? -value : value)
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        guard let value = Double(text), value.isFinite else { throw fail("number out of range", at: start) }
        return value
    }

    mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard bytes.count - index >= 4 else { throw fail("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case 48...57: digit = UInt32(byte - 48)
            case 65...70: digit = UInt32(byte - 55)
            case 97...102: digit = UInt32(byte - 87)
            default: throw fail("invalid \\u escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    mutating func string() throws(JSONParseError) -> String {
        let start = index
        index += 1
        // Fast path: no escapes, so the string is the bytes between the quotes. ASCII text (nearly
        // every key and value) is copied into a string without validation, other text after
        // ``UTF8Sequence`` checks it: the generic `String(validating:as:)` looks up type metadata
        // at run time on every call, which cost more than the rest of the parse.
        let contentStart = index
        var high: UInt8 = 0
        while index < bytes.count {
            // Plain ASCII leaves `high` below 0x80: it is passed eight bytes at a time.
            index = plainEnd(from: index)
            guard index < bytes.count else { break }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let content = UnsafeBufferPointer(rebasing: bytes[contentStart..<index])
                guard high < 0x80 || UTF8Sequence.isWellFormed(content) else {
                    throw fail("string is not valid UTF-8", at: start)
                }
                let text = String(decoding: content, as: UTF8.self)
                index += 1
                return text
            }
            if byte == UInt8(ascii: "\\") || byte < 0x20 { break }
            high |= byte
            index += 1
        }
        index = contentStart
        var out = [UInt8]()
        var runStart = index
        while true {
            guard index < bytes.count else { throw fail("unterminated string", at: start) }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                out.append(contentsOf: bytes[runStart..<index])
                index += 1
                break
            }
            if byte < 0x20 { throw fail("control character in a string") }
            if byte != UInt8(ascii: "\\") {
                index += 1
                continue
            }
            out.append(contentsOf: bytes[runStart..<index])
            index += 1
            guard index < bytes.count else { throw fail("unterminated escape") }
            let escape = bytes[index]
            index += 1
            switch escape {
            case UInt8(ascii: "\""): out.append(34)
            case UInt8(ascii: "\\"): out.append(92)
            case UInt8(ascii: "/"): out.append(47)
            case UInt8(ascii: "b"): out.append(8)
            case UInt8(ascii: "f"): out.append(12)
            case UInt8(ascii: "n"): out.append(10)
            case UInt8(ascii: "r"): out.append(13)
            case UInt8(ascii: "t"): out.append(9)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800...0xDBFF).contains(scalar) {
                    guard bytes.count - index >= 2, bytes[index] == 92, bytes[index + 1] == UInt8(ascii: "u") else {
                        throw fail("lone surrogate in \\u escape")
                    }
                    index += 2
                    let low = try hex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw fail("invalid surrogate pair") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    throw fail("lone surrogate in \\u escape")
                }
                out.append(contentsOf: String(Character(Unicode.Scalar(scalar)!)).utf8)
            default: throw fail("invalid escape")
            }
            runStart = index
        }
        guard let text = String(validating: out, as: UTF8.self) else {
            throw fail("string is not valid UTF-8", at: start)
        }
        return text
    }
}

/// Tests of eight bytes at once, read as one word: each is non-zero exactly when some byte of the
/// word passes (a borrow may set bits above the first such byte, but none in a word of none).
enum EightBytes {
    static let ones: UInt64 = 0x0101_0101_0101_0101
    static let highs: UInt64 = 0x8080_8080_8080_8080

    /// The eight bytes at `offset` from `base`.
    @inline(__always) static func load(_ base: UnsafePointer<UInt8>, _ offset: Int) -> UInt64 {
        UnsafeRawPointer(base + offset).loadUnaligned(as: UInt64.self)
    }

    /// Non-zero when some byte of `word` is `byte` (a zero byte of their difference).
    @inline(__always) static func has(_ byte: UInt8, in word: UInt64) -> UInt64 {
        let difference = word ^ (ones &* UInt64(byte))
        return (difference &- ones) & ~difference & highs
    }

    /// Non-zero when some byte of `word` is below `limit` (at most 0x80).
    @inline(__always) static func hasBelow(_ limit: UInt8, in word: UInt64) -> UInt64 {
        (word &- ones &* UInt64(limit)) & ~word & highs
    }

    /// Non-zero when some byte of `word` is outside ASCII.
    @inline(__always) static func hasHigh(_ word: UInt64) -> UInt64 { word & highs }
}
