import CampaignDomain
import CampaignEngine
import CampaignProjections
import EventStore
import Foundation
import Spawn
import TestSupport
import Testing

/// One test per defect of issue 11 that is not covered by a suite of its own; each failed
/// before its fix. Wire-level ones go through the engine's JSON entry point or the built binary.
@Suite struct DefectRegressionTests {
    func connect(
        _ t: TestEngine, _ id: String, tenant: String, account: String, ref: String = "vault://social/x"
    ) async -> JSON {
        await t.command(
            "social.connect",
            #"{"connectionId":"\#(id)","platform":"tiktok","accountId":"\#(account)","#
                + #""credentialRef":"\#(ref)","expiresAt":"2027-01-01T00:00:00Z"}"#,
            as: admin(tenant))
    }

    func tiktokPost(_ t: TestEngine, _ id: String, tenant: String, text: String = "Clip") async -> JSON {
        await t.command(
            "post.create",
            #"{"postId":"\#(id)","connectionIds":["con_t"],"text":"\#(text)","media":[{"kind":"video","#
                + #""url":"https://cdn.example/v.mp4"}]}"#,
            as: admin(tenant))
    }

    // 1
    @Test func aTenantCannotSpendAnotherTenantsPublishBudget() async throws {
        let t = try TestEngine()
        #expect(await connect(t, "con_t", tenant: "acme", account: "shared").status == 201)
        #expect(await connect(t, "con_t", tenant: "globex", account: "shared").status == 201)
        for n in 0..<15 {
            _ = await tiktokPost(t, "pst_\(n)", tenant: "globex", text: "Spam #reject")
            _ = await t.command("post.publish", #"{"postId":"pst_\#(n)"}"#, as: admin("globex"))
        }
        _ = await tiktokPost(t, "pst_g", tenant: "globex")
        #expect(
            await t.command("post.publish", #"{"postId":"pst_g"}"#, as: admin("globex")).code == "RATE_LIMIT_EXCEEDED")
        _ = await tiktokPost(t, "pst_a", tenant: "acme")
        #expect(await t.command("post.publish", #"{"postId":"pst_a"}"#).status == 201)
    }

    // 3 and 4
    @Test func aRetriedPublishGetsTheOriginalAnswerAndTheAnswerListsItsEvents() async throws {
        let t = try TestEngine()
        _ = await t.command(
            "social.connect",
            #"{"connectionId":"con_x","platform":"x","accountId":"a","credentialRef":"vault://social/x","#
                + #""expiresAt":"2027-01-01T00:00:00Z"}"#
        )
        for (id, text) in [("pst_ok", "Hello"), ("pst_no", "Bad #reject")] {
            _ = await t.command("post.create", #"{"postId":"\#(id)","connectionIds":["con_x"],"text":"\#(text)"}"#)
        }
        let key = #""idempotencyKey":"k-ok","#
        let first = await t.command("post.publish", #"{"postId":"pst_ok"}"#, extra: key)
        #expect(first.status == 201 && first.data?["post"]?["status"]?.stringValue == "published")
        let types = first.data?["events"]?.arrayValue?.compactMap { $0["type"]?.stringValue }
        #expect(types == ["post.publishingStarted", "post.attemptStarted", "post.targetPublished", "post.published"])
        let again = await t.command("post.publish", #"{"postId":"pst_ok"}"#, extra: key)
        #expect(again.status == 200 && again.data == first.data)

        let rejected = await t.command("post.publish", #"{"postId":"pst_no"}"#, extra: #""idempotencyKey":"k-no","#)
        #expect(rejected.code == "CONTENT_REJECTED")
        let replayed = await t.command("post.publish", #"{"postId":"pst_no"}"#, extra: #""idempotencyKey":"k-no","#)
        #expect(
            replayed.code == "CONTENT_REJECTED" && replayed.status == 422
                && replayed["error"]?["details"] == rejected["error"]?["details"])
        #expect(t.publisher.requests.count == 2)
    }

    // 4
    @Test func importAnswersListEventsAndEachContactsStreamAndVersion() async throws {
        let t = try TestEngine()
        let response = await t.command(
            "contact.import",
            #"{"contacts":[{"contactId":"ctc_1","attributes":{"age":30}},{"contactId":"ctc_2","#
                + #""attributes":{"age":"old"}}]}"#,
            requestId: "imp")
        #expect(response.status == 207)
        #expect(response.data?["events"]?.arrayValue?.first?["type"]?.stringValue == "contact.upserted")
        let results = response.data?["results"]?.arrayValue ?? []
        #expect(results.first?["streamId"]?.stringValue == "acme:ctc_1" && results.first?["version"]?.integerValue == 1)
        #expect(results.last?["error"]?["requestId"]?.stringValue == "imp")
        // A contact listed twice: each item answers the version its own write made, as a lone upsert
        // would; an unchanged item the version it found.
        let twice = await t.command(
            "contact.import",
            #"{"contacts":[{"contactId":"ctc_1","attributes":{"age":31}},{"contactId":"ctc_1","#
                + #""attributes":{"age":32}},{"contactId":"ctc_1","attributes":{"age":32}}]}"#)
        #expect(
            (twice.data?["results"]?.arrayValue ?? []).map {
                [$0["status"]?.integerValue, $0["version"]?.integerValue]
            }
                == [[201, 2], [201, 3], [200, 3]])
    }

    // 5
    @Test func anUpdateThatChangesNothingWritesNoEvent() async throws {
        let t = try TestEngine()
        _ = await t.command(
            "campaign.create",
            #"{"campaignId":"cmp_1","name":"Spring","channel":"email","#
                + #""content":{"subject":"Hi","body":"Hello"}}"#)
        let same = await t.command("campaign.update", #"{"campaignId":"cmp_1","name":"Spring","channel":"email"}"#)
        #expect(same.status == 200 && same.data?["changed"] == .bool(false) && same.data?["version"]?.integerValue == 1)
        #expect(try t.engine.eventStore.streamVersion("acme:cmp_1") == 1)
        // A social.refresh to the reference and expiry the connection has is no change either.
        _ = await t.command(
            "social.connect",
            #"{"connectionId":"con_1","platform":"x","accountId":"@a","credentialRef":"vault://social/x","#
                + #""expiresAt":"2027-01-01T00:00:00Z"}"#)
        let refresh = await t.command(
            "social.refresh",
            #"{"connectionId":"con_1","credentialRef":"vault://social/x","expiresAt":"2027-01-01T00:00:00Z"}"#)
        #expect(refresh.status == 200 && refresh.data?["changed"] == .bool(false))
        #expect(try t.engine.eventStore.streamVersion("acme:con_1") == 1)
        let later = await t.command(
            "social.refresh", #"{"connectionId":"con_1","expiresAt":"2027-02-01T00:00:00Z"}"#)
        #expect(later.status == 201 && later.data?["version"]?.integerValue == 2)
        // So is every other command given what its aggregate already has: each wrote an event.
        _ = await t.command(
            "segment.create",
            #"{"segmentId":"seg_1","name":"All","rules":{"all":[{"field":"email","operator":"exists"}]}}"#)
        _ = await t.command("post.create", #"{"postId":"pst_1","connectionIds":["con_1"],"text":"Hi"}"#)
        _ = await t.command(
            "experiment.create",
            #"{"experimentId":"exp_1","campaignId":"cmp_1","name":"E","variants":[{"key":"a","weight":50},"#
                + #"{"key":"b","weight":50}]}"#)
        // Each with the events it writes: the first of a pair changes something, the second nothing.
        let again: [(String, String, String, UInt64)] = [
            ("segment.update", #"{"segmentId":"seg_1","name":"All"}"#, "acme:seg_1", 0),
            ("campaign.attachSegment", #"{"campaignId":"cmp_1","segmentId":"seg_1"}"#, "acme:cmp_1", 1),
            ("campaign.attachSegment", #"{"campaignId":"cmp_1","segmentId":"seg_1"}"#, "acme:cmp_1", 0),
            ("campaign.schedule", #"{"campaignId":"cmp_1","sendAt":"2026-12-01T00:00:00Z"}"#, "acme:cmp_1", 1),
            ("campaign.schedule", #"{"campaignId":"cmp_1","sendAt":"2026-12-01T00:00:00Z"}"#, "acme:cmp_1", 0),
            ("post.update", #"{"postId":"pst_1","text":"Hi"}"#, "acme:pst_1", 0),
            ("post.schedule", #"{"postId":"pst_1","publishAt":"2026-12-01T00:00:00Z"}"#, "acme:pst_1", 1),
            ("post.schedule", #"{"postId":"pst_1","publishAt":"2026-12-01T00:00:00Z"}"#, "acme:pst_1", 0),
            ("experiment.update", #"{"experimentId":"exp_1","name":"E"}"#, "acme:exp_1", 0),
        ]
        for (name, payload, stream, writes) in again {
            let before = try t.engine.eventStore.streamVersion(stream)
            let answer = await t.command(name, payload)
            #expect(answer.status == (writes == 0 ? 200 : 201), "\(name) \(payload)")
            #expect(try t.engine.eventStore.streamVersion(stream) - before == writes, "\(name) \(payload)")
            if writes == 0 { #expect(answer.data?["changed"] == .bool(false), "\(name)") }
        }
    }

    @Test func aPostsLinkIsRemovedByNull() async throws {
        let t = try TestEngine()
        _ = await connect(t, "con_1", tenant: "acme", account: "acme")
        let created = await t.command(
            "post.create",
            #"{"postId":"pst_1","connectionIds":["con_1"],"text":"Hi","#
                + #""media":[{"kind":"video","url":"https://cdn.example/v.mp4"}],"link":"https://example.com/a"}"#)
        #expect(created.status == 201, "\(created)")
        // Before, null read as absent: "nothing to update", and the link could never go.
        let removed = await t.command("post.update", #"{"postId":"pst_1","link":null}"#)
        #expect(removed.status == 201, "\(removed)")
        let post = await t.query("post.get", #"{"postId":"pst_1"}"#)
        #expect(post.data?["link"] == nil && post.data?["text"] == .string("Hi"), "\(post)")
        let again = await t.command("post.update", #"{"postId":"pst_1","link":null}"#)
        #expect(again.status == 200 && again.data?["changed"] == .bool(false), "\(again)")
        let wrong = await t.command("post.update", #"{"postId":"pst_1","link":5}"#)
        #expect(wrong.code == "INVALID_FORMAT" && wrong["error"]?["pointer"] == .string("/payload/link"), "\(wrong)")
        // The log holds the removal as "link": null, so a rebuild or replay folds it the same way.
        let last = try #require(try t.engine.eventStore.readStream("acme:pst_1").last)
        #expect(try JSON.parse(last.payload)["link"] == .null)
    }

    @Test func anUpdateRefusesNullForAValueItCanOnlyReplace() async throws {
        let t = try TestEngine()
        let created = await t.command(
            "campaign.create", #"{"campaignId":"cmp_1","name":"Spring","channel":"email"}"#)
        #expect(created.status == 201, "\(created)")
        // Before, null read as left out: alone "nothing to update", beside a change silently ignored.
        let refused: [(String, String, String)] = [
            ("campaign.update", #"{"campaignId":"cmp_1","name":null}"#, "/payload/name"),
            ("campaign.update", #"{"campaignId":"cmp_1","name":"Summer","channel":null}"#, "/payload/channel"),
            ("campaign.update", #"{"campaignId":"cmp_1","content":null}"#, "/payload/content"),
            ("segment.update", #"{"segmentId":"seg_1","rules":null}"#, "/payload/rules"),
            ("segment.update", #"{"segmentId":"seg_1","name":null}"#, "/payload/name"),
            ("post.update", #"{"postId":"pst_1","text":null}"#, "/payload/text"),
            ("post.update", #"{"postId":"pst_1","link":null,"media":null}"#, "/payload/media"),
            ("experiment.update", #"{"experimentId":"exp_1","variants":null}"#, "/payload/variants"),
            ("experiment.update", #"{"experimentId":"exp_1","name":null}"#, "/payload/name"),
            (
                "social.refresh",
                #"{"connectionId":"con_1","credentialRef":null,"expiresAt":"2099-01-01T00:00:00Z"}"#,
                "/payload/credentialRef"
            ),
        ]
        let head = try t.engine.eventStore.head().position
        for (name, payload, pointer) in refused {
            let answer = await t.command(name, payload)
            #expect(
                answer.status == 400 && answer.code == "INVALID_FORMAT"
                    && answer["error"]?["pointer"] == .string(pointer)
                    && answer["error"]?["message"]?.stringValue?.contains("cannot be removed") == true,
                "\(name) \(payload): \(answer)")
        }
        #expect(try t.engine.eventStore.head().position == head, "a refused update wrote nothing")
        let campaign = await t.query("campaign.get", #"{"campaignId":"cmp_1"}"#)
        #expect(campaign.data?["name"] == .string("Spring") && campaign.data?["channel"] == .string("email"))
    }

    // 6
    @Test func expectedVersionIsRefusedWhereItCannotBeHonoured() async throws {
        let t = try TestEngine()
        for (name, payload) in [
            ("experiment.recordExposure", #"{"experimentId":"exp_1","contactId":"ctc_1"}"#),
            ("experiment.recordConversion", #"{"experimentId":"exp_1","contactId":"ctc_1"}"#),
            ("system.tick", "{}"), ("contact.import", #"{"contacts":[{"contactId":"ctc_1","attributes":{}}]}"#),
        ] {
            let response = await t.command(name, payload, extra: #""expectedVersion":3,"#)
            #expect(
                response.code == "INVALID_FIELD" && response["error"]?["pointer"] == .string("/expectedVersion"),
                "\(name)")
        }
    }

    /// Segment `seg_1` (every contact with an email) and draft campaign `cmp_1` attached to it.
    func draftWithSegment(_ t: TestEngine) async {
        _ = await t.command(
            "segment.create",
            #"{"segmentId":"seg_1","name":"All","rules":{"all":[{"field":"email","operator":"exists"}]}}"#)
        _ = await t.command(
            "campaign.create",
            #"{"campaignId":"cmp_1","name":"Spring","channel":"sms","segmentId":"seg_1","content":{"body":"Hello"}}"#)
    }

    // 7
    @Test func resumingACampaignWhoseSegmentWasArchivedNeedsASegment() async throws {
        let t = try TestEngine()
        await draftWithSegment(t)
        _ = await t.command("campaign.schedule", #"{"campaignId":"cmp_1","sendAt":"2026-11-21T11:00:00Z"}"#)
        _ = await t.command("campaign.activate", #"{"campaignId":"cmp_1"}"#)
        _ = await t.command("campaign.pause", #"{"campaignId":"cmp_1"}"#)
        #expect(await t.command("segment.archive", #"{"segmentId":"seg_1"}"#).status == 201)
        #expect(await t.command("campaign.resume", #"{"campaignId":"cmp_1"}"#).code == "SEGMENT_REQUIRED")
    }

    // 9 and 10
    @Test func namesCompareUnderNFKCAndCaseFoldingAndRefuseControlCharacters() async throws {
        let t = try TestEngine()
        let pairs = [
            ("Caf\u{E9}", "Cafe\u{301}"), ("Stra\u{DF}e", "STRASSE"), ("\u{FF21}\u{FF22}\u{FF23}", "abc"),
            ("Host", "Ho\u{200B}st"),
        ]
        for (index, (first, second)) in pairs.enumerated() {
            #expect(
                await t.command(
                    "campaign.create", #"{"campaignId":"cmp_\#(index)a","name":"\#(first)","channel":"sms"}"#
                ).status == 201)
            #expect(
                await t.command(
                    "campaign.create", #"{"campaignId":"cmp_\#(index)b","name":"\#(second)","channel":"sms"}"#
                ).code == "DUPLICATE_RESOURCE", "\(second)")
        }
        for bad in ["Bell\\u0007", "Esc\\u001b[31m", "Rev\\u202Eerse"] {
            let response = await t.command(
                "segment.create", #"{"name":"\#(bad)","rules":{"all":[{"field":"email","operator":"exists"}]}}"#)
            #expect(response.code == "VALIDATION_ERROR" && response["error"]?["pointer"] == .string("/payload/name"))
        }
    }

    /// A name whose characters are all invisible (zero-width spaces, joiners, a byte-order mark)
    /// displays as blank: only characters that show count toward its length. An emoji joined by
    /// zero-width joiners is one character that shows.
    @Test func namesCountOnlyTheCharactersThatShow() async throws {
        let t = try TestEngine()
        let blank = await t.command("campaign.create", #"{"name":"\u200B\u200B\u200B","channel":"sms"}"#)
        #expect(
            blank.code == "VALIDATION_ERROR"
                && blank["error"]?["message"]
                    == .string(
                        "name must be 3–120 characters, not 0")
        )
        let joined = await t.command("campaign.create", #"{"name":"a\u200Db\uFEFF","channel":"sms"}"#)
        #expect(joined["error"]?["message"] == .string("name must be 3–120 characters, not 2"))
        let segment = await t.command(
            "segment.create", #"{"name":"\u2060","rules":{"all":[{"field":"email","operator":"exists"}]}}"#)
        #expect(segment["error"]?["message"] == .string("name must be 1–120 characters, not 0"))
        let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}"
        #expect(Names.problem("\(family)ab", pointer: "/name") == nil)
        #expect(Names.problem("\(family)a", pointer: "/name")?.message == "name must be 3–120 characters, not 2")
        #expect(await t.command("campaign.create", #"{"name":"Café\u200B","channel":"sms"}"#).status == 201)
    }

    /// A time is compared as it is kept, to the millisecond: `sendAt` a tenth of a millisecond
    /// after now was accepted as after now, then stored and answered as now itself.
    @Test func aTimeWithinAMillisecondOfNowIsNotAfterIt() async throws {
        let t = try TestEngine()
        await draftWithSegment(t)
        let now = Timestamp.format(t.clock.now())
        let sendAt = now.dropLast() + (now.contains(".") ? "0009Z" : ".0009Z")
        let almost = await t.command("campaign.schedule", #"{"campaignId":"cmp_1","sendAt":"\#(sendAt)"}"#)
        #expect(almost.code == "INVALID_SCHEDULE", "\(now)")
    }

    /// `audit.history` with a `streamId` or an `actor` no log can hold answers 400 naming the
    /// parameter, not an empty page; another tenant's stream is still an empty page.
    @Test func auditHistoryRefusesAStreamOrActorNoLogCanHold() async throws {
        let t = try TestEngine()
        _ = await t.command("campaign.create", #"{"campaignId":"cmp_1","name":"Spring","channel":"sms"}"#)
        for (params, param) in [
            (#"{"streamId":"bad id"}"#, "streamId"), (#"{"streamId":"acme:"}"#, "streamId"),
            (#"{"streamId":"ACME:cmp_1"}"#, "streamId"), (#"{"actor":""}"#, "actor"),
            (#"{"actor":"a b"}"#, "actor"),
        ] {
            let response = await t.query("audit.history", params)
            #expect(
                response.code == "INVALID_FORMAT" && response["error"]?["pointer"] == .string("/params/\(param)"),
                "\(params)")
        }
        for (params, count) in [
            (#"{"streamId":"cmp_1"}"#, 1), (#"{"streamId":"acme:cmp_1"}"#, 1), (#"{"streamId":"globex:cmp_1"}"#, 0),
            (#"{"streamId":"schema"}"#, 0),
        ] {
            #expect(await t.query("audit.history", params).data?["items"]?.arrayValue?.count == count, "\(params)")
        }
    }

    /// An idempotency key's answer is kept for the retention (seven days by default), then the
    /// scheduler's tick deletes it and the key is free: records no longer pile up for ever.
    @Test func idempotencyRecordsExpireAfterTheirRetention() async throws {
        let t = try TestEngine()
        let key = #""idempotencyKey":"k-create","#
        let create = #"{"campaignId":"cmp_1","name":"Spring","channel":"sms"}"#
        #expect(await t.command("campaign.create", create, extra: key).status == 201)
        var report = try await t.engine.tick(now: testStart + 6 * 86_400)
        #expect(report.idempotencyRecordsPruned == 0)
        #expect(await t.command("campaign.create", create, extra: key).status == 200, "replayed within the week")
        // Within the hour after a tick's look no other look is made; past the week, the record goes.
        report = try await t.engine.tick(now: testStart + 6 * 86_400 + 1_800)
        #expect(report.idempotencyRecordsPruned == 0)
        report = try await t.engine.tick(now: testStart + 7 * 86_400 + 1)
        #expect(report.idempotencyRecordsPruned == 1)
        let again = await t.command("campaign.create", create, extra: key)
        #expect(again.code == "DUPLICATE_RESOURCE", "decided again, not replayed")

        var forever = EngineConfiguration()
        forever.idempotencyRetention = nil
        let kept = try TestEngine(configuration: forever)
        _ = await kept.command("campaign.create", create, extra: key)
        #expect(try await kept.engine.tick(now: testStart + 30 * 86_400).idempotencyRecordsPruned == 0)
        #expect(await kept.command("campaign.create", create, extra: key).status == 200)
    }

    /// The error's first detail: its pointer and message.
    func firstProblem(_ response: JSON) -> (pointer: String?, message: String?) {
        let detail = response["error"]?["details"]?.arrayValue?.first
        return (detail?["pointer"]?.stringValue, detail?["message"]?.stringValue)
    }

    /// Free text holds no control character but tab and line breaks, and one-line text (a subject,
    /// a tag, an enum value, an account id) none at all: a NUL, an escape sequence or a subject's
    /// `\r\nBcc:` was stored as given. Content that shows nothing is refused, and an experiment
    /// variant's content is checked as a campaign's is (it was not checked at all). Tags and enum
    /// values are distinct without regard to case, as rules compare them.
    @Test func freeTextRefusesControlCharactersAndVariantContentIsChecked() async throws {
        let t = try TestEngine()
        let refused: [(String, String, String, String)] = [
            (
                "campaign.create",
                #"{"name":"Spring","channel":"email","content":{"subject":"Hi\r\nBcc: all@example.com","body":"x"}}"#,
                "/payload/content/subject", "subject must not contain control characters (found U+000D)"
            ),
            (
                "campaign.create", #"{"name":"Spring","channel":"email","content":{"body":"Hi\u001b[2J"}}"#,
                "/payload/content/body", "body must not contain control characters (found U+001B)"
            ),
            (
                "campaign.create", #"{"name":"Spring","channel":"email","content":{"body":"\u200B\n"}}"#,
                "/payload/content/body", "body must be 1–100000 characters"
            ),
            (
                "contact.upsert", #"{"contactId":"ctc_1","attributes":{"city":"Oslo\u0000"}}"#,
                "/payload/attributes/city", "city must not contain control characters (found U+0000)"
            ),
            (
                "contact.upsert", #"{"contactId":"ctc_1","attributes":{"tags":["vip","vip"]}}"#,
                "/payload/attributes/tags",
                "tags must not hold an item twice (rules compare them without regard to case)"
            ),
            (
                "contact.upsert", #"{"contactId":"ctc_1","attributes":{"tags":["vip","\u200B"]}}"#,
                "/payload/attributes/tags", "tags must not hold an empty item"
            ),
            (
                "contact.upsert", #"{"contactId":"ctc_1","attributes":{"tags":["vip\n"]}}"#,
                "/payload/attributes/tags", "tags must not contain control characters (found U+000A)"
            ),
            (
                "field.define", #"{"name":"tier","type":"enum","values":["gold","sil\u0000ver"]}"#,
                "/payload/values/1", "value must not contain control characters (found U+0000)"
            ),
        ]
        for (command, payload, pointer, message) in refused {
            let response = await t.command(command, payload)
            #expect(response.code == "VALIDATION_ERROR", "\(payload)")
            #expect(firstProblem(response) == (pointer, message), "\(payload)")
        }
        let multiline = await t.command(
            "campaign.create",
            #"{"campaignId":"cmp_1","name":"Spring","channel":"email","#
                + #""content":{"subject":"S","body":"Hi,\r\n\tthere"}}"#)
        #expect(multiline.status == 201)
        let cased = await t.command("contact.upsert", #"{"contactId":"ctc_1","attributes":{"tags":["vip","VIP"]}}"#)
        #expect(cased.code == "VALIDATION_ERROR")
        let tiers = await t.command("field.define", #"{"name":"tier","type":"enum","values":["Gold","gold"]}"#)
        #expect(tiers.code == "VALIDATION_ERROR" && firstProblem(tiers).pointer == "/payload/values")
        let long = String(repeating: "x", count: 100_001)
        let variants = await t.command(
            "experiment.create",
            #"{"campaignId":"cmp_1","name":"E","variants":[{"key":"a","weight":50,"content":{"body":"\#(long)"}},"#
                + #"{"key":"b","weight":50,"content":{"body":"ok","subject":"a\nb"}}]}"#)
        let pointers = variants["error"]?["details"]?.arrayValue?.compactMap { $0["pointer"]?.stringValue }
        #expect(
            variants.code == "VALIDATION_ERROR"
                && pointers == ["/payload/variants/0/content/body", "/payload/variants/1/content/subject"])
    }

    /// A campaign without content is a valid draft but is not scheduled: it would send nothing.
    /// Before, it was scheduled and activated. A missing segment is named first; once the campaign
    /// has content, it is scheduled.
    @Test func aCampaignWithoutContentIsNotScheduled() async throws {
        let t = try TestEngine()
        let rules = #"{"all":[{"field":"age","operator":"gte","value":18}]}"#
        #expect(await t.command("segment.create", #"{"segmentId":"seg_1","name":"A","rules":\#(rules)}"#).status == 201)
        #expect(
            await t.command("campaign.create", #"{"campaignId":"cmp_1","name":"Bare","channel":"sms"}"#).status == 201)
        let schedule = #"{"campaignId":"cmp_1","sendAt":"2026-12-01T09:00:00Z"}"#
        #expect(await t.command("campaign.schedule", schedule).code == "SEGMENT_REQUIRED")
        #expect(
            await t.command("campaign.attachSegment", #"{"campaignId":"cmp_1","segmentId":"seg_1"}"#).status == 201)
        let refused = await t.command("campaign.schedule", schedule)
        #expect(refused.code == "VALIDATION_ERROR")
        #expect(
            firstProblem(refused)
                == ("/payload/campaignId", "campaign cmp_1 has no content: give it content (campaign.update) first"))
        #expect(try t.engine.eventStore.streamVersion("acme:cmp_1") == 2)
        #expect(
            await t.command("campaign.update", #"{"campaignId":"cmp_1","content":{"body":"Hello"}}"#).status == 201)
        #expect(await t.command("campaign.schedule", schedule).status == 201)
    }

    /// A campaign a store holds scheduled without content (scheduled before `schedule` checked it;
    /// appended here as that code appended it) was activated by the scheduler and sent nothing.
    /// The tick now reports it failed, keeps it scheduled and due, and activates it once it has content.
    @Test func theSchedulerDoesNotActivateACampaignWithoutContent() async throws {
        let directory = TemporaryDirectory()
        let sendAt = testStart + 3_600
        let rules = try JSON.parse(#"{"all":[{"field":"age","operator":"gte","value":18}]}"#)
        func old(_ streamId: String, _ events: [DomainEvent]) -> StreamAppend {
            StreamAppend(
                streamId: streamId, expectedVersion: .noStream,
                events: events.map {
                    NewEvent(
                        type: $0.type, occurredAt: testStart, tenant: "acme", actor: "u_1", requestId: "old",
                        causationId: "old", payload: $0.payload.bytes)
                })
        }
        do {
            let store = try EventStore(path: directory.path)
            defer { store.close() }
            _ = try await store.append(
                AppendRequest(streams: [
                    old("acme:seg_1", [SegmentEvent.created(segmentId: "seg_1", name: "A", rules: rules).domainEvent]),
                    old(
                        "acme:cmp_1",
                        [
                            CampaignEvent.created(
                                campaignId: "cmp_1", name: "Bare", channel: "sms", segmentId: "seg_1", content: nil,
                                sendAt: nil
                            ).domainEvent,
                            CampaignEvent.scheduled(campaignId: "cmp_1", sendAt: sendAt).domainEvent,
                        ]),
                ]))
        }
        // The engine builds its read models from that log on open.
        let t = try TestEngine(on: directory)
        let report = try await t.engine.tick(now: sendAt)
        #expect(report.activated.isEmpty)
        let failed = report.items.first { $0.kind == "campaign" }
        #expect(failed?.id == "cmp_1" && failed?.error?.code == .validationError)
        #expect(failed?.error?.message == "campaign cmp_1 has no content: give it content (campaign.update) first")
        #expect(await t.query("campaign.get", #"{"campaignId":"cmp_1"}"#).data?["status"] == .string("scheduled"))
        let activate = await t.command("campaign.activate", #"{"campaignId":"cmp_1"}"#)
        #expect(activate.code == "VALIDATION_ERROR")
        #expect(
            await t.command("campaign.update", #"{"campaignId":"cmp_1","content":{"body":"Hello"}}"#).status == 201)
        #expect(try await t.engine.tick(now: sendAt + 1).activated.map(\.id) == ["cmp_1"])
        #expect(await t.query("campaign.get", #"{"campaignId":"cmp_1"}"#).data?["status"] == .string("active"))
    }

    /// A campaign's content fits its channel on the wire: an update of the body alone on an email
    /// (which would have dropped its subject) is refused at the subject, a move to SMS with a subject
    /// kept is refused at the channel, and an experiment's variants follow the campaign's channel when
    /// written, when the campaign moves while they are decided, and when started.
    @Test func aCampaignsContentFitsItsChannel() async throws {
        let t = try TestEngine()
        let created = await t.command(
            "campaign.create",
            #"{"campaignId":"cmp_1","name":"Spring","channel":"email","content":{"subject":"Hi","body":"Hello"}}"#)
        #expect(created.status == 201)
        let bodyOnly = await t.command("campaign.update", #"{"campaignId":"cmp_1","content":{"body":"New"}}"#)
        #expect(bodyOnly.code == "VALIDATION_ERROR")
        #expect(firstProblem(bodyOnly) == ("/payload/content/subject", "an email needs a subject"))
        let toSMS = await t.command("campaign.update", #"{"campaignId":"cmp_1","channel":"sms"}"#)
        #expect(
            firstProblem(toSMS)
                == ("/payload/channel", "channel sms cannot carry this campaign's content: an SMS has no subject"))
        let long = String(repeating: "x", count: 1_601)
        let tooLong = await t.command(
            "campaign.update", #"{"campaignId":"cmp_1","channel":"sms","content":{"body":"\#(long)"}}"#)
        #expect(firstProblem(tooLong).pointer == "/payload/content/body")
        // Nothing was written by the refusals.
        #expect(await t.query("campaign.get", #"{"campaignId":"cmp_1"}"#)["data"]?["version"] == .number(1))

        // Variants with a subject are written while the campaign is an email.
        let variants =
            #"[{"key":"a","weight":50},{"key":"b","weight":50,"content":{"subject":"Hey","body":"Hello"}}]"#
        let experiment = await t.command(
            "experiment.create", #"{"experimentId":"exp_1","campaignId":"cmp_1","name":"E","variants":\#(variants)}"#)
        #expect(experiment.status == 201)
        // The campaign moves to SMS while new variants with a subject are decided against the email:
        // the variants are decided again, against SMS, and refused.
        let (moved, rewritten) = try await t.decidedTogether(
            ("campaign.update", #"{"campaignId":"cmp_1","channel":"sms","content":{"body":"Hi"}}"#),
            then: (
                "experiment.update",
                #"{"experimentId":"exp_1","variants":[{"key":"a","weight":40},"#
                    + #"{"key":"b","weight":60,"content":{"subject":"Hey","body":"Hello"}}]}"#
            ))
        #expect(moved.status == 201)
        #expect(rewritten.code == "VALIDATION_ERROR")
        #expect(firstProblem(rewritten) == ("/payload/variants/1/content/subject", "an SMS has no subject"))
        // The variants written for the email cannot start on SMS.
        let start = await t.command("experiment.start", #"{"experimentId":"exp_1"}"#)
        #expect(start.code == "RESOURCE_CONFLICT")
        #expect(start["error"]?["message"]?.stringValue?.contains("variant b cannot be sent") == true)
        let fitting = await t.command(
            "experiment.update",
            #"{"experimentId":"exp_1","variants":[{"key":"a","weight":50},"#
                + #"{"key":"b","weight":50,"content":{"body":"Yo"}}]}"#)
        #expect(fitting.status == 201)
        #expect(await t.command("experiment.start", #"{"experimentId":"exp_1"}"#).status == 201)
    }

    /// A post's text may span lines but holds no other control character; a link or a media URL
    /// names a host (an `https://` prefix alone passed) and never a user: `https://user:pass@…`
    /// stored a password in the log.
    @Test func postTextAndLinksAreChecked() async throws {
        let t = try TestEngine()
        _ = await t.command(
            "social.connect",
            #"{"connectionId":"con_x","platform":"x","accountId":"@acme","credentialRef":"vault://social/x","#
                + #""expiresAt":"2027-01-01T00:00:00Z"}"#)
        func post(_ fields: String) async -> JSON {
            await t.command("post.create", #"{"connectionIds":["con_x"],"text":"Hi",\#(fields)}"#)
        }
        let nul = await t.command("post.create", #"{"connectionIds":["con_x"],"text":"Hi\u0000"}"#)
        #expect(firstProblem(nul) == ("/payload/text", "text must not contain control characters (found U+0000)"))
        #expect(
            await t.command("post.create", #"{"connectionIds":["con_x"],"text":"Hi\nthere\tyou"}"#).status == 201)
        let message = "link must be an https URL of at most 2048 characters, naming a host and no user"
        for bad in [
            "https://user:secret@example.com/x", "https://@example.com/", "https://?q", "https:///path",
            "https://a..b/", "https://-a.example/", "https://example.com:0/", "https://example.com:65536/",
            "https://[zz]/", "https://[::1", "http://example.com/", "https://exa mple.com/",
        ] {
            #expect(firstProblem(await post(#""link":"\#(bad)""#)) == ("/payload/link", message), "\(bad)")
        }
        let media = await post(#""media":[{"kind":"image","url":"https://u@cdn.example/a.png"}]"#)
        #expect(firstProblem(media).pointer == "/payload/media/0/url")
        for good in [
            "https://example.com", "HTTPS://Example.com./a?utm_source=x#top", "https://cdn.example:8443/v.mp4",
            "https://[2001:db8::1]:443/x", "https://bücher.example/", "https://my_bucket.s3.example/k",
            "https://example.com/a@b",
        ] {
            #expect(await post(#""link":"\#(good)""#).status == 201, "\(good)")
        }
    }

    /// An account id is checked as a name is (no control character, not blank) and compared as
    /// one: `@ACME ` is the account `@acme` already connected.
    @Test func accountIdsAreCheckedAndComparedAsNamesAre() async throws {
        let t = try TestEngine()
        func connect(_ id: String, _ account: String) async -> JSON {
            await t.command(
                "social.connect",
                #"{"connectionId":"\#(id)","platform":"x","accountId":"\#(account)","#
                    + #""credentialRef":"vault://social/x","expiresAt":"2027-01-01T00:00:00Z"}"#)
        }
        #expect(await connect("con_1", "@acme").status == 201)
        let again = await connect("con_2", "@ACME ")
        #expect(
            again.code == "DUPLICATE_RESOURCE"
                && again["error"]?["message"] == .string("x account @ACME is already connected in this tenant"))
        #expect(
            firstProblem(await connect("con_3", "\\u200B"))
                == ("/payload/accountId", "accountId must be 1–200 characters, not 0"))
        #expect(
            firstProblem(await connect("con_4", "a\\u001b[2J"))
                == ("/payload/accountId", "accountId must not contain control characters (found U+001B)"))
        #expect(await t.command("social.disconnect", #"{"connectionId":"con_1"}"#).status == 201)
        #expect(await connect("con_5", "@Acme").status == 201)
    }

    // 11
    @Test(arguments: [
        ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:social/x-AbCdEf", true),
        ("projects/acme/secrets/x-token/versions/latest", true), ("vault:secret/social/x", true),
        ("k8s://marketing/social-tokens/x", true), ("vault://secret/data/social/x", true),
        ("https://user:s3cret@vault.example/x", false), ("vault://secret/x?token=abc", false),
        ("vault://secret/ghp_abcdefghijklmnopqrstuvwxyz0123456789", false),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", false),
        ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY+Zq9Xw3", false), ("vault://x/Zq8RtY2mWp4LkX9sVb7NcQ3e", false),
        ("token", false),
    ])
    func credentialReferencesAreAcceptedBroadlyButNeverCarryASecret(_ reference: String, _ accepted: Bool) {
        #expect((CredentialReference.problem(reference) == nil) == accepted)
    }

    // 12
    @Test func pointersNameValuesThatExistAndEveryWeightProblemIsListed() async throws {
        let t = try TestEngine()
        let enumField = await t.command("field.define", #"{"name":"tier","type":"enum"}"#)
        #expect(
            enumField.code == "VALIDATION_ERROR"
                && enumField["error"]?["details"]?.arrayValue?.first?["pointer"] == .string("/payload"))
        _ = await t.command("campaign.create", #"{"campaignId":"cmp_1","name":"Spring","channel":"email"}"#)
        let weights = await t.command(
            "experiment.create",
            #"{"campaignId":"cmp_1","name":"E","variants":[{"key":"a","weight":-5},{"key":"a","#
                + #""weight":18446744073709551616},{"key":"c","weight":0}]}"#
        )
        #expect(weights.code == "VALIDATION_ERROR")
        let pointers = weights["error"]?["details"]?.arrayValue?.compactMap { $0["pointer"]?.stringValue } ?? []
        #expect(
            pointers == [
                "/payload/variants/0/weight", "/payload/variants/1/key", "/payload/variants/1/weight",
                "/payload/variants/2/weight",
            ])
    }

    // 14
    @Test func cursorsAreOpaqueAndBoundToTenantQueryAndFilters() async throws {
        let t = try TestEngine()
        for tenant in ["acme", "globex"] {
            for n in 0..<3 {
                _ = await t.command(
                    "campaign.create", #"{"campaignId":"cmp_\#(n)","name":"Campaign \#(n)","channel":"sms"}"#,
                    as: admin(tenant))
            }
        }
        let first = await t.query("campaign.list", #"{"limit":1}"#)
        let cursor = try #require(first.data?["nextCursor"]?.stringValue)
        let decoded =
            Data(
                base64Encoded: cursor.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
                    + "==") ?? Data()
        #expect(
            !String(decoding: decoded, as: UTF8.self).contains("acme")
                && !String(decoding: decoded, as: UTF8.self).contains("cmp_"))
        #expect(
            await t.query("campaign.list", #"{"limit":1,"cursor":"\#(cursor)"}"#).data?["items"]?.arrayValue?.count == 1
        )
        var flipped = Array(cursor)
        flipped[flipped.count / 2] = flipped[flipped.count / 2] == "A" ? "B" : "A"
        for bad in [String(flipped), String(cursor.dropLast(3)), "cmF3"] {
            let response = await t.query("campaign.list", #"{"limit":1,"cursor":"\#(bad)"}"#)
            #expect(response.code == "INVALID_FORMAT" && response["error"]?["param"] == .string("cursor"))
        }
        #expect(
            await t.query("campaign.list", #"{"limit":1,"cursor":"\#(cursor)"}"#, as: admin("globex")).code
                == "INVALID_FORMAT")
        #expect(
            await t.query("campaign.list", #"{"limit":1,"status":"draft","cursor":"\#(cursor)"}"#).code
                == "INVALID_FORMAT")
        #expect(await t.query("post.list", #"{"limit":1,"cursor":"\#(cursor)"}"#).code == "INVALID_FORMAT")
    }

    // 19
    @Test func aTickThatCannotReadItsWorkSaysSo() async throws {
        let t = try TestEngine()
        t.engine.close()
        await #expect(throws: EventStoreError.self) { try await t.engine.tick() }
    }

    // 16
    @Test func illegalTransitionMessagesUseTheRightArticle() async throws {
        let t = try TestEngine()
        _ = await t.command(
            "segment.create",
            #"{"segmentId":"seg_1","name":"All","rules":{"all":[{"field":"email","operator":"exists"}]}}"#)
        _ = await t.command("segment.archive", #"{"segmentId":"seg_1"}"#)
        let response = await t.command("segment.update", #"{"segmentId":"seg_1","name":"Renamed"}"#)
        #expect(response["error"]?["message"]?.stringValue?.hasPrefix("Cannot update an archived segment") == true)
        // A verb of two words reads as words ("Cannot recordExposure a draft experiment" read badly).
        _ = await t.command("campaign.create", #"{"campaignId":"cmp_1","name":"Spring","channel":"sms"}"#)
        _ = await t.command(
            "experiment.create",
            #"{"experimentId":"exp_1","campaignId":"cmp_1","name":"E","variants":[{"key":"a","weight":50},"#
                + #"{"key":"b","weight":50}]}"#)
        let exposure = await t.command("experiment.recordExposure", #"{"experimentId":"exp_1","contactId":"ctc_1"}"#)
        #expect(
            exposure["error"]?["message"]
                == .string("Cannot record an exposure in a draft experiment; allowed from: running"))
        _ = await t.command("campaign.cancel", #"{"campaignId":"cmp_1"}"#)
        _ = await t.command("campaign.archive", #"{"campaignId":"cmp_1"}"#)
        let attach = await t.command("campaign.attachSegment", #"{"campaignId":"cmp_1","segmentId":"seg_1"}"#)
        #expect(attach["error"]?["message"]?.stringValue?.hasPrefix("Cannot attach a segment to an archived") == true)
    }
}

/// A catch-up projection that counts the events it is given: applying one twice shows.
struct CountingProjection: Projection {
    var name: String { "counting" }
    var version: Int { 1 }
    var mode: ProjectionMode { .catchUp }
    func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws { try table.add(1, to: Array("n".utf8)) }
}

@Suite struct StoreDefectTests {
    func append(_ store: EventStore, _ n: Int) throws {
        _ = try store.appendAndWait(
            AppendRequest(streams: [
                StreamAppend(
                    streamId: "s:\(n)", expectedVersion: .any,
                    events: [
                        NewEvent(
                            type: "x.happened", occurredAt: Date(), tenant: "t", actor: "a", requestId: "r",
                            causationId: "c",
                            payload: Array(#"{"m":"marker-\#(n)-end"}"#.utf8))
                    ])
            ]))
    }

    /// Damages every copy of the record holding `marker-N-end` in the file (copy-on-write leaves stale copies).
    func damage(_ directory: String, marker n: Int) throws {
        try flipEveryCopy(of: "marker-\(n)-end", in: directory, at: 7)
    }

    // 17
    @Test func verifyingACatchUpProjectionWhileWritersAppendNeverAppliesAnEventTwice() async throws {
        let directory = TemporaryDirectory()
        let store = try EventStore(path: directory.path)
        defer { store.close() }
        for n in 0..<200 { try append(store, n) }
        let runner = try ProjectionRunner(store: store, projections: [CountingProjection()])
        try runner.prepare()
        let writer = Task.detached { for n in 200..<400 { try append(store, n) } }
        for _ in 0..<5 { _ = try runner.verify("counting", batchSize: 1) }
        try await writer.value
        try runner.catchUp()
        let counted = try runner.read("counting") { try $0.count(Array("n".utf8)) }
        #expect(counted == 400)
    }

    // 21 and 18
    @Test func aStoreWhoseHeadDoesNotVerifyRefusesAppendsUntilAVerifyPasses() throws {
        let directory = TemporaryDirectory()
        do {
            let store = try EventStore(path: directory.path)
            for n in 0..<3 { try append(store, n) }
            store.close()
        }
        try damage(directory.path, marker: 2)
        let store = try EventStore(path: directory.path)
        #expect(store.writesRefused?.contains("head record (position 3)") == true)
        #expect(throws: EventStoreError.self) { try append(store, 9) }
        #expect(try store.verifyChain().isIntact == false)
        store.close()
        // Still refused after a restart: the refusal is kept in the store.
        let reopened = try EventStore(path: directory.path)
        #expect(reopened.writesRefused != nil)
        reopened.close()
    }

    // 20
    @Test func readOnlyToolsWorkOnAStoreTheyMayNotWrite() async throws {
        let directory = TemporaryDirectory()
        let run = try await campaign(
            ["apply", "--data", directory.path],
            input:
                #"{"requestId":"r","principal":\#(admin()),"command":"campaign.create","#
                + #""payload":{"name":"Spring","channel":"sms"}}"#
                + "\n")
        #expect(run.status == 0)
        let id = try #require((try JSON.parse(run.out))["data"]?["campaignId"]?.stringValue)
        let before =
            try FileManager.default.attributesOfItem(atPath: directory.path + "/data.mdb")[.modificationDate] as? Date
        try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: directory.path)
        try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: directory.path + "/data.mdb")
        defer {
            try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory.path)
            try? FileManager.default.setAttributes(
                [.posixPermissions: 0o644], ofItemAtPath: directory.path + "/data.mdb")
        }
        for arguments in [
            ["projections", "status"], ["verify"], ["stats"], ["replay"],
            ["replay", "--stream", "acme:" + id, "--as-of", "5"],
        ] {
            let result = try await campaign(arguments + ["--data", directory.path])
            #expect(result.status == 0, "\(arguments): \(result.err)")
        }
        let after =
            try FileManager.default.attributesOfItem(atPath: directory.path + "/data.mdb")[.modificationDate] as? Date
        #expect(before == after)
    }
}

/// The `campaign` binary as a user drives it (issue 11, items 8, 10, 13, 15, 16).
@Suite(.serialized) struct CLIDefectTests {
    func request(_ id: String, name: String) -> [UInt8] {
        Array(#"{"requestId":"\#(id)","principal":\#(admin()),"command":"campaign.create","payload":{"name":""#.utf8)
            + Array(name.utf8) + Array(#"","channel":"sms"}}"#.utf8)
    }

    // 8
    @Test func invalidUTF8IsRefusedBeforeAnyStringIsMade() async throws {
        let directory = TemporaryDirectory()
        var input = [UInt8]()
        // Invalid bytes, an overlong '/', an encoded surrogate.
        let sequences: [[UInt8]] = [[0xFF, 0xFE], [0xC0, 0xAF], [0xED, 0xA0, 0x80]]
        for (index, bad) in sequences.enumerated() {
            input += request("r\(index)", name: "Host").dropLast(#"","channel":"sms"}}"#.utf8.count)
            input += bad + Array(#"ile","channel":"sms"}}"#.utf8) + [0x0A]
        }
        let raw = try await campaign(["apply", "--data", directory.path], bytes: input).out
        let codes = raw.split(separator: "\n").map { (try? JSON.parse(String($0)))?.code }
        #expect(codes == ["INVALID_FORMAT", "INVALID_FORMAT", "INVALID_FORMAT"])
    }

    // 13
    @Test func aByteOrderMarkIsIgnoredAndEveryLineIsAnswered() async throws {
        let directory = TemporaryDirectory()
        let input =
            "\u{FEFF}" + String(decoding: request("r1", name: "Spring"), as: UTF8.self) + "\n\n   \n"
            + String(decoding: request("r2", name: "Summer"), as: UTF8.self) + "\r\n"
        let run = try await campaign(["apply", "--data", directory.path], input: input)
        let answers = run.lines.compactMap { try? JSON.parse($0) }
        #expect(answers.map(\.status) == [201, 400, 400, 201])
    }

    // 10 (a regression of its fix): the CLI's own help keeps its line breaks.
    @Test func helpTextKeepsItsLineBreaks() async throws {
        for words in [["--help"], ["replay", "--help"], ["apply", "--help"]] {
            let run = try await campaign(words)
            #expect(run.status == 0 && run.lines.count > 3, "\(words)")
            #expect(!run.lines.contains { $0.contains("\\u000a") }, "\(words)")
        }
        let bare = try await campaign([])
        #expect(bare.status == 64 && bare.err.split(separator: "\n").count > 3)
    }

    // 10
    @Test func controlCharactersInStoredDataAreEscapedInHumanOutput() async throws {
        let directory = TemporaryDirectory()
        do {
            let store = try EventStore(path: directory.path)
            _ = try store.appendAndWait(
                AppendRequest(streams: [
                    StreamAppend(
                        streamId: "acme:cmp_1", expectedVersion: .any,
                        events: [
                            NewEvent(
                                type: "campaign.created", occurredAt: Date(), tenant: "acme",
                                actor: "evil\u{1B}[2J\u{07}", requestId: "r",
                                causationId: "c",
                                payload: Array(
                                    #"{"campaignId":"cmp_1","name":"Bad\u001b]0;owned\u0007","channel":"sms"}"#.utf8))
                        ])
                ]))
            store.close()
        }
        let table = try await campaign(["replay", "--data", directory.path])
        #expect(
            !table.out.utf8.contains(0x1B) && !table.out.utf8.contains(0x07)
                && table.out.contains("evil\\u001b[2J\\u0007"))
        let state = try await campaign(["replay", "--data", directory.path, "--stream", "acme:cmp_1", "--as-of", "1"])
        #expect(!state.out.utf8.contains(0x1B) && state.out.contains("Bad\\u001b]0;owned"))
    }

    // 15
    @Test func applyAnswersEachLineAsSoonAsItIsComplete() async throws {
        let directory = TemporaryDirectory()
        let child = try ChildProcess(
            product("campaign"), ["apply", "--data", directory.path], input: .pipe, output: .collect)
        defer { child.terminate() }
        for (count, id) in ["first", "second"].enumerated() {
            #expect(child.write(request(id, name: "Campaign \(id)") + [0x0A]))
            // The answer must come while stdin is still open.
            try await waitUntil("the answer to \(id)") { child.lines.count == count + 1 }
            #expect((try? JSON.parse(child.lines.last ?? ""))?["requestId"] == .string(id))
        }
        child.closeInput()
        #expect(await child.waitForExit() == .exited(0))
    }

    // 16
    @Test func roughEdgesGiveCleanErrorsAndTheRightExitCodes() async throws {
        let directory = TemporaryDirectory()
        let file = directory.path + "/plain-file"
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        let onFile = try await campaign(["apply", "--data", file], input: "")
        #expect(
            onFile.status == 1 && onFile.err.contains("not a directory") && !onFile.err.contains("NSError")
                && !onFile.err.contains("Domain="))
        let missing = try await campaign(["verify", "--json", "--data", directory.path + "/none"])
        #expect(
            missing.status == 1 && (try? JSON.parse(missing.out))?["error"]?["code"] == .string("RESOURCE_NOT_FOUND"))
        let unknown = try await campaign(["projections", "rebuild", "nosuch", "--data", directory.path])
        #expect(unknown.status == 64 && unknown.err.contains("no projection named nosuch"))
        let scope = try await campaign(
            ["apply", "--data", directory.path + "/s"],
            input:
                #"{"requestId":"r","principal":{"tenant":"acme","subject":"u","role":"admin","#
                + #""scopes":["nope"],"expiresAt":"2027-01-01T00:00:00Z"},"query":"campaign.list"}"#
                + "\n")
        let message = (try? JSON.parse(scope.lines.first ?? ""))?["error"]?["message"]?.stringValue ?? ""
        #expect(Principal.allScopes.allSatisfy(message.contains))
    }
}
