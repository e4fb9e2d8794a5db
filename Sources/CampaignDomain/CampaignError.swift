import Foundation

/// The stable error codes of SPEC.md §5. Raw values are the wire codes.
public enum ErrorCode: String, Sendable, CaseIterable, Codable {
    /// 401: no principal, or an unknown subject.
    case unauthorized = "UNAUTHORIZED"
    /// 401: the principal's token expired.
    case tokenExpired = "TOKEN_EXPIRED"
    /// 403: the role is too low.
    case forbidden = "FORBIDDEN"
    /// 403: a required scope is missing.
    case invalidScope = "INVALID_SCOPE"
    /// 404: unknown id, or another tenant's.
    case resourceNotFound = "RESOURCE_NOT_FOUND"
    /// 409: name or id already taken.
    case duplicateResource = "DUPLICATE_RESOURCE"
    /// 409: illegal transition, version mismatch, or reused idempotency key.
    case resourceConflict = "RESOURCE_CONFLICT"
    /// 422: semantic validation failed; see `details`.
    case validationError = "VALIDATION_ERROR"
    /// 400: unknown field in the request.
    case invalidField = "INVALID_FIELD"
    /// 400: required field absent.
    case missingField = "MISSING_FIELD"
    /// 400: malformed JSON, wrong type, bad date or id.
    case invalidFormat = "INVALID_FORMAT"
    /// 422: malformed segment rule tree.
    case invalidSegmentRule = "INVALID_SEGMENT_RULE"
    /// 422: a rule names a field the tenant's contact schema lacks.
    case unknownField = "UNKNOWN_FIELD"
    /// 422: operator not allowed for the field's type.
    case invalidOperator = "INVALID_OPERATOR"
    /// 409: the campaign is active.
    case campaignAlreadyActive = "CAMPAIGN_ALREADY_ACTIVE"
    /// 409: the campaign is not scheduled.
    case campaignNotScheduled = "CAMPAIGN_NOT_SCHEDULED"
    /// 422: the campaign has no segment.
    case segmentRequired = "SEGMENT_REQUIRED"
    /// 422: the time is in the past, or an end is before its start.
    case invalidSchedule = "INVALID_SCHEDULE"
    /// 409: the social connection expired or was revoked.
    case connectionExpired = "CONNECTION_EXPIRED"
    /// 502: the platform failed after retries, or the outcome is unknown.
    case publishingFailed = "PUBLISHING_FAILED"
    /// 429: a tenant or platform rate limit was hit.
    case rateLimitExceeded = "RATE_LIMIT_EXCEEDED"
    /// 422: the platform rejected the content.
    case contentRejected = "CONTENT_REJECTED"
    /// 422: a winner was declared before enough data.
    case experimentInsufficientData = "EXPERIMENT_INSUFFICIENT_DATA"
    /// 500: a bug; the store stays consistent.
    case internalError = "INTERNAL_ERROR"
    /// 503: storage unavailable or full; retryable.
    case serviceUnavailable = "SERVICE_UNAVAILABLE"

    /// The HTTP status that goes with the code.
    public var httpStatus: Int {
        switch self {
        case .invalidField, .missingField, .invalidFormat: return 400
        case .unauthorized, .tokenExpired: return 401
        case .forbidden, .invalidScope: return 403
        case .resourceNotFound: return 404
        case .duplicateResource, .resourceConflict, .campaignAlreadyActive, .campaignNotScheduled, .connectionExpired:
            return 409
        case .validationError, .invalidSegmentRule, .unknownField, .invalidOperator, .segmentRequired, .invalidSchedule,
            .contentRejected, .experimentInsufficientData:
            return 422
        case .rateLimitExceeded: return 429
        case .internalError: return 500
        case .publishingFailed: return 502
        case .serviceUnavailable: return 503
        }
    }
}

/// One problem in a `VALIDATION_ERROR`'s `details`.
public struct FieldProblem: Sendable, Equatable {
    /// The field's name (dotted path).
    public var field: String
    /// RFC 6901 pointer into the request.
    public var pointer: String
    /// What is wrong with the field, in a sentence a person can act on (`name must be 3–120 characters`).
    public var message: String

    /// A problem with `field`, at `pointer` in the request, described by `message`.
    public init(field: String, pointer: String, message: String) {
        self.field = field
        self.pointer = pointer
        self.message = message
    }
}

/// A rate limit's state (the engine renders it as the 429 headers).
public struct RateLimitState: Sendable, Equatable {
    /// Requests allowed per window.
    public var limit: Int
    /// Requests left in this window.
    public var remaining: Int
    /// When the window resets.
    public var reset: Date
    /// Seconds until a retry may succeed.
    public var retryAfter: Int

    /// A window allowing `limit` requests with `remaining` left, which resets at `reset`; retry after `retryAfter` s.
    public init(limit: Int, remaining: Int, reset: Date, retryAfter: Int) {
        self.limit = limit
        self.remaining = remaining
        self.reset = reset
        self.retryAfter = retryAfter
    }
}

/// The engine's one error type: a catalogue code, a message, and the optional fields of SPEC.md §4.
public struct CampaignError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The stable catalogue code; it decides the HTTP status (``httpStatus``).
    public var code: ErrorCode
    /// A human-readable message.
    public var message: String
    /// The parameter concerned (for example the missing scope).
    public var param: String?
    /// RFC 6901 pointer to the field concerned. The domain points into the command's payload
    /// (`/sendAt`); the engine places it in the request (`/payload/sendAt`).
    public var pointer: String?
    /// Each problem, for `VALIDATION_ERROR`.
    public var details: [FieldProblem]?
    /// The resource's state, for illegal transitions.
    public var currentState: String?
    /// The states the command is allowed from.
    public var allowedStates: [String]?
    /// The stream's version, for version conflicts.
    public var currentVersion: UInt64?
    /// The version the request expected.
    public var expectedVersion: UInt64?
    /// Seconds to wait before retrying.
    public var retryAfter: Int?
    /// Whether the same request may succeed later.
    public var retryable: Bool?
    /// For 429: the rate limit behind it.
    public var rateLimit: RateLimitState?

    /// An error with `code` and `message`; each optional field is written into the JSON body only when given.
    public init(
        _ code: ErrorCode, _ message: String, param: String? = nil, pointer: String? = nil,
        details: [FieldProblem]? = nil, currentState: String? = nil, allowedStates: [String]? = nil,
        currentVersion: UInt64? = nil, expectedVersion: UInt64? = nil, retryAfter: Int? = nil,
        retryable: Bool? = nil, rateLimit: RateLimitState? = nil
    ) {
        self.code = code
        self.message = message
        self.param = param
        self.pointer = pointer
        self.details = details
        self.currentState = currentState
        self.allowedStates = allowedStates
        self.currentVersion = currentVersion
        self.expectedVersion = expectedVersion
        self.retryAfter = retryAfter
        self.retryable = retryable
        self.rateLimit = rateLimit
    }

    /// The HTTP status of the code.
    public var httpStatus: Int { code.httpStatus }

    /// `CODE: message`, as the CLI prints an error (`RESOURCE_NOT_FOUND: campaign cmp_1 was not found`).
    public var description: String { "\(code.rawValue): \(message)" }

    // MARK: Common shapes

    /// `RESOURCE_NOT_FOUND` for a kind and id; says nothing about other tenants.
    public static func notFound(_ kind: String, _ id: String, pointer: String? = nil) -> CampaignError {
        CampaignError(.resourceNotFound, "\(kind) \(id) was not found", pointer: pointer)
    }

    /// `VALIDATION_ERROR` listing each problem.
    public static func validation(_ problems: [FieldProblem]) -> CampaignError {
        let summary = problems.count == 1 ? problems[0].message : "\(problems.count) fields are invalid"
        return CampaignError(.validationError, summary, pointer: problems.first?.pointer, details: problems)
    }

    /// `RESOURCE_CONFLICT` for an illegal transition.
    public static func illegalTransition(
        _ verb: String, _ kind: String, from state: String, allowed: [String]
    ) -> CampaignError {
        CampaignError(
            .resourceConflict,
            "Cannot \(phrase(verb)) \(state.withArticle) \(kind); allowed from: \(allowed.joined(separator: ", "))",
            currentState: state, allowedStates: allowed)
    }

    /// A command's verb as a message says it before its object: `attachSegment` is "attach a
    /// segment to", `recordExposure` "record an exposure in"; a one-word verb is itself.
    public static func phrase(_ verb: String) -> String {
        switch verb {
        case "attachSegment": return "attach a segment to"
        case "recordExposure": return "record an exposure in"
        case "recordConversion": return "record a conversion in"
        case "declareWinner": return "declare a winner of"
        default: return verb
        }
    }
}

extension String {
    /// The word with `a` or `an` before it, by its first letter (`an archived`, `a draft`).
    public var withArticle: String {
        guard let first = lowercased().first else { return self }
        return ("aeiou".contains(first) ? "an " : "a ") + self
    }
}
