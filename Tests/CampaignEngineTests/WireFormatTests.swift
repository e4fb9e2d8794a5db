import CampaignCLI
import CampaignDomain
import Foundation
import Hashing
import Testing

@testable import CampaignEngine

/// `WireFormat.decode` takes a request's principal from a cache keyed by its bytes instead of
/// parsing it; these tests hold it to the whole parse (`decodeParsingWhole`) on every request.
@Suite struct WireFormatTests {
    static let sessionPrincipal =
        #"{"tenant":"acme","subject":"u1","role":"editor","scopes":["campaigns:write","campaigns:read"],"#
        + #""expiresAt":"2099-01-01T00:00:00Z"}"#

    /// Requests of every shape the envelope checks: valid ones, each kind of bad principal, keys
    /// repeated, escaped or unknown, and documents that are not objects or not JSON.
    static let requests: [String] = {
        let p = sessionPrincipal
        let update = #""command":"campaign.update","payload":{"campaignId":"cmp_1","name":"N"}"#
        let viewer = #""tenant":"a","subject":"s","role":"viewer""#
        let deep = String(repeating: "[", count: 35) + "1" + String(repeating: "]", count: 35)
        return [
            #"{"requestId":"r1","principal":\#(p),\#(update)}"#,
            #"{"principal":\#(p),"requestId":"r2",\#(update),"idempotencyKey":"k1","expectedVersion":3}"#,
            #"{\#(update),"principal":\#(p)}"#,
            #"{"requestId":"r3",\#(update)}"#,
            #"{"requestId":"r4","principal":null,\#(update)}"#,
            #"{"requestId":"r5","principal":"acme",\#(update)}"#,
            #"{"requestId":"r6","principal":{"tenant":"acme","role":"editor","scopes":[]},\#(update)}"#,
            #"{"requestId":"r7","principal":{"tenant":"a","subject":"s","role":"boss","scopes":[]},\#(update)}"#,
            #"{"requestId":"r8","principal":{\#(viewer),"scopes":["x"]},\#(update)}"#,
            #"{"requestId":"r9","principal":{\#(viewer),"scopes":[],"token":"t"},\#(update)}"#,
            #"{"requestId":"r10","principal":{\#(viewer),"scopes":[],"expiresAt":"soon"},\#(update)}"#,
            #"{"requestId":"r11","principal":\#(p),"principal":\#(p),\#(update)}"#,
            #"{"requestId":"r12","principal":\#(p),"requestId":"r12",\#(update)}"#,
            #"{"requestId":"r13","pr\u0069ncipal":\#(p),\#(update)}"#,
            #"{"requestId":"r14","principal":\#(p),"extra":1,\#(update)}"#,
            #"{"requestId":"r15","principal":{"tenant":"a","tenant":"b"},\#(update)}"#,
            #"{"requestId":"r16","principal":{"tenant":"a\u0000","subject":"s","role":"viewer"},\#(update)}"#,
            #"{"requestId":"r17","principal":\#(p),"query":"campaign.get","params":{"campaignId":"cmp_1"}}"#,
            #"{"requestId":"r18","principal":\#(p),"query":"campaign.get","payload":{}}"#,
            #"{"requestId":"bad id","principal":\#(p),\#(update)}"#,
            #"{"requestId":"r19","principal":\#(p),"command":"campaign.fly","payload":{}}"#,
            #"{"requestId":"r20","principal":{"tenant":"a","subject":"s","role":"viewer","scopes":[],"#,
            #"{"requestId":"r21","principal":\#(deep),\#(update)}"#,
            #"["principal"]"#, "", "null", #"{"principal":\#(p)} x"#, "  {\n\"principal\" : \(p) ,\(update) }\n",
        ]
    }()

    /// Whether two decodings answer alike: a rejection with the same bytes, or requests equal in
    /// every field (a command's body by its name and wire payload, as ids it was not given are
    /// made up afresh on every decoding).
    static func same(_ a: WireFormat.Decoded, _ b: WireFormat.Decoded) -> Bool {
        switch (a, b) {
        case let (.rejected(x), .rejected(y)): return x.bytes == y.bytes
        case let (.request(x), .request(y)):
            let bodies =
                x.body.commandName == nil ? x.body == y.body : x.body.commandName == y.body.commandName
            return bodies && x.requestId == y.requestId && x.idempotencyKey == y.idempotencyKey
                && x.expectedVersion == y.expectedVersion && x.principal == y.principal
                && x.wirePayload == y.wirePayload
        default: return false
        }
    }

    @Test func everyRequestIsAnsweredAsItsWholeParseAnswersIt() {
        for text in Self.requests {
            let bytes = Array(text.utf8)
            // Twice: the second finds an accepted principal in the cache.
            for _ in 0..<2 {
                #expect(Self.same(WireFormat.decode(bytes), WireFormat.decodeParsingWhole(bytes)), "\(text)")
            }
        }
    }

    /// The same on damaged requests: bytes changed, dropped or repeated at random, most of them in
    /// or around the principal.
    @Test func damagedRequestsAreAnsweredAsTheirWholeParseAnswersThem() {
        var random = SeededRandom(seed: 20_261_203)
        let alphabet = Array(#"{}[]":,\ u0aA1-."#.utf8)
        var differing: [String] = []
        for round in 0..<3_000 {
            var bytes = Array(Self.requests[round % 3].utf8)
            for _ in 0...Int.random(in: 0...2, using: &random) {
                let at = Int.random(in: 0..<bytes.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0: bytes[at] = alphabet.randomElement(using: &random)!
                case 1: bytes.remove(at: at)
                default: bytes.insert(bytes[at], at: at)
                }
            }
            if !Self.same(WireFormat.decode(bytes), WireFormat.decodeParsingWhole(bytes)) {
                differing.append(String(decoding: bytes, as: UTF8.self))
            }
        }
        #expect(differing.isEmpty, "\(differing.prefix(3))")
    }

    /// The cache is keyed by a principal's exact bytes: another tenant's principal, one byte
    /// apart, is decoded for itself, and a principal that failed is never remembered.
    @Test func aPrincipalIsFoundOnlyByItsOwnBytes() throws {
        func principal(_ tenant: String) -> WireFormat.Decoded {
            let p = Self.sessionPrincipal.replacingOccurrences(of: #""acme""#, with: "\"\(tenant)\"")
            return WireFormat.decode(
                Array(#"{"principal":\#(p),"query":"campaign.get","params":{"campaignId":"cmp_1"}}"#.utf8))
        }
        for tenant in ["acme", "acmf", "acme", "acmf"] {
            guard case let .request(request) = principal(tenant) else {
                Issue.record("\(tenant) was refused")
                continue
            }
            #expect(request.principal?.tenant == tenant)
        }
        let bad = Array(#"{"principal":{"tenant":"a","subject":"s","role":"boss","scopes":[]},"query":"x"}"#.utf8)
        for _ in 0..<2 {
            guard case .rejected = WireFormat.decode(bad) else {
                Issue.record("a bad principal was accepted")
                return
            }
        }
    }

    /// A principal larger than the cache keeps is decoded every time, the same way, and never kept:
    /// no request can make the cache large.
    @Test func aLargePrincipalIsDecodedEachTimeAndNeverKept() {
        let subject = String(repeating: "s", count: 2_000)
        let large =
            #"{"tenant":"acme","subject":"\#(subject)","role":"viewer","scopes":["campaigns:read"],"#
            + #""expiresAt":"2099-01-01T00:00:00Z"}"#
        let bytes = Array(#"{"principal":\#(large),"query":"campaign.get","params":{"campaignId":"cmp_1"}}"#.utf8)
        for _ in 0..<2 {
            guard case let .request(request) = WireFormat.decode(bytes) else {
                Issue.record("the large principal was refused")
                return
            }
            #expect(request.principal?.subject == subject)
        }
        #expect(WireFormat.principals.withLock { $0[ByteKey(Array(large.utf8))] } == nil)
    }

    /// A principal found among those already decoded is still held to its expiry on every request:
    /// the same bytes, accepted a second before, are refused a second after.
    @Test func aRememberedPrincipalStillExpires() async throws {
        let t = try TestEngine()
        let token = principal(expiresAt: "2026-11-21T10:00:01Z")
        let before = await t.query("campaign.list", "{}", as: token)
        #expect(before.status == 200, "\(before)")
        t.clock.set(testStart.addingTimeInterval(2))
        let after = await t.query("campaign.list", "{}", as: token)
        #expect(after.code == "TOKEN_EXPIRED" && after.status == 401, "\(after)")
    }
}

/// The salts contacts' commitments are made with.
@Suite struct ContactSaltTests {
    /// A contact's commitment salt is 16 bytes from the system's generator, hex: in 2,000 salts
    /// (1,000 drawn alone and 1,000 at once, as an import draws them) none repeats and each of the
    /// 32 digits takes all 16 values somewhere, so no byte is left fixed (a salt built from fewer
    /// random bytes than it shows fails).
    @Test func saltsAreSixteenRandomBytes() {
        let salts = (0..<1_000).map { _ in CampaignEngine.salt() } + CampaignEngine.salts(1_000)
        #expect(Set(salts).count == salts.count)
        #expect(
            salts.allSatisfy {
                $0.utf8.count == 32 && $0.utf8.allSatisfy { Array("0123456789abcdef".utf8).contains($0) }
            })
        for position in 0..<32 {
            let digits = Set(salts.map { Array($0.utf8)[position] })
            #expect(digits.count == 16, "digit \(position) took \(digits.count) values")
        }
    }
}
