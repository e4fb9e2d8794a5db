import CampaignDomain
import CampaignEngine
import Foundation
import TestSupport
import Testing

/// Every command and query: without its scope, as a viewer, (for admin commands) as an editor,
/// with an expired token, and from another tenant. Each must give exactly the expected code and
/// leave the data unchanged; with the right principal the same request must pass authorisation.
@Suite struct AuthMatrixTests {
    struct Entry: CustomTestStringConvertible, Sendable {
        let name: String
        let body: String
        let scope: String
        let admin: Bool
        let isQuery: Bool
        /// What another tenant's admin gets: nil when the request only touches its own namespace.
        let crossTenantCode: String?
        var testDescription: String { name }
    }

    static let entries: [Entry] = {
        func command(
            _ name: String, _ payload: String, _ scope: String, admin: Bool = false,
            cross: String? = "RESOURCE_NOT_FOUND"
        ) -> Entry {
            Entry(
                name: name, body: #""command":"\#(name)","payload":\#(payload)"#, scope: scope, admin: admin,
                isQuery: false, crossTenantCode: cross)
        }
        func query(
            _ name: String, _ params: String, _ scope: String, admin: Bool = false,
            cross: String? = "RESOURCE_NOT_FOUND"
        ) -> Entry {
            Entry(
                name: name, body: #""query":"\#(name)","params":\#(params)"#, scope: scope, admin: admin, isQuery: true,
                crossTenantCode: cross)
        }
        let cmp = #"{"campaignId":"cmp_1"}"#
        var list: [Entry] = [
            command(
                "campaign.create", #"{"campaignId":"cmp_new","name":"New one","channel":"sms"}"#, "campaigns:write",
                cross: nil),
            command("campaign.update", #"{"campaignId":"cmp_1","name":"Renamed"}"#, "campaigns:write"),
            command("campaign.attachSegment", #"{"campaignId":"cmp_1","segmentId":"seg_1"}"#, "campaigns:write"),
            command("campaign.schedule", #"{"campaignId":"cmp_1","sendAt":"2026-12-01T00:00:00Z"}"#, "campaigns:write"),
        ]
        for verb in ["unschedule", "activate", "pause", "resume", "complete", "cancel", "archive", "delete"] {
            list.append(command("campaign.\(verb)", cmp, "campaigns:write"))
        }
        list += [
            command(
                "segment.create",
                #"{"segmentId":"seg_new","name":"New","rules":{"all":[{"field":"age","operator":"exists"}]}}"#,
                "segments:write", cross: nil),
            command("segment.update", #"{"segmentId":"seg_1","name":"Renamed"}"#, "segments:write"),
            command("segment.archive", #"{"segmentId":"seg_1"}"#, "segments:write"),
            command(
                "field.define", #"{"name":"shoe_size","type":"number"}"#, "contacts:write", admin: true, cross: nil),
            command("field.update", #"{"name":"tier","values":["a","b","c"]}"#, "contacts:write", admin: true),
            command("contact.upsert", #"{"contactId":"ctc_1","attributes":{"age":40}}"#, "contacts:write", cross: nil),
            command(
                "contact.import", #"{"contacts":[{"contactId":"ctc_1","attributes":{"age":41}}]}"#, "contacts:write",
                cross: nil),
            command("contact.erase", #"{"contactId":"ctc_1"}"#, "contacts:write", admin: true),
            command("system.tick", "{}", "campaigns:write", admin: true, cross: nil),
            command(
                "social.connect",
                #"{"connectionId":"con_new","platform":"x","accountId":"other","#
                    + #""credentialRef":"vault://x/other","expiresAt":"2027-01-01T00:00:00Z"}"#,
                "social:write", cross: nil),
            command("social.refresh", #"{"connectionId":"con_1","expiresAt":"2027-06-01T00:00:00Z"}"#, "social:write"),
            command("social.disconnect", #"{"connectionId":"con_1"}"#, "social:write"),
            command("post.create", #"{"postId":"pst_new","connectionIds":["con_1"],"text":"Hi"}"#, "social:write"),
            command("post.update", #"{"postId":"pst_1","text":"Changed"}"#, "social:write"),
            command("post.schedule", #"{"postId":"pst_1","publishAt":"2026-12-01T00:00:00Z"}"#, "social:write"),
            command("post.unschedule", #"{"postId":"pst_1"}"#, "social:write"),
            command("post.cancel", #"{"postId":"pst_1"}"#, "social:write"),
            command("post.publish", #"{"postId":"pst_1"}"#, "social:write"),
            command(
                "experiment.create",
                #"{"experimentId":"exp_new","campaignId":"cmp_1","name":"E","variants":[{"key":"a","#
                    + #""weight":50},{"key":"b","weight":50}]}"#,
                "experiments:write"),
            command("experiment.update", #"{"experimentId":"exp_1","name":"Renamed"}"#, "experiments:write"),
            command("experiment.start", #"{"experimentId":"exp_1"}"#, "experiments:write"),
            command("experiment.stop", #"{"experimentId":"exp_1"}"#, "experiments:write"),
            command("experiment.recordExposure", #"{"experimentId":"exp_1","contactId":"ctc_1"}"#, "experiments:write"),
            command(
                "experiment.recordConversion", #"{"experimentId":"exp_1","contactId":"ctc_1"}"#, "experiments:write"),
            command("experiment.declareWinner", #"{"experimentId":"exp_1","variant":"a"}"#, "experiments:write"),
            query("campaign.get", cmp, "campaigns:read"),
            query("segment.get", #"{"segmentId":"seg_1"}"#, "segments:read"),
            query("post.get", #"{"postId":"pst_1"}"#, "social:read"),
            query("connection.get", #"{"connectionId":"con_1"}"#, "social:read"),
            query("contact.get", #"{"contactId":"ctc_1"}"#, "contacts:read"),
            query("contact.list", "{}", "contacts:read", cross: nil),
            query("field.list", "{}", "contacts:read", cross: nil),
            query("experiment.get", #"{"experimentId":"exp_1"}"#, "experiments:read"),
            query("experiment.results", #"{"experimentId":"exp_1"}"#, "experiments:read"),
            query("campaign.list", "{}", "campaigns:read", cross: nil),
            query("post.list", "{}", "social:read", cross: nil),
            query("segment.members", #"{"segmentId":"seg_1"}"#, "segments:read"),
            query(
                "segment.preview", #"{"rules":{"all":[{"field":"age","operator":"gte","value":18}]}}"#, "contacts:read",
                cross: nil),
            query("audit.history", "{}", "audit:read", cross: nil),
            query("segment.list", "{}", "segments:read", cross: nil),
            query("connection.list", "{}", "social:read", cross: nil),
            query("experiment.list", cmp, "experiments:read"),
            // About the whole engine: the operator's (acme here) admins only.
            query("system.health", #"{"maximumTickInterval":60}"#, "audit:read", admin: true, cross: "FORBIDDEN"),
        ]
        return list
    }()

    /// Tenant acme, the operator, with seg_1, cmp_1 (draft, segment attached), contact ctc_1 and its
    /// own fields loyalty and tier (an enum).
    func seeded() async throws -> TestEngine {
        var configuration = EngineConfiguration()
        configuration.operatorTenant = "acme"
        let t = try TestEngine(configuration: configuration)
        #expect(
            await t.command(
                "segment.create",
                #"{"segmentId":"seg_1","name":"Adults","rules":{"all":[{"field":"age","operator":"gte","value":18}]}}"#
            ).status == 201)
        #expect(
            await t.command(
                "campaign.create", #"{"campaignId":"cmp_1","name":"Spring","channel":"email","segmentId":"seg_1"}"#
            ).status == 201)
        #expect(await t.command("contact.upsert", #"{"contactId":"ctc_1","attributes":{"age":30}}"#).status == 201)
        #expect(await t.command("field.define", #"{"name":"loyalty","type":"number"}"#).status == 201)
        #expect(
            await t.command("field.define", #"{"name":"tier","type":"enum","values":["a","b"]}"#).status == 201)
        #expect(
            await t.command(
                "social.connect",
                #"{"connectionId":"con_1","platform":"x","accountId":"acme","#
                    + #""credentialRef":"vault://x/acme","expiresAt":"2027-01-01T00:00:00Z"}"#
            ).status == 201)
        #expect(
            await t.command("post.create", #"{"postId":"pst_1","connectionIds":["con_1"],"text":"Hello"}"#).status
                == 201)
        #expect(
            await t.command(
                "experiment.create",
                #"{"experimentId":"exp_1","campaignId":"cmp_1","name":"E","variants":[{"key":"a","#
                    + #""weight":50},{"key":"b","weight":50}]}"#
            ).status == 201)
        return t
    }

    func send(_ t: TestEngine, _ entry: Entry, as principal: String) async -> JSON {
        await t.send(#"{"requestId":"m","principal":\#(principal),\#(entry.body)}"#)
    }

    @Test(arguments: entries)
    func eachRequestIsRefusedExactlyAsSpecified(_ entry: Entry) async throws {
        let t = try await seeded()
        let before = try t.engine.eventStore.head().position

        let withoutScope = await send(t, entry, as: principal(scopes: allScopes.filter { $0 != entry.scope }))
        #expect(withoutScope.code == "INVALID_SCOPE" && withoutScope.status == 403)
        #expect(withoutScope["error"]?["param"]?.stringValue == entry.scope)

        let viewer = await send(t, entry, as: principal(role: "viewer"))
        if entry.isQuery && !entry.admin {
            #expect(viewer.status == 200, "viewers may read: \(viewer)")
        } else {
            #expect(viewer.code == "FORBIDDEN" && viewer.status == 403)
        }
        if entry.admin {
            let editor = await send(t, entry, as: principal(role: "editor"))
            #expect(editor.code == "FORBIDDEN" && editor.status == 403)
        }

        let expired = await send(t, entry, as: principal(expiresAt: "2026-11-21T09:59:59Z"))
        #expect(expired.code == "TOKEN_EXPIRED" && expired.status == 401)

        let anonymous = await t.send(#"{"requestId":"m",\#(entry.body)}"#)
        #expect(anonymous.code == "UNAUTHORIZED" && anonymous.status == 401)
        let unknownSubject = await send(t, entry, as: principal(subject: ""))
        #expect(unknownSubject.code == "UNAUTHORIZED")

        #expect(try t.engine.eventStore.head().position == before, "a refused request wrote something")

        let stranger = await send(t, entry, as: admin("globex"))
        if let code = entry.crossTenantCode {
            #expect(stranger.code == code && stranger.status == (code == "FORBIDDEN" ? 403 : 404), "\(stranger)")
            #expect(stranger["error"]?["message"]?.stringValue?.contains("acme") == false)
            #expect(try t.engine.eventStore.head().position == before)
        } else {
            // Creates, upserts and lists work in the stranger's own namespace and leave acme's data alone.
            #expect(stranger.code == nil, "\(stranger)")
            if entry.isQuery, let items = stranger.data?["items"]?.arrayValue {
                // Every tenant's schema has the built-in fields: a field acme defined would be acme's.
                let own = entry.name == "field.list" ? items.filter { $0["builtIn"] != .bool(true) } : items
                #expect(own.isEmpty, "another tenant's list shows acme's data: \(items)")
            }
            for stream in ["acme:cmp_1", "acme:seg_1", "acme:ctc_1", "acme:con_1", "acme:pst_1", "acme:exp_1"] {
                #expect(try t.engine.eventStore.streamVersion(stream) == 1)
            }
        }

        let allowed = await send(t, entry, as: admin())
        #expect(
            !["UNAUTHORIZED", "TOKEN_EXPIRED", "FORBIDDEN", "INVALID_SCOPE"].contains(allowed.code ?? ""), "\(allowed)")
    }

    /// A principal with the segment scopes but not `contacts:read` could learn contacts' values a
    /// rule at a time: write `email starts_with "a"` and list the members, then "ab", and so on.
    /// Writing rules now needs `contacts:read` too (as `segment.preview` does); renaming or
    /// archiving a segment, and reading one, do not.
    @Test func writingSegmentRulesNeedsContactsReadToo() async throws {
        let t = try await seeded()
        let before = try t.engine.eventStore.head().position
        let noContacts = principal(role: "editor", scopes: allScopes.filter { $0 != "contacts:read" })
        let rules = #"{"all":[{"field":"email","operator":"starts_with","value":"a"}]}"#
        for (name, payload) in [
            ("segment.create", #"{"segmentId":"seg_probe","name":"Probe","rules":\#(rules)}"#),
            ("segment.update", #"{"segmentId":"seg_1","rules":\#(rules)}"#),
            ("segment.update", #"{"segmentId":"seg_1","name":"Renamed","rules":\#(rules)}"#),
        ] {
            let refused = await t.command(name, payload, as: noContacts)
            #expect(refused.code == "INVALID_SCOPE" && refused.status == 403, "\(name): \(refused)")
            #expect(refused["error"]?["param"] == .string("contacts:read"), "\(name)")
            #expect(
                refused["error"]?["message"]
                    == .string("scope contacts:read is required as well: the request reads what that scope guards"))
            // The family's own scope is named first.
            let noSegments = await t.command(
                name, payload, as: principal(role: "editor", scopes: allScopes.filter { $0 != "segments:write" }))
            #expect(noSegments["error"]?["param"] == .string("segments:write"), "\(name)")
        }
        #expect(try t.engine.eventStore.head().position == before, "a refused rule was written")
        #expect(
            await t.command("segment.update", #"{"segmentId":"seg_1","name":"Grown-ups"}"#, as: noContacts).status
                == 201)
        let viewer = principal(role: "viewer", scopes: ["segments:read"])
        #expect(await t.query("segment.members", #"{"segmentId":"seg_1"}"#, as: viewer).status == 200)
        #expect(await t.command("segment.archive", #"{"segmentId":"seg_1"}"#, as: noContacts).status == 201)
        let allowed = principal(role: "editor", scopes: ["segments:write", "contacts:read"])
        #expect(
            await t.command("segment.create", #"{"segmentId":"seg_2","name":"Probe","rules":\#(rules)}"#, as: allowed)
                .status == 201)
    }

    @Test func theMatrixCoversEveryCommandAndQuery() {
        let covered = Set(Self.entries.map(\.name))
        for name in CommandWire.names + Query.names {
            #expect(covered.contains(name), "\(name) is not in the auth matrix")
        }
    }
}
