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
        guard let bad = firstControl(in: text, multiline: multiline) else { return nil }
        return "\(field) must not contain control characters (found \(codePoint(bad)))"
    }

    /// The first control character of `text` that `multiline` text may not hold, found in its
    /// UTF-8 without decoding a scalar: C0 controls and DEL are single bytes, and a C1 control
    /// (U+0080–U+009F) is C2 80–C2 9F, a pair no other character's UTF-8 contains. Printable ASCII
    /// is passed eight bytes at a time (``printableASCIIEnd(_:from:)``), so a 5 KB body is checked
    /// in about a microsecond where walking its scalars took several.
    static func firstControl(in text: String, multiline: Bool) -> Unicode.Scalar? {
        var text = text
        return text.withUTF8 { bytes -> Unicode.Scalar? in
            var index = 0
            while true {
                index = printableASCIIEnd(bytes, from: index)
                guard index < bytes.count else { return nil }
                let byte = bytes[index]
                if byte < 0x20 || byte == 0x7F {
                    let allowed = multiline && (byte == 0x09 || byte == 0x0A || byte == 0x0D)
                    if !allowed { return Unicode.Scalar(byte) }
                } else if byte == 0xC2, index + 1 < bytes.count, (0x80...0x9F).contains(bytes[index + 1]) {
                    return Unicode.Scalar(bytes[index + 1])
                }
                index += 1
            }
        }
    }

    /// Where the run of printable ASCII (0x20–0x7E) that starts at `start` in `bytes` ends: the
    /// index of the first byte outside it, or the count. Eight bytes are tested at a time, each
    /// word for a byte below 0x20, a DEL or a byte with its high bit set.
    public static func printableASCIIEnd(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        guard let base = bytes.baseAddress else { return start }
        let count = bytes.count
        var index = start
        while index < count {
            if index + 8 <= count {
                let word = EightBytes.load(base, index)
                let found =
                    EightBytes.hasBelow(0x20, in: word) | EightBytes.has(0x7F, in: word) | EightBytes.hasHigh(word)
                if found == 0 {
                    index += 8
                    continue
                }
            }
            // The word holds such a byte: step to it.
            if !(0x20...0x7E).contains(base[index]) { return index }
            index += 1
        }
        return count
    }

    /// Whether `text` shows nothing: it holds only white space and default-ignorable characters
    /// (zero-width spaces and joiners, a byte-order mark). Stops at the first character that shows;
    /// text that starts with a printable ASCII character other than a space answers at its first
    /// byte, without looking up a scalar's properties.
    public static func showsNothing(_ text: String) -> Bool {
        if let first = text.utf8.first, (0x21...0x7E).contains(first) { return false }
        return text.unicodeScalars.allSatisfy {
            $0.properties.isWhitespace || $0.properties.isDefaultIgnorableCodePoint
        }
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
