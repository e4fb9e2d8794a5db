import CampaignDomain
import Foundation
import Testing

@Suite struct PlatformRuleTests {
    static let limits: [(String, Int)] = [
        ("x", 280), ("linkedin", 3_000), ("facebook", 63_206), ("instagram", 2_200),
        ("threads", 500), ("bluesky", 300), ("mastodon", 500), ("tiktok", 2_200),
    ]
    let image = Media(kind: "image", url: "https://cdn.example/a.jpg")
    let video = Media(kind: "video", url: "https://cdn.example/a.mp4")
    let gif = Media(kind: "gif", url: "https://cdn.example/a.gif")

    func problems(_ platform: String, _ text: String, _ media: [Media]? = nil) -> [FieldProblem] {
        let rules = PlatformRules.all[platform]!
        return rules.problems(text: text, media: media ?? (rules.requiresMedia ? [image] : []))
    }

    @Test(arguments: limits)
    func textAtTheLimitPassesAndOneOverFails(_ platform: String, _ limit: Int) {
        #expect(problems(platform, String(repeating: "a", count: limit)).isEmpty)
        let over = problems(platform, String(repeating: "a", count: limit + 1))
        #expect(over.map(\.pointer) == ["/text"])
        #expect(over.first?.message.contains(platform) == true)
    }

    @Test func blueskyCountsGraphemeClustersSoFlagsAndFamiliesCountOnce() {
        let flag = "🇫🇷"
        let family = "👨‍👩‍👧"
        let accented = "e\u{301}"
        for cluster in [flag, family, accented] {
            let fits = min(300, 3_000 / cluster.utf8.count)
            #expect(problems("bluesky", String(repeating: cluster, count: fits)).isEmpty, "\(cluster) × \(fits)")
            #expect(problems("bluesky", String(repeating: cluster, count: 301)).count >= 1, "\(cluster) × 301")
        }
    }

    /// Bluesky's post record takes at most 3,000 bytes of UTF-8 beside its 300 graphemes: 300
    /// families of three (18 bytes each) passed here and were refused at publish.
    @Test func blueskyTakesAtMost3000BytesOfUTF8() {
        let family = "👨‍👩‍👧"
        #expect(problems("bluesky", String(repeating: family, count: 166)).isEmpty)
        #expect(
            problems("bluesky", String(repeating: family, count: 167)).map(\.message) == [
                "bluesky allows 3000 bytes of UTF-8; this text has 3006"
            ])
        #expect(
            problems("bluesky", String(repeating: family, count: 301)).map(\.message) == [
                "bluesky allows 300 graphemes; this text has 301",
                "bluesky allows 3000 bytes of UTF-8; this text has 5418",
            ])
        #expect(problems("mastodon", String(repeating: family, count: 500)).isEmpty, "no byte limit elsewhere")
    }

    @Test func otherPlatformsCountScalarsSoAFlagCountsTwice() {
        #expect(problems("instagram", String(repeating: "🇫🇷", count: 1_100), [image]).isEmpty)
        #expect(
            problems("instagram", String(repeating: "🇫🇷", count: 1_101), [image]).first?.message
                == "instagram allows 2200 characters; this text has 2202")
    }

    /// Mastodon counts grapheme clusters (its `StatusLengthValidator`): a family of three joined by
    /// zero-width joiners is one. Counted as five scalars, 101 of them were refused here.
    @Test func mastodonCountsGraphemeClusters() {
        for cluster in ["👨‍👩‍👧", "🇫🇷", "e\u{301}"] {
            #expect(problems("mastodon", String(repeating: cluster, count: 500)).isEmpty, "\(cluster) × 500")
            #expect(problems("mastodon", String(repeating: cluster, count: 501)).count == 1, "\(cluster) × 501")
        }
    }

    /// Mastodon counts a mention of an account on another server as its `@user` alone (its own
    /// counter's rule): counted as written, a post that Mastodon takes was refused here.
    @Test func mastodonCountsARemoteMentionAsItsUserNameAlone() {
        let measure = TextMeasure.linksAs23
        #expect(measure.length(of: "hi @alice@mastodon.social!") == "hi @alice!".count)
        #expect(measure.length(of: "@alice hi") == 9, "a local mention is counted as written")
        #expect(measure.length(of: "@a.b-c_d@social.example-one.org") == "@a.b-c_d".count)
        #expect(measure.length(of: "mail bob@example.com") == 20, "an e-mail address is no mention")
        #expect(measure.length(of: "x=@a@b.c /@a@b.c") == 16, "nor is an @ after = or /")
        #expect(measure.length(of: "@alice@ @@bob@host. @") == "@alice@ @@bob. @".count)
        #expect(measure.length(of: "@ünïcode@host @bob@höst.example") == "@ünïcode@host @bob".count)
        #expect(measure.length(of: "https://a.example.com/@alice@b.example @carol@c.example") == 23 + " @carol".count)
        let text = String(repeating: "a", count: 480) + " @alice@a-very-long-server-name.example"
        #expect(problems("mastodon", text).isEmpty)
        #expect(problems("mastodon", String(repeating: "a", count: 494) + " @alice").count == 1)
    }

    /// Threads counts an emoji as the bytes of its UTF-8 form (its API's documented limitation), so
    /// 126 emoji of 4 bytes are over 500 though they are 126 scalars: counted as scalars, such a
    /// post passed here and was refused at publish.
    @Test func threadsCountsAnEmojiAsItsUTF8Bytes() {
        #expect(TextMeasure.emojiAsUTF8Bytes.length(of: "Hi 😀") == 7)
        #expect(TextMeasure.emojiAsUTF8Bytes.length(of: "👨‍👩‍👧") == 18)
        #expect(TextMeasure.emojiAsUTF8Bytes.length(of: "🇫🇷 é 日本") == 8 + 5)
        #expect(problems("threads", String(repeating: "😀", count: 125)).isEmpty)
        #expect(
            problems("threads", String(repeating: "😀", count: 126)).first?.message
                == "threads allows 500 characters as Threads counts them (an emoji as its UTF-8 bytes); "
                + "this text has 504")
        #expect(problems("threads", String(repeating: "日", count: 500)).isEmpty)
    }

    /// TikTok counts its caption in UTF-16 code units (its Content Posting API's "UTF-16 runes"): an
    /// emoji or another scalar beyond U+FFFF is 2. Counted as scalars, 1,101 emoji passed here and
    /// TikTok refused them at publish.
    @Test func tiktokCountsUTF16CodeUnits() {
        #expect(TextMeasure.utf16.length(of: "Hi 😀") == 5)
        #expect(TextMeasure.utf16.length(of: "👨‍👩‍👧") == 8, "three emoji of 2 and two joiners of 1")
        #expect(TextMeasure.utf16.length(of: "🇫🇷 é e\u{301} 日本 𝐁") == 4 + 1 + 1 + 1 + 2 + 1 + 2 + 1 + 2)
        #expect(problems("tiktok", String(repeating: "😀", count: 1_100)).isEmpty)
        #expect(
            problems("tiktok", String(repeating: "😀", count: 1_101)).first?.message
                == "tiktok allows 2200 UTF-16 code units (an emoji 2); this text has 2202")
        #expect(problems("tiktok", String(repeating: "日", count: 2_200)).isEmpty, "a CJK scalar is 1")
        #expect(problems("tiktok", String(repeating: "日", count: 2_201)).count == 1)
    }

    /// Threads refuses a post carrying more than 5 distinct links (since December 2025: the links
    /// its text holds, and its link attachment when that is none of them). Without the limit here,
    /// such a post was accepted and refused at publish.
    @Test func threadsAllowsFiveDistinctLinks() {
        let rules = PlatformRules.all["threads"]!
        let five = (1...5).map { "https://acme.com/\($0)" }.joined(separator: " ")
        #expect(rules.problems(text: five, media: []).isEmpty)
        #expect(
            rules.problems(text: five + " www.acme.shop", media: []).map(\.message) == [
                "threads allows at most 5 distinct links; this post has 6"
            ], "a bare domain is a link")
        #expect(rules.problems(text: five + " https://acme.com/1 https://acme.com/5.", media: []).isEmpty)
        #expect(rules.problems(text: five, media: [], link: "https://acme.com/3").isEmpty, "the link is in the text")
        #expect(
            rules.problems(text: "www.acme.shop", media: [], link: "https://www.acme.shop").isEmpty, "without scheme")
        let sixth = rules.problems(text: five, media: [], link: "https://acme.com/6")
        #expect(sixth.map(\.pointer) == ["/link"], "the link is the one too many")
        #expect(rules.problems(text: five + " a.io", media: [], link: "https://b.io").map(\.pointer) == ["/text"])
        #expect(rules.problems(text: "no links: e.g. node.js", media: [], link: "https://b.io").isEmpty)
        // Other platforms do not count links.
        let ten = (1...10).map { "https://acme.com/\($0)" }.joined(separator: " ")
        #expect(PlatformRules.all["linkedin"]!.problems(text: ten, media: [], link: "https://b.io").isEmpty)
    }

    /// X weighs text as twitter-text 3 does: CJK and every emoji (a flag, a family) 2, Latin and
    /// general punctuation 1, a link 23 whatever its length, the text in NFC. A 141-character
    /// Japanese post was accepted and then refused by X at publish time.
    @Test func xWeighsCJKAndEmojiTwiceAndALinkAs23() {
        let doubled = [("日", 140), ("🇫🇷", 140), ("👨‍👩‍👧", 140), ("❤️", 140)]
        let units = doubled + [("é", 280), ("e\u{301}", 280), ("—", 280)]
        for (unit, fits) in units {
            #expect(problems("x", String(repeating: unit, count: fits)).isEmpty, "\(unit) × \(fits)")
            #expect(problems("x", String(repeating: unit, count: fits + 1)).count == 1, "\(unit) × \(fits + 1)")
        }
        #expect(
            problems("x", String(repeating: "日", count: 141)).first?.message
                == "x allows 280 characters as X weighs them (CJK and emoji 2, a link 23); this text has 282")
        let link = "https://example.com/" + String(repeating: "p", count: 200)
        #expect(problems("x", link + " " + String(repeating: "a", count: 256)).isEmpty)
        #expect(problems("x", link + " " + String(repeating: "a", count: 257)).count == 1)
        // Not links: a scheme with nothing after it, or a word that starts with http.
        #expect(TextMeasure.xWeighted.length(of: "https:// httpd http") == 19)
        #expect(TextMeasure.xWeighted.length(of: "(HTTPS://x.example.com/a). b") == 28)
        // Mastodon counts a link as 23 too, and other text in scalars.
        #expect(problems("mastodon", link + " " + String(repeating: "a", count: 476)).isEmpty)
        #expect(problems("mastodon", link + " " + String(repeating: "a", count: 477)).count == 1)
    }

    @Test func instagramAndTikTokNeedMedia() {
        for platform in ["instagram", "tiktok"] {
            #expect(problems(platform, "caption", []).map(\.pointer) == ["/media"])
            #expect(problems(platform, "caption", [image]).isEmpty)
        }
        for platform in ["x", "linkedin", "facebook", "threads", "bluesky", "mastodon"] {
            #expect(problems(platform, "text only", []).isEmpty)
        }
    }

    /// Five hashtags since Instagram's cap of December 2025 (thirty before); twenty mentions.
    @Test func instagramAllowsFiveHashtagsAndTwentyMentions() {
        let tags = (1...5).map { "#tag\($0)" }.joined(separator: " ")
        #expect(problems("instagram", tags, [image]).isEmpty)
        #expect(
            problems("instagram", tags + " #more", [image]).map(\.message) == [
                "instagram allows at most 5 hashtags; this text has 6"
            ])
        let mentions = (1...20).map { "@user.\($0)" }.joined(separator: " ")
        #expect(problems("instagram", mentions, [image]).isEmpty)
        #expect(problems("instagram", mentions + ", @more", [image]).count == 1)
        // Other platforms leave them alone.
        #expect(problems("threads", tags + " #more " + mentions + " @more", [image]).isEmpty)
        // What counts: a tag at a word's start with a non-digit in it; a mention of name characters.
        #expect(TextTags.hashtags(in: "#Spring #sale_2026 #été (#x) #1 a#b ## # #2026x") == 5)
        #expect(TextTags.mentions(in: "@acme, @acme.shop. me@example.com @ @. (@x)") == 3)
    }

    @Test func mediaCountsAtTheLimitPassAndOneOverFails() {
        let limits = [
            "x": 4, "linkedin": 20, "facebook": 10, "instagram": 10, "threads": 20, "bluesky": 4, "mastodon": 4,
            "tiktok": 35,
        ]
        for (platform, limit) in limits {
            #expect(problems(platform, "t", Array(repeating: image, count: limit)).isEmpty, "\(platform) at \(limit)")
            #expect(
                problems(platform, "t", Array(repeating: image, count: limit + 1)).map(\.pointer) == [
                    "/media/\(limit)"
                ], "\(platform)")
        }
    }

    @Test func mediaKindsFollowEachPlatform() {
        #expect(problems("x", "t", [gif]).isEmpty)
        #expect(problems("linkedin", "t", [gif]).map(\.pointer) == ["/media/0/kind"])
        #expect(problems("instagram", "t", [gif]).map(\.pointer) == ["/media/0/kind"])
        #expect(problems("x", "t", [image, video]).map(\.pointer) == ["/media/1/kind"])
        #expect(problems("instagram", "t", [image, video]).isEmpty)
    }

    @Test func everyPlatformHasAPublishLimit() {
        #expect(PlatformRules.all["x"]?.publishLimit == 200 && PlatformRules.all["x"]?.publishWindow == 900)
        #expect(PlatformRules.all.values.allSatisfy { $0.publishLimit > 0 && $0.publishWindow > 0 })
    }
}

@Suite struct AssignmentTests {
    let variants = [Variant(key: "control", weight: 50), Variant(key: "b", weight: 30), Variant(key: "c", weight: 20)]

    @Test func aHundredThousandContactsSplitWithinOnePercentOfTheWeights() {
        var counts = [String: Int]()
        for n in 0..<100_000 {
            counts[
                Experiment.assign(experimentId: "exp_split", contactId: "ctc_\(n)", variants: variants), default: 0] +=
                1
        }
        for variant in variants {
            let share = Double(counts[variant.key] ?? 0) / 100_000
            #expect(abs(share - Double(variant.weight) / 100) < 0.01, "\(variant.key): \(share)")
        }
    }

    @Test func theSameContactAlwaysGetsTheSameVariant() {
        for n in 0..<1_000 {
            let first = Experiment.assign(experimentId: "exp_1", contactId: "ctc_\(n)", variants: variants)
            #expect(Experiment.assign(experimentId: "exp_1", contactId: "ctc_\(n)", variants: variants) == first)
        }
    }

    /// Pinned values: the assignment is a pure function of the ids (SHA-256), so it is the same in
    /// every process, on every machine and after every restart. These must never change.
    @Test func assignmentIsStableAcrossProcesses() {
        let pinned = (0..<8).map {
            Experiment.assign(experimentId: "exp_pinned", contactId: "ctc_\($0)", variants: variants)
        }
        // Computed independently: Python, int.from_bytes(sha256(b"exp_pinned:ctc_N").digest()[:8], "big") % 10000.
        #expect(pinned == ["control", "control", "control", "control", "control", "b", "control", "b"])
    }
}
