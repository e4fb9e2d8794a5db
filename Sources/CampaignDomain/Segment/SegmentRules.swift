import Foundation

/// A segment's rule tree: `{"all": [...]}` or `{"any": [...]}` of conditions
/// `{"field", "operator", "value"}` and nested groups; at most 3 levels of groups and 100
/// conditions. Validated against the tenant's contact schema, evaluated against a contact.
public indirect enum SegmentRule: Sendable, Equatable {
    /// Every child matches.
    case all([SegmentRule])
    /// At least one child matches.
    case any([SegmentRule])
    /// A field compared with a value.
    case condition(field: String, operator: String, value: JSON?)

    /// The deepest nesting of groups allowed.
    public static let maximumDepth = 3
    /// The most conditions a tree may hold.
    public static let maximumConditions = 100

    // MARK: Parsing and validation

    /// Parses and validates a rule tree.
    /// - Parameter new: a rule a command brings, rather than one read from the log: it may not hold
    ///   what rules stored by earlier versions may (``newValueProblem(type:operator:value:)``), and
    ///   which those still match as they did.
    /// - Throws: `INVALID_SEGMENT_RULE` (shape, value, depth, size), `UNKNOWN_FIELD`, `INVALID_OPERATOR`;
    ///   each with the pointer of the offending node.
    public static func parse(
        _ json: JSON, schema: ContactSchema, at pointer: String, new: Bool = false
    ) throws(CampaignError) -> SegmentRule {
        var conditions = 0
        let rule = try parseGroup(json, schema: schema, at: pointer, depth: 1, new: new, conditions: &conditions)
        return rule
    }

    private static func invalid(_ message: String, _ pointer: String) -> CampaignError {
        CampaignError(.invalidSegmentRule, message, pointer: pointer)
    }

    private static func parseGroup(
        _ json: JSON, schema: ContactSchema, at pointer: String, depth: Int, new: Bool, conditions: inout Int
    ) throws(CampaignError) -> SegmentRule {
        guard case let .object(members) = json, members.count == 1, let (kind, body) = members.first,
            kind == "all" || kind == "any"
        else {
            throw invalid("a rule group must be an object with exactly one key, \"all\" or \"any\"", pointer)
        }
        guard depth <= maximumDepth else {
            throw invalid("rule groups are nested deeper than \(maximumDepth) levels", pointer)
        }
        let groupPointer = JSONPointer.appending(pointer, kind)
        guard case let .array(children) = body else { throw invalid("\"\(kind)\" must be an array", groupPointer) }
        guard !children.isEmpty else { throw invalid("\"\(kind)\" must not be empty", groupPointer) }
        var parsed = [SegmentRule]()
        for (index, child) in children.enumerated() {
            let childPointer = JSONPointer.appending(groupPointer, index)
            if case let .object(childMembers) = child, childMembers["field"] == nil, childMembers["operator"] == nil {
                parsed.append(
                    try parseGroup(
                        child, schema: schema, at: childPointer, depth: depth + 1, new: new, conditions: &conditions))
            } else {
                conditions += 1
                guard conditions <= maximumConditions else {
                    throw invalid("a segment may hold at most \(maximumConditions) conditions", childPointer)
                }
                parsed.append(try parseCondition(child, schema: schema, at: childPointer, new: new))
            }
        }
        return kind == "all" ? .all(parsed) : .any(parsed)
    }

    private static func parseCondition(
        _ json: JSON, schema: ContactSchema, at pointer: String, new: Bool
    ) throws(CampaignError) -> SegmentRule {
        guard case let .object(members) = json else { throw invalid("a condition must be an object", pointer) }
        if let extra = members.keys.filter({ !["field", "operator", "value"].contains($0) }).sorted().first {
            throw invalid("unknown key \"\(extra)\" in a condition", JSONPointer.appending(pointer, extra))
        }
        // A pointer names a value that exists: the member when it is there (of the wrong type),
        // else the condition that lacks it.
        func memberPointer(_ key: String) -> String {
            members[key] == nil ? pointer : JSONPointer.appending(pointer, key)
        }
        guard let field = members["field"]?.stringValue else {
            throw invalid(
                members["field"] == nil ? "the condition has no \"field\"" : "\"field\" must be a string",
                memberPointer("field"))
        }
        guard let op = members["operator"]?.stringValue else {
            throw invalid(
                members["operator"] == nil ? "the condition has no \"operator\"" : "\"operator\" must be a string",
                memberPointer("operator"))
        }
        guard let type = schema.fields[field] else {
            throw CampaignError(
                .unknownField, "field \(field) is not in this tenant's contact schema",
                param: field, pointer: JSONPointer.appending(pointer, "field"))
        }
        guard type.operators.contains(op) else {
            throw CampaignError(
                .invalidOperator,
                "operator \(op) is not allowed for \(type.name) field \(field); allowed: "
                    + "\(type.operators.joined(separator: ", "))",
                param: op, pointer: JSONPointer.appending(pointer, "operator"))
        }
        let value = members["value"]
        let valuePointer = memberPointer("value")
        if let message = valueProblem(type: type, operator: op, value: value)
            ?? (new ? newValueProblem(type: type, operator: op, value: value) : nil)
        {
            throw invalid(message, valuePointer)
        }
        return .condition(field: field, operator: op, value: value)
    }

    /// What is wrong with a condition's value for its field type and operator, if anything.
    static func valueProblem(type: FieldType, operator op: String, value: JSON?) -> String? {
        if op == "exists" || op == "not_exists" {
            return value == nil ? nil : "\(op) takes no value"
        }
        guard let value else { return "the condition has no \"value\"; \(op) needs one" }
        func isDate(_ json: JSON) -> Bool {
            json.stringValue.flatMap { Timestamp.parse($0, as: .dateValue) } != nil
        }
        func isScalar(_ json: JSON) -> Bool {
            switch type {
            case .string: return json.stringValue != nil
            case .number: return json.numberValue != nil
            case .boolean: return json.boolValue != nil
            case .date: return isDate(json)
            case let .enumeration(values): return json.stringValue.map(values.contains) ?? false
            case .list: return json.stringValue != nil
            }
        }
        switch op {
        case "in", "not_in", "includes_all":
            guard let items = value.arrayValue, !items.isEmpty, items.count <= 1_000, items.allSatisfy(isScalar) else {
                return "\(op) needs a non-empty array (at most 1000) of \(type.name) values"
            }
        case "between":
            guard let pair = value.arrayValue, pair.count == 2, pair.allSatisfy(isScalar) else {
                return "between needs an array of two \(type.name) values"
            }
            if case .number = type, let low = pair[0].numberValue, let high = pair[1].numberValue, low > high {
                return "between needs the lower bound first"
            }
            if case .date = type, let low = pair[0].stringValue.flatMap({ Timestamp.parse($0, as: .dateValue) }),
                let high = pair[1].stringValue.flatMap({ Timestamp.parse($0, as: .dateValue) }), low > high
            {
                return "between needs the earlier date first"
            }
        case "within_last_days", "not_within_last_days":
            guard let days = value.integerValue, (1...36_500).contains(days) else {
                return "\(op) needs a whole number of days from 1 to 36500"
            }
        default:
            guard isScalar(value) else {
                if case let .enumeration(values) = type {
                    return "\(op) needs one of \(values.joined(separator: ", "))"
                }
                return "\(op) needs a \(type.name) value"
            }
        }
        return nil
    }

    /// What a new rule's value may not hold though a stored one may (earlier versions took it): an
    /// empty string to look for (`contains ""` matches every value) and, in text, a control
    /// character no contact's value can hold (``TextRules``).
    static func newValueProblem(type: FieldType, operator op: String, value: JSON?) -> String? {
        if ["contains", "not_contains", "starts_with", "ends_with"].contains(op), value?.stringValue == "" {
            return "\(op) needs a non-empty string"
        }
        let multiline: Bool
        switch type {
        case .string: multiline = true
        case .list: multiline = false
        default: return nil
        }
        for text in (value?.arrayValue ?? value.map { [$0] } ?? []).compactMap(\.stringValue) {
            if let message = TextRules.controlCharacterMessage(text, field: "value", multiline: multiline) {
                return message
            }
        }
        return nil
    }

    /// The number of conditions in the tree.
    public var conditionCount: Int {
        switch self {
        case let .all(children), let .any(children): return children.reduce(0) { $0 + $1.conditionCount }
        case .condition: return 1
        }
    }

    /// The tree as JSON, as the client wrote it.
    public var json: JSON {
        switch self {
        case let .all(children): return .object(["all": .array(children.map(\.json))])
        case let .any(children): return .object(["any": .array(children.map(\.json))])
        case let .condition(field, op, value):
            var members: JSONObject = ["field": .string(field), "operator": .string(op)]
            if let value { members["value"] = value }
            return .object(members)
        }
    }

    /// The fields the tree reads.
    public var fields: Set<String> {
        switch self {
        case let .all(children), let .any(children):
            return children.reduce(into: Set<String>()) { $0.formUnion($1.fields) }
        case let .condition(field, _, _): return [field]
        }
    }

    // MARK: Evaluation

    /// Whether a contact with `attributes` matches, at time `now` (for `within_last_days`).
    ///
    /// String comparisons ignore case. A missing attribute matches only the negative operators
    /// (`neq`, `not_in`, `not_contains`, `excludes`, `not_within_last_days`) and `not_exists`.
    public func matches(_ attributes: JSONObject, schema: ContactSchema, now: Date) -> Bool {
        SegmentMatcher(self, schema: schema).matches(attributes, now: now)
    }

    /// The first instant after `now` at which a relative-date condition (`within_last_days`,
    /// `not_within_last_days`) over `attributes` changes its truth value, or nil when none can.
    ///
    /// A `within_last_days N` condition on date `d` holds from `d` through `d + N days`: it turns
    /// true at `d` (a date in the future) and false one millisecond after `d + N days`. Every other
    /// operator compares with fixed values, so only these conditions make a membership expire. The
    /// answer is whole milliseconds (the resolution of event times), never earlier than the change.
    public func nextChange(_ attributes: JSONObject, after now: Date) -> Date? {
        switch self {
        case let .all(children), let .any(children):
            return children.compactMap { $0.nextChange(attributes, after: now) }.min()
        case let .condition(field, _, _):
            guard let days = relativeDays else { return nil }
            return Self.nextChange(of: attributes[field], days: days, after: now)
        }
    }

    /// The days of a relative-date condition (`within_last_days` or `not_within_last_days` with a
    /// whole number), whose truth alone changes with time; nil for any other rule.
    var relativeDays: Int? {
        guard case let .condition(_, op, value) = self, op == "within_last_days" || op == "not_within_last_days"
        else { return nil }
        return value?.integerValue
    }

    /// When a relative-date condition of `days` days over the date in `value` next changes after
    /// `now` (see ``nextChange(_:after:)``); nil when `value` is no date or both changes are past.
    static func nextChange(of value: JSON?, days: Int, after now: Date) -> Date? {
        guard let date = value?.stringValue.flatMap({ Timestamp.parse($0, as: .dateValue) }) else { return nil }
        let start = (date.timeIntervalSince1970 * 1000).rounded(.up)
        let end = (date.timeIntervalSince1970 * 1000 + Double(days) * 86_400_000).rounded(.down) + 1
        let nowMillis = now.timeIntervalSince1970 * 1000
        let next = start > nowMillis ? start : end > nowMillis ? end : nil
        return next.map { Date(timeIntervalSince1970: $0 / 1000) }
    }
}
