import CampaignDomain
import Foundation

/// Reads one JSON object strictly: any member not in `allowed` is `INVALID_FIELD`, a required
/// member that is absent (or null) is `MISSING_FIELD`, a member of the wrong JSON type or a bad
/// date or id is `INVALID_FORMAT`; each error carries the RFC 6901 pointer of the member.
public struct FieldReader {
    /// The object's members, checked against `allowed` and not yet against their types (the accessors do that).
    public let members: JSONObject
    /// The pointer of the object itself.
    public let pointer: String

    /// Checks that `value` is an object with no member outside `allowed`.
    public init(_ value: JSON, at pointer: String, allowed: some Collection<String>) throws(CampaignError) {
        guard case let .object(members) = value else {
            throw CampaignError(
                .invalidFormat, "\(FieldReader.describe(pointer)) must be an object, not \(value.typeName)",
                pointer: pointer)
        }
        // The first unknown member in sorted order, so the error does not depend on hashing.
        var unknown: String?
        for member in members where !allowed.contains(member.key) {
            if let first = unknown, first <= member.key { continue }
            unknown = member.key
        }
        if let unknown {
            throw CampaignError(
                .invalidField, "unknown field \"\(unknown)\" in \(FieldReader.describe(pointer))",
                param: unknown, pointer: FieldReader.pointer(pointer, unknown))
        }
        self.members = members
        self.pointer = pointer
    }

    /// `base` extended by one reference token, escaped per RFC 6901.
    public static func pointer(_ base: String, _ token: String) -> String { JSONPointer.appending(base, token) }

    /// `base` extended by an array index.
    public static func pointer(_ base: String, _ index: Int) -> String { JSONPointer.appending(base, index) }

    static func describe(_ pointer: String) -> String { pointer.isEmpty ? "the request" : pointer }

    /// The pointer of member `key`.
    public func pointer(_ key: String) -> String { FieldReader.pointer(pointer, key) }

    /// The member's value, or nil when absent or null.
    public func optional(_ key: String) -> JSON? {
        guard let value = members[key], value != .null else { return nil }
        return value
    }

    /// The member's value; `MISSING_FIELD` when absent or null.
    public func required(_ key: String) throws(CampaignError) -> JSON {
        guard let value = optional(key) else {
            throw CampaignError(.missingField, "\(key) is required", param: key, pointer: pointer(key))
        }
        return value
    }

    func wrongType(_ key: String, _ expected: String, _ value: JSON) -> CampaignError {
        CampaignError(
            .invalidFormat, "\(key) must be \(expected), not \(value.typeName)", param: key, pointer: pointer(key))
    }

    /// A required string: `MISSING_FIELD` when absent or null, `INVALID_FORMAT` when not a string.
    public func string(_ key: String) throws(CampaignError) -> String {
        let value = try required(key)
        guard let text = value.stringValue else { throw wrongType(key, "a string", value) }
        return text
    }

    /// An optional string: nil when absent or null, `INVALID_FORMAT` when not a string.
    public func optionalString(_ key: String) throws(CampaignError) -> String? {
        guard let value = optional(key) else { return nil }
        guard let text = value.stringValue else { throw wrongType(key, "a string", value) }
        return text
    }

    /// A change to an optional string field: nil when absent, ``FieldUpdate/remove`` when null,
    /// `INVALID_FORMAT` when neither null nor a string.
    public func stringUpdate(_ key: String) throws(CampaignError) -> FieldUpdate<String>? {
        guard let value = members[key] else { return nil }
        if value == .null { return .remove }
        guard let text = value.stringValue else { throw wrongType(key, "a string or null", value) }
        return .set(text)
    }

    /// A change to an optional integer field: nil when absent, ``FieldUpdate/remove`` when null,
    /// `INVALID_FORMAT` when neither null nor an integer within `range`.
    public func integerUpdate(_ key: String, in range: ClosedRange<Int>) throws(CampaignError) -> FieldUpdate<Int>? {
        if members[key] == .null { return .remove }
        return try optionalInteger(key, in: range).map { .set($0) }
    }

    /// Refuses `null` for the members `keys` of an update: in an update (as in JSON Merge Patch) null
    /// means "remove", and these values can only be replaced or, left out, kept. The first that is
    /// null is `INVALID_FORMAT` at its pointer.
    public func refuseNull(_ keys: String...) throws(CampaignError) {
        for key in keys where members[key] == .null {
            throw CampaignError(
                .invalidFormat, "\(key) cannot be removed: give a new value, or leave it out to keep it",
                param: key, pointer: pointer(key))
        }
    }

    /// An optional boolean: nil when absent or null, `INVALID_FORMAT` when not `true` or `false`.
    public func optionalBool(_ key: String) throws(CampaignError) -> Bool? {
        guard let value = optional(key) else { return nil }
        guard let flag = value.boolValue else { throw wrongType(key, "a boolean", value) }
        return flag
    }

    /// An optional integer within `range`.
    public func optionalInteger(_ key: String, in range: ClosedRange<Int>) throws(CampaignError) -> Int? {
        guard let value = optional(key) else { return nil }
        guard let number = value.integerValue else { throw wrongType(key, "an integer", value) }
        try FieldReader.check(number, key: key, in: range, at: pointer(key))
        return number
    }

    /// `INVALID_FORMAT` at `pointer` unless `range` holds `number`.
    static func check(_ number: Int, key: String, in range: ClosedRange<Int>, at pointer: String) throws(CampaignError)
    {
        guard range.contains(number) else {
            throw CampaignError(
                .invalidFormat, "\(key) must be between \(range.lowerBound) and \(range.upperBound)",
                param: key, pointer: pointer)
        }
    }

    /// A required array: `MISSING_FIELD` when absent or null, `INVALID_FORMAT` when not an array.
    public func array(_ key: String) throws(CampaignError) -> [JSON] {
        let value = try required(key)
        guard let elements = value.arrayValue else { throw wrongType(key, "an array", value) }
        return elements
    }

    /// An optional array: nil when absent or null, `INVALID_FORMAT` when not an array.
    public func optionalArray(_ key: String) throws(CampaignError) -> [JSON]? {
        guard let value = optional(key) else { return nil }
        guard let elements = value.arrayValue else { throw wrongType(key, "an array", value) }
        return elements
    }

    /// A required ISO 8601 timestamp (`2026-12-01T09:00:00Z`, optional fraction, `Z` or offset).
    public func timestamp(_ key: String) throws(CampaignError) -> Date {
        let text = try string(key)
        guard let date = Timestamp.parse(text) else {
            throw CampaignError(
                .invalidFormat, "\(key) must be an ISO 8601 timestamp such as 2026-12-01T09:00:00Z",
                param: key, pointer: pointer(key))
        }
        return date
    }

    /// An optional ISO 8601 timestamp.
    public func optionalTimestamp(_ key: String) throws(CampaignError) -> Date? {
        guard optional(key) != nil else { return nil }
        return try timestamp(key)
    }

    /// A required id with the given prefix (`cmp`, `seg`, …).
    public func id(_ key: String, prefix: String) throws(CampaignError) -> String {
        let text = try string(key)
        try FieldReader.check(id: text, key: key, prefix: prefix, at: pointer(key))
        return text
    }

    /// `INVALID_FORMAT` at `pointer` unless `text` is an id with `prefix` (``Identifier/isValid(_:prefix:)``).
    static func check(id text: String, key: String, prefix: String, at pointer: String) throws(CampaignError) {
        if let error = idError(text, key: key, prefix: prefix, at: pointer) { throw error }
    }

    /// The error ``check(id:key:prefix:at:)`` throws for `text`, or nil when it is an id with `prefix`.
    static func idError(_ text: String, key: String, prefix: String, at pointer: String) -> CampaignError? {
        guard Identifier.isValid(text, prefix: prefix) else {
            return CampaignError(
                .invalidFormat, "\(key) must look like \(prefix)_ followed by 1–64 letters, digits, _ or -",
                param: key, pointer: pointer)
        }
        return nil
    }

    /// An optional id with the given prefix.
    public func optionalId(_ key: String, prefix: String) throws(CampaignError) -> String? {
        guard optional(key) != nil else { return nil }
        return try id(key, prefix: prefix)
    }
}
