import Foundation

/// The rules for names people give things (campaigns, segments, experiments): what is accepted,
/// and when two names count as the same.
///
/// Accepted: 3–120 visible characters after trimming (a character made only of default-ignorable
/// scalars, such as a zero-width space, is not counted, so no name displays as blank), with no
/// control character (Unicode `Cc`: NUL, BEL, ESC, DEL, C1 controls) and no bidirectional override
/// or isolate (U+202A–U+202E, U+2066–U+2069), so a name can neither drive an auditor's terminal nor
/// display reversed.
///
/// Compared: NFKC, then Unicode case folding (`ß` → `ss`), then NFKC again, with default-ignorable
/// characters (zero-width spaces and joiners, soft hyphens, variation selectors, BOM) removed and
/// white space trimmed and collapsed. So `Café` in NFC and NFD, `Straße` and `STRASSE`, full-width
/// `ＡＢＣ` and `abc`, and `Host` with a zero-width space inside are each one name.
public enum Names {
    /// The problem with a display name, if it has one.
    /// - Parameters:
    ///   - field: the field's name for `details` (`name`).
    ///   - pointer: where the name is in the request.
    ///   - length: how many characters the trimmed name may have.
    public static func problem(
        _ name: String, field: String = "name", pointer: String, length allowed: ClosedRange<Int> = 3...120
    ) -> FieldProblem? {
        if let bad = name.unicodeScalars.first(where: isForbidden) {
            return FieldProblem(
                field: field, pointer: pointer,
                message: "\(field) must not contain control characters (found \(TextRules.codePoint(bad)))")
        }
        let length = visibleLength(name.trimmed)
        if !allowed.contains(length) {
            return FieldProblem(
                field: field, pointer: pointer,
                message: "\(field) must be \(allowed.lowerBound)–\(allowed.upperBound) characters, not \(length)")
        }
        return nil
    }

    /// How many characters of `text` show: those with a scalar that is not default-ignorable (an
    /// emoji joined by zero-width joiners is one; a zero-width space or a lone variation selector is
    /// none).
    static func visibleLength(_ text: String) -> Int {
        // Most names hold no default-ignorable scalar (none of them is ASCII): count as they are.
        guard text.unicodeScalars.contains(where: { $0.properties.isDefaultIgnorableCodePoint }) else {
            return text.count
        }
        return text.reduce(0) { count, character in
            character.unicodeScalars.contains { !$0.properties.isDefaultIgnorableCodePoint } ? count + 1 : count
        }
    }

    /// Whether a scalar may never appear in a name: a control character or a bidi override/isolate.
    static func isForbidden(_ scalar: Unicode.Scalar) -> Bool {
        TextRules.isControl(scalar)
            || (0x202A...0x202E).contains(scalar.value) || (0x2066...0x2069).contains(scalar.value)
    }

    /// The form two names are compared in (see the type's summary).
    public static func comparable(_ name: String) -> String {
        let folded = name.precomposedStringWithCompatibilityMapping
            .folding(options: [.caseInsensitive], locale: nil)
            .precomposedStringWithCompatibilityMapping
        var visible = String.UnicodeScalarView()
        visible.append(contentsOf: folded.unicodeScalars.filter { !$0.properties.isDefaultIgnorableCodePoint })
        return String(visible).split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }
}

extension String {
    /// A name in the form names are compared in (``Names/comparable(_:)``).
    var normalizedName: String { Names.comparable(self) }

    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
