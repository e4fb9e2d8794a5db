import CampaignDomain
import Foundation

extension RateLimitState {
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix seconds) and `Retry-After`.
    public var headers: [String: String] {
        [
            "X-RateLimit-Limit": String(limit),
            "X-RateLimit-Remaining": String(remaining),
            "X-RateLimit-Reset": String(Int(reset.timeIntervalSince1970.rounded(.up))),
            "Retry-After": String(retryAfter),
        ]
    }
}

extension CampaignError {
    /// The `error` object of the wire format, with only the fields that apply.
    public func body(requestId: String) -> JSON {
        var members: JSONObject = [
            "code": .string(code.rawValue), "message": .string(message), "requestId": .string(requestId),
        ]
        if let param { members["param"] = .string(param) }
        if let pointer { members["pointer"] = .string(pointer) }
        if let details {
            members["details"] = .array(
                details.map {
                    .object([
                        "field": .string($0.field), "pointer": .string($0.pointer), "message": .string($0.message),
                    ])
                })
        }
        if let currentState { members["currentState"] = .string(currentState) }
        if let allowedStates { members["allowedStates"] = .array(allowedStates.map(JSON.string)) }
        if let currentVersion { members["currentVersion"] = .number(Double(currentVersion)) }
        if let expectedVersion { members["expectedVersion"] = .number(Double(expectedVersion)) }
        if let retryAfter { members["retryAfter"] = .number(Double(retryAfter)) }
        if let retryable { members["retryable"] = .bool(retryable) }
        return .object(members)
    }

    /// The error with its pointers (its own and each detail's) placed under `base`: the domain
    /// points into a command's payload, the wire into the request.
    func located(under base: String) -> CampaignError {
        var error = self
        error.pointer = pointer.map { base + $0 }
        error.details = details?.map { FieldProblem(field: $0.field, pointer: base + $0.pointer, message: $0.message) }
        return error
    }
}

extension CampaignEngine {
    /// Runs a domain decision; its errors point into the command's payload, so they are placed
    /// under `/payload` (or an import item's place) here, where the wire layout is known.
    static func onWire<Result>(
        under base: String = "/payload", _ decide: () throws -> Result
    ) throws(CampaignError) -> Result {
        do {
            return try decide()
        } catch let error as CampaignError {
            throw error.located(under: base)
        } catch {
            // Domain decisions throw only catalogue errors.
            throw CampaignError(.internalError, "unexpected error: \(error)")
        }
    }
}
