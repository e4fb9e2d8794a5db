import Foundation
import Hashing

/// What a platform accepts, and how fast an account may publish to it.
public struct PlatformRules: Sendable, Hashable {
    /// The platform's wire name (`x`, `linkedin`, `facebook`, `instagram`, `threads`, `bluesky`, `mastodon`, `tiktok`).
    public var platform: String
    /// The longest text a post may have there, measured as ``measure`` says (x: 280).
    public var textLimit: Int
    /// How the platform measures a text against ``textLimit``.
    public var measure: TextMeasure
    /// The most media items per post.
    public var maximumMedia: Int
    /// The media kinds accepted.
    public var mediaKinds: Set<String>
    /// Whether a post needs at least one media item.
    public var requiresMedia: Bool
    /// Whether a video or gif must be the only media item.
    public var videoMustBeAlone: Bool
    /// Publishes allowed per account per window.
    public var publishLimit: Int
    /// The publish window, in seconds.
    public var publishWindow: Int
    /// The most hashtags a post's text may hold (``TextTags/hashtags(in:)``); nil: no limit.
    public var maximumHashtags: Int? = nil
    /// The most mentions a post's text may hold (``TextTags/mentions(in:)``); nil: no limit.
    public var maximumMentions: Int? = nil
    /// The most bytes the text may take as UTF-8, beside ``textLimit`` (Bluesky's post record:
    /// 3,000, so 300 graphemes of emoji joined by zero-width joiners are too many); nil: no limit.
    public var maximumUTF8Bytes: Int? = nil
    /// The most distinct links a post may carry: those its text holds (found as X finds them, a bare
    /// `www.example.com` too) and its `link` when that is none of them (Threads: 5, refused at
    /// publish since December 2025); nil: no limit.
    public var maximumLinks: Int? = nil
    /// The text limits an account may have instead of ``textLimit``, set when it is connected
    /// (X: 25,000 with Premium; Mastodon: its server's own); nil: every account has ``textLimit``.
    public var accountTextLimits: ClosedRange<Int>? = nil

    /// The length of `text` as this platform counts it.
    public func length(of text: String) -> Int { measure.length(of: text) }

    /// A link as the link limit tells links apart: without an `http://` or `https://` scheme, so
    /// `https://www.example.com` and `www.example.com` are one link.
    static func linkIdentity(_ link: Substring) -> Substring {
        for scheme in ["https://", "http://"] where link.utf8.count > scheme.utf8.count {
            if link.prefix(scheme.count).lowercased() == scheme { return link.dropFirst(scheme.count) }
        }
        return link
    }

    /// The rules table of SPEC.md §6.
    public static let all: [String: PlatformRules] = {
        let rows: [PlatformRules] = [
            .init(
                platform: "x", textLimit: 280, measure: .xWeighted, maximumMedia: 4,
                mediaKinds: ["image", "video", "gif"], requiresMedia: false, videoMustBeAlone: true, publishLimit: 200,
                publishWindow: 900, accountTextLimits: 280...25_000),
            .init(
                platform: "linkedin", textLimit: 3_000, measure: .scalars, maximumMedia: 20,
                mediaKinds: ["image", "video"], requiresMedia: false, videoMustBeAlone: true, publishLimit: 150,
                publishWindow: 86_400),
            .init(
                platform: "facebook", textLimit: 63_206, measure: .scalars, maximumMedia: 10,
                mediaKinds: ["image", "video", "gif"], requiresMedia: false, videoMustBeAlone: true, publishLimit: 200,
                publishWindow: 3_600),
            .init(
                platform: "instagram", textLimit: 2_200, measure: .scalars, maximumMedia: 10,
                mediaKinds: ["image", "video"], requiresMedia: true, videoMustBeAlone: false, publishLimit: 50,
                publishWindow: 86_400, maximumHashtags: 5, maximumMentions: 20),
            .init(
                platform: "threads", textLimit: 500, measure: .emojiAsUTF8Bytes, maximumMedia: 20,
                mediaKinds: ["image", "video"], requiresMedia: false, videoMustBeAlone: false, publishLimit: 250,
                publishWindow: 86_400, maximumLinks: 5),
            .init(
                platform: "bluesky", textLimit: 300, measure: .graphemes, maximumMedia: 4,
                mediaKinds: ["image", "video"], requiresMedia: false, videoMustBeAlone: true, publishLimit: 1_666,
                publishWindow: 3_600, maximumUTF8Bytes: 3_000),
            .init(
                platform: "mastodon", textLimit: 500, measure: .linksAs23, maximumMedia: 4,
                mediaKinds: ["image", "video", "gif"], requiresMedia: false, videoMustBeAlone: true, publishLimit: 300,
                publishWindow: 10_800, accountTextLimits: 1...100_000),
            .init(
                platform: "tiktok", textLimit: 2_200, measure: .utf16, maximumMedia: 35,
                mediaKinds: ["image", "video"], requiresMedia: true, videoMustBeAlone: true, publishLimit: 15,
                publishWindow: 86_400),
        ]
        return Dictionary(uniqueKeysWithValues: rows.map { ($0.platform, $0) })
    }()

    /// Every problem a post's text, media and link have on this platform, with pointers.
    public func problems(text: String, media: [Media], link: String? = nil) -> [FieldProblem] {
        var problems = [FieldProblem]()
        let length = length(of: text)
        if length > textLimit {
            problems.append(
                FieldProblem(
                    field: "text", pointer: "/text",
                    message: "\(platform) allows \(textLimit) \(measure.unit); this text has \(length)"
                ))
        }
        if let maximumUTF8Bytes, case let bytes = text.utf8.count, bytes > maximumUTF8Bytes {
            problems.append(
                FieldProblem(
                    field: "text", pointer: "/text",
                    message: "\(platform) allows \(maximumUTF8Bytes) bytes of UTF-8; this text has \(bytes)"))
        }
        if let maximumLinks {
            let inText = Set(TextMeasure.splitLinks(text, .x).filter(\.isLink).map { Self.linkIdentity($0.text) })
            let count = inText.count + (link.map { inText.contains(Self.linkIdentity($0[...])) ? 0 : 1 } ?? 0)
            if count > maximumLinks {
                // The text alone is over, or the link is the one too many.
                let pointer = inText.count > maximumLinks ? "/text" : "/link"
                problems.append(
                    FieldProblem(
                        field: String(pointer.dropFirst()), pointer: pointer,
                        message: "\(platform) allows at most \(maximumLinks) distinct links; this post has \(count)"))
            }
        }
        // Counted only where a platform limits them (the text may be 63,206 characters).
        let tagLimits = [
            (maximumHashtags, TextTags.hashtags, "hashtags"), (maximumMentions, TextTags.mentions, "mentions"),
        ]
        for case let (limit?, count, what) in tagLimits {
            let count = count(text)
            if count > limit {
                problems.append(
                    FieldProblem(
                        field: "text", pointer: "/text",
                        message: "\(platform) allows at most \(limit) \(what); this text has \(count)"))
            }
        }
        if requiresMedia && media.isEmpty {
            problems.append(
                FieldProblem(
                    field: "media", pointer: "/media", message: "\(platform) needs at least one image or video")
            )
        }
        if media.count > maximumMedia {
            problems.append(
                FieldProblem(
                    field: "media", pointer: "/media/\(maximumMedia)",
                    message: "\(platform) allows at most \(maximumMedia) media items; this post has \(media.count)"))
        }
        for (index, item) in media.enumerated() {
            if !mediaKinds.contains(item.kind) {
                problems.append(
                    FieldProblem(
                        field: "media.kind", pointer: "/media/\(index)/kind",
                        message: "\(platform) does not take \(item.kind) media"))
            } else if videoMustBeAlone && item.kind != "image" && media.count > 1 {
                problems.append(
                    FieldProblem(
                        field: "media.kind", pointer: "/media/\(index)/kind",
                        message: "\(platform) takes a \(item.kind) only as the post's single media item"))
            }
        }
        return problems
    }
}

/// How a platform measures a post's text against its limit.
public enum TextMeasure: Sendable, Hashable {
    /// Unicode scalars (code points).
    case scalars
    /// Grapheme clusters, what a reader sees as one character (Bluesky).
    case graphemes
    /// Grapheme clusters, as Mastodon counts (its `StatusLengthValidator`): each link 23 whatever its
    /// length, found as Mastodon finds them (``links(in:)``: with a scheme, ending in a top-level
    /// domain), and a mention of an account on another server (`@user@domain`) as its `@user` alone.
    case linksAs23
    /// X's weighted count (twitter-text 3): the text in NFC; each link 23, found as X finds them
    /// (``links(in:)``: with or without a scheme, ending in a top-level domain); each emoji 2;
    /// each other scalar 1 in U+0000–U+10FF, U+2000–U+200D, U+2010–U+201F and U+2032–U+2037 (Latin,
    /// Greek, Cyrillic, Hebrew, Arabic, …, general punctuation) and 2 elsewhere (CJK, for one).
    case xWeighted
    /// Threads' count: each emoji as the bytes of its UTF-8 form (😀 4, a family of three joined
    /// by zero-width joiners 18), every other scalar 1.
    case emojiAsUTF8Bytes
    /// UTF-16 code units, as TikTok counts its caption ("UTF-16 runes" in its Content Posting API):
    /// a scalar beyond U+FFFF (😀, 𝐁) 2, every other 1.
    case utf16

    /// The unit a limit's message names.
    var unit: String {
        switch self {
        case .scalars, .linksAs23: return "characters"
        case .graphemes: return "graphemes"
        case .xWeighted: return "characters as X weighs them (CJK and emoji 2, a link 23)"
        case .emojiAsUTF8Bytes: return "characters as Threads counts them (an emoji as its UTF-8 bytes)"
        case .utf16: return "UTF-16 code units (an emoji 2)"
        }
    }

    /// The length of `text` measured so.
    public func length(of text: String) -> Int {
        switch self {
        case .scalars: return text.unicodeScalars.count
        case .graphemes: return text.count
        case .linksAs23:
            return Self.splitLinks(text, .mastodon).reduce(0) {
                $0 + ($1.isLink ? 23 : Self.mastodonCountable($1.text).count)
            }
        case .xWeighted:
            let normalized = text.precomposedStringWithCanonicalMapping
            return Self.splitLinks(normalized, .x).reduce(0) { total, part in
                total + (part.isLink ? 23 : part.text.reduce(0) { $0 + Self.xWeight(of: $1) })
            }
        case .emojiAsUTF8Bytes:
            return text.reduce(0) { $0 + (Self.isEmoji($1) ? $1.utf8.count : $1.unicodeScalars.count) }
        case .utf16: return text.utf16.count
        }
    }

    /// `text` (no link in it) as Mastodon counts it: each mention of a remote account rewritten as
    /// `@user`. A mention is `@` not after a word character, `=` or `/`; a user name of ASCII
    /// letters, digits and `_`, in runs joined by `.` or `-`; then `@` and a domain of word
    /// characters in runs joined by `.` or `-` (`@alice@mastodon.social` counts as `@alice`; the `@`
    /// of `bob@example.com` starts no mention).
    static func mastodonCountable(_ text: Substring) -> String {
        let scalars = Array(text.unicodeScalars)
        /// Where runs of `isPart` joined by `.` or `-` that begin at `start` end (`start` when none).
        func joinedRuns(from start: Int, _ isPart: (Unicode.Scalar) -> Bool) -> Int {
            var end = start
            var index = start
            while index < scalars.count {
                let runStart = index
                while index < scalars.count, isPart(scalars[index]) { index += 1 }
                guard index > runStart else { break }
                end = index
                while index < scalars.count, scalars[index] == "." || scalars[index] == "-" { index += 1 }
            }
            return end
        }
        func isWord(_ scalar: Unicode.Scalar) -> Bool {
            let properties = scalar.properties
            return scalar == "_" || properties.isAlphabetic || properties.numericType == .decimal
                || properties.generalCategory == .connectorPunctuation
        }
        func isUserName(_ scalar: Unicode.Scalar) -> Bool { scalar.isASCII && isWord(scalar) }
        var countable = String.UnicodeScalarView()
        var index = 0
        while index < scalars.count {
            if scalars[index] == "@",
                index == 0 || !(isWord(scalars[index - 1]) || "=/".unicodeScalars.contains(scalars[index - 1]))
            {
                let nameEnd = joinedRuns(from: index + 1, isUserName)
                if nameEnd > index + 1, nameEnd < scalars.count, scalars[nameEnd] == "@" {
                    let domainEnd = joinedRuns(from: nameEnd + 1, isWord)
                    if domainEnd > nameEnd + 1 {
                        countable.append(contentsOf: scalars[index..<nameEnd])
                        index = domainEnd
                        continue
                    }
                }
            }
            countable.append(scalars[index])
            index += 1
        }
        return String(countable)
    }

    /// Whether a character shows as an emoji: one that has emoji presentation, a regional
    /// indicator (half a flag), or an emoji made so by a variation selector or a zero-width joiner.
    private static func isEmoji(_ character: Character) -> Bool {
        let scalars = character.unicodeScalars
        let first = scalars.first!
        return first.properties.isEmojiPresentation || (0x1F1E6...0x1F1FF).contains(first.value)
            || (first.properties.isEmoji && scalars.contains { $0.value == 0xFE0F || $0.value == 0x200D })
    }

    /// X's weight of one character: 2 for an emoji, else its scalars' weights summed.
    private static func xWeight(of character: Character) -> Int {
        if isEmoji(character) { return 2 }
        return character.unicodeScalars.reduce(0) { total, scalar in
            let value = scalar.value
            let light =
                value <= 0x10FF || (0x2000...0x200D).contains(value) || (0x2010...0x201F).contains(value)
                || (0x2032...0x2037).contains(value)
            return total + (light ? 1 : 2)
        }
    }
}

/// A media item of a post.
public struct Media: Sendable, Equatable {
    /// `image`, `video` or `gif`.
    public var kind: String
    /// Where the host's sender fetches the item: an `https` URL of at most 2,048 characters.
    public var url: String

    /// A media item of `kind` at `url` (both checked when a post carrying it is decided).
    public init(kind: String, url: String) {
        self.kind = kind
        self.url = url
    }

    /// The attachment as stored and sent: `{"kind", "url"}`.
    public var json: JSON { .object(["kind": .string(kind), "url": .string(url)]) }

    init?(json: JSON) {
        guard let kind = json["kind"]?.stringValue, let url = json["url"]?.stringValue else { return nil }
        self.init(kind: kind, url: url)
    }
}

/// A social connection's state. It holds a credential *reference* (where the host keeps the
/// token), never a token.
public struct ConnectionState: Sendable, Equatable {
    /// The id (`con_…`).
    public var id: String
    /// The platform it publishes to, one of ``PlatformRules/platform``'s names.
    public var platform: String
    /// The account on the platform, as the host names it; publish rate limits count per account.
    public var accountId: String
    /// Where the host keeps the credential, such as `vault://social/acme/x`.
    public var credentialRef: String
    /// When the credential expires.
    public var expiresAt: Date
    /// Whether it was disconnected (revoked).
    public var disconnected: Bool
    /// The stream version this state folds to: the number of the connection's events so far.
    public var version: UInt64
    /// The account's own text limit (X Premium's 25,000, a Mastodon server's); nil: the platform's.
    public var textLimit: Int? = nil

    /// The rules its posts are checked against: its platform's, with the account's text limit.
    public var rules: PlatformRules? {
        guard var rules = PlatformRules.all[platform] else { return nil }
        if let textLimit { rules.textLimit = textLimit }
        return rules
    }

    /// Usable at `now`: connected and not expired.
    public func isUsable(at now: Date) -> Bool { !disconnected && expiresAt > now }

    /// `connected`, `expired` or `disconnected` at `now`.
    public func status(at now: Date) -> String {
        disconnected ? "disconnected" : (expiresAt > now ? "connected" : "expired")
    }

    /// The read model `connection.get` answers: the stored fields and the ``status(at:)`` at `now`.
    public func json(at now: Date) -> JSON {
        var members: JSONObject = [
            "connectionId": .string(id), "platform": .string(platform), "accountId": .string(accountId),
            "credentialRef": .string(credentialRef), "expiresAt": .string(Timestamp.format(expiresAt)),
            "status": .string(status(at: now)), "version": .number(Double(version)),
        ]
        if let textLimit { members["textLimit"] = .number(Double(textLimit)) }
        return .object(members)
    }
}

/// The social connection aggregate.
public enum SocialConnection: Aggregate {
    /// A connection's state, as ``evolve(_:_:)`` folds it from the stream.
    public typealias State = ConnectionState
    /// The `social.*` commands: connect, refresh and disconnect.
    public typealias Command = SocialCommand
    /// The `social.*` events, one case each; their raw kinds are the stored types.
    public typealias Event = SocialEvent

    /// The unique key of an account in a tenant. Account ids are compared as names are
    /// (``Names/comparable(_:)``): every listed platform's handles ignore case, so `@Acme` and
    /// `@acme` are one account, as are an id with and without a trailing space.
    public static func accountKey(tenant: String, platform: String, accountId: String) -> String {
        "social-account/\(tenant)/\(platform)/\(SHA256.hash(Array(accountId.normalizedName.utf8)).hexString)"
    }

    /// Decides `social.connect`, `social.refresh` and `social.disconnect`.
    public static func decide(
        _ command: SocialCommand, state: ConnectionState?, context: DecisionContext
    ) throws(CampaignError) -> Decision {
        switch command {
        case let .connect(connectionId, platform, accountId, credentialRef, expiresAt, textLimit):
            guard state == nil else {
                throw CampaignError(
                    .duplicateResource, "connection \(connectionId) already exists", param: "connectionId",
                    pointer: "/connectionId")
            }
            var problems = [FieldProblem]()
            if PlatformRules.all[platform] == nil {
                problems.append(
                    FieldProblem(
                        field: "platform", pointer: "/platform",
                        message: "platform must be one of \(PlatformRules.all.keys.sorted().joined(separator: ", "))"))
            }
            if let problem = Names.problem(accountId, field: "accountId", pointer: "/accountId", length: 1...200) {
                problems.append(problem)
            }
            problems += credentialProblems(credentialRef, expiresAt: expiresAt, now: context.now)
            if let textLimit, let problem = textLimitProblem(textLimit, platform: platform) { problems.append(problem) }
            guard problems.isEmpty else { throw .validation(problems) }
            return Decision(
                events: [
                    SocialEvent.connected(
                        connectionId: connectionId, platform: platform, accountId: accountId,
                        credentialRef: credentialRef, expiresAt: expiresAt, textLimit: textLimit
                    ).domainEvent
                ],
                reservations: [
                    Reservation(
                        key: accountKey(tenant: context.tenant, platform: platform, accountId: accountId),
                        owner: connectionId,
                        pointer: "/accountId",
                        message: "\(platform) account \(accountId.trimmed) is already connected in this tenant")
                ])

        case let .refresh(connectionId, credentialRef, expiresAt, textLimit):
            guard let state else {
                throw CampaignError.notFound("connection", connectionId, pointer: "/connectionId")
            }
            guard !state.disconnected else {
                throw CampaignError(
                    .connectionExpired, "connection \(connectionId) was disconnected; connect it again",
                    currentState: "disconnected")
            }
            var problems = credentialProblems(
                credentialRef ?? state.credentialRef, expiresAt: expiresAt, now: context.now)
            if let limit = textLimit?.value, let problem = textLimitProblem(limit, platform: state.platform) {
                problems.append(problem)
            }
            guard problems.isEmpty else { throw .validation(problems) }
            // The same reference, expiry and text limit again change nothing, and write nothing.
            let newTextLimit = textLimit.map(\.value) ?? state.textLimit
            if (credentialRef ?? state.credentialRef) == state.credentialRef && expiresAt == state.expiresAt
                && newTextLimit == state.textLimit
            {
                return Decision(events: [])
            }
            return Decision(events: [
                SocialEvent.refreshed(
                    connectionId: connectionId, credentialRef: credentialRef, expiresAt: expiresAt,
                    textLimit: newTextLimit == state.textLimit ? nil : textLimit
                ).domainEvent
            ])

        case let .disconnect(connectionId):
            guard let state else {
                throw CampaignError.notFound("connection", connectionId, pointer: "/connectionId")
            }
            guard !state.disconnected else {
                throw CampaignError.illegalTransition(
                    "disconnect", "connection", from: "disconnected", allowed: ["connected", "expired"])
            }
            return Decision(
                events: [SocialEvent.disconnected(connectionId: connectionId).domainEvent],
                releases: [
                    Reservation(
                        key: accountKey(tenant: context.tenant, platform: state.platform, accountId: state.accountId),
                        owner: connectionId, pointer: "", message: "")
                ])
        }
    }

    /// Why `limit` cannot be a `platform` account's own text limit, if it cannot: out of the
    /// platform's ``PlatformRules/accountTextLimits``, or the platform has one limit for every account.
    private static func textLimitProblem(_ limit: Int, platform: String) -> FieldProblem? {
        guard let rules = PlatformRules.all[platform] else { return nil }
        guard let range = rules.accountTextLimits else {
            return FieldProblem(
                field: "textLimit", pointer: "/textLimit",
                message: "every \(platform) account has the text limit \(rules.textLimit)")
        }
        guard range.contains(limit) else {
            return FieldProblem(
                field: "textLimit", pointer: "/textLimit",
                message: "a \(platform) account's text limit is \(range.lowerBound)–\(range.upperBound)")
        }
        return nil
    }

    private static func credentialProblems(_ credentialRef: String, expiresAt: Date, now: Date) -> [FieldProblem] {
        var problems = [FieldProblem]()
        if let problem = CredentialReference.problem(credentialRef) {
            problems.append(FieldProblem(field: "credentialRef", pointer: "/credentialRef", message: problem))
        }
        if expiresAt <= now {
            problems.append(
                FieldProblem(
                    field: "expiresAt", pointer: "/expiresAt", message: "expiresAt must be in the future"))
        }
        return problems
    }

    /// Folds one stored event into the state (events of other aggregates leave it as it is).
    public static func evolve(_ state: ConnectionState?, _ event: EventRecord) -> ConnectionState? {
        guard let typed = SocialEvent(event) else { return state }
        return evolve(state, typed, version: event.version)
    }

    /// Folds one event; its state keeps no time of its own, so `time` is not used.
    public static func evolve(
        _ state: ConnectionState?, _ event: SocialEvent, at _: Date, version: UInt64
    ) -> ConnectionState? {
        evolve(state, event, version: version)
    }

    /// Folds one event, which made the stream's version `version`.
    public static func evolve(_ state: ConnectionState?, _ event: SocialEvent, version: UInt64) -> ConnectionState? {
        if case let .connected(id, platform, accountId, credentialRef, expiresAt, textLimit) = event {
            return ConnectionState(
                id: id, platform: platform, accountId: accountId, credentialRef: credentialRef, expiresAt: expiresAt,
                disconnected: false, version: version, textLimit: textLimit)
        }
        guard var state else { return nil }
        state.version = version
        switch event {
        case .connected: break
        case let .refreshed(_, credentialRef, expiresAt, textLimit):
            if let credentialRef { state.credentialRef = credentialRef }
            if let expiresAt { state.expiresAt = expiresAt }
            if let textLimit { state.textLimit = textLimit.value }
        case .disconnected: state.disconnected = true
        }
        return state
    }
}
