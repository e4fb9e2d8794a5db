import CampaignDomain
import CampaignEngine
import CampaignSnapshots
import EventStore
import Foundation
import TestSupport
import Testing

@Suite struct SnapshotTests {
    /// cmp_1 created through the engine, then `updates` raw `campaign.updated` events appended
    /// straight to the store in large batches (as a long history would be).
    func longCampaign(_ t: TestEngine, updates: Int) async throws {
        try #require(
            await t.command("campaign.create", #"{"campaignId":"cmp_1","name":"Long","channel":"email"}"#).status == 201
        )
        var version: UInt64 = 1
        var remaining = updates
        while remaining > 0 {
            let batch = min(1_000, remaining)
            let events = (0..<batch).map { n in
                NewEvent(
                    type: "campaign.updated", occurredAt: testStart, tenant: "acme", actor: "bulk", requestId: "bulk",
                    causationId: "bulk",
                    payload: JSON.object([
                        "campaignId": .string("cmp_1"),
                        "content": .object(["body": .string("body \(Int(version) + n + 1)")]),
                    ]).bytes)
            }
            _ = try await t.engine.eventStore.append(
                AppendRequest(streams: [
                    StreamAppend(streamId: "acme:cmp_1", expectedVersion: .exact(version), events: events)
                ]))
            version += UInt64(batch)
            remaining -= batch
        }
    }

    func folded(_ t: TestEngine, during body: () async -> Void) async -> UInt64 {
        let before = t.engine.eventsFoldedByLoads
        await body()
        return t.engine.eventsFoldedByLoads - before
    }

    @Test func aTwentyThousandEventStreamLoadsFromASnapshotAndAShortTail() async throws {
        var configuration = EngineConfiguration()
        configuration.snapshotPolicy = SnapshotPolicy(defaultEvery: 100)
        configuration.aggregateCacheCapacity = 0  // measure the snapshot path itself
        let t = try TestEngine(configuration: configuration)
        try await longCampaign(t, updates: 19_999)
        #expect(try t.engine.eventStore.streamVersion("acme:cmp_1") == 20_000)

        // The first load has no snapshot yet: it folds everything and leaves one behind.
        let first = await folded(t) { _ = await t.query("campaign.get", #"{"campaignId":"cmp_1"}"#) }
        #expect(first == 20_000)
        try await t.engine.eventStore.perform { _ in }  // the writer has stored the snapshot the load queued
        // From then on: snapshot + tail, at most N events, including for commands.
        var answer = JSON.null
        let second = await folded(t) { answer = await t.query("campaign.get", #"{"campaignId":"cmp_1"}"#) }
        #expect(second <= 100)
        for n in 0..<150 {
            let update = await folded(t) {
                _ = await t.command(
                    "campaign.update", #"{"campaignId":"cmp_1","content":{"subject":"S","body":"live \#(n)"}}"#)
            }
            #expect(update <= 100, "update \(n) folded \(update) events")
        }
        let later = await folded(t) { answer = await t.query("campaign.get", #"{"campaignId":"cmp_1"}"#) }
        #expect(later <= 100)
        // The result equals a full fold of the log.
        let full = try t.engine.state(tenant: "acme", id: "cmp_1", asOf: .position(.max))
        #expect(answer.data == full)
        #expect(
            answer.data?["content"]?["body"]?.stringValue == "live 149"
                && answer.data?["version"]?.integerValue == 20_150)
    }

    @Test func aTenantsLongSchemaHistoryLoadsFromASnapshot() async throws {
        var configuration = EngineConfiguration()
        configuration.snapshotPolicy = SnapshotPolicy(defaultEvery: 100)
        configuration.aggregateCacheCapacity = 0  // measure the snapshot path itself
        let t = try TestEngine(configuration: configuration)
        // Three enum fields grown a value at a time: 183 events in the tenant's schema stream.
        for field in 0..<3 {
            let defined = await t.command("field.define", #"{"name":"f\#(field)","type":"enum","values":["v0"]}"#)
            try #require(defined.status == 201)
        }
        for count in 1...60 {
            for field in 0..<3 {
                let values = (0...count).map { "\"v\($0)\"" }.joined(separator: ",")
                let updated = await t.command("field.update", #"{"name":"f\#(field)","values":[\#(values)]}"#)
                try #require(updated.status == 201)
            }
        }
        #expect(try t.engine.eventStore.streamVersion("acme:schema") == 183)
        // The 100th command stored the schema as it stood; a load reads it and the 83 events after.
        let snapshot = try #require(try t.engine.snapshots.load("acme:schema", codec: SnapshotCodecs.schema))
        #expect(snapshot.version == 100)
        var answer = JSON.null
        let folded = await folded(t) {
            answer = await t.command("contact.upsert", #"{"contactId":"ctc_1","attributes":{"f2":"v60"}}"#)
        }
        #expect(answer.status == 201 && folded == 83)
        // The snapshot reads back as the schema a full fold of the stream gives.
        var full = ContactSchema()
        try t.engine.eventStore.forEachEvent(inStream: "acme:schema") { event in
            guard event.streamVersion <= 100 else { return false }
            let payload = (try? JSON.parse(event.payload)) ?? .null
            let record = EventRecord(
                type: event.type, payload: payload, occurredAt: event.occurredAt, version: event.streamVersion)
            full = TenantSchema.evolve(full, record)
            return true
        }
        #expect(snapshot.state == full)
        // Version 100 is f0's 33rd update: v0 to v33, the others one value behind.
        #expect(full.fields["f0"] == .enumeration((0...33).map { "v\($0)" }))
        #expect(full.fields["f1"] == .enumeration((0...32).map { "v\($0)" }))
    }

    @Test func aCommittedCommandLeavesItsStateCachedSoTheNextFoldsNothing() async throws {
        let t = try TestEngine()
        try #require(
            await t.command("campaign.create", #"{"campaignId":"cmp_1","name":"Warm","channel":"email"}"#).status == 201
        )
        let updates = await folded(t) {
            for n in 0..<20 {
                _ = await t.command(
                    "campaign.update", #"{"campaignId":"cmp_1","content":{"subject":"S","body":"warm \#(n)"}}"#)
            }
        }
        #expect(updates == 0)
        // An append the engine did not make (another process) is still folded before deciding.
        _ = try await t.engine.eventStore.append(
            AppendRequest(streams: [
                StreamAppend(
                    streamId: "acme:cmp_1", expectedVersion: .exact(21),
                    events: [
                        NewEvent(
                            type: "campaign.updated", occurredAt: testStart, tenant: "acme", actor: "other",
                            requestId: "other", causationId: "other",
                            payload: JSON.object([
                                "campaignId": .string("cmp_1"), "name": .string("Renamed elsewhere"),
                            ]).bytes)
                    ])
            ]))
        var answer = JSON.null
        let afterForeign = await folded(t) {
            answer = await t.command(
                "campaign.update", #"{"campaignId":"cmp_1","content":{"subject":"S","body":"last"}}"#)
        }
        #expect(afterForeign == 1)
        #expect(answer.data?["campaign"]?["name"]?.stringValue == "Renamed elsewhere")
        #expect(answer.data?["version"]?.integerValue == 23)
        // The cached state is the state a full fold of the log gives.
        let cached = await t.query("campaign.get", #"{"campaignId":"cmp_1"}"#)
        #expect(cached.data == (try t.engine.state(tenant: "acme", id: "cmp_1", asOf: .position(.max))))
    }

    @Test func aCorruptOrOutdatedSnapshotIsIgnoredAndReplaced() async throws {
        var configuration = EngineConfiguration()
        configuration.snapshotPolicy = SnapshotPolicy(defaultEvery: 50)
        configuration.aggregateCacheCapacity = 0  // the snapshot must be consulted on every load
        let t = try TestEngine(configuration: configuration)
        try await longCampaign(t, updates: 499)
        _ = await t.query("campaign.get", #"{"campaignId":"cmp_1"}"#)
        let table = try t.engine.eventStore.table(named: "snapshots")
        let expected = try t.engine.state(tenant: "acme", id: "cmp_1", asOf: .position(.max))
        for damage in [
            Array("{not json".utf8),
            JSON.object([
                "kind": .string("campaign"), "schemaVersion": .number(0), "version": .number(500),
                "state": .object([:]),
            ]).bytes,
            JSON.object([
                "kind": .string("campaign"), "schemaVersion": .number(1), "version": .number(500),
                "state": .string("?"),
            ]).bytes,
        ] {
            try t.engine.eventStore.write { try $0.put(damage, forKey: Array("acme:cmp_1".utf8), in: table) }
            var answer = JSON.null
            let ignored = await folded(t) { answer = await t.query("campaign.get", #"{"campaignId":"cmp_1"}"#) }
            #expect(ignored == 500, "a damaged snapshot must be ignored, not trusted")
            #expect(answer.data == expected)
            try await t.engine.eventStore.perform { _ in }  // the replacement the load queued is stored
            let replaced = await folded(t) { answer = await t.query("campaign.get", #"{"campaignId":"cmp_1"}"#) }
            #expect(replaced == 0 && answer.data == expected)
        }
    }

    @Test func policiesArePerKind() {
        let policy = SnapshotPolicy(defaultEvery: 100, every: ["experiment": 1_000])
        #expect(policy.isDue(kind: "campaign", from: 99, to: 100))
        #expect(!policy.isDue(kind: "campaign", from: 100, to: 199))
        #expect(policy.isDue(kind: "campaign", from: 150, to: 210))
        #expect(!policy.isDue(kind: "experiment", from: 100, to: 999))
        #expect(policy.isDue(kind: "experiment", from: 999, to: 1_000))
    }

    @Test func experimentStreamsGetSnapshotsFromTheirExposures() async throws {
        var configuration = EngineConfiguration()
        configuration.snapshotPolicy = SnapshotPolicy(defaultEvery: 20)
        configuration.aggregateCacheCapacity = 0
        let t = try TestEngine(configuration: configuration)
        _ = await t.command("campaign.create", #"{"campaignId":"cmp_1","name":"Spring","channel":"email"}"#)
        _ = await t.command(
            "experiment.create",
            #"{"experimentId":"exp_1","campaignId":"cmp_1","name":"E","variants":[{"key":"a","weight":50},"#
                + #"{"key":"b","weight":50}]}"#
        )
        _ = await t.command("experiment.start", #"{"experimentId":"exp_1"}"#)
        for n in 0..<45 {
            _ = await t.command("experiment.recordExposure", #"{"experimentId":"exp_1","contactId":"ctc_\#(n)"}"#)
        }
        let stop = await folded(t) { _ = await t.command("experiment.stop", #"{"experimentId":"exp_1"}"#) }
        #expect(stop <= 20)
        #expect(await t.query("experiment.get", #"{"experimentId":"exp_1"}"#).data?["status"]?.stringValue == "stopped")
    }
}

@Suite struct PointInTimeTests {
    @Test func aggregatesAsOfAPositionOrATimeMatchHandComputedStates() async throws {
        let t = try TestEngine()
        _ = await t.command(
            "segment.create",
            #"{"segmentId":"seg_1","name":"All","rules":{"all":[{"field":"email","operator":"exists"}]}}"#)  // 1
        // 2 at 10:00
        _ = await t.command(
            "campaign.create",
            #"{"campaignId":"cmp_1","name":"Spring","channel":"email","segmentId":"seg_1","#
                + #""content":{"subject":"Hi","body":"Hello"}}"#
        )
        t.clock.set(Timestamp.parse("2026-11-21T11:00:00Z")!)
        // 3 at 11:00
        _ = await t.command("campaign.schedule", #"{"campaignId":"cmp_1","sendAt":"2026-11-22T09:00:00Z"}"#)
        t.clock.set(Timestamp.parse("2026-11-21T12:00:00Z")!)
        _ = await t.command("campaign.update", #"{"campaignId":"cmp_1","name":"Spring sale"}"#)  // 4 at 12:00
        _ = try await t.engine.tick(now: Timestamp.parse("2026-11-22T09:00:00Z")!)  // 5 at 09:00 next day

        #expect(try t.engine.state(tenant: "acme", id: "cmp_1", asOf: .position(1)) == nil)
        let created = try #require(try t.engine.state(tenant: "acme", id: "cmp_1", asOf: .position(2)))
        #expect(
            created["status"]?.stringValue == "draft" && created["name"]?.stringValue == "Spring"
                && created["version"]?.integerValue == 1)
        #expect(created["sendAt"] == nil)
        let scheduled = try #require(
            try t.engine.state(tenant: "acme", id: "cmp_1", asOf: .time(Timestamp.parse("2026-11-21T11:30:00Z")!)))
        #expect(
            scheduled["status"]?.stringValue == "scheduled"
                && scheduled["sendAt"]?.stringValue == "2026-11-22T09:00:00Z")
        #expect(
            scheduled["name"]?.stringValue == "Spring" && scheduled["updatedAt"]?.stringValue == "2026-11-21T11:00:00Z")
        let renamed = try #require(try t.engine.state(tenant: "acme", id: "cmp_1", asOf: .position(4)))
        #expect(renamed["name"]?.stringValue == "Spring sale" && renamed["status"]?.stringValue == "scheduled")
        let now = try #require(try t.engine.state(tenant: "acme", id: "cmp_1", asOf: .time(.distantFuture)))
        #expect(now["status"]?.stringValue == "active" && now["version"]?.integerValue == 4)
        #expect(try t.engine.state(tenant: "globex", id: "cmp_1", asOf: .time(.distantFuture)) == nil)
    }

    /// A tenant's contact fields as of a position: an auditor sees which values an enum had then.
    @Test func theTenantsFieldsAsOfAPositionShowTheValuesTheyHadThen() async throws {
        let t = try TestEngine()
        let tier = #"{"name":"tier","type":"enum","values":["gold","silver"]}"#
        #expect(await t.command("field.define", tier).status == 201)  // 1
        #expect(await t.command("field.define", #"{"name":"score","type":"number"}"#).status == 201)  // 2
        let update = #"{"name":"tier","values":["gold","silver","platinum"]}"#
        #expect(await t.command("field.update", update).status == 201)  // 3
        func fields(_ position: UInt64) throws -> JSON? {
            try t.engine.state(tenant: "acme", id: "schema", asOf: .position(position))?["fields"]
        }
        #expect(try t.engine.state(tenant: "acme", id: "schema", asOf: .position(0)) == nil)
        #expect(try fields(1) == (try JSON.parse("[\(tier)]")))
        let score = #"{"name":"score","type":"number"}"#
        #expect(try fields(2) == (try JSON.parse("[\(score),\(tier)]")))
        #expect(
            try fields(3)
                == (try JSON.parse(#"[\#(score),{"name":"tier","type":"enum","values":["gold","silver","platinum"]}]"#))
        )
        #expect(try t.engine.state(tenant: "globex", id: "schema", asOf: .position(3)) == nil)
        #expect(throws: CampaignError.self) { try t.engine.state(tenant: "acme", id: "schemas", asOf: .position(3)) }
    }
}

@Suite struct UpcasterTests {
    @Test func aVersionOneScheduledEventIsReadInTheCurrentShape() {
        let v1 = JSON.object(["campaignId": .string("cmp_1"), "sendAt": .number(1_796_083_200)])
        #expect(
            Upcasters.upcast(type: "campaign.scheduled", schemaVersion: 1, payload: v1)["sendAt"]?.stringValue
                == "2026-12-01T00:00:00Z")
        let v2 = JSON.object(["campaignId": .string("cmp_1"), "sendAt": .string("2026-12-01T00:00:00Z")])
        #expect(Upcasters.upcast(type: "campaign.scheduled", schemaVersion: 2, payload: v2) == v2)
        #expect(Upcasters.currentVersion(of: "campaign.scheduled") == 2)
        #expect(Upcasters.currentVersion(of: "campaign.created") == 1)
    }

    @Test func storedVersionOneEventsLoadAndProjectCorrectly() async throws {
        let t = try TestEngine()
        _ = await t.command(
            "segment.create",
            #"{"segmentId":"seg_1","name":"All","rules":{"all":[{"field":"email","operator":"exists"}]}}"#)
        _ = await t.command(
            "campaign.create",
            #"{"campaignId":"cmp_1","name":"Old","channel":"email","segmentId":"seg_1","#
                + #""content":{"subject":"Hi","body":"Hello"}}"#
        )
        // An event written by an older release: schema version 1, sendAt in Unix seconds.
        let old = NewEvent(
            type: "campaign.scheduled", schemaVersion: 1, occurredAt: testStart, tenant: "acme", actor: "old-release",
            requestId: "old", causationId: "old", payload: Array(#"{"campaignId":"cmp_1","sendAt":1796083200}"#.utf8))
        _ = try await t.engine.eventStore.append(
            AppendRequest(streams: [StreamAppend(streamId: "acme:cmp_1", expectedVersion: .exact(1), events: [old])]))
        let state = await t.query("campaign.get", #"{"campaignId":"cmp_1"}"#).data
        #expect(state?["status"]?.stringValue == "scheduled" && state?["sendAt"]?.stringValue == "2026-12-01T00:00:00Z")
        // The next command's inline projections catch the raw event up, upcast, and the scheduler fires.
        _ = await t.command(
            "campaign.create",
            #"{"campaignId":"cmp_2","name":"New","channel":"email","content":{"subject":"Hi","body":"Hello"}}"#)
        let report = try await t.engine.tick(now: Timestamp.parse("2026-12-01T00:00:00Z")!)
        #expect(report.activated.map(\.id) == ["cmp_1"])
        let current = try t.engine.eventStore.readStream("acme:cmp_2").first
        #expect(current?.schemaVersion == 1)
        _ = await t.command("campaign.attachSegment", #"{"campaignId":"cmp_2","segmentId":"seg_1"}"#)
        _ = await t.command("campaign.schedule", #"{"campaignId":"cmp_2","sendAt":"2026-12-02T00:00:00Z"}"#)
        #expect(try t.engine.eventStore.readStream("acme:cmp_2").last?.schemaVersion == 2)
    }
}
