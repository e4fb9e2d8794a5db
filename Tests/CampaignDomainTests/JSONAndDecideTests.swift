import CampaignDomain
import Foundation
import Testing

@Suite struct JSONTests {
    @Test(arguments: [
        ("", "unexpected end of input"),
        ("{", "expected a string key"),
        (#"{"a":1,}"#, "expected a string key"),
        ("[1,]", "unexpected character"),
        (#"{"a":1,"a":2}"#, "duplicate key \"a\""),
        ("01", "leading zero in a number"),
        ("1e999", "number out of range"),
        ("-", "truncated number"),
        (#""\ud800""#, "lone surrogate in \\u escape"),
        ("\"a\u{01}b\"", "control character in a string"),
        (#""\x""#, "invalid escape"),
        ("nul", "invalid literal"),
        ("{} {}", "unexpected content after the JSON value"),
        ("NaN", "unexpected character"),
    ])
    func malformedDocumentsAreRejectedWithAReason(_ text: String, _ reason: String) {
        #expect(throws: JSONParseError.self) { try JSON.parse(text) }
        do { _ = try JSON.parse(text) } catch { #expect(error.reason == reason, "\(text)") }
    }

    @Test func invalidUTF8IsRejected() {
        let bytes: [UInt8] = [0x22, 0xff, 0xfe, 0x22]
        #expect(throws: JSONParseError.self) { try JSON.parse(bytes) }
    }

    @Test func nestingBeyondTheLimitIsRejected() {
        let deep = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        #expect(throws: JSONParseError.self) { try JSON.parse(deep) }
        #expect((try? JSON.parse(deep, limits: JSONLimits(maximumDepth: 50))) != nil)
    }

    @Test func oversizedDocumentsAreRejectedBeforeParsing() {
        #expect(throws: JSONParseError.self) { try JSON.parse("[1,2,3]", limits: JSONLimits(maximumBytes: 4)) }
    }

    @Test func escapesAndSurrogatePairsDecode() throws {
        #expect(try JSON.parse(#""\u00e9\ud83d\ude00\n\"\/""#) == .string("é😀\n\"/"))
    }

    @Test func encodingIsCanonicalWithSortedKeys() throws {
        let a = try JSON.parse(#"{"b":[1,2.5,true,null],"a":"x\ny","é":{"z":1,"y":-0.5}}"#)
        #expect(a.text == #"{"a":"x\ny","b":[1,2.5,true,null],"é":{"y":-0.5,"z":1}}"#)
        #expect(try JSON.parse(a.text) == a)
    }

    /// Byte order compares unsigned bytes, a prefix first; `compare` agrees with `precedes` and `==`.
    @Test func byteOrderComparesUnsignedBytesAPrefixFirst() {
        let keys: [[UInt8]] = [
            [], [0], [0, 0], [1], [1, 0], [0x7F], [0x80], [0xFF], [0xFF, 0xFF], [0x61, 0x62, 0x63],
        ]
        for a in keys {
            for b in keys {
                let order = ByteOrder.compare(a, b)
                #expect((order < 0) == ByteOrder.precedes(a, b))
                #expect((order == 0) == (a == b))
                #expect((order < 0) == a.lexicographicallyPrecedes(b))
            }
        }
    }

    /// An object keeps its members sorted by key bytes whichever way it was made, and tells keys
    /// apart by their bytes (RFC 8259 §8.3): a canonically equivalent spelling is another key.
    @Test func anObjectsMembersAreItsKeysInByteOrderToldApartByTheirBytes() throws {
        let composed = "\u{E9}"
        let decomposed = "e\u{301}"
        let parsed = try JSON.parse(#"{"\#(composed)":1,"\#(decomposed)":2,"e":3,"Z":4}"#)
        guard case let .object(members) = parsed else { return #expect(Bool(false), "not an object") }
        #expect(members.keys == ["Z", "e", decomposed, composed])
        #expect(members[composed] == .number(1) && members[decomposed] == .number(2))
        #expect(parsed.text == #"{"Z":4,"e":3,"\#(decomposed)":2,"\#(composed)":1}"#)
        // A literal, a dictionary and updates in any order make the same object.
        var built = JSONObject()
        for (key, value) in members.reversed() { built[key] = value }
        #expect(built == members)
        // (A Swift dictionary could not hold both spellings: its keys compare by canonical equivalence.)
        let pairs: [(String, JSON)] = [
            ("e", .number(3)), (composed, .number(1)), ("Z", .number(4)), (decomposed, .number(2)),
        ]
        #expect(JSONObject(uniqueKeysWithValues: pairs) == members)
        #expect(built.removeValue(forKey: "e") == .number(3) && built["e"] == nil && built.count == 3)
        built["Z"] = .null
        #expect(built.keys == ["Z", decomposed, composed] && built["Z"] == .null)
    }

    /// Past the few members that are scanned, lookups halve the object; every key is found in
    /// place, a missing one is not, and inserts keep the order.
    @Test func aLargeObjectFindsEveryKeyAndKeepsItsOrderAsItGrows() {
        var generator = SystemRandomNumberGenerator()
        var object = JSONObject()
        var reference = [String: JSON]()
        for step in 0..<400 {
            let key = String((0..<Int.random(in: 0...6, using: &generator)).map { _ in "ab\u{E9}c".randomElement()! })
            let value = JSON.number(Double(step))
            #expect(object.updateValue(value, forKey: key) == reference.updateValue(value, forKey: key))
            if step % 7 == 0, let victim = reference.keys.randomElement() {
                #expect(object.removeValue(forKey: victim) == reference.removeValue(forKey: victim))
            }
        }
        #expect(object.count == reference.count)
        #expect(object.keys == reference.keys.sorted { ByteOrder.precedes($0, $1) })
        for (key, value) in reference { #expect(object[key] == value, "\(key)") }
        #expect(object["missing"] == nil && object["abcabcab"] == nil)
        #expect(object == JSONObject(reference))
        // A merge in one pass gives what a dictionary's merge gives, either way round, with the
        // newer value or a combination kept where both have a key.
        var other = [String: JSON]()
        for step in 0..<300 {
            let key = String((0..<Int.random(in: 0...6, using: &generator)).map { _ in "abd\u{E9}".randomElement()! })
            other[key] = .number(Double(-step))
        }
        let sum: (JSON, JSON) -> JSON = { .number(($0.numberValue ?? 0) + ($1.numberValue ?? 0)) }
        #expect(object.merging(JSONObject(other)) { $1 } == JSONObject(reference.merging(other) { $1 }))
        #expect(
            JSONObject(other).merging(object, uniquingKeysWith: sum)
                == JSONObject(other.merging(reference, uniquingKeysWith: sum)))
        #expect(object.merging([:]) { $1 } == object && JSONObject().merging(object) { $1 } == object)
    }

    /// A repeated key fails at its second appearance, the first such in the document, however the
    /// members are ordered around it.
    @Test(arguments: [
        (#"{"b":1,"a":2,"b":3}"#, 13, "b"),
        (#"{"b":1,"a":2,"a":3,"b":4}"#, 13, "a"),
        (#"{"c":1,"c":2,"c":3,"a":1,"a":2}"#, 7, "c"),
        (#"{"z":{"q":1,"p":2,"q":3}}"#, 18, "q"),
    ])
    func aRepeatedKeyFailsAtItsFirstRepeat(_ text: String, _ offset: Int, _ key: String) {
        do {
            _ = try JSON.parse(text)
            Issue.record("\(text) parsed")
        } catch {
            #expect(error.offset == offset && error.reason == "duplicate key \"\(key)\"", "\(text): \(error)")
        }
    }

    /// Objects and arrays nested in each other, empty or not, come out whole: the parser keeps the
    /// members and elements of every open value in shared buffers and copies each one out.
    @Test func nestedObjectsAndArraysComeOutWhole() throws {
        let text = #"{"z":[1,{"y":[2,[]],"x":{}},[],{"w":[{"v":null}]}],"a":{"c":[true,"s"],"b":{"d":[[3]]}},"m":[]}"#
        let expected: JSON = .object([
            "z": .array([
                .number(1), .object(["y": .array([.number(2), .array([])]), "x": .object([:])]), .array([]),
                .object(["w": .array([.object(["v": .null])])]),
            ]),
            "a": .object([
                "c": .array([.bool(true), .string("s")]), "b": .object(["d": .array([.array([.number(3)])])]),
            ]),
            "m": .array([]),
        ])
        #expect(try JSON.parse(text) == expected)
        #expect(try JSON.parse(expected.bytes) == expected)
    }

    /// Keys already in byte order skip the sort, judged on the document's own bytes; an escaped
    /// key never counts as in order (its bytes are not its text), so keys whose escapes sort them
    /// differently, or repeat a key, are still sorted and caught.
    @Test func keysInOrderAreJudgedOnTheirTextNotTheirEscapes() throws {
        let inOrder = try JSON.parse(#"{"a":1,"b":2,"é":3}"#)
        #expect(inOrder.objectValue?.keys == ["a", "b", "é"])
        // `\u0063` is "c": after "b" though its escape's bytes come before "a".
        let escaped = try JSON.parse(#"{"\u0063":1,"a":2,"b":3}"#)
        #expect(escaped.objectValue?.keys == ["a", "b", "c"])
        #expect(escaped == (try JSON.parse(#"{"a":2,"b":3,"c":1}"#)))
        for (text, offset) in [(#"{"a":1,"\u0061":2}"#, 7), (#"{"a":1,"b":2,"b":3}"#, 13)] {
            do {
                _ = try JSON.parse(text)
                Issue.record("\(text) parsed")
            } catch {
                #expect(error.offset == offset && error.reason.hasPrefix("duplicate key"), "\(text): \(error)")
            }
        }
    }

    /// Past 32 members the parser sorts the whole object: a repeat is still found at its first
    /// repeat in the document, and an unrepeated object comes out in byte order.
    @Test func aLargeObjectsFirstRepeatIsFoundAndItsMembersSorted() throws {
        let members = (0..<40).reversed().map { #""k\#($0)":\#($0)"# }
        let unrepeated = "{" + members.joined(separator: ",") + "}"
        let keys = try JSON.parse(unrepeated).objectValue?.keys ?? []
        #expect(keys == (0..<40).map { "k\($0)" }.sorted { ByteOrder.precedes($0, $1) })
        let head = "{" + members.joined(separator: ",") + ","
        let text = head + #""k7":1,"k5":2,"k7":3}"#
        do {
            _ = try JSON.parse(text)
            Issue.record("a repeated key parsed")
        } catch {
            #expect(error.offset == head.utf8.count && error.reason == #"duplicate key "k7""#, "\(error)")
        }
    }

    /// Canonical strings and key order, against the rules written out byte by byte, on random
    /// strings of every length 0–40 with every escaped byte at every position; the parser's ASCII
    /// and validating paths read them back.
    @Test func anObjectSplicedFromEncodedMembersIsTheObjectsCanonicalEncoding() {
        let values: JSONObject = [
            "status": .number(201), "data": .object(["b": .array([.null, .bool(true)]), "a": .string("x\"y")]),
            "Zeta": .string("upper before lower"), "é": .number(-1.5), "ö-key": .string("non-ASCII"),
            "tab\tkey": .null, "": .string("empty key"), "requestId": .string("r-\\\"1\"\n"),
        ]
        // Every subset, in the order given and reversed: the splice sorts as the encoder does.
        let keys = values.keys.sorted()
        for mask in 0..<(1 << keys.count) {
            let chosen = keys.indices.filter { mask & (1 << $0) != 0 }.map { keys[$0] }
            let object = JSON.object(JSONObject(uniqueKeysWithValues: chosen.map { ($0, values[$0]!) }))
            let members = chosen.map { (key: $0, bytes: values[$0]!.bytes) }
            #expect(JSON.objectBytes(members) == object.bytes)
            #expect(JSON.objectBytes(members.reversed()) == object.bytes)
        }
    }

    @Test func escapingAndKeyOrderFollowTheByteRules() throws {
        let alphabet: [String] = [
            "a", "Z", "0", " ", "\"", "\\", "\n", "\r", "\t", "\u{01}", "\u{1f}", "\u{7f}", "é", "😀", "~",
        ]
        func expected(_ text: String) -> [UInt8] {
            var out = Array("\"".utf8)
            for byte in text.utf8 {
                switch byte {
                case 0x22: out += Array("\\\"".utf8)
                case 0x5C: out += Array("\\\\".utf8)
                case 0x0a: out += Array("\\n".utf8)
                case 0x0d: out += Array("\\r".utf8)
                case 0x09: out += Array("\\t".utf8)
                case 0..<0x20, 0x7f: out += Array(String(format: "\\u%04x", Int(byte)).utf8)
                default: out.append(byte)
                }
            }
            return out + Array("\"".utf8)
        }
        var generator = SystemRandomNumberGenerator()
        for length in 0...40 {
            for _ in 0..<40 {
                let text = (0..<length).map { _ in alphabet.randomElement(using: &generator)! }.joined()
                let plain = String(repeating: "x", count: length)
                #expect(JSON.string(text).bytes == expected(text), "\(text.debugDescription)")
                #expect(try JSON.parse(JSON.string(text).bytes) == .string(text))
                #expect(JSON.string(plain).text == "\"" + plain + "\"")
            }
        }
        for _ in 0..<200 {
            let keys = (0..<Int.random(in: 2...9)).map { _ in
                (0..<Int.random(in: 0...12)).map { _ in alphabet.randomElement(using: &generator)! }.joined()
            }
            let object = JSON.object(
                JSONObject(Dictionary(keys.map { ($0, JSON.null) }, uniquingKeysWith: { a, _ in a })))
            let order = Array(Set(keys)).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            let written =
                Array("{".utf8)
                + Array(order.map { expected($0) + Array(":null".utf8) }.joined(separator: Array(",".utf8)))
                + Array("}".utf8)
            #expect(object.bytes == written)
        }
    }
}

/// `JSON.member(_:of:)` reads one member without making the others: it must answer exactly as a
/// full parse followed by a lookup, for documents that parse and for every way one can fail to.
@Suite struct JSONMemberTests {
    static let documents: [String] = [
        #"{"contactId":"ctc_1","commitment":"ab","fields":["age","tier"]}"#,
        #" { "contactId" : "ctc_1" , "n" : -12.5e3 , "o" : { "a" : [ true , false , null ] } } "#,
        #"{"contactId":null}"#,
        #"{"contactId":{"nested":[1,{"contactId":"inner"}]}}"#,
        #"{"other":"x"}"#,
        #"{}"#,
        #"[{"contactId":"x"}]"#,
        #""contactId""#,
        #"{"contactId":"a","contactId":"b"}"#,
        #"{"x":{"k":1,"k":2},"contactId":"a"}"#,
        #"{"x":{"k":1,"l":2},"contactId":"a"}"#,
        #"{"contactId":"a"} trailing"#,
        #"{"contactId":"a",}"#,
        #"{"contactId":"a""#,
        #"{"contactId":"é ☀️ \u00e9 \ud83d\ude00"}"#,
        #"{"conta\u0063tId":"escaped key"}"#,
        #"{"contactId":"a","é":1,"é":2}"#,
        #"{"contactId":"a","e\u0301":1,"é":2}"#,
        #"{"x":"\ud800","contactId":"lone surrogate elsewhere"}"#,
        #"{"x":01,"contactId":"a"}"#,
        #"{"x":1.,"contactId":"a"}"#,
        #"{"x":tru,"contactId":"a"}"#,
        #"{"x":"tab\#there","contactId":"a"}"#,
        #"{"x":[1,2,],"contactId":"a"}"#,
        String(repeating: #"{"a":"#, count: 40) + "1" + String(repeating: "}", count: 40),
        #"{"contactId":"a","deep":"# + String(repeating: "[", count: 40) + String(repeating: "]", count: 40) + "}",
        #"{"contactId":"a","deep":"# + String(repeating: "[", count: 31) + String(repeating: "]", count: 31) + "}",
        #"{"salt":"ab","values":{"age":20,"country":"FR","email":"p@x.example","tier":"gold"}}"#,
        #"{"values":{"age":20,"x":{"age":"inner"},"country":null},"salt":"ab"}"#,
        #"{"values":[{"age":1}],"salt":"ab"}"#,
        #"{"values":{"age":1,"age":2},"salt":"ab"}"#,
        #"{"values":{"é":1,"age":3}}"#,
        #"{"values":{"a\u0067e":1,"country":"DE"}}"#,
        #"{"values":{"age":1},"values":{"age":2}}"#,
        #"{"values":{}}"#,
        // Text outside ASCII in members the scans pass over (accented names, symbols, emoji).
        #"{"x":"Zoë Ångström – Zürich ☕ 😀","contactId":"a"}"#,
        #"{"salt":"ab","values":{"note":"Łukasz Żółć, Kraków","age":3,"first_name":"日本"}}"#,
        // More keys than the scan keeps on the stack: distinct, then repeating an early and a late one.
        "{" + (0..<20).map { #""k\#($0)":\#($0),"# }.joined() + #""contactId":"many"}"#,
        "{" + (0..<20).map { #""k\#($0)":\#($0),"# }.joined() + #""k3":1,"contactId":"many"}"#,
        "{" + (0..<20).map { #""k\#($0)":\#($0),"# }.joined() + #""k16":1,"contactId":"many"}"#,
        "{" + (0..<20).map { #""k\#($0)":\#($0),"# }.joined() + #""k15":1,"contactId":"many"}"#,
    ]

    static func fullParse(_ name: String, _ bytes: [UInt8]) -> JSON? { (try? JSON.parse(bytes))?[name] }

    static let fields = ["age", "country", "é", "missing"]

    /// The selected members read into slots (``JSON/members(_:in:into:)``), each slot first holding
    /// a value the read must clear, made into an object by the selection's names.
    static func slots(_ outer: String, _ bytes: [UInt8]) -> JSONObject {
        let selection = JSONSelection(fields, of: outer)
        var slots = [JSON?](repeating: .string("left over"), count: selection.names.count)
        bytes.withUnsafeBytes { JSON.members(selection, in: $0, into: &slots) }
        var found: JSONObject = [:]
        for (name, value) in zip(selection.names, slots) { found[name] = value }
        return found
    }

    static func fullParse(_ names: [String], of outer: String, _ bytes: [UInt8]) -> JSONObject {
        ((try? JSON.parse(bytes))?[outer]?.objectValue ?? [:]).filter { names.contains($0.key) }
    }

    @Test func aMemberIsWhatAFullParseFindsForEveryDocument() {
        for document in Self.documents {
            let bytes = Array(document.utf8)
            for name in ["contactId", "x", "other", "é", "missing", "values"] {
                #expect(JSON.member(name, of: bytes) == Self.fullParse(name, bytes), "\(name) in \(document)")
            }
            for outer in ["values", "x", "contactId"] {
                #expect(
                    JSON.members(JSONSelection(Self.fields, of: outer), in: bytes)
                        == Self.fullParse(Self.fields, of: outer, bytes),
                    "\(outer) in \(document)")
                #expect(Self.slots(outer, bytes) == Self.fullParse(Self.fields, of: outer, bytes))
            }
        }
        // Invalid UTF-8 in a skipped string (each kind of ill-formed sequence, after text outside
        // ASCII that is well-formed), and in a key.
        let illFormed: [[UInt8]] = [
            [0xC3, 0x28], [0x80], [0xC0, 0x80], [0xE0, 0x9F, 0xBF], [0xED, 0xA0, 0x80], [0xF0, 0x8F, 0xBF, 0xBF],
            [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xE2, 0x82], [0xF0, 0x9F, 0x98],
        ]
        let before: [UInt8] = Array(#"{"x":"Zo\#u{EB} "#.utf8)
        let after: [UInt8] = Array(#"","contactId":"a"}"#.utf8)
        var broken: [[UInt8]] = illFormed.map { (sequence: [UInt8]) -> [UInt8] in before + sequence + after }
        broken.append(Array(#"{""#.utf8) + [0xFF] + Array(#"":1,"contactId":"a"}"#.utf8))
        for bytes in broken {
            #expect(JSON.member("contactId", of: bytes) == nil)
            #expect(Self.fullParse("contactId", bytes) == nil)
        }
        #expect(JSON.member("contactId", of: Array(Self.documents[0].utf8)) == .string("ctc_1"))
    }

    /// Every document above with bytes changed, dropped or doubled at random.
    @Test func aMemberIsWhatAFullParseFindsForDamagedDocuments() {
        var state: UInt64 = 7
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: state >> 33)
        }
        let alphabet =
            Array(#"{}[]":,\ tfn0123456789.e-+"u"#.utf8) + [
                0x00, 0x1F, 0x80, 0x8F, 0x9F, 0xA0, 0xBF, 0xC0, 0xC3, 0xE0, 0xE2, 0xE9, 0xED, 0xF0, 0xF4, 0xFF,
            ]
        var agreed = 0
        for document in Self.documents {
            for _ in 0..<400 {
                var bytes = Array(document.utf8)
                for _ in 0..<(1 + next() % 3) where !bytes.isEmpty {
                    let at = next() % bytes.count
                    switch next() % 3 {
                    case 0: bytes[at] = alphabet[next() % alphabet.count]
                    case 1: bytes.remove(at: at)
                    default: bytes.insert(bytes[at], at: at)
                    }
                }
                for name in ["contactId", "x"] {
                    let expected = Self.fullParse(name, bytes)
                    #expect(JSON.member(name, of: bytes) == expected, "\(name) in \(bytes)")
                    if expected != nil { agreed += 1 }
                }
                let expected = Self.fullParse(Self.fields, of: "values", bytes)
                #expect(
                    JSON.members(JSONSelection(Self.fields, of: "values"), in: bytes) == expected, "values in \(bytes)")
                #expect(Self.slots("values", bytes) == expected, "slots of values in \(bytes)")
                if !expected.isEmpty { agreed += 1 }
            }
        }
        #expect(agreed > 300, "enough damaged documents still parse")
    }

    /// A string's text parses exactly when it is well-formed UTF-8 as the standard library decides
    /// it, for random runs of bytes of every kind outside ASCII (the parser checks such text itself).
    @Test func textParsesExactlyWhenItIsWellFormedUTF8() {
        var state: UInt64 = 11
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: state >> 33)
        }
        let pool: [UInt8] = [
            0x61, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEF,
            0xF0, 0xF3, 0xF4, 0xF5, 0xFF,
        ]
        var wellFormed = 0
        for _ in 0..<20_000 {
            let text = (0..<(next() % 9)).map { _ in pool[next() % pool.count] }
            let valid = String(validating: text, as: UTF8.self)
            let parsed = try? JSON.parse([0x22] + text + [0x22])
            #expect(parsed == valid.map(JSON.string), "\(text)")
            // Passed over by a scan, it refuses the document exactly when it is not UTF-8.
            let document = Array(#"{"x":""#.utf8) + text + Array(#"","contactId":"a"}"#.utf8)
            #expect(JSON.member("contactId", of: document) == (valid == nil ? nil : .string("a")), "\(text)")
            if valid != nil { wellFormed += 1 }
        }
        #expect(wellFormed > 1_000 && wellFormed < 19_000, "both kinds of text were tried")
    }

    /// Strings of every length to 24 with one byte of each kind at every place, written eight bytes
    /// at a time where nothing needs escaping: each is escaped as the byte rules say.
    @Test func everyByteToEscapeIsEscapedWhereverItLies() {
        func escaped(_ byte: UInt8) -> [UInt8] {
            switch byte {
            case 0x22: return Array(#"\""#.utf8)
            case 0x5C: return Array(#"\\"#.utf8)
            case 0x0a: return Array(#"\n"#.utf8)
            case 0x0d: return Array(#"\r"#.utf8)
            case 0x09: return Array(#"\t"#.utf8)
            case 0..<0x20, 0x7f: return Array(String(format: "\\u%04x", Int(byte)).utf8)
            default: return [byte]
            }
        }
        let kinds: [[UInt8]] = (0..<0x20).map { [UInt8($0)] } + [[0x22], [0x5C], [0x7F], [0x20], [0x7E], [0xC3, 0xA9]]
        for length in 0...24 {
            for place in 0...length {
                for kind in kinds {
                    let filler = (0..<length).map { UInt8(ascii: "a") + UInt8($0 % 26) }
                    let content = Array(filler[..<place]) + kind + Array(filler[place...])
                    let text = String(decoding: content, as: UTF8.self)
                    let expected = [UInt8(ascii: "\"")] + content.flatMap(escaped) + [UInt8(ascii: "\"")]
                    #expect(JSON.string(text).bytes == expected, "\(content)")
                }
            }
        }
    }

    /// Strings of every length to 40 with one byte of each kind that ends a plain run (which the
    /// parser finds eight bytes at a time) at every place: parsed, skipped, or refused as the
    /// byte requires, checked against the text the string was made from.
    @Test func everyByteThatEndsAPlainRunIsFoundWhereverItLies() {
        // What goes in the string, and the text it stands for (nil: the string must be refused).
        let kinds: [(bytes: [UInt8], text: String?)] = [
            (Array(#"\""#.utf8), "\""), (Array(#"\\"#.utf8), "\\"), (Array(#"\u0041"#.utf8), "A"),
            ([0xC3, 0xA9], "é"), ([0x01], nil), ([0x1F], nil), ([0x7F], "\u{7F}"), ([0xFF], nil),
        ]
        for length in 0...40 {
            for place in 0...length {
                for kind in kinds {
                    let filler = (0..<length).map { UInt8(ascii: "a") + UInt8($0 % 26) }
                    let content = Array(filler[..<place]) + kind.bytes + Array(filler[place...])
                    let text = kind.text.map {
                        String(decoding: filler[..<place], as: UTF8.self) + $0
                            + String(decoding: filler[place...], as: UTF8.self)
                    }
                    let array = Array(#"[""#.utf8) + content + Array(#""]"#.utf8)
                    #expect((try? JSON.parse(array)) == text.map { .array([.string($0)]) }, "\(content)")
                    let object = Array(#"{"k":""#.utf8) + content + Array(#"","z":1}"#.utf8)
                    #expect(JSON.member("z", of: object) == (text == nil ? nil : .number(1)), "\(content)")
                }
                // Unterminated: the closing quote is missing.
                let open = Array(#"{"z":1,"k":""#.utf8) + (0..<length).map { _ in UInt8(ascii: "b") }
                #expect(JSON.member("z", of: open) == nil)
            }
        }
    }
}

@Suite struct IdentifierTests {
    @Test func anIdIsItsPrefixAnUnderscoreAndOneTo64SafeCharacters() {
        let valid = ["cmp_a", "cmp_Z9-_", "cmp_" + String(repeating: "x", count: 64), "cmp__"]
        let invalid = [
            "", "cmp", "cmp_", "cmpa", "cmpx_a", "cm_a", "CMP_a", "seg_a", "_cmp_a", "cmp_a b", "cmp_é", "cmp_a/b",
            "cmp_" + String(repeating: "x", count: 65), "cmp_a\u{0}",
        ]
        for id in valid { #expect(Identifier.isValid(id, prefix: "cmp"), "\(id)") }
        for id in invalid { #expect(!Identifier.isValid(id, prefix: "cmp"), "\(id)") }
        #expect(Identifier.isValid("experiment_x", prefix: "experiment"))
        #expect(!Identifier.isValid("experiment", prefix: "experiment"))
    }
}

@Suite struct TimestampTests {
    @Test func parsesOffsetsFractionsAndDates() {
        #expect(Timestamp.parse("2026-12-01T00:00:00Z") == Date(timeIntervalSince1970: 1_796_083_200))
        #expect(Timestamp.parse("2026-12-01T01:30:00+01:30") == Date(timeIntervalSince1970: 1_796_083_200))
        #expect(Timestamp.parse("2026-12-01T00:00:00.250Z") == Date(timeIntervalSince1970: 1_796_083_200.25))
        // Cut to the millisecond, as times are kept: what is compared is what is stored.
        #expect(Timestamp.parse("2026-12-01T00:00:00.0001Z") == Date(timeIntervalSince1970: 1_796_083_200))
        #expect(Timestamp.parse("2026-12-01T00:00:00.123999999Z") == Timestamp.parse("2026-12-01T00:00:00.123Z"))
        #expect(Timestamp.format(Timestamp.parse("2026-12-01T00:00:00.9999Z")!) == "2026-12-01T00:00:00.999Z")
        #expect(Timestamp.parse("2026-12-01", as: .dateValue) == Date(timeIntervalSince1970: 1_796_083_200))
        #expect(Timestamp.parse("2026-12-01") == nil)
        for bad in [
            "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z", "2026-12-01T24:00:00Z", "2026-12-01 00:00:00Z",
            "2026-12-01T00:00:00", "tomorrow",
        ] {
            #expect(Timestamp.parse(bad) == nil, "\(bad)")
        }
    }

    @Test func formatsInUTCWithMillisecondsOnlyWhenPresent() {
        #expect(Timestamp.format(Date(timeIntervalSince1970: 1_796_083_200)) == "2026-12-01T00:00:00Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: 1_796_083_200.5)) == "2026-12-01T00:00:00.500Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: 951_782_400)) == "2000-02-29T00:00:00Z")
    }

    /// Dates from 1860 to about 2400, each with its milliseconds, against Foundation's Gregorian
    /// calendar in UTC; each one's bytes as appended after other bytes are its text, and its text
    /// parsed and printed again is itself.
    @Test func formatsEveryDateAsTheGregorianCalendarReadsIt() throws {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = try #require(TimeZone(identifier: "UTC"))
        for step in -1_000..<4_000 {
            let millis = Int64(step) * 3_456_789_123 + Int64(step % 7 == 0 ? 0 : (step * 37) % 1_000)
            let date = Date(timeIntervalSince1970: Double(millis) / 1_000)
            let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
            let fraction = ((millis % 1_000) + 1_000) % 1_000
            let expected =
                String(
                    format: "%04d-%02d-%02dT%02d:%02d:%02d", parts.year!, parts.month!, parts.day!, parts.hour!,
                    parts.minute!, parts.second!) + (fraction == 0 ? "" : String(format: ".%03d", Int(fraction))) + "Z"
            #expect(Timestamp.format(date) == expected, "\(millis)")
            // Parsing takes years from 1970: those read back as the same text.
            if millis >= 0 { #expect(Timestamp.parse(expected).map(Timestamp.format) == expected) }
            var bytes = Array("x".utf8)
            Timestamp.append(date, to: &bytes)
            #expect(bytes == Array(("x" + expected).utf8))
        }
    }
}

/// `decide` and `evolve` need no database: a state is a fold of events, a decision a value.
@Suite struct CampaignDecideTests {
    let now = Timestamp.parse("2026-11-21T10:00:00Z")!
    var segment: SegmentState {
        SegmentState(
            id: "seg_1", name: "All", rules: .null, status: .active, createdAt: now, updatedAt: now, version: 1)
    }

    func state(_ events: [(String, JSONObject)]) -> CampaignState? {
        var state: CampaignState?
        for (index, (type, payload)) in events.enumerated() {
            state = Campaign.evolve(
                state, EventRecord(type: type, payload: .object(payload), occurredAt: now, version: UInt64(index + 1)))
        }
        return state
    }

    var draftWithSegment: CampaignState? {
        state([
            (
                "campaign.created",
                [
                    "campaignId": .string("cmp_1"), "name": .string("Spring"), "channel": .string("email"),
                    "content": .object(["subject": .string("Hi"), "body": .string("Hello")]),
                ]
            ),
            ("campaign.segmentAttached", ["campaignId": .string("cmp_1"), "segmentId": .string("seg_1")]),
        ])
    }

    @Test func schedulingInThePastIsInvalidSchedule() {
        let context = DecisionContext(now: now, tenant: "acme", segments: ["seg_1": segment])
        #expect(throws: CampaignError.self) {
            try Campaign.decide(
                .schedule(campaignId: "cmp_1", sendAt: now), state: draftWithSegment, context: context)
        }
        do {
            _ = try Campaign.decide(
                .schedule(campaignId: "cmp_1", sendAt: now), state: draftWithSegment, context: context)
        } catch { #expect(error.code == .invalidSchedule && error.pointer == "/sendAt") }
    }

    @Test func schedulingWithAnArchivedSegmentNeedsASegment() {
        var archived = segment
        archived.status = .archived
        do {
            _ = try Campaign.decide(
                .schedule(campaignId: "cmp_1", sendAt: now + 60), state: draftWithSegment,
                context: DecisionContext(now: now, tenant: "acme", segments: ["seg_1": archived]))
            Issue.record("expected SEGMENT_REQUIRED")
        } catch { #expect(error.code == .segmentRequired) }
    }

    @Test func schedulingEmitsOneEventAndEvolvesToScheduled() throws {
        let decision = try Campaign.decide(
            .schedule(campaignId: "cmp_1", sendAt: now + 3600), state: draftWithSegment,
            context: DecisionContext(now: now, tenant: "acme", segments: ["seg_1": segment]))
        #expect(decision.events.map(\.type) == ["campaign.scheduled"])
        let after = Campaign.evolve(
            draftWithSegment,
            EventRecord(type: "campaign.scheduled", payload: decision.events[0].payload, occurredAt: now, version: 3))
        #expect(after?.status == .scheduled && after?.sendAt == now + 3600 && after?.version == 3)
    }

    @Test func archivingReleasesTheNameAndRenamingMovesIt() throws {
        let context = DecisionContext(now: now, tenant: "acme")
        let archive = try Campaign.decide(
            .transition(.archive, campaignId: "cmp_1"), state: draftWithSegment, context: context)
        #expect(archive.releases.map(\.key) == [Campaign.nameKey(tenant: "acme", name: "Spring")])
        let rename = try Campaign.decide(
            .update(campaignId: "cmp_1", name: "Summer", channel: nil, content: nil), state: draftWithSegment,
            context: context)
        #expect(rename.reservations.map(\.key) == [Campaign.nameKey(tenant: "acme", name: "summer")])
        #expect(rename.releases.map(\.key) == [Campaign.nameKey(tenant: "acme", name: "SPRING")])
    }

    @Test func contactEventsCarryACommitmentAndNoPersonalValues() throws {
        let input = ContactInput(
            contactId: "ctc_1", attributes: ["email": .string("ann@example.com"), "age": .number(41)])
        let decision = try Contact.decideUpsert(
            input, state: nil, currentValues: [:],
            context: DecisionContext(now: now, tenant: "acme", salt: "00112233445566778899aabbccddeeff"))
        let text = decision.events[0].payload.text
        #expect(!text.contains("ann@example.com") && !text.contains("41"))
        #expect(
            decision.events[0].payload["commitment"]?.stringValue
                == Contact.commitment(values: input.attributes, salt: "00112233445566778899aabbccddeeff"))
        #expect(decision.personalData.first?.values == input.attributes)
    }
}
