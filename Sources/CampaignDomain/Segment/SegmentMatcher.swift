import Foundation

/// A segment rule compiled against one contact schema, to evaluate many contacts.
///
/// Each condition's field type, operator and expected values are resolved once: strings are
/// lowercased and dates parsed here, not per contact. ``SegmentRule/matches(_:schema:now:)``
/// evaluates through a matcher, so both give the same answer; a projection that evaluates a
/// tenant's contacts keeps one matcher per rule and schema.
public struct SegmentMatcher: Sendable {
    /// The rule it was compiled from; its ``SegmentRule/fields`` say which contact values a match reads.
    public let rule: SegmentRule
    /// The fields the conditions read, each once: a condition names its field by its index here.
    let fields: [String]
    /// The rule's tree in preorder, each node with the index just past its subtree: evaluated by
    /// walking indexes, with no node or child array retained a contact.
    private let nodes: [Node]
    /// The conditions, as the nodes name them.
    private let conditions: [Condition]
    /// The rule's relative-date conditions, field (by index) and days: the only ones whose truth
    /// changes with time alone.
    private let timed: [(field: Int, days: Int)]
    /// `0..<fields.count`: each field's slot when the values are read field by field.
    private let identity: [Int]

    /// Compiles `rule` for a tenant whose contact schema is `schema` (a field the schema does not
    /// name is compared as a string, as the rule's evaluation always has).
    public init(_ rule: SegmentRule, schema: ContactSchema) {
        self.rule = rule
        var fields = [String]()
        var nodes = [Node]()
        var conditions = [Condition]()
        var timed = [(field: Int, days: Int)]()
        func field(_ name: String) -> Int {
            if let index = fields.firstIndex(of: name) { return index }
            fields.append(name)
            return fields.count - 1
        }
        func add(_ rule: SegmentRule) {
            let at = nodes.count
            switch rule {
            case let .all(children), let .any(children):
                let isAll = if case .all = rule { true } else { false }
                nodes.append(Node(kind: isAll ? .all : .any, condition: 0, end: 0))
                children.forEach(add)
            case let .condition(name, op, value):
                let index = field(name)
                nodes.append(Node(kind: .condition, condition: conditions.count, end: 0))
                conditions.append(Condition(field: index, op, value, type: schema.fields[name] ?? .string))
                if let days = rule.relativeDays { timed.append((index, days)) }
            }
            nodes[at].end = nodes.count
        }
        add(rule)
        self.fields = fields
        self.nodes = nodes
        self.conditions = conditions
        self.timed = timed
        identity = Array(fields.indices)
    }

    /// Whether a contact with `attributes` matches, at time `now` (for `within_last_days`).
    public func matches(_ attributes: JSONObject, now: Date) -> Bool {
        // The values on the stack: the engine evaluates a contact's segments as it writes the
        // contact's event, one matcher at a time.
        withUnsafeTemporaryAllocation(of: JSON?.self, capacity: fields.count) { values in
            for (index, field) in fields.enumerated() { values.initializeElement(at: index, to: attributes[field]) }
            defer { _ = values.deinitialize() }
            return identity.withUnsafeBufferPointer {
                matches(now: now, values: UnsafeBufferPointer(values), slots: $0)
            }
        }
    }

    /// The rule's ``SegmentRule/nextChange(_:after:)``: when the answer for `attributes` next
    /// changes with time alone, if ever.
    public func nextChange(_ attributes: JSONObject, after now: Date) -> Date? {
        nextChange(after: now) { attributes[fields[$0]] }
    }

    /// Whether a contact matches at `now`: the value of field `i` (of ``fields``) is in
    /// `values[slots[i]]` (nil, or no slot when `slots[i]` is negative: the contact has none).
    /// Pointers, not a closure: the walk then retains nothing.
    func matches(now: Date, values: UnsafeBufferPointer<JSON?>, slots: UnsafeBufferPointer<Int>) -> Bool {
        nodes.withUnsafeBufferPointer { nodes in
            conditions.withUnsafeBufferPointer { conditions in
                Self.evaluate(0, nodes, conditions, values, slots, now: now)
            }
        }
    }

    private static func evaluate(
        _ at: Int, _ nodes: UnsafeBufferPointer<Node>, _ conditions: UnsafeBufferPointer<Condition>,
        _ values: UnsafeBufferPointer<JSON?>, _ slots: UnsafeBufferPointer<Int>, now: Date
    ) -> Bool {
        let node = nodes[at]
        switch node.kind {
        case .condition:
            let slot = slots[conditions[node.condition].field]
            guard slot >= 0, let actual = values[slot], actual != .null else {
                return conditions[node.condition].whenMissing
            }
            return conditions[node.condition].test.passes(actual, now: now)
        case .all, .any:
            // `all` stops at the first child that fails, `any` at the first that passes.
            let stop = node.kind == .any
            var child = at + 1
            while child < node.end {
                if evaluate(child, nodes, conditions, values, slots, now: now) == stop { return stop }
                child = nodes[child].end
            }
            return !stop
        }
    }

    /// When the answer next changes with time alone, field `i`'s value being `value(i)`.
    func nextChange(after now: Date, value: (Int) -> JSON?) -> Date? {
        // The rule's answer is the earliest of its relative conditions' (`all` and `any` alike),
        // found here from the list compiled once, with no operator compared a contact.
        var earliest: Date?
        for (field, days) in timed {
            guard let next = SegmentRule.nextChange(of: value(field), days: days, after: now) else { continue }
            if earliest.map({ next < $0 }) ?? true { earliest = next }
        }
        return earliest
    }

    /// A node of the tree: a group or a condition (by its index in ``conditions``), and the index
    /// just past its subtree.
    private struct Node: Sendable {
        enum Kind { case all, any, condition }
        let kind: Kind
        let condition: Int
        var end: Int
    }

    /// One condition: its answer for a contact without the field, and its test of a value.
    private struct Condition: Sendable {
        /// The field it reads, by its index in ``SegmentMatcher/fields``.
        let field: Int
        /// True for `not_exists` and the negative operators (`neq`, `not_in`, `not_contains`,
        /// `excludes`, `not_within_last_days`).
        let whenMissing: Bool
        let test: Test

        private static let negativeOperators: Set = [
            "neq", "not_in", "not_contains", "excludes", "not_within_last_days",
        ]

        init(field: Int, _ op: String, _ expected: JSON?, type: FieldType) {
            self.field = field
            whenMissing = op == "not_exists" || (op != "exists" && Self.negativeOperators.contains(op))
            if op == "exists" || op == "not_exists" {
                test = .always(op == "exists")
            } else if let expected {
                test = Test(op, expected, type: type)
            } else {
                test = .always(false)
            }
        }
    }

    /// A comparison of a present value with the condition's expected one(s), by field type.
    private enum Test: Sendable {
        /// The answer whatever the value (`exists`, `not_exists`, a condition without a value, an
        /// operator the type does not have).
        case always(Bool)
        case text(TextOperator, wanted: String, options: [String])
        case number(NumberOperator, wanted: Double, options: [Double])
        /// `eq` when `equal`, any other operator `neq`; nil `wanted` when the value is no boolean.
        case boolean(equal: Bool, wanted: Bool?)
        case date(DateOperator)
        case list(ListOperator)

        enum TextOperator: String, Sendable {
            case eq, neq, contains
            case notContains = "not_contains"
            case startsWith = "starts_with"
            case endsWith = "ends_with"
            case isIn = "in"
            case notIn = "not_in"
        }

        enum NumberOperator: String, Sendable {
            case eq, neq, gt, gte, lt, lte, between
            case isIn = "in"
            case notIn = "not_in"
        }

        enum DateOperator: Sendable {
            /// The same day (UTC) as the expected date's, by day number since 1970.
            case sameDay(Int)
            case before(Date)
            case after(Date)
            /// Both bounds, when both parse.
            case between(Date, Date)
            case withinLastDays(Double, negated: Bool)
        }

        enum ListOperator: Sendable {
            case includes(String)
            case includesAll([String])
            case excludes(String)
        }

        init(_ op: String, _ expected: JSON, type: FieldType) {
            let strings = (expected.arrayValue ?? []).compactMap { $0.stringValue?.lowercased() }
            switch type {
            case .string, .enumeration:
                guard let textOperator = TextOperator(rawValue: op) else {
                    self = .always(false)
                    return
                }
                self = .text(textOperator, wanted: expected.stringValue?.lowercased() ?? "", options: strings)
            case .number:
                guard let numberOperator = NumberOperator(rawValue: op) else {
                    self = .always(false)
                    return
                }
                self = .number(
                    numberOperator, wanted: expected.numberValue ?? .nan,
                    options: (expected.arrayValue ?? []).compactMap(\.numberValue))
            case .boolean:
                self = .boolean(equal: op == "eq", wanted: expected.boolValue)
            case .date:
                self = Self.date(op, expected).map(Test.date) ?? .always(false)
            case .list:
                switch op {
                case "includes": self = expected.stringValue.map { .list(.includes($0.lowercased())) } ?? .always(false)
                case "includes_all": self = .list(.includesAll(strings))
                case "excludes": self = expected.stringValue.map { .list(.excludes($0.lowercased())) } ?? .always(false)
                default: self = .always(false)
                }
            }
        }

        /// A date condition, or nil when it can match nothing (its value does not parse).
        private static func date(_ op: String, _ expected: JSON) -> DateOperator? {
            func parse(_ json: JSON) -> Date? { json.stringValue.flatMap { Timestamp.parse($0, as: .dateValue) } }
            switch op {
            case "eq": return parse(expected).map { .sameDay(day($0)) }
            case "before": return parse(expected).map(DateOperator.before)
            case "after": return parse(expected).map(DateOperator.after)
            case "between":
                let bounds = (expected.arrayValue ?? []).compactMap(parse)
                return bounds.count == 2 ? .between(bounds[0], bounds[1]) : nil
            case "within_last_days", "not_within_last_days":
                return expected.integerValue.map {
                    .withinLastDays(Double($0) * 86_400, negated: op == "not_within_last_days")
                }
            default: return nil
            }
        }

        private static func day(_ date: Date) -> Int { Int((date.timeIntervalSince1970 / 86_400).rounded(.down)) }

        /// `text` lowercased: itself when it holds no byte `lowercased()` would change, ASCII text
        /// mapped a byte at a time (what `lowercased()` gives it, without its Unicode tables).
        static func lowercased(_ text: String) -> String {
            var ascii = true
            var upper = false
            for byte in text.utf8 {
                if byte >= 0x80 {
                    ascii = false
                    break
                }
                if (65...90).contains(byte) { upper = true }
            }
            guard ascii else { return text.lowercased() }
            guard upper else { return text }
            let count = text.utf8.count
            return String(unsafeUninitializedCapacity: count) { buffer in
                for (index, byte) in text.utf8.enumerated() {
                    buffer[index] = (65...90).contains(byte) ? byte + 32 : byte
                }
                return count
            }
        }

        /// Whether `text` contains `wanted`, as Foundation's `contains` decides it (a search by
        /// composed character, with canonical equivalence, never finding the empty string). When
        /// both are ASCII and `wanted` is not empty, that is a search of their bytes (a carriage
        /// return and a line feed included: Foundation finds either inside the pair), made here
        /// without Foundation's conversion to UTF-16 (14% of a `segments` pass whose rules use
        /// `contains`); text outside ASCII goes to Foundation.
        static func contains(_ text: String, _ wanted: String) -> Bool {
            if !wanted.isEmpty,
                let found = text.utf8.withContiguousStorageIfAvailable({ haystack -> Bool? in
                    wanted.utf8.withContiguousStorageIfAvailable { needle -> Bool? in
                        guard haystack.allSatisfy({ $0 < 0x80 }), needle.allSatisfy({ $0 < 0x80 }) else {
                            return nil
                        }
                        guard needle.count <= haystack.count else { return false }
                        let first = needle[0]
                        for start in 0...(haystack.count - needle.count) where haystack[start] == first {
                            if memcmp(haystack.baseAddress! + start, needle.baseAddress!, needle.count) == 0 {
                                return true
                            }
                        }
                        return false
                    } ?? nil
                }) ?? nil
            {
                return found
            }
            return text.contains(wanted)
        }

        func passes(_ actual: JSON, now: Date) -> Bool {
            switch self {
            case let .always(answer): return answer
            case let .text(op, wanted, options):
                guard let raw = actual.stringValue else { return false }
                let text = Self.lowercased(raw)
                switch op {
                case .eq: return text == wanted
                case .neq: return text != wanted
                case .contains: return Self.contains(text, wanted)
                case .notContains: return !Self.contains(text, wanted)
                case .startsWith: return text.hasPrefix(wanted)
                case .endsWith: return text.hasSuffix(wanted)
                case .isIn: return options.contains(text)
                case .notIn: return !options.contains(text)
                }
            case let .number(op, wanted, options):
                guard let number = actual.numberValue else { return false }
                switch op {
                case .eq: return number == wanted
                case .neq: return number != wanted
                case .gt: return number > wanted
                case .gte: return number >= wanted
                case .lt: return number < wanted
                case .lte: return number <= wanted
                case .between: return options.count == 2 && options[0] <= number && number <= options[1]
                case .isIn: return options.contains(number)
                case .notIn: return !options.contains(number)
                }
            case let .boolean(equal, wanted):
                guard let flag = actual.boolValue, let wanted else { return false }
                return equal ? flag == wanted : flag != wanted
            case let .date(op):
                guard let date = actual.stringValue.flatMap({ Timestamp.parse($0, as: .dateValue) }) else {
                    return false
                }
                switch op {
                case let .sameDay(day): return Self.day(date) == day
                case let .before(bound): return date < bound
                case let .after(bound): return date > bound
                case let .between(low, high): return low <= date && date <= high
                case let .withinLastDays(seconds, negated):
                    let within = date <= now && date >= now.addingTimeInterval(-seconds)
                    return within != negated
                }
            case let .list(op):
                let tags = Set((actual.arrayValue ?? []).compactMap { $0.stringValue?.lowercased() })
                switch op {
                case let .includes(tag): return tags.contains(tag)
                case let .includesAll(wanted): return wanted.allSatisfy(tags.contains)
                case let .excludes(tag): return !tags.contains(tag)
                }
            }
        }
    }
}

/// A ``SegmentMatcher`` that reads a contact's values from the slots ``JSON/members(_:in:into:)``
/// fills for one selection, rather than from an object: a projection that evaluates many contacts
/// against the same rules reads each one's values once into one reused array. A class: the contact
/// loop takes one out of its table for each contact and segment, and a copy of a struct retained
/// and released each of the matcher's arrays.
public final class SelectionMatcher: Sendable {
    /// The matcher it reads for.
    public let matcher: SegmentMatcher
    /// For each field the matcher reads, its slot in the selection; -1 for one the selection
    /// lacks (read as missing).
    private let slots: [Int]

    /// Reads `matcher`'s fields from the slots of `selection`.
    public init(_ matcher: SegmentMatcher, selection: JSONSelection) {
        self.matcher = matcher
        slots = matcher.fields.map { selection.slot(of: $0) ?? -1 }
    }

    /// ``SegmentMatcher/matches(_:now:)`` of the contact whose selected values are `values`.
    public func matches(_ values: [JSON?], now: Date) -> Bool {
        values.withUnsafeBufferPointer { values in
            slots.withUnsafeBufferPointer { matcher.matches(now: now, values: values, slots: $0) }
        }
    }

    /// ``SegmentMatcher/nextChange(_:after:)`` of the contact whose selected values are `values`.
    public func nextChange(_ values: [JSON?], after now: Date) -> Date? {
        matcher.nextChange(after: now) { slots[$0] >= 0 ? values[slots[$0]] : nil }
    }
}
