import CampaignDomain
import Foundation
import Testing

private let schema: ContactSchema = {
    var schema = ContactSchema()
    schema.define("tier", .enumeration(["gold", "silver"]))
    return schema
}()

private let now = Timestamp.parse("2026-11-21T12:00:00Z")!

private func rule(_ field: String, _ op: String, _ value: JSON?) throws -> SegmentRule {
    var condition: JSONObject = ["field": .string(field), "operator": .string(op)]
    if let value { condition["value"] = value }
    return try SegmentRule.parse(.object(["all": .array([.object(condition)])]), schema: schema, at: "/rules")
}

/// One operator case: a contact it must match and one it must not.
struct OperatorCase: CustomTestStringConvertible, Sendable {
    let field: String
    let op: String
    let value: JSON?
    let matching: JSONObject
    let notMatching: JSONObject
    var testDescription: String { "\(field) \(op)" }
}

private let s = JSON.string
private let n = JSON.number

let operatorCases: [OperatorCase] = [
    // string
    .init(
        field: "country", op: "eq", value: s("FR"), matching: ["country": s("fr")], notMatching: ["country": s("DE")]),
    .init(
        field: "country", op: "neq", value: s("FR"), matching: ["country": s("DE")], notMatching: ["country": s("FR")]),
    .init(
        field: "email", op: "contains", value: s("@acme"), matching: ["email": s("a@ACME.com")],
        notMatching: ["email": s("a@b.com")]),
    .init(
        field: "email", op: "not_contains", value: s("@acme"), matching: ["email": s("a@b.com")],
        notMatching: ["email": s("x@acme.io")]),
    .init(
        field: "first_name", op: "starts_with", value: s("an"), matching: ["first_name": s("Anna")],
        notMatching: ["first_name": s("Joan")]),
    .init(
        field: "email", op: "ends_with", value: s(".fr"), matching: ["email": s("a@b.FR")],
        notMatching: ["email": s("a@b.de")]),
    .init(
        field: "city", op: "in", value: .array([s("Paris"), s("Lyon")]), matching: ["city": s("lyon")],
        notMatching: ["city": s("Nice")]),
    .init(
        field: "city", op: "not_in", value: .array([s("Paris")]), matching: ["city": s("Nice")],
        notMatching: ["city": s("Paris")]),
    .init(field: "city", op: "exists", value: nil, matching: ["city": s("Nice")], notMatching: [:]),
    .init(field: "city", op: "not_exists", value: nil, matching: [:], notMatching: ["city": s("Nice")]),
    // number
    .init(field: "age", op: "eq", value: n(30), matching: ["age": n(30)], notMatching: ["age": n(31)]),
    .init(field: "age", op: "neq", value: n(30), matching: ["age": n(31)], notMatching: ["age": n(30)]),
    .init(field: "age", op: "gt", value: n(30), matching: ["age": n(31)], notMatching: ["age": n(30)]),
    .init(field: "age", op: "gte", value: n(30), matching: ["age": n(30)], notMatching: ["age": n(29)]),
    .init(field: "age", op: "lt", value: n(30), matching: ["age": n(29)], notMatching: ["age": n(30)]),
    .init(field: "age", op: "lte", value: n(30), matching: ["age": n(30)], notMatching: ["age": n(31)]),
    .init(
        field: "lifetime_value", op: "between", value: .array([n(10), n(20)]), matching: ["lifetime_value": n(20)],
        notMatching: ["lifetime_value": n(20.5)]),
    .init(
        field: "age", op: "in", value: .array([n(18), n(21)]), matching: ["age": n(21)], notMatching: ["age": n(19)]),
    .init(field: "age", op: "not_in", value: .array([n(18)]), matching: ["age": n(19)], notMatching: ["age": n(18)]),
    .init(field: "age", op: "exists", value: nil, matching: ["age": n(1)], notMatching: ["age": .null]),
    .init(field: "age", op: "not_exists", value: nil, matching: ["email": s("x")], notMatching: ["age": n(1)]),
    // boolean
    .init(
        field: "subscribed", op: "eq", value: .bool(true), matching: ["subscribed": .bool(true)],
        notMatching: ["subscribed": .bool(false)]),
    .init(
        field: "subscribed", op: "neq", value: .bool(true), matching: ["subscribed": .bool(false)],
        notMatching: ["subscribed": .bool(true)]),
    .init(field: "subscribed", op: "exists", value: nil, matching: ["subscribed": .bool(false)], notMatching: [:]),
    .init(field: "subscribed", op: "not_exists", value: nil, matching: [:], notMatching: ["subscribed": .bool(false)]),
    // date
    .init(
        field: "signed_up_at", op: "eq", value: s("2026-03-01"), matching: ["signed_up_at": s("2026-03-01T23:59:00Z")],
        notMatching: ["signed_up_at": s("2026-03-02T00:00:00Z")]),
    .init(
        field: "signed_up_at", op: "before", value: s("2026-03-01"), matching: ["signed_up_at": s("2026-02-28")],
        notMatching: ["signed_up_at": s("2026-03-01")]),
    .init(
        field: "signed_up_at", op: "after", value: s("2026-03-01T00:00:00Z"),
        matching: ["signed_up_at": s("2026-03-01T00:00:01Z")], notMatching: ["signed_up_at": s("2026-03-01")]),
    .init(
        field: "signed_up_at", op: "between", value: .array([s("2026-01-01"), s("2026-01-31")]),
        matching: ["signed_up_at": s("2026-01-31")], notMatching: ["signed_up_at": s("2026-02-01")]),
    .init(
        field: "last_seen_at", op: "within_last_days", value: n(7),
        matching: ["last_seen_at": s("2026-11-15T12:00:00Z")],
        notMatching: ["last_seen_at": s("2026-11-14T11:59:59Z")]),
    .init(
        field: "last_seen_at", op: "not_within_last_days", value: n(7), matching: ["last_seen_at": s("2026-11-01")],
        notMatching: ["last_seen_at": s("2026-11-20")]),
    .init(
        field: "last_seen_at", op: "exists", value: nil, matching: ["last_seen_at": s("2026-11-01")], notMatching: [:]),
    .init(
        field: "last_seen_at", op: "not_exists", value: nil, matching: [:],
        notMatching: ["last_seen_at": s("2026-11-01")]),
    // enum
    .init(field: "plan", op: "eq", value: s("pro"), matching: ["plan": s("pro")], notMatching: ["plan": s("free")]),
    .init(field: "plan", op: "neq", value: s("pro"), matching: ["plan": s("free")], notMatching: ["plan": s("pro")]),
    .init(
        field: "tier", op: "in", value: .array([s("gold")]), matching: ["tier": s("gold")],
        notMatching: ["tier": s("silver")]),
    .init(
        field: "tier", op: "not_in", value: .array([s("gold")]), matching: ["tier": s("silver")],
        notMatching: ["tier": s("gold")]),
    .init(field: "plan", op: "exists", value: nil, matching: ["plan": s("free")], notMatching: [:]),
    .init(field: "plan", op: "not_exists", value: nil, matching: [:], notMatching: ["plan": s("free")]),
    // list
    .init(
        field: "tags", op: "includes", value: s("vip"), matching: ["tags": .array([s("VIP"), s("b")])],
        notMatching: ["tags": .array([s("b")])]),
    .init(
        field: "tags", op: "includes_all", value: .array([s("a"), s("b")]),
        matching: ["tags": .array([s("a"), s("b"), s("c")])], notMatching: ["tags": .array([s("a")])]),
    .init(
        field: "tags", op: "excludes", value: s("vip"), matching: ["tags": .array([s("a")])],
        notMatching: ["tags": .array([s("vip")])]),
    .init(field: "tags", op: "exists", value: nil, matching: ["tags": .array([])], notMatching: [:]),
    .init(field: "tags", op: "not_exists", value: nil, matching: [:], notMatching: ["tags": .array([s("a")])]),
]

@Suite struct SegmentRuleTests {
    @Test func everyOperatorOfEveryTypeIsCovered() {
        var covered = Set<String>()
        for item in operatorCases { covered.insert("\(schema.fields[item.field]!.name).\(item.op)") }
        for type in [FieldType.string, .number, .boolean, .date, .enumeration(["x"]), .list] {
            for op in type.operators {
                #expect(covered.contains("\(type.name).\(op)"), "no case for \(type.name) \(op)")
            }
        }
    }

    @Test(arguments: operatorCases)
    func operatorMatchesAndDoesNotMatch(_ item: OperatorCase) throws {
        let parsed = try rule(item.field, item.op, item.value)
        #expect(parsed.matches(item.matching, schema: schema, now: now), "should match \(item.matching)")
        #expect(!parsed.matches(item.notMatching, schema: schema, now: now), "should not match \(item.notMatching)")
    }

    @Test func negativeOperatorsMatchAContactWithoutTheField() throws {
        #expect(try rule("country", "neq", s("FR")).matches([:], schema: schema, now: now))
        #expect(try rule("tags", "excludes", s("vip")).matches([:], schema: schema, now: now))
        #expect(!(try rule("country", "eq", s("FR")).matches([:], schema: schema, now: now)))
    }

    /// A contact's dates are dates of people and customers, not moments of the engine: a birthday
    /// in 1962 is stored and matched, by the rule and by a compiled matcher alike. Instants the
    /// engine acts at (send times, expiries) still start at 1970.
    @Test func datesBeforeNineteenSeventyAreContactValues() throws {
        var schema = schema
        schema.define("birthday", .date)
        #expect(schema.problem(with: s("1962-03-04"), for: "birthday") == nil)
        #expect(schema.problem(with: s("1962-03-04T09:30:00+01:00"), for: "birthday") == nil)
        #expect(schema.problem(with: s("0001-01-01"), for: "birthday") == nil)
        for bad in ["0000-01-01", "1962-02-30", "62-03-04"] {
            #expect(schema.problem(with: s(bad), for: "birthday")?.contains("year 0001–9999") == true, "\(bad)")
        }
        func rule(_ op: String, _ value: JSON) throws -> SegmentRule {
            let condition: JSONObject = ["field": s("birthday"), "operator": s(op), "value": value]
            return try SegmentRule.parse(.object(["all": .array([.object(condition)])]), schema: schema, at: "/rules")
        }
        let sixties = try rule("between", .array([s("1960-01-01"), s("1969-12-31")]))
        let sameDay = try rule("eq", s("1962-03-04"))
        let before = try rule("before", s("1900-01-01"))
        for (condition, contact, expected) in [
            (sixties, s("1962-03-04"), true), (sixties, s("1970-01-01"), false),
            (sameDay, s("1962-03-04T23:59:59Z"), true), (sameDay, s("1962-03-05"), false),
            (before, s("1899-12-31"), true), (before, s("1900-01-01"), false),
        ] {
            #expect(condition.matches(["birthday": contact], schema: schema, now: now) == expected, "\(contact)")
            #expect(SegmentMatcher(condition, schema: schema).matches(["birthday": contact], now: now) == expected)
        }
        #expect(Timestamp.parse("1962-03-04T09:30:00Z") == nil, "a moment starts at 1970")
        #expect(
            Timestamp.format(Timestamp.parse("1962-03-04T09:30:00.5Z", as: .dateValue)!) == "1962-03-04T09:30:00.500Z")
    }

    /// A matcher compiles a rule once for many contacts: values are compared as the rule's
    /// evaluation always compared them, whatever case, script or type the contact's value has.
    @Test func aCompiledMatcherComparesValuesAsTheRuleDoes() throws {
        let city = SegmentMatcher(try rule("city", "in", .array([s("ÉCOLE"), s("Paris")])), schema: schema)
        #expect(city.matches(["city": s("école")], now: now))
        #expect(city.matches(["city": s("PARIS")], now: now))
        #expect(city.matches(["city": s("paris")], now: now))
        #expect(!city.matches(["city": s("Lyon")], now: now))
        #expect(!city.matches(["city": n(1)], now: now), "a number is no city")
        #expect(!city.matches(["city": .null], now: now), "null is as good as missing")
        let missing = SegmentMatcher(try rule("city", "not_in", .array([s("Paris")])), schema: schema)
        #expect(missing.matches(["city": .null], now: now))
        // Conditions `parse` would refuse, made directly: they match nothing but where the
        // operator is negative and the field is missing.
        let odd: [(SegmentRule, JSONObject, Bool)] = [
            (.condition(field: "city", operator: "resembles", value: s("x")), ["city": s("x")], false),
            (.condition(field: "age", operator: "gt", value: nil), ["age": n(3)], false),
            (.condition(field: "age", operator: "neq", value: nil), [:], true),
            (
                .condition(field: "signed_up_at", operator: "before", value: s("soon")),
                ["signed_up_at": s("2026-01-01")], false
            ),
            (.condition(field: "signed_up_at", operator: "eq", value: n(3)), ["signed_up_at": s("2026-01-01")], false),
            (.condition(field: "subscribed", operator: "gt", value: .bool(true)), ["subscribed": .bool(false)], true),
            (.condition(field: "shoe_size", operator: "eq", value: s("XL")), ["shoe_size": s("xl")], true),
        ]
        for (condition, contact, expected) in odd {
            #expect(SegmentMatcher(condition, schema: schema).matches(contact, now: now) == expected, "\(condition)")
            #expect(condition.matches(contact, schema: schema, now: now) == expected, "\(condition)")
        }
    }

    @Test func groupsCombineWithAllAndAny() throws {
        let tree = try SegmentRule.parse(
            try JSON.parse(
                #"""
                {"all":[{"field":"subscribed","operator":"eq","value":true},
                        {"any":[{"field":"country","operator":"eq","value":"FR"},
                                {"field":"age","operator":"gte","value":65}]}]}
                """#), schema: schema, at: "/rules")
        #expect(tree.matches(["subscribed": .bool(true), "country": s("FR")], schema: schema, now: now))
        #expect(tree.matches(["subscribed": .bool(true), "age": n(70)], schema: schema, now: now))
        #expect(!tree.matches(["subscribed": .bool(true), "age": n(30)], schema: schema, now: now))
        #expect(!tree.matches(["subscribed": .bool(false), "country": s("FR")], schema: schema, now: now))
        #expect(tree.conditionCount == 3)
        #expect(tree.fields == ["subscribed", "country", "age"])
    }

    struct RuleErrorCase: CustomTestStringConvertible, Sendable {
        let name: String
        let rules: String
        let code: ErrorCode
        let pointer: String
        var testDescription: String { name }
    }

    static let deep = #"{"all":[{"any":[{"all":[{"any":[{"field":"age","operator":"exists"}]}]}]}]}"#
    static let tooMany =
        #"{"any":["# + (0...100).map { _ in #"{"field":"age","operator":"exists"}"# }.joined(separator: ",") + "]}"

    static let ruleErrors: [RuleErrorCase] = [
        .init(name: "not an object", rules: "[1]", code: .invalidSegmentRule, pointer: "/rules"),
        .init(name: "two group keys", rules: #"{"all":[],"any":[]}"#, code: .invalidSegmentRule, pointer: "/rules"),
        .init(name: "unknown group key", rules: #"{"none":[]}"#, code: .invalidSegmentRule, pointer: "/rules"),
        .init(name: "group not an array", rules: #"{"all":{}}"#, code: .invalidSegmentRule, pointer: "/rules/all"),
        .init(name: "empty group", rules: #"{"any":[]}"#, code: .invalidSegmentRule, pointer: "/rules/any"),
        .init(name: "depth over 3", rules: deep, code: .invalidSegmentRule, pointer: "/rules/all/0/any/0/all/0"),
        .init(name: "over 100 conditions", rules: tooMany, code: .invalidSegmentRule, pointer: "/rules/any/100"),
        .init(
            name: "condition without operator", rules: #"{"all":[{"field":"age","value":1}]}"#,
            code: .invalidSegmentRule, pointer: "/rules/all/0"),
        .init(
            name: "extra key in condition", rules: #"{"all":[{"field":"age","operator":"eq","value":1,"x":1}]}"#,
            code: .invalidSegmentRule, pointer: "/rules/all/0/x"),
        .init(
            name: "unknown field", rules: #"{"all":[{"field":"shoe_size","operator":"eq","value":1}]}"#,
            code: .unknownField, pointer: "/rules/all/0/field"),
        .init(
            name: "operator for another type", rules: #"{"all":[{"field":"tags","operator":"gt","value":1}]}"#,
            code: .invalidOperator, pointer: "/rules/all/0/operator"),
        .init(
            name: "unknown operator", rules: #"{"all":[{"field":"age","operator":"approx","value":1}]}"#,
            code: .invalidOperator, pointer: "/rules/all/0/operator"),
        .init(
            name: "string for a number", rules: #"{"all":[{"field":"age","operator":"gt","value":"30"}]}"#,
            code: .invalidSegmentRule, pointer: "/rules/all/0/value"),
        .init(
            name: "missing value", rules: #"{"all":[{"field":"age","operator":"gt"}]}"#, code: .invalidSegmentRule,
            pointer: "/rules/all/0"),
        .init(
            name: "value on exists", rules: #"{"all":[{"field":"age","operator":"exists","value":1}]}"#,
            code: .invalidSegmentRule, pointer: "/rules/all/0/value"),
        .init(
            name: "between with one bound", rules: #"{"all":[{"field":"age","operator":"between","value":[1]}]}"#,
            code: .invalidSegmentRule, pointer: "/rules/all/0/value"),
        .init(
            name: "between reversed", rules: #"{"all":[{"field":"age","operator":"between","value":[9,1]}]}"#,
            code: .invalidSegmentRule, pointer: "/rules/all/0/value"),
        .init(
            name: "empty in list", rules: #"{"all":[{"field":"city","operator":"in","value":[]}]}"#,
            code: .invalidSegmentRule, pointer: "/rules/all/0/value"),
        .init(
            name: "bad date", rules: #"{"all":[{"field":"signed_up_at","operator":"before","value":"yesterday"}]}"#,
            code: .invalidSegmentRule, pointer: "/rules/all/0/value"),
        .init(
            name: "fractional days",
            rules: #"{"all":[{"field":"last_seen_at","operator":"within_last_days","value":1.5}]}"#,
            code: .invalidSegmentRule, pointer: "/rules/all/0/value"),
        .init(
            name: "enum value outside the list",
            rules: #"{"all":[{"field":"plan","operator":"eq","value":"platinum"}]}"#, code: .invalidSegmentRule,
            pointer: "/rules/all/0/value"),
    ]

    @Test(arguments: ruleErrors)
    func malformedRulesAreRejectedWithACodeAndPointer(_ item: RuleErrorCase) throws {
        let json = try JSON.parse(item.rules)
        #expect {
            _ = try SegmentRule.parse(json, schema: schema, at: "/rules")
        } throws: { error in
            let error = error as! CampaignError
            return error.code == item.code && error.pointer == item.pointer
        }
    }

    /// A new rule may not look for an empty string (`contains ""` matches no value, as Foundation's
    /// `contains` answers, and `not_contains ""` every one) or hold a control character no contact
    /// value can; a rule stored by an earlier version still parses and matches as it did, so
    /// rebuilt memberships do not change.
    @Test func newRulesRefuseAnEmptyNeedleAndControlCharactersWhileStoredOnesStillMatch() throws {
        let refused: [(String, String)] = [
            (#"{"all":[{"field":"email","operator":"contains","value":""}]}"#, "contains needs a non-empty string"),
            (#"{"all":[{"field":"city","operator":"ends_with","value":""}]}"#, "ends_with needs a non-empty string"),
            (
                #"{"all":[{"field":"country","operator":"in","value":["NO","S\u001bE"]}]}"#,
                "value must not contain control characters (found U+001B)"
            ),
            (
                #"{"any":[{"field":"tags","operator":"includes","value":"vip\n"}]}"#,
                "value must not contain control characters (found U+000A)"
            ),
        ]
        for (text, message) in refused {
            let json = try JSON.parse(text)
            #expect {
                _ = try SegmentRule.parse(json, schema: schema, at: "/rules", new: true)
            } throws: { error in
                let error = error as! CampaignError
                return error.code == .invalidSegmentRule && error.message == message
                    && error.pointer?.hasSuffix("/0/value") == true
            }
            #expect(throws: Never.self, "\(text)") { _ = try SegmentRule.parse(json, schema: schema, at: "/rules") }
        }
        let stored = try rule("email", "not_contains", .string(""))
        #expect(stored.matches(["email": .string("a@b.co")], schema: schema, now: now))
        #expect(SegmentMatcher(stored, schema: schema).matches(["email": .string("a@b.co")], now: now))
        #expect(
            try SegmentRule.parse(
                try JSON.parse(#"{"all":[{"field":"city","operator":"contains","value":"Os"}]}"#), schema: schema,
                at: "/rules", new: true
            ).matches(["city": .string("Oslo")], schema: schema, now: now))
    }

    @Test func threeLevelsAndAHundredConditionsAreAllowed() throws {
        let atDepth = #"{"all":[{"any":[{"all":[{"field":"age","operator":"exists"}]}]}]}"#
        #expect(try SegmentRule.parse(try JSON.parse(atDepth), schema: schema, at: "").conditionCount == 1)
        let hundred =
            #"{"any":["# + (0..<100).map { _ in #"{"field":"age","operator":"exists"}"# }.joined(separator: ",") + "]}"
        #expect(try SegmentRule.parse(try JSON.parse(hundred), schema: schema, at: "").conditionCount == 100)
    }

    @Test func nextChangeIsTheFirstMillisecondARelativeDateConditionFlips() throws {
        let within = try rule("last_seen_at", "within_last_days", .number(7))
        let future: JSONObject = ["last_seen_at": .string("2026-11-29T00:00:00Z")]
        let past: JSONObject = ["last_seen_at": .string("2026-11-20T12:00:00Z")]
        // A date still ahead turns true when it arrives; one in the window turns false 1 ms after it closes.
        #expect(within.nextChange(future, after: now) == Timestamp.parse("2026-11-29T00:00:00Z"))
        #expect(within.nextChange(past, after: now) == Timestamp.parse("2026-11-27T12:00:00.001Z"))
        for (values, at) in [(future, "2026-11-29T00:00:00Z"), (past, "2026-11-27T12:00:00.001Z")] {
            let boundary = Timestamp.parse(at)!
            #expect(
                within.matches(values, schema: schema, now: boundary.addingTimeInterval(-0.001))
                    != within.matches(values, schema: schema, now: boundary))
        }
        // Once the window has closed, and without the field, time changes nothing.
        #expect(within.nextChange(past, after: Timestamp.parse("2026-11-28T00:00:00Z")!) == nil)
        #expect(within.nextChange([:], after: now) == nil)
        #expect(try rule("last_seen_at", "after", .string("2026-11-25")).nextChange(future, after: now) == nil)
        // In a tree, the earliest of its conditions' boundaries.
        let tree = try SegmentRule.parse(
            try JSON.parse(
                #"""
                {"any": [{"field": "last_seen_at", "operator": "not_within_last_days", "value": 7},
                         {"field": "signed_up_at", "operator": "within_last_days", "value": 1}]}
                """#), schema: schema, at: "")
        let both: JSONObject = ["last_seen_at": .string("2026-11-20T12:00:00Z"), "signed_up_at": .string("2026-11-21")]
        #expect(tree.nextChange(both, after: now) == Timestamp.parse("2026-11-22T00:00:00.001Z"))
        // The compiled matcher finds the same instants from its list of relative conditions.
        let after = try rule("last_seen_at", "after", .string("2026-11-25"))
        for candidate in [within, tree, after] {
            let matcher = SegmentMatcher(candidate, schema: schema)
            for values in [future, past, both, [:]] {
                for instant in [
                    now, Timestamp.parse("2026-11-28T00:00:00Z")!, Timestamp.parse("2026-12-30T00:00:00Z")!,
                ] {
                    #expect(matcher.nextChange(values, after: instant) == candidate.nextChange(values, after: instant))
                }
            }
        }
    }

    /// A matcher reading a contact's values from the slots of a selection (as the `segments`
    /// rebuild does) answers as one reading the contact's object: for every operator case, with
    /// names selected beside the rule's, and with the rule's field left out of the selection (read
    /// as missing). One array of slots serves every contact, as in the rebuild.
    @Test(arguments: operatorCases)
    func aMatcherReadingSlotsAnswersAsOneReadingTheObject(_ item: OperatorCase) throws {
        let matcher = SegmentMatcher(try rule(item.field, item.op, item.value), schema: schema)
        let selections = [
            JSONSelection([item.field, "aaa", "zzz", "age"], of: "values"), JSONSelection(["other"], of: "values"),
        ]
        for selection in selections {
            let reading = SelectionMatcher(matcher, selection: selection)
            var slots = [JSON?](repeating: .string("left over"), count: selection.names.count)
            for contact in [item.matching, item.notMatching, [:], ["aaa": .number(1)]] {
                let document = JSON.object(["salt": .string("ab"), "values": .object(contact)]).bytes
                document.withUnsafeBytes { JSON.members(selection, in: $0, into: &slots) }
                let kept = contact.filter { selection.names.contains($0.key) }
                for instant in [now, now.addingTimeInterval(86_400 * 400)] {
                    #expect(reading.matches(slots, now: instant) == matcher.matches(kept, now: instant), "\(contact)")
                    #expect(reading.nextChange(slots, after: instant) == matcher.nextChange(kept, after: instant))
                }
            }
        }
    }

    /// Groups nested three deep answer as their conditions combined with `&&` and `||`, for every
    /// combination of the conditions' answers: the compiled walk skips a decided group's remaining
    /// children and resumes at the right sibling.
    @Test func nestedGroupsAnswerAsTheirConditionsCombined() throws {
        let conditions = [
            #"{"field":"country","operator":"eq","value":"FR"}"#,
            #"{"field":"age","operator":"gte","value":18}"#,
            #"{"field":"subscribed","operator":"eq","value":true}"#,
            #"{"field":"email","operator":"contains","value":"@acme"}"#,
        ]
        let inner = #"{"any":[\#(conditions[1]),\#(conditions[2])]}"#
        let text = #"{"any":[{"all":[\#(conditions[0]),\#(inner)]},\#(conditions[3])]}"#
        let tree = try SegmentRule.parse(try JSON.parse(text), schema: schema, at: "")
        let matcher = SegmentMatcher(tree, schema: schema)
        let yes: [JSONObject] = [
            ["country": s("FR")], ["age": n(30)], ["subscribed": .bool(true)], ["email": s("x@acme.com")],
        ]
        for combination in 0..<16 {
            var contact: JSONObject = [:]
            var truth = [Bool]()
            for (index, values) in yes.enumerated() {
                truth.append(combination & (1 << index) != 0)
                if truth[index] { for (key, value) in values { contact[key] = value } }
            }
            let expected = (truth[0] && (truth[1] || truth[2])) || truth[3]
            #expect(matcher.matches(contact, now: now) == expected, "\(truth)")
            #expect(tree.matches(contact, schema: schema, now: now) == expected, "\(truth)")
        }
    }
}

/// Text conditions evaluated through their byte fast paths (ASCII lowercased a byte at a time,
/// `contains` searched in bytes) answer as Foundation's `lowercased()` and `contains` do, for random
/// text of ASCII letters of both cases, carriage returns and line feeds, and characters outside
/// ASCII (a precomposed and a decomposed `é`, `ß`, `İ`, an emoji), which take the general path.
@Test func textConditionsAnswerAsFoundationsLowercaseAndContainsDo() throws {
    var state: UInt64 = 5
    func next() -> Int {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Int(truncatingIfNeeded: state >> 33)
    }
    let ascii: [String] = ["a", "b", "A", "B", "z", "Z", "@", " ", "\r", "\n", "1"]
    let other: [String] = ["\u{E9}", "e\u{301}", "\u{301}", "\u{DF}", "\u{130}", "\u{1F600}", "\u{C9}"]
    func text(_ length: Int) -> String {
        (0..<length).map { _ in next() % 8 == 0 ? other[next() % other.count] : ascii[next() % ascii.count] }.joined()
    }
    var matched = 0
    for round in 0..<4_000 {
        let value = text(next() % 10)
        let wanted = text(next() % 4)
        let contact: JSONObject = ["email": .string(value)]
        let containsRule = try rule("email", "contains", .string(wanted))
        let expected = value.lowercased().contains(wanted.lowercased())
        #expect(
            containsRule.matches(contact, schema: schema, now: now) == expected, "round \(round): \(value), \(wanted)")
        let notContains = try rule("email", "not_contains", .string(wanted))
        #expect(notContains.matches(contact, schema: schema, now: now) == !expected, "round \(round)")
        let equal = try rule("email", "eq", .string(wanted))
        #expect(equal.matches(contact, schema: schema, now: now) == (value.lowercased() == wanted.lowercased()))
        if expected { matched += 1 }
    }
    #expect(matched > 200, "enough texts contained what was searched for")
}
