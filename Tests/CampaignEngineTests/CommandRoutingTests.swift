import CampaignDomain
import CampaignEngine
import Foundation
import TestSupport
import Testing

/// Commands on the wire reach their aggregate through the route table: ids a create leaves out
/// are made while decoding, and the domain's payload-relative pointers come back placed in the request.
@Suite struct CommandRoutingTests {
    /// One request line for `campaign apply`.
    static func line(_ id: String, _ name: String, _ payload: String, key: String? = nil) -> String {
        let idempotency = key.map { #""idempotencyKey":"\#($0)","# } ?? ""
        return
            #"{"requestId":"\#(id)",\#(idempotency)"principal":\#(admin()),"command":"\#(name)","payload":\#(payload)}"#
    }

    @Test func eachAggregateAnswersThroughApplyWithItsIdAndItsPointersInTheRequest() async throws {
        let directory = TemporaryDirectory()
        let requests: [(String, String, String)] = [
            ("schema", "field.define", #"{"name":"loyalty_points","type":"number"}"#),
            (
                "segment", "segment.create",
                #"{"name":"Adults","rules":{"all":[{"field":"age","operator":"gte","value":18}]}}"#
            ),
            ("campaign", "campaign.create", #"{"campaignId":"cmp_1","name":"Spring","channel":"email"}"#),
            ("contact", "contact.upsert", #"{"contactId":"ctc_1","attributes":{"age":30}}"#),
            (
                "connection", "social.connect",
                #"{"connectionId":"con_1","platform":"x","accountId":"acme","credentialRef":"vault://x/acme","#
                    + #""expiresAt":"2027-06-01T00:00:00Z"}"#
            ),
            ("post", "post.create", #"{"connectionIds":["con_1"],"text":"Launch"}"#),
            (
                "experiment", "experiment.create",
                #"{"campaignId":"cmp_1","name":"Subjects","#
                    + #""variants":[{"key":"a","weight":50},{"key":"b","weight":50}]}"#
            ),
            // One refusal per aggregate, each pointing at its field inside /payload.
            ("bad-schema", "field.define", #"{"name":"Bad Name","type":"number"}"#),
            (
                "bad-segment", "segment.create",
                #"{"name":"Odd","rules":{"all":[{"field":"shoe","operator":"eq","value":1}]}}"#
            ),
            ("bad-campaign", "campaign.create", #"{"name":"Past","channel":"email","sendAt":"2020-01-01T00:00:00Z"}"#),
            ("bad-contact", "contact.upsert", #"{"contactId":"ctc_2","attributes":{"age":"old"}}"#),
            (
                "bad-connection", "social.connect",
                #"{"platform":"myspace","accountId":"a","credentialRef":"vault://m/a","#
                    + #""expiresAt":"2027-06-01T00:00:00Z"}"#
            ),
            (
                "bad-post", "post.create",
                #"{"connectionIds":["con_1"],"text":"\#(String(repeating: "a", count: 281))"}"#
            ),
            (
                "bad-experiment", "experiment.create",
                #"{"campaignId":"cmp_1","name":"Odd","variants":[{"key":"a","weight":50},{"key":"b","weight":40}]}"#
            ),
            (
                "bad-import", "contact.import",
                #"{"contacts":[{"contactId":"ctc_3","attributes":{"age":1}},"#
                    + #"{"contactId":"ctc_4","attributes":{"age":"x"}}]}"#
            ),
        ]
        let input = requests.map { Self.line($0.0, $0.1, $0.2) }.joined(separator: "\n") + "\n"
        let run = try await campaign(
            ["apply", "--data", directory.path, "--now", "2026-11-30T12:00:00Z"], input: input)
        #expect(run.status == 0, "\(run.err)")
        var answers = JSONObject()
        for line in run.lines {
            let answer = try JSON.parse(line)
            answers[answer["requestId"]?.stringValue ?? ""] = answer
        }
        for kind in ["segment", "campaign", "connection", "post", "experiment"] {
            let data = answers[kind]?["data"]
            #expect(answers[kind]?.status == 201, "\(kind): \(answers[kind]?.text ?? "no answer")")
            let id = data?["\(kind)Id"]?.stringValue ?? ""
            #expect(!id.isEmpty && data?["streamId"]?.stringValue == "acme:" + id, "\(kind)")
            #expect(data?[kind]?["\(kind)Id"]?.stringValue ?? data?[kind]?["id"]?.stringValue == id, "\(kind)")
        }
        #expect(answers["schema"]?.status == 201, "\(answers["schema"]?.text ?? "")")
        #expect(answers["contact"]?.status == 201, "\(answers["contact"]?.text ?? "")")
        func pointers(_ id: String) -> [String] {
            let error = answers[id]?["error"]
            let all =
                [error?["pointer"]?.stringValue].compactMap { $0 }
                + (error?["details"]?.arrayValue ?? []).compactMap { $0["pointer"]?.stringValue }
            return all.enumerated().filter { !all[..<$0.offset].contains($0.element) }.map(\.element)
        }
        #expect(pointers("bad-schema") == ["/payload/name"])
        #expect(
            pointers("bad-segment").allSatisfy { $0.hasPrefix("/payload/rules/all/0") }
                && !pointers("bad-segment").isEmpty)
        #expect(pointers("bad-campaign") == ["/payload/sendAt"])
        #expect(pointers("bad-contact") == ["/payload/attributes/age"])
        #expect(pointers("bad-connection") == ["/payload/platform"])
        #expect(pointers("bad-post") == ["/payload/text"])
        #expect(pointers("bad-experiment") == ["/payload/variants"])
        let item = answers["bad-import"]?["data"]?["results"]?.arrayValue?.last?["error"]
        #expect(answers["bad-import"]?.status == 207)
        #expect(
            item?["details"]?.arrayValue?.first?["pointer"]?.stringValue == "/payload/contacts/1/attributes/age")
    }

    @Test func aCreateWithoutAnIdRetriedWithItsKeyGetsTheIdOfTheFirstTry() async throws {
        let engine = try TestEngine()
        let payload = #"{"name":"Spring","channel":"email"}"#
        let first = await engine.command("campaign.create", payload, extra: #""idempotencyKey":"k1","#)
        let retry = await engine.command("campaign.create", payload, extra: #""idempotencyKey":"k1","#)
        let id = first["data"]?["campaignId"]?.stringValue
        #expect(first.status == 201 && id?.hasPrefix("cmp_") == true)
        #expect(retry.status == 200 && retry["data"]?["campaignId"]?.stringValue == id)
        // Without the key, the same payload is a new campaign whose name clashes.
        let again = await engine.command("campaign.create", payload)
        #expect(again.code == "DUPLICATE_RESOURCE")
        #expect(again["error"]?["pointer"]?.stringValue == "/payload/name")
        // The same key with another payload is refused.
        let other = await engine.command(
            "campaign.create", #"{"name":"Summer","channel":"email"}"#, extra: #""idempotencyKey":"k1","#)
        #expect(other.code == "RESOURCE_CONFLICT")
    }

    @Test func aResponseBodyIsTheCanonicalWireObjectWhetherItsDataWasEncodedForTheRecordOrNot() async throws {
        let engine = try TestEngine()
        func request(_ id: String, _ key: String?, _ payload: String) -> [UInt8] {
            let idempotency = key.map { #""idempotencyKey":"\#($0)","# } ?? ""
            return Array(
                (#"{"requestId":"\#(id)",\#(idempotency)"principal":\#(admin()),"command":"campaign.create","#
                    + #""payload":\#(payload)}"#).utf8)
        }
        let keyed = await engine.engine.handle(
            request(#"r-\"1\"\\x"#, "k-body", #"{"name":"Ünïcode \"quoted\"","channel":"email"}"#))
        let plain = await engine.engine.handle(request("r-2", nil, #"{"name":"Plain","channel":"sms"}"#))
        let retried = await engine.engine.handle(
            request(#"r-\"1\"\\x"#, "k-body", #"{"name":"Ünïcode \"quoted\"","channel":"email"}"#))
        let refused = await engine.engine.handle(request("r-3", nil, #"{"name":"","channel":"email"}"#))
        #expect(keyed.status == 201, "\(keyed.line)")
        #expect(plain.status == 201, "\(plain.line)")
        #expect(retried.status == 200, "\(retried.line)")
        #expect(refused.status == 422, "\(refused.line)")
        for response in [keyed, plain, retried, refused] {
            #expect(response.bytes == response.json.bytes, "\(response.line)")
        }
        #expect(retried.data == keyed.data, "the record holds the data the first answer sent")
        // An aggregate command's data is made only as bytes; reading it decodes them, to the same value
        // as the body's (and the read model's state is there, not just the receipt).
        for response in [keyed, plain] {
            let body = try JSON.parse(response.bytes)
            #expect(response.data != nil && response.data == body["data"], "\(response.line)")
            #expect(response.data?["campaign"]?["status"] == .string("draft"), "\(response.line)")
        }
        // Data set by a host after the engine answered is what the body carries.
        var changed = keyed
        changed.data = .object(["replaced": .bool(true)])
        #expect(changed.bytes == changed.json.bytes)
        #expect(changed != keyed)
        var empty = plain
        empty.data = nil
        #expect(empty.bytes == empty.json.bytes)
    }

    @Test func aCreateOnATakenIdIsADuplicateAtItsIdAndAnUnknownCommandIsNamed() async throws {
        let engine = try TestEngine()
        let create = #"{"connectionId":"con_1","platform":"x","accountId":"a","credentialRef":"vault://x/a","#
        #expect(await engine.command("social.connect", create + #""expiresAt":"2027-06-01T00:00:00Z"}"#).status == 201)
        let clash = await engine.command(
            "social.connect",
            #"{"connectionId":"con_1","platform":"x","accountId":"b","credentialRef":"vault://x/b","#
                + #""expiresAt":"2027-06-01T00:00:00Z"}"#)
        #expect(clash.code == "DUPLICATE_RESOURCE")
        #expect(clash["error"]?["pointer"]?.stringValue == "/payload/connectionId")
        for name in ["campaign.launch", "segment.delete", "field.drop", "post", "system.reset"] {
            let answer = await engine.command(name, "{}")
            #expect(
                answer.code == "INVALID_FORMAT" && answer["error"]?["pointer"]?.stringValue == "/command", "\(name)")
        }
    }
}

/// `campaign apply --concurrency N`: requests run together, answers come in input order.
@Suite struct ApplyConcurrencyTests {
    @Test func answersComeInInputOrderAndEveryCreateCommitsOnce() async throws {
        let directory = TemporaryDirectory()
        var lines = [String]()
        for index in 0..<300 {
            switch index % 50 {
            case 7: lines.append("")
            case 13: lines.append(#"{"requestId":"r\#(index)","command":"campaign.create","payload":{"name":}"#)
            default:
                lines.append(
                    CommandRoutingTests.line(
                        "r\(index)", "campaign.create", #"{"name":"Campaign \#(index)","channel":"email"}"#))
            }
        }
        let run = try await campaign(
            ["apply", "--data", directory.path, "--now", "2026-11-30T12:00:00Z", "--concurrency", "16"],
            input: lines.joined(separator: "\n") + "\n")
        #expect(run.status == 0, "\(run.err)")
        try #require(run.lines.count == 300)
        var created = Set<String>()
        for (index, line) in run.lines.enumerated() {
            let answer = try JSON.parse(line)
            switch index % 50 {
            case 7:
                #expect(answer.code == "INVALID_FORMAT")
            case 13:
                #expect(answer.code == "INVALID_FORMAT" && answer["requestId"]?.stringValue == "unknown")
            default:
                #expect(answer["requestId"]?.stringValue == "r\(index)" && answer.status == 201, "\(line)")
                if let id = answer["data"]?["campaignId"]?.stringValue { created.insert(id) }
            }
        }
        #expect(created.count == 288)
        // The log holds each create once, and the chain verifies.
        let verify = try await campaign(["verify", "--data", directory.path, "--json"])
        #expect(verify.status == 0)
        #expect((try? JSON.parse(verify.out))?["eventsChecked"]?.integerValue == 288)
    }

    @Test func aConcurrencyOutsideOneTo256IsAUsageError() async throws {
        for value in ["0", "257", "many"] {
            let run = try await campaign(["apply", "--concurrency", value], input: "")
            #expect(run.status == 64 && run.err.contains("--concurrency"), "\(value): \(run.err)")
        }
    }
}
