import CampaignDomain
import EventStore
import Foundation

/// What an idempotency record holds: the answer the client got, so a retry with the same key
/// gets it again, errors included; or, while a command that takes several transactions is under
/// way (a publish), a pending marker that a retry resumes from.
///
/// Stored as canonical JSON: `{"status", "data"}`, `{"status", "error", "rateLimit"?}` or
/// `{"pending": true, "fromVersion"}`.
enum StoredAnswer: Equatable {
    /// The command answered with data (a replay answers 200 with the same data, SPEC.md §4).
    case success(status: Int, data: JSON)
    /// The command answered with an error; a replay answers the same error.
    case failure(CampaignError)
    /// The command is still under way; `fromVersion` is its stream's version before it began.
    case pending(fromVersion: UInt64)

    init(bytes: [UInt8]) {
        let json = (try? JSON.parse(bytes)) ?? .null
        if json["pending"] == .bool(true) {
            self = .pending(fromVersion: UInt64(json["fromVersion"]?.integerValue ?? 0))
        } else if let body = json["error"], let error = StoredAnswer.error(body, rateLimit: json["rateLimit"]) {
            self = .failure(error)
        } else {
            self = .success(status: json["status"]?.integerValue ?? 200, data: json["data"] ?? .null)
        }
    }

    /// The record of a success whose data is already encoded (`data.bytes`): the same bytes as
    /// ``bytes`` gives for `.success(status:data:)`, without encoding the data again.
    static func success(status: Int, encodedData: [UInt8]) -> [UInt8] {
        JSON.objectBytes([("data", encodedData), ("status", JSON.number(Double(status)).bytes)])
    }

    var bytes: [UInt8] {
        switch self {
        case let .success(status, data):
            return StoredAnswer.success(status: status, encodedData: data.bytes)
        case let .failure(error):
            var members: JSONObject = [
                "status": .number(Double(error.httpStatus)), "error": error.body(requestId: ""),
            ]
            if let limit = error.rateLimit {
                members["rateLimit"] = .object([
                    "limit": .number(Double(limit.limit)), "remaining": .number(Double(limit.remaining)),
                    "reset": .number(limit.reset.timeIntervalSince1970),
                ])
            }
            return JSON.object(members).bytes
        case let .pending(fromVersion):
            return JSON.object(["pending": .bool(true), "fromVersion": .number(Double(fromVersion))]).bytes
        }
    }

    /// An error read back from its wire body.
    static func error(_ body: JSON, rateLimit: JSON?) -> CampaignError? {
        guard let code = body["code"]?.stringValue.flatMap(ErrorCode.init(rawValue:)) else { return nil }
        var error = CampaignError(code, body["message"]?.stringValue ?? "")
        error.param = body["param"]?.stringValue
        error.pointer = body["pointer"]?.stringValue
        error.details = body["details"]?.arrayValue?.map {
            FieldProblem(
                field: $0["field"]?.stringValue ?? "", pointer: $0["pointer"]?.stringValue ?? "",
                message: $0["message"]?.stringValue ?? "")
        }
        error.currentState = body["currentState"]?.stringValue
        error.allowedStates = body["allowedStates"]?.arrayValue?.compactMap(\.stringValue)
        error.currentVersion = body["currentVersion"]?.integerValue.map(UInt64.init)
        error.expectedVersion = body["expectedVersion"]?.integerValue.map(UInt64.init)
        error.retryAfter = body["retryAfter"]?.integerValue
        error.retryable = body["retryable"]?.boolValue
        if let rateLimit, let limit = rateLimit["limit"]?.integerValue, let reset = rateLimit["reset"]?.numberValue {
            error.rateLimit = RateLimitState(
                limit: limit, remaining: rateLimit["remaining"]?.integerValue ?? 0,
                reset: Date(timeIntervalSince1970: reset), retryAfter: error.retryAfter ?? 1)
        }
        return error
    }
}

extension CampaignEngine {
    /// Answers a retried request from its idempotency record: the same data or the same error
    /// (a 429's `retryAfter` counted again to its stored reset time); a publish still under way
    /// is resumed and its final answer recorded.
    func replay(
        _ stored: StoredAnswer, command: Command, request: EngineRequest, principal: Principal, claim: IdempotencyClaim
    ) async throws -> Answer {
        switch stored {
        case let .success(_, data):
            return Answer(200, data)
        case var .failure(error):
            if var limit = error.rateLimit {
                limit.retryAfter = max(1, Int(limit.reset.timeIntervalSince(currentTime).rounded(.up)))
                error.rateLimit = limit
                error.retryAfter = limit.retryAfter
            }
            throw error
        case let .pending(fromVersion):
            guard case let .post(.publish(postId)) = command else {
                throw CampaignError(.internalError, "a pending idempotency record for \(command.name)")
            }
            return try await finishPublish(
                postId, fromVersion: fromVersion, request: request, principal: principal, idempotency: claim)
        }
    }

    /// Replaces the idempotency record with the final answer of a command that took several
    /// transactions (or none of its own, like a tick).
    func recordFinal(_ answer: StoredAnswer, for claim: IdempotencyClaim) async throws {
        let bytes = answer.bytes
        let final = IdempotencyClaim(
            key: claim.key, fingerprint: claim.fingerprint, replacesStoredResult: true, recordedAt: claim.recordedAt
        ) { _ in
            bytes
        }
        _ = try await store.append(AppendRequest(streams: [], idempotency: final))
    }

    /// Runs a committed `post.publish` to its outcome and records that outcome as the request's
    /// idempotent answer. A storage failure leaves the record pending, so a retry resumes.
    func finishPublish(
        _ postId: String, fromVersion: UInt64, request: EngineRequest, principal: Principal,
        idempotency: IdempotencyClaim?
    ) async throws -> Answer {
        let tenant = principal.tenant
        let streamId = CampaignEngine.streamId(tenant, postId)
        // The request's expected version was the post's before the command, which committed: the
        // attempts after it append to the post as it is now. (Before, they appended at that
        // version, failed, and the publish answered 409 with the post left publishing.)
        var request = request
        request.expectedVersion = nil
        let outcome: StoredAnswer
        do {
            guard let state = try await publishDue(tenant: tenant, postId: postId, as: principal, request: request)
            else {
                throw CampaignError.notFound("post", postId, pointer: "/payload/postId")
            }
            let (status, data) = try publishAnswer(state, streamId: streamId, since: fromVersion)
            outcome = .success(status: status, data: data)
        } catch let error as CampaignError {
            outcome = .failure(error)
        }
        if let idempotency { try await recordFinal(outcome, for: idempotency) }
        switch outcome {
        case let .success(status, data): return Answer(status, data)
        case let .failure(error): throw error
        case .pending: throw CampaignError(.internalError, "publish ended pending")
        }
    }
}
