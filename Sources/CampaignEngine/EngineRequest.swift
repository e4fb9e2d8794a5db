import CampaignDomain
import Foundation

/// Read-side questions (SPEC.md §4).
public enum Query: Sendable, Equatable {
    /// `campaign.get`.
    case campaignGet(campaignId: String)
    /// `segment.get`.
    case segmentGet(segmentId: String)
    /// `post.get`.
    case postGet(postId: String)
    /// `connection.get` (an addition: a connection's status, expiry and credential reference).
    case connectionGet(connectionId: String)
    /// `contact.get` (an addition, the query `contacts:read` reads: a contact's current values and
    /// the active segments it is a member of).
    case contactGet(contactId: String)
    /// `contact.list` (an addition: the tenant's contacts that are not erased, or a segment's members,
    /// in id order, each with its current values).
    case contactList(segmentId: String?, page: Page)
    /// `experiment.get`.
    case experimentGet(experimentId: String)
    /// `experiment.results`.
    case experimentResults(experimentId: String)
    /// `campaign.list`: by status, `sendAt` in [from, to], and the segment the campaigns target.
    case campaignList(status: String?, from: Date?, to: Date?, segmentId: String? = nil, page: Page)
    /// `post.list`: by status, calendar time (publish time, or publication time) in [from, to], the
    /// campaign the posts belong to, and a connection they target.
    case postList(
        status: String?, from: Date?, to: Date?, campaignId: String? = nil, connectionId: String? = nil, page: Page)
    /// `segment.members`.
    case segmentMembers(segmentId: String, page: Page)
    /// `segment.preview` (an addition: how many of the tenant's contacts a rule tree matches now, and
    /// the first `limit` of them in id order, without making a segment).
    case segmentPreview(rules: JSON, limit: Int)
    /// `field.list` (an addition: the tenant's contact fields, built in and defined, each with its
    /// type, an enum's values and the rule operators the type takes).
    case fieldList
    /// `segment.list` (an addition: the tenant's segment catalog, by status, each with its member count).
    case segmentList(status: String?, page: Page)
    /// `connection.list` (an addition: the tenant's social connections, by status and platform).
    case connectionList(status: String?, platform: String?, page: Page)
    /// `experiment.list` (an addition: the tenant's experiments, by status and campaign).
    case experimentList(status: String?, campaignId: String?, page: Page)
    /// `audit.history`: by stream, actor and time.
    case auditHistory(streamId: String?, actor: String?, from: Date?, to: Date?, page: Page)
    /// `system.health` (an addition: ``CampaignEngine/health(_:)`` on the wire, for a host running
    /// `campaign apply` as a co-process). Only the operator's admins may ask: the answer is about the
    /// whole engine, not one tenant. `maximumTickInterval`: seconds of the engine clock without a
    /// completed scheduler tick before the engine is degraded (nil: no such check).
    case systemHealth(maximumTickInterval: Int?)

    /// A page request: at most `limit` items after the opaque `cursor` of the previous page.
    public struct Page: Sendable, Equatable {
        /// How many items the page may hold: 1–500, 50 by default (out of range is `INVALID_FORMAT`).
        public var limit: Int
        /// The previous page's `nextCursor`.
        public var cursor: String?

        /// A page of at most `limit` items after `cursor` (nil: the first page).
        public init(limit: Int = 50, cursor: String? = nil) {
            self.limit = limit
            self.cursor = cursor
        }
    }

    /// Every query's wire name, as `apply` accepts it in a request's `query` member.
    public static let names = [
        "campaign.get", "segment.get", "post.get", "connection.get", "contact.get", "experiment.get",
        "experiment.results",
        "campaign.list", "post.list", "segment.members", "audit.history", "segment.list", "connection.list",
        "experiment.list", "contact.list", "segment.preview", "field.list", "system.health",
    ]

    /// The query's wire name, such as `campaign.get` (one of ``names``).
    public var name: String {
        switch self {
        case .campaignGet: return "campaign.get"
        case .segmentGet: return "segment.get"
        case .postGet: return "post.get"
        case .connectionGet: return "connection.get"
        case .contactGet: return "contact.get"
        case .contactList: return "contact.list"
        case .experimentGet: return "experiment.get"
        case .experimentResults: return "experiment.results"
        case .campaignList: return "campaign.list"
        case .postList: return "post.list"
        case .segmentMembers: return "segment.members"
        case .segmentList: return "segment.list"
        case .segmentPreview: return "segment.preview"
        case .fieldList: return "field.list"
        case .connectionList: return "connection.list"
        case .experimentList: return "experiment.list"
        case .auditHistory: return "audit.history"
        case .systemHealth: return "system.health"
        }
    }

    /// Reading needs the family's read scope; viewers may read.
    public var permission: Permission {
        switch self {
        case .campaignGet: return Permission(scope: "campaigns:read", minimumRole: .viewer)
        case .segmentGet: return Permission(scope: "segments:read", minimumRole: .viewer)
        case .postGet, .connectionGet: return Permission(scope: "social:read", minimumRole: .viewer)
        // A preview matches rules of the caller's choosing against contacts' values: reading them.
        case .contactGet, .contactList, .segmentPreview: return Permission(scope: "contacts:read", minimumRole: .viewer)
        // The contact schema, which `field.define` (`contacts:write`) grows.
        case .fieldList: return Permission(scope: "contacts:read", minimumRole: .viewer)
        case .experimentGet, .experimentResults: return Permission(scope: "experiments:read", minimumRole: .viewer)
        case .campaignList: return Permission(scope: "campaigns:read", minimumRole: .viewer)
        case .postList: return Permission(scope: "social:read", minimumRole: .viewer)
        case .segmentMembers, .segmentList: return Permission(scope: "segments:read", minimumRole: .viewer)
        case .connectionList: return Permission(scope: "social:read", minimumRole: .viewer)
        case .experimentList: return Permission(scope: "experiments:read", minimumRole: .viewer)
        case .auditHistory: return Permission(scope: "audit:read", minimumRole: .viewer)
        // The engine's own record of itself, for the operator (whose tenant the engine checks too).
        case .systemHealth: return Permission(scope: "audit:read", minimumRole: .admin)
        }
    }

    /// Decodes a query's params strictly.
    public static func decode(name: String, params: JSON, at pointer: String = "/params") throws(CampaignError) -> Query
    {
        switch name {
        case "campaign.get":
            return .campaignGet(
                campaignId: try FieldReader(params, at: pointer, allowed: ["campaignId"]).id(
                    "campaignId", prefix: "cmp"))
        case "segment.get":
            return .segmentGet(
                segmentId: try FieldReader(params, at: pointer, allowed: ["segmentId"]).id("segmentId", prefix: "seg"))
        case "post.get":
            return .postGet(
                postId: try FieldReader(params, at: pointer, allowed: ["postId"]).id("postId", prefix: "pst"))
        case "connection.get":
            return .connectionGet(
                connectionId: try FieldReader(params, at: pointer, allowed: ["connectionId"]).id(
                    "connectionId", prefix: "con"))
        case "contact.get":
            return .contactGet(
                contactId: try FieldReader(params, at: pointer, allowed: ["contactId"]).id("contactId", prefix: "ctc"))
        case "contact.list":
            let r = try FieldReader(params, at: pointer, allowed: ["segmentId", "limit", "cursor"])
            return .contactList(segmentId: try r.optionalId("segmentId", prefix: "seg"), page: try decodePage(r))
        case "experiment.get", "experiment.results":
            let id = try FieldReader(params, at: pointer, allowed: ["experimentId"]).id("experimentId", prefix: "exp")
            return name == "experiment.get" ? .experimentGet(experimentId: id) : .experimentResults(experimentId: id)
        case "campaign.list", "post.list":
            let posts = name == "post.list"
            let r = try FieldReader(
                params, at: pointer,
                allowed: ["status", "from", "to", "limit", "cursor"]
                    + (posts ? ["campaignId", "connectionId"] : ["segmentId"]))
            let status = try r.optionalString("status")
            let from = try r.optionalTimestamp("from")
            let to = try r.optionalTimestamp("to")
            let page = try decodePage(r)
            return posts
                ? .postList(
                    status: status, from: from, to: to, campaignId: try r.optionalId("campaignId", prefix: "cmp"),
                    connectionId: try r.optionalId("connectionId", prefix: "con"), page: page)
                : .campaignList(
                    status: status, from: from, to: to, segmentId: try r.optionalId("segmentId", prefix: "seg"),
                    page: page)
        case "segment.members":
            let r = try FieldReader(params, at: pointer, allowed: ["segmentId", "limit", "cursor"])
            return .segmentMembers(segmentId: try r.id("segmentId", prefix: "seg"), page: try decodePage(r))
        case "segment.list":
            let r = try FieldReader(params, at: pointer, allowed: ["status", "limit", "cursor"])
            return .segmentList(status: try r.optionalString("status"), page: try decodePage(r))
        case "segment.preview":
            let r = try FieldReader(params, at: pointer, allowed: ["rules", "limit"])
            // `limit` 0 asks for the count alone.
            return .segmentPreview(
                rules: try r.required("rules"), limit: try r.optionalInteger("limit", in: previewLimits) ?? 50)
        case "field.list":
            _ = try FieldReader(params, at: pointer, allowed: [])
            return .fieldList
        case "connection.list":
            let r = try FieldReader(params, at: pointer, allowed: ["status", "platform", "limit", "cursor"])
            return .connectionList(
                status: try r.optionalString("status"), platform: try r.optionalString("platform"),
                page: try decodePage(r))
        case "experiment.list":
            let r = try FieldReader(params, at: pointer, allowed: ["status", "campaignId", "limit", "cursor"])
            return .experimentList(
                status: try r.optionalString("status"), campaignId: try r.optionalId("campaignId", prefix: "cmp"),
                page: try decodePage(r))
        case "audit.history":
            let r = try FieldReader(
                params, at: pointer, allowed: ["streamId", "actor", "from", "to", "limit", "cursor"])
            // A stream or an actor no log can hold would page through nothing: the client mistyped it.
            let streamId = try r.optionalString("streamId")
            let actor = try r.optionalString("actor")
            try checkHistoryFilters(streamId: streamId, actor: actor, at: pointer)
            return .auditHistory(
                streamId: streamId, actor: actor, from: try r.optionalTimestamp("from"),
                to: try r.optionalTimestamp("to"), page: try decodePage(r))
        case "system.health":
            let r = try FieldReader(params, at: pointer, allowed: ["maximumTickInterval"])
            return .systemHealth(maximumTickInterval: try r.optionalInteger("maximumTickInterval", in: tickIntervals))
        default:
            throw CampaignError(.invalidFormat, "unknown query \"\(name)\"", param: "query", pointer: "/query")
        }
    }
}

extension Query {
    /// The sizes a page may have.
    static let pageLimits = 1...500
    /// How many ids a preview may list (0: the count alone).
    static let previewLimits = 0...500
    /// The seconds `system.health` may be asked to allow between scheduler ticks: up to a year.
    static let tickIntervals = 1...31_536_000

    static func decodePage(_ r: FieldReader) throws(CampaignError) -> Page {
        Page(limit: try r.optionalInteger("limit", in: pageLimits) ?? 50, cursor: try r.optionalString("cursor"))
    }

    /// `INVALID_FORMAT` for an `audit.history` filter no log can match: a stream id that names no
    /// stream (``CampaignEngine/streamProblem(_:)``) or an actor that is no subject. `pointer`: the params.
    static func checkHistoryFilters(streamId: String?, actor: String?, at pointer: String) throws(CampaignError) {
        if let streamId, let problem = CampaignEngine.streamProblem(streamId) {
            throw CampaignError(
                .invalidFormat, "streamId \(streamId): \(problem)", param: "streamId", pointer: pointer + "/streamId")
        }
        if let actor, !Principal.isValidSubject(actor) {
            throw CampaignError(
                .invalidFormat, "actor must be a subject: \(Principal.subjectRule)", param: "actor",
                pointer: pointer + "/actor")
        }
    }
}

/// A request to the engine, typed: what the wire format decodes into, and what a Swift host builds directly.
public struct EngineRequest: Sendable {
    /// What the request asks.
    public enum Body: Sendable, Equatable {
        /// A command that writes.
        case command(Command)
        /// A query that reads.
        case query(Query)
    }

    /// The correlation id, echoed in the response and stored on every event.
    public var requestId: String
    /// Makes a retried command safe: the same key and request return the first result.
    public var idempotencyKey: String?
    /// The version the aggregate must be at (0 = must not exist).
    public var expectedVersion: UInt64?
    /// Who asks; nil is `UNAUTHORIZED`.
    public var principal: Principal?
    /// What is asked: a command to decide and append, or a query to read.
    public var body: Body
    /// A command's payload as the wire carried it (nil for a request built in Swift): idempotency
    /// fingerprints hash its canonical bytes, not the decoded command, whose made-up ids differ per try.
    var wirePayload: JSON?
    /// Whether the wire decoder made this request, and so checked its form while reading it; a
    /// request built in Swift is checked by ``checkForm(limits:)`` before it is authorised.
    var readFromWire = false

    /// A request `requestId` from `principal`; `idempotencyKey` and `expectedVersion` apply to commands only.
    public init(
        requestId: String, idempotencyKey: String? = nil, expectedVersion: UInt64? = nil, principal: Principal?,
        body: Body
    ) {
        self.requestId = requestId
        self.idempotencyKey = idempotencyKey
        self.expectedVersion = expectedVersion
        self.principal = principal
        self.body = body
    }

    /// A command request from `principal`, optionally under an idempotency key and an expected version.
    public static func command(
        _ command: Command, as principal: Principal?, requestId: String, idempotencyKey: String? = nil,
        expectedVersion: UInt64? = nil
    ) -> EngineRequest {
        EngineRequest(
            requestId: requestId, idempotencyKey: idempotencyKey, expectedVersion: expectedVersion,
            principal: principal, body: .command(command))
    }

    /// A query request from `principal`: a query reads and changes nothing, so it has no key or expected version.
    public static func query(_ query: Query, as principal: Principal?, requestId: String) -> EngineRequest {
        EngineRequest(requestId: requestId, principal: principal, body: .query(query))
    }
}

/// The engine's answer: an HTTP status, `data` or an `error`, and headers for 429. ``json`` is
/// the body a host returns unchanged.
public struct EngineResponse: Sendable, Equatable {
    /// The request's correlation id.
    public var requestId: String
    /// 200, 201 or 207 on success; the error's status otherwise.
    public var status: Int
    /// The result, on success. When the engine made only the result's canonical bytes (an aggregate
    /// command's answer, which goes to the idempotency record and the body as bytes), reading this
    /// decodes them, each time: a host that sends ``bytes`` never pays for a value it does not read.
    public var data: JSON? {
        get { decodedData ?? encodedData.flatMap { try? JSON.parse($0) } }
        set {
            decodedData = newValue
            encodedData = nil
        }
    }
    /// The error, on failure.
    public var error: CampaignError?
    /// The result as a value, when the engine made one.
    private var decodedData: JSON?
    /// The result's canonical bytes when the engine already made them (for the idempotency record),
    /// so ``bytes`` does not encode the data again; cleared whenever `data` is set.
    private(set) var encodedData: [UInt8]?

    /// Equal when the wire objects are equal (however the data's bytes were made).
    public static func == (lhs: EngineResponse, rhs: EngineResponse) -> Bool {
        lhs.requestId == rhs.requestId && lhs.status == rhs.status && lhs.data == rhs.data && lhs.error == rhs.error
    }

    /// A response with `status` and either `data` (a success) or `error` (a failure).
    public init(requestId: String, status: Int, data: JSON? = nil, error: CampaignError? = nil) {
        self.requestId = requestId
        self.status = status
        self.data = data
        self.error = error
    }

    /// A success whose result is a value, its canonical bytes, or both (one is enough).
    init(requestId: String, status: Int, data: JSON?, encodedData: [UInt8]?) {
        self.requestId = requestId
        self.status = status
        decodedData = data
        self.encodedData = encodedData
        error = nil
        assert(data == nil || encodedData == nil || data!.bytes == encodedData!, "the bytes must be the data's")
    }

    /// The failure response for `error`: its HTTP status and its catalogue body.
    public static func failure(_ error: CampaignError, requestId: String) -> EngineResponse {
        EngineResponse(requestId: requestId, status: error.httpStatus, error: error)
    }

    /// HTTP headers to send (the rate-limit headers of a 429).
    public var headers: [String: String] { error?.rateLimit?.headers ?? [:] }

    /// The wire object of SPEC.md §4.
    public var json: JSON {
        var members: JSONObject = ["requestId": .string(requestId), "status": .number(Double(status))]
        if let data { members["data"] = data }
        if let error { members["error"] = error.body(requestId: requestId) }
        if !headers.isEmpty { members["headers"] = .object(JSONObject(headers.mapValues(JSON.string))) }
        return .object(members)
    }

    /// The wire object as one line of canonical JSON.
    public var line: String { String(decoding: bytes, as: UTF8.self) }

    /// The wire object as canonical JSON bytes, for a host that writes them to a socket (no
    /// `String` made on the way). A success is written straight from its parts, reusing the data's
    /// bytes when the engine already encoded them; the same bytes as `json.bytes`.
    public var bytes: [UInt8] {
        guard error == nil else { return json.bytes }
        // In key order ("data" first), so nothing is sorted.
        var members = [(key: String, bytes: [UInt8])]()
        if let data = encodedData ?? decodedData?.bytes { members.append(("data", data)) }
        members.append(("requestId", JSON.string(requestId).bytes))
        members.append(("status", JSON.number(Double(status)).bytes))
        return JSON.objectBytes(members)
    }
}
