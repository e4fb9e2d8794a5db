import Foundation

/// The type of a contact field.
public enum FieldType: Sendable, Equatable {
    /// Text.
    case string
    /// A number.
    case number
    /// `true` or `false`.
    case boolean
    /// An ISO 8601 date or timestamp.
    case date
    /// One of a fixed list of strings.
    case enumeration([String])
    /// A list of strings (tags).
    case list

    /// The wire name: string, number, boolean, date, enum, list.
    public var name: String {
        switch self {
        case .string: return "string"
        case .number: return "number"
        case .boolean: return "boolean"
        case .date: return "date"
        case .enumeration: return "enum"
        case .list: return "list"
        }
    }

    /// The type a definition names (`enum` with its `values`); nil for a name that is no type.
    public init?(name: String, values: [String]?) {
        switch name {
        case "string": self = .string
        case "number": self = .number
        case "boolean": self = .boolean
        case "date": self = .date
        case "enum": self = .enumeration(values ?? [])
        case "list": self = .list
        default: return nil
        }
    }

    /// The operators a rule may use on a field of this type (SPEC.md §6).
    public var operators: [String] {
        switch self {
        case .string:
            return [
                "eq", "neq", "contains", "not_contains", "starts_with", "ends_with", "in", "not_in", "exists",
                "not_exists",
            ]
        case .number: return ["eq", "neq", "gt", "gte", "lt", "lte", "between", "in", "not_in", "exists", "not_exists"]
        case .boolean: return ["eq", "neq", "exists", "not_exists"]
        case .date:
            return [
                "eq", "before", "after", "between", "within_last_days", "not_within_last_days", "exists", "not_exists",
            ]
        case .enumeration: return ["eq", "neq", "in", "not_in", "exists", "not_exists"]
        case .list: return ["includes", "includes_all", "excludes", "exists", "not_exists"]
        }
    }
}

/// A tenant's contact fields: the built-ins plus those added with `field.define`.
public struct ContactSchema: Sendable, Equatable {
    /// Every field a rule may name, built-in and defined, with its type (which decides the operators allowed).
    public private(set) var fields: [String: FieldType]

    /// The built-in fields every tenant has. `plan` is an enum of free, starter, pro, enterprise.
    public static let builtIn: [String: FieldType] = [
        "email": .string, "first_name": .string, "last_name": .string, "country": .string, "city": .string,
        "age": .number, "lifetime_value": .number, "signed_up_at": .date, "last_seen_at": .date,
        "subscribed": .boolean, "plan": .enumeration(["free", "starter", "pro", "enterprise"]), "tags": .list,
    ]

    /// The schema of a tenant that defined nothing yet.
    public init() { fields = ContactSchema.builtIn }

    /// The most fields a tenant may define beside the built-in ones (`field.define` refuses more).
    public static let maximumDefinedFields = 500

    /// Adds a tenant field of `type`, as `field.defined` does (the command checks the name and clashes first).
    public mutating func define(_ name: String, _ type: FieldType) { fields[name] = type }

    /// The fields the tenant defined (every schema has the built-in ones too), in name order.
    public var definedNames: [String] { fields.keys.filter { ContactSchema.builtIn[$0] == nil }.sorted() }

    /// A field's definition as `field.define` takes it and `field.list` shows it: `{name, type}`, and
    /// an enum's `values`; nil for a name that is no field of the schema.
    public func definition(of name: String) -> JSONObject? {
        guard let type = fields[name] else { return nil }
        var definition: JSONObject = ["name": .string(name), "type": .string(type.name)]
        if case let .enumeration(values) = type { definition["values"] = .array(values.map(JSON.string)) }
        return definition
    }

    /// Field names: 1–64 of `[a-z0-9_]`, starting with a letter.
    public static func isValidFieldName(_ name: String) -> Bool {
        let utf8 = Array(name.utf8)
        guard (1...64).contains(utf8.count), let first = utf8.first, (97...122).contains(first) else { return false }
        return utf8.allSatisfy { (97...122).contains($0) || (48...57).contains($0) || $0 == 95 }
    }

    /// Checks one attribute value against its field; returns a message when it does not fit. Besides its
    /// type, `email` must read as an address (``emailProblem(_:)``) and `age` be a whole number of
    /// years, 0–150.
    public func problem(with value: JSON, for field: String) -> String? {
        guard let type = fields[field] else { return "\(field) is not a field of this tenant's contact schema" }
        switch (type, value) {
        case (_, .null): return nil
        case let (.string, .string(text)):
            guard text.count <= 1_000 else { return "\(field) is longer than 1000 characters" }
            // Blank is no value: a rule would find it `exists` and a message would greet nobody.
            if TextRules.showsNothing(text) { return "\(field) must show at least one character; null removes it" }
            if field == "email" { return Self.emailProblem(text) }
            return TextRules.controlCharacterMessage(text, field: field, multiline: true)
        case let (.number, .number(number)):
            guard abs(number) <= 1e15 else { return "\(field) is out of range" }
            guard field != "age" || ((0...150).contains(number) && number.rounded() == number) else {
                return "age must be a whole number of years, 0–150"
            }
            return nil
        case (.boolean, .bool): return nil
        case let (.date, .string(text)):
            guard Timestamp.parse(text, as: .dateValue) == nil else { return nil }
            return "\(field) must be an ISO 8601 date of year 0001–9999: 1962-03-04, or a time such as "
                + "1962-03-04T09:30:00Z"
        case let (.enumeration(values), .string(text)):
            return values.contains(text) ? nil : "\(field) must be one of \(values.joined(separator: ", "))"
        case let (.list, .array(items)):
            guard items.count <= 100 else { return "\(field) holds more than 100 items" }
            return Self.listProblem(items, field: field)
        default: return "\(field) must be a \(type.name) value, not \(value.typeName)"
        }
    }

    /// Why `items` is not a list (tags) value, or nil: strings of 1–1,000 characters, each showing
    /// at least one and on one line (no control character), none twice. Rules compare tags without
    /// regard to case, so `vip` and `VIP` are one tag twice.
    static func listProblem(_ items: [JSON], field: String) -> String? {
        var seen = Set<String>()
        for item in items {
            guard let text = item.stringValue, text.count <= 1_000 else {
                return "\(field) must be a list of strings of at most 1000 characters"
            }
            if TextRules.showsNothing(text) { return "\(field) must not hold an empty item" }
            if let message = TextRules.controlCharacterMessage(text, field: field, multiline: false) {
                return message
            }
            guard seen.insert(text.lowercased()).inserted else {
                return "\(field) must not hold an item twice (rules compare them without regard to case)"
            }
        }
        return nil
    }

    /// Why `text` is no email address, or nil: an address is `local@domain`, at most 254 bytes, with a
    /// local part of 1–64 bytes and a domain of dot-separated labels (two or more, none empty, none
    /// starting or ending with `-`), and no white space, control character or second `@`. The value
    /// itself is never quoted back: it is personal data.
    public static func emailProblem(_ text: String) -> String? {
        let problem = "email must be an address like name@example.com"
        let utf8 = Array(text.utf8)
        guard utf8.count <= 254, let at = utf8.firstIndex(of: UInt8(ascii: "@")) else { return problem }
        let local = utf8[..<at]
        let domain = utf8[(at + 1)...]
        guard (1...64).contains(local.count), !domain.contains(UInt8(ascii: "@")) else { return problem }
        // An address in printable ASCII without a space (nearly every one) has no white space or
        // control character; only one with other bytes has its scalars' properties looked up.
        let plain = utf8.allSatisfy { (0x21...0x7E).contains($0) }
        guard
            plain
                || !text.unicodeScalars.contains(where: {
                    $0.properties.isWhitespace || $0.properties.generalCategory == .control
                })
        else { return problem }
        let labels = domain.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard labels.count >= 2 else { return problem }
        for label in labels {
            guard (1...63).contains(label.count), label.first != UInt8(ascii: "-"), label.last != UInt8(ascii: "-")
            else { return problem }
        }
        return nil
    }
}
