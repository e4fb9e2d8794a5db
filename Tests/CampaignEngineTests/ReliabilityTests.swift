import CampaignCLI
import CampaignDomain
import CampaignEngine
import EventStore
import Foundation
import Spawn
import TestSupport
import Testing

@Suite(.serialized) struct ReliabilityTests {
    @Test func writersKilledAtRandomMomentsLoseAndDuplicateNothing() async throws {
        let directory = TemporaryDirectory()
        let summary = try await CrashHarness.run(
            data: directory.path + "/store", kills: 5, seed: 20_261_121,
            executable: productsDirectory.appendingPathComponent("campaign-harness"))
        #expect(summary.kills == 5)
        #expect(summary.acknowledged > 20, "\(summary.line)")
        #expect(summary.lost == 0 && summary.duplicated == 0, "\(summary.line)")
        #expect(summary.problems.isEmpty, "\(summary.problems)")
    }

    @Test func competingApplyProcessesKeepNamesUniqueAndLoseNoUpdate() async throws {
        let directory = TemporaryDirectory()
        let principal =
            #"{"tenant":"acme","subject":"p","role":"editor","scopes":["campaigns:write","#
            + #""segments:write"],"expiresAt":"2099-01-01T00:00:00Z"}"#
        do {
            let engine = try CampaignEngine(directory: directory.path)
            for s in 0..<10 {
                _ = await engine.handle(
                    line:
                        #"{"principal":\#(principal),"command":"campaign.create","#
                        + #""payload":{"campaignId":"cmp_s\#(s)","name":"Shared \#(s)","channel":"sms"}}"#
                )
            }
            engine.close()
        }
        func script(_ process: Int) -> String {
            var lines = [String]()
            for i in 0..<30 {
                lines.append(
                    #"{"requestId":"p\#(process)-name-\#(i)","principal":\#(principal),"#
                        + #""command":"campaign.create","payload":{"campaignId":"cmp_p\#(process)_\#(i)","#
                        + #""name":"Contested \#(i)","channel":"email"}}"#
                )
            }
            for s in 0..<10 {
                lines.append(
                    #"{"requestId":"p\#(process)-exact-\#(s)","expectedVersion":1,"#
                        + #""principal":\#(principal),"command":"campaign.update","#
                        + #""payload":{"campaignId":"cmp_s\#(s)","content":{"body":"first by p\#(process)"}}}"#
                )
                for k in 0..<3 {
                    lines.append(
                        #"{"requestId":"p\#(process)-any-\#(s)-\#(k)","principal":\#(principal),"#
                            + #""command":"campaign.update","payload":{"campaignId":"cmp_s\#(s)","#
                            + #""content":{"body":"p\#(process) k\#(k)"}}}"#
                    )
                }
            }
            return lines.joined(separator: "\n") + "\n"
        }
        let runs = try await withThrowingTaskGroup(of: Run.self) { group in
            for process in 0..<3 {
                group.addTask {
                    try await campaign(
                        ["apply", "--data", directory.path, "--rate-limit", "1000000"], input: script(process))
                }
            }
            return try await group.reduce(into: [Run]()) { $0.append($1) }
        }
        var responses = JSONObject()
        for run in runs {
            #expect(run.status == 0, "\(run.err)")
            for line in run.lines {
                if let json = try? JSON.parse(line), let id = json["requestId"]?.stringValue { responses[id] = json }
            }
        }
        #expect(responses.count == 3 * (30 + 40))
        for i in 0..<30 {
            let outcomes = (0..<3).compactMap { responses["p\($0)-name-\(i)"] }
            #expect(outcomes.filter { $0.status == 201 }.count == 1, "name \(i)")
            #expect(outcomes.filter { $0.code == "DUPLICATE_RESOURCE" }.count == 2, "name \(i)")
        }
        for s in 0..<10 {
            let exact = (0..<3).compactMap { responses["p\($0)-exact-\(s)"] }
            #expect(exact.filter { $0.status == 201 }.count <= 1, "campaign \(s)")
            #expect(
                exact.filter { $0.code == "RESOURCE_CONFLICT" }.count == 3 - exact.filter { $0.status == 201 }.count)
            let blind = (0..<3).flatMap { p in (0..<3).compactMap { responses["p\(p)-any-\(s)-\($0)"] } }
            #expect(blind.allSatisfy { $0.status == 201 }, "an update without an expectation was lost or refused")
        }
        let store = try EventStore(path: directory.path)
        defer { store.close() }
        for s in 0..<10 {
            let exactWins = (0..<3).filter { responses["p\($0)-exact-\(s)"]?.status == 201 }.count
            #expect(try store.streamVersion("acme:cmp_s\(s)") == UInt64(1 + exactWins + 9))
        }
        #expect(try store.verifyChain().isIntact)
    }

    @Test func anEngineNeverDecidesOnAStaleCachedAggregate() async throws {
        let directory = TemporaryDirectory()
        let engine = try CampaignEngine(directory: directory.path)
        defer { engine.close() }
        let principal =
            #"{"tenant":"acme","subject":"p","role":"editor","scopes":["campaigns:write","campaigns:read","#
            + #""segments:write","contacts:read"],"expiresAt":"2099-01-01T00:00:00Z"}"#
        _ = await engine.handle(
            line:
                #"{"principal":\#(principal),"command":"segment.create","payload":{"segmentId":"seg_1","#
                + #""name":"All","rules":{"all":[{"field":"email","operator":"exists"}]}}}"#
        )
        _ = await engine.handle(
            line:
                #"{"principal":\#(principal),"command":"campaign.create","payload":{"campaignId":"cmp_1","#
                + #""name":"Cached","channel":"sms","segmentId":"seg_1","content":{"body":"Hello"}}}"#
        )
        // The engine now holds cmp_1 as a draft in its cache. Another process schedules it.
        let other = try await campaign(
            ["apply", "--data", directory.path],
            input:
                #"{"requestId":"other","principal":\#(principal),"command":"campaign.schedule","#
                + #""payload":{"campaignId":"cmp_1","sendAt":"2099-01-01T00:00:00Z"}}"#
                + "\n")
        #expect(other.lines.first?.contains("\"status\":201") == true, "\(other.out)\(other.err)")
        let delete = try JSON.parse(
            await engine.handle(
                line:
                    #"{"requestId":"d","principal":\#(principal),"command":"campaign.delete","#
                    + #""payload":{"campaignId":"cmp_1"}}"#
            ))
        #expect(delete.code == "RESOURCE_CONFLICT" && delete["error"]?["currentState"]?.stringValue == "scheduled")
        let get = try JSON.parse(
            await engine.handle(
                line: #"{"principal":\#(principal),"query":"campaign.get","params":{"campaignId":"cmp_1"}}"#))
        #expect(get.data?["status"]?.stringValue == "scheduled")
    }

    @Test func tenThousandHostileRequestsGetCatalogueAnswersAndLeaveTheStoreIntact() async throws {
        let directory = TemporaryDirectory()
        let engine = try CampaignEngine(
            directory: directory.path, configuration: EngineConfiguration(rateLimit: 100_000_000))
        defer { engine.close() }
        await Fuzzer.prepare(engine)
        let report = await Fuzzer.run(engine: engine, cases: 10_000, seed: 7, hugeSize: 20_000)
        #expect(report.cases == 10_000)
        #expect(report.problems.isEmpty, "\(report.problems.prefix(5))")
        #expect(report.refused > 5_000 && report.accepted > 50)
        #expect(Set(report.byMutation.keys).count == Fuzzer.Mutation.allCases.count)
        #expect(report.slowest < 5, "a case took \(report.slowest) s")
        #expect(try engine.eventStore.verifyChain().isIntact)
        for projection in engine.projections.projections {
            #expect(try engine.projections.verify(projection.name).matches, "\(projection.name)")
        }
    }

    @Test func hardLimitsAreClearErrors() async throws {
        let t = try TestEngine()
        let deep = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        let nested = await t.send(
            #"{"requestId":"n","principal":\#(admin()),"command":"campaign.create","payload":\#(deep)}"#)
        #expect(
            nested.code == "INVALID_FORMAT"
                && nested["error"]?["message"]?.stringValue?.contains("nesting deeper than 32") == true)
        _ = await t.command(
            "social.connect",
            #"{"connectionId":"con_1","platform":"x","accountId":"a","credentialRef":"vault://a","#
                + #""expiresAt":"2099-01-01T00:00:00Z"}"#
        )
        let many = Array(repeating: #""con_1""#, count: 11).joined(separator: ",")
        let tooMany = await t.command("post.create", #"{"connectionIds":[\#(many)],"text":"x"}"#)
        #expect(
            tooMany.code == "VALIDATION_ERROR" && tooMany["error"]?["pointer"]?.stringValue == "/payload/connectionIds")
        let longName = String(repeating: "n", count: 100_000)
        #expect(
            await t.command("campaign.create", #"{"name":"\#(longName)","channel":"sms"}"#).code == "VALIDATION_ERROR")
        let response = await t.engine.handle(Array(repeating: UInt8(ascii: " "), count: 65 << 20))
        #expect(response.error?.code == .invalidFormat && response.error?.message.contains("larger than") == true)
    }
}

/// The engine on a filesystem that fills up: a size-limited tmpfs mounted by the test (root only).
@Suite(.serialized) struct FullDiskTests {
    static func mount(_ path: String, size: String, remount: Bool = false) -> Bool {
        let arguments =
            remount ? ["-o", "remount,size=\(size)", path] : ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", path]
        let child = try? ChildProcess("/bin/mount", arguments, error: .null)
        return child?.waitUntilExit() == .exited(0)
    }

    static func unmount(_ path: String) {
        // Lazily: a test that failed part-way may still have the store open (mapped), and the mount
        // must not outlive the test either way.
        (try? ChildProcess("/bin/umount", ["-l", path]))?.waitUntilExit()
    }

    static let canMount: Bool = {
        guard getuid() == 0 else { return false }
        let probe = FileManager.default.temporaryDirectory.appendingPathComponent("tmpfs-probe-\(UUID().uuidString)")
            .path
        try? FileManager.default.createDirectory(atPath: probe, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: probe) }
        guard mount(probe, size: "1m") else { return false }
        unmount(probe)
        return true
    }()

    @Test(.enabled(if: canMount, "needs root and tmpfs mounts (run as root to test a full disk)"))
    func aFullDiskIsServiceUnavailableLosesNothingAndRecoversWhenSpaceIsFreed() async throws {
        let directory = TemporaryDirectory()
        let mountPoint = directory.path + "/small"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        try #require(Self.mount(mountPoint, size: "2m"))
        defer { Self.unmount(mountPoint) }
        var configuration = EngineConfiguration(rateLimit: 100_000_000)
        configuration.storeOptions = StoreOptions(initialMapSize: 256 << 10)
        let engine = try CampaignEngine(directory: mountPoint + "/store", configuration: configuration)
        let admin = Principal(
            tenant: "acme", subject: "u", role: .admin, scopes: Principal.allScopes, expiresAt: .distantFuture)
        var acknowledged = [String]()
        var full: EngineResponse?
        for n in 0..<10_000 {
            let response = await engine.execute(
                .command(
                    .campaign(
                        .create(
                            campaignId: "cmp_\(n)", name: "Campaign \(n)", channel: "email", segmentId: nil,
                            content: Content(subject: "S", body: String(repeating: "x", count: 2_000)), sendAt: nil)),
                    as: admin, requestId: "req-\(n)"))
            if response.status == 201 {
                acknowledged.append("req-\(n)")
            } else {
                full = response
                break
            }
        }
        let refusal = try #require(full, "2 MiB should fill up")
        #expect(refusal.error?.code == .serviceUnavailable && refusal.status == 503 && refusal.error?.retryable == true)
        #expect(acknowledged.count > 10)
        // Nothing acknowledged is missing, nothing half-written: the chain and projections check out.
        var seen = Set<String>()
        try engine.eventStore.forEachEvent {
            seen.insert($0.requestId)
            return true
        }
        #expect(Set(acknowledged).isSubset(of: seen))
        #expect(try engine.eventStore.head().position == UInt64(acknowledged.count))
        #expect(try engine.eventStore.verifyChain().isIntact)
        // Free space: writes succeed again, in the same open engine.
        try #require(Self.mount(mountPoint, size: "64m", remount: true))
        let again = await engine.execute(
            .command(
                .campaign(
                    .create(
                        campaignId: "cmp_after", name: "After", channel: "sms", segmentId: nil, content: nil,
                        sendAt: nil)),
                as: admin, requestId: "after"))
        #expect(again.status == 201, "\(again.line)")
        for projection in engine.projections.projections {
            #expect(try engine.projections.verify(projection.name).matches, "\(projection.name)")
        }
        engine.close()
        let reopened = try EventStore(path: mountPoint + "/store")
        #expect(try reopened.verifyChain().isIntact && reopened.head().position == UInt64(acknowledged.count + 1))
        reopened.close()
    }
}

@Suite struct SecretTests {
    func fileContains(_ directory: String, _ needle: String) throws -> Bool {
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/data.mdb"))
        return data.range(of: Data(needle.utf8)) != nil
    }

    @Test func aSecretInAnyUnknownFieldIsRefusedAndNeverWritten() async throws {
        let t = try TestEngine()
        _ = await t.command("campaign.create", #"{"campaignId":"cmp_1","name":"Base","channel":"sms"}"#)
        let secret = "sk_live_7Hq2ZpX9SECRET"
        let smuggled = [
            #"{"requestId":"s1","accessToken":"\#(secret)","principal":\#(admin()),"#
                + #""command":"campaign.pause","payload":{"campaignId":"cmp_1"}}"#,
            #"{"requestId":"s2","principal":{"tenant":"acme","subject":"u","role":"admin","#
                + #""scopes":["campaigns:write"],"expiresAt":"2099-01-01T00:00:00Z","token":"\#(secret)"},"#
                + #""command":"campaign.pause","payload":{"campaignId":"cmp_1"}}"#,
            #"{"requestId":"s3","principal":\#(admin()),"command":"campaign.update","#
                + #""payload":{"campaignId":"cmp_1","token":"\#(secret)"}}"#,
            #"{"requestId":"s4","principal":\#(admin()),"command":"campaign.update","#
                + #""payload":{"campaignId":"cmp_1","content":{"body":"x","apiKey":"\#(secret)"}}}"#,
            #"{"requestId":"s5","principal":\#(admin()),"command":"social.connect","#
                + #""payload":{"platform":"x","accountId":"a","credentialRef":"vault://x","#
                + #""expiresAt":"2099-01-01T00:00:00Z","accessToken":"\#(secret)"}}"#,
            #"{"requestId":"s6","principal":\#(admin()),"command":"post.create","#
                + #""payload":{"connectionIds":["con_1"],"text":"x","media":[{"kind":"image","#
                + #""url":"https://a.example/x.jpg","token":"\#(secret)"}]}}"#,
            #"{"requestId":"s7","principal":\#(admin()),"command":"contact.import","#
                + #""payload":{"contacts":[{"contactId":"ctc_1","attributes":{},"password":"\#(secret)"}]}}"#,
        ]
        for line in smuggled {
            let response = await t.send(line)
            // An import reports the item with the unknown member at its index and writes nothing of it.
            let item = response.data?["results"]?.arrayValue?.first?["error"]?["code"]?.stringValue
            #expect((response.code ?? item) == "INVALID_FIELD", "\(response)")
        }
        // A token where a reference belongs is refused by validation, also never stored.
        let asReference = await t.command(
            "social.connect",
            #"{"platform":"x","accountId":"a","credentialRef":"\#(secret)","expiresAt":"2099-01-01T00:00:00Z"}"#)
        #expect(asReference.code == "VALIDATION_ERROR")
        t.engine.close()
        #expect(try !fileContains(t.directory.path, secret))
        #expect(try !fileContains(t.directory.path, "SECRET"))
        #expect(try fileContains(t.directory.path, "Base"), "the scan must be able to find what is stored")
    }

    @Test func anErasedContactsValuesAreGoneFromACompactedCopy() async throws {
        let t = try TestEngine()
        let email = "zoe.unique-4c1d@example.org"
        _ = await t.command(
            "contact.upsert", #"{"contactId":"ctc_1","attributes":{"email":"\#(email)","first_name":"Zoëtrope"}}"#)
        _ = await t.command("contact.upsert", #"{"contactId":"ctc_2","attributes":{"email":"keep.me-99@example.org"}}"#)
        #expect(await t.command("contact.erase", #"{"contactId":"ctc_1"}"#).status == 201)
        let copy = TemporaryDirectory()
        try t.engine.eventStore.copyCompacted(to: copy.path + "/copy")
        #expect(try !fileContains(copy.path + "/copy", email))
        #expect(try !fileContains(copy.path + "/copy", "Zoëtrope"))
        #expect(try fileContains(copy.path + "/copy", "keep.me-99@example.org"))
        let copied = try EventStore(path: copy.path + "/copy")
        #expect(try copied.verifyChain().isIntact && copied.head().position == 3)
        copied.close()
    }

    @Test func aCompactedCopyNeverReplacesAStoreAlreadyThere() async throws {
        let t = try TestEngine()
        _ = await t.command("contact.upsert", #"{"contactId":"ctc_1","attributes":{"email":"a@example.org"}}"#)
        let copy = TemporaryDirectory()
        let existing = URL(fileURLWithPath: copy.path + "/data.mdb")
        try Data("not to be replaced".utf8).write(to: existing)
        #expect(throws: EventStoreError.self) { try t.engine.eventStore.copyCompacted(to: copy.path) }
        #expect(try String(contentsOf: existing, encoding: .utf8) == "not to be replaced")
        #expect(try FileManager.default.contentsOfDirectory(atPath: copy.path) == ["data.mdb"])
    }
}
