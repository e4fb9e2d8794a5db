import CampaignCLI
import CampaignDomain
import Foundation
import Testing

/// `JSON.isCanonical` lets the export copy a payload instead of parsing and encoding it again, so
/// whatever it accepts must be exactly what the writer writes for the value the bytes parse to.
@Suite struct CanonicalJSONTests {
    /// A random value within what the scan decides: ASCII text (quotes, backslashes, control
    /// characters, DEL included), whole numbers below 10^15, nesting up to `depth`.
    func value(_ random: inout SeededRandom, depth: Int) -> JSON {
        func text() -> String {
            let alphabet = Array(" az09_-:\"\\/\u{0}\u{7}\u{8}\u{9}\u{A}\u{C}\u{D}\u{1F}\u{7F}~{}[],")
            return String(
                (0..<Int.random(in: 0...8, using: &random)).map { _ in alphabet.randomElement(using: &random)! })
        }
        switch Int.random(in: 0..<(depth > 0 ? 8 : 5), using: &random) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &random))
        case 2: return .number(Double(Int64.random(in: -999_999_999_999_999...999_999_999_999_999, using: &random)))
        case 3: return .number(Double(Int.random(in: -3...3, using: &random)))
        case 4: return .string(text())
        case 5: return .array((0..<Int.random(in: 0...4, using: &random)).map { _ in value(&random, depth: depth - 1) })
        default:
            var members = [String: JSON]()
            for _ in 0..<Int.random(in: 0...5, using: &random) {
                // Keys are written without escapes when they need none: letters, digits and `_`.
                let key = String(
                    (0..<Int.random(in: 0...6, using: &random)).map { _ in
                        Array("abAB_09z").randomElement(using: &random)!
                    })
                members[key] = value(&random, depth: depth - 1)
            }
            return .object(JSONObject(members))
        }
    }

    @Test func theWritersBytesAreCanonicalAndWhatItAcceptsIsWhatTheWriterWrites() throws {
        var random = SeededRandom(seed: 2026)
        let mutations = Array(#" "\{}[],:0123456789-.eEtrufalsn\u/x"#.utf8) + [0x00, 0x1F, 0x7F, 0xC3, 0xA9, 0xFF]
        var accepted = 0
        for round in 0..<3_000 {
            let document = value(&random, depth: 4)
            let bytes = document.bytes
            #expect(JSON.isCanonical(bytes), "round \(round): \(document.text)")
            #expect((try? JSON.parse(bytes))?.bytes == bytes)
            // Changed at one to three places, it must be refused unless it is still exactly what the
            // writer writes for what it parses to.
            for _ in 0..<10 {
                var changed = bytes
                for _ in 0..<Int.random(in: 1...3, using: &random) {
                    let at = Int.random(in: 0...changed.count, using: &random)
                    let byte = mutations.randomElement(using: &random)!
                    switch Int.random(in: 0..<3, using: &random) {
                    case 0: changed.insert(byte, at: at)
                    case 1 where at < changed.count: changed[at] = byte
                    default: if at < changed.count { changed.remove(at: at) }
                    }
                }
                if JSON.isCanonical(changed) {
                    accepted += 1
                    #expect((try? JSON.parse(changed))?.bytes == changed, "\(String(decoding: changed, as: UTF8.self))")
                }
            }
        }
        #expect(accepted > 100)  // the property was exercised on changed documents, not only refused ones
    }

    @Test(arguments: [
        "", " 1", "1 ", "{ }", #"{"a":1 }"#, "-0", "01", "1.0", "1e3", "1E3", "1000000000000000", "-1000000000000000",
        #""\/""#, #""\u0041""#, #""\u000a""#, #""\u001F""#, #""\b""#, #""\u0009""#, #"{"b":1,"a":2}"#,
        #"{"a":1,"a":1}"#, #"{"\n":1}"#, "\"\u{E9}\"", "\"a\u{1}\"", "\"\u{7F}\"", "tru", "nulls", "[1,]", "[,1]",
        "{,}",
        String(repeating: "[", count: 17) + String(repeating: "]", count: 17),
    ])
    func whatTheWriterNeverWritesOrTheScanDoesNotDecideIsRefused(_ text: String) {
        #expect(!JSON.isCanonical(Array(text.utf8)))
    }

    @Test(arguments: [
        "0", "-7", "999999999999999", "-999999999999999", "true", "null", "[]", "{}", #""""#,
        #"{"A":1,"_":2,"a":[true,false,null,"x\"y\\z\n\r\t\u0000\u001f\u007f"]}"#,
        String(repeating: "[", count: 16) + String(repeating: "]", count: 16),
    ])
    func whatTheWriterWritesIsAccepted(_ text: String) throws {
        #expect(JSON.isCanonical(Array(text.utf8)))
        #expect(try JSON.parse(text).text == text)
    }
}
