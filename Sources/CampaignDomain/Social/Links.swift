extension TextMeasure {
    /// The links this measure counts as 23 characters in `text`, found as the network's own counter
    /// finds them (twitter-text 3's extraction, which X uses as it is and Mastodon with changes):
    /// - X (``xWeighted``): `http://` or `https://` and a domain, or a domain alone (`example.com`,
    ///   `bit.ly/abc`, `foo.jp`); then a port, a path and a query of the characters X takes there,
    ///   less what cannot end one (`.`, `,`, `!`, an unbalanced bracket, CJK text);
    /// - Mastodon (``linksAs23``): a scheme always (`https`, `http`, `dat`, `dweb`, `ipfs`, `ipns`,
    ///   `ssb`, `gopher`, `gemini`), then a path of any characters but white space, `<`, `>` and
    ///   unbalanced brackets, less what cannot end one (`.`, `,`, `!`, `:`, quotes, …), and a query;
    /// - the other measures: none.
    ///
    /// Each domain ends in a top-level domain of IANA's root zone. No link starts after a letter,
    /// digit, `@`, `$` or `#` (`#deal.com`, `me@example.com`), nor a domain alone after `-`, `_`, `.`
    /// or `/`.
    public func links(in text: String) -> [Substring] {
        guard let grammar = linkGrammar else { return [] }
        return Self.splitLinks(text, grammar).filter(\.isLink).map(\.text)
    }

    /// The grammar of the links this measure counts as 23; nil when it counts none.
    var linkGrammar: LinkGrammar? {
        switch self {
        case .xWeighted: .x
        case .linksAs23: .mastodon
        case .scalars, .graphemes, .emojiAsUTF8Bytes, .utf16: nil
        }
    }

    /// `text` cut into the links `grammar` finds and the text between them.
    static func splitLinks(_ text: String, _ grammar: LinkGrammar) -> [(text: Substring, isLink: Bool)] {
        let links = LinkScanner(text, grammar).links()
        guard !links.isEmpty else { return text.isEmpty ? [] : [(text[...], false)] }
        var indices = Array(text.unicodeScalars.indices)
        indices.append(text.endIndex)
        var parts = [(text: Substring, isLink: Bool)]()
        var from = 0
        for link in links {
            if link.lowerBound > from { parts.append((text[indices[from]..<indices[link.lowerBound]], false)) }
            parts.append((text[indices[link.lowerBound]..<indices[link.upperBound]], true))
            from = link.upperBound
        }
        if from < indices.count - 1 { parts.append((text[indices[from]...], false)) }
        return parts
    }
}

/// What a network takes as a link: its schemes, whether a domain alone is one, and the characters
/// of a path and a query and those either may end with (twitter-text 3's, and Mastodon's changes
/// to them in its `twitter_regex.rb`).
struct LinkGrammar: Sendable {
    /// The schemes, lowercase, each followed by `://` in a link.
    let schemes: [String]
    /// Whether a domain without a scheme is a link (`example.com`).
    let bareDomains: Bool
    /// Whether a character may be in a path (brackets aside: balanced ones always may).
    let isPath: @Sendable (Unicode.Scalar) -> Bool
    /// Whether a path may end with a character (or with a closing balanced bracket).
    let isPathEnding: @Sendable (Unicode.Scalar) -> Bool
    /// Whether a character may be in a query, after its `?`.
    let isQuery: @Sendable (Unicode.Scalar) -> Bool
    /// Whether a query may end with a character.
    let isQueryEnding: @Sendable (Unicode.Scalar) -> Bool

    /// twitter-text 3, as X counts: paths of ASCII letters and digits, Cyrillic, accented Latin, an
    /// en dash and ``!*';:=+,.$/%#[]-_~@|&``, ending in a letter or digit of those or `+-=_#/`;
    /// queries of ASCII letters and digits and ``!?*'@();:&=+$/%#[]-_.,~|``, ending in a letter,
    /// digit or `-_&=#/`.
    static let x = LinkGrammar(
        schemes: ["https", "http"], bareDomains: true,
        isPath: { scalar in
            LinkScanner.isASCIIAlphanumeric(scalar) || LinkScanner.isCyrillic(scalar)
                || LinkScanner.isLatinAccent(scalar) || scalar == "\u{2013}"
                || "!*';:=+,.$/%#[]-_~@|&".unicodeScalars.contains(scalar)
        },
        isPathEnding: { scalar in
            LinkScanner.isASCIIAlphanumeric(scalar) || LinkScanner.isCyrillic(scalar)
                || LinkScanner.isLatinAccent(scalar) || "+-=_#/".unicodeScalars.contains(scalar)
        },
        isQuery: { LinkScanner.isASCIIAlphanumeric($0) || "!?*'@();:&=+$/%#[]-_.,~|".unicodeScalars.contains($0) },
        isQueryEnding: { LinkScanner.isASCIIAlphanumeric($0) || "-_&=#/".unicodeScalars.contains($0) })

    /// Mastodon's: eight schemes and no domain alone; paths of any character but white space and
    /// `<>()?`, ending in none of ``()?!*"'「」<>;:=,.$%[]~&|@`` either; queries of X's characters,
    /// `^` and most characters outside ASCII, ending in a letter, digit, `_&=#/-` or one of those.
    static let mastodon = LinkGrammar(
        schemes: ["https", "http", "dat", "dweb", "ipfs", "ipns", "ssb", "gopher", "gemini"], bareDomains: false,
        isPath: { !$0.properties.isWhitespace && !"<>()?".unicodeScalars.contains($0) },
        isPathEnding: { scalar in
            !scalar.properties.isWhitespace && !"()?!*\"'「」<>;:=,.$%[]~&|@".unicodeScalars.contains(scalar)
        },
        isQuery: { scalar in
            LinkScanner.isASCIIAlphanumeric(scalar) || "!?*'();:&=+$/%#[]-_.,~|@^".unicodeScalars.contains(scalar)
                || isQueryExtra(scalar)
        },
        isQueryEnding: {
            LinkScanner.isASCIIAlphanumeric($0) || "_&=#/-".unicodeScalars.contains($0) || isQueryExtra($0)
        })

    /// The characters outside ASCII a Mastodon query takes (RFC 3987's `ucschar` and `iprivate`):
    /// U+00A0 up, less surrogates, noncharacters, U+FFF0–U+FFFF and U+E0000–U+E0FFF.
    private static func isQueryExtra(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        switch value {
        case 0xA0...0xD7FF, 0xE000...0xF8FF, 0xF900...0xFDCF, 0xFDF0...0xFFEF: return true
        case 0x10000...0x10FFFF: return value & 0xFFFF <= 0xFFFD && !(0xE0000...0xE0FFF).contains(value)
        default: return false
        }
    }
}

/// twitter-text 3's link extraction (`extractUrlsWithIndices`) in a ``LinkGrammar``, as one scan of
/// a text's Unicode scalars, left to right: where a link may start, its domain (the longest run of
/// labels joined by `.` whose last one begins with a top-level domain), then its port, path and
/// query. A link's preceding character belongs to its match, so two links are at least one
/// character apart.
///
/// Three simplifications, all about text no post is likely to hold: a domain without a scheme is
/// read from its ASCII labels, so one preceded by other letters (`/日本example.com`) is judged by
/// the character just before its ASCII part, and one whose first label holds `_`
/// (`sub_domain.example.com`) is none, where twitter-text links what follows the `_`; and an
/// internationalised label's length (at most 63 once encoded) is judged by the shortest encoding
/// it could have.
struct LinkScanner {
    private let scalars: [Unicode.Scalar]
    private let grammar: LinkGrammar

    init(_ text: String, _ grammar: LinkGrammar) {
        scalars = Array(text.unicodeScalars)
        self.grammar = grammar
    }

    /// The links, as ranges of scalar offsets, in order.
    func links() -> [Range<Int>] {
        var found = [Range<Int>]()
        /// Where the next match may begin, its preceding character included.
        var free = 0
        var start = 0
        while start < scalars.count {
            let before: Unicode.Scalar? = start == 0 ? nil : scalars[start - 1]
            guard start == 0 || start - 1 >= free, before.map(Self.mayPrecede) ?? true else {
                start += 1
                continue
            }
            if let match = link(at: start, withScheme: true) ?? bareLink(at: start, after: before) {
                if match.isLink { found.append(start..<match.end) }
                free = match.end
                start = match.end
                continue
            }
            start += 1
        }
        return found
    }

    /// A match from `start` to `end`; not a link when its domain or length is one X refuses (the
    /// text it covers is then counted as written, and not looked at again).
    private struct Match {
        var end: Int
        var isLink: Bool
    }

    /// A link without a scheme at `start`, the first character of a label: none after `-`, `_`,
    /// `.` or `/`, or inside a label.
    private func bareLink(at start: Int, after before: Unicode.Scalar?) -> Match? {
        guard grammar.bareDomains, Self.isBareLabel(scalars[start]) else { return nil }
        if let before, "-_./".unicodeScalars.contains(before) || Self.isBareLabel(before) { return nil }
        return link(at: start, withScheme: false)
    }

    /// A link at `start`: with a scheme, one of the grammar's (any case) and `://` first; without, a
    /// domain of ASCII labels (and accented Latin letters).
    private func link(at start: Int, withScheme: Bool) -> Match? {
        var at = start
        if withScheme {
            guard let afterScheme = scheme(at: start) else { return nil }
            at = afterScheme
        }
        guard let domain = domain(at: at, bare: !withScheme) else { return nil }
        var end = domain.end
        if end + 1 < scalars.count, scalars[end] == ":", Self.isDigit(scalars[end + 1]) {
            end += 1
            while end < scalars.count, Self.isDigit(scalars[end]) { end += 1 }
        }
        let pathStart = end
        if end < scalars.count, scalars[end] == "/" { end = pathEnd(from: end + 1) }
        if end < scalars.count, scalars[end] == "?", let query = queryEnd(from: end + 1) { end = query }
        var isLink = domain.isValid && (withScheme ? 0 : 8) + end - start <= 4_096
        // A t.co link ends with its slug (and query), and a slug of more than 40 is no link.
        if withScheme, isLink, pathStart == domain.end, pathStart < end,
            String(String.UnicodeScalarView(scalars[at..<pathStart])).lowercased() == "t.co"
        {
            var slugEnd = pathStart + 1
            while slugEnd < scalars.count, Self.isASCIIAlphanumeric(scalars[slugEnd]) { slugEnd += 1 }
            if slugEnd > pathStart + 1 {
                if slugEnd - pathStart - 1 > 40 {
                    isLink = false
                } else {
                    end = slugEnd
                    if end < scalars.count, scalars[end] == "?", let query = queryEnd(from: end + 1) { end = query }
                }
            }
        }
        return Match(end: end, isLink: isLink)
    }

    /// Where the text after a scheme of the grammar and `://` at `start` begins.
    private func scheme(at start: Int) -> Int? {
        for scheme in grammar.schemes {
            var at = start
            for letter in (scheme + "://").unicodeScalars {
                guard at < scalars.count, Self.lowercase(scalars[at]) == letter else { break }
                at += 1
            }
            if at - start == scheme.unicodeScalars.count + 3 { return at }
        }
        return nil
    }

    /// The domain at `start`: its end (just after its top-level domain) and whether X takes it.
    private func domain(at start: Int, bare: Bool) -> (end: Int, isValid: Bool)? {
        var labels = [Range<Int>]()
        var dots = [Int]()
        var at = start
        while let end = labelEnd(from: at, bare: bare) {
            labels.append(at..<end)
            guard end < scalars.count, scalars[end] == "." else { break }
            dots.append(end)
            at = end + 1
        }
        // The longest domain first: the last label that begins with a top-level domain ends it.
        for index in dots.indices.reversed() {
            // With a scheme, the label before the top-level domain takes no `_` (a subdomain may).
            if !bare, scalars[labels[index]].contains("_") { continue }
            guard let end = topLevelDomainEnd(at: dots[index] + 1) else { continue }
            let parts = labels[...index] + [(dots[index] + 1)..<end]
            return (end, parts.allSatisfy { fitsDNS(scalars[$0]) })
        }
        return nil
    }

    /// The end of the label at `start`: without a scheme ASCII letters, digits and accented Latin
    /// letters, with one any character but white space and ASCII punctuation; inner runs of `-`
    /// (and with a scheme `_`) join them, never at a label's start or end.
    private func labelEnd(from start: Int, bare: Bool) -> Int? {
        func isLabel(_ scalar: Unicode.Scalar) -> Bool { bare ? Self.isBareLabel(scalar) : Self.isDomain(scalar) }
        func isJoiner(_ scalar: Unicode.Scalar) -> Bool { scalar == "-" || (!bare && scalar == "_") }
        guard start < scalars.count, isLabel(scalars[start]) else { return nil }
        var end = start + 1
        while end < scalars.count {
            if isLabel(scalars[end]) {
                end += 1
                continue
            }
            var joined = end
            while joined < scalars.count, isJoiner(scalars[joined]) { joined += 1 }
            guard joined > end, joined < scalars.count, isLabel(scalars[joined]) else { break }
            end = joined + 1
        }
        return end
    }

    /// The end of a top-level domain at `start` followed by no ASCII letter or digit, `@`, `+` or
    /// `-`: an ASCII one (the whole run of letters), an internationalised one, or a punycode one
    /// (`xn--` and ASCII letters, digits and `-`).
    private func topLevelDomainEnd(at start: Int) -> Int? {
        guard start < scalars.count else { return nil }
        func ends(_ end: Int) -> Bool {
            end == scalars.count
                || !(Self.isASCIIAlphanumeric(scalars[end]) || "@+-".unicodeScalars.contains(scalars[end]))
        }
        if start + 4 < scalars.count, scalars[start..<start + 4].map(Self.lowercase) == Array("xn--".unicodeScalars),
            Self.isASCIIAlphanumeric(scalars[start + 4]) || scalars[start + 4] == "-"
        {
            var end = start + 5
            while end < scalars.count, Self.isASCIIAlphanumeric(scalars[end]) || scalars[end] == "-" { end += 1 }
            return end
        }
        if Self.isASCIILetter(scalars[start]) {
            var end = start
            while end < scalars.count, Self.isASCIILetter(scalars[end]) { end += 1 }
            let name = String(String.UnicodeScalarView(scalars[start..<end].map(Self.lowercase)))
            return TopLevelDomains.ascii.contains(name) && ends(end) ? end : nil
        }
        guard !scalars[start].isASCII else { return nil }
        let longest = min(TopLevelDomains.longestInternational, scalars.count - start)
        for length in stride(from: longest, through: 1, by: -1) {
            let name = String(String.UnicodeScalarView(scalars[start..<start + length]))
            if TopLevelDomains.international.contains(name) && ends(start + length) { return start + length }
        }
        return nil
    }

    /// Whether a label fits DNS once encoded (at most 63 characters): an ASCII one as it is, an
    /// internationalised one by the shortest punycode it could take (`xn--`, its ASCII characters
    /// and a `-` after them, and at least one character for each other one). `xn--` with
    /// characters outside ASCII is no label.
    private func fitsDNS(_ label: ArraySlice<Unicode.Scalar>) -> Bool {
        let ascii = label.filter(\.isASCII).count
        if ascii == label.count { return label.count <= 63 }
        if label.count >= 4, label.prefix(4).map(Self.lowercase) == Array("xn--".unicodeScalars) { return false }
        return 4 + ascii + (ascii > 0 ? 1 : 0) + (label.count - ascii) <= 63
    }

    /// The end of a path whose `/` ends just before `start`: the longest run of path characters
    /// and balanced brackets that ends in a letter, digit, `+`, `-`, `=`, `_`, `#`, `/` or a
    /// closing bracket (so a sentence's full stop or an exclamation after a link is not in it).
    private func pathEnd(from start: Int) -> Int {
        var at = start
        var end = start
        while at < scalars.count {
            if scalars[at] == "(" {
                guard let closed = balancedEnd(from: at) else { break }
                at = closed
                end = closed
                continue
            }
            guard grammar.isPath(scalars[at]) else { break }
            at += 1
            if grammar.isPathEnding(scalars[at - 1]) { end = at }
        }
        return end
    }

    /// The end of the brackets opening at `start` around path characters (`(film)`), one bracketed
    /// run nested at most (`(Album_(Edited))`); nil when they do not close so.
    private func balancedEnd(from start: Int) -> Int? {
        func pathRun(from at: Int) -> Int {
            var end = at
            while end < scalars.count, grammar.isPath(scalars[end]) { end += 1 }
            return end
        }
        let inner = pathRun(from: start + 1)
        guard inner < scalars.count else { return nil }
        if scalars[inner] == ")" { return inner > start + 1 ? inner + 1 : nil }
        guard scalars[inner] == "(" else { return nil }
        let nested = pathRun(from: inner + 1)
        guard nested > inner + 1, nested < scalars.count, scalars[nested] == ")" else { return nil }
        let outer = pathRun(from: nested + 1)
        return outer < scalars.count && scalars[outer] == ")" ? outer + 1 : nil
    }

    /// The end of a query whose `?` ends just before `start`: the longest run of query characters
    /// that ends in a letter, digit, `-`, `_`, `&`, `=`, `#` or `/`; nil when there is none.
    private func queryEnd(from start: Int) -> Int? {
        var at = start
        var end: Int?
        while at < scalars.count, grammar.isQuery(scalars[at]) {
            at += 1
            if grammar.isQueryEnding(scalars[at - 1]) { end = at }
        }
        return end
    }

    // MARK: Character classes (twitter-text's, by name)

    /// Not a letter, digit, `@`, `＠`, `$`, `#`, `＃` or a noncharacter: what may come before a link.
    private static func mayPrecede(_ scalar: Unicode.Scalar) -> Bool {
        !(isASCIIAlphanumeric(scalar) || "@＠$#＃\u{FFFE}\u{FEFF}\u{FFFF}".unicodeScalars.contains(scalar))
    }

    /// A character of a domain label after a scheme: not white space, ASCII punctuation (`"` and
    /// `` ` `` aside), a noncharacter or a directional mark. Any other, a CJK letter or an emoji
    /// included, may be part of one (`http://✪df.ws`).
    private static func isDomain(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if scalar.isASCII {
            return !"!'#%&()*+,\\-./:;<=>?@[]^_{|}~$ ".unicodeScalars.contains(scalar) && !(0x09...0x0D).contains(value)
        }
        let spaces: [ClosedRange<UInt32>] = [
            0x85...0x85, 0xA0...0xA0, 0x1680...0x1680, 0x180E...0x180E, 0x2000...0x200A, 0x2028...0x2029,
            0x202F...0x202F, 0x205F...0x205F, 0x3000...0x3000,
        ]
        let marks: [ClosedRange<UInt32>] = [
            0x061C...0x061C, 0x200E...0x200F, 0x202A...0x202E, 0x2066...0x2069, 0xFEFF...0xFEFF, 0xFFFE...0xFFFF,
        ]
        return !(spaces + marks).contains { $0.contains(value) }
    }

    /// A character of a label without a scheme: an ASCII letter or digit, or an accented Latin one.
    private static func isBareLabel(_ scalar: Unicode.Scalar) -> Bool {
        isASCIIAlphanumeric(scalar) || isLatinAccent(scalar)
    }

    static func isCyrillic(_ scalar: Unicode.Scalar) -> Bool { (0x400...0x4FF).contains(scalar.value) }

    /// Accented Latin letters and combining marks, as twitter-text lists them.
    static func isLatinAccent(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0xC0...0xD6, 0xD8...0xF6, 0xF8...0x24F, 0x253, 0x254, 0x256, 0x257, 0x259, 0x25B, 0x263, 0x268,
            0x26F, 0x272, 0x289, 0x28B, 0x2BB, 0x300...0x36F, 0x1E00...0x1EFF:
            return true
        default:
            return false
        }
    }

    static func isDigit(_ scalar: Unicode.Scalar) -> Bool { ("0"..."9").contains(scalar) }

    static func isASCIILetter(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar)
    }

    static func isASCIIAlphanumeric(_ scalar: Unicode.Scalar) -> Bool {
        isASCIILetter(scalar) || isDigit(scalar)
    }

    static func lowercase(_ scalar: Unicode.Scalar) -> Unicode.Scalar {
        ("A"..."Z").contains(scalar) ? Unicode.Scalar(scalar.value + 32)! : scalar
    }
}
