import CampaignDomain
import CampaignEngine
import Foundation

/// A small, fast, seedable random source (SplitMix64), so a fuzz run can be replayed exactly.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// Creates a generator from a seed.
    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A whole number in `range`.
    public mutating func int(_ range: Range<Int>) -> Int { Int.random(in: range, using: &self) }
}

/// Hostile input: requests derived from valid ones by byte flips, truncation, type swaps, huge
/// strings and arrays, deep nesting, duplicate keys, invalid UTF-8, extreme numbers and dates,
/// control characters, and unknown or missing fields.
public struct Fuzzer {
    /// The kinds of mutation.
    public enum Mutation: String, CaseIterable, Sendable {
        case byteFlip, truncate, typeSwap, hugeString, hugeArray, deepNesting, duplicateKey
        case invalidUTF8, extremeNumber, extremeDate, controlCharacter, unknownField, missingField
    }

    /// Valid requests to start from.
    public let seeds: [String]
    /// The largest string or array a mutation makes (bytes or elements).
    public let hugeSize: Int
    private var random: SeededRandom

    /// A fuzzer mutating the `seeds` requests, its choices fixed by `seed`; huge values are up to `hugeSize` long.
    public init(seeds: [String], seed: UInt64, hugeSize: Int = 200_000) {
        self.seeds = seeds
        self.hugeSize = hugeSize
        random = SeededRandom(seed: seed)
    }

    /// The next hostile request and the mutation that made it.
    public mutating func next() -> (bytes: [UInt8], mutation: Mutation) {
        let seed = seeds[random.int(0..<seeds.count)]
        let mutation = Mutation.allCases[random.int(0..<Mutation.allCases.count)]
        return (mutate(Array(seed.utf8), with: mutation), mutation)
    }

    mutating func mutate(_ bytes: [UInt8], with mutation: Mutation) -> [UInt8] {
        var bytes = bytes
        switch mutation {
        case .byteFlip:
            for _ in 0..<random.int(1..<9) { bytes[random.int(0..<bytes.count)] ^= UInt8(1 << random.int(0..<8)) }
            return bytes
        case .truncate:
            return Array(bytes.prefix(random.int(0..<bytes.count)))
        case .invalidUTF8:
            let junk: [[UInt8]] = [
                [0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82],
            ]
            let at = insertionPointInsideString(bytes)
            bytes.insert(contentsOf: junk[random.int(0..<junk.count)], at: at)
            return bytes
        case .controlCharacter:
            let at = insertionPointInsideString(bytes)
            let options: [[UInt8]] = [
                [0x00], [0x07], [0x1b], Array("\\u0000".utf8), Array("\\ud800".utf8), Array("\\u001b[2J".utf8),
            ]
            bytes.insert(contentsOf: options[random.int(0..<options.count)], at: at)
            return bytes
        case .duplicateKey:
            guard let brace = bytes.firstIndex(of: UInt8(ascii: "{")) else { return bytes }
            bytes.insert(contentsOf: Array(#""requestId":"dup","#.utf8), at: brace + 1)
            return bytes
        case .deepNesting:
            let depth = random.int(33..<5_000)
            let open = random.int(0..<2) == 0 ? UInt8(ascii: "[") : UInt8(ascii: "{")
            guard var json = try? JSON.parse(bytes) else { return bytes }
            var nested = Array(repeating: open, count: depth)
            if open == UInt8(ascii: "{") { nested = Array((0..<depth).map { _ in Array(#"{"a":"#.utf8) }.joined()) }
            let close: [UInt8] =
                open == UInt8(ascii: "[")
                ? Array(repeating: UInt8(ascii: "]"), count: depth) : Array(repeating: UInt8(ascii: "}"), count: depth)
            json = replaceRandomLeaf(in: json) { _ in .string("@@NEST@@") }
            let text = json.bytes
            guard let marker = text.firstRange(of: Array(#""@@NEST@@""#.utf8)) else { return text }
            return Array(text[..<marker.lowerBound]) + nested + Array("1".utf8) + close
                + Array(text[marker.upperBound...])
        default:
            guard let json = try? JSON.parse(bytes) else { return bytes }
            return mutateStructure(json, mutation).bytes
        }
    }

    private mutating func insertionPointInsideString(_ bytes: [UInt8]) -> Int {
        let quotes = bytes.indices.filter { bytes[$0] == UInt8(ascii: "\"") }
        guard let quote = quotes.randomElement(using: &random) else { return random.int(0..<bytes.count) }
        return min(bytes.count, quote + 1)
    }

    private mutating func mutateStructure(_ json: JSON, _ mutation: Mutation) -> JSON {
        switch mutation {
        case .typeSwap:
            let pick = Int(random.next() % 60)
            return replaceRandomLeaf(in: json) { value in
                let options: [JSON]
                switch value {
                case .string: options = [.number(42), .bool(true), .null, .array([]), .object([:])]
                case .number: options = [.string("42"), .bool(false), .null, .array([.number(1)])]
                case .bool: options = [.string("true"), .number(1), .null]
                case .array: options = [.object([:]), .string("[]"), .number(0)]
                case .object: options = [.array([]), .string("{}"), .null]
                case .null: options = [.object(["x": .null])]
                }
                return options[pick % options.count]
            }
        case .hugeString:
            let size = random.int(1_000..<max(1_001, hugeSize))
            let text = String(repeating: ["a", "é", "🇫🇷", "\\", "\""][random.int(0..<5)], count: size / 4)
            return replaceRandomLeaf(in: json) { _ in .string(text) }
        case .hugeArray:
            let count = random.int(100..<max(101, hugeSize / 4))
            let element: JSON = [
                .number(1), .string("ctc_1"), .object(["contactId": .string("ctc_1"), "attributes": .object([:])]),
            ][random.int(0..<3)]
            return replaceRandomLeaf(in: json) { _ in .array(Array(repeating: element, count: count)) }
        case .extremeNumber:
            let numbers: [Double] = [
                1e308, -1e308, 9_007_199_254_740_992, -0.0, 1e-300, 4_294_967_296, -1, 0.5, Double(Int64.max),
            ]
            let number = numbers[random.int(0..<numbers.count)]
            return replaceRandomLeaf(in: json) { _ in .number(number) }
        case .extremeDate:
            let dates = [
                "0000-00-00T00:00:00Z", "9999-12-31T23:59:59Z", "2026-02-30T00:00:00Z", "+275760-09-13T00:00:00Z",
                "1969-12-31T23:59:59Z", "2026-12-01T25:61:61Z", "2026-12-01T00:00:00+99:99",
                "2026-12-01T00:00:00.0000000001Z", "",
            ]
            let date = dates[random.int(0..<dates.count)]
            return replaceRandomLeaf(in: json) { _ in .string(date) }
        case .unknownField:
            return addToRandomObject(
                in: json, key: ["accessToken", "token", "__proto__", "extra", "é", ""][random.int(0..<6)],
                value: .string("secret-\(random.next())"))
        case .missingField:
            return removeFromRandomObject(in: json)
        default:
            return json
        }
    }

    private mutating func leafCount(_ json: JSON) -> Int {
        switch json {
        case let .object(members): return members.isEmpty ? 1 : members.values.reduce(0) { $0 + leafCount($1) }
        case let .array(items): return items.isEmpty ? 1 : items.reduce(0) { $0 + leafCount($1) }
        default: return 1
        }
    }

    private mutating func replaceRandomLeaf(in json: JSON, _ replace: (JSON) -> JSON) -> JSON {
        var target = random.int(0..<max(1, leafCount(json)))
        func walk(_ value: JSON) -> JSON {
            switch value {
            case let .object(members) where !members.isEmpty:
                var out = JSONObject()
                for key in members.keys.sorted() { out[key] = walk(members[key]!) }
                return .object(out)
            case let .array(items) where !items.isEmpty:
                return .array(items.map(walk))
            default:
                defer { target -= 1 }
                return target == 0 ? replace(value) : value
            }
        }
        return walk(json)
    }

    private mutating func objectCount(_ json: JSON) -> Int {
        switch json {
        case let .object(members): return 1 + members.values.reduce(0) { $0 + objectCount($1) }
        case let .array(items): return items.reduce(0) { $0 + objectCount($1) }
        default: return 0
        }
    }

    private mutating func addToRandomObject(in json: JSON, key: String, value: JSON) -> JSON {
        var target = random.int(0..<max(1, objectCount(json)))
        func walk(_ node: JSON) -> JSON {
            switch node {
            case let .object(members):
                var out = members
                if target == 0 { out[key] = value }
                target -= 1
                for (k, v) in members { out[k] = walk(v) }
                return .object(out)
            case let .array(items): return .array(items.map(walk))
            default: return node
            }
        }
        return walk(json)
    }

    private mutating func removeFromRandomObject(in json: JSON) -> JSON {
        var target = random.int(0..<max(1, objectCount(json)))
        var pick = random.next()
        func walk(_ node: JSON) -> JSON {
            switch node {
            case let .object(members):
                var out = members
                if target == 0, !members.isEmpty {
                    let keys = members.keys.sorted()
                    out[keys[Int(pick % UInt64(keys.count))]] = nil
                    pick = 0
                }
                target -= 1
                for (k, v) in out { out[k] = walk(v) }
                return .object(out)
            case let .array(items): return .array(items.map(walk))
            default: return node
            }
        }
        return walk(json)
    }

    /// Valid requests of many kinds for tenant `acme`, to mutate (ids exist after ``prepare(_:)``).
    public static func seedRequests() -> [String] {
        let p =
            #""principal":{"tenant":"acme","subject":"fuzz","role":"admin","scopes":["campaigns:read","#
            + #""campaigns:write","segments:read","segments:write","contacts:read","contacts:write","#
            + #""social:read","social:write","experiments:read","experiments:write","audit:read"],"#
            + #""expiresAt":"2099-01-01T00:00:00Z"}"#
        return [
            #"{"requestId":"f1",\#(p),"command":"campaign.create","payload":{"name":"Fuzzed campaign","#
                + #""channel":"email","segmentId":"seg_1","content":{"subject":"Hi","body":"Hello"}}}"#,
            #"{"requestId":"f2","idempotencyKey":"fk","expectedVersion":1,\#(p),"#
                + #""command":"campaign.update","payload":{"campaignId":"cmp_1","name":"Updated name","#
                + #""content":{"subject":"S","body":"New"}}}"#,
            #"{"requestId":"f3",\#(p),"command":"campaign.schedule","payload":{"campaignId":"cmp_1","#
                + #""sendAt":"2030-01-01T00:00:00Z"}}"#,
            #"{"requestId":"f4",\#(p),"command":"segment.create","payload":{"name":"Fuzz segment","#
                + #""rules":{"all":[{"field":"age","operator":"between","value":[18,65]},"#
                + #"{"any":[{"field":"country","operator":"in","value":["FR","DE"]},{"field":"tags","#
                + #""operator":"includes","value":"vip"}]}]}}}"#,
            #"{"requestId":"f5",\#(p),"command":"contact.upsert","payload":{"contactId":"ctc_1","#
                + #""attributes":{"email":"a@b.example","age":30,"subscribed":true,"signed_up_at":"2025-01-01","#
                + #""tags":["vip"],"plan":"pro"}}}"#,
            #"{"requestId":"f6",\#(p),"command":"contact.import","#
                + #""payload":{"contacts":[{"contactId":"ctc_2","attributes":{"age":20}},{"contactId":"ctc_3","#
                + #""attributes":{"country":"FR"}}]}}"#,
            #"{"requestId":"f7",\#(p),"command":"field.define","payload":{"name":"tier","type":"enum","#
                + #""values":["a","b"]}}"#,
            #"{"requestId":"f8",\#(p),"command":"social.connect","payload":{"platform":"x","#
                + #""accountId":"acct","credentialRef":"vault://x/acct","expiresAt":"2030-01-01T00:00:00Z","#
                + #""textLimit":25000}}"#,
            #"{"requestId":"f9",\#(p),"command":"post.create","payload":{"connectionIds":["con_1"],"#
                + #""text":"Hello 🇫🇷","media":[{"kind":"image","url":"https://cdn.example/a.jpg"}],"#
                + #""link":"https://example.com","campaignId":"cmp_1"}}"#,
            #"{"requestId":"f10",\#(p),"command":"post.schedule","payload":{"postId":"pst_1","#
                + #""publishAt":"2030-01-01T00:00:00Z"}}"#,
            #"{"requestId":"f11",\#(p),"command":"experiment.create","payload":{"campaignId":"cmp_1","#
                + #""name":"E","variants":[{"key":"a","weight":50},{"key":"b","weight":50,"#
                + #""content":{"subject":"S","body":"B"}}]}}"#,
            #"{"requestId":"f12",\#(p),"command":"experiment.recordExposure","#
                + #""payload":{"experimentId":"exp_1","contactId":"ctc_9"}}"#,
            #"{"requestId":"f13",\#(p),"query":"campaign.list","params":{"status":"draft","limit":10}}"#,
            #"{"requestId":"f14",\#(p),"query":"audit.history","params":{"streamId":"cmp_1","#
                + #""from":"2020-01-01T00:00:00Z","limit":5}}"#,
            #"{"requestId":"f15",\#(p),"query":"segment.members","params":{"segmentId":"seg_1","limit":5}}"#,
            #"{"requestId":"f16",\#(p),"command":"system.tick","payload":{"now":"2026-11-22T00:00:00Z"}}"#,
            #"{"requestId":"f17",\#(p),"command":"post.publish","payload":{"postId":"pst_1"}}"#,
            #"{"requestId":"f18",\#(p),"query":"segment.list","params":{"status":"active","limit":5}}"#,
            #"{"requestId":"f19",\#(p),"query":"connection.list","params":{"platform":"x","limit":5}}"#,
            #"{"requestId":"f20",\#(p),"query":"experiment.list","params":{"campaignId":"cmp_1","limit":5}}"#,
            #"{"requestId":"f21",\#(p),"query":"post.list","params":{"campaignId":"cmp_1","limit":5}}"#,
            #"{"requestId":"f22",\#(p),"query":"contact.get","params":{"contactId":"ctc_1"}}"#,
            #"{"requestId":"f23",\#(p),"query":"contact.list","params":{"segmentId":"seg_1","limit":5}}"#,
            #"{"requestId":"f24",\#(p),"query":"segment.preview","#
                + #""params":{"rules":{"all":[{"field":"age","operator":"gte","value":18}]},"limit":5}}"#,
            #"{"requestId":"f25",\#(p),"query":"campaign.list","params":{"segmentId":"seg_1","limit":5}}"#,
            #"{"requestId":"f26",\#(p),"query":"field.list","params":{}}"#,
            #"{"requestId":"f27",\#(p),"command":"field.update","payload":{"name":"level","#
                + #""values":["low","high","top"]}}"#,
            #"{"requestId":"f28",\#(p),"command":"post.update","payload":{"postId":"pst_1","#
                + #""connectionIds":["con_2","con_1"],"text":"Moved"}}"#,
            #"{"requestId":"f29",\#(p),"query":"post.list","params":{"connectionId":"con_2","limit":5}}"#,
            #"{"requestId":"f30",\#(p),"command":"post.unschedule","payload":{"postId":"pst_1"}}"#,
            #"{"requestId":"f31",\#(p),"command":"campaign.update","payload":{"campaignId":"cmp_1","#
                + #""channel":"sms","content":{"body":"Short"}}}"#,
            #"{"requestId":"f32",\#(p),"command":"experiment.create","payload":{"campaignId":"cmp_1","#
                + #""name":"Second","variants":[{"key":"a","weight":50},{"key":"b","weight":50}]}}"#,
            #"{"requestId":"f33",\#(p),"command":"experiment.stop","payload":{"experimentId":"exp_1"}}"#,
        ]
    }

    /// Creates what the seed requests refer to (seg_1, cmp_1, con_1 and con_2, pst_1, exp_1, the enum
    /// field level).
    public static func prepare(_ engine: CampaignEngine) async {
        let admin = Principal(
            tenant: "acme", subject: "fuzz", role: .admin, scopes: Principal.allScopes, expiresAt: .distantFuture)
        let rules = (try? JSON.parse(#"{"all":[{"field":"age","operator":"gte","value":18}]}"#)) ?? .null
        let commands: [Command] = [
            .segment(.create(segmentId: "seg_1", name: "Adults", rules: rules)),
            .campaign(
                .create(
                    campaignId: "cmp_1", name: "Base campaign", channel: "email", segmentId: "seg_1",
                    content: Content(subject: "Hi", body: "Hello"), sendAt: nil)),
            .social(
                .connect(
                    connectionId: "con_1", platform: "x", accountId: "fuzz", credentialRef: "vault://x/fuzz",
                    expiresAt: .distantFuture)),
            .social(
                .connect(
                    connectionId: "con_2", platform: "mastodon", accountId: "fuzz", credentialRef: "vault://m/fuzz",
                    expiresAt: .distantFuture)),
            .post(
                .create(
                    postId: "pst_1", connectionIds: ["con_1"], text: "Hello", media: [], link: nil, campaignId: "cmp_1")
            ),
            .experiment(
                .create(
                    experimentId: "exp_1", campaignId: "cmp_1", name: "E",
                    variants: [Variant(key: "a", weight: 50), Variant(key: "b", weight: 50)])),
            .experiment(.start(experimentId: "exp_1")),
            .schema(.defineField(name: "level", type: "enum", values: ["low", "high"])),
        ]
        for command in commands { _ = await engine.execute(.command(command, as: admin, requestId: "prepare")) }
    }

    /// What a fuzz run found.
    public struct Report: Sendable, Equatable {
        /// How many hostile requests were sent.
        public var cases = 0
        /// Cases answered with success.
        public var accepted = 0
        /// Cases answered with a catalogue error whose status matches its code.
        public var refused = 0
        /// Problems: a response that is not a catalogue answer, an `INTERNAL_ERROR`, a slow case.
        public var problems: [String] = []
        /// The slowest case, in seconds.
        public var slowest = 0.0
        /// How many cases each ``Mutation`` made, by its raw name (`byteFlip`, `truncate`, …).
        public var byMutation: [String: Int] = [:]
    }

    /// Sends `cases` hostile requests to `engine` through the wire format and checks every answer.
    public static func run(engine: CampaignEngine, cases: Int, seed: UInt64, hugeSize: Int = 200_000) async -> Report {
        var fuzzer = Fuzzer(seeds: seedRequests(), seed: seed, hugeSize: hugeSize)
        var report = Report()
        for index in 0..<cases {
            let (bytes, mutation) = fuzzer.next()
            report.cases += 1
            report.byMutation[mutation.rawValue, default: 0] += 1
            let started = Date()
            let response = await engine.handle(bytes)
            report.slowest = max(report.slowest, Date().timeIntervalSince(started))
            guard let parsed = try? JSON.parse(response.line), let status = parsed["status"]?.integerValue else {
                report.problems.append("case \(index) (\(mutation)): unreadable response \(response.line.prefix(200))")
                continue
            }
            if let code = response.error?.code {
                if code == .internalError || code.httpStatus != status
                    || parsed["error"]?["code"]?.stringValue != code.rawValue
                {
                    report.problems.append("case \(index) (\(mutation)): \(response.line.prefix(300))")
                } else {
                    report.refused += 1
                }
            } else if [200, 201, 207].contains(status) {
                report.accepted += 1
            } else {
                report.problems.append("case \(index) (\(mutation)): status \(status) without an error")
            }
        }
        return report
    }
}
