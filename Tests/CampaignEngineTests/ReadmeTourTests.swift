import CampaignDomain
import CampaignEngine
import EventStore
import Foundation
import Signing
import TestSupport
import Testing

/// README's "Five-minute tour of the library", step by step as it is written there, so that a host
/// team copying it gets code that compiles and does what its comments say. Where the tour elides
/// (`principal:{…}`, a key file under `/etc`), the test fills in a real value; it adds creates only
/// so that the log holds the seventeen events the inclusion proof names.
@Suite struct ReadmeTourTests {
    @Test func theTourRunsAsWritten() async throws {
        let directory = TemporaryDirectory()
        let engine = try CampaignEngine(
            directory: directory.path + "/campaign-data",
            configuration: EngineConfiguration(rateLimit: 1_000, rateLimitWindow: 60))
        defer { engine.close() }
        #expect {
            _ = try CampaignEngine(
                directory: directory.path + "/unusable", configuration: EngineConfiguration(rateLimit: 0))
        } throws: { ($0 as? CampaignError)?.code == .validationError }
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/unusable"))

        let editor = Principal(
            tenant: "acme", subject: "u_1", role: .editor,
            scopes: ["campaigns:write", "campaigns:read", "segments:write"],
            expiresAt: Date().addingTimeInterval(3600))

        let created = await engine.execute(
            .command(
                .campaign(
                    .create(
                        campaignId: "cmp_1", name: "Spring launch", channel: "email",
                        content: Content(subject: "Hi", body: "Spring is here"))),
                as: editor, requestId: "req_1", idempotencyKey: "k_1", expectedVersion: 0))
        #expect(created.status == 201)
        #expect(created.data?["version"] == .number(1))
        #expect(try JSON.parse(created.bytes)["status"] == .number(201))
        #expect(created.line == String(decoding: created.bytes, as: UTF8.self))

        // The wire form of the same engine, with the principal the tour elides written out.
        let principal =
            #"{"tenant":"acme","subject":"u_1","role":"editor","scopes":["campaigns:write","campaigns:read"],"#
            + #""expiresAt":"\#(Timestamp.format(Date().addingTimeInterval(3600)))"}"#
        let line = await engine.handle(
            line: #"{"requestId":"req_2","principal":\#(principal),"command":"campaign.schedule","#
                + #""payload":{"campaignId":"cmp_1","sendAt":"2026-12-01T09:00:00Z"}}"#)
        // The campaign has no segment, so the schedule is refused, as a response, not a throw.
        #expect(try JSON.parse(line)["error"]?["code"] == .string("SEGMENT_REQUIRED"))

        let refused = await engine.execute(
            .command(.campaign(.transition(.pause, campaignId: "cmp_1")), as: editor, requestId: "req_3"))
        #expect(refused.error?.code == .resourceConflict)
        #expect(refused.error?.currentState == "draft")
        #expect(refused.error?.allowedStates == ["active"])
        #expect(refused.headers.isEmpty, "rate-limit headers come with a 429 only")

        let report = try await engine.tick()
        #expect(report.activated.isEmpty)

        let metrics = try engine.metrics()
        #expect(metrics.count("campaign.create") == 1)
        #expect(metrics.count("campaign.pause", code: .resourceConflict) == 1)
        #expect(try #require(metrics.store.appendTransactionDurations.quantileBound(0.99)) > 0)
        let exposition = metrics.prometheusText()
        #expect(exposition.contains(#"campaign_requests_total{code="",name="campaign.create",status="201"} 1"#))
        #expect(metrics.scheduler.ticksCompleted == 1)
        let health = engine.health(HealthThresholds(maximumTickInterval: .seconds(300)))
        #expect(health.httpStatus == 200 && health.json == #"{"problems":[],"status":"ok"}"#)

        // The change feed, from the first event; the tour's loop runs forever, this one stops at one.
        let feed = try engine.subscribe(consumer: "analytics")
        for try await event in feed {
            let cloudEvent = CampaignEngine.cloudEvent(event, storeId: try engine.eventStore.storeId())
            #expect(try JSON.parse(cloudEvent.text)["type"] == .string("campaign.created"))
            try await feed.ack(event.position)
            break
        }

        for n in 2...17 {
            let more = await engine.execute(
                .command(
                    .campaign(.create(campaignId: "cmp_\(n)", name: "Campaign \(n)", channel: "sms")),
                    as: editor, requestId: "req_c\(n)"))
            try #require(more.status == 201)
        }

        // The operator's key, in a file the host names (the tour's `/etc/campaign/ops.key`).
        let keyFile = directory.path + "/ops.key"
        try #require(try NoteKey.generate(name: "ops").signerKey).write(
            toFile: keyFile, atomically: false, encoding: .utf8)
        let key = try NoteKey(text: String(contentsOfFile: keyFile, encoding: .utf8))
        let note = try await Audit.checkpoint(engine.eventStore, key: key)
        let signed = try TreeCheckpoint(text: note.text)
        #expect(signed.size == 17)
        let proof = try engine.eventStore.inclusionProof(position: 17, size: signed.size)
        #expect(!proof.isEmpty)
        switch try engine.eventStore.compare(withCheckpointOfSize: signed.size, root: signed.rootHash) {
        case .consistent: break
        case let outcome: Issue.record("the log does not extend its own checkpoint: \(outcome)")
        }

        // The two schedules the tour names in comments.
        _ = CheckpointSchedule(key: key, events: 10_000, interval: 60)
        _ = CatchUpSchedule(quiet: .milliseconds(50), maximumLag: 10_000, atClose: .seconds(1))
    }
}
