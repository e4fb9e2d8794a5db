import CampaignDomain
import CampaignEngine
import Foundation
import Testing

/// A request built in Swift meets the checks of form that the wire decoder makes: typed values say
/// what kind each field is, not that an id is one, that a page has a size, or that a key fits.
@Suite struct SwiftRequestFormTests {
    let editor = Principal(
        tenant: "acme", subject: "u_1", role: .admin, scopes: Set(Principal.allScopes),
        expiresAt: Timestamp.parse("2027-01-01T00:00:00Z")!)

    /// The typed request and the wire line that says the same thing answer the same bytes.
    func expectSameAnswer(
        _ t: TestEngine, _ typed: EngineRequest, _ wire: String, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let answer = await t.engine.execute(typed)
        let sent = await t.send(wire)
        #expect(answer.status == 400, sourceLocation: sourceLocation)
        #expect(try JSON.parse(answer.bytes) == sent, sourceLocation: sourceLocation)
    }

    func command(_ command: Command) -> EngineRequest { .command(command, as: editor, requestId: "r") }

    func wire(_ name: String, _ payload: String) -> String {
        #"{"requestId":"r","principal":\#(admin()),"command":"\#(name)","payload":\#(payload)}"#
    }

    @Test func aCommandBuiltInSwiftIsRefusedWhereItsWireFormIsAndWritesNothing() async throws {
        let t = try TestEngine()
        let email: JSONObject = ["email": .string("a@b.co")]
        let cases: [(Command, String, String)] = [
            // The tenant's field definitions are the stream `acme:schema`: no contact may be written there.
            (
                .contact(.upsert(ContactInput(contactId: "schema", attributes: email))), "contact.upsert",
                #"{"contactId":"schema","attributes":{"email":"a@b.co"}}"#
            ),
            (
                .campaign(.create(campaignId: "nope", name: "Spring", channel: "email")), "campaign.create",
                #"{"campaignId":"nope","name":"Spring","channel":"email"}"#
            ),
            (
                .campaign(.attachSegment(campaignId: "cmp_1", segmentId: "segment-memberships")),
                "campaign.attachSegment", #"{"campaignId":"cmp_1","segmentId":"segment-memberships"}"#
            ),
            (
                .post(.create(postId: "pst_1", connectionIds: ["con_1", "acme:con_2"], text: "Hi")), "post.create",
                #"{"postId":"pst_1","connectionIds":["con_1","acme:con_2"],"text":"Hi"}"#
            ),
            (
                .post(.create(postId: "pst_1", connectionIds: ["con_1"], text: "Hi", campaignId: "cmp_1/2")),
                "post.create", #"{"postId":"pst_1","connectionIds":["con_1"],"text":"Hi","campaignId":"cmp_1/2"}"#
            ),
            (
                .post(.update(postId: "pst_1", connectionIds: ["con_1", "con 2"])), "post.update",
                #"{"postId":"pst_1","connectionIds":["con_1","con 2"]}"#
            ),
            (
                .experiment(.recordExposure(experimentId: "exp_1", contactId: "")), "experiment.recordExposure",
                #"{"experimentId":"exp_1","contactId":""}"#
            ),
            (
                .segment(.archive(segmentId: "seg_" + String(repeating: "s", count: 65))), "segment.archive",
                #"{"segmentId":"seg_\#(String(repeating: "s", count: 65))"}"#
            ),
            (.social(.disconnect(connectionId: "con_")), "social.disconnect", #"{"connectionId":"con_"}"#),
        ]
        for (typed, name, payload) in cases {
            try await expectSameAnswer(t, command(typed), wire(name, payload))
        }
        // An import reports an item whose id is none at its index, in Swift as on the wire.
        let badIds = Command.contact(
            .import([
                ContactInput(contactId: "ctc_1:x", attributes: email), ContactInput(contactId: "", attributes: email),
            ]))
        let typedImport = await t.engine.execute(command(badIds))
        let sentImport = await t.send(
            wire(
                "contact.import",
                #"{"contacts":[{"contactId":"ctc_1:x","attributes":{"email":"a@b.co"}},"#
                    + #"{"contactId":"","attributes":{"email":"a@b.co"}}]}"#))
        #expect(typedImport.status == 207 && sentImport.status == 207)
        #expect(try JSON.parse(typedImport.bytes) == sentImport)
        let tooMany = (0...ContactCommand.maximumImportSize).map {
            ContactInput(contactId: "ctc_\($0)", attributes: email)
        }
        let refused = await t.engine.execute(command(.contact(.import(tooMany))))
        #expect(refused.status == 422 && refused.error?.pointer == "/payload/contacts")
        #expect(try t.engine.eventStore.head().position == 0)
        // The schema's stream holds field definitions only: the next one is its first event.
        let defined = await t.command("field.define", #"{"name":"score","type":"number"}"#)
        #expect(defined.status == 201 && defined.data?["version"]?.integerValue == 1)
    }

    @Test func aRuleTreeOrAnAttributeNestsNoDeeperInSwiftThanOnTheWire() async throws {
        let t = try TestEngine()
        /// Rules `levels` deep (a group of arrays in arrays …), as a value and as wire text.
        func rules(_ levels: Int) -> (JSON, String) {
            var value = JSON.array([])
            var text = "[]"
            for _ in 2..<levels {
                value = .array([value])
                text = "[\(text)]"
            }
            return (.object(["all": value]), #"{"all":\#(text)}"#)
        }
        // A request's document and its payload are two of the 32 levels: rules may take 30 (and are
        // then refused for their groups), not 31.
        for (levels, code) in [(30, "INVALID_SEGMENT_RULE"), (31, "INVALID_FORMAT")] {
            let (value, text) = rules(levels)
            let typed = await t.engine.execute(
                command(.segment(.create(segmentId: "seg_1", name: "Deep", rules: value))))
            let sent = await t.send(wire("segment.create", #"{"segmentId":"seg_1","name":"Deep","rules":\#(text)}"#))
            #expect(typed.error?.code.rawValue == code && sent.code == code, "\(levels)")
        }
        // Deeper than a thread of the pool could encode for the idempotency fingerprint: refused before.
        let (deep, _) = rules(10_000)
        let keyed = await t.engine.execute(
            .command(
                .segment(.create(segmentId: "seg_1", name: "Deep", rules: deep)), as: editor, requestId: "r",
                idempotencyKey: "k"))
        #expect(keyed.error?.code == .invalidFormat && keyed.error?.pointer == "/payload/rules")
        let preview = await t.engine.execute(.query(.segmentPreview(rules: deep, limit: 5), as: editor, requestId: "q"))
        #expect(preview.error?.pointer == "/params/rules")
        let attribute = ContactInput(contactId: "ctc_1", attributes: ["tags": deep])
        let upsert = await t.engine.execute(command(.contact(.upsert(attribute))))
        #expect(upsert.error?.code == .invalidFormat && upsert.error?.pointer == "/payload/attributes/tags")
        let imported = await t.engine.execute(command(.contact(.import([attribute]))))
        #expect(imported.error?.pointer == "/payload/contacts/0/attributes/tags")
        #expect(try t.engine.eventStore.head().position == 0)
    }

    @Test func aRequestBuiltInSwiftHasTheWiresLimitsOnItsIdKeyVersionAndPages() async throws {
        let t = try TestEngine()
        let create = Command.campaign(.create(campaignId: "cmp_1", name: "Spring", channel: "email"))
        let longId = await t.engine.execute(.command(create, as: editor, requestId: String(repeating: "r", count: 129)))
        #expect(longId.error?.pointer == "/requestId" && longId.requestId == "unknown")
        // An LMDB key holds 511 bytes: a longer key was a storage failure (500), not the caller's error.
        try await expectSameAnswer(
            t, .command(create, as: editor, requestId: "r", idempotencyKey: String(repeating: "k", count: 600)),
            #"{"requestId":"r","idempotencyKey":"\#(String(repeating: "k", count: 600))","principal":\#(admin()),"#
                + #""command":"campaign.create","payload":{"campaignId":"cmp_1","name":"Spring","channel":"email"}}"#)
        let tooFar = await t.engine.execute(.command(create, as: editor, requestId: "r", expectedVersion: .max))
        #expect(tooFar.status == 400 && tooFar.error?.pointer == "/expectedVersion")
        // A scope no engine grants is a typo on either path, even beside the scope the command needs.
        var typo = editor
        typo.scopes.insert("campaign:write")
        let mistyped = await t.engine.execute(.command(create, as: typo, requestId: "r"))
        #expect(mistyped.error?.code == .invalidFormat && mistyped.error?.pointer == "/principal/scopes")
        let sentTypo = await t.send(
            #"{"requestId":"r","principal":\#(principal(scopes: allScopes + ["campaign:write"])),"#
                + #""command":"campaign.create","payload":{"campaignId":"cmp_1","name":"Spring","channel":"email"}}"#)
        #expect(sentTypo.code == "INVALID_FORMAT" && sentTypo["error"]?["message"] == .string(mistyped.error!.message))

        func query(_ query: Query) -> EngineRequest { .query(query, as: editor, requestId: "q") }
        func wire(_ name: String, _ params: String) -> String {
            #"{"requestId":"q","principal":\#(admin()),"query":"\#(name)","params":\#(params)}"#
        }
        let queries: [(Query, String, String)] = [
            (.campaignGet(campaignId: "schema"), "campaign.get", #"{"campaignId":"schema"}"#),
            // A page of no size was a page of every item.
            (.contactList(segmentId: nil, page: .init(limit: 0)), "contact.list", #"{"limit":0}"#),
            (
                .campaignList(status: nil, from: nil, to: nil, page: .init(limit: 501)), "campaign.list",
                #"{"limit":501}"#
            ),
            (
                .segmentMembers(segmentId: "seg_1", page: .init(limit: -1)), "segment.members",
                #"{"segmentId":"seg_1","limit":-1}"#
            ),
            (
                .segmentPreview(rules: .object([:]), limit: 501), "segment.preview",
                #"{"rules":{},"limit":501}"#
            ),
            (
                .auditHistory(streamId: "acme:cmp_1/..", actor: nil, from: nil, to: nil, page: .init()),
                "audit.history", #"{"streamId":"acme:cmp_1/.."}"#
            ),
            (
                .experimentList(status: nil, campaignId: "exp_1", page: .init()), "experiment.list",
                #"{"campaignId":"exp_1"}"#
            ),
            (
                .postList(status: nil, from: nil, to: nil, connectionId: "acme:con_1", page: .init()), "post.list",
                #"{"connectionId":"acme:con_1"}"#
            ),
            (.systemHealth(maximumTickInterval: 0), "system.health", #"{"maximumTickInterval":0}"#),
        ]
        for (typed, name, params) in queries {
            try await expectSameAnswer(t, query(typed), wire(name, params))
        }
        let keyed = await t.engine.execute(
            EngineRequest(
                requestId: "q", idempotencyKey: "k", principal: editor,
                body: .query(.campaignGet(campaignId: "cmp_1"))))
        #expect(keyed.error?.code == .invalidField && keyed.error?.pointer == "/idempotencyKey")
        #expect(try t.engine.eventStore.head().position == 0)
    }
}
