import CampaignDomain
import CampaignEngine
import CampaignProjections
import Foundation
import Testing

/// Issue 11, item 22: `within_last_days` memberships follow the clock. Each tick re-evaluates
/// exactly the memberships whose boundary passed, and the queries then agree with a fresh
/// evaluation of every rule at the engine clock.
@Suite struct RelativeDateMembershipTests {
    /// A principal whose token outlives the ticks below.
    let acme = principal(tenant: "acme", expiresAt: "2030-01-01T00:00:00Z")
    let globex = principal(tenant: "globex", expiresAt: "2030-01-01T00:00:00Z")

    let rules: [String: String] = [
        "seg_recent": #"{"all":[{"field":"last_seen_at","operator":"within_last_days","value":7}]}"#,
        "seg_lapsed": #"{"all":[{"field":"last_seen_at","operator":"not_within_last_days","value":7}]}"#,
        "seg_mixed":
            #"{"any":[{"field":"age","operator":"gte","value":65},{"all":[{"field":"signed_up_at","#
            + #""operator":"within_last_days","value":30},{"field":"last_seen_at","#
            + #""operator":"within_last_days","value":2}]}]}"#,
    ]

    let contacts: [String: String] = [
        "ctc_future": #"{"last_seen_at":"2026-11-29T00:00:00Z","signed_up_at":"2026-11-01"}"#,
        "ctc_recent": #"{"last_seen_at":"2026-11-20T12:00:00Z","signed_up_at":"2026-11-20"}"#,
        "ctc_never": #"{"age":30}"#,
        "ctc_senior": #"{"age":70,"last_seen_at":"2026-11-21T09:00:00Z"}"#,
    ]

    func setUp(_ t: TestEngine, as who: String) async {
        for (id, rule) in rules.sorted(by: { $0.key < $1.key }) {
            #expect(
                await t.command("segment.create", #"{"segmentId":"\#(id)","name":"\#(id)","rules":\#(rule)}"#, as: who)
                    .status == 201)
        }
        for (id, attributes) in contacts.sorted(by: { $0.key < $1.key }) {
            #expect(
                await t.command("contact.upsert", #"{"contactId":"\#(id)","attributes":\#(attributes)}"#, as: who)
                    .status == 201)
        }
    }

    /// What every segment's members are by a fresh evaluation of its rule at the engine clock.
    func fresh(_ t: TestEngine) throws -> [String: Set<String>] {
        let now = t.clock.now()
        var expected = [String: Set<String>]()
        for (id, rule) in rules {
            let parsed = try SegmentRule.parse(try JSON.parse(Array(rule.utf8)), schema: ContactSchema(), at: "")
            expected[id] = Set(
                try contacts.compactMap { contactId, attributes in
                    parsed.matches(
                        try JSON.parse(Array(attributes.utf8)).objectValue ?? [:], schema: ContactSchema(), now: now)
                        ? contactId : nil
                })
        }
        return expected
    }

    /// What the queries say, both `segment.members` and `segment.get`'s count.
    func served(_ t: TestEngine, as who: String) async -> [String: Set<String>] {
        var served = [String: Set<String>]()
        for id in rules.keys {
            let members = await t.query("segment.members", #"{"segmentId":"\#(id)"}"#, as: who)
            let ids = Set(members.data?["contactIds"]?.arrayValue?.compactMap(\.stringValue) ?? [])
            served[id] = ids
            let count = await t.query("segment.get", #"{"segmentId":"\#(id)"}"#, as: who).data?["memberCount"]?
                .integerValue
            #expect(count == ids.count, "segment.get and segment.members disagree on \(id)")
        }
        return served
    }

    @Test func membershipsFollowTheClockThroughEachBoundary() async throws {
        var configuration = EngineConfiguration()
        configuration.operatorTenant = "system"
        let t = try TestEngine(configuration: configuration)
        await setUp(t, as: acme)
        #expect(await served(t, as: acme) == (try fresh(t)))
        #expect(await served(t, as: acme)["seg_recent"] == ["ctc_recent", "ctc_senior"])

        // Each step crosses at least one boundary: ctc_senior's 2-day window, ctc_recent's 7-day
        // window, ctc_future's first sighting, then every window.
        for step in [
            "2026-11-23T09:00:00.001Z", "2026-11-27T12:00:01Z", "2026-11-29T00:00:00Z", "2026-12-06T00:00:00.001Z",
            "2027-03-01T00:00:00Z",
        ] {
            let tick = await t.command(
                "system.tick", #"{"now":"\#(step)"}"#,
                as: principal(tenant: "system", expiresAt: "2030-01-01T00:00:00Z"))
            #expect(tick.status == 200, "\(tick)")
            #expect((tick.data?["memberships"]?.integerValue ?? 0) > 0, "the tick at \(step) re-evaluated what was due")
            #expect(await served(t, as: acme) == (try fresh(t)), "at \(step)")
        }
        #expect(await served(t, as: acme)["seg_recent"] == [])
        #expect(await served(t, as: acme)["seg_lapsed"] == Set(contacts.keys))

        for name in ["segments"] {
            let report = try t.engine.projections.verify(name)
            #expect(report.matches, "\(report.differences)")
        }
    }

    @Test func aTickWithNothingDueWritesNothingAndEachTenantRefreshesOnlyItsOwn() async throws {
        let t = try TestEngine()
        await setUp(t, as: acme)
        await setUp(t, as: globex)
        let events = { try t.engine.eventStore.head().position }
        let before = try events()
        let idle = await t.command("system.tick", "{}", as: acme)
        #expect(idle.data?["memberships"]?.integerValue == 0)
        #expect(try events() == before, "nothing was due, so nothing was written")

        _ = t.clock.moveForward(to: Timestamp.parse("2026-11-29T00:00:00Z")!)
        let own = await t.command("system.tick", "{}", as: acme)
        #expect((own.data?["memberships"]?.integerValue ?? 0) > 0)
        let refreshes = try t.engine.eventStore.readStream("acme:" + SegmentMembership.refreshStream)
        #expect(refreshes.map(\.type) == [MembershipEvent.Kind.refreshed.rawValue])
        #expect(try t.engine.eventStore.readStream("globex:" + SegmentMembership.refreshStream).isEmpty)
        #expect(await served(t, as: acme) == (try fresh(t)))
        #expect(await served(t, as: globex) != (try fresh(t)), "globex's memberships wait for its own tick")

        let second = await t.command("system.tick", "{}", as: globex)
        #expect((second.data?["memberships"]?.integerValue ?? 0) > 0)
        #expect(await served(t, as: globex) == (try fresh(t)))
    }

    @Test func aRebuildArrivesAtTheSameMemberships() async throws {
        let t = try TestEngine()
        await setUp(t, as: acme)
        _ = try await t.engine.tick(now: Timestamp.parse("2026-11-29T00:00:00Z")!)
        // A contact change and a rule change after the refresh re-index their boundaries.
        _ = await t.command(
            "contact.upsert", #"{"contactId":"ctc_never","attributes":{"last_seen_at":"2026-11-28T00:00:00Z"}}"#,
            as: acme)
        _ = await t.command(
            "segment.update",
            #"{"segmentId":"seg_recent","rules":{"all":[{"field":"last_seen_at","#
                + #""operator":"within_last_days","value":3}]}}"#,
            as: acme)
        let report = try await t.engine.tick(now: Timestamp.parse("2026-12-02T00:00:00.001Z")!)
        #expect(report.membershipsRefreshed > 0)
        let live = await served(t, as: acme)
        #expect(
            live["seg_recent"] == [], "ctc_future (seen 11-29) and ctc_never (seen 11-28) are now older than 3 days")
        try t.engine.projections.rebuild("segments")
        #expect(await served(t, as: acme) == live)
        #expect(try t.engine.projections.verify("segments").matches)
    }
}
