import CampaignDomain
import CampaignEngine
import EventStore
import Foundation
import TestSupport
import Testing

/// Each code this issue can raise, once through the wire format and once through the typed API.
@Suite struct ErrorCatalogueTests {
    static let rules = #"{"all":[{"field":"age","operator":"gte","value":18}]}"#

    /// A store with one campaign cmp_1 (draft, with segment seg_1) and one active cmp_live.
    func seeded() async throws -> TestEngine {
        let t = try TestEngine()
        #expect(
            await t.command("segment.create", #"{"segmentId":"seg_1","name":"Adults","rules":\#(Self.rules)}"#).status
                == 201)
        #expect(
            await t.command(
                "campaign.create",
                #"{"campaignId":"cmp_1","name":"Spring","channel":"email","segmentId":"seg_1","#
                    + #""content":{"subject":"Hi","body":"Hello"}}"#
            ).status == 201)
        #expect(
            await t.command(
                "campaign.create",
                #"{"campaignId":"cmp_live","name":"Live","channel":"email","segmentId":"seg_1","#
                    + #""content":{"subject":"Hi","body":"Hello"}}"#
            ).status == 201)
        #expect(
            await t.command("campaign.schedule", #"{"campaignId":"cmp_live","sendAt":"2026-11-22T00:00:00Z"}"#).status
                == 201)
        #expect(await t.command("campaign.activate", #"{"campaignId":"cmp_live"}"#).status == 201)
        return t
    }

    struct WireCase: CustomTestStringConvertible, Sendable {
        let code: String
        let status: Int
        let line: String
        var pointer: String?
        var testDescription: String { code }
    }

    static let p = admin()
    static let wireCases: [WireCase] = [
        .init(
            code: "UNAUTHORIZED", status: 401, line: #"{"command":"campaign.pause","payload":{"campaignId":"cmp_1"}}"#),
        .init(
            code: "TOKEN_EXPIRED", status: 401,
            line:
                #"{"principal":\#(principal(expiresAt: "2026-11-21T10:00:00Z")),"#
                + #""command":"campaign.pause","payload":{"campaignId":"cmp_1"}}"#
        ),
        .init(
            code: "FORBIDDEN", status: 403,
            line:
                #"{"principal":\#(principal(role: "viewer")),"command":"campaign.pause","#
                + #""payload":{"campaignId":"cmp_1"}}"#
        ),
        .init(
            code: "INVALID_SCOPE", status: 403,
            line:
                #"{"principal":\#(principal(scopes: ["campaigns:read"])),"command":"campaign.pause","#
                + #""payload":{"campaignId":"cmp_1"}}"#
        ),
        .init(
            code: "RESOURCE_NOT_FOUND", status: 404,
            line: #"{"principal":\#(p),"command":"campaign.pause","payload":{"campaignId":"cmp_nope"}}"#,
            pointer: "/payload/campaignId"),
        .init(
            code: "DUPLICATE_RESOURCE", status: 409,
            line:
                #"{"principal":\#(p),"command":"campaign.create","payload":{"campaignId":"cmp_1","#
                + #""name":"Other","channel":"sms"}}"#,
            pointer: "/payload/campaignId"),
        .init(
            code: "RESOURCE_CONFLICT", status: 409,
            line: #"{"principal":\#(p),"command":"campaign.pause","payload":{"campaignId":"cmp_1"}}"#),
        .init(
            code: "VALIDATION_ERROR", status: 422,
            line: #"{"principal":\#(p),"command":"campaign.create","payload":{"name":"ab","channel":"pigeon"}}"#,
            pointer: "/payload/name"),
        .init(
            code: "INVALID_FIELD", status: 400,
            line: #"{"principal":\#(p),"command":"campaign.pause","payload":{"campaignId":"cmp_1","force":true}}"#,
            pointer: "/payload/force"),
        .init(
            code: "MISSING_FIELD", status: 400,
            line: #"{"principal":\#(p),"command":"campaign.create","payload":{"channel":"sms"}}"#,
            pointer: "/payload/name"),
        .init(
            code: "INVALID_FORMAT", status: 400,
            line: #"{"principal":\#(p),"command":"campaign.create","payload":{"name":42,"channel":"sms"}}"#,
            pointer: "/payload/name"),
        .init(
            code: "INVALID_SEGMENT_RULE", status: 422,
            line: #"{"principal":\#(p),"command":"segment.create","payload":{"name":"S","rules":{"all":[]}}}"#,
            pointer: "/payload/rules/all"),
        .init(
            code: "UNKNOWN_FIELD", status: 422,
            line:
                #"{"principal":\#(p),"command":"segment.create","payload":{"name":"S","#
                + #""rules":{"all":[{"field":"shoe","operator":"exists"}]}}}"#,
            pointer: "/payload/rules/all/0/field"),
        .init(
            code: "INVALID_OPERATOR", status: 422,
            line:
                #"{"principal":\#(p),"command":"segment.create","payload":{"name":"S","#
                + #""rules":{"all":[{"field":"subscribed","operator":"gt","value":1}]}}}"#,
            pointer: "/payload/rules/all/0/operator"),
        .init(
            code: "CAMPAIGN_ALREADY_ACTIVE", status: 409,
            line:
                #"{"principal":\#(p),"command":"campaign.update","payload":{"campaignId":"cmp_live","name":"Renamed"}}"#
        ),
        .init(
            code: "CAMPAIGN_NOT_SCHEDULED", status: 409,
            line: #"{"principal":\#(p),"command":"campaign.activate","payload":{"campaignId":"cmp_1"}}"#),
        .init(
            code: "SEGMENT_REQUIRED", status: 422,
            line:
                #"{"principal":\#(p),"command":"campaign.create","payload":{"campaignId":"cmp_bare","#
                + #""name":"Bare","channel":"sms"}}"#
        ),
        .init(
            code: "INVALID_SCHEDULE", status: 422,
            line:
                #"{"principal":\#(p),"command":"campaign.schedule","payload":{"campaignId":"cmp_1","#
                + #""sendAt":"2026-11-21T09:59:59Z"}}"#,
            pointer: "/payload/sendAt"),
    ]

    @Test(arguments: wireCases)
    func wireRequestGetsTheCode(_ item: WireCase) async throws {
        let t = try await seeded()
        var line = item.line
        if item.code == "SEGMENT_REQUIRED" {
            // A campaign without a segment, then schedule it.
            #expect(await t.send(line).status == 201)
            line =
                #"{"principal":\#(Self.p),"command":"campaign.schedule","#
                + #""payload":{"campaignId":"cmp_bare","sendAt":"2026-12-01T00:00:00Z"}}"#
        }
        let response = await t.send(line)
        #expect(response.code == item.code, "\(response)")
        #expect(response.status == item.status)
        #expect(response["error"]?["message"]?.stringValue?.isEmpty == false)
        if let pointer = item.pointer { #expect(response["error"]?["pointer"]?.stringValue == pointer, "\(response)") }
    }

    @Test func validationErrorListsEveryProblemWithPointers() async throws {
        let t = try await seeded()
        let response = await t.command("campaign.create", #"{"name":"ab","channel":"pigeon","content":{"body":""}}"#)
        let details = response["error"]?["details"]?.arrayValue ?? []
        #expect(
            details.compactMap { $0["pointer"]?.stringValue } == [
                "/payload/name", "/payload/channel", "/payload/content/body",
            ])
    }

    @Test func expectedVersionMismatchCarriesBothVersions() async throws {
        let t = try await seeded()
        let response = await t.command(
            "campaign.update", #"{"campaignId":"cmp_1","name":"Renamed"}"#, extra: #""expectedVersion":7,"#)
        #expect(response.code == "RESOURCE_CONFLICT")
        #expect(
            response["error"]?["currentVersion"]?.integerValue == 1
                && response["error"]?["expectedVersion"]?.integerValue == 7)
    }

    /// A refused command wrote nothing and records nothing under its key: the retry is decided again
    /// on the state as it is then, and the key may carry another request; a key is the tenant's own.
    @Test func aRefusedCommandRecordsNothingUnderItsKey() async throws {
        let t = try await seeded()
        let key = #""idempotencyKey":"k-refused","#
        let missing = await t.command("campaign.pause", #"{"campaignId":"cmp_9"}"#, extra: key)
        #expect(missing.code == "RESOURCE_NOT_FOUND")
        #expect(
            await t.command("campaign.create", #"{"campaignId":"cmp_9","name":"Ninth","channel":"sms"}"#).status == 201)
        let again = await t.command("campaign.pause", #"{"campaignId":"cmp_9"}"#, extra: key)
        #expect(again.code == "RESOURCE_CONFLICT" && again["error"]?["currentState"]?.stringValue == "draft")
        let other = await t.command("campaign.update", #"{"campaignId":"cmp_9","name":"Ninth one"}"#, extra: key)
        #expect(other.status == 201)
        let replay = await t.command("campaign.update", #"{"name":"Ninth one","campaignId":"cmp_9"}"#, extra: key)
        #expect(replay.status == 200 && replay.data == other.data)
        let elsewhere = await t.command(
            "campaign.create", #"{"campaignId":"cmp_9","name":"Ninth","channel":"sms"}"#, as: admin("globex"),
            extra: key)
        #expect(elsewhere.status == 201 && elsewhere.data?["streamId"]?.stringValue == "globex:cmp_9")
        let bob = await t.command(
            "campaign.update", #"{"campaignId":"cmp_9","name":"Ninth one"}"#, as: principal(subject: "bob"), extra: key)
        #expect(bob.code == "RESOURCE_CONFLICT" && bob["error"]?["pointer"]?.stringValue == "/idempotencyKey")
    }

    @Test func idempotencyKeyReusedWithADifferentRequestIsAConflict() async throws {
        let t = try await seeded()
        let first = await t.command(
            "campaign.update", #"{"campaignId":"cmp_1","name":"One"}"#, extra: #""idempotencyKey":"k","#)
        #expect(first.status == 201)
        let replay = await t.command(
            "campaign.update", #"{"campaignId":"cmp_1","name":"One"}"#, extra: #""idempotencyKey":"k","#)
        #expect(replay.status == 200 && replay.data == first.data)
        let other = await t.command(
            "campaign.update", #"{"campaignId":"cmp_1","name":"Two"}"#, extra: #""idempotencyKey":"k","#)
        #expect(other.code == "RESOURCE_CONFLICT" && other["error"]?["pointer"]?.stringValue == "/idempotencyKey")
        #expect(await t.query("campaign.get", #"{"campaignId":"cmp_1"}"#).data?["version"]?.integerValue == 2)
    }

    /// A request sent twice at once with one key (a client that retried before the first answer
    /// came): the second may find the first's change already made and change nothing. Both are
    /// answered with the answer stored first; before, the second answered `changed: false` while
    /// the first answered 201, for one key.
    @Test func twoSendsOfOneKeyedRequestAtOnceGetOneAnswer() async throws {
        let t = try await seeded()
        for round in 0..<20 {
            let payload = #"{"campaignId":"cmp_1","name":"Name \#(round)"}"#
            let key = #""idempotencyKey":"twice-\#(round)","#
            async let one = t.command("campaign.update", payload, extra: key)
            async let two = t.command("campaign.update", payload, extra: key)
            let (a, b) = await (one, two)
            #expect(a.data == b.data, "round \(round)")
            #expect([a.status ?? 0, b.status ?? 0].sorted() == [200, 201], "round \(round)")
            let upsert = #"{"contactId":"ctc_r","attributes":{"age":\#(20 + round)}}"#
            let upsertKey = #""idempotencyKey":"upsert-\#(round)","#
            async let three = t.command("contact.upsert", upsert, extra: upsertKey)
            async let four = t.command("contact.upsert", upsert, extra: upsertKey)
            let (c, d) = await (three, four)
            #expect(c.data == d.data, "round \(round)")
        }
    }

    /// The same for a create that names no id (each send gets its own while it is decoded): the
    /// second is not a second campaign, nor a clash with the first's name, but the first's answer.
    @Test func twoSendsOfOneKeyedCreateWithoutAnIdAtOnceGetOneAnswer() async throws {
        let t = try await seeded()
        for round in 0..<20 {
            let payload = #"{"name":"Launch \#(round)","channel":"sms"}"#
            let key = #""idempotencyKey":"create-\#(round)","#
            async let one = t.command("campaign.create", payload, extra: key)
            async let two = t.command("campaign.create", payload, extra: key)
            let (a, b) = await (one, two)
            #expect(a.data == b.data, "round \(round): \(a["error"] ?? .null) \(b["error"] ?? .null)")
        }
    }

    @Test func rateLimitIsPerTenantWithHeadersAndRetryAfter() async throws {
        let t = try TestEngine(rateLimit: 3)
        t.clock.set(testStart + 40)  // 40 s into a 60 s window that resets at 10:01:00
        for _ in 0..<3 {
            #expect(await t.query("campaign.get", #"{"campaignId":"cmp_x"}"#).code == "RESOURCE_NOT_FOUND")
        }
        let limited = await t.query("campaign.get", #"{"campaignId":"cmp_x"}"#)
        #expect(limited.code == "RATE_LIMIT_EXCEEDED" && limited.status == 429)
        #expect(limited["error"]?["retryAfter"]?.integerValue == 20)
        #expect(limited["error"]?["retryable"] == .bool(true))
        #expect(
            limited["headers"]
                == .object([
                    "X-RateLimit-Limit": .string("3"), "X-RateLimit-Remaining": .string("0"),
                    "X-RateLimit-Reset": .string("1795255260"), "Retry-After": .string("20"),
                ]))
        #expect(
            await t.query("campaign.get", #"{"campaignId":"cmp_x"}"#, as: admin("other")).code == "RESOURCE_NOT_FOUND")
        t.clock.advance(by: 20)
        #expect(await t.query("campaign.get", #"{"campaignId":"cmp_x"}"#).code == "RESOURCE_NOT_FOUND")
    }

    @Test func aFullStoreIsServiceUnavailableAndRetryable() async throws {
        var configuration = EngineConfiguration()
        configuration.storeOptions = StoreOptions(initialMapSize: 64 << 10, maximumMapSize: 192 << 10)
        let t = try TestEngine(configuration: configuration)
        let body = String(repeating: "x", count: 5_000)
        var last = JSON.null
        for n in 0..<200 {
            last = await t.command(
                "campaign.create",
                #"{"campaignId":"cmp_\#(n)","name":"Campaign \#(n)","channel":"email","#
                    + #""content":{"subject":"S","body":"\#(body)"}}"#)
            if last.status != 201 { break }
        }
        #expect(last.code == "SERVICE_UNAVAILABLE" && last.status == 503)
        #expect(last["error"]?["retryable"] == .bool(true))
        #expect(try t.engine.eventStore.verifyChain().isIntact)
    }

    @Test func malformedJSONIsInvalidFormatWithTheByteOffset() async throws {
        let t = try TestEngine()
        let response = await t.send(#"{"requestId":"r1","command":"campaign.create","payload":{"name":"x",}}"#)
        #expect(response.code == "INVALID_FORMAT" && response.status == 400)
        #expect(response["error"]?["message"]?.stringValue == "malformed JSON at byte 68: expected a string key")
        let wrongRoot = await t.send("[1,2]")
        #expect(wrongRoot.code == "INVALID_FORMAT")
        let unknownTop = await t.send(#"{"requestId":"r2","command":"campaign.create","payload":{},"token":"secret"}"#)
        #expect(
            unknownTop.code == "INVALID_FIELD" && unknownTop["requestId"]?.stringValue == "r2"
                && unknownTop["error"]?["pointer"]?.stringValue == "/token")
    }

    // MARK: Through the typed API

    func typed(
        _ t: TestEngine, _ command: Command,
        as who: Principal? = Principal(
            tenant: "acme", subject: "u_1", role: .admin, scopes: Principal.allScopes, expiresAt: testStart + 86_400)
    ) async -> EngineResponse {
        await t.engine.execute(.command(command, as: who, requestId: "typed"))
    }

    @Test func typedRequestsGetTheSameCodes() async throws {
        let t = try await seeded()
        let viewer = Principal(
            tenant: "acme", subject: "u_2", role: .viewer, scopes: Principal.allScopes, expiresAt: testStart + 60)
        let expired = Principal(
            tenant: "acme", subject: "u_2", role: .admin, scopes: Principal.allScopes, expiresAt: testStart)
        let noScope = Principal(tenant: "acme", subject: "u_2", role: .admin, scopes: [], expiresAt: testStart + 60)
        let rules = try JSON.parse(#"{"all":[{"field":"age","operator":"gte","value":18}]}"#)
        let cases: [(Command, Principal?, ErrorCode)] = [
            (.campaign(.transition(.pause, campaignId: "cmp_1")), nil, .unauthorized),
            (.campaign(.transition(.pause, campaignId: "cmp_1")), expired, .tokenExpired),
            (.campaign(.transition(.pause, campaignId: "cmp_1")), viewer, .forbidden),
            (.campaign(.transition(.pause, campaignId: "cmp_1")), noScope, .invalidScope),
            (.campaign(.transition(.pause, campaignId: "cmp_zz")), nil, .unauthorized),
            (
                .campaign(.transition(.pause, campaignId: "cmp_zz")),
                .some(
                    Principal(
                        tenant: "acme", subject: "u_1", role: .admin, scopes: Principal.allScopes,
                        expiresAt: testStart + 60)), .resourceNotFound
            ),
            (
                .campaign(
                    .create(
                        campaignId: "cmp_1", name: "Other", channel: "sms", segmentId: nil, content: nil, sendAt: nil)),
                nil,
                .unauthorized
            ),
        ]
        for (command, who, code) in cases {
            #expect(
                await typed(t, command, as: who).error?.code == code,
                "\(command.name) as \(String(describing: who?.role))")
        }
        let more: [(Command, ErrorCode)] = [
            (
                .campaign(
                    .create(
                        campaignId: "cmp_1", name: "Other", channel: "sms", segmentId: nil, content: nil, sendAt: nil)),
                .duplicateResource
            ),
            (.campaign(.transition(.pause, campaignId: "cmp_1")), .resourceConflict),
            (
                .campaign(
                    .create(
                        campaignId: "cmp_v", name: "x", channel: "sms", segmentId: nil, content: nil, sendAt: nil)),
                .validationError
            ),
            (
                .segment(
                    .create(segmentId: Identifier.make(prefix: "seg"), name: "S", rules: .object(["any": .array([])]))),
                .invalidSegmentRule
            ),
            (
                .segment(
                    .create(
                        segmentId: Identifier.make(prefix: "seg"), name: "S",
                        rules: try JSON.parse(#"{"all":[{"field":"shoe","operator":"exists"}]}"#)
                    )), .unknownField
            ),
            (
                .segment(
                    .create(
                        segmentId: Identifier.make(prefix: "seg"), name: "S",
                        rules: try JSON.parse(#"{"all":[{"field":"tags","operator":"eq","value":"a"}]}"#))),
                .invalidOperator
            ),
            (.segment(.update(segmentId: "seg_1", name: nil, rules: rules)), .resourceConflict),
            (
                .campaign(.update(campaignId: "cmp_live", name: "New", channel: nil, content: nil)),
                .campaignAlreadyActive
            ),
            (.campaign(.transition(.unschedule, campaignId: "cmp_1")), .campaignNotScheduled),
            (.campaign(.schedule(campaignId: "cmp_1", sendAt: testStart - 1)), .invalidSchedule),
        ]
        for (command, code) in more {
            let response = await typed(t, command)
            #expect(response.error?.code == code, "\(command.name): \(response.line)")
            #expect(response.status == code.httpStatus)
        }
    }

    @Test func decodingErrorsComeFromThePublicDecoder() throws {
        func code(_ name: String, _ payload: String) -> ErrorCode? {
            do {
                _ = try CommandWire.decode(name: name, payload: try JSON.parse(payload))
                return nil
            } catch { return (error as? CampaignError)?.code }
        }
        #expect(code("campaign.pause", #"{"campaignId":"cmp_1","x":1}"#) == .invalidField)
        #expect(code("campaign.pause", "{}") == .missingField)
        #expect(code("campaign.pause", #"{"campaignId":"campaign-1"}"#) == .invalidFormat)
        #expect(code("campaign.schedule", #"{"campaignId":"cmp_1","sendAt":"next week"}"#) == .invalidFormat)
        #expect(code("campaign.explode", "{}") == .invalidFormat)
        #expect(code("contact.import", #"{"contacts":"all"}"#) == .invalidFormat)
    }

    @Test func everyCodeHasItsSpecifiedStatus() {
        let statuses: [ErrorCode: Int] = [
            .unauthorized: 401, .tokenExpired: 401, .forbidden: 403, .invalidScope: 403, .resourceNotFound: 404,
            .duplicateResource: 409, .resourceConflict: 409, .validationError: 422, .invalidField: 400,
            .missingField: 400,
            .invalidFormat: 400, .invalidSegmentRule: 422, .unknownField: 422, .invalidOperator: 422,
            .campaignAlreadyActive: 409,
            .campaignNotScheduled: 409, .segmentRequired: 422, .invalidSchedule: 422, .connectionExpired: 409,
            .publishingFailed: 502,
            .rateLimitExceeded: 429, .contentRejected: 422, .experimentInsufficientData: 422, .internalError: 500,
            .serviceUnavailable: 503,
        ]
        #expect(statuses.count == ErrorCode.allCases.count)
        for code in ErrorCode.allCases { #expect(code.httpStatus == statuses[code], "\(code)") }
    }
}

@Suite struct SubjectDirectoryTests {
    @Test func aSubjectTheHostDoesNotKnowIsUnauthorized() async throws {
        var configuration = EngineConfiguration()
        configuration.isKnownSubject = { tenant, subject in tenant == "acme" && subject == "u_1" }
        let t = try TestEngine(configuration: configuration)
        #expect(await t.query("campaign.list", "{}", as: principal(subject: "u_1")).status == 200)
        let stranger = await t.query("campaign.list", "{}", as: principal(subject: "mallory"))
        #expect(stranger.code == "UNAUTHORIZED" && stranger.status == 401)
        #expect(
            await t.query("campaign.list", "{}", as: principal(tenant: "globex", subject: "u_1")).code == "UNAUTHORIZED"
        )
        #expect(stranger["error"]?["message"]?.stringValue == "unknown subject")
    }

    @Test func aMalformedTenantOrSubjectIsNamed() async throws {
        let t = try TestEngine()
        for tenant in ["ACME", " acme", "", "a:b", String(repeating: "a", count: 65), "-acme", "\\u00e9"] {
            let response = await t.query("campaign.list", "{}", as: principal(tenant: tenant))
            #expect(response.code == "UNAUTHORIZED", "\(tenant)")
            #expect(response["error"]?["pointer"]?.stringValue == "/principal/tenant", "\(tenant)")
            #expect(response["error"]?["message"]?.stringValue?.hasPrefix("tenant must be") == true, "\(tenant)")
        }
        for subject in ["a b", "", String(repeating: "u", count: 129), "\\u00e9"] {
            let response = await t.query("campaign.list", "{}", as: principal(subject: subject))
            #expect(response.code == "UNAUTHORIZED", "\(subject)")
            #expect(response["error"]?["pointer"]?.stringValue == "/principal/subject", "\(subject)")
        }
        #expect(await t.query("campaign.list", "{}", as: principal(tenant: "a-1_b", subject: "u@x!")).status == 200)
    }
}
