import CampaignCLI
import CampaignDomain
import CampaignEngine
import EventStore
import Foundation
import NATS
import Spawn
import TestSupport
import Testing

/// `campaign export --to nats://…` against a real `nats-server -js`.
@Suite(.serialized) struct RelayTests {
    /// A demo store, its log and its id.
    func demoStore(contacts: Int = 400) async throws -> (TemporaryDirectory, [RecordedEvent], String) {
        let directory = TemporaryDirectory()
        let demo = try await campaign(["demo", "--data", directory.path, "--contacts", String(contacts)])
        try #require(demo.status == 0)
        let store = try EventStore(path: directory.path)
        defer { store.close() }
        var log = [RecordedEvent]()
        try store.forEachEvent { event in
            log.append(event)
            return true
        }
        return (directory, log, try store.storeId())
    }

    /// Checks that stream `name` holds exactly the log, in order, once (reading through `url`, the
    /// server's own when nil).
    func expectStreamHolds(
        _ log: [RecordedEvent], storeId: String, _ server: LocalNATSServer, _ name: String, url: String? = nil
    ) async throws {
        let connection = try NATSConnection(url: url ?? server.url)
        defer { connection.close() }
        let jetStream = JetStream(connection)
        let state = try await jetStream.streamState(name)
        #expect(state.messages == UInt64(log.count) && state.lastSequence == UInt64(log.count))
        for event in log {
            let message = try await jetStream.message(name, sequence: event.position)
            let cloudEvent = try JSON.parse(message.payload)
            guard message.headers["Nats-Msg-Id"] == "\(storeId)-\(event.position)",
                cloudEvent["id"]?.stringValue == "\(storeId)-\(event.position)",
                cloudEvent["hash"]?.stringValue == event.hash.map({ String(format: "%02x", $0) }).joined(),
                message.subject == "campaign.\(event.tenant).\(event.type)"
            else {
                Issue.record("sequence \(event.position) holds \(message.subject) \(message.headers)")
                return
            }
        }
    }

    func messages(_ server: LocalNATSServer, _ name: String) async -> UInt64 {
        guard let connection = try? NATSConnection(url: server.url) else { return 0 }
        defer { connection.close() }
        return (try? await JetStream(connection).streamState(name).messages) ?? 0
    }

    @Test func aDemoStoreArrivesCompleteInOrderAndOnceAndAGainRunSendsNothing() async throws {
        let server = try LocalNATSServer()
        defer { server.stop() }
        let (directory, log, storeId) = try await demoStore()
        let relay = try await campaign(["export", "--data", directory.path, "--to", server.url, "--stream", "CAMPAIGN"])
        #expect(relay.status == 0, "\(relay.err)")
        try await expectStreamHolds(log, storeId: storeId, server, "CAMPAIGN")
        let again = try await campaign(["export", "--data", directory.path, "--to", server.url, "--stream", "CAMPAIGN"])
        #expect(again.status == 0)
        #expect(await messages(server, "CAMPAIGN") == UInt64(log.count))
        // Each run says what it added: the whole log, then nothing.
        let count = Format.count(log.count)
        #expect(
            relay.out
                == "relayed \(count) events to JetStream stream CAMPAIGN (positions 1–\(count)); consumer "
                + "nats-CAMPAIGN at \(count) of \(count)\n", "\(relay.out)")
        #expect(again.out.hasPrefix("relayed 0 events to JetStream stream CAMPAIGN; consumer nats-CAMPAIGN at "))
        let listed = try await campaign(["subscriptions", "--data", directory.path, "--json"])
        let consumer = try JSON.parse(listed.out)["consumers"]?.arrayValue?.first
        #expect(consumer?["name"]?.stringValue == "nats-CAMPAIGN" && consumer?["lag"]?.integerValue == 0)
        let usage = try await campaign(["export", "--data", directory.path, "--to", server.url])
        #expect(usage.status == 64)
        // A stream JetStream refuses to make (its subjects overlap CAMPAIGN's) is an error, not a retry.
        let overlapping = try await campaign([
            "export", "--data", directory.path, "--to", server.url, "--stream", "OTHER",
        ])
        #expect(overlapping.status == 1 && overlapping.err.contains("overlap"))
        // So is a stream of the name asked for on other subjects (another --subject-prefix): its
        // publishes would find no stream, and the relay used to retry them for ever (here only for
        // the 2 s of --retry-for, so a regression fails rather than hangs).
        let elsewhere = try await campaign([
            "export", "--data", directory.path, "--to", server.url, "--stream", "CAMPAIGN", "--subject-prefix", "other",
            "--follow", "--retry-for", "2",
        ])
        #expect(elsewhere.status == 1, "\(elsewhere)")
        #expect(
            elsewhere.err.contains("stream CAMPAIGN exists with subjects campaign.>, which do not take other.>"),
            "\(elsewhere.err)")
        // Copies a server outside any cluster cannot keep: at once, not after --retry-for.
        let replicated = try await campaign([
            "export", "--data", directory.path, "--to", server.url, "--stream", "COPIES", "--subject-prefix", "copies",
            "--replicas", "3", "--retry-for", "2",
        ])
        #expect(replicated.status == 1 && !replicated.err.contains("retrying"), "\(replicated)")
        #expect(replicated.err.contains("10074: replicas > 1 not supported in non-clustered mode"), "\(replicated.err)")
    }

    /// A signed checkpoint kept in the store follows the event at its size in the stream, on
    /// `<prefix>.audit.checkpoint`, once however often the relay runs.
    @Test func aKeptCheckpointIsRelayedAfterTheEventAtItsSize() async throws {
        let server = try LocalNATSServer()
        defer { server.stop() }
        let (directory, log, storeId) = try await demoStore()
        let keys = TemporaryDirectory()
        let keygen = try await campaign(["keygen", "--name", "ops.example", "--out", keys.path + "/ops.key"])
        try #require(keygen.status == 0)
        let checkpoint = try await campaign(["checkpoint", "--data", directory.path, "--key", keys.path + "/ops.key"])
        try #require(checkpoint.status == 0)
        for _ in 0..<2 {
            let relay = try await campaign([
                "export", "--data", directory.path, "--to", server.url, "--stream", "CAMPAIGN",
            ])
            #expect(relay.status == 0, "\(relay.err)")
        }
        let connection = try NATSConnection(url: server.url)
        defer { connection.close() }
        let jetStream = JetStream(connection)
        #expect(try await jetStream.streamState("CAMPAIGN").messages == UInt64(log.count + 1))
        // Every event keeps its place up to the checkpoint's size; the checkpoint comes right after.
        let size = UInt64(log.count)
        let before = try await jetStream.message("CAMPAIGN", sequence: size)
        #expect(try JSON.parse(before.payload)["id"]?.stringValue == "\(storeId)-\(size)")
        let message = try await jetStream.message("CAMPAIGN", sequence: size + 1)
        #expect(message.subject == "campaign.audit.checkpoint")
        #expect(message.headers["Nats-Msg-Id"] == "\(storeId)-checkpoint-\(size)")
        let event = try JSON.parse(message.payload)
        #expect(event["type"]?.stringValue == "audit.checkpoint")
        #expect(event["data"]?.stringValue == checkpoint.out)
    }

    @Test(.enabled(if: pythonNATSAvailable, "python3 with nats-py (pip install nats-py) is not installed"))
    func aConsumerOutsideTheProjectReadsBackExactlyTheLog() async throws {
        let server = try LocalNATSServer()
        defer { server.stop() }
        let (directory, log, _) = try await demoStore()
        let relay = try await campaign(["export", "--data", directory.path, "--to", server.url, "--stream", "CAMPAIGN"])
        #expect(relay.status == 0, "\(relay.err)")
        let expected = try await campaign(["export", "--data", directory.path])
        #expect(expected.lines.count == log.count)
        let file = directory.path + "/expected.jsonl"
        try expected.out.write(toFile: file, atomically: false, encoding: .utf8)
        let (status, text) = try await runPythonTool("nats_readback.py", [server.url, "CAMPAIGN", file])
        #expect(status == 0, "\(text)")
        #expect(text.contains("\(log.count) events read back in order, each once"))
    }

    @Test func aRelayKilledMidStreamAndRestartedLeavesNoGapAndNoDuplicate() async throws {
        let server = try LocalNATSServer()
        defer { server.stop() }
        let (directory, log, storeId) = try await demoStore(contacts: 3_000)
        let first = try startProduct(
            "campaign", ["export", "--data", directory.path, "--to", server.url, "--stream", "CAMPAIGN", "--follow"])
        try await waitUntil("500 events relayed", limit: .seconds(60), every: .milliseconds(20)) {
            await messages(server, "CAMPAIGN") >= 500
        }
        first.send(SIGKILL)
        await first.waitForExit()
        #expect(await messages(server, "CAMPAIGN") < UInt64(log.count), "the relay finished before the kill")
        let second = try await campaign([
            "export", "--data", directory.path, "--to", server.url, "--stream", "CAMPAIGN",
        ])
        #expect(second.status == 0, "\(second.err)")
        try await expectStreamHolds(log, storeId: storeId, server, "CAMPAIGN")
    }

    @Test func aBrokerThatGoesAwayIsWaitedForAndNothingIsLostOrDoubled() async throws {
        // The first server owns the JetStream directory the second one reopens.
        let first = try LocalNATSServer()
        let (directory, log, storeId) = try await demoStore(contacts: 3_000)
        let metricsFile = directory.path + "/relay.prom"
        let relay = try startProduct(
            "campaign",
            [
                "export", "--data", directory.path, "--to", first.url, "--stream", "CAMPAIGN", "--follow",
                "--metrics", metricsFile, "--metrics-every", "1",
            ])
        try await waitUntil("500 events relayed", limit: .seconds(60), every: .milliseconds(20)) {
            await messages(first, "CAMPAIGN") >= 500
        }
        first.stop()
        // The file says the relay lost its server while it is away.
        try await waitUntil("the metrics show the relay disconnected", limit: .seconds(20)) {
            let text = (try? String(contentsOfFile: metricsFile, encoding: .utf8)) ?? ""
            return relayMetric(text, "connected") == 0 && (relayMetric(text, "retries_total") ?? 0) >= 1
        }
        try await Task.sleep(for: .milliseconds(500))
        let server = try LocalNATSServer(port: first.port, storeDirectory: first.storePath)
        defer { withExtendedLifetime(first) { server.stop() } }
        try await waitUntil("the whole log relayed", limit: .seconds(60), every: .milliseconds(20)) {
            await messages(server, "CAMPAIGN") >= UInt64(log.count)
        }
        // Caught up, a following relay stores its checkpoint at once, not at its exit.
        try await waitUntil("the consumer caught up", limit: .seconds(20), every: .milliseconds(20)) {
            let listed = try await campaign(["subscriptions", "--data", directory.path, "--json"])
            let consumer = try JSON.parse(listed.out)["consumers"]?.arrayValue?.first
            return consumer?["lag"]?.integerValue == 0
        }
        #expect(relay.isRunning)
        // SIGTERM stops the relay cleanly.
        relay.terminate()
        #expect(await relay.waitForExit() == .exited(0))
        try await expectStreamHolds(log, storeId: storeId, server, "CAMPAIGN")
        // Its last metrics: two connections, the whole log acknowledged and stored, nothing behind.
        let text = try String(contentsOfFile: metricsFile, encoding: .utf8)
        let count = Double(log.count)
        #expect(relayMetric(text, "connected") == 0)
        #expect(relayMetric(text, "connections_total") == 2, "\(text)")
        #expect((relayMetric(text, "retries_total") ?? 0) >= 1)
        #expect(relayMetric(text, "acknowledged_position") == count)
        #expect(relayMetric(text, "checkpoint_position") == count)
        #expect(relayMetric(text, "log_head_position") == count && relayMetric(text, "lag_events") == 0)
        let acknowledged = relayMetric(text, "messages_acknowledged_total") ?? 0
        let published = relayMetric(text, "messages_published_total", #",kind="event""#) ?? 0
        // Publishes in flight when the server went away were sent again after it came back.
        #expect(acknowledged >= count && published >= acknowledged, "\(text)")
        #expect(relayMetric(text, "acknowledgement_duration_seconds_count") == acknowledged)
        #expect((relayMetric(text, "last_acknowledgement_timestamp_seconds") ?? 0) > Date().timeIntervalSince1970 - 120)
        var options = StoreOptions()
        options.readOnly = true
        let store = try EventStore(path: directory.path, options: options)
        defer { store.close() }
        #expect(try store.consumers().first { $0.name == "nats-CAMPAIGN" }?.position == UInt64(log.count))
    }

    /// A broker that asks for credentials: an `--auth-file` (or the URL) gives them; missing or
    /// refused ones end the relay at once (retrying cannot fix them), and no message shows a secret.
    @Test func aRelayAuthenticatesAndStopsAtOnceWhenItsCredentialsAreMissingOrRefused() async throws {
        let password = "s3cret-pass"
        let (directory, log, storeId) = try await demoStore()
        // Three users: the relay's, one that may publish events but not call JetStream's API, and an
        // NKEY's (the key pair published in the NATS clients' tests).
        let configuration = directory.path + "/nats.conf"
        try """
        authorization {
          users = [
            { user: "relay", password: "\(password)" }
            { user: "limited", password: "limited-pass", permissions: { publish: "campaign.>", subscribe: "_INBOX.>" } }
            { nkey: "UCK5N7N66OBOINFXAYC2ACJQYFSOD4VYNU6APEJTAVFZB2SVHLKGEW7L" }
          ]
        }
        """.write(toFile: configuration, atomically: false, encoding: .utf8)
        let server = try LocalNATSServer(arguments: ["-c", configuration])
        defer { server.stop() }
        let hostPort = server.url.dropFirst("nats://".count)
        let relayTo = ["export", "--data", directory.path, "--to", server.url, "--stream", "CAMPAIGN"]
        let missing = try await campaign(relayTo)
        #expect(missing.status == 1 && missing.err.contains("requires credentials"), "\(missing)")
        #expect(!missing.err.contains("retrying"), "credentials that are missing are not retried")
        let wrong = try await campaign([
            "export", "--data", directory.path, "--to", "nats://relay:hunter2@\(hostPort)", "--stream", "CAMPAIGN",
        ])
        #expect(wrong.status == 1 && wrong.err.contains("refused the credentials"), "\(wrong)")
        #expect(!wrong.err.contains("retrying") && !(wrong.err + wrong.out).contains("hunter2"))

        // A user the server does not let call JetStream's API: refused at once as well.
        let limited = try await campaign([
            "export", "--data", directory.path, "--to", "nats://limited:limited-pass@\(hostPort)", "--stream",
            "CAMPAIGN",
        ])
        #expect(limited.status == 1 && limited.err.contains("does not let this user"), "\(limited)")
        #expect(!limited.err.contains("retrying") && !limited.err.contains("limited-pass"))

        // The file's secret is not on the command line; a file others may read is refused first.
        let file = directory.path + "/nats.auth"
        try "# the relay's account\nuser=relay\npassword=\(password)\n".write(
            toFile: file, atomically: false, encoding: .utf8)
        chmod(file, 0o644)
        let readable = try await campaign(relayTo + ["--auth-file", file])
        #expect(readable.status == 64 && readable.err.contains("chmod 600") && !readable.err.contains(password))
        chmod(file, 0o600)
        let relayed = try await campaign(relayTo + ["--auth-file", file])
        #expect(relayed.status == 0, "\(relayed.err)")
        try await expectStreamHolds(
            log, storeId: storeId, server, "CAMPAIGN", url: "nats://relay:\(password)@\(hostPort)")
        // The credentials stay in the relay's process: the store never holds them.
        let stored = try Data(contentsOf: URL(fileURLWithPath: directory.path + "/data.mdb"))
        #expect(stored.range(of: Data(password.utf8)) == nil)
        // A URL's own credentials win over the file's.
        let own = try await campaign([
            "export", "--data", directory.path, "--to", "nats://relay:hunter2@\(hostPort)", "--stream", "CAMPAIGN",
            "--auth-file", file,
        ])
        #expect(own.status == 1 && own.err.contains("refused the credentials"))

        // An NKEY seed in the file: the server checks the nonce it signs.
        let seed = "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU"
        try "nkey=\(seed)\n".write(toFile: file, atomically: false, encoding: .utf8)
        chmod(file, 0o600)
        let nkey = try await campaign(relayTo + ["--auth-file", file, "--consumer", "nkey-relay"])
        #expect(nkey.status == 0 && nkey.out.contains("consumer nkey-relay at"), "\(nkey)")
        #expect(!(nkey.err + nkey.out).contains(seed))

        for (text, problem) in [
            ("user=relay\n", "give user= and password=, or token= alone"),
            ("user=relay\npassword=x\ntoken=y\n", "give user= and password=, or token= alone"),
            ("relay:\(password)\n", "line 1 is not user=NAME"), ("user=a\nuser=b\n", "line 2 is not"),
            ("token=\n", "line 1 is not"), ("nkey=\(seed.dropLast())\n", "nkey= is not 58 characters"),
            ("nkey=\(seed)\ntoken=x\n", "nkey= alone"),
        ] {
            try text.write(toFile: file, atomically: false, encoding: .utf8)
            chmod(file, 0o600)
            let refused = try await campaign(relayTo + ["--auth-file", file])
            #expect(refused.status == 64 && refused.err.contains(problem), "\(text): \(refused.err)")
            #expect(!refused.err.contains(password))
        }
        #expect(try await campaign(["export", "--data", directory.path, "--auth-file", file]).status == 64)
    }

    /// A server in operator mode, a demo store, and the user's `.creds` in a file of the store's
    /// directory that only its owner may read.
    func operatorModeStore() async throws -> (OperatorModeNATS, TemporaryDirectory, [RecordedEvent], String) {
        let nats = try OperatorModeNATS()
        let (directory, log, _) = try await demoStore()
        let file = directory.path + "/relay.creds"
        try nats.creds.write(toFile: file, atomically: false, encoding: .utf8)
        chmod(file, 0o600)
        return (nats, directory, log, file)
    }

    /// A server in operator mode: the relay authenticates with the user's `.creds` file as
    /// `nsc` writes it, given as `--auth-file`.
    @Test func aRelayAuthenticatesWithACredsFileToAServerInOperatorMode() async throws {
        let (nats, directory, log, file) = try await operatorModeStore()
        defer { nats.server.stop() }
        let relayTo = ["export", "--data", directory.path, "--to", nats.server.url, "--stream", "CAMPAIGN"]
        let relayed = try await campaign(relayTo + ["--auth-file", file])
        let count = Format.count(log.count)
        #expect(relayed.status == 0 && relayed.out.contains("nats-CAMPAIGN at \(count) of \(count)"), "\(relayed)")
        #expect(!(relayed.err + relayed.out).contains("SUA"), "no seed in the output")
        let missing = try await campaign(relayTo)
        #expect(missing.status == 1 && missing.err.contains("requires credentials"), "\(missing)")
        // A credentials file whose seed was damaged is a usage error that names the problem.
        try nats.creds.replacingOccurrences(
            of: "-----BEGIN USER NKEY SEED-----\nSU", with: "-----BEGIN USER NKEY SEED-----\nSX"
        )
        .write(toFile: file, atomically: false, encoding: .utf8)
        chmod(file, 0o600)
        let damaged = try await campaign(relayTo + ["--auth-file", file])
        #expect(damaged.status == 64 && damaged.err.contains("a credentials file whose seed is"), "\(damaged)")
    }

    /// A following relay of `directory` into stream CAMPAIGN of the server in operator mode, with
    /// `--auth-file file`.
    /// Its standard error is collected (``ChildProcess/errorOutput``) with `errors: .collect`.
    func followingRelay(
        _ directory: TemporaryDirectory, _ nats: OperatorModeNATS, authFile file: String,
        errors: ChildProcess.Output = .inherit
    ) throws
        -> ChildProcess
    {
        try ChildProcess(
            product("campaign"),
            [
                "export", "--data", directory.path, "--to", nats.server.url, "--stream", "CAMPAIGN", "--follow",
                "--auth-file", file,
            ], output: .collect, error: errors)
    }

    /// Replaces `file` with `creds` at once, already readable by its owner alone, as a rotation would.
    func install(_ creds: String, at file: String) throws {
        let next = file + ".next"
        try creds.write(toFile: next, atomically: false, encoding: .utf8)
        chmod(next, 0o600)
        try #require(rename(next, file) == 0)
    }

    /// The messages stream CAMPAIGN holds, read as the operator-mode server's first user (0 while
    /// the server cannot be reached).
    func stored(_ nats: OperatorModeNATS) async -> UInt64 {
        guard let credentials = try? NATSEndpoint.credentialsFile(nats.creds),
            let reader = try? NATSConnection(
                endpoint: NATSEndpoint(host: "127.0.0.1", port: nats.server.port, credentials: credentials))
        else { return 0 }
        defer { reader.close() }
        return (try? await JetStream(reader).streamState("CAMPAIGN").messages) ?? 0
    }

    /// Creates one campaign in the store in `directory` and waits until a running relay has put its
    /// event in stream CAMPAIGN after the `count` there before.
    func expectOneMoreRelayed(
        _ directory: TemporaryDirectory, _ nats: OperatorModeNATS, after count: Int
    )
        async throws
    {
        let created = try await campaign(
            ["apply", "--data", directory.path],
            input: #"{"requestId":"r","principal":\#(admin()),"command":"campaign.create","#
                + #""payload":{"name":"One more","channel":"email"}}"# + "\n")
        try #require(created.status == 0 && created.out.contains(#""status":201"#), "\(created)")
        try await waitUntil("the new event relayed", limit: .seconds(30), every: .milliseconds(50)) {
            await stored(nats) == UInt64(count + 1)
        }
    }

    /// Credentials renewed under a running relay: the `--auth-file` held a `.creds` whose JWT
    /// expires in a few seconds, and a new one replaced it before then. When the server ends the
    /// connection at the expiry, the relay reads the file again and goes on with the new user.
    /// Before, it retried with the JWT it had read at its start, was refused, and exited 1.
    @Test func aFollowingRelayReconnectsWithCredentialsRenewedInItsAuthFile() async throws {
        let (nats, directory, log, file) = try await operatorModeStore()
        defer { nats.server.stop() }
        let expiry = Date().addingTimeInterval(4)
        try install(nats.newUserCreds(expires: expiry), at: file)
        let relay = try followingRelay(directory, nats, authFile: file)
        defer { relay.terminate() }
        try await waitUntil("the log relayed", limit: .seconds(30), every: .milliseconds(20)) {
            await stored(nats) == UInt64(log.count)
        }
        try install(nats.newUserCreds(expires: nil), at: file)
        // The server ends the first user's connection when its JWT expires.
        try await Task.sleep(until: .now + .seconds(max(0, expiry.timeIntervalSinceNow) + 1.5))
        try await expectOneMoreRelayed(directory, nats, after: log.count)
        #expect(relay.isRunning)
        relay.terminate()
        #expect(await relay.waitForExit() == .exited(0))
    }

    /// Credentials renewed only after they expired: the relay's reconnect with the expired JWT is
    /// refused, and since the server took the file's credentials before in this run, the relay
    /// waits, reading the file again on each retry, until it holds credentials the server takes.
    /// Before, that refusal ended the relay (exit 1). Credentials refused at the start still do.
    @Test func aFollowingRelayWaitsForCredentialsRenewedAfterTheyExpired() async throws {
        let (nats, directory, log, file) = try await operatorModeStore()
        defer { nats.server.stop() }
        try install(nats.newUserCreds(expires: Date().addingTimeInterval(4)), at: file)
        let relay = try followingRelay(directory, nats, authFile: file, errors: .collect)
        defer { relay.terminate() }
        try await waitUntil("the log relayed", limit: .seconds(30), every: .milliseconds(20)) {
            await stored(nats) == UInt64(log.count)
        }
        let waiting = "NATS authorization: the server refused the credentials"
        try await waitUntil("the expired credentials refused", limit: .seconds(30), every: .milliseconds(50)) {
            let errors = String(decoding: relay.errorOutput, as: UTF8.self)
            return errors.contains(waiting) && errors.contains("waiting for renewed credentials in \(file)")
        }
        #expect(relay.isRunning)
        try install(nats.newUserCreds(expires: nil), at: file)
        try await expectOneMoreRelayed(directory, nats, after: log.count)
        #expect(relay.isRunning)
        relay.terminate()
        #expect(await relay.waitForExit() == .exited(0))

        // A relay that starts with credentials the server refuses still stops at once.
        try install(nats.newUserCreds(expires: Date().addingTimeInterval(-60)), at: file)
        let expired = try await campaign(
            ["export", "--data", directory.path, "--to", nats.server.url, "--stream", "CAMPAIGN", "--auth-file", file])
        #expect(expired.status == 1 && expired.err.contains("refused the credentials"), "\(expired)")
        #expect(!expired.err.contains("waiting") && !expired.err.contains("retrying"))
    }

    /// An `--auth-file` that cannot be read when the relay reconnects (here: readable by others, as
    /// a careless rotation leaves it) keeps the credentials read before: the relay goes on through a
    /// restarted server instead of stopping.
    @Test func aRelayKeepsItsCredentialsWhenItsAuthFileCannotBeReadAgain() async throws {
        let (nats, directory, log, file) = try await operatorModeStore()
        defer { nats.server.stop() }
        let relay = try followingRelay(directory, nats, authFile: file)
        defer { relay.terminate() }
        try await waitUntil("the log relayed", limit: .seconds(30), every: .milliseconds(20)) {
            await stored(nats) == UInt64(log.count)
        }
        chmod(file, 0o644)
        nats.server.stop()
        let restarted = try nats.restart()
        defer { restarted.stop() }
        try await expectOneMoreRelayed(directory, nats, after: log.count)
        #expect(relay.isRunning)
    }

    @Test func aRelayThatCannotReachItsBrokerGivesUpAfterRetryFor() async throws {
        let (directory, log, _) = try await demoStore()
        // A port nothing listens on: a server started and stopped.
        let gone = try LocalNATSServer()
        gone.stop()
        let relayTo = ["export", "--data", directory.path, "--to", gone.url, "--stream", "S"]
        // Before --retry-for, a relay without --follow retried for ever.
        let once = try await campaign(relayTo + ["--retry-for", "1"])
        #expect(once.status == 1, "\(once)")
        #expect(once.err.contains("giving up: no event acknowledged for 1 s (--retry-for); consumer nats-S at 0"))
        #expect(once.err.contains("retrying in 0.2 s"))
        let first = try await campaign(relayTo + ["--retry-for", "0"])
        #expect(first.status == 1 && !first.err.contains("retrying"), "\(first)")
        for bad in [["--retry-for", "-1"], ["--retry-for", "1.5"]] {
            #expect(try await campaign(relayTo + bad).status == 64)
        }
        #expect(try await campaign(["export", "--data", directory.path, "--retry-for", "5"]).status == 64)
        // Its metrics file says it never connected, and how far behind it is.
        let metricsFile = directory.path + "/relay.prom"
        let failed = try await campaign(relayTo + ["--retry-for", "1", "--metrics", metricsFile])
        #expect(failed.status == 1)
        let text = try String(contentsOfFile: metricsFile, encoding: .utf8)
        #expect(relayMetric(text, "connected", consumer: "nats-S") == 0)
        #expect(relayMetric(text, "connections_total", consumer: "nats-S") == 0)
        #expect((relayMetric(text, "retries_total", consumer: "nats-S") ?? 0) >= 1)
        #expect(relayMetric(text, "lag_events", consumer: "nats-S") == Double(log.count))
        // --metrics goes with the relay (or apply), and --metrics-every with --metrics.
        #expect(try await campaign(["export", "--data", directory.path, "--metrics", metricsFile]).status == 64)
        #expect(try await campaign(relayTo + ["--metrics-every", "5"]).status == 64)
        #expect(try await campaign(relayTo + ["--metrics", directory.path]).status == 64)
        // A label of the operator's rides on every sample; the relay's own `consumer` is not one to take.
        let labelled = try await campaign(
            relayTo + ["--retry-for", "0", "--metrics", metricsFile, "--metrics-label", "region=eu"])
        #expect(labelled.status == 1)
        let samples = try String(contentsOfFile: metricsFile, encoding: .utf8).split(separator: "\n")
            .filter { !$0.hasPrefix("#") }
        #expect(samples.contains(#"campaign_relay_connected{consumer="nats-S",region="eu"} 0"#), "\(samples)")
        #expect(samples.allSatisfy { $0.contains(#"region="eu""#) })
        #expect(try await campaign(relayTo + ["--metrics", metricsFile, "--metrics-label", "consumer=x"]).status == 64)
        #expect(try await campaign(["export", "--data", directory.path, "--metrics-label", "region=eu"]).status == 64)
    }

    /// Publishes JetStream never answers (a stream made with `no_ack`, as publishes go unanswered
    /// when the stream's leader dies with them): the relay no longer waits for ever with its window
    /// full; after 5 s without an answer it retries from its checkpoint, and `--retry-for` ends it.
    @Test func aRelayWhosePublishesGoUnansweredRetriesInsteadOfWaitingForEver() async throws {
        let server = try LocalNATSServer()
        defer { server.stop() }
        let (directory, log, _) = try await demoStore()
        try #require(log.count > 256, "more events than the relay keeps in flight")
        let connection = try NATSConnection(url: server.url)
        defer { connection.close() }
        let config = #"{"name":"CAMPAIGN","subjects":["campaign.>"],"storage":"file","no_ack":true}"#
        let made = try await connection.request("$JS.API.STREAM.CREATE.CAMPAIGN", payload: Array(config.utf8))
        try #require(!String(decoding: made.payload, as: UTF8.self).contains("\"error\""))
        let relay = try ChildProcess(
            product("campaign"),
            ["export", "--data", directory.path, "--to", server.url, "--stream", "CAMPAIGN", "--retry-for", "1"],
            output: .collect, error: .collect)
        defer { if relay.isRunning { relay.send(SIGKILL) } }
        try await waitUntil("the relay ended", limit: .seconds(30), every: .milliseconds(50)) { !relay.isRunning }
        #expect(await relay.waitForExit() == .exited(1))
        let errors = String(decoding: relay.errorOutput, as: UTF8.self)
        #expect(
            errors.contains(
                "relay: NATS: no reply in time; giving up: no event acknowledged for 1 s (--retry-for); consumer "
                    + "nats-CAMPAIGN at 0"), "\(errors)")
    }

    /// The `Nats-Msg-Id` and `Nats-Expected-Last-Msg-Id` of every message stream `name` holds, in
    /// sequence order.
    func chain(_ server: LocalNATSServer, _ name: String) async throws -> [(id: String, expects: String?)] {
        let connection = try NATSConnection(url: server.url)
        defer { connection.close() }
        let jetStream = JetStream(connection)
        let last = try await jetStream.streamState(name).lastSequence
        var links = [(id: String, expects: String?)]()
        for sequence in 1...max(1, last) where last > 0 {
            let message = try await jetStream.message(name, sequence: sequence)
            links.append((message.headers["Nats-Msg-Id"] ?? "", message.headers["Nats-Expected-Last-Msg-Id"]))
        }
        return links
    }

    /// `--exclusive`: every publish but the first of a connection names the one before it, kept
    /// checkpoints included, so the server stores nothing out of order; a later run's first publish
    /// expects nothing (the server may have lost its last id in a restart) and the chain goes on.
    @Test func anExclusiveRelayNamesTheMessageBeforeEachPublish() async throws {
        let server = try LocalNATSServer()
        defer { server.stop() }
        let (directory, log, storeId) = try await demoStore()
        let keys = TemporaryDirectory()
        try #require(
            try await campaign(["keygen", "--name", "ops.example", "--out", keys.path + "/ops.key"]).status == 0)
        try #require(
            try await campaign(["checkpoint", "--data", directory.path, "--key", keys.path + "/ops.key"]).status == 0)
        let relayTo = ["export", "--data", directory.path, "--to", server.url, "--stream", "CAMPAIGN", "--exclusive"]
        let relay = try await campaign(relayTo)
        #expect(relay.status == 0, "\(relay.err)")
        let created = try await campaign(
            ["apply", "--data", directory.path],
            input: #"{"requestId":"r","principal":\#(admin()),"command":"campaign.create","#
                + #""payload":{"name":"One more","channel":"email"}}"# + "\n")
        try #require(created.status == 0 && created.out.contains(#""status":201"#), "\(created)")
        let again = try await campaign(relayTo)
        #expect(again.status == 0, "\(again.err)")
        let links = try await chain(server, "CAMPAIGN")
        let size = log.count
        let expected =
            (1...size).map { "\(storeId)-\($0)" } + ["\(storeId)-checkpoint-\(size)", "\(storeId)-\(size + 1)"]
        #expect(links.map(\.id) == expected)
        // Each connection's first publish expects nothing; every other one, the message before it.
        let starts: Set<Int> = [0, size + 1]
        for (index, link) in links.enumerated() {
            let wanted = starts.contains(index) ? nil : links[index - 1].id
            guard link.expects == wanted else {
                Issue.record("message \(index + 1) expects \(link.expects ?? "nothing"), not \(wanted ?? "nothing")")
                return
            }
        }
        #expect(try await campaign(["export", "--data", directory.path, "--exclusive"]).status == 64)
    }

    /// An exclusive relay across a broker restart: the new connection's first publish expects
    /// nothing, the chain goes on after it (or after the repeats the restart left), and the stream
    /// ends complete, in order and once.
    @Test func anExclusiveRelayGoesOnInOrderAfterItsBrokerRestarts() async throws {
        let first = try LocalNATSServer()
        let (directory, log, storeId) = try await demoStore(contacts: 3_000)
        let relay = try startProduct(
            "campaign",
            [
                "export", "--data", directory.path, "--to", first.url, "--stream", "CAMPAIGN", "--follow",
                "--exclusive",
            ])
        defer { if relay.isRunning { relay.send(SIGKILL) } }
        try await waitUntil("500 events relayed", limit: .seconds(60), every: .milliseconds(20)) {
            await messages(first, "CAMPAIGN") >= 500
        }
        first.stop()
        try await Task.sleep(for: .milliseconds(500))
        let server = try LocalNATSServer(port: first.port, storeDirectory: first.storePath)
        defer { withExtendedLifetime(first) { server.stop() } }
        try await waitUntil("the whole log relayed", limit: .seconds(60), every: .milliseconds(20)) {
            await messages(server, "CAMPAIGN") >= UInt64(log.count)
        }
        relay.terminate()
        #expect(await relay.waitForExit() == .exited(0))
        try await expectStreamHolds(log, storeId: storeId, server, "CAMPAIGN")
        let links = try await chain(server, "CAMPAIGN")
        var starts = 0
        for (index, link) in links.enumerated() {
            guard let expected = link.expects else {
                starts += 1
                continue
            }
            guard index > 0, expected == links[index - 1].id else {
                Issue.record("message \(index + 1) expects \(expected), not the message before it")
                return
            }
        }
        // The first connection's first publish, and the second's unless it was a repeat (a publish
        // stored as the server stopped, its acknowledgement lost, is sent again and dropped).
        #expect((1...2).contains(starts), "\(starts) publishes expected nothing")
    }

    /// A copy of the store in `directory` as it is now, as a backup restored later would be.
    func restoredCopy(of directory: TemporaryDirectory) throws -> TemporaryDirectory {
        let copy = TemporaryDirectory()
        for file in ["data.mdb", "lock.mdb"] {
            try FileManager.default.copyItem(atPath: directory.path + "/" + file, toPath: copy.path + "/" + file)
        }
        return copy
    }

    /// Creates a campaign named `name` in the store in `store`.
    func create(_ name: String, in store: TemporaryDirectory) async throws {
        let created = try await campaign(
            ["apply", "--data", store.path],
            input: #"{"requestId":"r","principal":\#(admin()),"command":"campaign.create","#
                + #""payload":{"name":"\#(name)","channel":"email"}}"# + "\n")
        try #require(created.status == 0 && created.out.contains(#""status":201"#), "\(created)")
    }

    /// A copy of the store restored from before its last events, relaying into the stream its
    /// original filled: the stream's last event of this store is past the copy's head, or, once the
    /// copy has appended as far, not the copy's event at that position (another hash). The exclusive
    /// relay refuses either as it connects, before any publish: beyond JetStream's duplicate window,
    /// where no repeat is reported, it would have published the copy's events after the original's.
    @Test func anExclusiveRelayRefusesAStreamAheadOfARestoredStore() async throws {
        let server = try LocalNATSServer()
        defer { server.stop() }
        let (directory, log, _) = try await demoStore()
        let copy = try restoredCopy(of: directory)
        try await create("Original one", in: directory)
        try await create("Original two", in: directory)
        let relayTo = { (store: TemporaryDirectory) in
            ["export", "--data", store.path, "--to", server.url, "--stream", "CAMPAIGN", "--exclusive"]
        }
        #expect(try await campaign(relayTo(directory)).status == 0)
        try await create("Restored one", in: copy)
        let ahead = try await campaign(relayTo(copy))
        #expect(ahead.status == 1, "\(ahead)")
        #expect(
            ahead.err.contains(
                "holds this store's event \(Format.count(log.count + 2)), past the log's head at "
                    + Format.count(log.count + 1)), "\(ahead.err)")
        try await create("Restored two", in: copy)
        let other = try await campaign(relayTo(copy))
        #expect(other.status == 1, "\(other)")
        #expect(
            other.err.contains("holds this store's event \(Format.count(log.count + 2)) with hash "), "\(other.err)")
        #expect(await messages(server, "CAMPAIGN") == UInt64(log.count + 2))
    }

    /// A plain relay of a copy of the store restored from an older backup, into the stream the
    /// original filled, within JetStream's duplicate window: the original's events come back as
    /// repeats and are checked to be the same events, and the copy's own event at a position the
    /// original published, a "repeat" of another event, stops the relay, which does not count it
    /// relayed. Before, JetStream dropped it and the relay exited 0.
    @Test func aRelayStopsWhenARepeatIsAnotherEvent() async throws {
        let server = try LocalNATSServer()
        defer { server.stop() }
        let (directory, log, storeId) = try await demoStore()
        let copy = try restoredCopy(of: directory)
        try await create("Original one", in: directory)
        let relayTo = { (store: TemporaryDirectory) in
            ["export", "--data", store.path, "--to", server.url, "--stream", "CAMPAIGN"]
        }
        #expect(try await campaign(relayTo(directory)).status == 0)
        try await create("Restored one", in: copy)
        let restored = try await campaign(relayTo(copy))
        let position = log.count + 1
        #expect(restored.status == 1, "\(restored)")
        #expect(
            restored.err.contains("stream CAMPAIGN holds \(storeId)-\(position) (sequence \(position)) with hash "),
            "\(restored.err)")
        // The original's events, sent again, were checked and counted; the copy's own was not.
        #expect(restored.err.hasSuffix("consumer nats-CAMPAIGN at \(Format.count(log.count))\n"), "\(restored.err)")
        #expect(await messages(server, "CAMPAIGN") == UInt64(position))
    }

    /// Another publisher's message between two of an exclusive relay's makes the stream refuse the
    /// relay's next publish; the relay says so and exits 1 rather than retrying for ever.
    @Test func anExclusiveRelayStopsWhenAnotherPublisherWritesToItsStream() async throws {
        let server = try LocalNATSServer()
        defer { server.stop() }
        let (directory, log, _) = try await demoStore()
        let relay = try ChildProcess(
            product("campaign"),
            [
                "export", "--data", directory.path, "--to", server.url, "--stream", "CAMPAIGN", "--follow",
                "--exclusive",
            ], output: .collect, error: .collect)
        defer { if relay.isRunning { relay.send(SIGKILL) } }
        try await waitUntil("the log relayed", limit: .seconds(30), every: .milliseconds(50)) {
            await messages(server, "CAMPAIGN") == UInt64(log.count)
        }
        let other = try NATSConnection(url: server.url)
        defer { other.close() }
        let stored = try await withCheckedThrowingContinuation { continuation in
            do {
                try JetStream(other).publish("campaign.elsewhere.thing", id: "elsewhere-1", payload: Array("{}".utf8)) {
                    continuation.resume(with: $0.mapError { $0 as any Error })
                }
            } catch {
                continuation.resume(throwing: error)
            }
        }
        #expect(stored.sequence == UInt64(log.count + 1))
        let created = try await campaign(
            ["apply", "--data", directory.path],
            input: #"{"requestId":"r","principal":\#(admin()),"command":"campaign.create","#
                + #""payload":{"name":"One more","channel":"email"}}"# + "\n")
        try #require(created.status == 0, "\(created)")
        try await waitUntil("the relay ended", limit: .seconds(30), every: .milliseconds(50)) { !relay.isRunning }
        let ended = await relay.waitForExit()
        #expect(ended == .exited(1))
        let errors = String(decoding: relay.errorOutput, as: UTF8.self)
        #expect(
            errors.contains(
                "stream CAMPAIGN holds a message this store did not publish (Nats-Msg-Id elsewhere-1) after its own: "
                    + "--exclusive needs a stream no other publisher writes to; consumer nats-CAMPAIGN at "
                    + Format.count(log.count)), "\(errors)")
        // Nothing of the store's landed after the other publisher's message.
        #expect(try await chain(server, "CAMPAIGN").last?.id == "elsewhere-1")
        #expect(await messages(server, "CAMPAIGN") == UInt64(log.count + 1))
        // A later run finds it at once (its first publish, expecting nothing, would have been taken).
        let again = try await campaign([
            "export", "--data", directory.path, "--to", server.url, "--stream", "CAMPAIGN", "--exclusive",
        ])
        #expect(again.status == 1 && again.err.contains("(Nats-Msg-Id elsewhere-1)"), "\(again)")
        #expect(await messages(server, "CAMPAIGN") == UInt64(log.count + 1))
    }
}

/// The value of the relay's family `name` (after `campaign_relay_`) for `consumer` in a metrics
/// file's text, with `more` labels after the consumer's; nil when it has no such sample.
func relayMetric(_ text: String, _ name: String, _ more: String = "", consumer: String = "nats-CAMPAIGN") -> Double? {
    let start = "campaign_relay_\(name){consumer=\"\(consumer)\"\(more)} "
    return text.split(separator: "\n").first { $0.hasPrefix(start) }.flatMap { Double($0.dropFirst(start.count)) }
}

/// Whether python3 can import nats-py (the optional consumer outside the project).
let pythonNATSAvailable = pythonCanImport("nats")
