import Foundation
import Hashing

/// A tenant's contact schema as an aggregate (`field.define` appends to it).
public enum TenantSchema: Aggregate {
    /// The tenant's fields (nil before the first is defined).
    public typealias State = ContactSchema
    /// `field.define` and `field.update`.
    public typealias Command = SchemaCommand
    /// `field.defined` and `field.updated`.
    public typealias Event = SchemaEvent

    /// Decides `field.define` or `field.update` against the tenant's schema (nil: no field yet).
    public static func decide(
        _ command: SchemaCommand, state: ContactSchema?, context: DecisionContext
    ) throws(CampaignError) -> Decision {
        switch command {
        case let .defineField(name, type, values):
            return try defineField(name, type: type, values: values, in: state ?? ContactSchema())
        case let .updateField(name, values):
            return try updateField(name, values: values, in: state ?? ContactSchema())
        }
    }

    /// The problem with a field's name, or nil.
    private static func nameProblem(_ name: String) -> FieldProblem? {
        let message = "name must be 1–64 of a-z, 0-9 and _, starting with a letter"
        return ContactSchema.isValidFieldName(name)
            ? nil : FieldProblem(field: "name", pointer: "/name", message: message)
    }

    /// The problem with an enum's values, or nil: 1–100 values, each showing something, at most 100
    /// characters, on one line, and distinct without regard to case (rules compare them so: `Gold`
    /// and `gold` would be one).
    private static func enumValuesProblem(_ list: [String]) -> FieldProblem? {
        if list.isEmpty || list.count > 100 || Set(list.map { $0.lowercased() }).count != list.count
            || list.contains(where: { TextRules.showsNothing($0) || $0.count > 100 })
        {
            return FieldProblem(
                field: "values", pointer: "/values",
                message: "an enum needs 1–100 non-empty values, distinct without regard to case")
        }
        return list.enumerated().lazy.compactMap { index, value in
            TextRules.controlCharacterMessage(value, field: "value", multiline: false).map {
                FieldProblem(field: "values", pointer: "/values/\(index)", message: $0)
            }
        }.first
    }

    /// `field.update`: an enum field the tenant defined takes new values. Every value it has stays,
    /// spelled as it is: contacts and segment rules may hold it, and neither is rewritten. The same
    /// list in the same order changes nothing.
    private static func updateField(
        _ name: String, values: [String], in schema: ContactSchema
    ) throws(CampaignError) -> Decision {
        let problems = [nameProblem(name), enumValuesProblem(values)].compactMap { $0 }
        guard problems.isEmpty else { throw .validation(problems) }
        if ContactSchema.builtIn[name] != nil {
            throw .validation([
                FieldProblem(
                    field: "name", pointer: "/name",
                    message: "\(name) is built in; only a field the tenant defined can change")
            ])
        }
        guard let type = schema.fields[name] else { throw .notFound("field", name, pointer: "/name") }
        guard case let .enumeration(current) = type else {
            throw .validation([
                FieldProblem(
                    field: "values", pointer: "/values",
                    message: "values is only for enum fields; \(name) is a \(type.name) field")
            ])
        }
        let dropped = current.filter { !values.contains($0) }
        if let last = dropped.last {
            let listed = dropped.count == 1 ? last : dropped.dropLast().joined(separator: ", ") + " and " + last
            throw .validation([
                FieldProblem(
                    field: "values", pointer: "/values",
                    message: "values must keep \(listed) as spelled: contacts and segment rules may hold "
                        + (dropped.count == 1 ? "it" : "them"))
            ])
        }
        guard values != current else { return Decision(events: []) }
        return Decision(events: [SchemaEvent.fieldUpdated(name: name, values: values).domainEvent])
    }

    private static func defineField(
        _ name: String, type: String, values: [String]?, in schema: ContactSchema
    ) throws(CampaignError) -> Decision {
        var problems = [nameProblem(name)].compactMap { $0 }
        let types = ["string", "number", "boolean", "date", "enum", "list"]
        if !types.contains(type) {
            problems.append(
                FieldProblem(
                    field: "type", pointer: "/type",
                    message: "type must be one of \(types.joined(separator: ", "))"))
        }
        if type == "enum" {
            if let list = values {
                if let problem = enumValuesProblem(list) { problems.append(problem) }
            } else {
                // The pointer names a value that exists: the payload, which lacks `values`.
                problems.append(
                    FieldProblem(
                        field: "values", pointer: "",
                        message: "values is required for an enum field (1–100 distinct values)"))
            }
        } else if values != nil {
            problems.append(
                FieldProblem(field: "values", pointer: "/values", message: "values is only for enum fields"))
        }
        guard problems.isEmpty else { throw .validation(problems) }
        guard schema.fields[name] == nil else {
            throw CampaignError(
                .duplicateResource, "field \(name) already exists", param: "name", pointer: "/name")
        }
        // Every contact command reads the schema: its size is bounded like a rule's or an import's.
        let defined = schema.fields.count - ContactSchema.builtIn.count
        guard defined < ContactSchema.maximumDefinedFields else {
            throw .validation([
                FieldProblem(
                    field: "name", pointer: "",
                    message: "a tenant defines at most \(ContactSchema.maximumDefinedFields) fields of its own, "
                        + "and this one has \(defined)")
            ])
        }
        return Decision(events: [SchemaEvent.fieldDefined(name: name, type: type, values: values).domainEvent])
    }

    /// Folds `field.defined` and `field.updated` events into a schema.
    public static func evolve(_ schema: ContactSchema, _ event: EventRecord) -> ContactSchema {
        SchemaEvent(event).map { evolve(schema, $0) } ?? schema
    }

    /// Folds one schema event (the schema carries no version or time of its own).
    public static func evolve(
        _ state: ContactSchema?, _ event: SchemaEvent, at _: Date, version _: UInt64
    )
        -> ContactSchema?
    {
        evolve(state ?? ContactSchema(), event)
    }

    /// Folds one schema event. An update names an enum field the tenant defined, and only its
    /// values change.
    public static func evolve(_ schema: ContactSchema, _ event: SchemaEvent) -> ContactSchema {
        var schema = schema
        switch event {
        case let .fieldDefined(name, type, values):
            if let type = FieldType(name: type, values: values) { schema.define(name, type) }
        case let .fieldUpdated(name, values):
            if case .enumeration = schema.fields[name], ContactSchema.builtIn[name] == nil {
                schema.define(name, .enumeration(values))
            }
        }
        return schema
    }
}

/// A contact's states: active while its values are stored, erased once `contact.erase` deleted them.
public enum ContactStatus: String, Sendable {
    /// Has values.
    case active
    /// Personal values deleted.
    case erased
}

/// A contact's state as the log knows it: no personal values, only a commitment to them.
public struct ContactState: Sendable, Equatable {
    /// The id (`ctc_…`).
    public var id: String
    /// Active, or erased (its values gone; its events and their commitments stay in the log).
    public var status: ContactStatus
    /// SHA-256(salt ‖ canonical JSON of the values), hex; proves what the values were without holding them.
    public var commitment: String
    /// The names of the fields that have values.
    public var fields: [String]
    /// When it last changed.
    public var updatedAt: Date
    /// The stream version this state folds to: the number of the contact's events so far.
    public var version: UInt64
}

/// The contact aggregate. Personal values never enter an event: the event carries a salted
/// commitment and the field names; the values go to a separate table that erasure empties.
public enum Contact {
    /// The commitment to a set of values.
    public static func commitment(values: JSONObject, salt: String) -> String {
        var hasher = SHA256()
        hasher.update(Array(salt.utf8))
        hasher.update(JSON.object(values).bytes)
        return hasher.finalize().hexString
    }

    /// Validates an upsert's attributes; returns each problem with its pointer.
    public static func problems(in input: ContactInput, schema: ContactSchema, at pointer: String) -> [FieldProblem] {
        input.attributes.keys.sorted().compactMap { field in
            schema.problem(with: input.attributes[field]!, for: field).map {
                FieldProblem(
                    field: "attributes.\(field)",
                    pointer: JSONPointer.appending(JSONPointer.appending(pointer, "attributes"), field), message: $0)
            }
        }
    }

    /// Decides an upsert: merges the attributes into the current values (null removes one).
    /// Returns no events when nothing changes.
    public static func decideUpsert(
        _ input: ContactInput, state: ContactState?, currentValues: JSONObject, context: DecisionContext
    ) throws(CampaignError) -> Decision {
        let problems = problems(in: input, schema: context.schema, at: "")
        guard problems.isEmpty else { throw .validation(problems) }
        // One merge of the two sorted objects, then the fields set to null dropped: linear in both,
        // where inserting each attribute would move the members after it.
        let values = (state?.status == .active ? currentValues : [:])
            .merging(input.attributes) { _, new in new }
            .filter { input.attributes[$0.key] != .null }
        if let state, state.status == .active, values == currentValues { return Decision(events: []) }
        let commitment = commitment(values: values, salt: context.salt)
        return Decision(
            events: [
                ContactEvent.upserted(contactId: input.contactId, commitment: commitment, fields: values.keys.sorted())
                    .domainEvent
            ],
            personalData: [PersonalDataChange(contactId: input.contactId, values: values, salt: context.salt)])
    }

    /// Decides `contact.erase`: no events for a contact erased already (a retried erasure is
    /// answered as done, not as an unknown contact), `RESOURCE_NOT_FOUND` for one never written.
    public static func decideErase(contactId: String, state: ContactState?) throws(CampaignError) -> Decision {
        guard let state else { throw CampaignError.notFound("contact", contactId, pointer: "/contactId") }
        guard state.status == .active else { return Decision(events: []) }
        return Decision(
            events: [ContactEvent.erased(contactId: contactId).domainEvent],
            personalData: [PersonalDataChange(contactId: contactId, values: nil, salt: nil)])
    }

    /// Folds one stored event into the state (events of other aggregates leave it as it is).
    public static func evolve(_ state: ContactState?, _ event: EventRecord) -> ContactState? {
        guard let typed = ContactEvent(event) else { return state }
        return evolve(state, typed, at: event.occurredAt, version: event.version)
    }

    /// Folds one event, which happened at `time` and made the stream's version `version`.
    public static func evolve(
        _ state: ContactState?, _ event: ContactEvent, at time: Date, version: UInt64
    )
        -> ContactState?
    {
        switch event {
        case let .upserted(contactId, commitment, fields):
            return ContactState(
                id: contactId.isEmpty ? state?.id ?? "" : contactId, status: .active, commitment: commitment,
                fields: fields, updatedAt: time, version: version)
        case .erased:
            guard var state else { return nil }
            state.status = .erased
            state.commitment = ""
            state.fields = []
            state.updatedAt = time
            state.version = version
            return state
        }
    }
}
