import CampaignDomain
import CampaignEngine
import EventStore
import Foundation
import TestSupport
import Testing

@Suite struct CommandConcurrencyTests {
    @Test func racersExpectingTheSameVersionHaveExactlyOneWinner() async throws {
        let t = try TestEngine()
        #expect(
            await t.command("campaign.create", #"{"campaignId":"cmp_1","name":"Race","channel":"email"}"#).status == 201
        )
        let responses = await withTaskGroup(of: JSON.self) { group in
            for n in 0..<40 {
                group.addTask {
                    await t.command(
                        "campaign.update", #"{"campaignId":"cmp_1","content":{"subject":"S","body":"writer \#(n)"}}"#,
                        requestId: "r\(n)", extra: #""expectedVersion":1,"#)
                }
            }
            return await group.reduce(into: [JSON]()) { $0.append($1) }
        }
        #expect(responses.filter { $0.status == 201 }.count == 1)
        let losers = responses.filter { $0.status != 201 }
        #expect(losers.count == 39)
        for loser in losers {
            #expect(loser.code == "RESOURCE_CONFLICT")
            #expect(
                loser["error"]?["currentVersion"]?.integerValue == 2
                    && loser["error"]?["expectedVersion"]?.integerValue == 1)
        }
    }

    @Test func writersWithoutAnExpectationAllLandAndNoneIsLost() async throws {
        let t = try TestEngine()
        #expect(
            await t.command("campaign.create", #"{"campaignId":"cmp_1","name":"Race","channel":"email"}"#).status == 201
        )
        let statuses = await withTaskGroup(of: Int?.self) { group in
            for n in 0..<40 {
                group.addTask {
                    await t.command(
                        "campaign.update", #"{"campaignId":"cmp_1","content":{"subject":"S","body":"writer \#(n)"}}"#,
                        requestId: "r\(n)"
                    ).status
                }
            }
            return await group.reduce(into: [Int?]()) { $0.append($1) }
        }
        #expect(statuses.allSatisfy { $0 == 201 })
        let events = try t.engine.eventStore.readStream("acme:cmp_1")
        #expect(events.count == 41)
        #expect(Set(events.dropFirst().map(\.requestId)) == Set((0..<40).map { "r\($0)" }))
    }

    @Test func racingCreatesOfOneNameLeaveExactlyOneCampaign() async throws {
        let t = try TestEngine()
        let responses = await withTaskGroup(of: JSON.self) { group in
            for n in 0..<20 {
                group.addTask {
                    await t.command("campaign.create", #"{"campaignId":"cmp_\#(n)","name":"Only One","channel":"sms"}"#)
                }
            }
            return await group.reduce(into: [JSON]()) { $0.append($1) }
        }
        #expect(responses.filter { $0.status == 201 }.count == 1)
        #expect(responses.filter { $0.code == "DUPLICATE_RESOURCE" }.count == 19)
        #expect(try t.engine.eventStore.head().position == 1)
    }

    @Test func segmentArchivedWhileACampaignSchedulesNeverLeavesAScheduledCampaignOnAnArchivedSegment() async throws {
        for round in 0..<5 {
            let t = try TestEngine()
            _ = await t.command(
                "segment.create",
                #"{"segmentId":"seg_1","name":"S","rules":{"all":[{"field":"age","operator":"exists"}]}}"#)
            _ = await t.command(
                "campaign.create", #"{"campaignId":"cmp_1","name":"C","channel":"sms","segmentId":"seg_1"}"#)
            async let schedule = t.command(
                "campaign.schedule", #"{"campaignId":"cmp_1","sendAt":"2026-12-01T00:00:00Z"}"#)
            async let archive = t.command("segment.archive", #"{"segmentId":"seg_1"}"#)
            let (scheduled, archived) = await (schedule, archive)
            #expect((scheduled.status == 201) != (archived.status == 201), "round \(round): \(scheduled) \(archived)")
        }
    }
}

@Suite struct ContactTests {
    @Test func upsertMergesAttributesNullRemovesAndNoChangeIsA200() async throws {
        let t = try TestEngine()
        #expect(
            await t.command(
                "contact.upsert", #"{"contactId":"ctc_1","attributes":{"email":"ann@example.com","age":30}}"#
            ).status == 201)
        let merged = await t.command("contact.upsert", #"{"contactId":"ctc_1","attributes":{"age":31,"country":"FR"}}"#)
        #expect(merged.data?["fields"] == .array([.string("age"), .string("country"), .string("email")]))
        let removed = await t.command("contact.upsert", #"{"contactId":"ctc_1","attributes":{"email":null}}"#)
        #expect(removed.data?["fields"] == .array([.string("age"), .string("country")]))
        let same = await t.command("contact.upsert", #"{"contactId":"ctc_1","attributes":{"age":31}}"#)
        #expect(same.status == 200 && same.data?["changed"] == .bool(false) && same.data?["version"]?.integerValue == 3)
        #expect(same.data?["contactId"] == .string("ctc_1") && same.data?["streamId"] == .string("acme:ctc_1"))
        // A stale expected version is a conflict even when nothing would change.
        let stale = await t.command(
            "contact.upsert", #"{"contactId":"ctc_1","attributes":{"age":31}}"#, extra: #""expectedVersion":2,"#)
        #expect(stale.code == "RESOURCE_CONFLICT" && stale["error"]?["currentVersion"] == .number(3))
    }

    @Test func attributesAreCheckedAgainstTheSchemaWithPointers() async throws {
        let t = try TestEngine()
        let response = await t.command(
            "contact.upsert",
            #"{"contactId":"ctc_1","attributes":{"age":"old","plan":"gold","shoe":1,"signed_up_at":"someday"}}"#)
        #expect(response.code == "VALIDATION_ERROR")
        #expect(
            (response["error"]?["details"]?.arrayValue ?? []).compactMap { $0["pointer"]?.stringValue }
                == [
                    "/payload/attributes/age", "/payload/attributes/plan", "/payload/attributes/shoe",
                    "/payload/attributes/signed_up_at",
                ])
    }

    /// `email` must read as an address and `age` be whole years, 0–150; the message never quotes the
    /// value (personal data).
    @Test func emailAndAgeAreCheckedBeyondTheirTypes() async throws {
        let t = try TestEngine()
        let badEmails = [
            "not-an-email", " g@b.example", "g@b.example ", "a@b", "@b.example", "a@@b.example", "a@b..example",
            "a@-b.example", "a@b.example.", "a\\u0000@b.example", String(repeating: "x", count: 65) + "@b.example",
        ]
        for email in badEmails {
            let response = await t.command(
                "contact.upsert", #"{"contactId":"ctc_1","attributes":{"email":"\#(email)"}}"#)
            #expect(
                response["error"]?["message"] == .string("email must be an address like name@example.com")
                    && response["error"]?["pointer"] == .string("/payload/attributes/email"), "\(email)")
        }
        for age in ["-5", "25.5", "151"] {
            let response = await t.command("contact.upsert", #"{"contactId":"ctc_1","attributes":{"age":\#(age)}}"#)
            #expect(response["error"]?["message"] == .string("age must be a whole number of years, 0–150"), "\(age)")
        }
        #expect(try t.engine.eventStore.head().position == 0)
        let good = #"{"email":"First.Last+tag@mail.b-c.example","age":0,"lifetime_value":-10.5}"#
        #expect(await t.command("contact.upsert", #"{"contactId":"ctc_1","attributes":\#(good)}"#).status == 201)
        #expect(
            await t.command("contact.upsert", #"{"contactId":"ctc_2","attributes":{"email":"zoë@bücher.example"}}"#)
                .status == 201)
    }

    /// A text value that shows nothing (empty, spaces, a zero-width space) is no value: before, it
    /// was stored, a rule found the field `exists`, and "Hello {{first_name}}" greeted nobody. It is
    /// refused at the attribute, in an upsert and an import item alike, built-in or defined; null
    /// still removes a value.
    @Test func aTextValueThatShowsNothingIsRefused() async throws {
        let t = try TestEngine()
        #expect(
            await t.command("field.define", #"{"name":"nickname","type":"string"}"#).status == 201)
        for (field, value) in [("first_name", ""), ("city", "   "), ("nickname", "\\u200B"), ("country", "\\t")] {
            let response = await t.command(
                "contact.upsert", #"{"contactId":"ctc_1","attributes":{"\#(field)":"\#(value)"}}"#)
            #expect(response.code == "VALIDATION_ERROR", "\(field)")
            #expect(response["error"]?["pointer"] == .string("/payload/attributes/\(field)"), "\(field)")
            #expect(
                response["error"]?["message"]
                    == .string("\(field) must show at least one character; null removes it"), "\(field)")
        }
        let imported = await t.command(
            "contact.import",
            #"{"contacts":[{"contactId":"ctc_2","attributes":{"last_name":""}},"#
                + #"{"contactId":"ctc_3","attributes":{"last_name":"Doe"}}]}"#)
        #expect(imported.status == 207)
        #expect(
            imported.data?["results"]?.arrayValue?.first?["error"]?["details"]?.arrayValue?.first?["pointer"]
                == .string("/payload/contacts/0/attributes/last_name"))
        #expect(
            await t.command("contact.upsert", #"{"contactId":"ctc_3","attributes":{"last_name":null}}"#).status
                == 201)
        let removed = await t.query("contact.get", #"{"contactId":"ctc_3"}"#)
        #expect(removed.data?["attributes"] == .object([:]))
    }

    /// A tenant's date field holds people's dates: a birthday in 1962 was refused as "not an ISO
    /// 8601 date", since every time began at 1970. It is stored, segments match it live and after
    /// a rebuild, and a send time is still a moment (1962 is refused there as a format).
    @Test func aDateFieldTakesDatesBeforeNineteenSeventy() async throws {
        let t = try TestEngine()
        #expect(await t.command("field.define", #"{"name":"birthday","type":"date"}"#).status == 201)
        for (id, birthday) in [
            ("ctc_old", "1962-03-04"), ("ctc_new", "1990-07-01"), ("ctc_edge", "1969-12-31T23:59:59Z"),
        ] {
            #expect(
                await t.command("contact.upsert", #"{"contactId":"\#(id)","attributes":{"birthday":"\#(birthday)"}}"#)
                    .status == 201, "\(id)")
        }
        let got = await t.query("contact.get", #"{"contactId":"ctc_old"}"#)
        #expect(got.data?["attributes"]?["birthday"] == .string("1962-03-04"))
        let rules = #"{"all":[{"field":"birthday","operator":"before","value":"1970-01-01"}]}"#
        #expect(
            await t.command("segment.create", #"{"segmentId":"seg_60s","name":"Sixties","rules":\#(rules)}"#).status
                == 201)
        func members() async -> [String] {
            await t.query("segment.members", #"{"segmentId":"seg_60s"}"#).data?["contactIds"]?.arrayValue?
                .compactMap(\.stringValue).sorted() ?? []
        }
        #expect(await members() == ["ctc_edge", "ctc_old"])
        try t.engine.projections.rebuild("segments", batchSize: 1)
        #expect(await members() == ["ctc_edge", "ctc_old"])
        let bad = await t.command("contact.upsert", #"{"contactId":"ctc_bad","attributes":{"birthday":"0000-01-01"}}"#)
        #expect(bad.code == "VALIDATION_ERROR")
        #expect(
            bad["error"]?["message"]
                == .string(
                    "birthday must be an ISO 8601 date of year 0001–9999: 1962-03-04, or a time such as "
                        + "1962-03-04T09:30:00Z"))
        let sendAt = await t.command(
            "campaign.create", #"{"name":"Old","channel":"sms","sendAt":"1962-03-04T09:30:00Z"}"#)
        #expect(sendAt.status == 400, "a send time is a moment: \(sendAt)")
    }

    @Test func definedFieldsExtendTheSchemaOnce() async throws {
        let t = try TestEngine()
        #expect(
            await t.command("field.define", #"{"name":"loyalty","type":"enum","values":["gold","silver"]}"#).status
                == 201)
        #expect(await t.command("field.define", #"{"name":"loyalty","type":"string"}"#).code == "DUPLICATE_RESOURCE")
        #expect(await t.command("field.define", #"{"name":"email","type":"string"}"#).code == "DUPLICATE_RESOURCE")
        #expect(
            await t.command("field.define", #"{"name":"Bad Name","type":"color"}"#)["error"]?["details"]?.arrayValue?
                .count == 2)
        #expect(await t.command("field.define", #"{"name":"tier","type":"enum"}"#).code == "VALIDATION_ERROR")
        #expect(
            await t.command("contact.upsert", #"{"contactId":"ctc_1","attributes":{"loyalty":"gold"}}"#).status == 201)
        #expect(
            await t.command("contact.upsert", #"{"contactId":"ctc_1","attributes":{"loyalty":"bronze"}}"#).code
                == "VALIDATION_ERROR")
        #expect(
            await t.command(
                "segment.create",
                #"{"name":"Gold","rules":{"all":[{"field":"loyalty","operator":"eq","value":"gold"}]}}"#
            ).status == 201)
        // Another tenant does not see acme's field.
        #expect(
            await t.command(
                "segment.create",
                #"{"name":"Gold","rules":{"all":[{"field":"loyalty","operator":"eq","value":"gold"}]}}"#,
                as: admin("globex")
            ).code == "UNKNOWN_FIELD")
    }

    @Test func theFieldListShowsEachFieldWithItsTypeValuesAndOperators() async throws {
        let t = try TestEngine()
        let builtIn = try #require(await t.query("field.list", "{}").data)
        #expect(builtIn["version"] == .number(0))
        #expect(builtIn["items"]?.arrayValue?.count == ContactSchema.builtIn.count)
        _ = await t.command("field.define", #"{"name":"tier","type":"enum","values":["gold","silver"]}"#)
        _ = await t.command("field.define", #"{"name":"score","type":"number"}"#)
        let list = try #require(await t.query("field.list", "{}").data)
        #expect(list["version"] == .number(2))
        let items = try #require(list["items"]?.arrayValue)
        let names = items.compactMap { $0["name"]?.stringValue }
        #expect(names == names.sorted() && names.count == ContactSchema.builtIn.count + 2)
        let tier = try #require(items.first { $0["name"] == .string("tier") })
        #expect(tier["type"] == .string("enum") && tier["builtIn"] == .bool(false))
        #expect(tier["values"] == .array([.string("gold"), .string("silver")]))
        #expect(tier["operators"] == .array(FieldType.enumeration([]).operators.map(JSON.string)))
        let signedUp = try #require(items.first { $0["name"] == .string("signed_up_at") })
        #expect(signedUp["builtIn"] == .bool(true) && signedUp["values"] == nil)
        #expect(signedUp["operators"]?.arrayValue?.contains(.string("within_last_days")) == true)
        // Each tenant has its own schema, and the list takes no params.
        let other = await t.query("field.list", "{}", as: admin("globex"))
        #expect(other.data?["items"]?.arrayValue?.count == ContactSchema.builtIn.count)
        #expect(await t.query("field.list", #"{"limit":5}"#).code == "INVALID_FIELD")
    }

    @Test func anEnumFieldTakesNewValuesAndKeepsEveryValueItHas() throws {
        let context = DecisionContext(now: testStart, tenant: "acme")
        var schema = ContactSchema()
        schema.define("tier", .enumeration(["bronze", "gold"]))
        schema.define("score", .number)
        func decide(_ name: String, _ values: [String]) throws -> Decision {
            try TenantSchema.decide(.updateField(name: name, values: values), state: schema, context: context)
        }
        func refusal(_ name: String, _ values: [String]) -> CampaignError? {
            #expect(throws: CampaignError.self) { try decide(name, values) }
        }

        // New values join, in the order given; the same list changes nothing.
        let added = try decide("tier", ["gold", "platinum", "bronze"])
        #expect(added.events.map(\.type) == ["field.updated"])
        #expect(
            added.events.first?.payload
                == .object(SchemaEvent.fieldUpdated(name: "tier", values: ["gold", "platinum", "bronze"]).payload))
        #expect(try decide("tier", ["bronze", "gold"]).events.isEmpty)
        let after = TenantSchema.evolve(schema, .fieldUpdated(name: "tier", values: ["gold", "platinum", "bronze"]))
        #expect(after.fields["tier"] == .enumeration(["gold", "platinum", "bronze"]))
        #expect(after.problem(with: .string("platinum"), for: "tier") == nil)

        // Every value stays, as spelled: contacts and rules may hold it.
        let dropped = refusal("tier", ["gold"])
        #expect(dropped?.code == .validationError && dropped?.details?.first?.pointer == "/values")
        #expect(dropped?.message.contains("keep bronze as spelled") == true)
        #expect(refusal("tier", ["Bronze", "gold", "platinum"])?.details?.first?.pointer == "/values")
        #expect(refusal("tier", ["bronze", "gold", "BRONZE"])?.code == .validationError)
        #expect(refusal("tier", [])?.code == .validationError)
        // Only an enum the tenant defined changes.
        #expect(refusal("plan", ["free", "starter", "pro", "enterprise", "max"])?.details?.first?.pointer == "/name")
        #expect(refusal("score", ["a"])?.details?.first?.pointer == "/values")
        let unknown = refusal("nope", ["a"])
        #expect(unknown?.code == .resourceNotFound && unknown?.pointer == "/name")
        // An update of anything but an enum folds to nothing.
        #expect(TenantSchema.evolve(schema, .fieldUpdated(name: "score", values: ["a"])) == schema)
        #expect(
            TenantSchema.evolve(schema, .fieldUpdated(name: "plan", values: ["x"])).fields["plan"]
                == ContactSchema.builtIn["plan"])
    }

    @Test func aFieldUpdateLetsContactsAndRulesUseTheNewValue() async throws {
        let t = try TestEngine()
        #expect(
            await t.command("field.define", #"{"name":"tier","type":"enum","values":["bronze","gold"]}"#).status == 201)
        #expect(
            await t.command(
                "segment.create",
                #"{"segmentId":"seg_1","name":"Top","#
                    + #""rules":{"all":[{"field":"tier","operator":"in","value":["gold"]}]}}"#
            ).status == 201)
        #expect(await t.command("contact.upsert", #"{"contactId":"ctc_1","attributes":{"tier":"gold"}}"#).status == 201)
        let platinum = #"{"contactId":"ctc_2","attributes":{"tier":"platinum"}}"#
        #expect(await t.command("contact.upsert", platinum).code == "VALIDATION_ERROR")

        let update = #"{"name":"tier","values":["bronze","gold","platinum"]}"#
        let updated = await t.command("field.update", update, extra: #""idempotencyKey":"k1","#)
        #expect(updated.status == 201 && updated.data?["version"] == .number(2))
        #expect(updated.data?["events"]?.arrayValue?.first?["type"] == .string("field.updated"))
        #expect(
            updated.data?["field"]
                == .object([
                    "name": .string("tier"), "type": .string("enum"),
                    "values": .array(["bronze", "gold", "platinum"].map(JSON.string)),
                ]))
        // A retry answers the same; the same values sent again change nothing.
        let retried = await t.command("field.update", update, extra: #""idempotencyKey":"k1","#)
        #expect(retried.status == 200 && retried.data?["field"] == updated.data?["field"])
        let again = await t.command("field.update", update)
        #expect(again.status == 200 && again.data?["changed"] == .bool(false) && again.data?["version"] == .number(2))
        #expect(
            await t.command("field.update", #"{"name":"tier","values":["gold","platinum"]}"#).code == "VALIDATION_ERROR"
        )
        #expect(await t.command("field.update", #"{"name":"tier"}"#).code == "MISSING_FIELD")
        #expect(await t.command("field.update", update, as: admin("globex")).code == "RESOURCE_NOT_FOUND")

        // Contacts and rules take the new value, and the segments projection folds it as a rebuild does.
        #expect(await t.command("contact.upsert", platinum).status == 201)
        #expect(
            await t.command(
                "segment.update",
                #"{"segmentId":"seg_1","rules":{"all":[{"field":"tier","operator":"in","value":["gold","platinum"]}]}}"#
            ).status == 201)
        let members = await t.query("segment.members", #"{"segmentId":"seg_1"}"#)
        #expect(members.data?["contactIds"] == .array([.string("ctc_1"), .string("ctc_2")]))
        #expect(try t.engine.projections.verify("segments").matches)
        let list = try #require(await t.query("field.list", "{}").data)
        #expect(list["version"] == .number(2))
        let tier = list["items"]?.arrayValue?.first { $0["name"] == .string("tier") }
        #expect(tier?["values"] == .array(["bronze", "gold", "platinum"].map(JSON.string)))
    }

    @Test func aTenantDefinesAtMostFiveHundredFieldsOfItsOwn() throws {
        var schema = ContactSchema()
        for n in 0..<(ContactSchema.maximumDefinedFields - 1) { schema.define("field_\(n)", .number) }
        let context = DecisionContext(now: testStart, tenant: "acme")
        let last = try TenantSchema.decide(.defineField(name: "last", type: "string"), state: schema, context: context)
        #expect(last.events.count == 1)
        schema.define("last", .string)
        let refused = #expect(throws: CampaignError.self) {
            try TenantSchema.decide(.defineField(name: "one_more", type: "string"), state: schema, context: context)
        }
        #expect(refused?.code == .validationError && refused?.details?.first?.pointer == "")
    }

    @Test func importReportsEachItemAndAnswers207WhenSomeFail() async throws {
        let t = try TestEngine()
        let response = await t.command(
            "contact.import",
            #"""
            {"contacts":[
              {"contactId":"ctc_a","attributes":{"email":"a@example.com","age":20}},
              {"contactId":"ctc_b","attributes":{"age":"twenty"}},
              {"contactId":"ctc_c","attributes":{"tags":["vip"]}},
              {"contactId":"ctc_a","attributes":{"country":"FR"}}
            ]}
            """#)
        #expect(response.status == 207)
        let results = response.data?["results"]?.arrayValue ?? []
        #expect(results.compactMap { $0["status"]?.integerValue } == [201, 422, 201, 201])
        #expect(results[1]["error"]?["details"]?["0"] == nil)
        #expect(
            results[1]["error"]?["details"]?.arrayValue?.first?["pointer"]?.stringValue
                == "/payload/contacts/1/attributes/age")
        #expect(response.data?["failed"]?.integerValue == 1 && response.data?["succeeded"]?.integerValue == 3)
        #expect(try t.engine.eventStore.streamVersion("acme:ctc_a") == 2)
        #expect(try t.engine.eventStore.streamVersion("acme:ctc_b") == 0)
        // An item that cannot be read is reported at its index too, with the code a lone upsert
        // would get, and the readable ones are written.
        let unreadable = await t.command(
            "contact.import",
            #"""
            {"contacts":[
              42,
              {"contactId":"ctc_e f","attributes":{"age":1}},
              {"attributes":{"age":1}},
              {"contactId":"ctc_g","attributes":{"age":1},"note":"x"},
              {"contactId":"ctc_h","attributes":[1]},
              {"contactId":"ctc_i","attributes":{"age":7}}
            ]}
            """#)
        #expect(unreadable.status == 207)
        let items = unreadable.data?["results"]?.arrayValue ?? []
        #expect(items.compactMap { $0["status"]?.integerValue } == [400, 400, 400, 400, 400, 201])
        #expect(
            items.compactMap { $0["error"]?["code"]?.stringValue }
                == ["INVALID_FORMAT", "INVALID_FORMAT", "MISSING_FIELD", "INVALID_FIELD", "INVALID_FORMAT"])
        #expect(
            items.compactMap { $0["error"]?["pointer"]?.stringValue }
                == [
                    "/payload/contacts/0", "/payload/contacts/1/contactId", "/payload/contacts/2/contactId",
                    "/payload/contacts/3/note", "/payload/contacts/4/attributes",
                ])
        #expect(items[1]["contactId"] == .string("ctc_e f") && items[2]["contactId"] == nil)
        #expect(unreadable.data?["failed"]?.integerValue == 5 && unreadable.data?["succeeded"]?.integerValue == 1)
        #expect(try t.engine.eventStore.streamVersion("acme:ctc_i") == 1)
        #expect(try t.engine.eventStore.streamVersion("acme:ctc_g") == 0)
        // The import's own form is still refused whole.
        #expect(await t.command("contact.import", #"{"contacts":[],"note":1}"#).code == "INVALID_FIELD")
        let allGood = await t.command("contact.import", #"{"contacts":[{"contactId":"ctc_d","attributes":{"age":1}}]}"#)
        #expect(allGood.status == 201)
    }

    /// An import of more than `importSlice` contacts (5,000 by default; 500 here) is written a slice at a
    /// time, each its own transaction, so other commands commit between them (one of 100,000 held every
    /// tenant for 0.65 s), and answers as one: every item at its index in the request, a contact listed in
    /// two slices merged in order, the totals and the events of all slices; a retry with the key gets that
    /// answer. When the last slice writes nothing, the answer is still stored for the key.
    @Test func aLargeImportIsWrittenInSlicesAndAnswersAsOne() async throws {
        var configuration = EngineConfiguration()
        configuration.importSlice = 500
        let t = try TestEngine(configuration: configuration)
        let count = 2 * configuration.importSlice + 1
        var items = (0..<count).map { #"{"contactId":"ctc_\#($0)","attributes":{"age":\#($0 % 90)}}"# }
        items[10] = #"{"contactId":"ctc_twice","attributes":{"city":"Lyon"}}"#
        items[600] = #"{"contactId":"ctc_twice","attributes":{"age":33}}"#
        items[777] = #"{"contactId":"ctc_bad","attributes":{"age":"old"}}"#
        let payload = #"{"contacts":[\#(items.joined(separator: ","))]}"#
        let before = t.engine.eventStore.statistics.groupCommitTransactions
        let response = await t.command("contact.import", payload, extra: #""idempotencyKey":"big","#)
        let transactions = t.engine.eventStore.statistics.groupCommitTransactions - before
        #expect(transactions == 3, "three slices, three transactions")
        #expect(response.status == 207)
        let results = try #require(response.data?["results"]?.arrayValue)
        #expect(results.count == count)
        #expect(results.enumerated().allSatisfy { $0.element["index"]?.integerValue == $0.offset })
        #expect(results[10]["version"] == .number(1) && results[600]["version"] == .number(2))
        #expect(
            results[777]["error"]?["details"]?.arrayValue?.first?["pointer"]?.stringValue
                == "/payload/contacts/777/attributes/age")
        #expect(response.data?["failed"] == .number(1) && response.data?["succeeded"] == .number(Double(count - 1)))
        let events = try #require(response.data?["events"]?.arrayValue)
        #expect(events.count == count - 1)
        #expect(events.compactMap { $0["position"]?.integerValue } == Array(1...(count - 1)))
        let twice = await t.query("contact.get", #"{"contactId":"ctc_twice"}"#)
        #expect(twice.data?["attributes"] == .object(["age": .number(33), "city": .string("Lyon")]))
        // The retry answers the same bytes and writes nothing.
        let head = try t.engine.eventStore.head().position
        let retried = await t.command("contact.import", payload, extra: #""idempotencyKey":"big","#)
        // A replay answers 200 with the same data (SPEC.md §4).
        #expect(retried["status"] == .number(200) && retried.data == response.data)
        #expect(try t.engine.eventStore.head().position == head)

        // The last slice writes nothing (its one item fails): the answer still lists the first
        // slice's events, and a retry with the key gets it although it would now find them unchanged.
        var tail = (0..<(configuration.importSlice + 1)).map {
            #"{"contactId":"ctc_t\#($0)","attributes":{"age":1}}"#
        }
        tail[configuration.importSlice] = #"{"contactId":"ctc_t_bad","attributes":{"age":-1}}"#
        let tailPayload = #"{"contacts":[\#(tail.joined(separator: ","))]}"#
        let first = await t.command("contact.import", tailPayload, extra: #""idempotencyKey":"tail","#)
        #expect(first.status == 207)
        #expect(first.data?["events"]?.arrayValue?.count == configuration.importSlice)
        let again = await t.command("contact.import", tailPayload, extra: #""idempotencyKey":"tail","#)
        #expect(again.data == first.data)
        // Two sends of one import with one key at once (a client that retried while the first ran):
        // whichever finishes first stores its answer, and both are answered with it.
        let both = (0..<(2 * configuration.importSlice + 1)).map {
            #"{"contactId":"ctc_r\#($0)","attributes":{"age":2}}"#
        }
        let bothPayload = #"{"contacts":[\#(both.joined(separator: ","))]}"#
        async let one = t.command("contact.import", bothPayload, extra: #""idempotencyKey":"race","#)
        async let two = t.command("contact.import", bothPayload, extra: #""idempotencyKey":"race","#)
        let (a, b) = await (one, two)
        #expect(a.data == b.data && a.data?["events"]?.arrayValue?.isEmpty == false)
        // Without the key the same import finds every contact as it is.
        let fresh = await t.command("contact.import", tailPayload)
        #expect(fresh.data?["events"]?.arrayValue?.isEmpty == true)
        #expect(fresh.data?["results"]?.arrayValue?.first?["status"] == .number(200))
    }

    @Test func importOverTheLimitIsRefusedWhole() async throws {
        let t = try TestEngine()
        let items = Array(
            repeating: #"{"contactId":"ctc_x","attributes":{}}"#, count: ContactCommand.maximumImportSize + 1
        )
        .joined(separator: ",")
        let response = await t.command("contact.import", #"{"contacts":[\#(items)]}"#)
        #expect(
            response.code == "VALIDATION_ERROR" && response["error"]?["pointer"]?.stringValue == "/payload/contacts")
        #expect(try t.engine.eventStore.head().position == 0)
    }

    @Test func personalValuesNeverEnterTheLogAndErasureRemovesThem() async throws {
        let t = try TestEngine()
        let secret = "ann.secret-7f3a@example.com"
        #expect(
            await t.command(
                "contact.upsert", #"{"contactId":"ctc_1","attributes":{"email":"\#(secret)","first_name":"Annabelle"}}"#
            ).status == 201)
        #expect(
            await t.command(
                "contact.import", #"{"contacts":[{"contactId":"ctc_2","attributes":{"email":"\#(secret)"}}]}"#
            ).status == 201)
        let events = try t.engine.eventStore.readAll()
        #expect(events.count == 2)
        for event in events {
            let text = String(decoding: event.payload, as: UTF8.self)
            #expect(!text.contains(secret) && !text.contains("Annabelle"))
            #expect(JSON.parse(text: text)?["commitment"]?.stringValue?.count == 64)
        }
        #expect(
            await t.command("contact.erase", #"{"contactId":"ctc_1"}"#, as: principal(role: "editor")).code
                == "FORBIDDEN")
        #expect(await t.command("contact.erase", #"{"contactId":"ctc_1"}"#).status == 201)
        // A retried erasure is done, not an unknown contact: 200, nothing written, the stream as it is.
        let again = await t.command("contact.erase", #"{"contactId":"ctc_1"}"#)
        #expect(again.status == 200)
        #expect(
            again.data
                == .object([
                    "contactId": .string("ctc_1"), "erased": .bool(true), "streamId": .string("acme:ctc_1"),
                    "version": .number(2), "events": .array([]), "changed": .bool(false),
                ]))
        #expect(
            await t.command("contact.erase", #"{"contactId":"ctc_1"}"#, extra: #""expectedVersion":1,"#).code
                == "RESOURCE_CONFLICT")
        #expect(try t.engine.eventStore.readAll().count == 3)
        #expect(await t.command("contact.erase", #"{"contactId":"ctc_9"}"#).code == "RESOURCE_NOT_FOUND")
        let table = try t.engine.eventStore.table(named: "contact-values")
        let (erased, kept) = try t.engine.eventStore.read { txn in
            (
                try txn.value(forKey: Array("acme".utf8) + [0] + Array("ctc_1".utf8), in: table),
                try txn.value(forKey: Array("acme".utf8) + [0] + Array("ctc_2".utf8), in: table)
            )
        }
        #expect(erased == nil && kept != nil)
        #expect(try t.engine.eventStore.verifyChain().isIntact)
    }
}

extension JSON {
    static func parse(text: String) -> JSON? { try? JSON.parse(text) }
}
