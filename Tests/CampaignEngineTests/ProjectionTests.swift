import CampaignDomain
import CampaignProjections
import EventStore
import Foundation
import Signing
import Spawn
import TestSupport
import Testing

@testable import CampaignEngine

@Suite struct ReadModelTests {
    @Test func aListRightAfterACommandShowsItsEffect() async throws {
        let t = try TestEngine()
        _ = await t.command("campaign.create", #"{"campaignId":"cmp_1","name":"Alpha","channel":"email"}"#)
        let listed = await t.query("campaign.list", "{}")
        #expect(listed.data?["items"]?.arrayValue?.compactMap { $0["campaignId"]?.stringValue } == ["cmp_1"])
        #expect(listed.data?["counts"]?["draft"]?.integerValue == 1)
        _ = await t.command("campaign.archive", #"{"campaignId":"cmp_1"}"#)
        let after = await t.query("campaign.list", #"{"status":"draft"}"#)
        #expect(after.data?["items"]?.arrayValue?.isEmpty == true)
        #expect(await t.query("campaign.list", "{}").data?["counts"]?["archived"]?.integerValue == 1)
    }

    @Test func campaignListsFilterByStatusAndTimeAndPageWithACursor() async throws {
        let t = try TestEngine()
        _ = await t.command(
            "segment.create",
            #"{"segmentId":"seg_1","name":"All","rules":{"all":[{"field":"email","operator":"exists"}]}}"#)
        for n in 1...5 {
            _ = await t.command(
                "campaign.create",
                #"{"campaignId":"cmp_\#(n)","name":"Campaign \#(n)","channel":"sms","segmentId":"seg_1","#
                    + #""content":{"body":"Hello"}}"#
            )
            if n <= 3 {
                _ = await t.command(
                    "campaign.schedule", #"{"campaignId":"cmp_\#(n)","sendAt":"2026-12-0\#(n)T00:00:00Z"}"#)
            }
        }
        let first = await t.query("campaign.list", #"{"limit":2}"#)
        let cursor = try #require(first.data?["nextCursor"]?.stringValue)
        let second = await t.query("campaign.list", #"{"limit":2,"cursor":"\#(cursor)"}"#)
        let third = await t.query(
            "campaign.list", #"{"limit":2,"cursor":"\#(second.data?["nextCursor"]?.stringValue ?? "")"}"#)
        let ids = [first, second, third].flatMap {
            $0.data?["items"]?.arrayValue?.compactMap { $0["campaignId"]?.stringValue } ?? []
        }
        #expect(ids == ["cmp_1", "cmp_2", "cmp_3", "cmp_4", "cmp_5"])
        #expect(third.data?["nextCursor"] == .null)
        let scheduled = await t.query(
            "campaign.list", #"{"status":"scheduled","from":"2026-12-02T00:00:00Z","to":"2026-12-03T00:00:00Z"}"#)
        #expect(
            scheduled.data?["items"]?.arrayValue?.compactMap { $0["campaignId"]?.stringValue } == ["cmp_2", "cmp_3"])
        #expect(
            scheduled.data?["counts"]?["scheduled"]?.integerValue == 3
                && scheduled.data?["counts"]?["draft"]?.integerValue == 2)
        #expect(await t.query("campaign.list", #"{"status":"bogus"}"#).code == "VALIDATION_ERROR")
        #expect(await t.query("campaign.list", #"{"cursor":"%%%"}"#).code == "INVALID_FORMAT")
        #expect(await t.query("campaign.list", #"{"limit":501}"#).code == "INVALID_FORMAT")
    }

    /// An engine whose tenant acme has the X connection `con_x`, for posts.
    func engineWithConnection() async throws -> TestEngine {
        let t = try TestEngine()
        let connected = await t.command(
            "social.connect",
            #"{"connectionId":"con_x","platform":"x","accountId":"a","credentialRef":"vault://a","#
                + #""expiresAt":"2027-01-01T00:00:00Z"}"#
        )
        try #require(connected.status == 201)
        return t
    }

    @Test func postListsUseTheCalendar() async throws {
        let t = try await engineWithConnection()
        for (n, day) in [(1, "05"), (2, "01"), (3, "10")] {
            _ = await t.command("post.create", #"{"postId":"pst_\#(n)","connectionIds":["con_x"],"text":"Post \#(n)"}"#)
            _ = await t.command("post.schedule", #"{"postId":"pst_\#(n)","publishAt":"2026-12-\#(day)T09:00:00Z"}"#)
        }
        _ = await t.command("post.create", #"{"postId":"pst_4","connectionIds":["con_x"],"text":"Draft"}"#)
        let window = await t.query("post.list", #"{"from":"2026-12-01T00:00:00Z","to":"2026-12-06T00:00:00Z"}"#)
        #expect(window.data?["items"]?.arrayValue?.compactMap { $0["postId"]?.stringValue } == ["pst_2", "pst_1"])
        let drafts = await t.query("post.list", #"{"status":"draft"}"#)
        #expect(drafts.data?["items"]?.arrayValue?.compactMap { $0["postId"]?.stringValue } == ["pst_4"])
        #expect(drafts.data?["counts"]?["scheduled"]?.integerValue == 3)
        // A window that ends before it starts is refused by every list that takes one; one instant is a window.
        for name in ["post.list", "campaign.list", "audit.history"] {
            let reversed = await t.query(name, #"{"from":"2026-12-06T00:00:00Z","to":"2026-12-01T00:00:00Z"}"#)
            #expect(
                reversed.code == "VALIDATION_ERROR" && reversed["error"]?["pointer"] == .string("/params/from")
                    && reversed["error"]?["message"]
                        == .string("from (2026-12-06T00:00:00Z) is after to (2026-12-01T00:00:00Z)"),
                "\(name)")
            #expect(await t.query(name, #"{"from":"2026-12-05T09:00:00Z","to":"2026-12-05T09:00:00Z"}"#).status == 200)
        }
    }

    /// `post.list` with `campaignId` lists that campaign's posts (with the other filters, and paged
    /// by a cursor that carries the filter), read from the keys that list them; a campaign that is
    /// unknown, deleted or another tenant's is not found.
    @Test func postListsFilterByCampaign() async throws {
        let t = try await engineWithConnection()
        for id in ["cmp_a", "cmp_b", "cmp_d"] {
            let create = #"{"campaignId":"\#(id)","name":"Campaign \#(id)","channel":"social"}"#
            try #require(await t.command("campaign.create", create).status == 201)
        }
        for (n, campaign) in [(1, "cmp_a"), (2, "cmp_b"), (3, "cmp_a"), (4, nil), (5, "cmp_a")] {
            let link = campaign.map { #","campaignId":"\#($0)""# } ?? ""
            let post = #"{"postId":"pst_\#(n)","connectionIds":["con_x"],"text":"Post \#(n)"\#(link)}"#
            try #require(await t.command("post.create", post).status == 201)
        }
        try #require(
            await t.command("post.schedule", #"{"postId":"pst_3","publishAt":"2026-12-01T09:00:00Z"}"#).status == 201)
        func ids(_ params: String) async -> [String]? {
            await t.query("post.list", params).data?["items"]?.arrayValue?.compactMap { $0["postId"]?.stringValue }
        }
        // Read from the `p` keys a campaign's posts are listed under, as applied and as rebuilt.
        for rebuilt in [false, true] {
            if rebuilt { try t.engine.projections.rebuild("publishing-queue", batchSize: 2) }
            #expect(await ids(#"{"campaignId":"cmp_a"}"#) == ["pst_1", "pst_3", "pst_5"])
            #expect(await ids(#"{"campaignId":"cmp_b"}"#) == ["pst_2"])
        }
        #expect(await ids(#"{"campaignId":"cmp_a","status":"scheduled"}"#) == ["pst_3"])
        #expect(await ids(#"{"campaignId":"cmp_b","from":"2026-11-01T00:00:00Z"}"#) == [])
        #expect(await ids(#"{"campaignId":"cmp_d"}"#) == [])
        // Paged: the cursor carries the filter, and is refused without it.
        let first = await t.query("post.list", #"{"campaignId":"cmp_a","limit":2}"#)
        let cursor = first.data?["nextCursor"]?.stringValue ?? ""
        #expect(first.data?["items"]?.arrayValue?.count == 2 && !cursor.isEmpty)
        #expect(await ids(#"{"campaignId":"cmp_a","limit":2,"cursor":"\#(cursor)"}"#) == ["pst_5"])
        #expect(await t.query("post.list", #"{"limit":2,"cursor":"\#(cursor)"}"#).code == "INVALID_FORMAT")
        // A cursor issued before the campaign filter was there (bound to the tenant, the query and its
        // three filters then, none set) still reads a list without it.
        let before = t.engine.cursors.encode(Array("pst_2".utf8), context: Array("acme\0post.list\0-\0-\0-".utf8))
        #expect(await ids(#"{"limit":2,"cursor":"\#(before)"}"#) == ["pst_3", "pst_4"])
        // Unknown, deleted, another tenant's, or not a campaign id.
        #expect(await t.command("campaign.delete", #"{"campaignId":"cmp_d"}"#).status == 201)
        for id in ["cmp_none", "cmp_d"] {
            let missing = await t.query("post.list", #"{"campaignId":"\#(id)"}"#)
            #expect(
                missing.code == "RESOURCE_NOT_FOUND" && missing["error"]?["pointer"] == .string("/params/campaignId"))
        }
        let other = await t.query("post.list", #"{"campaignId":"cmp_a"}"#, as: admin("globex"))
        #expect(other.code == "RESOURCE_NOT_FOUND")
        #expect(await t.query("post.list", #"{"campaignId":"seg_1"}"#).code == "INVALID_FORMAT")
        #expect(await t.query("campaign.list", #"{"campaignId":"cmp_a"}"#).code == "INVALID_FIELD")
    }

    /// `post.list` by a connection the posts target: a disconnected account's posts are found, to
    /// move them, and a moved post is listed under its new targets only.
    @Test func postListsFilterByConnection() async throws {
        let t = try await engineWithConnection()
        let connect = #"{"connectionId":"con_m","platform":"mastodon","accountId":"m","credentialRef":"vault://m","#
        try #require(await t.command("social.connect", connect + #""expiresAt":"2027-01-01T00:00:00Z"}"#).status == 201)
        for (n, targets) in [(1, #""con_x""#), (2, #""con_m""#), (3, #""con_x","con_m""#), (4, #""con_x""#)] {
            let post = #"{"postId":"pst_\#(n)","connectionIds":[\#(targets)],"text":"Post \#(n)"}"#
            try #require(await t.command("post.create", post).status == 201)
        }
        func ids(_ params: String) async -> [String]? {
            await t.query("post.list", params).data?["items"]?.arrayValue?.compactMap { $0["postId"]?.stringValue }
        }
        #expect(await ids(#"{"connectionId":"con_x"}"#) == ["pst_1", "pst_3", "pst_4"])
        #expect(await ids(#"{"connectionId":"con_m"}"#) == ["pst_2", "pst_3"])
        #expect(await t.command("social.disconnect", #"{"connectionId":"con_x"}"#).status == 201)
        #expect(await ids(#"{"connectionId":"con_x","status":"draft"}"#) == ["pst_1", "pst_3", "pst_4"])
        #expect(await t.command("post.update", #"{"postId":"pst_4","connectionIds":["con_m"]}"#).status == 201)
        #expect(await ids(#"{"connectionId":"con_x"}"#) == ["pst_1", "pst_3"])
        #expect(await ids(#"{"connectionId":"con_m"}"#) == ["pst_2", "pst_3", "pst_4"])
        // Paged: the cursor carries the filter, and is refused with another or none.
        let first = await t.query("post.list", #"{"connectionId":"con_m","limit":2}"#)
        let cursor = first.data?["nextCursor"]?.stringValue ?? ""
        #expect(first.data?["items"]?.arrayValue?.count == 2 && !cursor.isEmpty)
        #expect(await ids(#"{"connectionId":"con_m","limit":2,"cursor":"\#(cursor)"}"#) == ["pst_4"])
        for params in [#"{"limit":2"#, #"{"connectionId":"con_x","limit":2"#] {
            #expect(await t.query("post.list", params + #","cursor":"\#(cursor)"}"#).code == "INVALID_FORMAT")
        }
        // Unknown, another tenant's, or not a connection id.
        await expectFilterRefusals(
            t, "post.list", "connectionId", unknown: "con_none", known: "con_m", other: "campaign.list")
    }

    /// A list's filter by a resource refuses one the tenant does not have (unknown, or another
    /// tenant's: `RESOURCE_NOT_FOUND` at its pointer) and an id of another kind, and `other`, a list
    /// without that filter, refuses the member.
    func expectFilterRefusals(
        _ t: TestEngine, _ query: String, _ key: String, unknown: String, known: String, other: String
    ) async {
        let missing = await t.query(query, #"{"\#(key)":"\#(unknown)"}"#)
        #expect(missing.code == "RESOURCE_NOT_FOUND" && missing["error"]?["pointer"] == .string("/params/\(key)"))
        #expect(await t.query(query, #"{"\#(key)":"\#(known)"}"#, as: admin("globex")).code == "RESOURCE_NOT_FOUND")
        #expect(await t.query(query, #"{"\#(key)":"cmp_1"}"#).code == "INVALID_FORMAT")
        #expect(await t.query(other, #"{"\#(key)":"\#(known)"}"#).code == "INVALID_FIELD")
    }

    /// `campaign.list` by the segment the campaigns target, attached at creation or later; paged with
    /// the filter bound to the cursor, and a cursor issued before the filter was there still reads.
    @Test func campaignListsFilterBySegment() async throws {
        let t = try TestEngine()
        // A deleted campaign is not listed, so `deleted` is no status to filter by.
        let deleted = await t.query("campaign.list", #"{"status":"deleted"}"#)
        #expect(
            deleted["error"]?["message"]
                == .string("status must be one of draft, scheduled, active, paused, completed, cancelled, archived"))
        for id in ["seg_a", "seg_b"] {
            let segment =
                #"{"segmentId":"\#(id)","name":"Segment \#(id)","rules":{"all":[{"field":"age","#
                + #""operator":"gte","value":18}]}}"#
            try #require(await t.command("segment.create", segment).status == 201)
        }
        for (id, segment) in [
            ("cmp_1", "seg_a"), ("cmp_2", "seg_b"), ("cmp_3", nil), ("cmp_4", nil), ("cmp_5", "seg_a"),
        ] {
            let link = segment.map { #","segmentId":"\#($0)""# } ?? ""
            let create =
                #"{"campaignId":"\#(id)","name":"Campaign \#(id)","channel":"email","#
                + #""content":{"subject":"Hi","body":"Hello"}\#(link)}"#
            try #require(await t.command("campaign.create", create).status == 201)
        }
        let attach = #"{"campaignId":"cmp_4","segmentId":"seg_a"}"#
        try #require(await t.command("campaign.attachSegment", attach).status == 201)
        let schedule = #"{"campaignId":"cmp_5","sendAt":"2026-12-01T09:00:00Z"}"#
        try #require(await t.command("campaign.schedule", schedule).status == 201)
        func ids(_ params: String) async -> [String]? {
            await t.query("campaign.list", params).data?["items"]?.arrayValue?.compactMap {
                $0["campaignId"]?.stringValue
            }
        }
        #expect(await ids(#"{"segmentId":"seg_a"}"#) == ["cmp_1", "cmp_4", "cmp_5"])
        #expect(await ids(#"{"segmentId":"seg_b"}"#) == ["cmp_2"])
        #expect(await ids(#"{"segmentId":"seg_a","status":"scheduled"}"#) == ["cmp_5"])
        #expect(await ids(#"{"segmentId":"seg_a","from":"2026-11-30T00:00:00Z"}"#) == ["cmp_5"])
        let first = await t.query("campaign.list", #"{"segmentId":"seg_a","limit":2}"#)
        let cursor = first.data?["nextCursor"]?.stringValue ?? ""
        #expect(first.data?["items"]?.arrayValue?.count == 2 && !cursor.isEmpty)
        #expect(await ids(#"{"segmentId":"seg_a","limit":2,"cursor":"\#(cursor)"}"#) == ["cmp_5"])
        #expect(await t.query("campaign.list", #"{"cursor":"\#(cursor)"}"#).code == "INVALID_FORMAT")
        let before = t.engine.cursors.encode(Array("cmp_2".utf8), context: Array("acme\0campaign.list\0-\0-\0-".utf8))
        #expect(await ids(#"{"limit":2,"cursor":"\#(before)"}"#) == ["cmp_3", "cmp_4"])
        await expectFilterRefusals(
            t, "campaign.list", "segmentId", unknown: "seg_none", known: "seg_a", other: "post.list")
    }

    /// The catalogue lists a host needs to show what a tenant has: `segment.list` (with member
    /// counts), `connection.list` and `experiment.list`, each filtered, paged by a cursor bound to
    /// its filters, and never showing another tenant's.
    @Test func catalogueListsShowTheTenantsSegmentsConnectionsAndExperiments() async throws {
        let t = try TestEngine()
        func ids(_ name: String, _ params: String = "{}", key: String, as who: String = admin()) async -> [String]? {
            await t.query(name, params, as: who).data?["items"]?.arrayValue?.compactMap { $0[key]?.stringValue }
        }
        for (id, rule) in [("seg_b", "exists"), ("seg_a", "not_exists"), ("seg_c", "exists")] {
            let segment =
                #"{"segmentId":"\#(id)","name":"Segment \#(id)","rules":{"all":[{"field":"email","#
                + #""operator":"\#(rule)"}]}}"#
            try #require(await t.command("segment.create", segment).status == 201)
        }
        try #require(await t.command("segment.archive", #"{"segmentId":"seg_c"}"#).status == 201)
        let contact = #"{"contactId":"ctc_1","attributes":{"email":"a@b.example"}}"#
        try #require(await t.command("contact.upsert", contact).status == 201)
        #expect(await ids("segment.list", key: "segmentId") == ["seg_a", "seg_b", "seg_c"])
        #expect(await ids("segment.list", #"{"status":"archived"}"#, key: "segmentId") == ["seg_c"])
        let listed = await t.query("segment.list", #"{"status":"active"}"#).data?["items"]?.arrayValue ?? []
        #expect(listed.compactMap { $0["memberCount"]?.integerValue } == [0, 1])
        let segmentCounts = await t.query("segment.list", #"{"status":"archived"}"#).data?["counts"]
        #expect(
            segmentCounts == (try JSON.parse(#"{"active":2,"archived":1}"#)), "\(String(describing: segmentCounts))")

        for (id, platform, expires) in [
            ("con_x", "x", "2027-01-01"), ("con_m", "mastodon", "2026-11-22"), ("con_l", "linkedin", "2027-01-01"),
        ] {
            let connect =
                #"{"connectionId":"\#(id)","platform":"\#(platform)","accountId":"acme","#
                + #""credentialRef":"vault://\#(id)","expiresAt":"\#(expires)T00:00:00Z"}"#
            try #require(await t.command("social.connect", connect).status == 201)
        }
        try #require(await t.command("social.disconnect", #"{"connectionId":"con_l"}"#).status == 201)
        let beta =
            #"{"connectionId":"con_b","platform":"x","accountId":"beta","credentialRef":"vault://b","#
            + #""expiresAt":"2027-01-01T00:00:00Z"}"#
        try #require(await t.command("social.connect", beta, as: admin("globex")).status == 201)
        #expect(await ids("connection.list", key: "connectionId") == ["con_l", "con_m", "con_x"])
        #expect(await ids("connection.list", #"{"platform":"x"}"#, key: "connectionId") == ["con_x"])
        #expect(await ids("connection.list", #"{"status":"disconnected"}"#, key: "connectionId") == ["con_l"])
        #expect(await ids("connection.list", key: "connectionId", as: admin("globex")) == ["con_b"])
        // The tenant's connections by status at the engine clock, whatever the filters.
        let connectionCounts = await t.query("connection.list", #"{"platform":"x"}"#).data?["counts"]
        #expect(connectionCounts == (try JSON.parse(#"{"connected":2,"disconnected":1,"expired":0}"#)))
        // Expired as the clock moves: con_m expires at 2026-11-22T00:00:00Z.
        _ = try await t.engine.tick(now: Timestamp.parse("2026-11-23T00:00:00Z")!)
        #expect(await ids("connection.list", #"{"status":"expired"}"#, key: "connectionId") == ["con_m"])
        let later = await t.query("connection.list", #"{"limit":1}"#).data?["counts"]
        #expect(later == (try JSON.parse(#"{"connected":1,"disconnected":1,"expired":1}"#)))
        let globexCounts = await t.query("connection.list", "{}", as: admin("globex")).data?["counts"]
        #expect(globexCounts == (try JSON.parse(#"{"connected":1,"disconnected":0,"expired":0}"#)))
        let first = await t.query("connection.list", #"{"limit":2}"#)
        let cursor = first.data?["nextCursor"]?.stringValue ?? ""
        #expect(first.data?["items"]?.arrayValue?.count == 2 && !cursor.isEmpty)
        let second = await t.query("connection.list", #"{"limit":2,"cursor":"\#(cursor)"}"#).data
        #expect(second?["items"]?.arrayValue?.compactMap { $0["connectionId"]?.stringValue } == ["con_x"])
        // The page after a cursor counts the connections before it too.
        #expect(second?["counts"] == later)
        let wrongFilter = await t.query("connection.list", #"{"platform":"x","cursor":"\#(cursor)"}"#)
        #expect(wrongFilter.code == "INVALID_FORMAT")
        #expect(
            await t.query("connection.list", #"{"cursor":"\#(cursor)"}"#, as: admin("globex")).code == "INVALID_FORMAT")
        #expect(await t.query("connection.list", #"{"platform":"myspace"}"#).code == "VALIDATION_ERROR")

        for id in ["cmp_1", "cmp_2"] {
            let create = #"{"campaignId":"\#(id)","name":"Campaign \#(id)","channel":"email"}"#
            try #require(await t.command("campaign.create", create).status == 201)
        }
        for (id, campaign) in [("exp_1", "cmp_1"), ("exp_2", "cmp_2"), ("exp_3", "cmp_1")] {
            let create =
                #"{"experimentId":"\#(id)","campaignId":"\#(campaign)","name":"E","variants":["#
                + #"{"key":"a","weight":50},{"key":"b","weight":50}]}"#
            try #require(await t.command("experiment.create", create).status == 201)
        }
        try #require(await t.command("experiment.start", #"{"experimentId":"exp_3"}"#).status == 201)
        #expect(await ids("experiment.list", key: "experimentId") == ["exp_1", "exp_2", "exp_3"])
        #expect(await ids("experiment.list", #"{"campaignId":"cmp_1"}"#, key: "experimentId") == ["exp_1", "exp_3"])
        #expect(await ids("experiment.list", #"{"status":"running"}"#, key: "experimentId") == ["exp_3"])
        // The tenant's experiments by status, whatever the filters.
        let counts = await t.query("experiment.list", #"{"campaignId":"cmp_2"}"#).data?["counts"]
        #expect(
            counts == (try JSON.parse(#"{"completed":0,"draft":2,"running":1,"stopped":0}"#)),
            "\(String(describing: counts))")
        #expect(
            await t.query("experiment.list", "{}", as: admin("globex")).data?["counts"]?["draft"]?.integerValue == 0)
        #expect(await ids("experiment.list", key: "experimentId", as: admin("globex")) == [])
        #expect(await t.query("experiment.list", #"{"campaignId":"cmp_9"}"#).code == "RESOURCE_NOT_FOUND")
        for name in ["segment.list", "connection.list", "experiment.list"] {
            #expect(await t.query(name, #"{"status":"bogus"}"#).code == "VALIDATION_ERROR", "\(name)")
            #expect(await t.query(name, #"{"limit":0}"#).code == "INVALID_FORMAT", "\(name)")
            #expect(await t.query(name, #"{"name":"x"}"#).code == "INVALID_FIELD", "\(name)")
        }
    }

    /// `contact.get` answers a contact's current values and the active segments it is in; an
    /// erased contact has neither, and another tenant's is not found.
    @Test func aContactIsReadWithItsValuesAndSegments() async throws {
        let t = try TestEngine()
        for (id, rule) in [
            ("seg_fr", #""country","operator":"eq","value":"FR""#), ("seg_old", #""age","operator":"gt","value":60"#),
        ] {
            let segment = #"{"segmentId":"\#(id)","name":"Segment \#(id)","rules":{"all":[{"field":\#(rule)}]}}"#
            try #require(await t.command("segment.create", segment).status == 201)
        }
        let upsert = #"{"contactId":"ctc_1","attributes":{"country":"FR","age":30,"tags":["vip"]}}"#
        try #require(await t.command("contact.upsert", upsert).status == 201)
        let read = await t.query("contact.get", #"{"contactId":"ctc_1"}"#)
        #expect(read.status == 200, "\(read)")
        #expect(read.data?["attributes"] == (try JSON.parse(#"{"age":30,"country":"FR","tags":["vip"]}"#)))
        #expect(read.data?["segments"]?.arrayValue?.compactMap(\.stringValue) == ["seg_fr"])
        #expect(read.data?["status"]?.stringValue == "active" && read.data?["version"]?.integerValue == 1)
        try #require(await t.command("contact.upsert", #"{"contactId":"ctc_1","attributes":{"age":70}}"#).status == 201)
        let older = await t.query("contact.get", #"{"contactId":"ctc_1"}"#).data
        #expect(older?["segments"]?.arrayValue?.compactMap(\.stringValue) == ["seg_fr", "seg_old"])
        try #require(await t.command("segment.archive", #"{"segmentId":"seg_fr"}"#).status == 201)
        #expect(
            await t.query("contact.get", #"{"contactId":"ctc_1"}"#).data?["segments"]?.arrayValue?.compactMap(
                \.stringValue) == ["seg_old"], "an archived segment is not listed")
        #expect(
            await t.query("contact.get", #"{"contactId":"ctc_1"}"#, as: admin("globex")).code == "RESOURCE_NOT_FOUND")
        #expect(await t.query("contact.get", #"{"contactId":"ctc_9"}"#).code == "RESOURCE_NOT_FOUND")
        #expect(await t.query("contact.get", #"{"contactId":"seg_fr"}"#).code == "INVALID_FORMAT")
        try #require(await t.command("contact.erase", #"{"contactId":"ctc_1"}"#).status == 201)
        let erased = await t.query("contact.get", #"{"contactId":"ctc_1"}"#).data
        #expect(erased?["status"]?.stringValue == "erased" && erased?["attributes"] == .object([:]))
        #expect(erased?["segments"]?.arrayValue == [])
    }

    /// `contact.list` pages the tenant's contacts that are not erased, or a segment's members, in id
    /// order, each with its current values, imported or upserted, and never another tenant's.
    @Test func contactsAreListedInIdOrderWithoutTheErased() async throws {
        let t = try TestEngine()
        let contacts = (1...5).map { #"{"contactId":"ctc_\#($0)","attributes":{"age":\#(20 + $0)}}"# }
        let imported = await t.command("contact.import", #"{"contacts":[\#(contacts.joined(separator: ","))]}"#)
        try #require(imported.status == 201, "\(imported)")
        try #require(await t.command("contact.upsert", #"{"contactId":"ctc_0","attributes":{"age":19}}"#).status == 201)
        try #require(await t.command("contact.erase", #"{"contactId":"ctc_3"}"#).status == 201)
        let other = #"{"contactId":"ctc_9","attributes":{"age":50}}"#
        try #require(await t.command("contact.upsert", other, as: admin("globex")).status == 201)
        func page(_ params: String, as principal: String = admin()) async -> (ids: [String], ages: [Int], next: String?)
        {
            let data = await t.query("contact.list", params, as: principal).data
            let items = data?["items"]?.arrayValue ?? []
            return (
                items.compactMap { $0["contactId"]?.stringValue },
                items.compactMap { $0["attributes"]?["age"]?.integerValue }, data?["nextCursor"]?.stringValue
            )
        }
        let all = await page("{}")
        #expect(all.ids == ["ctc_0", "ctc_1", "ctc_2", "ctc_4", "ctc_5"] && all.next == nil)
        #expect(all.ages == [19, 21, 22, 24, 25])
        let first = await page(#"{"limit":2}"#)
        #expect(first.ids == ["ctc_0", "ctc_1"])
        let second = await page(#"{"limit":3,"cursor":"\#(first.next ?? "")"}"#)
        #expect(second.ids == ["ctc_2", "ctc_4", "ctc_5"])
        #expect(await page("{}", as: admin("globex")).ids == ["ctc_9"])
        let foreign = await t.query("contact.list", #"{"cursor":"\#(first.next ?? "")"}"#, as: admin("globex"))
        #expect(foreign.code == "INVALID_FORMAT")
        let item = await t.query("contact.list", #"{"limit":1}"#).data?["items"]?.arrayValue?.first
        #expect(item?["status"]?.stringValue == "active" && item?["version"]?.integerValue == 1)
        #expect(item?["updatedAt"]?.stringValue != nil)
        // A segment's members, paged apart from the whole list.
        let segment =
            #"{"segmentId":"seg_old","name":"Older","rules":{"all":[{"field":"age","operator":"gt","value":21}]}}"#
        try #require(await t.command("segment.create", segment).status == 201)
        #expect(await page(#"{"segmentId":"seg_old"}"#).ids == ["ctc_2", "ctc_4", "ctc_5"])
        let members = await page(#"{"segmentId":"seg_old","limit":1}"#)
        #expect(members.ids == ["ctc_2"] && members.ages == [22])
        #expect(await page(#"{"segmentId":"seg_old","cursor":"\#(members.next ?? "")"}"#).ids == ["ctc_4", "ctc_5"])
        #expect(await t.query("contact.list", #"{"cursor":"\#(members.next ?? "")"}"#).code == "INVALID_FORMAT")
        let unknown = await t.query("contact.list", #"{"segmentId":"seg_none"}"#)
        #expect(unknown.code == "RESOURCE_NOT_FOUND" && unknown["error"]?["pointer"] == .string("/params/segmentId"))
        #expect(
            await t.query("contact.list", #"{"segmentId":"seg_old"}"#, as: admin("globex")).code == "RESOURCE_NOT_FOUND"
        )
        #expect(await t.query("contact.list", #"{"status":"active"}"#).code == "INVALID_FIELD")
        #expect(await t.query("contact.list", #"{"limit":501}"#).code == "INVALID_FORMAT")
    }

    /// `segment.preview` counts the contacts a rule tree matches now, as a segment with that rule
    /// would have them, without writing anything; the rule is checked as `segment.create` checks it.
    @Test func aRulePreviewCountsWhatASegmentWouldHold() async throws {
        let t = try TestEngine()
        let define = #"{"name":"tier","type":"enum","values":["gold","silver"]}"#
        try #require(await t.command("field.define", define).status == 201)
        let people = [
            ("ctc_1", #"{"country":"FR","tier":"gold","signed_up_at":"2026-11-20T00:00:00Z"}"#),
            ("ctc_2", #"{"country":"DE","tier":"gold"}"#), ("ctc_3", #"{"country":"FR"}"#),
            ("ctc_4", #"{"country":"FR","tier":"silver","signed_up_at":"2026-10-01T00:00:00Z"}"#),
            ("ctc_5", #"{"country":"FR","tier":"gold"}"#),
        ]
        let items = people.map { #"{"contactId":"\#($0.0)","attributes":\#($0.1)}"# }.joined(separator: ",")
        try #require(await t.command("contact.import", #"{"contacts":[\#(items)]}"#).status == 201)
        try #require(await t.command("contact.erase", #"{"contactId":"ctc_5"}"#).status == 201)
        let other = #"{"contactId":"ctc_1","attributes":{"country":"FR"}}"#
        try #require(await t.command("contact.upsert", other, as: admin("globex")).status == 201)
        let head = try t.engine.eventStore.head().position
        func preview(_ rules: String, limit: Int? = nil) async -> JSON {
            await t.query("segment.preview", #"{"rules":\#(rules)\#(limit.map { ",\"limit\":\($0)" } ?? "")}"#)
        }
        let french = #"{"all":[{"field":"country","operator":"eq","value":"FR"}]}"#
        let all = await preview(french)
        #expect(all.data?["count"]?.integerValue == 3, "\(all)")
        #expect(all.data?["contactIds"]?.arrayValue?.compactMap(\.stringValue) == ["ctc_1", "ctc_3", "ctc_4"])
        #expect(all.data?["evaluatedAt"]?.stringValue == "2026-11-21T10:00:00Z")
        let one = await preview(french, limit: 1)
        #expect(one.data?["count"]?.integerValue == 3 && one.data?["contactIds"]?.arrayValue?.count == 1)
        let gold =
            #"{"all":[{"field":"tier","operator":"eq","value":"gold"},"# + #"{"any":["#
            + #"{"field":"country","operator":"eq","value":"DE"},{"field":"tier","operator":"not_exists"}]}]}"#
        #expect(await preview(gold).data?["contactIds"]?.arrayValue?.compactMap(\.stringValue) == ["ctc_2"])
        let noTier = #"{"all":[{"field":"tier","operator":"not_exists"}]}"#
        #expect(await preview(noTier).data?["contactIds"]?.arrayValue?.compactMap(\.stringValue) == ["ctc_3"])
        let recent = #"{"all":[{"field":"signed_up_at","operator":"within_last_days","value":7}]}"#
        #expect(await preview(recent).data?["contactIds"]?.arrayValue?.compactMap(\.stringValue) == ["ctc_1"])
        #expect(try t.engine.eventStore.head().position == head, "a preview writes nothing")
        // The same rule made a segment has the members the preview counted.
        let segment = #"{"segmentId":"seg_fr","name":"France","rules":\#(french)}"#
        try #require(await t.command("segment.create", segment).status == 201)
        #expect(await t.query("segment.get", #"{"segmentId":"seg_fr"}"#).data?["memberCount"]?.integerValue == 3)
        // Refused as segment.create refuses the rule, pointing into the params.
        let unknown = await preview(#"{"all":[{"field":"shoe_size","operator":"eq","value":42}]}"#)
        #expect(unknown.code == "UNKNOWN_FIELD" && unknown["error"]?["pointer"] == .string("/params/rules/all/0/field"))
        let wrongOperator = await preview(#"{"all":[{"field":"country","operator":"gt","value":1}]}"#)
        #expect(wrongOperator.code == "INVALID_OPERATOR")
        #expect(await preview(#"{"none":[]}"#).code == "INVALID_SEGMENT_RULE")
        #expect(await t.query("segment.preview", "{}").code == "MISSING_FIELD")
        #expect(await preview(french, limit: 501).code == "INVALID_FORMAT")
        let countOnly = await preview(french, limit: 0)
        #expect(countOnly.data?["count"]?.integerValue == 3 && countOnly.data?["contactIds"]?.arrayValue == [])
        let foreign = await t.query("segment.preview", #"{"rules":\#(french)}"#, as: admin("globex"))
        #expect(foreign.data?["contactIds"]?.arrayValue?.compactMap(\.stringValue) == ["ctc_1"])
        // Rules of the caller's choosing read contacts' values: segments:read alone does not preview.
        let segmentsOnly = principal(scopes: ["segments:read"])
        let refused = await t.query("segment.preview", #"{"rules":\#(french)}"#, as: segmentsOnly)
        #expect(refused.code == "INVALID_SCOPE" && refused["error"]?["param"]?.stringValue == "contacts:read")
        let empty = await t.query("segment.preview", #"{"rules":\#(french)}"#, as: admin("initech"))
        #expect(empty.data?["count"]?.integerValue == 0)
    }

    @Test func aPreviewOfMoreContactsThanASliceCountsEachOnce() async throws {
        let t = try TestEngine()
        let total = 9_000  // more than two of the preview's slices of 4,096
        let items = (0..<total).map { n in
            let country = n % 3 == 0 ? "FR" : "DE"
            return #"{"contactId":"ctc_\#(String(format: "%05d", n))","attributes":{"age":\#(n % 100),"#
                + #""country":"\#(country)"}}"#
        }
        try #require(
            await t.command("contact.import", #"{"contacts":[\#(items.joined(separator: ","))]}"#).status == 201)
        // Erased on either side of the first slice's end (the 4,096th contact is ctc_04095).
        let erased = [4_094, 4_095, 4_096, 8_193]
        for n in erased {
            let id = String(format: "%05d", n)
            try #require(await t.command("contact.erase", #"{"contactId":"ctc_\#(id)"}"#).status == 201)
        }
        let french = #"{"all":[{"field":"country","operator":"eq","value":"FR"}]}"#
        let preview = await t.query("segment.preview", #"{"rules":\#(french),"limit":500}"#)
        let expected = (0..<total).filter { $0 % 3 == 0 && !erased.contains($0) }
        #expect(preview.data?["count"]?.integerValue == expected.count, "\(preview)")
        let ids = preview.data?["contactIds"]?.arrayValue?.compactMap(\.stringValue)
        #expect(ids == expected.prefix(500).map { "ctc_" + String(format: "%05d", $0) })
        let thirties = #"{"all":[{"field":"age","operator":"between","value":[30,39]}]}"#
        let counted = await t.query("segment.preview", #"{"rules":\#(thirties),"limit":0}"#)
        try #require(
            await t.command("segment.create", #"{"segmentId":"seg_30","name":"30s","rules":\#(thirties)}"#).status
                == 201)
        let members = await t.query("segment.get", #"{"segmentId":"seg_30"}"#).data?["memberCount"]?.integerValue
        let thirtySomethings = (0..<total).filter { (30...39).contains($0 % 100) && !erased.contains($0) }
        #expect(counted.data?["count"]?.integerValue == members && members == thirtySomethings.count)
    }

    @Test func segmentMembershipFollowsContactsAndRules() async throws {
        let t = try TestEngine()
        _ = await t.command(
            "contact.import",
            #"{"contacts":[{"contactId":"ctc_1","attributes":{"age":20,"country":"FR"}},"#
                + #"{"contactId":"ctc_2","attributes":{"age":40,"country":"DE"}},{"contactId":"ctc_3","#
                + #""attributes":{"age":70,"country":"FR"}}]}"#
        )
        _ = await t.command(
            "segment.create",
            #"{"segmentId":"seg_fr","name":"France","rules":{"all":[{"field":"country","operator":"eq","#
                + #""value":"FR"}]}}"#
        )
        func members() async -> [String] {
            await t.query("segment.members", #"{"segmentId":"seg_fr"}"#).data?["contactIds"]?.arrayValue?.compactMap(
                \.stringValue) ?? []
        }
        #expect(await members() == ["ctc_1", "ctc_3"])
        _ = await t.command("contact.upsert", #"{"contactId":"ctc_2","attributes":{"country":"fr"}}"#)
        #expect(await members() == ["ctc_1", "ctc_2", "ctc_3"])
        _ = await t.command(
            "segment.update",
            #"{"segmentId":"seg_fr","rules":{"all":[{"field":"country","operator":"eq","value":"FR"},"#
                + #"{"field":"age","operator":"lt","value":50}]}}"#
        )
        #expect(await members() == ["ctc_1", "ctc_2"])
        _ = await t.command("contact.erase", #"{"contactId":"ctc_1"}"#)
        #expect(await members() == ["ctc_2"])
        #expect(await t.query("segment.get", #"{"segmentId":"seg_fr"}"#).data?["memberCount"]?.integerValue == 1)
        _ = await t.command("segment.archive", #"{"segmentId":"seg_fr"}"#)
        #expect(await t.query("segment.members", #"{"segmentId":"seg_fr"}"#).data?["count"]?.integerValue == 0)
    }

    @Test func rulesCompiledOncePerBatchFollowRuleAndFieldChangesInsideTheBatch() async throws {
        let t = try TestEngine()
        // One batch will hold: contacts, a segment, a rule change, more contacts, a new field used
        // by the next rule, and a contact that only the last rule matches.
        _ = await t.command(
            "contact.import",
            #"{"contacts":[{"contactId":"ctc_1","attributes":{"age":20,"country":"FR"}},"#
                + #"{"contactId":"ctc_2","attributes":{"age":40,"country":"DE"}}]}"#)
        _ = await t.command(
            "segment.create",
            #"{"segmentId":"seg_a","name":"A","rules":{"all":[{"field":"country","operator":"eq","value":"FR"}]}}"#)
        _ = await t.command("contact.upsert", #"{"contactId":"ctc_3","attributes":{"age":30,"country":"FR"}}"#)
        _ = await t.command(
            "segment.update",
            #"{"segmentId":"seg_a","rules":{"all":[{"field":"age","operator":"gte","value":30}]}}"#)
        _ = await t.command("contact.upsert", #"{"contactId":"ctc_4","attributes":{"age":50,"country":"ES"}}"#)
        _ = await t.command("field.define", #"{"name":"tier","type":"enum","values":["gold","silver"]}"#)
        _ = await t.command(
            "segment.update",
            #"{"segmentId":"seg_a","rules":{"all":[{"field":"tier","operator":"eq","value":"gold"}]}}"#)
        _ = await t.command("contact.upsert", #"{"contactId":"ctc_5","attributes":{"tier":"gold"}}"#)
        _ = await t.command("contact.upsert", #"{"contactId":"ctc_2","attributes":{"tier":"gold"}}"#)
        let live = await t.query("segment.members", #"{"segmentId":"seg_a"}"#).data?["contactIds"]
        #expect(live?.arrayValue?.compactMap(\.stringValue) == ["ctc_2", "ctc_5"])

        func entries() throws -> [[UInt8]: [UInt8]] {
            try t.engine.projections.read("segments") { reader in
                var all = [[UInt8]: [UInt8]]()
                try reader.scan([]) { key, value in
                    all[key] = value
                    return true
                }
                return all
            }
        }
        // An event per batch (nothing reused) and everything in one batch agree.
        try t.engine.projections.rebuild("segments", batchSize: 1)
        let oneByOne = try entries()
        try t.engine.projections.rebuild("segments", batchSize: 100_000)
        #expect(try entries() == oneByOne)
        #expect(try t.engine.projections.verify("segments").matches)
    }

    @Test func auditHistoryFiltersByStreamActorAndTimeWithinTheTenant() async throws {
        let t = try TestEngine()
        _ = await t.command(
            "campaign.create", #"{"campaignId":"cmp_1","name":"Alpha","channel":"email"}"#,
            as: principal(subject: "alice"))
        t.clock.advance(by: 3_600)
        _ = await t.command(
            "campaign.update", #"{"campaignId":"cmp_1","name":"Beta"}"#, as: principal(subject: "bob"),
            requestId: "req_bob")
        _ = await t.command(
            "campaign.create", #"{"campaignId":"cmp_2","name":"Gamma","channel":"email"}"#,
            as: principal(subject: "alice"))
        _ = await t.command(
            "campaign.create", #"{"campaignId":"cmp_1","name":"Secret","channel":"email"}"#, as: admin("globex"))
        func positions(_ params: String, tenant: String = "acme") async -> [Int] {
            await t.query("audit.history", params, as: admin(tenant)).data?["items"]?.arrayValue?.compactMap {
                $0["position"]?.integerValue
            } ?? []
        }
        #expect(await positions(#"{"streamId":"cmp_1"}"#) == [1, 2])
        #expect(await positions(#"{"actor":"alice"}"#) == [1, 3])
        #expect(await positions(#"{"from":"2026-11-21T10:30:00Z"}"#) == [2, 3])
        #expect(await positions(#"{"streamId":"cmp_1"}"#, tenant: "globex") == [4])
        #expect(await positions("{}", tenant: "globex") == [4])
        let entry = await t.query("audit.history", #"{"actor":"bob"}"#).data?["items"]?.arrayValue?.first
        #expect(entry?["requestId"]?.stringValue == "req_bob" && entry?["type"]?.stringValue == "campaign.updated")
        #expect(entry?["occurredAt"]?.stringValue == "2026-11-21T11:00:00Z" && entry?["hash"]?.stringValue?.count == 64)
    }

    /// By stream the trail is read through the log's stream index: pages follow each other through
    /// their cursors to the stream's last event with no event twice, filters keep their meaning, a
    /// cursor serves only the stream and filters it was issued for, and a stream in another tenant's
    /// namespace reads as empty.
    @Test func auditHistoryByStreamPagesThroughTheStreamIndex() async throws {
        let t = try TestEngine()
        #expect(
            await t.command("campaign.create", #"{"campaignId":"cmp_1","name":"Name","channel":"email"}"#).code == nil)
        #expect(
            await t.command("campaign.create", #"{"campaignId":"cmp_2","name":"Other","channel":"email"}"#).code == nil)
        for n in 1...150 {
            t.clock.advance(by: 60)
            let answer = await t.command(
                "campaign.update", #"{"campaignId":"cmp_1","name":"Name \#(n)"}"#,
                as: principal(subject: n % 3 == 0 ? "carol" : "u_1"), requestId: "r\(n)")
            #expect(answer.code == nil)
        }
        _ = await t.command(
            "campaign.create", #"{"campaignId":"cmp_1","name":"Secret","channel":"email"}"#, as: admin("globex"))
        func page(_ params: String, tenant: String = "acme") async -> (positions: [Int], next: String?, code: String?) {
            let answer = await t.query("audit.history", params, as: admin(tenant))
            let items = answer.data?["items"]?.arrayValue ?? []
            return (
                items.compactMap { $0["position"]?.integerValue }, answer.data?["nextCursor"]?.stringValue, answer.code
            )
        }
        func all(_ filters: String, limit: Int) async -> [Int] {
            var positions = [Int]()
            var cursor: String?
            repeat {
                let extra = cursor.map { #","cursor":"\#($0)""# } ?? ""
                let got = await page(#"{"streamId":"cmp_1","limit":\#(limit)\#(filters)\#(extra)}"#)
                #expect(got.code == nil && got.positions.count <= limit)
                positions += got.positions
                cursor = got.next
            } while cursor != nil
            return positions
        }
        let stream = [1] + Array(3...152)
        #expect(await all("", limit: 7) == stream)
        #expect(await all("", limit: 151) == stream)
        #expect(await all("", limit: 500) == stream)
        #expect(await all(#","actor":"carol""#, limit: 4) == stream.filter { $0 >= 3 && ($0 - 2) % 3 == 0 })
        // Updates n = 50…60 happened at 50…60 minutes after the first.
        #expect(await all(#","from":"2026-11-21T10:50:00Z","to":"2026-11-21T11:00:00Z""#, limit: 3) == Array(52...62))
        // The name with its tenant reads the same stream; another tenant's namespace reads empty.
        #expect(await page(#"{"streamId":"acme:cmp_1","limit":500}"#).positions == stream)
        #expect(await page(#"{"streamId":"acme:cmp_1"}"#, tenant: "globex").positions.isEmpty)
        #expect(await page(#"{"streamId":"cmp_1"}"#, tenant: "globex").positions == [153])
        // A cursor is bound to its stream and filters.
        let first = await page(#"{"streamId":"cmp_1","limit":2}"#)
        let cursor = try #require(first.next)
        #expect(await page(#"{"streamId":"cmp_1","limit":2,"cursor":"\#(cursor)"}"#).positions == [4, 5])
        // A cursor as version 1 of the audit index issued it (the position of the last event looked
        // at, bound to the filters as given) reads on.
        let version1 = t.engine.cursors.encode(
            Key.u64(3), context: CursorCodec.context("acme", "audit.history", ["cmp_1", nil, nil, nil]))
        #expect(await page(#"{"streamId":"cmp_1","limit":2,"cursor":"\#(version1)"}"#).positions == [4, 5])
        // Names the log cannot hold are the client's mistake, not an empty history.
        let long = String(repeating: "x", count: 600)
        for name in ["", #"\u0000"#, long] {
            #expect(await page(#"{"streamId":"\#(name)"}"#).code == "INVALID_FORMAT")
        }
        #expect(await page(#"{"streamId":"cmp_2","limit":2,"cursor":"\#(cursor)"}"#).code == "INVALID_FORMAT")
        #expect(await page(#"{"limit":2,"cursor":"\#(cursor)"}"#).code == "INVALID_FORMAT")
    }
}

@Suite(.serialized) struct ProjectionRunnerTests {
    /// An administrator of `acme` whose token never expires.
    static let acmeAdmin = Principal(
        tenant: "acme", subject: "u", role: .admin, scopes: Principal.allScopes, expiresAt: .distantFuture)

    /// An engine that leaves its catch-up projections behind (no background catch-up, none at
    /// close), so a test finds the events it appended still to be applied.
    static let lazyCatchUp: EngineConfiguration = {
        var configuration = EngineConfiguration()
        configuration.catchUp = nil
        return configuration
    }()

    @Test func aCatchUpKilledMidWayResumesAndEndsIdenticalToAFreshRebuild() async throws {
        let directory = TemporaryDirectory()
        do {
            let engine = try CampaignEngine(directory: directory.path, configuration: Self.lazyCatchUp)
            let admin = Self.acmeAdmin
            let contacts = (0..<3_000).map {
                ContactInput(contactId: "ctc_\($0)", attributes: ["age": .number(Double($0 % 90))])
            }
            _ = await engine.execute(
                .command(
                    .segment(
                        .create(
                            segmentId: "seg_old", name: "Old",
                            rules: try JSON.parse(#"{"all":[{"field":"age","operator":"gte","value":60}]}"#))),
                    as: admin,
                    requestId: "r1"))
            _ = await engine.execute(.command(.contact(.import(contacts)), as: admin, requestId: "r2"))
            engine.close()
        }
        // `segments` catches up first: kill it right after its first committed batch, where it holds.
        try await Self.killCatchUp(directory, afterBatches: 1, ["--batch", "20"])

        let store = try EventStore(path: directory.path)
        let runner = try ProjectionRunner(store: store, projections: CampaignEngine.standardProjections())
        let midway = try runner.status().first { $0.name == "segments" }!
        #expect(
            midway.checkpoint > 0 && midway.checkpoint < midway.head, "killed at \(midway.checkpoint) of \(midway.head)"
        )
        try runner.catchUp()
        for name in ["audit", "segments"] {
            let status = try runner.status().first { $0.name == name }!
            #expect(status.lag == 0)
            let report = try runner.verify(name)
            #expect(report.matches, "\(name): \(report.differenceCount) differences")
            #expect(report.entries > 0)
        }
        let members = try runner.read("segments") { try $0.count(Key.make(["n", "acme", "seg_old"])) }
        #expect(members == (0..<3_000).filter { $0 % 90 >= 60 }.count)
        store.close()
    }

    /// Runs the harness's catch-up on `directory` with `arguments`, waits for its `afterBatches`-th
    /// committed `segments` batch (after which it holds), and kills it with SIGKILL.
    static func killCatchUp(_ directory: TemporaryDirectory, afterBatches: Int, _ arguments: [String]) async throws {
        let child = try startProduct(
            "campaign-harness",
            ["catch-up", "--data", directory.path, "--hold-after", String(afterBatches)] + arguments)
        while child.lines.filter({ $0.hasPrefix("batch segments") }).count < afterBatches {
            try await Task.sleep(for: .milliseconds(1))
            guard child.isRunning else { break }
        }
        child.send(SIGKILL)
        #expect(await child.waitForExit() == .signalled(SIGKILL), "the catch-up finished before it could be killed")
    }

    /// A store with 3,000 contacts of `acme`, a segment `seg_old` (age ≥ 60) whose members are
    /// caught up, and then a rule change (age ≥ 30) that `segments` has not applied yet.
    static func storeWithAPendingRuleChange(_ directory: TemporaryDirectory) async throws {
        let engine = try CampaignEngine(directory: directory.path, configuration: Self.lazyCatchUp)
        let admin = Self.acmeAdmin
        let rule = { (age: Int) in try JSON.parse(#"{"all":[{"field":"age","operator":"gte","value":\#(age)}]}"#) }
        let contacts = (0..<3_000).map {
            ContactInput(contactId: "ctc_\($0)", attributes: ["age": .number(Double($0 % 90))])
        }
        let created = await engine.execute(
            .command(
                .segment(.create(segmentId: "seg_old", name: "Old", rules: try rule(60))), as: admin, requestId: "r1"))
        let imported = await engine.execute(.command(.contact(.import(contacts)), as: admin, requestId: "r2"))
        try await engine.projections.catchUpOnWriter("segments")
        // An event `segments` does not read, between its checkpoint and the rule change: the parts
        // keep the checkpoint just before the rule change, past it.
        let campaign = await engine.execute(
            .command(
                .campaign(
                    .create(
                        campaignId: "cmp_1", name: "Spring", channel: "email", segmentId: nil,
                        content: Content(subject: "Spring", body: "Hello"), sendAt: nil)),
                as: admin, requestId: "r3"))
        let updated = await engine.execute(
            .command(.segment(.update(segmentId: "seg_old", rules: try rule(30))), as: admin, requestId: "r4"))
        #expect([created.status, imported.status, campaign.status, updated.status].allSatisfy { $0 < 300 })
        engine.close()
    }

    /// An engine configuration with background catch-up on this schedule.
    static func catchingUp(quiet: Duration, maximumLag: UInt64 = 10_000, atClose: Duration) -> EngineConfiguration {
        var configuration = EngineConfiguration(rateLimit: 1_000_000)
        configuration.catchUp = CatchUpSchedule(quiet: quiet, maximumLag: maximumLag, atClose: atClose)
        return configuration
    }

    /// The lag of each catch-up projection (`segments`, `audit`), by name.
    static func catchUpLags(_ runner: ProjectionRunner) throws -> [String: UInt64] {
        Dictionary(uniqueKeysWithValues: try runner.status().filter { $0.mode == .catchUp }.map { ($0.name, $0.lag) })
    }

    /// Imports `count` contacts of `acme` (ages 0–89) under request `requestId`.
    static func importContacts(_ engine: CampaignEngine, _ ids: Range<Int>, requestId: String) async -> Int {
        let contacts = ids.map { ContactInput(contactId: "ctc_\($0)", attributes: ["age": .number(Double($0 % 90))]) }
        return await engine.execute(.command(.contact(.import(contacts)), as: acmeAdmin, requestId: requestId)).status
    }

    /// Appends 301 events for the catch-up projections: a segment and an import of 300 contacts.
    static func appendSegmentAndContacts(_ engine: CampaignEngine) async throws {
        let rule = try JSON.parse(#"{"all":[{"field":"age","operator":"gte","value":60}]}"#)
        let created = await engine.execute(
            .command(
                .segment(.create(segmentId: "seg_old", name: "Old", rules: rule)), as: Self.acmeAdmin,
                requestId: "r1"))
        let imported = await Self.importContacts(engine, 0..<300, requestId: "r2")
        #expect(created.status == 201 && imported == 201)
    }

    /// The catch-up lags once both are 0, or after 20 s (a bound on a hang, generous for a loaded machine).
    static func lagsOnceCaughtUp(_ engine: CampaignEngine) async throws -> [String: UInt64] {
        let deadline = ContinuousClock.now + .seconds(20)
        var lags = try Self.catchUpLags(engine.projections)
        while lags.values.contains(where: { $0 > 0 }) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
            lags = try Self.catchUpLags(engine.projections)
        }
        return lags
    }

    @Test func catchUpProjectionsReachTheHeadOnTheirOwnOnceAppendsPause() async throws {
        let directory = TemporaryDirectory()
        let engine = try CampaignEngine(
            directory: directory.path, configuration: Self.catchingUp(quiet: .milliseconds(20), atClose: .zero))
        defer { engine.close() }
        try await Self.appendSegmentAndContacts(engine)
        // No query reads them: only the engine's own catch-up can move them.
        let lags = try await Self.lagsOnceCaughtUp(engine)
        #expect(lags == ["segments": 0, "audit": 0])
        for name in ["segments", "audit"] {
            let report = try engine.projections.verify(name)
            #expect(report.matches && report.entries > 0, "\(name): \(report.differenceCount) differences")
        }
    }

    /// An engine with no background catch-up, and the 301 events of ``appendSegmentAndContacts(_:)``
    /// that its catch-up projections have not applied (the directory lives as long as it is held).
    static func engineWithProjectionsBehind() async throws -> (CampaignEngine, TemporaryDirectory) {
        let directory = TemporaryDirectory()
        var configuration = EngineConfiguration(rateLimit: 1_000_000)
        configuration.catchUp = nil
        let engine = try CampaignEngine(directory: directory.path, configuration: configuration)
        try await Self.appendSegmentAndContacts(engine)
        return (engine, directory)
    }

    /// A batch size below one is taken as one: it used to apply nothing and return as if caught up.
    @Test func aCatchUpWithABatchOfNoneStillReachesTheHead() async throws {
        let (engine, directory) = try await Self.engineWithProjectionsBehind()
        defer { withExtendedLifetime(directory) { engine.close() } }
        #expect(try await engine.projections.catchUpOnWriter("audit", batchSize: 0) == 301)
        #expect(try engine.projections.catchUp("segments", batchSize: -1) == 301)
        #expect(try Self.catchUpLags(engine.projections) == ["segments": 0, "audit": 0])
    }

    /// Only events a projection reads count toward a catch-up batch: positions of other types are
    /// passed over in the same transaction. Before, `segments` behind 1,000 events of types it does
    /// not read took ten batches of 100, each a transaction and a flush, to move its checkpoint.
    @Test func aCatchUpPassesOverOtherTypesWithoutSpendingItsBatch() async throws {
        let (engine, directory) = try await Self.engineWithProjectionsBehind()
        defer { withExtendedLifetime(directory) { engine.close() } }
        try engine.projections.catchUp()
        let events = (0..<1_000).map { n in
            NewEvent(
                type: "host.noted", occurredAt: testStart, tenant: "acme", actor: "host", requestId: "n\(n)",
                causationId: "n\(n)", payload: Array("{}".utf8))
        }
        _ = try await engine.eventStore.append(
            AppendRequest(streams: [StreamAppend(streamId: "acme:notes", expectedVersion: .any, events: events)]))
        // A runner whose batches are never cut short by time (on a busy machine a batch can take 50
        // ms), so only their size decides where they end.
        let runner = try ProjectionRunner(
            store: engine.eventStore, projections: CampaignEngine.standardProjections(), jobBudget: .seconds(60))
        var batches = [String: [UInt64]]()
        let applied = try runner.catchUp(batchSize: 100) { name, checkpoint in
            batches[name, default: []].append(checkpoint)
        }
        #expect(applied == 2_000)
        #expect(batches["segments"] == [1_301], "one batch passes over every event it does not read")
        #expect(batches["audit"] == (1...10).map { 301 + 100 * UInt64($0) }, "audit reads them all")
        #expect(try Self.catchUpLags(engine.projections) == ["segments": 0, "audit": 0])
    }

    /// A keeper whose task starts after appends (in a busy process, the pool may run it late) still
    /// catches them up: it starts from where the projections stand, not from the head it first reads.
    @Test func aKeeperThatStartsAfterAppendsCatchesThemUp() async throws {
        let (engine, directory) = try await Self.engineWithProjectionsBehind()
        defer { withExtendedLifetime(directory) { engine.close() } }
        #expect(try Self.catchUpLags(engine.projections) == ["segments": 301, "audit": 301])
        // The keeper comes to a store whose head is past its projections, as a late-starting task does.
        let keeper = CatchUpKeeper(
            store: engine.store, projections: engine.projections,
            schedule: CatchUpSchedule(quiet: .milliseconds(20), atClose: .zero))
        defer { keeper.stop() }
        let lags = try await Self.lagsOnceCaughtUp(engine)
        #expect(lags == ["segments": 0, "audit": 0])
    }

    @Test func underAppendsThatNeverPauseACatchUpStartsOnceTheLagPassesItsLimit() async throws {
        let directory = TemporaryDirectory()
        // Appends never pause for ten seconds here, so only the lag limit can start a catch-up.
        let quiet = Duration.seconds(10)
        let engine = try CampaignEngine(
            directory: directory.path,
            configuration: Self.catchingUp(quiet: quiet, maximumLag: 10, atClose: .zero))
        defer { engine.close() }
        let deadline = ContinuousClock.now + .seconds(20)
        var last = ContinuousClock.now
        var longestPause = Duration.zero
        var batch = 0
        var audit: UInt64 = 0
        while audit == 0 && ContinuousClock.now < deadline {
            let status = await Self.importContacts(engine, batch * 2..<batch * 2 + 2, requestId: "r\(batch)")
            #expect(status == 201, "\(status)")
            batch += 1
            longestPause = max(longestPause, ContinuousClock.now - last)
            last = ContinuousClock.now
            audit = try engine.projections.status().first { $0.name == "audit" }!.checkpoint
        }
        #expect(audit > 0, "audit never caught up while appends went on")
        #expect(longestPause < quiet, "appends paused for \(longestPause): the pause may have started it")
    }

    @Test(arguments: [false, true])
    func anEngineDroppedWithoutCloseStillClosesItsStoreThoughItsTasksRun(signing: Bool) async throws {
        let directory = TemporaryDirectory()
        do {
            var configuration = Self.catchingUp(quiet: .seconds(3_600), atClose: .zero)
            if signing {
                configuration.checkpoints = CheckpointSchedule(
                    key: try NoteKey.generate(name: "ops.example"), events: 1_000_000, interval: 3_600)
            }
            let engine = try CampaignEngine(directory: directory.path, configuration: configuration)
            #expect(await Self.importContacts(engine, 0..<5, requestId: "r1") == 201)
        }
        // The task holds the store only while it reads, so the store closes with the engine (a
        // moment later if the task was reading, or on the writer thread if a finished command's
        // request held it last): the directory opens again in this process.
        let deadline = ContinuousClock.now + .seconds(5)
        var reopened: CampaignEngine?
        var lastError = ""
        while reopened == nil && ContinuousClock.now < deadline {
            do { reopened = try CampaignEngine(directory: directory.path) } catch { lastError = "\(error)" }
            if reopened == nil { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(reopened != nil, "the dropped engine's store stayed open: \(lastError)")
        reopened?.close()
    }

    @Test func closeCatchesUpWhatIsLeftWithinItsBudgetAndAZeroBudgetLeavesIt() async throws {
        for budget in [Duration.seconds(30), .zero] {
            let directory = TemporaryDirectory()
            // A pause of an hour never comes in this test: nothing catches up in the background.
            let engine = try CampaignEngine(
                directory: directory.path, configuration: Self.catchingUp(quiet: .seconds(3_600), atClose: budget))
            #expect(await Self.importContacts(engine, 0..<50, requestId: "r1") == 201)
            engine.close()
            let store = try EventStore(path: directory.path)
            defer { store.close() }
            let lags = try Self.catchUpLags(
                ProjectionRunner(store: store, projections: CampaignEngine.standardProjections()))
            // Zero: every event of the import is still to be applied.
            let expected = budget > .zero ? 0 : try store.head().position
            #expect(budget > .zero || expected >= 50, "each of the 50 contacts is an event")
            #expect(lags == ["segments": expected, "audit": expected])
        }
    }

    static let membersAfterTheRuleChange = (0..<3_000).filter { $0 % 90 >= 30 }.count

    @Test func aRuleChangeOverManyContactsIsAppliedInShortPartsAndEndsAsOneWholeApplyWould() async throws {
        let directory = TemporaryDirectory()
        try await Self.storeWithAPendingRuleChange(directory)
        let store = try EventStore(path: directory.path)
        defer { store.close() }
        let runner = try ProjectionRunner(
            store: store, projections: CampaignEngine.standardProjections(), jobBudget: .milliseconds(2))
        let before = try runner.status().first { $0.name == "segments" }!
        #expect(before.lag == 2, "only the campaign and the rule change are left to apply")
        var checkpoints = [UInt64]()
        try runner.catchUp("segments") { _, checkpoint in checkpoints.append(checkpoint) }
        // Parts leave the checkpoint just before the rule change (past the campaign, which
        // `segments` does not read); the last part moves it past.
        #expect(checkpoints.count >= 3, "the rule change over 3,000 contacts took \(checkpoints.count) transactions")
        #expect(checkpoints.dropLast().allSatisfy { $0 == before.head - 1 }, "\(checkpoints)")
        #expect(checkpoints.last == before.head)
        let after = try runner.status().first { $0.name == "segments" }!
        #expect(after.lag == 0 && !after.partWay)
        let report = try runner.verify("segments")
        #expect(report.matches, "\(report.differenceCount) differences")
        let members = try runner.read("segments") { try $0.count(Key.make(["n", "acme", "seg_old"])) }
        #expect(members == Self.membersAfterTheRuleChange)
    }

    @Test func aCatchUpKilledInsideARuleChangeResumesFromItsContactAndEndsIdenticalToARebuild() async throws {
        let directory = TemporaryDirectory()
        try await Self.storeWithAPendingRuleChange(directory)
        // Kill it after its second part, where it holds: the rule change is then half applied.
        try await Self.killCatchUp(directory, afterBatches: 2, ["--batch", "1000", "--budget-us", "2000"])

        let store = try EventStore(path: directory.path)
        defer { store.close() }
        let runner = try ProjectionRunner(store: store, projections: CampaignEngine.standardProjections())
        let midway = try runner.status().first { $0.name == "segments" }!
        #expect(midway.partWay && midway.lag == 1, "killed at \(midway.checkpoint) of \(midway.head)")
        let partly = try runner.read("segments") { try $0.count(Key.make(["n", "acme", "seg_old"])) }
        #expect((990..<Self.membersAfterTheRuleChange).contains(partly), "\(partly) members part-way")
        try runner.catchUp()
        #expect(try runner.status().allSatisfy { $0.lag == 0 || $0.mode == .inline })
        let report = try runner.verify("segments")
        #expect(report.matches, "\(report.differenceCount) differences")
        let members = try runner.read("segments") { try $0.count(Key.make(["n", "acme", "seg_old"])) }
        #expect(members == Self.membersAfterTheRuleChange)
        let status = try runner.status().first { $0.name == "segments" }!
        #expect(!status.partWay)
    }

    @Test func aRefreshWithManyMembershipsDueIsAppliedInShortPartsAndEndsAsOneWholeApplyWould() async throws {
        let directory = TemporaryDirectory()
        let now = Date()
        do {
            // 3,000 contacts seen 0–19 days ago; the 1,050 seen within 7 days are members, each with a
            // boundary when its 7 days run out.
            let engine = try CampaignEngine(directory: directory.path)
            let admin = Self.acmeAdmin
            let contacts = (0..<3_000).map {
                ContactInput(
                    contactId: "ctc_\($0)",
                    attributes: ["last_seen_at": .string(Timestamp.format(now - Double($0 % 20) * 86_400 - 60))])
            }
            let rule = try JSON.parse(#"{"all":[{"field":"last_seen_at","operator":"within_last_days","value":7}]}"#)
            let created = await engine.execute(
                .command(
                    .segment(.create(segmentId: "seg_recent", name: "Recent", rules: rule)), as: admin, requestId: "r1")
            )
            let imported = await engine.execute(.command(.contact(.import(contacts)), as: admin, requestId: "r2"))
            #expect(created.status == 201 && imported.status < 300)
            try await engine.projections.catchUpOnWriter("segments")
            engine.close()
        }
        // A refresh 30 days on, appended as the scheduler would; every membership is due by then.
        let store = try EventStore(path: directory.path)
        defer { store.close() }
        let later = now + 30 * 86_400
        let refresh = MembershipEvent.refreshed(through: later, due: 1_050).domainEvent
        _ = try await store.append(
            AppendRequest(streams: [
                StreamAppend(
                    streamId: "acme:" + SegmentMembership.refreshStream, expectedVersion: .any,
                    events: [
                        NewEvent(
                            type: refresh.type, occurredAt: later, tenant: "acme", actor: "scheduler",
                            requestId: "tick",
                            causationId: "tick", payload: refresh.payload.bytes)
                    ])
            ]))
        let runner = try ProjectionRunner(
            store: store, projections: CampaignEngine.standardProjections(), jobBudget: .milliseconds(2))
        let count = { try runner.read("segments") { try $0.count(Key.make(["n", "acme", "seg_recent"])) } }
        #expect(try count() == 1_050)
        let before = try runner.status().first { $0.name == "segments" }!
        var checkpoints = [UInt64]()
        try runner.catchUp("segments") { _, checkpoint in checkpoints.append(checkpoint) }
        #expect(checkpoints.count >= 3, "1,050 due memberships took \(checkpoints.count) transactions")
        #expect(checkpoints.dropLast().allSatisfy { $0 == before.checkpoint })
        #expect(checkpoints.last == before.head)
        #expect(try count() == 0, "every contact was last seen more than 7 days before the refresh")
        let report = try runner.verify("segments")
        #expect(report.matches, "\(report.differenceCount) differences")
    }

    /// A projection whose output depends on its version: v1 counts events per type, v2 per stream.
    struct Counter: Projection {
        var version: Int
        var failOn: UInt64? = nil
        var name: String { "counter" }
        var mode: ProjectionMode { .catchUp }
        struct Boom: Error {}

        func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws {
            if event.envelope.position == failOn { throw Boom() }
            try table.add(1, to: Key.make([version == 1 ? event.envelope.type : event.envelope.streamId]))
        }
    }

    func storeWithEvents(_ count: Int) async throws -> (TemporaryDirectory, EventStore) {
        let directory = TemporaryDirectory()
        let store = try EventStore(path: directory.path)
        for n in 0..<count {
            let event = NewEvent(
                type: n % 2 == 0 ? "even" : "odd", occurredAt: testStart, tenant: "t", actor: "a", requestId: "r",
                causationId: "c", payload: Array("{}".utf8))
            _ = try await store.append(
                AppendRequest(streams: [StreamAppend(streamId: "s\(n % 3)", expectedVersion: .any, events: [event])]))
        }
        return (directory, store)
    }

    /// An inline projection that reads only `even` events; it notes every type it is handed.
    struct EvenOnly: Projection {
        let handed = TypesHanded()
        var name: String { "even-only" }
        var version: Int { 1 }
        var mode: ProjectionMode { .inline }
        var eventTypes: Set<String>? { ["even"] }

        func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws {
            handed.note(event.envelope.type)
            guard event.envelope.type == "even" else { return }
            try table.add(1, to: Key.make(["even"]))
        }
    }

    /// Types handed to a projection. Invariant that makes `@unchecked Sendable` safe: `types` is
    /// touched only under `lock`.
    final class TypesHanded: @unchecked Sendable {
        private let lock = NSLock()
        private var types: Set<String> = []
        func note(_ type: String) { lock.withLock { _ = types.insert(type) } }
        var all: Set<String> { lock.withLock { types } }
    }

    @Test func aGroupCommitAppliesInlineOnlyTheTypesAProjectionReadsAndEndsAtItsLastEvent() async throws {
        let (directory, store) = try await storeWithEvents(0)
        _ = directory
        defer { store.close() }
        let projection = EvenOnly()
        let runner = try ProjectionRunner(store: store, projections: [projection])
        try runner.prepare()
        // Ten events appended behind the projection's back: the first inline apply catches them up.
        for n in 0..<10 {
            _ = try await store.append(
                AppendRequest(streams: [
                    StreamAppend(
                        streamId: "raw", expectedVersion: .any,
                        events: [
                            NewEvent(
                                type: n % 2 == 0 ? "even" : "odd", occurredAt: testStart, tenant: "t", actor: "a",
                                requestId: "r", causationId: "c", payload: Array("{}".utf8))
                        ])
                ]))
        }
        // Then 40 requests held until all wait, so they commit in one transaction, each applying
        // its events inline (sent once the writer holds, see `holdWriter`).
        let release = try await holdWriter { job in store.enqueueWrite { _ in job() } }
        defer { release.signal() }  // also when the wait below throws, so the store can close
        let before = store.statistics.groupCommitTransactions
        let count = 40
        let appends = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for n in 0..<count {
                    group.addTask {
                        let events = ["even", "odd", "odd"].map {
                            NewEvent(
                                type: $0, occurredAt: testStart, tenant: "t", actor: "a", requestId: "r\(n)",
                                causationId: "c", payload: Array("{}".utf8))
                        }
                        var request = AppendRequest(
                            streams: [StreamAppend(streamId: "s\(n)", expectedVersion: .noStream, events: events)])
                        request.afterAppend = { txn, receipt in try runner.applyInline(receipt.events, in: txn) }
                        _ = try await store.append(request)
                    }
                }
                try await group.waitForAll()
            }
        }
        try await waitUntil("\(count) requests queued") { store.statistics.queuedRequests >= count }
        release.signal()
        try await appends.value
        #expect(store.statistics.groupCommitTransactions - before == 1)
        let head = try store.head().position
        #expect(head == 10 + 3 * UInt64(count))
        #expect(try runner.status().first?.checkpoint == head)
        #expect(projection.handed.all == ["even"], "inline, only the types it reads")
        #expect(try runner.read("even-only") { try $0.count(Key.make(["even"])) } == 5 + count)
        #expect(try runner.verify("even-only").matches)
    }

    @Test func aBumpedProjectionVersionRebuildsOnOpen() async throws {
        let (directory, store) = try await storeWithEvents(30)
        _ = directory
        defer { store.close() }
        let v1 = try ProjectionRunner(store: store, projections: [Counter(version: 1)])
        try v1.prepare()
        #expect(try v1.read("counter") { try $0.count(Key.make(["even"])) } == 15)
        let v2 = try ProjectionRunner(store: store, projections: [Counter(version: 2)])
        #expect(try v2.status().first?.builtVersion == 1)
        try v2.prepare()
        #expect(try v2.status().first?.builtVersion == 2)
        #expect(try v2.read("counter") { try ($0.count(Key.make(["even"])), $0.count(Key.make(["s0"]))) } == (0, 10))
    }

    @Test func anInterruptedRebuildResumesAndReadersSeeTheOldModelUntilTheSwitch() async throws {
        let (directory, store) = try await storeWithEvents(100)
        _ = directory
        defer { store.close() }
        try ProjectionRunner(store: store, projections: [Counter(version: 1)]).prepare()
        let failing = try ProjectionRunner(store: store, projections: [Counter(version: 2, failOn: 75)])
        var seen = [UInt64]()
        #expect(throws: Counter.Boom.self) { try failing.rebuild("counter", batchSize: 20) { seen.append($0.done) } }
        #expect(seen == [20, 40, 60])
        // Still version 1 for readers: the half-built scratch slot is not visible.
        #expect(try failing.read("counter") { try $0.count(Key.make(["even"])) } == 50)
        #expect(try failing.status().first?.rebuildCheckpoint == 60)
        let resumed = try ProjectionRunner(store: store, projections: [Counter(version: 2)])
        var progress = [RebuildProgress]()
        try resumed.rebuild("counter", batchSize: 20) { progress.append($0) }
        #expect(progress.map(\.done) == [80, 100])
        #expect(progress.last?.total == 100 && (progress.last?.eventsPerSecond ?? 0) > 0)
        #expect(try resumed.read("counter") { try $0.count(Key.make(["s1"])) } == 33)
        #expect(try resumed.verify("counter").matches)
    }

    /// A flag one task raises and another reads. Invariant that makes `@unchecked Sendable` safe:
    /// `raised` is touched only under `lock`.
    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var raised = false
        func set() { lock.withLock { raised = true } }
        var isSet: Bool { lock.withLock { raised } }
    }

    @Test func verifyMatchesWhileAnotherWriterKeepsAppending() async throws {
        let (directory, store) = try await storeWithEvents(300)
        _ = directory
        defer { store.close() }
        let runner = try ProjectionRunner(store: store, projections: [Counter(version: 1)])
        try runner.prepare()
        let done = Flag()
        let appender = Task {
            var appended = 0
            while !done.isSet {
                let event = NewEvent(
                    type: "odd", occurredAt: testStart, tenant: "t", actor: "a", requestId: "r", causationId: "c",
                    payload: Array("{}".utf8))
                _ = try await store.append(
                    AppendRequest(streams: [StreamAppend(streamId: "s9", expectedVersion: .any, events: [event])]))
                appended += 1
            }
            return appended
        }
        var reports = [VerifyReport]()
        for _ in 0..<5 { reports.append(try await Task.detached { try runner.verify("counter") }.value) }
        done.set()
        let appended = try await appender.value
        #expect(appended > 0)
        let differences = reports.map { $0.differenceCount }
        #expect(differences == [0, 0, 0, 0, 0])
        #expect(reports.allSatisfy { $0.entries > 0 })
    }

    @Test func verifyOfAnInlineModelMatchesWhileCommandsKeepCommitting() async throws {
        let t = try TestEngine()
        for n in 0..<20 {
            let created = await t.command(
                "campaign.create", #"{"campaignId":"cmp_\#(n)","name":"Campaign \#(n)","channel":"email"}"#)
            #expect(created.status == 201, "\(created)")
        }
        let done = Flag()
        let engine = t.engine
        let writer = Task {
            var committed = 0
            while !done.isSet {
                let response = await engine.handle(
                    line:
                        #"{"requestId":"u\#(committed)","principal":\#(admin()),"command":"campaign.update","#
                        + #""payload":{"campaignId":"cmp_\#(committed % 20)","name":"Renamed \#(committed)"}}"#)
                if response.contains(#""status":201"#) { committed += 1 }
            }
            return committed
        }
        // Commands land before, during and after each verify's steps; one landing between its last
        // write and its read is rare (a mutation that drops the head check failed one run in six).
        var differences = [Int]()
        for _ in 0..<20 {
            differences.append(
                try await Task.detached { try engine.projections.verify("campaign-board") }.value.differenceCount)
        }
        done.set()
        #expect(await writer.value > 0)
        #expect(differences == Array(repeating: 0, count: 20))
    }

    /// A projection that writes 2,000 rows for each `even` event, in parts when asked to stop; it
    /// can fail at one row of one event, and counts the parts it resumed.
    struct Spreader: PartialApply {
        final class Parts: @unchecked Sendable {
            private let lock = NSLock()
            private var resumed = 0
            private var first: Bool?
            func add(resumed isResumed: Bool) {
                lock.withLock {
                    first = first ?? isResumed
                    if isResumed { resumed += 1 }
                }
            }
            /// Parts that resumed an event.
            var count: Int { lock.withLock { resumed } }
            /// Whether the first part this value applied resumed an event.
            var firstResumed: Bool? { lock.withLock { first } }
        }
        var version: Int
        var failAt: (position: UInt64, row: Int)? = nil
        let parts = Parts()
        var name: String { "spreader" }
        var mode: ProjectionMode { .catchUp }
        struct Boom: Error {}
        static let rows = 2_000

        func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws {
            _ = try apply(event, to: table, resumingAfter: nil, shouldStop: { false })
        }

        func apply(
            _ event: ProjectedEvent, to table: ProjectionTable, resumingAfter resume: [UInt8]?, shouldStop: () -> Bool
        ) throws -> [UInt8]? {
            guard event.envelope.type == "even" else { return nil }
            let position = event.envelope.position
            parts.add(resumed: resume != nil)
            var row = resume.map { Int(Key.readU64($0)) + 1 } ?? 0
            while row < Self.rows {
                if let failAt, failAt.position == position, row >= failAt.row { throw Boom() }
                try table.put(Key.u64(position * 10_000 + UInt64(row)), Key.u64(UInt64(version)))
                if shouldStop() { return Key.u64(UInt64(row)) }
                row += 1
            }
            return nil
        }
    }

    /// Every row of `spreader` holds `version`, and there are 2,000 per `even` event.
    func expectSpreaderRows(_ runner: ProjectionRunner, events: Int, version: UInt64) throws {
        var rows = 0
        var stale = 0
        try runner.read("spreader") { reader in
            try reader.scan([]) { _, value in
                rows += 1
                if Key.readU64(value) != version { stale += 1 }
                return true
            }
        }
        #expect(rows == events * Spreader.rows && stale == 0, "\(rows) rows, \(stale) of an older version")
    }

    @Test func aRebuildAppliesACostlyEventInPartsBesideAProjectionThatAppliesItWhole() async throws {
        let (directory, store) = try await storeWithEvents(4)
        _ = directory
        defer { store.close() }
        try ProjectionRunner(store: store, projections: [Counter(version: 1), Spreader(version: 1)]).prepare()
        let spreader = Spreader(version: 2)
        let runner = try ProjectionRunner(
            store: store, projections: [Counter(version: 2), spreader], jobBudget: .microseconds(100))
        try runner.rebuild(["counter", "spreader"], batchSize: 1_000)
        #expect(spreader.parts.count > 0, "no event was applied in parts")
        try expectSpreaderRows(runner, events: 2, version: 2)
        #expect(try runner.read("counter") { try $0.count(Key.make(["s0"])) } == 2)
        #expect(try runner.status().allSatisfy { $0.builtVersion == 2 && $0.rebuildCheckpoint == nil })
        #expect(try runner.verify("spreader").matches && runner.verify("counter").matches)
    }

    @Test func aRebuildInterruptedInsideAnEventResumesFromItsCommittedPart() async throws {
        let (directory, store) = try await storeWithEvents(4)
        _ = directory
        defer { store.close() }
        try ProjectionRunner(store: store, projections: [Spreader(version: 1)]).prepare()
        // Position 3 is the second `even` event: its rebuild fails at row 1,500, after parts of it committed.
        let failing = try ProjectionRunner(
            store: store, projections: [Spreader(version: 2, failAt: (3, 1_500))], jobBudget: .microseconds(100))
        #expect(throws: Spreader.Boom.self) { try failing.rebuild("spreader", batchSize: 1_000) }
        #expect(try failing.status().first?.rebuildCheckpoint == 2, "position 3 is part-way")
        try expectSpreaderRows(failing, events: 2, version: 1)
        let resuming = Spreader(version: 2)
        let resumed = try ProjectionRunner(store: store, projections: [resuming], jobBudget: .microseconds(100))
        try resumed.rebuild("spreader", batchSize: 1_000)
        #expect(resuming.parts.firstResumed == true, "the resumed rebuild did not start from the committed part")
        try expectSpreaderRows(resumed, events: 2, version: 2)
        #expect(try resumed.verify("spreader").matches)
    }

    /// A folded projection writing 10,000 rows per event, whose fold can be made to emit one row
    /// out of order at the end (a fold's mistake), after enough rows to span several writer jobs.
    struct Numbers: FoldedRebuild {
        var version: Int
        var misordered = false
        var name: String { "numbers" }
        var mode: ProjectionMode { .catchUp }

        static func key(_ position: UInt64, _ n: Int) -> [UInt8] { Key.u64(position * 100_000 + UInt64(n)) }

        func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws {
            for n in 0..<10_000 { try table.put(Self.key(event.envelope.position, n)) }
        }

        func makeFold() -> any RebuildFold { Fold(misordered: misordered) }

        final class Fold: RebuildFold {
            let misordered: Bool
            var positions = [UInt64]()
            init(misordered: Bool) { self.misordered = misordered }
            func fold(_ event: ProjectedEvent) throws { positions.append(event.envelope.position) }
            func rows(_: PersonalDataReader) throws -> SortedRows {
                var rows = SortedRows()
                for position in positions {
                    for n in 0..<10_000 { rows.append(key: Numbers.key(position, n)) }
                }
                if misordered { rows.append(key: Numbers.key(0, 0)) }
                return rows
            }
        }
    }

    @Test func anInterruptedFoldedRebuildStartsOverAndReadersKeepTheOldModel() async throws {
        let (directory, store) = try await storeWithEvents(30)
        _ = directory
        defer { store.close() }
        try ProjectionRunner(store: store, projections: [Numbers(version: 1)]).prepare()
        // 300,000 rows take more than one 50 ms job, so some are committed before the bad one fails.
        let failing = try ProjectionRunner(store: store, projections: [Numbers(version: 2, misordered: true)])
        #expect(throws: EventStoreError.self) { try failing.rebuild("numbers") }
        #expect(try failing.status().first?.builtVersion == 1)
        #expect(try failing.status().first?.rebuildCheckpoint == 0, "no checkpoint until the last row is written")
        // A scratch slot left with rows is cleared, not appended to (the first key would be refused).
        let fixed = try ProjectionRunner(store: store, projections: [Numbers(version: 2)])
        try fixed.rebuild("numbers")
        #expect(try fixed.status().first?.builtVersion == 2)
        let rows = try fixed.read("numbers") { reader in
            var count = 0
            try reader.scan([]) { _, _ in
                count += 1
                return true
            }
            return count
        }
        #expect(rows == 300_000)
        #expect(try fixed.verify("numbers").matches)
    }

    @Test func aRebuildOnTheWriterLetsCommandsCommitBetweenItsBatchesAndEndsIdenticalToTheLiveModels() async throws {
        let t = try TestEngine()
        for n in 0..<40 {
            _ = await t.command(
                "campaign.create", #"{"campaignId":"cmp_\#(n)","name":"Campaign \#(n)","channel":"email"}"#)
        }
        let runner = t.engine.projections
        let names = runner.projections.map(\.name)
        let batches = Positions()
        // Commands keep committing while the rebuild runs on the writer: every projection folds the
        // log off the writer, on two lanes at once whatever the machine, and writes its rows in
        // jobs, then applies what was appended since in batches of at most 7 events.
        async let rebuilt = runner.rebuildOnWriter(names, batchSize: 7, lanes: 2) { progress in
            batches.append(progress.done)
        }
        var answers = [Int?]()
        for n in 0..<40 {
            let body = #"{"campaignId":"cmp_\#(n)","content":{"subject":"S","body":"during the rebuild"}}"#
            answers.append(await t.command("campaign.update", body).status)
        }
        let last = try await rebuilt
        #expect(answers.allSatisfy { $0 == 201 })
        let done = batches.all
        #expect(!done.isEmpty && last.done == done.last && last.done >= 40)
        #expect(zip(done, done.dropFirst()).allSatisfy { $1 >= $0 && $1 - $0 <= 7 })
        for name in names {
            #expect(try runner.status().first { $0.name == name }?.rebuildCheckpoint == nil)
            #expect(try runner.verify(name).matches, "\(name) differs from a fresh rebuild")
        }
        let listed = await t.query("campaign.list", #"{"limit":100}"#)
        #expect(listed.data?["items"]?.arrayValue?.count == 40)
    }

    @Test func tablesOpenOnTheWriterThreadWhileItIsBusy() async throws {
        let (directory, store) = try await storeWithEvents(1)
        _ = directory
        defer { store.close() }
        // The writer is busy with appends while another thread opens tables: each open is a job
        // between two batches and returns a usable handle.
        async let appends: Void = {
            for n in 0..<50 {
                let event = NewEvent(
                    type: "e", occurredAt: testStart, tenant: "t", actor: "a", requestId: "r\(n)", causationId: "c",
                    payload: Array("{}".utf8))
                _ = try await store.append(
                    AppendRequest(streams: [StreamAppend(streamId: "busy", expectedVersion: .any, events: [event])]))
            }
        }()
        for n in 0..<20 {
            let table = try store.table(named: "extra-\(n)")
            try await store.perform { txn in try txn.put([UInt8(n)], forKey: [1], in: table) }
            #expect(try store.read { try $0.value(forKey: [1], in: table) } == [UInt8(n)])
        }
        try await appends
        #expect(try store.streamVersion("busy") == 50)
    }

    @Test func campaignBoardRowsReadBackEveryFieldAndRefuseDamage() {
        let base = CampaignState(
            id: "cmp_1", name: "Ünïcode ✓ name", channel: "email", segmentId: nil, content: nil, sendAt: nil,
            status: .draft, createdAt: Date(timeIntervalSince1970: 1_790_000_000.123),
            updatedAt: Date(timeIntervalSince1970: 1_790_000_001.5), version: 7)
        var full = base
        full.segmentId = "seg_9"
        full.content = Content(subject: "Hi", body: String(repeating: "body ", count: 1_000))
        full.sendAt = Date(timeIntervalSince1970: -86_400.25)
        full.status = .scheduled
        var noSubject = full
        noSubject.content = Content(body: "")
        for state in [base, full, noSubject] {
            let row = Array(state.status.rawValue.utf8) + [0] + CampaignBoard.encode(state)
            #expect(CampaignBoard.state(row) == state)
            // Cut short anywhere, or with a byte too many, it is no row rather than a wrong one.
            for cut in stride(from: state.status.rawValue.utf8.count + 1, to: row.count, by: 97) {
                #expect(CampaignBoard.state(Array(row[..<cut])) == nil)
            }
            #expect(CampaignBoard.state(row + [0]) == nil)
        }
        #expect(CampaignBoard.state(Array("nonsense".utf8) + [0] + CampaignBoard.encode(base)) == nil)
    }

    @Test func verifyReportsATamperedRow() async throws {
        let t = try TestEngine()
        _ = await t.command("campaign.create", #"{"campaignId":"cmp_1","name":"Alpha","channel":"email"}"#)
        _ = await t.command("campaign.create", #"{"campaignId":"cmp_2","name":"Beta","channel":"email"}"#)
        #expect(try t.engine.projections.verify("campaign-board").matches)
        let live = try t.engine.eventStore.table(named: "p:campaign-board:a")
        let key = CampaignBoard.row("acme", "cmp_2")
        try t.engine.eventStore.write { txn in
            try txn.put(Array(#"{"campaignId":"cmp_2","name":"Tampered"}"#.utf8), forKey: key, in: live)
            try txn.put([1], forKey: Key.make(["r", "acme", "cmp_ghost"]), in: live)
        }
        let report = try t.engine.projections.verify("campaign-board")
        #expect(!report.matches && report.differenceCount == 2)
        #expect(report.differences.map(\.key) == [key, Key.make(["r", "acme", "cmp_ghost"])])
        #expect(report.differences.first?.rebuilt.map { String(decoding: $0, as: UTF8.self).contains("Beta") } == true)
        try t.engine.projections.rebuild("campaign-board")
        #expect(try t.engine.projections.verify("campaign-board").matches)
    }

    @Test func inlineProjectionsCatchUpEventsAppendedBehindTheirBack() async throws {
        let t = try TestEngine()
        _ = await t.command("campaign.create", #"{"campaignId":"cmp_1","name":"Alpha","channel":"email"}"#)
        let raw = NewEvent(
            type: "campaign.created", occurredAt: testStart, tenant: "acme", actor: "raw", requestId: "raw",
            causationId: "raw",
            payload: Array(#"{"campaignId":"cmp_raw","name":"Raw","channel":"sms"}"#.utf8))
        _ = try await t.engine.eventStore.append(
            AppendRequest(streams: [StreamAppend(streamId: "acme:cmp_raw", expectedVersion: .noStream, events: [raw])]))
        _ = await t.command("campaign.create", #"{"campaignId":"cmp_3","name":"Gamma","channel":"email"}"#)
        let ids = await t.query("campaign.list", "{}").data?["items"]?.arrayValue?.compactMap {
            $0["campaignId"]?.stringValue
        }
        #expect(ids == ["cmp_1", "cmp_3", "cmp_raw"])
        #expect(try t.engine.projections.verify("campaign-board").matches)
    }

    @Test func everyInlineProjectionsCheckpointReachesTheHeadWithEachCommit() async throws {
        let t = try TestEngine()
        // Commands sent together, so a group commit may put several in one transaction; none of
        // them is an event the publishing queue or the experiment results read.
        let created = await withTaskGroup(of: JSON.self) { group in
            for index in 1...8 {
                group.addTask {
                    await t.command(
                        "campaign.create",
                        #"{"campaignId":"cmp_\#(index)","name":"Campaign \#(index)","channel":"email"}"#)
                }
            }
            return await group.reduce(into: [JSON]()) { $0.append($1) }
        }
        #expect(created.allSatisfy { $0["error"] == nil })
        #expect(await t.command("campaign.update", #"{"campaignId":"cmp_1","name":"Renamed"}"#)["error"] == nil)
        let head = try t.engine.eventStore.read { try $0.headPosition() }
        #expect(head == 9)
        let inline = try t.engine.projections.status().filter { $0.mode == .inline }
        #expect(
            inline.map(\.name).sorted() == [
                "campaign-board", "experiment-results", "publishing-queue", "schedule-index",
            ])
        for status in inline {
            #expect(status.checkpoint == head, "\(status.name) at \(status.checkpoint)")
        }
    }
}

/// Positions reported from another task. Invariant that makes `@unchecked Sendable` safe:
/// `positions` is touched only under `lock`.
final class Positions: @unchecked Sendable {
    private let lock = NSLock()
    private var positions: [UInt64] = []
    func append(_ position: UInt64) { lock.withLock { positions.append(position) } }
    var all: [UInt64] { lock.withLock { positions } }
}
