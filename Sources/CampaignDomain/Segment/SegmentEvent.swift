import Foundation

/// What happened to a segment: the segment aggregate's events, each case carrying its fields.
/// ``Kind``'s raw values are the stored `type` names, written here once.
public enum SegmentEvent: Sendable, Equatable {
    /// Created, active, with its rule tree (as the client wrote it, validated).
    case created(segmentId: String, name: String, rules: JSON)
    /// Renamed or given new rules (absent fields are unchanged).
    case updated(segmentId: String, name: String?, rules: JSON?)
    /// Archived: no campaign may use it any more, and its name is free again.
    case archived(segmentId: String)

    /// The stored event types of a segment.
    public enum Kind: String, Sendable, CaseIterable {
        /// `segment.created`.
        case created = "segment.created"
        /// `segment.updated`.
        case updated = "segment.updated"
        /// `segment.archived`.
        case archived = "segment.archived"
    }

    /// The case's stored type: its ``Kind``, whose raw value is the record's `type`.
    public var kind: Kind {
        switch self {
        case .created: return .created
        case .updated: return .updated
        case .archived: return .archived
        }
    }

    /// The segment the event belongs to.
    public var segmentId: String {
        switch self {
        case let .created(id, _, _), let .updated(id, _, _), let .archived(id): return id
        }
    }

    /// The JSON object the case is stored as: its fields by name, optional ones only when present.
    public var payload: JSONObject {
        var payload: JSONObject = ["segmentId": .string(segmentId)]
        switch self {
        case let .created(_, name, rules):
            payload["name"] = .string(name)
            payload["rules"] = rules
        case let .updated(_, name, rules):
            if let name { payload["name"] = .string(name) }
            if let rules { payload["rules"] = rules }
        case .archived: break
        }
        return payload
    }

    /// The event as the engine appends it.
    public var domainEvent: DomainEvent { DomainEvent(kind.rawValue, payload) }

    /// Reads a stored segment event; nil for another aggregate's type. Missing fields read as
    /// empty, as the fold always has.
    public init?(_ record: EventRecord) {
        guard let kind = Kind(rawValue: record.type) else { return nil }
        let p = record.payload
        let id = p["segmentId"]?.stringValue ?? ""
        switch kind {
        case .created:
            self = .created(segmentId: id, name: p["name"]?.stringValue ?? "", rules: p["rules"] ?? .null)
        case .updated: self = .updated(segmentId: id, name: p["name"]?.stringValue, rules: p["rules"])
        case .archived: self = .archived(segmentId: id)
        }
    }
}
