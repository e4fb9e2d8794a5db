import CampaignCLI
import CampaignDomain
import CampaignEngine
import EventStore
import Foundation
import TestSupport
import Testing

@testable import CampaignProjections

/// Issue 13: `segments` rebuilds by folding the log in memory and evaluating each contact once per
/// segment, and `audit` by ordering its keys from a few numbers per event. Their rows must be
/// exactly those of the event-by-event fold the live table gets from catch-up.
@Suite struct FoldedRebuildTests {
    let rules = [
        #"{"all":[{"field":"last_seen_at","operator":"within_last_days","value":5}]}"#,
        #"{"all":[{"field":"last_seen_at","operator":"not_within_last_days","value":3}]}"#,
        #"{"any":[{"field":"age","operator":"gte","value":50},{"field":"country","operator":"in","value":["FR"]}]}"#,
        #"{"all":[{"field":"subscribed","operator":"eq","value":true},"#
            + #"{"field":"signed_up_at","operator":"within_last_days","value":10}]}"#,
    ]
    let tierRule = #"{"all":[{"field":"tier","operator":"in","value":["gold","silver"]}]}"#

    /// Random contact attributes, with dates around `now`.
    func attributes(_ random: inout SeededRandom, now: Date) -> String {
        func date() -> String {
            Timestamp.format(now + Double(Int(random.next() % 480) - 360) * 3_600)
        }
        var parts = [#""last_seen_at":"\#(date())""#, #""age":\#(18 + random.next() % 60)"#]
        if random.next() % 2 == 0 { parts.append(#""signed_up_at":"\#(date())""#) }
        if random.next() % 2 == 0 { parts.append(#""country":"\#(["FR", "DE", "US"][Int(random.next() % 3)])""#) }
        parts.append(#""subscribed":\#(random.next() % 3 != 0)"#)
        return "{" + parts.joined(separator: ",") + "}"
    }

    @Test(arguments: [1, 2, 3])
    func theFoldedRebuildEqualsTheEventByEventFold(seed: UInt64) async throws {
        let t = try TestEngine()
        var random = SeededRandom(seed: seed)
        let tenants = ["acme", "globex"]
        var ticks = 0
        var accepted = 0
        for step in 0..<500 {
            if step % 25 == 24 {
                // Checked along the way too: a difference may be hidden again by later triggers.
                let report = try t.engine.projections.verify("segments")
                #expect(report.matches, "step \(step): \(report.differenceCount) differences")
            }
            let who = principal(tenant: tenants[Int(random.next() % 2)], expiresAt: "2030-01-01T00:00:00Z")
            switch random.next() % 20 {
            case 0...9:
                let contact = "ctc_\(random.next() % 40)"
                accepted +=
                    await t.command(
                        "contact.upsert",
                        #"{"contactId":"\#(contact)","attributes":\#(attributes(&random, now: t.clock.now()))}"#,
                        as: who
                    ).status.map { (200...201).contains($0) ? 1 : 0 } ?? 0
            case 10:
                _ = await t.command("contact.erase", #"{"contactId":"ctc_\#(random.next() % 40)"}"#, as: who)
            case 11...13:
                let segment = "seg_\(random.next() % 5)"
                let rule = rules[Int(random.next() % UInt64(rules.count))]
                let update = await t.command(
                    "segment.update", #"{"segmentId":"\#(segment)","rules":\#(rule)}"#, as: who)
                accepted += update.status == 200 ? 1 : 0
                if update.status == 404 {
                    _ = await t.command(
                        "segment.create", #"{"segmentId":"\#(segment)","name":"\#(segment)","rules":\#(rule)}"#,
                        as: who)
                }
            case 14:
                _ = await t.command("segment.archive", #"{"segmentId":"seg_\#(random.next() % 5)"}"#, as: who)
            case 15:
                // A field defined midway: rules on it parse from then on, and it changes how
                // contacts that carry it compare.
                _ = await t.command(
                    "field.define", #"{"name":"tier","type":"enum","values":["bronze","silver","gold"]}"#, as: who)
                _ = await t.command(
                    "segment.create", #"{"segmentId":"seg_tier","name":"Tier","rules":\#(tierRule)}"#, as: who)
                _ = await t.command(
                    "contact.upsert", #"{"contactId":"ctc_\#(step % 40)","attributes":{"tier":"gold"}}"#, as: who)
            default:
                t.clock.advance(by: Double(1 + random.next() % 24) * 3_600)
                if random.next() % 2 == 0 {
                    ticks += try await t.engine.tick(now: t.clock.now()).membershipsRefreshed
                }
            }
        }
        #expect(ticks > 0, "some refreshes found memberships due")
        #expect(accepted > 150, "most upserts and rule changes were accepted")

        // The live table was folded event by event by catch-up; verify folds the log in memory.
        let report = try t.engine.projections.verify("segments")
        #expect(report.matches, "\(report.differenceCount) differences, first: \(report.differences.prefix(3))")
        #expect(report.entries > 50)

        // A rebuild through the fold serves the same answers, and the schedule of refreshes goes on.
        let members = {
            try t.engine.projections.read("segments") { reader in
                var rows = [[UInt8]]()
                try reader.scan([]) { key, value in
                    rows.append(key + [0xFF] + value)
                    return true
                }
                return rows
            }
        }
        let before = try members()
        try t.engine.projections.rebuild("segments")
        #expect(try members() == before)
        t.clock.advance(by: 30 * 86_400)
        _ = try await t.engine.tick(now: t.clock.now())
        #expect(try t.engine.projections.verify("segments").matches)
    }

    /// The fold walks the stored values beside the live contacts: a live contact whose values are
    /// not kept (a store rebuilt from an exported log holds none) is evaluated without any, and
    /// the contacts after it still find theirs.
    @Test func aContactWithoutStoredValuesIsEvaluatedWithNone() async throws {
        let t = try TestEngine()
        for (segment, op) in [("seg_fr", "eq"), ("seg_not_fr", "neq")] {
            let rule = #"{"all":[{"field":"country","operator":"\#(op)","value":"FR"}]}"#
            let created = await t.command(
                "segment.create", #"{"segmentId":"\#(segment)","name":"\#(segment)","rules":\#(rule)}"#)
            #expect(created.status == 201)
        }
        for contact in ["ctc_a", "ctc_b", "ctc_c", "ctc_d"] {
            let upserted = await t.command(
                "contact.upsert", #"{"contactId":"\#(contact)","attributes":{"country":"FR"}}"#)
            #expect(upserted.status == 201)
        }
        // A tenant whose name begins with this one's sorts right after it: the walk stops at its own.
        _ = await t.command(
            "contact.upsert", #"{"contactId":"ctc_b","attributes":{"country":"DE"}}"#, as: admin("acme2"))
        let store = t.engine.eventStore
        let personalData = try store.table(named: PersonalData.tableName)
        for contact in ["ctc_a", "ctc_c"] {
            let deleted = try store.write { txn in
                try txn.delete(key: PersonalData.key(tenant: "acme", contactId: contact), in: personalData)
            }
            #expect(deleted)
        }
        try t.engine.projections.rebuild("segments")
        func members(_ tenant: String, _ segment: String) throws -> [String] {
            try t.engine.projections.read("segments") { reader in
                var found = [String]()
                try reader.scan(Key.prefix(["m", tenant, segment])) { key, _ in
                    found.append(String(decoding: key.split(separator: 0).last!, as: UTF8.self))
                    return true
                }
                return found
            }
        }
        #expect(try members("acme", "seg_fr") == ["ctc_b", "ctc_d"])
        #expect(try members("acme", "seg_not_fr") == ["ctc_a", "ctc_c"])
    }

    /// The rebuild's passes, in the order lanes take them: large folds one a pass, in the order
    /// given; on several lanes each small fold a pass, the heaviest first; on one lane the small
    /// folds share a pass.
    @Test func theRebuildsPassesPutLargeFoldsFirstAndTheHeaviestSmallOnesNext() {
        // The standard six: board, schedule, publishing, experiments (weight 2) small; segments, audit large.
        let six = [false, false, false, false, true, true]
        let weights = CampaignEngine.standardProjections().compactMap { ($0 as? any FoldedRebuild)?.foldWeight }
        #expect(weights == [1, 1, 1, 2, 1, 1])
        #expect(ProjectionRunner.passes(six, weights: weights, count: 1) == [[4], [5], [0, 1, 2, 3]])
        #expect(ProjectionRunner.passes(six, weights: weights, count: 2) == [[4], [5], [3], [0], [1], [2]])
        #expect(ProjectionRunner.passes(six, weights: weights, count: 8) == [[4], [5], [3], [0], [1], [2]])
        #expect(
            ProjectionRunner.passes([false, true, false, false], weights: [1, 1, 3, 2], count: 2) == [
                [1], [2], [3], [0],
            ])
        #expect(ProjectionRunner.passes([false, false], weights: [1, 1], count: 1) == [[0, 1]])
        #expect(ProjectionRunner.passes([true], weights: [1], count: 2) == [[0]])
        #expect(ProjectionRunner.passes([], weights: [], count: 2) == [])
    }

    @Test func aRebuildOnTheWriterFoldsAndThenAppliesWhatWasAppendedMeanwhile() async throws {
        let t = try TestEngine()
        var random = SeededRandom(seed: 11)
        _ = await t.command(
            "segment.create", #"{"segmentId":"seg_fr","name":"FR","rules":\#(rules[2])}"#, as: admin())
        for n in 0..<200 {
            _ = await t.command(
                "contact.upsert",
                #"{"contactId":"ctc_\#(n)","attributes":\#(attributes(&random, now: t.clock.now()))}"#,
                as: admin())
        }
        let rebuild = Task { try await t.engine.projections.rebuildOnWriter(["segments"]) }
        for n in 200..<260 {
            _ = await t.command(
                "contact.upsert", #"{"contactId":"ctc_\#(n)","attributes":{"country":"FR"}}"#, as: admin())
        }
        let progress = try await rebuild.value
        #expect(progress.done >= 201)
        _ = try t.engine.projections.catchUp()
        let count = await t.query("segment.get", #"{"segmentId":"seg_fr"}"#).data?["memberCount"]?.integerValue
        #expect((count ?? 0) >= 60, "the contacts appended during the rebuild are members")
        #expect(try t.engine.projections.verify("segments").matches)
    }

    /// The audit fold orders keys by prefix rank, then time and position; this history has times
    /// that go back and forth (and before 1970, which the key clamps to 0), tenants and actors that
    /// recur across streams, and, with `nul`, parts holding a 0x00 byte, so that one prefix begins
    /// another (`t‖a‖` and `t‖a‖‖`: what follows a prefix then takes part in the order), which only
    /// the store (not the engine) lets through.
    @Test(arguments: [false, true])
    func theAuditFoldEqualsTheEventByEventFold(nul: Bool) async throws {
        let directory = TemporaryDirectory()
        let store = try EventStore(path: directory.path)
        defer { store.close() }
        let runner = try ProjectionRunner(store: store, projections: [AuditIndex()])
        try runner.prepare()
        var random = SeededRandom(seed: nul ? 7 : 5)
        let tenants = nul ? ["a", "a\u{0}", "b"] : ["acme", "a", "ab"]
        let actors = nul ? ["u1", "u1\u{0}", "system"] : ["u1", "u2", "system"]
        for n in 0..<600 {
            let seconds = n % 97 == 0 ? -86_400 * 20_000 : Double(Int(random.next() % 7_200) - 3_600)
            let event = NewEvent(
                type: "x.happened", occurredAt: testStart + Double(seconds), tenant: tenants[Int(random.next() % 3)],
                actor: actors[Int(random.next() % 3)], requestId: "r", causationId: "c", payload: Array("{}".utf8))
            let stream = "stream_\(random.next() % 40)"
            _ = try await store.append(
                AppendRequest(streams: [StreamAppend(streamId: stream, expectedVersion: .any, events: [event])]))
        }
        _ = try runner.catchUp()
        let report = try runner.verify("audit")
        #expect(report.matches, "\(report.differenceCount) differences, first: \(report.differences.prefix(3))")
        #expect(report.entries == 1_200)

        let rows = {
            try runner.read("audit") { reader in
                var keys = [[UInt8]]()
                try reader.scan([]) { key, _ in
                    keys.append(key)
                    return true
                }
                return keys
            }
        }
        let live = try rows()
        try runner.rebuild("audit")
        #expect(try rows() == live)
    }
    /// An inline model as a catch-up projection, so events appended straight to the store are
    /// folded one by one into its live table (an inline one follows only the engine's appends).
    struct CatchUp<Model: FoldedRebuild>: FoldedRebuild {
        let model: Model
        var name: String { model.name }
        var version: Int { model.version }
        var mode: ProjectionMode { .catchUp }
        var eventTypes: Set<String>? { model.eventTypes }
        func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws { try model.apply(event, to: table) }
        func makeFold() -> any RebuildFold { model.makeFold() }
    }

    /// Exposures and conversions of several experiments across tenants whose ids order differently
    /// as parts and as keys (`a`, `ab`, `acme`), contacts exposed again and converted, and, with
    /// `nul`, parts holding a 0x00 byte, which only the store (not the engine) lets through.
    @Test(arguments: [false, true])
    func theExperimentResultsFoldEqualsTheEventByEventFold(nul: Bool) async throws {
        let directory = TemporaryDirectory()
        let store = try EventStore(path: directory.path)
        defer { store.close() }
        let runner = try ProjectionRunner(store: store, projections: [CatchUp(model: ExperimentResultsProjection())])
        try runner.prepare()
        var random = SeededRandom(seed: nul ? 11 : 3)
        let tenants = nul ? ["a", "a\u{0}", "b"] : ["acme", "a", "ab"]
        let experiments = nul ? ["exp_1", "exp_1\u{0}", "exp_2"] : ["exp_1", "exp_10", "exp_2"]
        for n in 0..<600 {
            let kind = random.next() % 4 == 0 ? "experiment.converted" : "experiment.exposed"
            let payload = JSON.object([
                "experimentId": .string(experiments[Int(random.next() % 3)]),
                "contactId": .string("ctc_\(random.next() % 50)"), "variant": .string(n % 2 == 0 ? "control" : "b"),
            ])
            try await Self.appendRaw(
                store, kind, tenant: tenants[Int(random.next() % 3)], stream: "s\(n % 7)", payload: payload.bytes)
        }
        try Self.expectFoldMatches(runner, "experiment-results", entries: 200)
    }

    /// Appends one event straight to the store, as a tool or an older engine might.
    static func appendRaw(
        _ store: EventStore, _ type: String, tenant: String = "acme", stream: String, payload: [UInt8],
        at time: Date = testStart, schemaVersion: UInt16 = 1
    ) async throws {
        let event = NewEvent(
            type: type, schemaVersion: schemaVersion, occurredAt: time, tenant: tenant, actor: "u", requestId: "r",
            causationId: "c", payload: payload)
        _ = try await store.append(
            AppendRequest(streams: [StreamAppend(streamId: stream, expectedVersion: .any, events: [event])]))
    }

    /// Catches the runner up, then checks that a fresh fold of `name` has exactly the live rows.
    static func expectFoldMatches(_ runner: ProjectionRunner, _ name: String, entries: Int) throws {
        _ = try runner.catchUp()
        let report = try runner.verify(name)
        #expect(report.matches, "\(report.differenceCount) differences, first: \(report.differences.prefix(3))")
        #expect(report.entries > entries)
    }

    /// Campaigns of several tenants created, renamed, given segments, scheduled, moved through their
    /// lifecycle and deleted, with events after a deletion (which fold from nothing, as the row is
    /// gone) and campaigns created again under a deleted id, written straight to the store (the
    /// engine would refuse those): the board's and the schedule index's folds must arrive at exactly
    /// the rows of the event-by-event fold.
    @Test(arguments: ["campaign-board", "schedule-index"])
    func theCampaignFoldsEqualTheEventByEventFold(_ name: String) async throws {
        let directory = TemporaryDirectory()
        let store = try EventStore(path: directory.path)
        defer { store.close() }
        let projection: any Projection =
            name == "campaign-board" ? CatchUp(model: CampaignBoard()) : CatchUp(model: ScheduleIndex())
        let runner = try ProjectionRunner(store: store, projections: [projection])
        try runner.prepare()
        var random = SeededRandom(seed: 5)
        let tenants = ["acme", "a", "ab"]
        let transitions: [CampaignEvent.Kind] = [.activated, .paused, .resumed, .completed, .cancelled, .deleted]
        for n in 0..<800 {
            let id = "cmp_\(random.next() % 40)"
            let event: CampaignEvent
            switch random.next() % 7 {
            case 0:
                event = .created(
                    campaignId: id, name: "Campaign \(n)", channel: "email",
                    segmentId: n % 2 == 0 ? nil : "seg_\(n % 3)", content: Content(subject: "S", body: "Body \(n)"),
                    sendAt: n % 3 == 0 ? testStart.addingTimeInterval(Double(n) * 30) : nil)
            case 1: event = .updated(campaignId: id, name: "Renamed \(n)", channel: nil, content: nil)
            case 2: event = .scheduled(campaignId: id, sendAt: testStart.addingTimeInterval(Double(n) * 60))
            case 3: event = .segmentAttached(campaignId: id, segmentId: "seg_\(n % 4)")
            default:
                let kinds = transitions + [.unscheduled, .archived]
                event = .transitioned(kinds[Int(random.next() % UInt64(kinds.count))], campaignId: id)
            }
            try await Self.appendRaw(
                store, event.kind.rawValue, tenant: tenants[Int(random.next() % 3)], stream: "s\(n % 7)",
                payload: JSON.object(event.payload).bytes, at: testStart.addingTimeInterval(Double(n)))
        }
        try Self.expectFoldMatches(runner, name, entries: name == "campaign-board" ? 60 : 30)
    }

    /// Posts of several tenants created (again, under an id in use), edited, scheduled, published
    /// target by target with attempts, retries and failures, cancelled, and sent events before they
    /// exist (which `evolve` refuses), written straight to the store at times that fall between
    /// milliseconds: the publishing queue's fold must arrive at exactly the rows (post, due key,
    /// calendar key, status counts) of the event-by-event fold.
    @Test func thePostFoldEqualsTheEventByEventFold() async throws {
        let directory = TemporaryDirectory()
        let store = try EventStore(path: directory.path)
        defer { store.close() }
        let runner = try ProjectionRunner(store: store, projections: [CatchUp(model: PublishingQueue())])
        try runner.prepare()
        var random = SeededRandom(seed: 11)
        let tenants = ["acme", "a", "ab"]
        let connections = ["con_x", "con_m", "con_b"]
        let lifecycle: [PostEvent.Kind] = [.cancelled, .publishingStarted, .published, .failed]
        for n in 0..<1_000 {
            let id = "pst_\(random.next() % 30)"
            let connection = connections[Int(random.next() % 3)]
            let at = testStart.addingTimeInterval(Double(n) * 61.0003)
            let event: PostEvent
            switch random.next() % 10 {
            case 0:
                event = .created(
                    postId: id, connectionIds: Array(connections.prefix(1 + Int(random.next() % 3))), text: "Post \(n)",
                    media: n % 4 == 0 ? [Media(kind: "image", url: "https://cdn.example/\(n).png")] : [],
                    link: n % 3 == 0 ? "https://example.com/\(n)" : nil, campaignId: n % 5 == 0 ? "cmp_1" : nil)
            case 1:
                event = .updated(
                    postId: id, text: "Edited \(n)", media: nil, link: n % 2 == 0 ? .remove : .set("https://e.example"))
            case 2: event = .scheduled(postId: id, publishAt: at.addingTimeInterval(3_600))
            case 3, 4: event = .lifecycle(lifecycle[Int(random.next() % 4)], postId: id)
            case 5: event = .attemptStarted(postId: id, connectionId: connection, attempt: 1 + n % 3, at: at)
            case 6:
                event = .targetPublished(
                    postId: id, connectionId: connection, platformPostId: "p\(n)", url: "https://x.example/\(n)")
            case 7:
                event = .targetRetryScheduled(
                    postId: id, connectionId: connection, reason: n % 2 == 0 ? "transient" : "rate_limited",
                    retryAt: at.addingTimeInterval(30), message: "busy")
            default:
                event = .targetFailed(
                    postId: id, connectionId: connection, code: "CONTENT_REJECTED", message: "no",
                    unconfirmed: n % 2 == 0)
            }
            try await Self.appendRaw(
                store, event.kind.rawValue, tenant: tenants[Int(random.next() % 3)], stream: "s\(n % 7)",
                payload: JSON.object(event.payload).bytes, at: at)
        }
        try Self.expectFoldMatches(runner, "publishing-queue", entries: 80)
    }

    /// A projection reading one member of a payload gets what `payload[name]` gives: from the
    /// stored bytes alone when no upcaster lifts them, through the upcaster when one does.
    @Test func aPayloadMemberIsThePayloadsOwnEvenWhenAnUpcasterLiftsIt() async throws {
        let directory = TemporaryDirectory()
        let store = try EventStore(path: directory.path)
        defer { store.close() }
        let payloads: [(type: String, version: UInt16, json: String)] = [
            ("campaign.scheduled", 1, #"{"campaignId":"cmp_1","sendAt":1790000000}"#),
            ("campaign.scheduled", 2, #"{"campaignId":"cmp_1","sendAt":"2026-09-21T12:26:40.000Z"}"#),
            ("contact.upserted", 1, #"{"commitment":"ab","contactId":"ctc_1","fields":[]}"#),
            ("contact.upserted", 1, #"{"contactId":"ctc_1","contactId":"twice"}"#),
        ]
        for payload in payloads {
            try await Self.appendRaw(
                store, payload.type, stream: "s", payload: Array(payload.json.utf8), schemaVersion: payload.version)
        }
        #expect(Upcasters.lifts(type: "campaign.scheduled", from: 1))
        #expect(!Upcasters.lifts(type: "campaign.scheduled", from: 2))
        #expect(!Upcasters.lifts(type: "contact.upserted", from: 1))
        for stored in try store.read({ try $0.events(from: 1, limit: .max, hashes: false) }) {
            for name in ["sendAt", "contactId", "missing"] {
                let member = ProjectedEvent(stored).payloadMember(name)
                #expect(member == ProjectedEvent(stored).payload[name], "\(name) of \(stored.position)")
            }
        }
        let lifted = try #require(try store.read { try $0.event(at: 1) })
        #expect(ProjectedEvent(lifted).payloadMember("sendAt")?.stringValue == "2026-09-21T14:13:20Z")
        let doubled = try #require(try store.read { try $0.event(at: 4) })
        #expect(ProjectedEvent(doubled).payloadMember("contactId") == nil)
    }

    /// The rebuild's byte-string sort: by the strings' bytes, a string before the longer ones it
    /// begins, equal strings in the order they came; over strings up to 40 bytes of an alphabet
    /// with 0x00 and 0xFF, many sharing their first 16 bytes or more (where it compares the rest).
    @Test func packedKeysSortAsTheirBytesDoAndKeepEqualOnesInTheirOrder() {
        var random = SeededRandom(seed: 13)
        let alphabet: [UInt8] = [0x00, 0x01, 0x61, 0x62, 0xFF]
        var strings = [[UInt8]]()
        for _ in 0..<3_000 {
            switch random.next() % 4 {
            case 0 where !strings.isEmpty:
                strings.append(strings[Int(random.next() % UInt64(strings.count))])
            case 1 where !strings.isEmpty:
                let base = strings[Int(random.next() % UInt64(strings.count))]
                strings.append(base + (0..<random.next() % 4).map { _ in alphabet[Int(random.next() % 5)] })
            default:
                strings.append((0..<random.next() % 41).map { _ in alphabet[Int(random.next() % 5)] })
            }
        }
        var keys = PackedKeys(reservingCapacity: strings.count)
        for string in strings { keys.append(string) }
        let expected = strings.indices.sorted { a, b in
            strings[a] != strings[b] ? strings[a].lexicographicallyPrecedes(strings[b]) : a < b
        }
        let sorted = keys.sortedIndices()
        let difference = zip(sorted, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        #expect(
            sorted.count == expected.count && difference == nil,
            "first out of place at \(String(describing: difference))")
        #expect(
            keys.count == strings.count && strings.indices.allSatisfy { keys.withKey($0) { Array($0) } == strings[$0] })
        var appended: [UInt8] = [0x7F]
        for index in strings.indices { keys.appendKey(index, to: &appended) }
        #expect(appended == [0x7F] + strings.joined())
        // Reordered, each string is the one the order names, and the new keys sort as themselves.
        let reordered = keys.reordered(sorted)
        #expect(
            reordered.count == sorted.count
                && sorted.indices.allSatisfy { reordered.withKey($0) { Array($0) } == strings[sorted[$0]] })
        #expect(reordered.sortedIndices() == Array(sorted.indices))
        #expect(PackedKeys(reservingCapacity: 0).sortedIndices().isEmpty)
        #expect(keys.reordered([]).count == 0)
    }

    /// The segments fold's contact events, compacted every few events (a small slack) and never,
    /// give each contact's last event, live contacts only, in id order, as a dictionary of each
    /// contact's last event would; the events held stay within about twice the contacts.
    @Test(arguments: [1, 7, 1_000_000])
    func contactEventsKeepEachContactsLastEvent(slack: Int) {
        var random = SeededRandom(seed: 21)
        var events = MembershipFold.ContactEvents(slack: slack)
        var model: [String: (position: UInt64, erased: Bool)] = [:]
        var most = 0
        for position in UInt64(1)...5_000 {
            let id = "ctc_\(random.next() % 700)" + (random.next() % 5 == 0 ? "_with_a_longer_tail" : "")
            let erased = random.next() % 6 == 0
            events.record(
                id.utf8, MembershipFold.Trigger(position: position, time: Date(timeIntervalSince1970: 0)),
                erased: erased)
            model[id] = (position, erased)
            most = max(most, events.count)
        }
        let (ids, lasts) = events.live()
        let expected = model.filter { !$0.value.erased }.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        #expect(ids.count == expected.count && lasts.count == expected.count)
        #expect(expected.indices.allSatisfy { ids.withKey($0) { Array($0) } == Array(expected[$0].key.utf8) })
        #expect(expected.indices.allSatisfy { lasts[$0].position == expected[$0].value.position })
        if slack < 1_000 { #expect(most <= 2 * model.count + slack) }
    }

    /// A contact event's contact is its stream's (`tenant:contactId`), for the live projection and
    /// the rebuild alike; the payload names it only for a stream named otherwise.
    @Test func aContactEventsContactIsNamedByItsStream() async throws {
        let directory = TemporaryDirectory()
        let store = try EventStore(path: directory.path)
        defer { store.close() }
        let payload = Array(#"{"commitment":"ab","contactId":"from_payload","fields":[]}"#.utf8)
        let streams: [(tenant: String, stream: String, expected: String)] = [
            ("acme", "acme:ctc_1", "ctc_1"),
            ("acme", "acme:ctc:with:colons", "ctc:with:colons"),
            ("acme", "acme:ctc_ünïcode_longer_than_sixteen", "ctc_ünïcode_longer_than_sixteen"),
            ("acme", "acme2:ctc_1", "from_payload"),
            ("acme", "acme:", "from_payload"),
            ("acme", "acmeXctc_1", "from_payload"),
            ("ac", "acme:ctc_1", "from_payload"),
        ]
        for entry in streams {
            try await Self.appendRaw(
                store, "contact.upserted", tenant: entry.tenant, stream: entry.stream, payload: payload)
        }
        let stored = try store.read { try $0.events(from: 1, limit: .max, hashes: false) }
        #expect(stored.map { SegmentMembership.contactId(of: ProjectedEvent($0)) } == streams.map(\.expected))
    }
}
