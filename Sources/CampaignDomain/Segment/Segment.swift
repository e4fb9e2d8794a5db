import Foundation
import Hashing

/// A segment's states: active until archived, and archived for good.
public enum SegmentStatus: String, Sendable, CaseIterable {
    /// Usable.
    case active
    /// Put away; its name is free again.
    case archived
}

/// A segment's state, folded from its events.
public struct SegmentState: Sendable, Equatable {
    /// The id (`seg_…`).
    public var id: String
    /// The name, 1–120 characters, unique in the tenant among active segments.
    public var name: String
    /// The rule tree as stored.
    public var rules: JSON
    /// Active or archived; only an active segment has members.
    public var status: SegmentStatus
    /// When it was created.
    public var createdAt: Date
    /// When it last changed.
    public var updatedAt: Date
    /// The stream version this state folds to: the number of the segment's events so far.
    public var version: UInt64

    /// Creates a state (also used by tests and by the engine's lookups).
    public init(
        id: String, name: String, rules: JSON, status: SegmentStatus, createdAt: Date, updatedAt: Date, version: UInt64
    ) {
        self.id = id
        self.name = name
        self.rules = rules
        self.status = status
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.version = version
    }

    /// The read model returned by `segment.get`.
    public var json: JSON {
        .object([
            "segmentId": .string(id), "name": .string(name), "rules": rules, "status": .string(status.rawValue),
            "createdAt": .string(Timestamp.format(createdAt)), "updatedAt": .string(Timestamp.format(updatedAt)),
            "version": .number(Double(version)),
        ])
    }
}

/// The segment aggregate.
public enum Segment: Aggregate {
    /// A segment's state, as ``evolve(_:_:)`` folds it from the stream.
    public typealias State = SegmentState
    /// The `segment.*` commands: create, update and archive.
    public typealias Command = SegmentCommand
    /// The `segment.*` events, one case each; their raw kinds are the stored types.
    public typealias Event = SegmentEvent

    /// The unique key of a segment name in a tenant.
    public static func nameKey(tenant: String, name: String) -> String {
        "segment-name/\(tenant)/\(SHA256.hash(Array(name.normalizedName.utf8)).hexString)"
    }

    /// Decides `segment.create`, `segment.update` and `segment.archive`.
    /// - Throws: rule errors with pointers, `DUPLICATE_RESOURCE` for a taken id, `RESOURCE_CONFLICT`
    ///   while a scheduled or active campaign uses the segment, `RESOURCE_NOT_FOUND`.
    public static func decide(
        _ command: SegmentCommand, state: SegmentState?, context: DecisionContext
    ) throws(CampaignError) -> Decision {
        switch command {
        case let .create(segmentId, name, rules):
            guard state == nil else {
                throw CampaignError(
                    .duplicateResource, "segment \(segmentId) already exists", param: "segmentId",
                    pointer: "/segmentId")
            }
            try validateName(name)
            let parsed = try SegmentRule.parse(rules, schema: context.schema, at: "/rules", new: true)
            return Decision(
                events: [
                    SegmentEvent.created(segmentId: segmentId, name: name.trimmed, rules: parsed.json).domainEvent
                ],
                reservations: [reservation(context.tenant, name, segmentId)])

        case let .update(segmentId, name, rules):
            let state = try existing(state, segmentId)
            guard state.status == .active else {
                throw CampaignError.illegalTransition(
                    "update", "segment", from: state.status.rawValue, allowed: ["active"])
            }
            try ensureUnused(state, context, "update")
            guard name != nil || rules != nil else {
                throw CampaignError.validation([
                    FieldProblem(
                        field: "payload", pointer: "", message: "nothing to update: give name or rules")
                ])
            }
            var decision = Decision(events: [])
            if let name {
                try validateName(name)
                if name.normalizedName != state.name.normalizedName {
                    decision.reservations = [reservation(context.tenant, name, segmentId)]
                    decision.releases = [reservation(context.tenant, state.name, segmentId)]
                }
            }
            let parsed = try rules.map { rules throws(CampaignError) in
                try SegmentRule.parse(rules, schema: context.schema, at: "/rules", new: true).json
            }
            // The name and rules the segment has already: nothing changes.
            if (name == nil || name?.trimmed == state.name) && (parsed == nil || parsed == state.rules) {
                return Decision(events: [])
            }
            decision.events = [
                SegmentEvent.updated(segmentId: segmentId, name: name?.trimmed, rules: parsed).domainEvent
            ]
            return decision

        case let .archive(segmentId):
            let state = try existing(state, segmentId)
            guard state.status == .active else {
                throw CampaignError.illegalTransition(
                    "archive", "segment", from: state.status.rawValue, allowed: ["active"])
            }
            try ensureUnused(state, context, "archive")
            return Decision(
                events: [SegmentEvent.archived(segmentId: segmentId).domainEvent],
                releases: [reservation(context.tenant, state.name, segmentId)])
        }
    }

    /// Folds one stored event into the state (events of other aggregates leave it as it is).
    public static func evolve(_ state: SegmentState?, _ event: EventRecord) -> SegmentState? {
        guard let typed = SegmentEvent(event) else { return state }
        return evolve(state, typed, at: event.occurredAt, version: event.version)
    }

    /// Folds one event, which happened at `time` and made the stream's version `version`.
    public static func evolve(
        _ state: SegmentState?, _ event: SegmentEvent, at time: Date, version: UInt64
    )
        -> SegmentState?
    {
        if case let .created(id, name, rules) = event {
            return SegmentState(
                id: id, name: name, rules: rules, status: .active, createdAt: time, updatedAt: time, version: version)
        }
        guard var state else { return nil }
        state.version = version
        state.updatedAt = time
        switch event {
        case .created: break
        case let .updated(_, name, rules):
            if let name { state.name = name }
            if let rules { state.rules = rules }
        case .archived: state.status = .archived
        }
        return state
    }

    private static func existing(_ state: SegmentState?, _ id: String) throws(CampaignError) -> SegmentState {
        guard let state else { throw CampaignError.notFound("segment", id, pointer: "/segmentId") }
        return state
    }

    private static func ensureUnused(
        _ state: SegmentState, _ context: DecisionContext, _ verb: String
    ) throws(CampaignError) {
        guard context.campaignsUsingSegment.isEmpty else {
            throw CampaignError(
                .resourceConflict,
                "Cannot \(verb) segment \(state.id) while scheduled or active campaigns use it: "
                    + "\(context.campaignsUsingSegment.sorted().joined(separator: ", "))",
                currentState: "in_use")
        }
    }

    private static func validateName(_ name: String) throws(CampaignError) {
        if let problem = Names.problem(name, pointer: "/name", length: 1...120) { throw .validation([problem]) }
    }

    private static func reservation(_ tenant: String, _ name: String, _ owner: String) -> Reservation {
        Reservation(
            key: nameKey(tenant: tenant, name: name), owner: owner, pointer: "/name",
            message: "a segment named \"\(name.trimmed)\" already exists in this tenant")
    }
}
