/// The hashtags and mentions in a post's text, counted as the platforms that limit them tag them.
public enum TextTags {
    /// How many hashtags `text` holds: `#` at the start or after a character that is not a letter,
    /// digit or `_`, followed by letters, digits and `_` of which at least one is not a digit
    /// (`#spring`, `#sale_2026`; not `#1`, `a#b` or `##`). Each occurrence counts.
    public static func hashtags(in text: String) -> Int {
        count(in: text, marker: "#") {
            isWordCharacter($0)
        } accepting: { tag in
            tag.contains { !("0"..."9").contains($0) }
        }
    }

    /// How many mentions `text` holds: `@` at the start or after a character that is not a letter,
    /// digit or `_`, followed by ASCII letters, digits, `.` and `_` (`@acme`, `@acme.shop`; not the
    /// `@` of `me@example.com`, nor a lone `@`).
    public static func mentions(in text: String) -> Int {
        count(in: text, marker: "@") {
            $0.isASCII && (isWordCharacter($0) || $0 == ".")
        } accepting: { tag in
            tag.contains { $0 != "." }
        }
    }

    /// Counts the runs of `marker` followed by one or more characters `isTagCharacter` takes, at a
    /// word's start, whose characters `accepting` takes.
    private static func count(
        in text: String, marker: Character, _ isTagCharacter: (Character) -> Bool,
        accepting: (Substring) -> Bool
    ) -> Int {
        var count = 0
        var previous: Character?
        var index = text.startIndex
        while index < text.endIndex {
            let character = text[index]
            if character == marker && !(previous.map(isWordCharacter) ?? false),
                case let start = text.index(after: index),
                case let end = text[start...].firstIndex(where: { !isTagCharacter($0) }) ?? text.endIndex, end > start
            {
                if accepting(text[start..<end]) { count += 1 }
                previous = text[text.index(before: end)]
                index = end
                continue
            }
            previous = character
            index = text.index(after: index)
        }
        return count
    }

    /// A letter, digit or `_` of any script.
    private static func isWordCharacter(_ character: Character) -> Bool {
        character == "_" || character.isLetter || character.isNumber
    }
}
