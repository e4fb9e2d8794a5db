import Foundation
import Hashing

/// One arm of an experiment.
public struct Variant: Sendable, Equatable {
    /// The key, such as `control` or `b`.
    public var key: String
    /// The share of traffic in percent (all weights sum to 100).
    public var weight: Int
    /// The content this variant sends, if it differs.
    public var content: Content?

    /// The weight a decoded variant carries when the request's number is not a whole number
    /// (a fraction, or beyond ±10⁹): out of every valid range, so validation reports it.
    public static let invalidWeight = Int.min

    /// A variant `key` drawing `weight` of every 100 assignments, sending `content` (nil: the campaign's own).
    public init(key: String, weight: Int, content: Content? = nil) {
        self.key = key
        self.weight = weight
        self.content = content
    }

    /// The variant as stored and answered: `{"key", "weight", "content"?}`.
    public var json: JSON {
        var members: JSONObject = ["key": .string(key), "weight": .number(Double(weight))]
        if let content { members["content"] = content.json }
        return .object(members)
    }

    init?(json: JSON) {
        guard let key = json["key"]?.stringValue, let weight = json["weight"]?.integerValue else { return nil }
        self.init(key: key, weight: weight, content: Content(json: json["content"]))
    }
}

/// An experiment's states: draft → running → stopped, and completed once a winner is declared.
public enum ExperimentStatus: String, Sendable, CaseIterable {
    /// Being set up.
    case draft
    /// Assigning and counting.
    case running
    /// Stopped counting; a winner may still be declared.
    case stopped
    /// A winner was declared.
    case completed
}

/// An experiment's state: its definition and its counts (one event per first exposure and per
/// first conversion, so the counts are a fold of the log).
public struct ExperimentState: Sendable, Equatable {
    /// The id (`exp_…`).
    public var id: String
    /// The campaign under test.
    public var campaignId: String
    /// The name, 1–120 characters.
    public var name: String
    /// The variants; the first is the control.
    public var variants: [Variant]
    /// Where it is: only a running experiment counts exposures and conversions.
    public var status: ExperimentStatus
    /// Exposures per variant key.
    public var exposures: [String: Int]
    /// Conversions per variant key.
    public var conversions: [String: Int]
    /// The declared winner's variant key; nil until `experiment.declareWinner`, which sets it once.
    public var winner: String?
    /// Whether the winner was forced past the checks.
    public var forced: Bool
    /// The stream version this state folds to: the number of the experiment's events so far.
    public var version: UInt64

    /// The read model returned by `experiment.get`.
    public var json: JSON {
        var members: JSONObject = [
            "experimentId": .string(id), "campaignId": .string(campaignId), "name": .string(name),
            "variants": .array(variants.map(\.json)), "status": .string(status.rawValue),
            "version": .number(Double(version)),
            "exposures": .object(JSONObject(exposures.mapValues { .number(Double($0)) })),
            "conversions": .object(JSONObject(conversions.mapValues { .number(Double($0)) })),
        ]
        if let winner {
            members["winner"] = .string(winner)
            members["forced"] = .bool(forced)
        }
        return .object(members)
    }
}

extension ExperimentState {
    /// Reads back what ``json`` wrote.
    public init?(json: JSON) {
        guard let id = json["experimentId"]?.stringValue,
            let status = json["status"]?.stringValue.flatMap(ExperimentStatus.init(rawValue:)),
            let version = json["version"]?.integerValue
        else { return nil }
        self.init(
            id: id, campaignId: json["campaignId"]?.stringValue ?? "", name: json["name"]?.stringValue ?? "",
            variants: (json["variants"]?.arrayValue ?? []).compactMap(Variant.init(json:)), status: status,
            exposures: (json["exposures"]?.objectValue ?? [:]).compactMapValues(\.integerValue),
            conversions: (json["conversions"]?.objectValue ?? [:]).compactMapValues(\.integerValue),
            winner: json["winner"]?.stringValue, forced: json["forced"]?.boolValue ?? false, version: UInt64(version))
    }
}

/// The experiment aggregate, sticky assignment, and the winner rules.
public enum Experiment: Aggregate {
    /// An experiment's state, as ``evolve(_:_:)`` folds it from the stream.
    public typealias State = ExperimentState
    /// `experiment.*` commands.
    public typealias Command = ExperimentCommand
    /// `experiment.*` events.
    public typealias Event = ExperimentEvent

    /// Exposures each variant needs before a winner may be declared.
    public static let minimumExposuresPerVariant = 150
    /// Below this SRM p-value the split is broken and no winner may be declared.
    public static let srmThreshold = 0.001
    /// The significance level of the winner's z-test.
    public static let significance = 0.05

    /// The variant a contact gets: SHA-256 of `experimentId:contactId`, its first 8 bytes as a
    /// big-endian integer modulo 10,000, placed on the cumulative weights (×100). The same
    /// contact always gets the same variant, in any process, before and after restarts.
    public static func assign(experimentId: String, contactId: String, variants: [Variant]) -> String {
        let digest = SHA256.hash(Array("\(experimentId):\(contactId)".utf8))
        let bucket = Int(digest.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) } % 10_000)
        var upper = 0
        for variant in variants {
            upper += variant.weight * 100
            if bucket < upper { return variant.key }
        }
        return variants.last?.key ?? ""
    }

    /// What is wrong with `variants`; with a `channel` (the campaign's), each variant's content is
    /// also checked against it (``Channel/problems(with:at:field:)``).
    static func variantProblems(_ variants: [Variant], channel: Channel? = nil) -> [FieldProblem] {
        var problems = [FieldProblem]()
        if variants.count < 2 || variants.count > 10 {
            problems.append(
                FieldProblem(
                    field: "variants", pointer: "/variants", message: "an experiment needs 2–10 variants"))
        }
        var keys = Set<String>()
        for (index, variant) in variants.enumerated() {
            let keyOK =
                (1...32).contains(variant.key.count)
                && variant.key.unicodeScalars.allSatisfy {
                    ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-"
                }
            if !keyOK {
                problems.append(
                    FieldProblem(
                        field: "variants.key", pointer: "/variants/\(index)/key",
                        message: "key must be 1–32 of a-z, 0-9, _ and -"))
            } else if !keys.insert(variant.key).inserted {
                problems.append(
                    FieldProblem(
                        field: "variants.key", pointer: "/variants/\(index)/key",
                        message: "key \(variant.key) is used twice"))
            }
            if !(1...99).contains(variant.weight) {
                problems.append(
                    FieldProblem(
                        field: "variants.weight", pointer: "/variants/\(index)/weight",
                        message: "weight must be a whole number from 1 to 99"))
            }
            if let content = variant.content {
                problems += content.problems(at: "/variants/\(index)/content", field: "variants.content", on: channel)
            }
        }
        // The sum says something only when every weight is in range.
        if variants.allSatisfy({ (1...99).contains($0.weight) }),
            case let total = variants.reduce(0, { $0 + $1.weight }), total != 100
        {
            problems.append(
                FieldProblem(
                    field: "variants", pointer: "/variants", message: "weights must sum to 100, not \(total)"))
        }
        return problems
    }

    static func allowed(_ verb: String) -> [ExperimentStatus] {
        switch verb {
        case "update", "start": return [.draft]
        case "stop", "recordExposure", "recordConversion": return [.running]
        case "declareWinner": return [.running, .stopped]
        default: return []
        }
    }

    /// The states of a campaign that an experiment may be created on and started in: one that
    /// will send nothing more (completed, cancelled, archived, deleted) has nothing to test.
    public static let testableCampaignStates: [CampaignStatus] = [.draft, .scheduled, .active, .paused]

    /// Why an experiment may not `verb` (`create an experiment on`, `start an experiment of`)
    /// `campaign`: `RESOURCE_CONFLICT` with the campaign's state; nil while it is testable.
    static func campaignRefusal(_ verb: String, _ campaign: CampaignState) -> CampaignError? {
        guard !testableCampaignStates.contains(campaign.status) else { return nil }
        return CampaignError.illegalTransition(
            verb, "campaign", from: campaign.status.rawValue, allowed: testableCampaignStates.map(\.rawValue))
    }

    /// Decides every `experiment.*` command. For exposures and conversions, `context.alreadyCounted`
    /// says whether this contact's exposure (or conversion) was recorded before, and
    /// `context.exposedVariant` the variant it was exposed to.
    public static func decide(
        _ command: ExperimentCommand, state: ExperimentState?, context: DecisionContext
    ) throws(CampaignError) -> Decision {
        if case let .create(experimentId, campaignId, name, variants) = command {
            guard state == nil else {
                throw CampaignError(
                    .duplicateResource, "experiment \(experimentId) already exists", param: "experimentId",
                    pointer: "/experimentId")
            }
            guard let campaign = context.campaigns[campaignId], campaign.status != .deleted else {
                throw CampaignError.notFound("campaign", campaignId, pointer: "/campaignId")
            }
            if var refusal = campaignRefusal("create an experiment on", campaign) {
                refusal.pointer = "/campaignId"
                throw refusal
            }
            var problems = variantProblems(variants, channel: Channel(rawValue: campaign.channel))
            if let problem = Names.problem(name, pointer: "/name", length: 1...120) { problems.append(problem) }
            guard problems.isEmpty else { throw .validation(problems) }
            return Decision(events: [
                ExperimentEvent.created(
                    experimentId: experimentId, campaignId: campaign.id, name: name.trimmed, variants: variants
                ).domainEvent
            ])
        }
        guard let state else {
            throw CampaignError.notFound("experiment", command.experimentId, pointer: "/experimentId")
        }
        let verb = command.verb
        guard allowed(verb).contains(state.status) else {
            if verb == "declareWinner" && state.status == .completed {
                throw CampaignError(
                    .resourceConflict, "a winner (\(state.winner ?? "?")) was already declared",
                    currentState: "completed",
                    allowedStates: allowed(verb).map(\.rawValue))
            }
            throw CampaignError.illegalTransition(
                verb, "experiment", from: state.status.rawValue, allowed: allowed(verb).map(\.rawValue))
        }
        let id = state.id
        switch command {
        case let .create(experimentId, _, _, _):
            // Answered above while there was no state; a create on an existing stream is a clash.
            throw CampaignError(
                .duplicateResource, "experiment \(experimentId) already exists", param: "experimentId",
                pointer: "/experimentId")
        case let .update(_, name, variants):
            let channel = context.campaigns[state.campaignId].flatMap { Channel(rawValue: $0.channel) }
            var problems = variants.map { variantProblems($0, channel: channel) } ?? []
            if let name, let problem = Names.problem(name, pointer: "/name", length: 1...120) {
                problems.append(problem)
            }
            if name == nil && variants == nil {
                problems.append(
                    FieldProblem(
                        field: "payload", pointer: "", message: "nothing to update: give name or variants"))
            }
            guard problems.isEmpty else { throw .validation(problems) }
            // The name and variants the experiment has already: nothing changes.
            if (name == nil || name?.trimmed == state.name) && (variants == nil || variants == state.variants) {
                return Decision(events: [])
            }
            return Decision(events: [
                ExperimentEvent.updated(experimentId: id, name: name?.trimmed, variants: variants).domainEvent
            ])
        case .start:
            if let campaign = context.campaigns[state.campaignId],
                var refusal = campaignRefusal("start an experiment of", campaign)
            {
                refusal.pointer = "/experimentId"
                throw refusal
            }
            // One experiment runs on a campaign at a time: a contact exposed to two would be sent
            // which one's variant?
            if let other = context.runningExperiments.filter({ $0 != id }).sorted().first {
                throw CampaignError(
                    .resourceConflict,
                    "experiment \(other) is already running on campaign \(state.campaignId); stop it first",
                    pointer: "/experimentId", currentState: "running")
            }
            // The campaign's channel may have changed since the variants were written.
            if let campaign = context.campaigns[state.campaignId], let channel = Channel(rawValue: campaign.channel) {
                for (index, variant) in state.variants.enumerated() {
                    guard let content = variant.content,
                        let problem = channel.problems(with: content, at: "/variants/\(index)/content").first
                    else { continue }
                    throw CampaignError(
                        .resourceConflict,
                        "variant \(variant.key) cannot be sent on campaign \(campaign.id)'s channel "
                            + "\(channel.rawValue): \(problem.message); update the variants first",
                        pointer: "/experimentId")
                }
            }
            return Decision(events: [ExperimentEvent.started(experimentId: id).domainEvent])
        case .stop:
            return Decision(events: [ExperimentEvent.stopped(experimentId: id).domainEvent])
        case let .recordExposure(_, contactId):
            guard !context.alreadyCounted else { return Decision(events: []) }
            let variant = assign(experimentId: state.id, contactId: contactId, variants: state.variants)
            return Decision(events: [
                ExperimentEvent.exposed(experimentId: id, contactId: contactId, variant: variant).domainEvent
            ])
        case let .recordConversion(_, contactId):
            guard let variant = context.exposedVariant else {
                throw CampaignError(
                    .resourceConflict,
                    "contact \(contactId) was not exposed to experiment \(state.id); record the exposure first",
                    pointer: "/contactId")
            }
            guard !context.alreadyCounted else { return Decision(events: []) }
            return Decision(events: [
                ExperimentEvent.converted(experimentId: id, contactId: contactId, variant: variant).domainEvent
            ])
        case let .declareWinner(_, variant, force):
            guard state.variants.contains(where: { $0.key == variant }) else {
                throw CampaignError.validation([
                    FieldProblem(
                        field: "variant", pointer: "/variant",
                        message: "variant must be one of \(state.variants.map(\.key).joined(separator: ", "))")
                ])
            }
            let results = ExperimentResults(state)
            if !force { try results.checkWinner(variant) }
            let pValue = results.variants.first(where: { $0.key == variant })?.pValue
            return Decision(events: [
                ExperimentEvent.winnerDeclared(
                    experimentId: id, variant: variant, forced: force, pValue: pValue, srmPValue: results.srmPValue
                ).domainEvent
            ])
        }
    }

    /// Folds one stored event into the state (events of other aggregates leave it as it is).
    public static func evolve(_ state: ExperimentState?, _ event: EventRecord) -> ExperimentState? {
        var state = state
        evolve(&state, event)
        return state
    }

    /// ``evolve(_:_:)-(ExperimentState?,EventRecord)`` in place: a fold that keeps many states in a
    /// dictionary counts an exposure into the stored state, where evolving a copy copied its
    /// counts (a copy-on-write of the dictionary a counted exposure).
    public static func evolve(_ state: inout ExperimentState?, _ event: EventRecord) {
        guard let typed = ExperimentEvent(event) else {
            // An experiment type whose payload lacks its variant still advances the version, as before.
            if state != nil, ExperimentEvent.Kind(rawValue: event.type) != nil { state!.version = event.version }
            return
        }
        evolve(&state, typed, version: event.version)
    }

    /// Folds one event; its state keeps no time of its own, so `time` is not used.
    public static func evolve(
        _ state: ExperimentState?, _ event: ExperimentEvent, at _: Date, version: UInt64
    ) -> ExperimentState? {
        evolve(state, event, version: version)
    }

    /// Folds one event, which made the stream's version `version`.
    public static func evolve(_ state: ExperimentState?, _ event: ExperimentEvent, version: UInt64) -> ExperimentState?
    {
        var state = state
        evolve(&state, event, version: version)
        return state
    }

    /// Folds one event in place, which made the stream's version `version`.
    public static func evolve(_ state: inout ExperimentState?, _ event: ExperimentEvent, version: UInt64) {
        if case let .created(id, campaignId, name, variants) = event {
            state = ExperimentState(
                id: id, campaignId: campaignId, name: name, variants: variants, status: .draft, exposures: [:],
                conversions: [:], winner: nil, forced: false, version: version)
            return
        }
        guard state != nil else { return }
        state!.version = version
        switch event {
        case .created: break
        case let .updated(_, name, variants):
            if let name { state!.name = name }
            if let variants { state!.variants = variants }
        case .started: state!.status = .running
        case .stopped: state!.status = .stopped
        case let .exposed(_, _, variant): state!.exposures[variant, default: 0] += 1
        case let .converted(_, _, variant): state!.conversions[variant, default: 0] += 1
        case let .winnerDeclared(_, variant, forced, _, _):
            state!.status = .completed
            state!.winner = variant
            state!.forced = forced
        }
    }
}

/// The results of an experiment: per variant, and the sample-ratio check.
public struct ExperimentResults: Sendable, Equatable {
    /// One variant's numbers; the interval is the Wilson 95% interval of its rate, and the
    /// difference interval the 95% interval of (rate − control rate).
    public struct Row: Sendable, Equatable {
        /// The variant's key, as the experiment defines it.
        public var key: String
        /// Contacts exposed to the variant (each counted once).
        public var exposures: Int
        /// Exposed contacts that converted (each counted once).
        public var conversions: Int
        /// conversions ÷ exposures.
        public var rate: Double
        /// (rate − control) ÷ control; nil for the control or when the control rate is 0.
        public var lift: Double?
        /// Two-sided p-value of the z-test against the control.
        public var pValue: Double?
        /// Wilson 95% interval of the rate.
        public var interval: (low: Double, high: Double)?
        /// 95% interval of the difference with the control.
        public var differenceInterval: (low: Double, high: Double)?

        /// Rows are equal when their numbers are (tuples are not `Equatable`, so this is written out).
        public static func == (a: Row, b: Row) -> Bool {
            a.key == b.key && a.exposures == b.exposures && a.conversions == b.conversions && a.rate == b.rate
                && a.lift == b.lift && a.pValue == b.pValue && a.interval?.low == b.interval?.low
                && a.interval?.high == b.interval?.high
        }
    }

    /// Rows in variant order; the first is the control.
    public var variants: [Row]
    /// The χ² p-value of the observed split against the weights.
    public var srmPValue: Double?

    /// Computes the results of a state.
    public init(_ state: ExperimentState) {
        let control = state.variants.first?.key ?? ""
        let n0 = state.exposures[control] ?? 0
        let c0 = state.conversions[control] ?? 0
        let controlRate = n0 > 0 ? Double(c0) / Double(n0) : 0
        variants = state.variants.map { variant in
            let n = state.exposures[variant.key] ?? 0
            let c = state.conversions[variant.key] ?? 0
            let rate = n > 0 ? Double(c) / Double(n) : 0
            let isControl = variant.key == control
            return Row(
                key: variant.key, exposures: n, conversions: c, rate: rate,
                lift: isControl || controlRate == 0 ? nil : (rate - controlRate) / controlRate,
                pValue: isControl
                    ? nil
                    : Statistics.twoProportionZTest(
                        controlConversions: c0, controlExposures: n0, treatmentConversions: c, treatmentExposures: n)?
                        .pValue,
                interval: Statistics.wilsonInterval(conversions: c, exposures: n),
                differenceInterval: isControl
                    ? nil
                    : Statistics.differenceInterval(
                        controlConversions: c0, controlExposures: n0, treatmentConversions: c, treatmentExposures: n))
        }
        srmPValue =
            Statistics.chiSquareGoodnessOfFit(
                observed: state.variants.map { state.exposures[$0.key] ?? 0 },
                weights: state.variants.map { Double($0.weight) })?.pValue
    }

    /// Throws `EXPERIMENT_INSUFFICIENT_DATA` unless `variant` may be declared the winner: every
    /// variant has the minimum sample, the split matches the weights (SRM p ≥ 0.001), and the
    /// variant beats every other variant, control or not, in a two-proportion z-test with p < 0.05
    /// (SPEC.md's threshold, for each comparison; no correction for their number). A variant that
    /// only beats the control is no winner while another converts as well or better.
    public func checkWinner(_ variant: String) throws(CampaignError) {
        func insufficient(_ message: String) -> CampaignError {
            CampaignError(.experimentInsufficientData, message, param: "variant")
        }
        if let small = variants.first(where: { $0.exposures < Experiment.minimumExposuresPerVariant }) {
            throw insufficient(
                "variant \(small.key) has \(small.exposures) exposures; each needs "
                    + "\(Experiment.minimumExposuresPerVariant)"
            )
        }
        guard let srm = srmPValue, srm >= Experiment.srmThreshold else {
            throw insufficient(
                "sample ratio mismatch: the split does not match the weights (χ² p = \(srmPValue ?? 0))")
        }
        guard let chosen = variants.first(where: { $0.key == variant }) else { return }
        // The closest rival first (the earlier variant of two as good), so a refusal names it.
        let others = variants.enumerated().filter { $0.element.key != variant }
            .sorted { $0.element.rate != $1.element.rate ? $0.element.rate > $1.element.rate : $0.offset < $1.offset }
            .map(\.element)
        for other in others {
            guard
                let test = Statistics.twoProportionZTest(
                    controlConversions: other.conversions, controlExposures: other.exposures,
                    treatmentConversions: chosen.conversions, treatmentExposures: chosen.exposures),
                test.z > 0, test.pValue < Experiment.significance
            else {
                throw insufficient(
                    "variant \(variant) is not significantly better than \(other.key) (p must be < "
                        + "\(Experiment.significance))"
                )
            }
        }
    }

    /// The wire form of the results query.
    public var json: JSON {
        func number(_ value: Double?) -> JSON { value.map { .number($0) } ?? .null }
        func interval(_ value: (low: Double, high: Double)?) -> JSON {
            value.map { .array([.number($0.low), .number($0.high)]) } ?? .null
        }
        return .object([
            "srmPValue": number(srmPValue),
            "variants": .array(
                variants.map { row in
                    .object([
                        "key": .string(row.key), "exposures": .number(Double(row.exposures)),
                        "conversions": .number(Double(row.conversions)),
                        "rate": .number(row.rate), "lift": number(row.lift), "pValue": number(row.pValue),
                        "interval95": interval(row.interval), "differenceInterval95": interval(row.differenceInterval),
                    ])
                }),
        ])
    }
}
