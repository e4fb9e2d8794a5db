/// What an update does to an optional field it names: gives it a value, or removes it (on the wire,
/// the member sent as `null`, as in JSON Merge Patch). A field the update leaves alone is `nil`
/// where this is taken.
public enum FieldUpdate<Value: Sendable & Equatable>: Sendable, Equatable {
    /// The field takes this value.
    case set(Value)
    /// The field is removed.
    case remove

    /// The value the field has after the update: the one set, or nil when it is removed.
    public var value: Value? {
        if case let .set(value) = self { return value }
        return nil
    }
}

extension FieldUpdate: ExpressibleByUnicodeScalarLiteral, ExpressibleByExtendedGraphemeClusterLiteral,
    ExpressibleByStringLiteral
where Value == String {
    /// A string literal sets the field to it: `link: "https://example.com"`.
    public init(stringLiteral value: String) { self = .set(value) }
}
