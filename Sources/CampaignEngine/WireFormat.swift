import CampaignDomain
import Foundation
import Hashing
import Synchronization

/// Decodes the wire format of SPEC.md §4 into an ``EngineRequest``, strictly.
///
/// Order of checks: the bytes must be JSON (`INVALID_FORMAT` with the byte offset); the top level
/// an object; every member known (`INVALID_FIELD`); then each member's type and shape, then the
/// command's payload. The `requestId` is read first, so even a rejected request is answered with
/// its own id when it has a readable one.
public enum WireFormat {
    static let envelopeFields: Set = [
        "requestId", "idempotencyKey", "expectedVersion", "principal", "command", "payload", "query", "params",
    ]

    /// The outcome of decoding a request.
    public enum Decoded: Sendable {
        /// A well-formed request.
        case request(EngineRequest)
        /// A rejected one, with the error response to send (carrying the request's id when readable).
        case rejected(EngineResponse)
    }

    /// Decodes one request.
    ///
    /// The principal, which a host sends alike on every request of a session, is not made into a
    /// value: its bytes are checked as a parse checks them and looked up among the principals
    /// already decoded from the same bytes (``principals``). A request the lookup path cannot take
    /// as it is (one that does not parse, or a top-level key with an escape) is decoded whole by
    /// ``decodeParsingWhole(_:limits:)``, so every request gets the same answer either way.
    public static func decode(_ bytes: [UInt8], limits: JSONLimits = JSONLimits()) -> Decoded {
        guard let split = JSON.parse(bytes, limits: limits, keepingRaw: "principal") else {
            return decodeParsingWhole(bytes, limits: limits)
        }
        let document = JSON.object(split.members)
        let requestId = readableRequestId(document)
        let raw = split.raw.map { Array(bytes[$0]) }
        do throws(CampaignError) {
            let request = try decode(document, requestId: requestId) { () throws(CampaignError) -> Principal? in
                guard let raw else { return nil }
                return try principal(raw, limits: limits)
            }
            return .request(request)
        } catch {
            return .rejected(.failure(error, requestId: requestId))
        }
    }

    /// Decodes one request from its whole parse: the path for any request, and the reference the
    /// tests hold ``decode(_:limits:)`` to.
    static func decodeParsingWhole(_ bytes: [UInt8], limits: JSONLimits = JSONLimits()) -> Decoded {
        let document: JSON
        do {
            document = try JSON.parse(bytes, limits: limits)
        } catch {
            return .rejected(
                .failure(
                    CampaignError(
                        .invalidFormat, "malformed JSON at byte \(error.offset): \(error.reason)", pointer: ""),
                    requestId: fallbackRequestId))
        }
        let requestId = readableRequestId(document)
        do throws(CampaignError) {
            let request = try decode(document, requestId: requestId) { () throws(CampaignError) -> Principal? in
                guard let json = document["principal"] else { return nil }
                return try decodePrincipal(json)
            }
            return .request(request)
        } catch {
            return .rejected(.failure(error, requestId: requestId))
        }
    }

    static func readableRequestId(_ document: JSON) -> String {
        (document["requestId"]?.stringValue).flatMap { isValidRequestId($0) ? $0 : nil } ?? fallbackRequestId
    }

    /// Principals decoded from their exact bytes (only ones that decoded, of at most
    /// ``principalCacheBytes`` bytes). A principal is a pure function of its bytes (its expiry is
    /// checked against the clock later, on every request), so a hit is what decoding would give;
    /// the tenant is among the bytes compared. Emptied when it reaches ``principalCacheLimit``
    /// entries, so it holds at most about 8 MiB.
    static let principals = Mutex<[ByteKey: Principal]>([:])
    static let principalCacheLimit = 4_096
    /// The largest principal kept (a real one is a few hundred bytes; a larger one is decoded
    /// each time, so no request can make the cache large).
    static let principalCacheBytes = 1_024

    /// The principal in `bytes` (a value the caller's scan has checked as JSON within `limits`).
    static func principal(_ bytes: [UInt8], limits: JSONLimits) throws(CampaignError) -> Principal {
        let kept = bytes.count <= principalCacheBytes
        if kept, let known = principals.withLock({ $0[ByteKey(bytes)] }) { return known }
        guard let json = try? JSON.parse(bytes, limits: limits) else {
            // Unreachable: the scan checked these bytes as strictly as the parse does.
            throw CampaignError(.invalidFormat, "principal is not JSON", param: "principal", pointer: "/principal")
        }
        let principal = try decodePrincipal(json)
        guard kept else { return principal }
        principals.withLock { cache in
            if cache.count >= principalCacheLimit { cache.removeAll() }
            cache[ByteKey(bytes)] = principal
        }
        return principal
    }

    /// The id used when a request carries none we can read.
    public static let fallbackRequestId = "unknown"

    static func isValidRequestId(_ id: String) -> Bool {
        (1...128).contains(id.utf8.count) && id.utf8.allSatisfy { (33...126).contains($0) }
    }

    /// `INVALID_FORMAT` at `/requestId` unless `id` is 1–128 printable ASCII characters.
    static func check(requestId id: String) throws(CampaignError) {
        guard isValidRequestId(id) else {
            throw CampaignError(
                .invalidFormat, "requestId must be 1–128 printable ASCII characters", param: "requestId",
                pointer: "/requestId")
        }
    }

    /// `INVALID_FORMAT` at `/idempotencyKey` unless `key` is 1–200 bytes without a NUL (it is
    /// part of an LMDB key).
    static func check(idempotencyKey key: String) throws(CampaignError) {
        guard (1...200).contains(key.utf8.count), !key.utf8.contains(0) else {
            throw CampaignError(
                .invalidFormat, "idempotencyKey must be 1–200 bytes", param: "idempotencyKey",
                pointer: "/idempotencyKey")
        }
    }

    /// `INVALID_FORMAT` at `pointer` unless `scope` is one of ``Principal/allScopes``.
    static func check(scope: String, at pointer: String) throws(CampaignError) {
        guard Principal.allScopes.contains(scope) else {
            throw CampaignError(
                .invalidFormat, "unknown scope; scopes are \(Principal.allScopes.sorted().joined(separator: ", "))",
                param: "scopes", pointer: pointer)
        }
    }

    /// The expected versions a request may name: what the log's positions and versions can reach.
    static let expectedVersions = 0...Int(Int64.max >> 11)

    /// The request in `document`, whose principal the caller decoded (or found absent) between the
    /// envelope's checks and the command's, where it is checked in the order documented above.
    private static func decode(
        _ document: JSON, requestId: String, principal: () throws(CampaignError) -> Principal?
    ) throws(CampaignError) -> EngineRequest {
        let r = try FieldReader(document, at: "", allowed: envelopeFields)
        if let given = try r.optionalString("requestId") { try check(requestId: given) }
        let idempotencyKey = try r.optionalString("idempotencyKey")
        if let idempotencyKey { try check(idempotencyKey: idempotencyKey) }
        let expectedVersion = try r.optionalInteger("expectedVersion", in: expectedVersions).map { UInt64($0) }
        let principal = try principal()

        let command = try r.optionalString("command")
        let query = try r.optionalString("query")
        let body: EngineRequest.Body
        var wirePayload: JSON?
        switch (command, query) {
        case let (name?, nil):
            if r.members["params"] != nil {
                throw CampaignError(
                    .invalidField, "params belongs to queries; a command takes payload", param: "params",
                    pointer: "/params")
            }
            wirePayload = r.optional("payload") ?? .object([:])
            body = .command(try CommandWire.decode(name: name, payload: wirePayload ?? .object([:])))
        case let (nil, name?):
            if r.members["payload"] != nil {
                throw CampaignError(
                    .invalidField, "payload belongs to commands; a query takes params", param: "payload",
                    pointer: "/payload")
            }
            if idempotencyKey != nil || expectedVersion != nil {
                let field = idempotencyKey != nil ? "idempotencyKey" : "expectedVersion"
                throw CampaignError(
                    .invalidField, "\(field) applies to commands only", param: field, pointer: "/\(field)")
            }
            body = .query(try Query.decode(name: name, params: r.optional("params") ?? .object([:])))
        case (nil, nil):
            throw CampaignError(
                .missingField, "a request needs command (with payload) or query (with params)", param: "command",
                pointer: "/command")
        case (_?, _?):
            throw CampaignError(
                .invalidField, "a request has either command or query, not both", param: "query", pointer: "/query")
        }
        var request = EngineRequest(
            requestId: requestId, idempotencyKey: idempotencyKey, expectedVersion: expectedVersion,
            principal: principal, body: body)
        request.wirePayload = wirePayload
        request.readFromWire = true
        return request
    }

    /// A principal: unknown members are refused (so a token smuggled in one never goes further);
    /// an absent tenant or subject is `UNAUTHORIZED`.
    static func decodePrincipal(_ json: JSON) throws(CampaignError) -> Principal {
        let r = try FieldReader(json, at: "/principal", allowed: ["tenant", "subject", "role", "scopes", "expiresAt"])
        guard let tenant = r.optional("tenant")?.stringValue, let subject = r.optional("subject")?.stringValue else {
            throw CampaignError(.unauthorized, "the principal needs a tenant and a subject")
        }
        let roleName = try r.string("role")
        guard let role = Role(rawValue: roleName) else {
            throw CampaignError(
                .invalidFormat, "role must be viewer, editor or admin", param: "role", pointer: "/principal/role")
        }
        var scopes = Set<String>()
        for (index, item) in try r.array("scopes").enumerated() {
            let scope = item.stringValue ?? ""
            try check(scope: scope, at: "/principal/scopes/\(index)")
            scopes.insert(scope)
        }
        return Principal(
            tenant: tenant, subject: subject, role: role, scopes: scopes, expiresAt: try r.timestamp("expiresAt"))
    }
}
