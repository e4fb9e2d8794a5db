import CampaignDomain
import Foundation

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
    public static func decode(_ bytes: [UInt8], limits: JSONLimits = JSONLimits()) -> Decoded {
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
        let requestId =
            (document["requestId"]?.stringValue).flatMap { isValidRequestId($0) ? $0 : nil } ?? fallbackRequestId
        do {
            return .request(try decode(document, requestId: requestId))
        } catch {
            return .rejected(.failure(error, requestId: requestId))
        }
    }

    /// The id used when a request carries none we can read.
    public static let fallbackRequestId = "unknown"

    static func isValidRequestId(_ id: String) -> Bool {
        let utf8 = Array(id.utf8)
        return (1...128).contains(utf8.count) && utf8.allSatisfy { (33...126).contains($0) }
    }

    private static func decode(_ document: JSON, requestId: String) throws(CampaignError) -> EngineRequest {
        let r = try FieldReader(document, at: "", allowed: envelopeFields)
        if let given = try r.optionalString("requestId"), !isValidRequestId(given) {
            throw CampaignError(
                .invalidFormat, "requestId must be 1–128 printable ASCII characters", param: "requestId",
                pointer: "/requestId")
        }
        var idempotencyKey: String?
        if let key = try r.optionalString("idempotencyKey") {
            guard (1...200).contains(key.utf8.count), !key.utf8.contains(0) else {
                throw CampaignError(
                    .invalidFormat, "idempotencyKey must be 1–200 bytes", param: "idempotencyKey",
                    pointer: "/idempotencyKey")
            }
            idempotencyKey = key
        }
        let expectedVersion = try r.optionalInteger("expectedVersion", in: 0...Int(Int64.max >> 11)).map { UInt64($0) }
        let principal = try r.optional("principal").map { (json) throws(CampaignError) in try decodePrincipal(json) }

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
            guard let scope = item.stringValue, Principal.allScopes.contains(scope) else {
                throw CampaignError(
                    .invalidFormat, "unknown scope; scopes are \(Principal.allScopes.sorted().joined(separator: ", "))",
                    param: "scopes", pointer: "/principal/scopes/\(index)")
            }
            scopes.insert(scope)
        }
        return Principal(
            tenant: tenant, subject: subject, role: role, scopes: scopes, expiresAt: try r.timestamp("expiresAt"))
    }
}
