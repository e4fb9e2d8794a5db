import Foundation

/// What happened to a social connection. It holds a credential reference, never a token.
public enum SocialEvent: Sendable, Equatable {
    /// An account was connected, with where the host keeps its token and when that expires, and
    /// its own text limit if it has one.
    case connected(
        connectionId: String, platform: String, accountId: String, credentialRef: String, expiresAt: Date,
        textLimit: Int? = nil)
    /// The token was renewed (and perhaps moved to a new reference), or the account's own text
    /// limit changed (stored as null when it went back to the platform's).
    case refreshed(connectionId: String, credentialRef: String?, expiresAt: Date?, textLimit: FieldUpdate<Int>? = nil)
    /// Disconnected for good; the account may be connected again under a new connection.
    case disconnected(connectionId: String)

    /// The stored event types of a connection.
    public enum Kind: String, Sendable, CaseIterable {
        /// `social.connected`.
        case connected = "social.connected"
        /// `social.refreshed`.
        case refreshed = "social.refreshed"
        /// `social.disconnected`.
        case disconnected = "social.disconnected"
    }

    /// The case's stored type: its ``Kind``, whose raw value is the record's `type`.
    public var kind: Kind {
        switch self {
        case .connected: return .connected
        case .refreshed: return .refreshed
        case .disconnected: return .disconnected
        }
    }

    /// The JSON object the case is stored as: its fields by name, optional ones only when present.
    public var payload: JSONObject {
        switch self {
        case let .connected(connectionId, platform, accountId, credentialRef, expiresAt, textLimit):
            var payload: JSONObject = [
                "connectionId": .string(connectionId), "platform": .string(platform), "accountId": .string(accountId),
                "credentialRef": .string(credentialRef), "expiresAt": .string(Timestamp.format(expiresAt)),
            ]
            if let textLimit { payload["textLimit"] = .number(Double(textLimit)) }
            return payload
        case let .refreshed(connectionId, credentialRef, expiresAt, textLimit):
            var payload: JSONObject = ["connectionId": .string(connectionId)]
            if let credentialRef { payload["credentialRef"] = .string(credentialRef) }
            if let expiresAt { payload["expiresAt"] = .string(Timestamp.format(expiresAt)) }
            if let textLimit { payload["textLimit"] = textLimit.value.map { .number(Double($0)) } ?? .null }
            return payload
        case let .disconnected(connectionId): return ["connectionId": .string(connectionId)]
        }
    }

    /// The event as the engine appends it.
    public var domainEvent: DomainEvent { DomainEvent(kind.rawValue, payload) }

    /// Reads a stored connection event; nil for another aggregate's type. Missing fields read as
    /// empty (an unreadable expiry as long past), as the fold always has.
    public init?(_ record: EventRecord) {
        guard let kind = Kind(rawValue: record.type) else { return nil }
        let p = record.payload
        let id = p["connectionId"]?.stringValue ?? ""
        let expiresAt = p["expiresAt"]?.stringValue.flatMap { Timestamp.parse($0) }
        switch kind {
        case .connected:
            self = .connected(
                connectionId: id, platform: p["platform"]?.stringValue ?? "",
                accountId: p["accountId"]?.stringValue ?? "", credentialRef: p["credentialRef"]?.stringValue ?? "",
                expiresAt: expiresAt ?? .distantPast, textLimit: p["textLimit"]?.integerValue)
        case .refreshed:
            // null: back to the platform's limit; absent (or unreadable): unchanged.
            let textLimit: FieldUpdate<Int>? =
                p["textLimit"] == .null ? .remove : p["textLimit"]?.integerValue.map { .set($0) }
            self = .refreshed(
                connectionId: id, credentialRef: p["credentialRef"]?.stringValue, expiresAt: expiresAt,
                textLimit: textLimit)
        case .disconnected: self = .disconnected(connectionId: id)
        }
    }
}
