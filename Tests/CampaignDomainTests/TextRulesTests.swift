import CampaignDomain
import Testing

/// The text rules read bytes a word at a time; these tests hold them to the rules as stated, one
/// scalar at a time, on text that puts every kind of character at every offset in a word.
@Suite struct TextRulesTests {
    /// Characters a text may hold or not, with their neighbours in UTF-8 (the same lead bytes).
    private static let pieces = [
        "a", " ", "~", "0123456789", "\t", "\n", "\r", "\u{0}", "\u{1B}", "\u{1F}", "\u{7F}", "\u{80}",
        "\u{85}", "\u{9F}", "\u{A0}", "\u{BF}", "\u{C0}", "\u{E9}", "\u{142}", "\u{200B}", "\u{2028}",
        "\u{202E}", "\u{FEFF}", "\u{20AC}", "\u{1F600}", "\u{10FFFF}",
    ]

    /// The first control character multiline (or one-line) text may not hold, a scalar at a time.
    private func firstControlByScalars(_ text: String, multiline: Bool) -> Unicode.Scalar? {
        text.unicodeScalars.first {
            ($0.value < 0x20 || (0x7F...0x9F).contains($0.value))
                && !(multiline && ($0 == "\t" || $0 == "\n" || $0 == "\r"))
        }
    }

    @Test func controlCharactersAreFoundAsAScalarWalkFindsThem() {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<3_000 {
            // Mostly plain text, so that words of eight printable bytes are skipped and the
            // character to find falls anywhere in a word or after one.
            var text = ""
            for _ in 0..<Int.random(in: 0...40, using: &generator) {
                text +=
                    Int.random(in: 0..<6, using: &generator) == 0
                    ? Self.pieces.randomElement(using: &generator)! : "plain"
            }
            for multiline in [false, true] {
                let expected = firstControlByScalars(text, multiline: multiline).map {
                    "body must not contain control characters (found U+"
                        + String($0.value, radix: 16, uppercase: true).leftPadded(4) + ")"
                }
                #expect(
                    TextRules.controlCharacterMessage(text, field: "body", multiline: multiline) == expected,
                    "round \(round), multiline \(multiline): \(text.unicodeScalars.map(\.value))")
            }
        }
    }

    @Test func printableASCIIEndsAtTheFirstOtherByte() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let bytes = (0..<Int.random(in: 0...40, using: &generator)).map { _ in
                Int.random(in: 0..<8, using: &generator) == 0
                    ? UInt8.random(in: 0...255, using: &generator) : UInt8.random(in: 0x20...0x7E, using: &generator)
            }
            let start = Int.random(in: 0...bytes.count, using: &generator)
            let expected = bytes[start...].firstIndex { !(0x20...0x7E).contains($0) } ?? bytes.count
            #expect(bytes.withUnsafeBufferPointer { TextRules.printableASCIIEnd($0, from: start) } == expected)
        }
    }

    @Test func textShowsNothingOnlyWhenEveryCharacterIsBlankOrIgnorable() {
        for blank in ["", " ", "\t\n\r ", "\u{200B}", "\u{FEFF} \u{2028}", "\u{A0}\u{3000}"] {
            #expect(TextRules.showsNothing(blank), "\(blank.unicodeScalars.map(\.value))")
        }
        for shown in ["a", "~", " a", "\u{200B}x", "\u{E9}", "\u{1F600}", "\u{0}", "\u{7F}", "  \u{85}."] {
            #expect(!TextRules.showsNothing(shown), "\(shown.unicodeScalars.map(\.value))")
        }
    }
}

/// The email rule's check for white space and control characters skips the scalar walk for
/// printable ASCII; these addresses reach the walk.
@Suite struct EmailRuleTests {
    @Test func whiteSpaceAndControlsOutsideASCIIAreRefusedAndOtherLettersKept() {
        for bad in [
            "a\u{A0}b@c.example", "a\u{85}@c.example", "a@b\u{2003}c.example", "a@b.exa\u{3000}mple", "a b@c.example",
        ] {
            #expect(ContactSchema.emailProblem(bad) != nil, "\(bad.unicodeScalars.map(\.value))")
        }
        for good in ["jos\u{E9}@b.example", "a@b\u{FC}cher.example", "x+y@b.example", "\u{1F600}@b.example"] {
            #expect(ContactSchema.emailProblem(good) == nil, "\(good)")
        }
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}
