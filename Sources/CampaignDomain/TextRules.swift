/// The rules for text people write that is not a name (a campaign's subject and body, a post's
/// text, a contact's string values and tags): which characters it may hold, and when it shows
/// nothing.
///
/// Control characters (Unicode `Cc`: U+0000–U+001F and U+007F–U+009F) are refused. A NUL ends the
/// string for many of the systems the text is handed on to, and an escape sequence drives the
/// terminal of an operator reading `campaign replay`. Text that spans lines (a body, a post) may
/// hold tab, line feed and carriage return; one-line text (a subject, where a line break would
/// start a new mail header, or a tag) may not.
public enum TextRules {
    /// Why `text` may not be stored as `field`, or nil: the first control character it holds that
    /// `multiline` text may not (see the type's summary), named by its code point.
    public static func controlCharacterMessage(_ text: String, field: String, multiline: Bool) -> String? {
        guard
            let bad = text.unicodeScalars.first(where: {
                isControl($0) && !(multiline && ($0 == "\t" || $0 == "\n" || $0 == "\r"))
            })
        else { return nil }
        return "\(field) must not contain control characters (found \(codePoint(bad)))"
    }

    /// Whether `text` shows nothing: it holds only white space and default-ignorable characters
    /// (zero-width spaces and joiners, a byte-order mark). Stops at the first character that shows.
    public static func showsNothing(_ text: String) -> Bool {
        text.unicodeScalars.allSatisfy { $0.properties.isWhitespace || $0.properties.isDefaultIgnorableCodePoint }
    }

    /// Whether `scalar` is a control character (Unicode general category `Cc`).
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }

    /// `U+` and at least four upper-case hexadecimal digits, as Unicode names a code point.
    static func codePoint(_ scalar: Unicode.Scalar) -> String {
        "U+" + String(scalar.value, radix: 16, uppercase: true).leftPadded(to: 4)
    }
}
