import CampaignDomain
import CampaignEngine
import EventStore
import Foundation
import Spawn
import TestSupport
import Testing

@testable import CampaignCLI

@Suite struct ChangeFeedTests {
    func create(_ t: TestEngine, _ n: Int) async {
        let response = await t.command(
            "campaign.create", #"{"campaignId":"cmp_\#(n)","name":"Campaign \#(n)","channel":"email"}"#)
        #expect(response.status == 201)
    }

    /// Takes `count` events from a subscription, failing after `seconds` (a bound on a hang, not a
    /// measure of speed: a loaded machine must not fail it).
    func take(
        _ count: Int, from subscription: EventSubscription, within seconds: Double = 60
    ) async throws
        -> [RecordedEvent]
    {
        try await withThrowingTaskGroup(of: [RecordedEvent]?.self) { group in
            group.addTask {
                var taken = [RecordedEvent]()
                for try await event in subscription {
                    taken.append(event)
                    if taken.count == count { break }
                }
                return taken
            }
            group.addTask {
                try await Task.sleep(for: .seconds(seconds))
                return nil
            }
            let first = try await group.next()!
            group.cancelAll()
            guard let first else { throw CancellationError() }
            return first
        }
    }

    @Test func aSubscriptionDeliversTheLogThenEachNewCommitInOrderAndResumesAfterItsAck() async throws {
        let t = try TestEngine()
        for n in 0..<5 { await create(t, n) }
        let subscription = try t.engine.subscribe(consumer: "analytics")
        #expect(subscription.firstPosition == 1)
        let backlog = try await take(5, from: subscription)
        #expect(backlog.map(\.position) == [1, 2, 3, 4, 5])
        try await subscription.ack(3)
        try await subscription.ack(2)  // never backwards
        #expect(try subscription.checkpoint == 3)

        // A live subscription from the head gets each commit made after it, in order. (How soon is
        // the benchmark's to measure: under the whole suite's load, 20 durable creates once took
        // longer than a 5-second bound this test held them to.)
        let live = try t.engine.subscribe(consumer: "live", from: .head)
        async let arriving = take(20, from: live)
        try await Task.sleep(for: .milliseconds(50))
        for n in 5..<25 { await create(t, n) }
        let arrived = try await arriving
        #expect(arrived.map(\.position) == Array(6...25))

        // Resuming: after the acknowledged position, whatever was delivered since.
        let resumed = try t.engine.subscribe(consumer: "analytics")
        #expect(resumed.firstPosition == 4)
        #expect(try await take(22, from: resumed).map(\.position) == Array(4...25))
        #expect(try t.engine.eventStore.consumers() == [ConsumerCheckpoint(name: "analytics", position: 3)])

        await #expect(throws: EventStoreError.self) { try await resumed.ack(99) }
        #expect(throws: EventStoreError.self) { try t.engine.subscribe(consumer: "") }
        #expect(throws: EventStoreError.self) { try t.engine.subscribe(consumer: "no spaces") }

        // A retired consumer is forgotten: no longer listed, and back under its name it starts over.
        #expect(try await t.engine.eventStore.removeConsumer("analytics") == 3)
        #expect(try await t.engine.eventStore.removeConsumer("analytics") == nil)
        await #expect(throws: EventStoreError.self) { try await t.engine.eventStore.removeConsumer("a/b") }
        #expect(try t.engine.eventStore.consumers().isEmpty)
        #expect(try t.engine.subscribe(consumer: "analytics").firstPosition == 1)
    }

    @Test func aCheckpointSurvivesARestartAndAnotherProcessesAppendsAreSeen() async throws {
        let directory = TemporaryDirectory()
        do {
            let engine = try CampaignEngine(directory: directory.path)
            let subscription = try engine.subscribe(consumer: "relay")
            _ = await engine.handle(
                line:
                    #"{"principal":\#(admin()),"command":"campaign.create","payload":{"name":"One","channel":"email"}}"#
            )
            let first = try await take(1, from: subscription)
            try await subscription.ack(first[0].position)
            engine.close()
        }
        let engine = try CampaignEngine(directory: directory.path)
        defer { engine.close() }
        let subscription = try engine.subscribe(consumer: "relay")
        #expect(subscription.firstPosition == 2)
        async let seen = take(2, from: subscription, within: 60)
        // Another process appends while this one has the store open and is waiting (no commit of
        // its own will wake it: its head check must see them).
        try await Task.sleep(for: .milliseconds(400))
        let lines = (1...2).map { n in
            #"{"requestId":"p\#(n)","principal":\#(admin()),"command":"campaign.create","#
                + #""payload":{"name":"Other \#(n)","channel":"email"}}"#
        }
        let run = try await campaign(["apply", "--data", directory.path], input: lines.joined(separator: "\n") + "\n")
        #expect(run.status == 0)
        let events = try await seen
        #expect(events.map(\.position) == [2, 3] && events.allSatisfy { $0.requestId.hasPrefix("p") })
    }

    @Test func exportWritesOneCloudEventPerEventThatChainsAndAConsumerResumes() async throws {
        let t = try TestEngine()
        for n in 0..<6 { await create(t, n) }
        #expect(await t.command("campaign.update", #"{"campaignId":"cmp_2","name":"Renamed"}"#).status == 201)
        let storeId = try t.engine.eventStore.storeId()
        #expect(storeId.count == 32)
        let log = try t.engine.eventStore.readAll()

        let run = try await campaign(["export", "--data", t.directory.path])
        #expect(run.status == 0)
        // Written a chunk at a time, the lines are still each event's CloudEvent, in order.
        #expect(run.lines == log.map { CampaignEngine.cloudEvent($0, storeId: storeId).text })
        let lines = try run.lines.map { try JSON.parse($0) }
        #expect(lines.count == log.count)
        func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
        var previous = hex([UInt8](repeating: 0, count: 32))
        for (line, event) in zip(lines, log) {
            #expect(line["specversion"]?.stringValue == "1.0")
            #expect(line["id"]?.stringValue == "\(storeId)-\(event.position)")
            #expect(line["source"]?.stringValue == "urn:campaign-engine:\(storeId)")
            #expect(line["type"]?.stringValue == event.type && line["subject"]?.stringValue == event.streamId)
            #expect(line["sequence"]?.stringValue == String(format: "%020llu", event.position))
            #expect(line["partitionkey"]?.stringValue == event.streamId)
            #expect(line["data"] == (try JSON.parse(event.payload)))
            #expect(line["tenant"]?.stringValue == "acme" && line["correlationid"]?.stringValue == event.requestId)
            #expect(line["prevhash"]?.stringValue == previous && line["hash"]?.stringValue == hex(event.hash))
            previous = hex(event.hash)
        }
        #expect(
            lines.map { $0["sequence"]?.stringValue ?? "" } == lines.map { $0["sequence"]?.stringValue ?? "" }.sorted())

        let filtered = try await campaign(["export", "--data", t.directory.path, "--type", "campaign.updated"])
        #expect(filtered.lines.count == 1)
        let oneStream = try await campaign([
            "export", "--data", t.directory.path, "--tenant", "acme", "--stream", "cmp_2",
        ])
        #expect(oneStream.lines.count == 2)

        // A consumer takes what is there, stores its checkpoint, and the next run writes only what is new.
        let firstRun = try await campaign(["export", "--data", t.directory.path, "--consumer", "kcat"])
        #expect(firstRun.lines.count == log.count)
        await create(t, 99)
        let secondRun = try await campaign(["export", "--data", t.directory.path, "--consumer", "kcat"])
        #expect(secondRun.lines.count == 1)
        #expect(try secondRun.lines.first.map { try JSON.parse($0)["subject"]?.stringValue } == "acme:cmp_99")
        let listed = try JSON.parse(try await campaign(["subscriptions", "--data", t.directory.path, "--json"]).out)
        let consumer = listed["consumers"]?.arrayValue?.first
        #expect(consumer?["name"]?.stringValue == "kcat" && consumer?["lag"]?.integerValue == 0)
        // Retired: before --remove, a consumer's lag was listed (and grew) for ever.
        let remove = ["subscriptions", "--data", t.directory.path, "--remove", "kcat"]
        let removed = try await campaign(remove)
        #expect(removed.status == 0 && removed.out.hasPrefix("removed consumer kcat (its checkpoint was "))
        #expect(try await campaign(remove).status == 1)
        #expect(try await campaign(["subscriptions", "--data", t.directory.path]).out.contains("0 consumers"))
        #expect(try await campaign(["subscriptions", "--data", t.directory.path, "--remove", "a b"]).status == 64)
        let usage = try await campaign(["export", "--data", t.directory.path, "--format", "avro"])
        #expect(usage.status == 64)
        // A malformed consumer name is the command line's fault, not the store's (it was INTERNAL_ERROR).
        for name in ["", "two words", "a/b", String(repeating: "c", count: 101)] {
            let bad = try await campaign(["export", "--data", t.directory.path, "--consumer", name])
            #expect(bad.status == 64 && bad.err.contains("--consumer: a consumer name is 1 to 100 characters"))
        }
        let longStream = String(repeating: "S", count: 99)
        let relay = try await campaign([
            "export", "--data", t.directory.path, "--to", "nats://127.0.0.1:1", "--stream", longStream,
        ])
        #expect(relay.status == 64 && relay.err.contains("give --consumer NAME"))
        // A URL that can never connect is refused at once (it was retried forever).
        for url in ["nats://host:99999", "nats://:4222", "nats://host", "nats://host:0", "nats://a:1,http://b:2"] {
            let bad = try await campaign(["export", "--data", t.directory.path, "--to", url, "--stream", "S"])
            #expect(bad.status == 64 && bad.err.contains("--to takes nats://HOST:PORT"), "\(url)")
        }
    }

    /// Commands decided at once commit in either order, so a later position can carry an earlier
    /// time (seen: 113 of 20,000 creates from 64 clients, by up to 3 ms). A time `--to` must not end
    /// a read at the first later event, and a consumer's checkpoint must not pass it.
    @Test func aTimeBoundFindsEveryEventAtOrBeforeItWhateverItsPosition() async throws {
        let directory = TemporaryDirectory()
        let store = try EventStore(path: directory.path)
        let base = Date(timeIntervalSince1970: 1_800_000_000)
        // Positions 1–4 at 0, 5, 3 and 9 ms: position 3 is earlier than position 2.
        for (n, millis) in [0, 5, 3, 9].enumerated() {
            let event = NewEvent(
                type: "campaign.updated", occurredAt: base + Double(millis) / 1_000, tenant: "acme", actor: "a",
                requestId: "r\(n)", causationId: "r\(n)", payload: Array("{}".utf8))
            _ = try await store.append(
                AppendRequest(streams: [StreamAppend(streamId: "acme:cmp_\(n)", expectedVersion: .any, events: [event])]
                ))
        }
        store.close()
        let to = Timestamp.format(base + 0.004)
        let replay = try await campaign(["replay", "--data", directory.path, "--to", to, "--json"])
        #expect(try replay.lines.map { try JSON.parse($0)["position"]?.integerValue } == [1, 3])
        let export = try await campaign(["export", "--data", directory.path, "--to", to])
        #expect(
            try export.lines.map { try JSON.parse($0)["sequence"]?.stringValue }
                == ["1", "3"].map {
                    String(repeating: "0", count: 19) + $0
                })
        // The consumer's checkpoint stays before position 2, the first event after --to, so its next
        // export writes 2, 3 (again: at least once) and 4; a position bound stops the same way.
        let bounded = try await campaign(["export", "--data", directory.path, "--to", to, "--consumer", "c"])
        #expect(bounded.lines.count == 2)
        let rest = try await campaign(["export", "--data", directory.path, "--consumer", "c"])
        #expect(try rest.lines.map { try JSON.parse($0)["sequence"]?.stringValue?.suffix(1) } == ["2", "3", "4"])
        let first = try await campaign(["export", "--data", directory.path, "--to", "1", "--consumer", "p"])
        #expect(first.lines.count == 1)
        let after = try await campaign(["export", "--data", directory.path, "--consumer", "p"])
        #expect(after.lines.count == 3)
        // A following export with a time --to ends at the first event a minute (timeSettle) past it.
        let reopened = try EventStore(path: directory.path)
        let late = NewEvent(
            type: "campaign.updated", occurredAt: base + 0.004 + ReplayCommand.Filter.timeSettle + 1, tenant: "acme",
            actor: "a", requestId: "late", causationId: "late", payload: Array("{}".utf8))
        _ = try await reopened.append(
            AppendRequest(streams: [StreamAppend(streamId: "acme:cmp_9", expectedVersion: .any, events: [late])]))
        reopened.close()
        let followed = try await campaign(["export", "--data", directory.path, "--to", to, "--follow"])
        #expect(followed.status == 0 && followed.lines.count == 2)
    }

    /// The export and the relay write CloudEvents member by member, and replay its JSON lines; the
    /// bytes must be the JSON trees', whatever the envelope's strings, the payload (not JSON, not
    /// canonical, deep) or the numbers hold.
    @Test func eventDocumentsWrittenInPlaceAreTheirTreesBytes() async throws {
        let t = try TestEngine()
        await create(t, 1)
        let storeId = try t.engine.eventStore.storeId()
        let base = try #require(try t.engine.eventStore.readAll().first)
        var events = [base]
        var odd = base
        odd.actor = "quote \" backslash \\ line \n tab \t nul \u{0} del \u{7F} \u{E9} \u{1F600} \u{202E} \u{85}"
        odd.streamId = "acme:cmp_\u{1}/\u{2028}"
        odd.type = "campaign.\u{1B}[31m"
        odd.tenant = "t\"\\"
        odd.requestId = ""
        odd.causationId = String(repeating: "\u{7F}x", count: 40)
        events.append(odd)
        let payloads = [
            "not json", "", #"{"b":1,"a":[1.5,-0,1e300,1E-7,"\u0041\/",true,null]}"#, #"  { "a" : true } "#, "[]",
            "null", "12", #"{"a":1,"a":2}"#, String(repeating: "[", count: 40) + String(repeating: "]", count: 40),
            "{\"\u{E9}\":\"\u{202E}\\u0000\"}", "\u{FF}\u{FE}",
        ]
        for payload in payloads {
            var event = base
            event.payload = Array(payload.utf8)
            events.append(event)
        }
        var invalid = base
        invalid.payload = [0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D]  // {"\xFF":1}
        events.append(invalid)
        var extremes = base
        extremes.position = .max
        extremes.streamVersion = 1_000_000_000_000_000
        extremes.schemaVersion = .max
        extremes.hash = []
        extremes.previousHash = [0xFF, 0x00, 0xA5]
        extremes.occurredAt = Date(timeIntervalSince1970: -1.5)
        events.append(extremes)
        var almost = extremes
        almost.streamVersion = 999_999_999_999_999
        almost.position = 0
        events.append(almost)
        for event in events {
            var audit = Array("prefix".utf8)
            CampaignEngine.appendAuditJSON(event, to: &audit)
            #expect(audit == Array("prefix".utf8) + CampaignEngine.auditJSON(event).bytes, "\(event.actor)")
            for id in [storeId, "", "a\"b\\c\u{1}"] {
                var bytes = Array("prefix".utf8)
                CampaignEngine.appendCloudEvent(event, storeId: id, to: &bytes)
                let tree = CampaignEngine.cloudEvent(event, storeId: id).bytes
                #expect(bytes == Array("prefix".utf8) + tree, "\(event.actor) \(event.payload) \(id)")
            }
        }
    }

    /// A following export writes its lines a chunk at a time, yet each event committed while it
    /// follows (here by another process's engine) comes out as it is committed, and the consumer's
    /// checkpoint, stored when caught up, never passes a line not yet written.
    @Test func aFollowingExportWritesEachNewEventAsItIsCommitted() async throws {
        let t = try TestEngine()
        for n in 0..<3 { await create(t, n) }
        let before = try t.engine.eventStore.readAll().count
        // One follows with a consumer (its checkpoint stored as it goes), one without.
        let withConsumer = try startProduct(
            "campaign", ["export", "--data", t.directory.path, "--follow", "--consumer", "tail"])
        let plain = try startProduct("campaign", ["export", "--data", t.directory.path, "--follow"])
        let followers = [withConsumer, plain]
        // Ended whatever happens: a follower left running would hold the test runner's output open.
        defer { for follower in followers { follower.terminate() } }
        /// Waits (a bound on a hang, not a measure of speed) until each follower has printed `count` lines.
        func waitForLines(_ count: Int) async throws {
            let deadline = Date().addingTimeInterval(60)
            while followers.contains(where: { $0.lines.count < count }), Date() < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            for follower in followers { #expect(follower.lines.count == count) }
        }
        try await waitForLines(before)
        for n in 10..<13 {
            await create(t, n)
            try await waitForLines(before + n - 9)
            for follower in followers {
                #expect((try? JSON.parse(follower.lines.last ?? ""))?["subject"]?.stringValue == "acme:cmp_\(n)")
            }
            let position = try t.engine.eventStore.consumers().first { $0.name == "tail" }?.position ?? 0
            #expect(position <= UInt64(withConsumer.lines.count))
        }
        let log = try t.engine.eventStore.readAll()
        let storeId = try t.engine.eventStore.storeId()
        for follower in followers {
            follower.terminate()
            await follower.waitForExit()
            #expect(follower.lines == log.map { CampaignEngine.cloudEvent($0, storeId: storeId).text })
        }
    }

    /// A command whose output goes away (a closed pipe, with SIGPIPE ignored as some hosts run
    /// their children) ends with status 1 and says why, never a trap: an export stores no checkpoint
    /// past what it could not write, and `apply` runs no more commands once its answers cannot be
    /// written.
    @Test func aCommandWhoseOutputIsClosedFailsAndAnExportStoresNoCheckpoint() async throws {
        let t = try TestEngine()
        for n in 0..<400 { await create(t, n) }
        let campaign = productsDirectory.appendingPathComponent("campaign").path
        let principal =
            #"{"tenant":"acme","subject":"u","role":"admin","scopes":["campaigns:write"],"#
            + #""expiresAt":"2099-01-01T00:00:00Z"}"#
        let requests = (0..<400).map {
            #"{"principal":\#(principal),"command":"campaign.create","payload":{"campaignId":"cmp_x\#($0)","#
                + #""name":"Campaign x\#($0)","channel":"email"}}"#
        }
        let input = t.directory.path + "/requests.jsonl"
        try (requests.joined(separator: "\n") + "\n").write(toFile: input, atomically: false, encoding: .utf8)
        /// Runs `command` with SIGPIPE ignored and its output closed after 100 bytes; its status and
        /// standard error.
        func closedOutput(_ command: String) async throws -> (status: String, errors: String) {
            let script = """
                trap '' PIPE
                \(command) 2> '\(t.directory.path)/errors' | head -c 100 > /dev/null
                echo "${PIPESTATUS[0]}"
                """
            let shell = try ChildProcess("/bin/bash", ["-c", script], output: .collect)
            await shell.waitForExit()
            let status = String(decoding: shell.output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return (status, try String(contentsOfFile: t.directory.path + "/errors", encoding: .utf8))
        }
        let data = "--data '\(t.directory.path)'"
        let export = try await closedOutput("'\(campaign)' export \(data) --consumer gone")
        #expect(export.status == "1" && export.errors.contains("campaign export: standard output:"), "\(export)")
        #expect(try t.engine.eventStore.consumers().first { $0.name == "gone" } == nil)
        let replay = try await closedOutput("'\(campaign)' replay \(data) --json")
        #expect(replay.status == "1" && replay.errors.contains("campaign replay: standard output:"), "\(replay)")
        let before = try t.engine.eventStore.head().position
        let apply = try await closedOutput("'\(campaign)' apply \(data) < '\(input)'")
        #expect(apply.status == "1" && apply.errors.contains("standard output:"), "\(apply)")
        #expect(!apply.errors.contains("Fatal error") && !export.errors.contains("Fatal error"))
        // It ran commands and stopped once an answer could not be written, not after all 400 (their
        // answers are more than a pipe holds, so the last ones cannot have been written).
        let ran = try t.engine.eventStore.head().position - before
        #expect(ran > 0 && ran < 400, "\(ran)")
    }
}
