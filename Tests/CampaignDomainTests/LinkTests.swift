import CampaignDomain
import Testing

/// X and Mastodon count a link as 23 characters, and find links as twitter-text 3 does (Mastodon
/// with changes): the cases below are its published conformance cases for URL extraction
/// (`conformance/extract.yml`, `urls`), text and expected links as published.
@Suite struct LinkTests {
    static let published: [(text: String, links: [String])] = [
        ("http://example.com", ["http://example.com"]),
        ("http://ああ.com", ["http://ああ.com"]),
        ("http://あ-あ.com", ["http://あ-あ.com"]),
        ("text http://foobar.com/#", ["http://foobar.com/#"]),
        (
            "text http://google.com/#search?q=iphone%20-filter%3Alinks",
            ["http://google.com/#search?q=iphone%20-filter%3Alinks"]
        ),
        ("text http://somedomain.com/index.php?path=/abc/def/", ["http://somedomain.com/index.php?path=/abc/def/"]),
        ("text http://somehost.com:3000", ["http://somehost.com:3000"]),
        ("text http://xo.com/~matthew+%ff-,.;x", ["http://xo.com/~matthew+%ff-,.;x"]),
        ("text http://xo.com/,.;x", ["http://xo.com/,.;x"]),
        ("text http://en.wikipedia.org/wiki/Primer_(film)", ["http://en.wikipedia.org/wiki/Primer_(film)"]),
        ("text http://✪df.ws/ejp", ["http://✪df.ws/ejp"]),
        ("test http://example.comだよね.comtest/hogehoge", ["http://example.com"]),
        ("text http://chilp.it/?77e8fd", ["http://chilp.it/?77e8fd"]),
        (
            "text http://msdn.microsoft.com/ja-jp/library/system.net.httpwebrequest(v=VS.100).aspx",
            ["http://msdn.microsoft.com/ja-jp/library/system.net.httpwebrequest(v=VS.100).aspx"]
        ),
        (
            "text https://www.youtube.com/watch?v=LOxOAuDHzaw&list=PLPoq910Q9jXhuH6pit_KwIsck9fEz_9U-",
            ["https://www.youtube.com/watch?v=LOxOAuDHzaw&list=PLPoq910Q9jXhuH6pit_KwIsck9fEz_9U-"]
        ),
        ("text http://no-tld", []),
        ("text http://tld-too-short.x", []),
        ("(http://twitter.com", ["http://twitter.com"]),
        ("text http://word-and-a-number-8-ftw.domain.com/", ["http://word-and-a-number-8-ftw.domain.com/"]),
        ("text http://domain.com-that-you-should-have-put-a-space-after", []),
        ("text http://foo.com?#foo text", ["http://foo.com?#foo"]),
        ("foo.com foo.net foo.org foo.edu foo.gov", ["foo.com", "foo.net", "foo.org", "foo.edu", "foo.gov"]),
        (
            "foo.baz foo.co.jp www.xxxxxxx.baz www.foo.co.uk wwwww.xxxxxxx foo.comm foo.somecom foo.govedu foo.jp",
            ["foo.co.jp", "www.foo.co.uk", "foo.jp"]
        ),
        ("t.co/abcde bit.ly/abcde", ["t.co/abcde", "bit.ly/abcde"]),
        ("Go to http://example.com/a+ or http://example.com/a-", ["http://example.com/a+", "http://example.com/a-"]),
        ("Go to http://example.com/view/slug-url-?foo=bar", ["http://example.com/view/slug-url-?foo=bar"]),
        (
            "Go to https://en.m.wikipedia.org/wiki/Hatfield–McCoy_feud please",
            ["https://en.m.wikipedia.org/wiki/Hatfield–McCoy_feud"]
        ),
        ("@user Try http:// example.com/path", ["example.com/path"]),
        (
            "これは日本語です。example.com/path/index.html中国語example.com/path한국",
            ["example.com/path/index.html", "example.com/path"]
        ),
        (
            "twitter.comこれは日本語です。example.com中国語t.co/abcde한국twitter.com "
                + "example2.comテストtwitter.com/abcde",
            ["twitter.com", "example.com", "t.co/abcde", "twitter.com", "example2.com", "twitter.com/abcde"]
        ),
        (
            "http://twitter.com/これは日本語です。example.com中国語http://t.co/abcde"
                + "한국twitter.comテストexample2.comテストhttp://twitter.com/abcde",
            [
                "http://twitter.com/", "example.com", "http://t.co/abcde", "twitter.com", "example2.com",
                "http://twitter.com/abcde",
            ]
        ),
        ("Go to http://twitter.com/Русские_слова", ["http://twitter.com/Русские_слова"]),
        (
            "http://exampleこれは日本語です.com/path/index.html http://" + String(repeating: "あ", count: 300)
                + ".com/path/index.html",
            ["http://exampleこれは日本語です.com/path/index.html"]
        ),
        ("twitter.jp日本語it.so中国語foo.jp it.so foo.jp", ["twitter.jp", "it.so", "foo.jp", "it.so", "foo.jp"]),
        ("Hello http://xn--はじめよう.com/index.html", []),
        ("text http://domain-dash_2314352345_dfasd.foo-cow_4352.com", []),
        ("Email me at name.al-lastname@foo.com or name.al+lastname@foo.com", []),
        ("Find my page at name.al-lastname.com", ["name.al-lastname.com"]),
        ("MLB.tv vine.co twitch.tv t.co", ["MLB.tv", "vine.co", "twitch.tv", "t.co"]),
        ("@user Try http://\u{A0}example.com/path", ["example.com/path"]),
        ("test http://sub_domain-dash.twitter.com", ["http://sub_domain-dash.twitter.com"]),
        ("test http://a.b.cd", ["http://a.b.cd"]),
        ("test http://a_b.c-d.com", ["http://a_b.c-d.com"]),
        ("test http://-leadingdash.twitter.com", []),
        ("test http://leadingdash.-twitter.com", []),
        ("test http://trailingdash-.twitter.com", []),
        ("test http://trailingdash.twitter-.com", []),
        ("test http://_leadingunderscore.twitter.com", []),
        ("test http://leadingunderscore._twitter.com", []),
        ("test http://trailingunderscore_.twitter.com", []),
        ("test http://trailingunderscore.twitter_.com", []),
        ("test http://twitter_underscore.com", []),
        ("test http://twitter.c_o_m", []),
        ("test http://www.foo.com/foo/path-with-period./", ["http://www.foo.com/foo/path-with-period./"]),
        ("test http://www.foo.org.za/foo/bar/688.1", ["http://www.foo.org.za/foo/bar/688.1"]),
        (
            "test http://www.foo.com/bar-path/some.stm?param1=foo;param2=P1|0||P2|0",
            ["http://www.foo.com/bar-path/some.stm?param1=foo;param2=P1|0||P2|0"]
        ),
        ("test http://foo.com/bar/123/foo_&_bar/", ["http://foo.com/bar/123/foo_&_bar/"]),
        (
            "http://www.andersondaradio.no.comunidades.net/ test test",
            ["http://www.andersondaradio.no.comunidades.net/"]
        ),
        ("test ELPAÍS.com", ["ELPAÍS.com"]),
        ("test http://twitter.com/.", ["http://twitter.com/"]),
        (
            "Test a ton of periods http://example.com/path" + String(repeating: ".", count: 42),
            ["http://example.com/path"]
        ),
        ("Test a ton of periods http://example.com/" + String(repeating: ",", count: 42), ["http://example.com/"]),
        (
            "Test a ton of periods http://example.com/path/" + String(repeating: "!", count: 42),
            ["http://example.com/path/"]
        ),
        ("#test.com @test.com #http://test.com @http://test.com #t.co/abcde @t.co/abcde", []),
        ("I really like http://t.co/pbY2NfTZ's website", ["http://t.co/pbY2NfTZ"]),
        ("Check this site out http://t.co/FNkPfmii- it's great", ["http://t.co/FNkPfmii"]),
        ("According to http://t.co/ulYGBYSo: the internet is cool", ["http://t.co/ulYGBYSo"]),
        (
            "I really like http://t.co/abcdefghijklmnopqrstuvwxyz0123456789",
            ["http://t.co/abcdefghijklmnopqrstuvwxyz0123456789"]
        ),
        ("I really like http://t.co/abcdefghijklmnopqrstuvwxyz012345678901234", []),
        ("example.comてすとですtwitter.みんなです", ["example.com", "twitter.みんな"]),
        (
            "http://twitter.com\nhttp://example.com\nhttp://example.com/path\nexample.com/path\nit.so\nit.so/abcde",
            [
                "http://twitter.com", "http://example.com", "http://example.com/path", "example.com/path", "it.so",
                "it.so/abcde",
            ]
        ),
        ("$http://twitter.com $twitter.com $http://t.co/abcde $t.co/abcde $t.co $TVI.CA $RBS.CA", []),
        ("long.test.tar.bz2 test.tar.bz2 tar.bz2", []),
        ("john.doe.gov@mail.com", []),
        ("john.doe.jp@mail.com", []),
    ]

    @Test func findsTheLinksTwitterTextFinds() {
        for (text, links) in Self.published {
            #expect(TextMeasure.xWeighted.links(in: text).map(String.init) == links, "\(text)")
        }
    }

    /// A bare domain shorter than 23 characters was counted as written, so a post X refuses at
    /// publish time (`CONTENT_REJECTED`) passed here; a long path after one was counted in full, so
    /// a post X takes was refused.
    @Test func countsABareDomainAs23() {
        let measure = TextMeasure.xWeighted
        #expect(measure.length(of: "Sale at acme.shop today") == "Sale at ".count + 23 + " today".count)
        #expect(measure.length(of: "acme.com/" + String(repeating: "p", count: 300)) == 23)
        #expect(measure.length(of: "v1.2 readme.md a.b e.g. node.js") == "v1.2 ".count + 23 + " a.b e.g. node.js".count)
        let text = "See acme.io " + String(repeating: "a", count: 252)
        #expect(measure.length(of: text) == 280)
        #expect(PlatformRules.all["x"]!.length(of: text + "a") == 281)
        // Where this differs from twitter-text (README): X links `domain.acme.com` here.
        #expect(TextMeasure.xWeighted.links(in: "sub_domain.acme.com").isEmpty)
        #expect(TextMeasure.xWeighted.links(in: "/日本acme.com") == ["acme.com"])
    }

    /// A link's path ends where X's does: text in other scripts after it (common in Japanese posts,
    /// which rarely put a space there) counts, at its own weight; it was counted into the link.
    @Test func aLinkEndsWhereXEndsIt() {
        let measure = TextMeasure.xWeighted
        #expect(measure.length(of: "https://example.com/sale詳しくはこちら") == 23 + 7 * 2)
        #expect(measure.length(of: "(see https://example.com/a)") == 1 + 4 + 23 + 1)
        #expect(measure.length(of: "\"https://example.com/a\" 👍") == 1 + 23 + 1 + 1 + 2)
        // No link without a top-level domain: counted as written.
        #expect(measure.length(of: "http://localhost/x") == 18)
    }

    /// Long runs that start links but never finish one are scanned once (a scan that went back over
    /// them, as one did without the rule on what may precede a domain, ran for minutes here). A link
    /// of more than 4,096 characters is none.
    @Test func scansLongRunsOnce() {
        let runs = [
            String(repeating: "a.", count: 50_000), String(repeating: "http://", count: 20_000),
            "http://" + String(repeating: "あ", count: 100_000), String(repeating: "x.co/(", count: 20_000),
        ]
        for text in runs { _ = TextMeasure.xWeighted.links(in: text) }
        #expect(TextMeasure.xWeighted.links(in: String(repeating: "a.", count: 2_000) + "com").count == 1)
        #expect(TextMeasure.xWeighted.links(in: String(repeating: "a.", count: 50_000) + "com").isEmpty)
    }

    /// Mastodon finds links as twitter-text does with its own changes: a scheme always (eight of
    /// them), a domain ending in a top-level domain, a path of any characters but white space and
    /// `<>()?` that ends in none of the punctuation Mastodon leaves out. Before, a link was anything
    /// after `http://` or `https://` up to white space.
    @Test func mastodonFindsLinksItsOwnWay() {
        let measure = TextMeasure.linksAs23
        let cases: [(String, [String])] = [
            ("Sale at acme.shop", []),
            ("gemini://example.org/page and ipfs://example.com", ["gemini://example.org/page", "ipfs://example.com"]),
            ("https://example.com/sale詳しくはこちら", ["https://example.com/sale詳しくはこちら"]),
            ("(see https://example.com/a_(b)).", ["https://example.com/a_(b)"]),
            ("https://example.com/a, https://example.com/b!", ["https://example.com/a", "https://example.com/b"]),
            ("https://example.com/<b> https://localhost/x", ["https://example.com/"]),
            ("https://example.com/?q=日本&x=1.", ["https://example.com/?q=日本&x=1"]),
            ("#https://example.com xhttps://example.com", []),
        ]
        for (text, links) in cases {
            #expect(measure.links(in: text).map(String.init) == links, "\(text)")
        }
        #expect(measure.length(of: "https://localhost/x") == 19)
        #expect(measure.length(of: "Read https://example.com/sale詳しくはこちら!") == 5 + 23 + 1)
        #expect(TextMeasure.scalars.links(in: "https://example.com").isEmpty)
    }

    /// Random text from the characters links are made of and broken by: every scan ends, and its
    /// links (thousands of them) are in order, apart, and each holds a `.`.
    @Test func randomTextNeverBreaksTheScan() {
        let alphabet =
            Array(
                "aZ0.-_/:?#@$()[] é日みんなhtpsxnco\u{301}\u{200D}👨\u{FEFF}\u{202E}&='\"!,+~%;*|\n"
            )
            .map(String.init) + ["http://", "https://", "xn--", "com", "jp", "t.co/", "gemini://"]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
        var found = 0
        for _ in 0..<10_000 {
            let text = (0..<next(40)).map { _ in alphabet[next(alphabet.count)] }.joined()
            for measure in [TextMeasure.xWeighted, .linksAs23] {
                let links = measure.links(in: text)
                found += links.count
                #expect(links.allSatisfy { !$0.isEmpty && $0.contains(".") }, "\(text)")
                #expect(zip(links, links.dropFirst()).allSatisfy { $0.endIndex < $1.startIndex }, "\(text)")
                _ = measure.length(of: text)  // measured without a trap
            }
        }
        #expect(found > 1_000)
    }
}
