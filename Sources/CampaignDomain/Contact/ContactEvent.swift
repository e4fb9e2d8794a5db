import Foundation

/// What happened to a contact. Neither case holds a personal value: an upsert carries the salted
/// commitment to the values and the names of the fields that have one.
public enum ContactEvent: Sendable, Equatable {
    /// Created or changed: the commitment to its values now, and which fields are set.
    case upserted(contactId: String, commitment: String, fields: [String])
    /// Erased: its values and salt were deleted with this event.
    case erased(contactId: String)

    /// The stored event types of a contact.
    public enum Kind: String, Sendable, CaseIterable {
        /// `contact.upserted`.
        case upserted = "contact.upserted"
        /// `contact.erased`.
        case erased = "contact.erased"
    }

    /// The case's stored type: its ``Kind``, whose raw value is the record's `type`.
    public var kind: Kind {
        switch self {
        case .upserted: return .upserted
        case .erased: return .erased
        }
    }

    /// The JSON object the case is stored as: its fields by name, optional ones only when present.
    public var payload: JSONObject {
        switch self {
        case let .upserted(contactId, commitment, fields):
            return [
                "contactId": .string(contactId), "commitment": .string(commitment),
                "fields": .array(fields.map(JSON.string)),
            ]
        case let .erased(contactId): return ["contactId": .string(contactId)]
        }
    }

    /// The event as the engine appends it.
    public var domainEvent: DomainEvent { DomainEvent(kind.rawValue, payload) }

    /// Reads a stored contact event; nil for another aggregate's type.
    public init?(_ record: EventRecord) {
        guard let kind = Kind(rawValue: record.type) else { return nil }
        let p = record.payload
        let id = p["contactId"]?.stringValue ?? ""
        switch kind {
        case .upserted:
            self = .upserted(
                contactId: id, commitment: p["commitment"]?.stringValue ?? "",
                fields: (p["fields"]?.arrayValue ?? []).compactMap(\.stringValue))
        case .erased: self = .erased(contactId: id)
        }
    }
}

/// What happened to a tenant's contact schema.
public enum SchemaEvent: Sendable, Equatable {
    /// A custom field was defined (`values` for an enum).
    case fieldDefined(name: String, type: String, values: [String]?)
    /// An enum field's values changed: `values` is the whole new list (every earlier value kept).
    case fieldUpdated(name: String, values: [String])

    /// The stored event types of a schema.
    public enum Kind: String, Sendable, CaseIterable {
        /// `field.defined`.
        case fieldDefined = "field.defined"
        /// `field.updated`.
        case fieldUpdated = "field.updated"
    }

    /// The case's stored type: its ``Kind``, whose raw value is the record's `type`.
    public var kind: Kind {
        switch self {
        case .fieldDefined: return .fieldDefined
        case .fieldUpdated: return .fieldUpdated
        }
    }

    /// The JSON object the case is stored as: its fields by name, optional ones only when present.
    public var payload: JSONObject {
        switch self {
        case let .fieldDefined(name, type, values):
            var payload: JSONObject = ["name": .string(name), "type": .string(type)]
            if let values { payload["values"] = .array(values.map(JSON.string)) }
            return payload
        case let .fieldUpdated(name, values):
            return ["name": .string(name), "values": .array(values.map(JSON.string))]
        }
    }

    /// The event as the engine appends it.
    public var domainEvent: DomainEvent { DomainEvent(kind.rawValue, payload) }

    /// Reads a stored schema event; nil for another type, or one without a name, a definition's
    /// type or an update's values.
    public init?(_ record: EventRecord) {
        guard let kind = Kind(rawValue: record.type), let name = record.payload["name"]?.stringValue else {
            return nil
        }
        let values = record.payload["values"]?.arrayValue?.compactMap(\.stringValue)
        switch kind {
        case .fieldDefined:
            guard let type = record.payload["type"]?.stringValue else { return nil }
            self = .fieldDefined(name: name, type: type, values: values)
        case .fieldUpdated:
            guard let values else { return nil }
            self = .fieldUpdated(name: name, values: values)
        }
    }
}
