import Foundation
import Hashing

/// Campaign states (SPEC.md §6); `deleted` means the stream is closed.
public enum CampaignStatus: String, Sendable, CaseIterable {
    /// Being edited.
    case draft
    /// Waiting for its send time.
    case scheduled
    /// Sending.
    case active
    /// Sending paused.
    case paused
    /// Sent; reported by the host's sender.
    case completed
    /// Stopped for good.
    case cancelled
    /// Put away; its name is free again.
    case archived
    /// Deleted from draft; the stream is closed and the id answers not found.
    case deleted
}

/// A campaign's state, folded from its events.
public struct CampaignState: Sendable, Equatable {
    /// The id (`cmp_…`).
    public var id: String
    /// The name, 3–120 characters, unique in the tenant among campaigns neither archived nor deleted.
    public var name: String
    /// The channel it sends on, a ``Channel`` raw value (`email`, `sms`, `push`, `whatsapp`, `social`).
    public var channel: String
    /// The segment it sends to (`seg_…`); scheduling needs one (`SEGMENT_REQUIRED`).
    public var segmentId: String?
    /// What it sends; nil until a create or an update gives it.
    public var content: Content?
    /// The send time, once scheduled (or as planned at creation).
    public var sendAt: Date?
    /// Where it is in its lifecycle; SPEC.md §6's table says which commands each status allows.
    public var status: CampaignStatus
    /// When it was created.
    public var createdAt: Date
    /// When it last changed.
    public var updatedAt: Date
    /// The stream version this state folds to: the number of the campaign's events so far.
    public var version: UInt64

    /// A state with every field given (read models store and read it back).
    public init(
        id: String, name: String, channel: String, segmentId: String?, content: Content?, sendAt: Date?,
        status: CampaignStatus, createdAt: Date, updatedAt: Date, version: UInt64
    ) {
        self.id = id
        self.name = name
        self.channel = channel
        self.segmentId = segmentId
        self.content = content
        self.sendAt = sendAt
        self.status = status
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.version = version
    }

    /// The read model returned by `campaign.get`.
    public var json: JSON {
        // Written in key order, so the object is made without sorting or moving members.
        var members = [(String, JSON)]()
        members.reserveCapacity(10)
        members.append(("campaignId", .string(id)))
        members.append(("channel", .string(channel)))
        if let content { members.append(("content", content.json)) }
        members.append(("createdAt", .string(Timestamp.format(createdAt))))
        members.append(("name", .string(name)))
        if let segmentId { members.append(("segmentId", .string(segmentId))) }
        if let sendAt { members.append(("sendAt", .string(Timestamp.format(sendAt)))) }
        members.append(("status", .string(status.rawValue)))
        members.append(("updatedAt", .string(Timestamp.format(updatedAt))))
        members.append(("version", .number(Double(version))))
        return .object(JSONObject(uniqueKeysWithValues: members))
    }

    /// Appends the canonical bytes of ``json`` to `out`, written from the fields in key order
    /// without making the value: a command's answer carries them (the value was built, encoded and
    /// released on every command).
    public func writeJSON(into out: inout [UInt8]) {
        func member(_ key: StaticString, first: Bool = false) {
            if !first { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
            out.append(contentsOf: "\":".utf8)
        }
        // A timestamp's text is ASCII with nothing to escape: written between quotes as it is.
        func timestamp(_ date: Date) {
            out.append(UInt8(ascii: "\""))
            Timestamp.append(date, to: &out)
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "{"))
        member("campaignId", first: true)
        JSON.appendString(id, to: &out)
        member("channel")
        JSON.appendString(channel, to: &out)
        if let content {
            member("content")
            content.writeJSON(into: &out)
        }
        member("createdAt")
        timestamp(createdAt)
        member("name")
        JSON.appendString(name, to: &out)
        if let segmentId {
            member("segmentId")
            JSON.appendString(segmentId, to: &out)
        }
        if let sendAt {
            member("sendAt")
            timestamp(sendAt)
        }
        member("status")
        JSON.appendString(status.rawValue, to: &out)
        member("updatedAt")
        timestamp(updatedAt)
        member("version")
        JSON.appendNumber(Double(version), to: &out)
        out.append(UInt8(ascii: "}"))
    }
}

/// The campaign aggregate: `decide` checks a command against the state table; `evolve` folds events.
public enum Campaign: Aggregate {
    /// A campaign's state, as ``evolve(_:_:)`` folds it from the stream.
    public typealias State = CampaignState
    /// `campaign.*` commands.
    public typealias Command = CampaignCommand
    /// The `campaign.*` events, one case each; their raw kinds are the stored types.
    public typealias Event = CampaignEvent

    /// The states each command is allowed from.
    public static func allowedStates(for command: String) -> [CampaignStatus] {
        switch command {
        case "update", "attachSegment", "schedule": return [.draft, .scheduled, .paused]
        case "unschedule", "activate": return [.scheduled]
        case "pause", "complete": return [.active]
        case "resume": return [.paused]
        case "cancel": return [.scheduled, .active, .paused]
        case "archive": return [.draft, .completed, .cancelled]
        case "delete": return [.draft]
        default: return []
        }
    }

    /// Commands that answer `CAMPAIGN_ALREADY_ACTIVE` on an active campaign.
    static let alreadyActiveCommands: Set = [
        "update", "attachSegment", "schedule", "unschedule", "activate", "resume", "archive",
    ]

    /// The unique key of a campaign name in a tenant (hashed, so any name fits LMDB's key size).
    public static func nameKey(tenant: String, name: String) -> String {
        "campaign-name/\(tenant)/\(SHA256.hash(Array(name.normalizedName.utf8)).hexString)"
    }

    /// Decides a campaign command.
    /// - Parameters:
    ///   - command: a `campaign.*` command.
    ///   - state: the current state, nil when the stream does not exist.
    /// - Throws: the catalogue error for an illegal transition or invalid input.
    public static func decide(
        _ command: CampaignCommand, state: CampaignState?, context: DecisionContext
    ) throws(CampaignError) -> Decision {
        switch command {
        case let .create(campaignId, name, channel, segmentId, content, sendAt):
            guard state == nil else {
                throw CampaignError(
                    .duplicateResource, "campaign \(campaignId) already exists", param: "campaignId",
                    pointer: "/campaignId")
            }
            var problems = validateFields(name: name, channel: channel, content: content, sentOn: channel)
            if let segmentId, case let .invalid(problem)? = segmentCheck(segmentId, context: context) {
                problems.append(problem)
            }
            guard problems.isEmpty else { throw .validation(problems) }
            if let segmentId, case .missing? = segmentCheck(segmentId, context: context) {
                throw CampaignError.notFound("segment", segmentId, pointer: "/segmentId")
            }
            if let sendAt, sendAt <= context.now {
                throw CampaignError(
                    .invalidSchedule, "sendAt must be after now (\(Timestamp.format(context.now)))", param: "sendAt",
                    pointer: "/sendAt")
            }
            let created = CampaignEvent.created(
                campaignId: campaignId, name: name.trimmed, channel: channel, segmentId: segmentId, content: content,
                sendAt: sendAt)
            return Decision(
                events: [created.domainEvent], reservations: [nameReservation(context.tenant, name, campaignId)])

        case let .update(_, name, channel, content):
            let state = try current(state, allowing: command)
            let id = state.id
            var problems = validateFields(
                name: name, channel: channel, content: content, sentOn: channel ?? state.channel)
            if content == nil, let channel, channel != state.channel, let kept = state.content,
                let target = Channel(rawValue: channel)
            {
                // The content stays: the new channel must be able to carry it.
                problems += target.problems(with: kept, at: "/content").map {
                    FieldProblem(
                        field: "channel", pointer: "/channel",
                        message: "channel \(channel) cannot carry this campaign's content: \($0.message)")
                }
            }
            if name == nil && channel == nil && content == nil {
                problems.append(
                    FieldProblem(
                        field: "payload", pointer: "",
                        message: "nothing to update: give name, channel or content"))
            }
            guard problems.isEmpty else { throw .validation(problems) }
            if let channel, channel != state.channel, let running = context.runningExperiments.sorted().first {
                throw CampaignError(
                    .resourceConflict,
                    "experiment \(running) is running on campaign \(state.id) with variants for its channel "
                        + "\(state.channel); stop it before moving the campaign to \(channel)",
                    pointer: "/channel", currentState: "running")
            }
            // An update that sets every field to what it is already changes nothing: no event.
            let sameName = name.map { $0.trimmed == state.name } ?? true
            let sameContent = content.map { $0 == state.content } ?? true
            if sameName && sameContent && (channel ?? state.channel) == state.channel { return Decision(events: []) }
            var decision = Decision(events: [
                CampaignEvent.updated(campaignId: id, name: name?.trimmed, channel: channel, content: content)
                    .domainEvent
            ])
            if let name, name.normalizedName != state.name.normalizedName {
                decision.reservations.append(nameReservation(context.tenant, name, id))
                decision.releases.append(nameReservation(context.tenant, state.name, id))
            }
            return decision

        case let .attachSegment(_, segmentId):
            let state = try current(state, allowing: command)
            switch segmentCheck(segmentId, context: context) {
            case .missing?: throw CampaignError.notFound("segment", segmentId, pointer: "/segmentId")
            case let .invalid(problem)?: throw .validation([problem])
            case nil: break
            }
            // Attaching the segment already attached changes nothing.
            if state.segmentId == segmentId { return Decision(events: []) }
            return Decision(events: [
                CampaignEvent.segmentAttached(campaignId: state.id, segmentId: segmentId).domainEvent
            ])

        case let .schedule(_, sendAt):
            let state = try current(state, allowing: command)
            try requireSegment(state, context: context)
            try requireContent(state)
            guard sendAt > context.now else {
                throw CampaignError(
                    .invalidSchedule, "sendAt must be after now (\(Timestamp.format(context.now)))", param: "sendAt",
                    pointer: "/sendAt")
            }
            // Scheduling a scheduled campaign for the time it has changes nothing.
            if state.status == .scheduled && state.sendAt == sendAt { return Decision(events: []) }
            return Decision(events: [CampaignEvent.scheduled(campaignId: state.id, sendAt: sendAt).domainEvent])

        case let .transition(transition, _):
            let state = try current(state, allowing: command)
            // Sending, whether it starts (activate) or restarts (resume), needs an active segment
            // and content that fits the channel: a store may hold a campaign scheduled before
            // schedule checked that.
            if transition == .activate || transition == .resume {
                try requireSegment(state, context: context)
                try requireContent(state)
            }
            var decision = Decision(events: [
                CampaignEvent.transitioned(CampaignEvent.Kind(transition), campaignId: state.id).domainEvent
            ])
            if transition == .archive || transition == .delete {
                decision.releases = [nameReservation(context.tenant, state.name, state.id)]
            }
            return decision
        }
    }

    /// The state a command on an existing campaign starts from: `RESOURCE_NOT_FOUND` when there is
    /// none (or it was deleted), the state table's error when the command is not allowed from it.
    private static func current(
        _ state: CampaignState?, allowing command: CampaignCommand
    ) throws(CampaignError) -> CampaignState {
        guard let state, state.status != .deleted else {
            throw CampaignError.notFound("campaign", command.campaignId, pointer: "/campaignId")
        }
        try checkTransition(command.verb, state)
        return state
    }

    /// Folds one stored event into the state (events of other aggregates leave it as it is).
    public static func evolve(_ state: CampaignState?, _ event: EventRecord) -> CampaignState? {
        guard let typed = CampaignEvent(event) else {
            // A campaign type whose payload lacks its fields still advances the version, as before.
            guard var state, CampaignEvent.Kind(rawValue: event.type) != nil else { return state }
            state.version = event.version
            state.updatedAt = event.occurredAt
            return state
        }
        return evolve(state, typed, at: event.occurredAt, version: event.version)
    }

    /// Folds one event, which happened at `time` and made the stream's version `version`.
    public static func evolve(
        _ state: CampaignState?, _ event: CampaignEvent, at time: Date, version: UInt64
    )
        -> CampaignState?
    {
        if case let .created(id, name, channel, segmentId, content, sendAt) = event {
            return CampaignState(
                id: id, name: name, channel: channel, segmentId: segmentId, content: content, sendAt: sendAt,
                status: .draft, createdAt: time, updatedAt: time, version: version)
        }
        guard var state else { return nil }
        state.version = version
        state.updatedAt = time
        switch event {
        case .created: break
        case let .updated(_, name, channel, content):
            if let name { state.name = name }
            if let channel { state.channel = channel }
            if let content { state.content = content }
        case let .segmentAttached(_, segmentId): state.segmentId = segmentId
        case let .scheduled(_, sendAt):
            state.status = .scheduled
            state.sendAt = sendAt
        case let .transitioned(kind, _):
            if let status = kind.status { state.status = status }
        }
        return state
    }

    // MARK: Rules

    private static func checkTransition(_ verb: String, _ state: CampaignState) throws(CampaignError) {
        let allowed = allowedStates(for: verb)
        guard !allowed.contains(state.status) else { return }
        let current = state.status.rawValue
        let allowedNames = allowed.map(\.rawValue)
        if state.status == .active && alreadyActiveCommands.contains(verb) {
            throw CampaignError(
                .campaignAlreadyActive, "campaign \(state.id) is active; cannot \(CampaignError.phrase(verb)) it",
                currentState: current, allowedStates: allowedNames)
        }
        if (verb == "activate" || verb == "unschedule") && (state.status == .draft || state.status == .paused) {
            throw CampaignError(
                .campaignNotScheduled, "campaign \(state.id) is not scheduled (it is \(current))",
                currentState: current, allowedStates: allowedNames)
        }
        if verb == "delete" {
            throw CampaignError(
                .resourceConflict, "Cannot delete \(current) campaign; only a draft can be deleted",
                currentState: current, allowedStates: allowedNames)
        }
        throw CampaignError(
            .resourceConflict,
            "Cannot \(CampaignError.phrase(verb)) \(current.withArticle) campaign; allowed from: "
                + allowedNames.joined(separator: ", "),
            currentState: current, allowedStates: allowedNames)
    }

    private static func requireSegment(_ state: CampaignState, context: DecisionContext) throws(CampaignError) {
        guard let segmentId = state.segmentId else {
            throw CampaignError(.segmentRequired, "campaign \(state.id) has no segment; attach one first")
        }
        guard let segment = context.segments[segmentId], segment.status == .active else {
            throw CampaignError(
                .segmentRequired,
                "campaign \(state.id)'s segment \(segmentId) is archived or gone; attach an active segment")
        }
    }

    /// What would it send? `VALIDATION_ERROR` at the campaign's id for a campaign without content
    /// (an experiment's variants without content send the campaign's, so they do not stand in), or
    /// with content its channel cannot carry: content written before the channel rules (an email
    /// without a subject, say) is kept as it was, but it is not sent so.
    private static func requireContent(_ state: CampaignState) throws(CampaignError) {
        guard let content = state.content else {
            throw CampaignError.validation([
                FieldProblem(
                    field: "content", pointer: "/campaignId",
                    message: "campaign \(state.id) has no content: give it content (campaign.update) first")
            ])
        }
        guard let channel = Channel(rawValue: state.channel) else { return }
        let problems = channel.problems(with: content, at: "/campaignId")
        guard !problems.isEmpty else { return }
        throw CampaignError.validation(
            problems.map {
                FieldProblem(
                    field: $0.field, pointer: "/campaignId",
                    message: "campaign \(state.id)'s content cannot be sent on \(channel.rawValue): \($0.message); "
                        + "give it content that fits (campaign.update) first")
            })
    }

    private enum SegmentCheck {
        /// Not in this tenant: `RESOURCE_NOT_FOUND`.
        case missing
        /// There but unusable: one `VALIDATION_ERROR` detail.
        case invalid(FieldProblem)
    }

    private static func segmentCheck(_ segmentId: String, context: DecisionContext) -> SegmentCheck? {
        guard let segment = context.segments[segmentId] else { return .missing }
        guard segment.status == .active else {
            return .invalid(
                FieldProblem(
                    field: "segmentId", pointer: "/segmentId", message: "segment \(segmentId) is archived"))
        }
        return nil
    }

    /// What is wrong with a create's or an update's fields; `content` is also checked against the
    /// channel it will be sent on (``Content/problems(at:field:on:)``).
    static func validateFields(name: String?, channel: String?, content: Content?, sentOn: String) -> [FieldProblem] {
        var problems = [FieldProblem]()
        if let name, let problem = Names.problem(name, pointer: "/name") { problems.append(problem) }
        if let channel, Channel(rawValue: channel) == nil {
            problems.append(
                FieldProblem(
                    field: "channel", pointer: "/channel",
                    message: "channel must be one of \(Channel.allCases.map(\.rawValue).joined(separator: ", "))"))
        }
        if let content { problems += content.problems(at: "/content", on: Channel(rawValue: sentOn)) }
        return problems
    }

    private static func nameReservation(_ tenant: String, _ name: String, _ owner: String) -> Reservation {
        Reservation(
            key: nameKey(tenant: tenant, name: name), owner: owner, pointer: "/name",
            message: "a campaign named \"\(name.trimmed)\" already exists in this tenant")
    }
}

extension String {
    /// The string without leading and trailing white space (Unicode `White_Space`, which covers
    /// Foundation's `whitespacesAndNewlines`), without a round trip through `NSString`.
    var trimmed: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        if first == scalars.startIndex && last == scalars.index(before: scalars.endIndex) { return self }
        return String(scalars[first...last])
    }
}
