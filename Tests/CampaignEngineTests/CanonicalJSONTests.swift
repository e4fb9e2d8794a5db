import CampaignCLI
import CampaignDomain
import Foundation
import Testing

/// `JSON.isCanonical` lets the export copy a payload instead of parsing and encoding it again, so
/// whatever it accepts must be exactly what the writer writes for the value the bytes parse to.
@Suite struct CanonicalJSONTests {
    /// A random value within what the scan decides: text (quotes, backslashes, control characters,
    /// DEL, and characters of two, three and four UTF-8 bytes included), whole numbers below 10^15,
    /// nesting up to `depth`.
    func value(_ random: inout SeededRandom, depth: Int) -> JSON {
        func text() -> String {
            let alphabet = Array(
                " az09_-:\"\\/\u{0}\u{7}\u{8}\u{9}\u{A}\u{C}\u{D}\u{1F}\u{7F}~{}[],\u{E9}\u{80}\u{7FF}\u{800}\u{2028}"
                    + "\u{D7FF}\u{E000}\u{FEFF}\u{FFFD}\u{FFFF}\u{10000}\u{1F600}\u{10FFFF}日本")
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
                // Keys are written without escapes when they need none: letters, digits, `_` and
                // text outside ASCII (ordered by its bytes).
                let key = String(
                    (0..<Int.random(in: 0...6, using: &random)).map { _ in
                        Array("abAB_09z\u{E9}\u{FF}\u{20AC}\u{1F600}").randomElement(using: &random)!
                    })
                members[key] = value(&random, depth: depth - 1)
            }
            return .object(JSONObject(members))
        }
    }

    @Test func theWritersBytesAreCanonicalAndWhatItAcceptsIsWhatTheWriterWrites() throws {
        var random = SeededRandom(seed: 2026)
        // Bytes outside ASCII among them: leads and continuations, so that a change makes text that
        // is not well-formed UTF-8 (a lone or missing continuation, an overlong form, a surrogate).
        let mutations =
            Array(#" "\{}[],:0123456789-.eEtrufalsn\u/x"#.utf8)
            + [0x00, 0x1F, 0x7F, 0x80, 0x9F, 0xA9, 0xBF, 0xC0, 0xC3, 0xE0, 0xED, 0xF0, 0xF4, 0xF5, 0xFF]
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
        #"{"a":1,"a":1}"#, #"{"\n":1}"#, #"{"\u00e9":1}"#, #""\u00e9""#, "{\"\u{E9}\":1,\"z\":2}", "\"a\u{1}\"",
        "\"\u{7F}\"", "tru", "nulls", "[1,]", "[,1]",
        "{,}",
        String(repeating: "[", count: 17) + String(repeating: "]", count: 17),
    ])
    func whatTheWriterNeverWritesOrTheScanDoesNotDecideIsRefused(_ text: String) {
        #expect(!JSON.isCanonical(Array(text.utf8)))
    }

    @Test(arguments: [
        "0", "-7", "999999999999999", "-999999999999999", "true", "null", "[]", "{}", #""""#,
        #"{"A":1,"_":2,"a":[true,false,null,"x\"y\\z\n\r\t\u0000\u001f\u007f"]}"#,
        "\"\u{E9}\"", "{\"z\":\"caf\u{E9} \u{2615} \u{1F600}\",\"\u{E9}\":[\"\u{10FFFF}\u{FEFF}\"]}",
        String(repeating: "[", count: 16) + String(repeating: "]", count: 16),
    ])
    func whatTheWriterWritesIsAccepted(_ text: String) throws {
        #expect(JSON.isCanonical(Array(text.utf8)))
        #expect(try JSON.parse(text).text == text)
    }

    /// Text that is not well-formed UTF-8 does not parse, so it is never canonical: each case is a
    /// string holding one such sequence (Unicode's table 3-7).
    @Test(
        arguments: [
            [0x80], [0xBF], [0xC0, 0x80], [0xC1, 0xBF], [0xC3], [0xC3, 0x41], [0xE0, 0x80, 0x80], [0xE0, 0x9F, 0xBF],
            [0xE2, 0x82], [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF], [0xF0, 0x80, 0x80, 0x80], [0xF0, 0x8F, 0xBF, 0xBF],
            [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xFF], [0xF0, 0x9F, 0x98],
        ] as [[UInt8]])
    func textThatIsNotWellFormedUTF8IsRefused(_ sequence: [UInt8]) {
        let bytes = Array(#"{"a":"x"#.utf8) + sequence + Array(#"y"}"#.utf8)
        #expect((try? JSON.parse(bytes)) == nil)
        #expect(!JSON.isCanonical(bytes))
        // The same sequence in a key.
        #expect(!JSON.isCanonical([UInt8(ascii: "{"), UInt8(ascii: "\"")] + sequence + Array(#"":1}"#.utf8)))
    }
}
