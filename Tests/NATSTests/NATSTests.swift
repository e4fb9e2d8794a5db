import Foundation
import TestSupport
import Testing

@testable import NATS

/// The project's NATS client against a real `nats-server -js` on a loopback port.
@Suite(.serialized) struct NATSTests {
    @Test func endpointsAreReadFromNatsURLsAndAnythingElseIsRefused() {
        #expect(NATSEndpoint(url: "nats://127.0.0.1:4222") == NATSEndpoint(host: "127.0.0.1", port: 4222))
        #expect(NATSEndpoint(url: "nats://broker.example:1/ignored") == NATSEndpoint(host: "broker.example", port: 1))
        #expect(NATSEndpoint(url: "nats://[::1]:4222") == NATSEndpoint(host: "::1", port: 4222))
        // User information: USER:PASSWORD or a TOKEN, percent-decoded; the last @ ends it.
        let user = NATSEndpoint(url: "nats://relay:p%40ss%3Aw0rd@broker.example:4222")
        #expect(user?.credentials == .user("relay", password: "p@ss:w0rd") && user?.host == "broker.example")
        #expect(NATSEndpoint(url: "nats://s3cret@h:1")?.credentials == .token("s3cret"))
        for url in [
            "nats://h:65536", "nats://h:0", "nats://h:-1", "nats://:4222", "nats://h", "nats://h:1:2", "tcp://h:1",
            "nats://@h:1", "nats://u:@h:1", "nats://:p@h:1", "nats://%zz@h:1", "nats://[::1]4222", "nats://h:+1",
        ] {
            #expect(NATSEndpoint(url: url) == nil, "\(url)")
        }
        // No description or error shows the secret.
        #expect(user?.description == "nats://relay:***@broker.example:4222")
        #expect(NATSEndpoint(url: "nats://s3cret@[::1]:1")?.description == "nats://***@[::1]:1")
        var dumped = ""
        dump(user, to: &dumped)
        #expect(!dumped.contains("p@ss") && !String(reflecting: user).contains("p@ss"), "\(dumped)")
        let bad = NATSError.badURL(NATSEndpoint.withoutUserInfo("nats://relay:hunter2@h:99999"))
        #expect(!bad.description.contains("hunter2") && bad.description.contains("nats://***@h:99999"))
    }

    @Test func aServerThatAsksForCredentialsLetsInOnlyTheRightOnes() async throws {
        let password = "p@ss:w0rd/\"quoted\""
        let server = try LocalNATSServer(arguments: ["--user", "relay", "--pass", password])
        defer { server.stop() }
        let hostPort = server.url.dropFirst("nats://".count)
        let encoded = password.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let connection = try NATSConnection(url: "nats://relay:\(encoded)@\(hostPort)")
        defer { connection.close() }
        let jetStream = JetStream(connection)
        try await jetStream.ensureStream("AUTH", subjects: ["auth.>"])
        let acks = AckLog()
        try jetStream.publish("auth.x", id: "a-1", payload: Array("in".utf8)) { acks.add($0) }
        try await acks.wait(for: 1)
        #expect(try acks.all.map { try $0.get().sequence } == [1])
        /// The error connecting with `url` gives, which must be an authorization error.
        func refusal(_ url: String) -> NATSError? {
            do {
                try NATSConnection(url: url, timeout: 10).close()
                return nil
            } catch let error as NATSError {
                return error.isAuthorization ? error : nil
            } catch {
                return nil
            }
        }
        let missing = refusal(server.url)
        #expect(missing?.description.contains("requires credentials") == true, "\(String(describing: missing))")
        let wrong = refusal("nats://relay:hunter2@\(hostPort)")
        #expect(wrong?.description.contains("refused the credentials") == true, "\(String(describing: wrong))")
        #expect(!(wrong?.description.contains("hunter2") ?? true))

        let tokenServer = try LocalNATSServer(arguments: ["--auth", "t0ken"])
        defer { tokenServer.stop() }
        let tokenHostPort = tokenServer.url.dropFirst("nats://".count)
        try NATSConnection(url: "nats://t0ken@\(tokenHostPort)").close()
        #expect(refusal("nats://t0kem@\(tokenHostPort)") != nil)
        #expect(refusal(tokenServer.url) != nil)
    }

    /// What a server's INFO rules out before CONNECT (a TLS-only server is not started here: the
    /// client refuses it from its INFO alone, before any TLS could begin).
    @Test func aServerRequiringTLSOrCredentialsTheEndpointLacksIsRefusedFromItsInfo() {
        let plain = NATSEndpoint(host: "h", port: 1)
        let withUser = NATSEndpoint(host: "h", port: 1, credentials: .user("u", password: "p"))
        let tls = #"INFO {"server_id":"x","tls_required":true,"auth_required":true}"#
        let tlsRefusal = NATSConnection.refusal(NATSConnection.object(info: tls), endpoint: withUser)
        #expect(tlsRefusal?.description.contains("requires TLS") == true && tlsRefusal?.isPermanent == true)
        #expect(tlsRefusal?.isAuthorization == false && NATSError.timeout.isPermanent == false)
        let auth = #"INFO {"server_id":"x","auth_required":true,"max_payload":1048576}"#
        #expect(NATSConnection.refusal(NATSConnection.object(info: auth), endpoint: plain)?.isAuthorization == true)
        #expect(NATSConnection.refusal(NATSConnection.object(info: auth), endpoint: withUser) == nil)
        #expect(
            NATSConnection.refusal(
                NATSConnection.object(info: #"INFO {"server_id":"x","tls_available":true}"#), endpoint: plain) == nil)
    }

    /// The NKEY seed, public key and nonce signature published in the NATS client libraries' tests
    /// (nkeys.py, the Ruby and Elixir clients).
    static let publishedSeed = "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU"
    static let publishedPublicKey = "UCK5N7N66OBOINFXAYC2ACJQYFSOD4VYNU6APEJTAVFZB2SVHLKGEW7L"

    @Test func aUserNKEYMatchesThePublishedVectors() throws {
        let key = try NATSUserKey(seed: Self.publishedSeed)
        #expect(key.publicKey == Self.publishedPublicKey)
        // Published in standard base64; the CONNECT carries base64url without padding.
        let published = "ZaAiVDgB5CeYoXoQ7cBCmq+ZllzUnGUoDVb8C7PilWvCs8XKfUchAUhz2P4BYAF++Dg3w05CqyQFRDiGL6LrDw=="
        let expected = NATSUserKey.base64URL(Array(Data(base64Encoded: published)!))
        #expect(key.signature(nonce: "PXoWU7zWAMt75FY") == expected)
        #expect(NATSUserKey.base64URL([0xFB, 0xFF]) == "-_8", "base64url, without padding")
        #expect(key.description == "nkey \(Self.publishedPublicKey)" && !key.description.contains("SUAML"))
        var dumped = ""
        dump(key, to: &dumped)
        #expect(dumped.contains(Self.publishedPublicKey) && !dumped.contains("seed"), "\(dumped)")
        // A lost first character, a changed one, lower case, and a key that is not a user's seed.
        var changed = Array(Self.publishedSeed)
        changed[20] = changed[20] == "A" ? "B" : "A"
        let refused: [(String, NATSUserKey.SeedProblem)] = [
            (String(Self.publishedSeed.dropFirst()), .notBase32), (String(changed), .checksum),
            (Self.publishedSeed.lowercased(), .notBase32), (Self.publishedPublicKey, .notBase32),
        ]
        for (text, problem) in refused {
            #expect(throws: problem) { try NATSUserKey(seed: text) }
        }
        // An account's seed (SA…) in the same encoding: well formed, but not a user's.
        let raw = NATSUserKey.base32Decoded(Self.publishedSeed)!
        #expect(NATSUserKey.seedText(Array(raw[2..<34]), kind: .user) == Self.publishedSeed)
        let accountSeed = NATSUserKey.seedText(Array(raw[2..<34]), kind: .account)
        #expect(accountSeed.hasPrefix("SA"))
        #expect(throws: NATSUserKey.SeedProblem.notAUserSeed) { try NATSUserKey(seed: accountSeed) }
    }

    @Test func aServerThatListsAnNKEYLetsInTheHolderOfItsSeedOnly() async throws {
        let directory = TemporaryDirectory()
        let configuration = directory.path + "/nkey.conf"
        try """
        authorization { users = [ { nkey: "\(Self.publishedPublicKey)" } ] }
        """.write(toFile: configuration, atomically: false, encoding: .utf8)
        let server = try LocalNATSServer(arguments: ["-c", configuration])
        defer { server.stop() }
        let endpoint = NATSEndpoint(url: server.url)!
        var holder = endpoint
        holder.credentials = .nkey(try NATSUserKey(seed: Self.publishedSeed))
        let connection = try NATSConnection(endpoint: holder)
        defer { connection.close() }
        let jetStream = JetStream(connection)
        try await jetStream.ensureStream("NKEY", subjects: ["nkey.>"])
        #expect(try await jetStream.streamState("NKEY") == (0, 0))
        #expect(holder.description.hasSuffix("(nkey \(Self.publishedPublicKey))"))
        // Another user's key is refused; so is no key.
        var stranger = endpoint
        stranger.credentials = .nkey(try NATSUserKey(seed: Self.otherSeed()))
        for attempt in [stranger, endpoint] {
            #expect {
                try NATSConnection(endpoint: attempt, timeout: 10).close()
            } throws: { error in
                (error as? NATSError)?.isAuthorization == true
            }
        }
    }

    /// Operator mode, as `nsc` sets it up (``OperatorModeNATS``): the user's `.creds` file (JWT and
    /// seed) lets its holder in; the JWT with another seed, or nothing, does not.
    @Test func anOperatorModeServerLetsInTheHolderOfAUsersCredsFile() async throws {
        let nats = try OperatorModeNATS()
        defer { nats.server.stop() }
        var endpoint = NATSEndpoint(url: nats.server.url)!
        endpoint.credentials = try NATSEndpoint.credentialsFile(nats.creds)
        #expect(endpoint.description.hasSuffix("(JWT of nkey \(nats.userPublicKey))"))
        let connection = try NATSConnection(endpoint: endpoint)
        defer { connection.close() }
        let jetStream = JetStream(connection)
        try await jetStream.ensureStream("CREDS", subjects: ["creds.>"])
        #expect(try await jetStream.streamState("CREDS") == (0, 0))
        var forged = endpoint
        forged.credentials = .userJWT(nats.userJWT, key: try NATSUserKey(seed: Self.publishedSeed))
        for attempt in [forged, NATSEndpoint(url: nats.server.url)!] {
            #expect {
                try NATSConnection(endpoint: attempt, timeout: 10).close()
            } throws: { error in
                (error as? NATSError)?.isAuthorization == true
            }
        }
        // A file without the JWT block is no credentials file; one without its seed is refused.
        #expect(try NATSEndpoint.credentialsFile("user=relay\npassword=x\n") == nil)
        let withoutSeed = String(nats.creds.prefix { $0 != "*" })
        #expect(throws: NATSUserKey.SeedProblem.missing) { try NATSEndpoint.credentialsFile(withoutSeed) }
    }

    /// A user seed other than the published one.
    static func otherSeed() -> String {
        var seed = Array(NATSUserKey.base32Decoded(publishedSeed)![2..<34])
        seed[0] ^= 0x5A
        return NATSUserKey.seedText(seed, kind: .user)
    }

    @Test func requestReplyPublishWithHeadersAndJetStreamDeduplication() async throws {
        let server = try LocalNATSServer()
        defer { server.stop() }
        let connection = try NATSConnection(url: server.url)
        defer { connection.close() }
        let jetStream = JetStream(connection)
        try await jetStream.ensureStream("EVENTS", subjects: ["test.>"])
        try await jetStream.ensureStream("EVENTS", subjects: ["test.>"])  // already there: fine

        // Pipelined publishes, each acknowledged with its sequence; a repeated id is a duplicate.
        let acks = AckLog()
        for n in 1...50 {
            try jetStream.publish("test.a.b", id: "id-\(n)", payload: Array("event \(n)".utf8)) { acks.add($0) }
        }
        try jetStream.publish("test.a.b", id: "id-7", payload: Array("again".utf8)) { acks.add($0) }
        try await acks.wait(for: 51)
        let results = try acks.all.map { try $0.get() }
        #expect(results.filter(\.duplicate).count == 1)
        #expect(Set(results.filter { !$0.duplicate }.map(\.sequence)) == Set(1...50))
        #expect(try await jetStream.streamState("EVENTS") == (50, 50))

        let seventh = try await jetStream.message("EVENTS", sequence: 7)
        #expect(seventh.subject == "test.a.b" && seventh.payload == Array("event 7".utf8))
        #expect(seventh.headers["Nats-Msg-Id"] == "id-7")

        // A request nobody answers fails at once; a bad URL is refused.
        do {
            _ = try await connection.request("nobody.home", payload: [], timeout: 5)
            Issue.record("a request nobody answers got an answer")
        } catch let error as NATSError {
            guard case .noResponders = error else {
                Issue.record("expected no responders, got \(error)")
                return
            }
        }
        #expect(throws: NATSError.self) { try NATSConnection(url: "http://localhost:1") }
        // An open server takes a client that brings credentials it does not ask for.
        let hostPort = server.url.dropFirst("nats://".count)
        try NATSConnection(url: "nats://someone:secret@\(hostPort)").close()
    }

    /// A stream subject takes a subject or filter when every subject the latter matches, it
    /// matches too.
    @Test func aStreamSubjectTakesTheSubjectsItsWildcardsMatch() {
        let cases: [(String, String, Bool)] = [
            ("campaign.>", "campaign.>", true), ("campaign.>", "campaign.acme.>", true), (">", "campaign.>", true),
            ("campaign.*", "campaign.>", false), ("campaign.*.>", "campaign.>", false),
            ("campaign.*.>", "campaign.acme.>", true), ("campaign.acme", "campaign.acme", true),
            ("campaign.*", "campaign.acme", true), ("campaign.*", "campaign.*", true),
            ("campaign.acme", "campaign.*", false),
            ("other.>", "campaign.>", false), ("campaign", "campaign.>", false), ("campaign.>", "campaign", false),
            ("campaign.acme.x", "campaign.acme", false),
        ]
        for (filter, subject, takes) in cases {
            #expect(JetStream.filter(filter, takes: subject) == takes, "\(filter) takes \(subject)")
        }
    }

    /// A stream of the name asked for that exists on other subjects is refused with 10058, naming
    /// them: a publish to the subjects asked for would find no stream. One that takes them is used.
    @Test func anExistingStreamOnOtherSubjectsIsRefused() async throws {
        let server = try LocalNATSServer()
        defer { server.stop() }
        let connection = try NATSConnection(url: server.url)
        defer { connection.close() }
        let jetStream = JetStream(connection)
        try await jetStream.ensureStream("WIDE", subjects: ["wide.>"])
        try await jetStream.ensureStream("WIDE", subjects: ["wide.acme.>"])
        do {
            try await jetStream.ensureStream("WIDE", subjects: ["narrow.>"])
            Issue.record("a stream on other subjects was taken")
        } catch let NATSError.jetStream(code, description) {
            #expect(code == JetStream.nameInUseCode)
            #expect(
                description == "stream WIDE exists with subjects wide.>, which do not take narrow.>", "\(description)")
        }
    }

    /// What an exclusive relay counts on (`Nats-Expected-Last-Msg-Id`, nats-server 2.9 on): a
    /// publish whose expected id is not the stream's last message's is refused with 10070, naming
    /// the id the stream holds last; a repeat is a duplicate whatever it expects, so a retry that
    /// sends stored messages again is not refused.
    @Test func aPublishExpectingAnotherLastMessageIsRefusedButARepeatIsADuplicate() async throws {
        let server = try LocalNATSServer()
        defer { server.stop() }
        let connection = try NATSConnection(url: server.url)
        defer { connection.close() }
        let jetStream = JetStream(connection)
        try await jetStream.ensureStream("CHAIN", subjects: ["chain.>"])
        func publish(_ id: String, expecting last: String?) async throws -> Result<JetStream.PublishAck, NATSError> {
            let acks = AckLog()
            try jetStream.publish("chain.x", id: id, payload: Array(id.utf8), expectedLastId: last) { acks.add($0) }
            try await acks.wait(for: 1)
            return acks.all[0]
        }
        #expect(try await publish("m-1", expecting: nil).get().sequence == 1)
        #expect(try await publish("m-2", expecting: "m-1").get().sequence == 2)
        // m-3 dropped on the way: m-4 expecting it is refused, and the refusal names m-2.
        guard case let .failure(refusal) = try await publish("m-4", expecting: "m-3") else {
            Issue.record("m-4 was stored after m-2")
            return
        }
        #expect(JetStream.lastId(inRefusal: refusal) == "m-2", "\(refusal)")
        #expect(JetStream.lastId(inRefusal: .timeout) == nil)
        // m-2 sent again with its stale expectation is a duplicate, not a refusal.
        let repeated = try await publish("m-2", expecting: "m-1").get()
        #expect(repeated.duplicate && repeated.sequence == 2)
        #expect(try await publish("m-3", expecting: "m-2").get().sequence == 3)
        #expect(try await publish("m-4", expecting: "m-3").get().sequence == 4)
        #expect(try await jetStream.message("CHAIN", sequence: 4).headers["Nats-Expected-Last-Msg-Id"] == "m-3")
    }

    /// Frames published faster than the socket takes them leave together, in order, whatever
    /// their sizes (past the queue's limit a publisher sends them itself), and a connection closed
    /// right after its publishes still sends every one.
    @Test func framesPublishedBackToBackArriveInOrderEvenWhenClosedRightAfter() async throws {
        let server = try LocalNATSServer()
        defer { server.stop() }
        let reader = try NATSConnection(url: server.url)
        defer { reader.close() }
        let jetStream = JetStream(reader)
        try await jetStream.ensureStream("BURST", subjects: ["burst.>"])
        func payload(_ n: Int) -> [UInt8] {
            // Every 500th is 300 KB, so the queue passes its 1 MiB limit now and then.
            Array("message \(n) ".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: n % 500 == 0 ? 300_000 : n % 97)
        }
        let count = 3_000
        let publisher = try NATSConnection(url: server.url)
        for n in 1...count { try publisher.publish("burst.n", payload: payload(n)) }
        publisher.close()
        var stored = 0
        for _ in 0..<1_000 where stored < count {
            stored = Int(try await jetStream.streamState("BURST").messages)
            if stored < count { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(stored == count)
        for sequence in [1, 2, 499, 500, 501, 1_000, 1_777, 2_500, 2_999, 3_000] {
            let message = try await jetStream.message("BURST", sequence: UInt64(sequence))
            #expect(message.payload == payload(sequence), "message \(sequence)")
        }
    }

    @Test func aServerThatNoLongerAnswersIsKilledWhenItDoesNotStopInTime() throws {
        let server = try LocalNATSServer()
        // A stopped process leaves SIGTERM pending, as a hung server would leave it unanswered.
        server.process.send(SIGSTOP)
        server.stop(grace: 0.5)
        #expect(server.process.termination == .signalled(SIGKILL))
    }

    @Test func aServerThatGoesAwayFailsWhatIsUnderWay() async throws {
        let server = try LocalNATSServer()
        let connection = try NATSConnection(url: server.url)
        defer { connection.close() }
        server.stop()
        var failed = false
        for _ in 0..<50 where !failed {
            failed = connection.error != nil
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(failed)
        await #expect(throws: NATSError.self) { _ = try await connection.request("x", payload: [], timeout: 1) }
        #expect(throws: NATSError.self) { try NATSConnection(url: server.url) }
    }
}

/// Acknowledgements as they arrive. Invariant that makes `@unchecked Sendable` safe: `results` is
/// touched only under `lock`.
final class AckLog: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Result<JetStream.PublishAck, NATSError>] = []

    func add(_ result: Result<JetStream.PublishAck, NATSError>) { lock.withLock { results.append(result) } }
    var all: [Result<JetStream.PublishAck, NATSError>] { lock.withLock { results } }

    func wait(for count: Int) async throws {
        // Up to 30 s: a bound on a hang, generous for a loaded machine (acks take milliseconds).
        for _ in 0..<3_000 where all.count < count { try await Task.sleep(for: .milliseconds(10)) }
        #expect(all.count == count)
    }

    /// Every publish's acknowledgement is read by a small scanner of the flat object JetStream
    /// sends; whatever it reads must be what the general parse reads, and anything else (an
    /// error, an escape, a nested or odd value) is left to the general parse.
    @Test func plainAcknowledgementsReadAsTheGeneralParseReadsThem() throws {
        func general(_ text: String) -> JetStream.PublishAck? {
            guard
                let body = try? JetStream.answer(
                    NATSMessage(subject: "", replyTo: nil, headers: [:], payload: Array(text.utf8)))
            else { return nil }
            return JetStream.PublishAck(
                stream: body["stream"] as? String ?? "", sequence: JetStream.integer(body["seq"]),
                duplicate: body["duplicate"] as? Bool ?? false)
        }
        let read = [
            #"{"stream":"RELAY","seq":1}"#, #"{"stream":"RELAY","seq":18446744073709551615,"duplicate":true}"#,
            #"{"stream":"R","domain":"hub","seq":42,"duplicate":false}"#,
            " { \"seq\" : 7 ,\n\t\"stream\" : \"S\" } \r\n",
            #"{"stream":"\#u{E9}t\#u{E9}","seq":0,"extra":12,"flag":true}"#,
        ]
        for text in read {
            let plain = JetStream.plainAck(Array(text.utf8))
            #expect(plain != nil && plain == general(text), "\(text)")
        }
        let left = [
            #"{"error":{"code":503,"err_code":10039,"description":"jetstream not enabled"}}"#,
            #"{"stream":"A\"B","seq":1}"#, #"{"stream":"S","seq":1.5}"#, #"{"stream":"S","seq":1e3}"#,
            #"{"stream":"S","seq":-1}"#, #"{"stream":"S","seq":18446744073709551616}"#, #"{"stream":"S"}"#,
            #"{"seq":1}"#, #"{"stream":"S","seq":1} x"#, #"{"stream":"S","seq":1,"x":null}"#,
            #"{"stream":"S","seq":1,"x":[1]}"#, #"{"stream":"S","seq":1,"duplicate":tru}"#, "", "{}", "{", "[]",
            #"{"stream":"S","seq":1,}"#, #"{"stream":"S\#u{1}","seq":1}"#,
        ]
        for text in left { #expect(JetStream.plainAck(Array(text.utf8)) == nil, "\(text)") }
        #expect(NATSConnection.decimal("1234"[...].utf8) == 1234 && NATSConnection.decimal("0"[...].utf8) == 0)
        for bad in ["", "-1", "1a", "+5", "1234567890123"] { #expect(NATSConnection.decimal(bad[...].utf8) == nil) }
    }
}
