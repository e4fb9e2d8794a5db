import CampaignDomain
import CampaignProjections
import CampaignSnapshots
import EventStore
import Foundation

extension CampaignEngine {
    /// Streams are per tenant, so another tenant's id is simply absent: `RESOURCE_NOT_FOUND`,
    /// without revealing that it exists elsewhere.
    static func streamId(_ tenant: String, _ id: String) -> String { tenant + ":" + id }

    /// Whether `id` can name one of a tenant's streams (the part of a stream id after `tenant:`): a
    /// resource id (`cmp_…`, `seg_…`, `ctc_…`, `con_…`, `pst_…`, `exp_…`) or one of the engine's own
    /// streams, `schema` (field definitions) and `segment-memberships` (the scheduler's refreshes).
    public static func isStreamName(_ id: String) -> Bool {
        id == "schema" || id == SegmentMembership.refreshStream
            || ["cmp", "seg", "ctc", "con", "pst", "exp"].contains { Identifier.isValid(id, prefix: $0) }
    }

    /// Why `text` names no stream a log can hold, or nil: it is a stream name (``isStreamName(_:)``),
    /// alone or after a valid tenant and a colon (`acme:cmp_1`).
    public static func streamProblem(_ text: String) -> String? {
        var name = Substring(text)
        if let colon = text.firstIndex(of: ":") {
            let tenant = String(text[..<colon])
            guard Principal.isValidTenant(tenant) else { return "\"\(tenant)\" is no tenant: \(Principal.tenantRule)" }
            name = text[text.index(after: colon)...]
        }
        guard isStreamName(String(name)) else {
            return "\"\(name)\" names no stream: a resource id (cmp_, seg_, ctc_, con_, pst_ or exp_ followed by "
                + "1–64 letters, digits, _ or -), schema or segment-memberships"
        }
        return nil
    }

    // MARK: Loading

    /// Folds a stream into a state from its latest snapshot; returns the state and the version.
    /// When the tail read is longer than the snapshot policy's interval, a fresh snapshot is
    /// stored, so the next load reads a short tail again. `alongside`, when given, reads what else
    /// the caller needs in the transaction that reads the snapshot and the first page of events.
    func fold<State: Sendable>(
        _ streamId: String, _ codec: SnapshotCodec<State>, _ evolve: (State?, EventRecord) -> State?,
        alongside: (ReadTransaction) throws -> Void = { _ in }
    ) throws -> (State?, UInt64) {
        var state: State?
        var version: UInt64 = 0
        var cached = false
        if let (hit, hitVersion) = cache.get(streamId, as: State.self) {
            (state, version, cached) = (hit, hitVersion, true)
        }
        // The snapshot, the first page of events after it and the caller's own read share one read
        // transaction (three, one after another, were a tenth of a contact import's loads).
        let pageSize = 1_024
        var page = try store.read { txn -> [RecordedEvent] in
            if !cached, let snapshot = try snapshots.load(streamId, codec: codec, in: txn) {
                (state, version) = (snapshot.state, snapshot.version)
            }
            try alongside(txn)
            return try txn.streamEvents(streamId, from: version + 1, limit: pageSize, hashes: false)
        }
        var read: UInt64 = 0
        while true {
            for event in page {
                state = evolve(state, ProjectedEvent(event).record)
                version = event.streamVersion
            }
            read += UInt64(page.count)
            guard page.count == pageSize else { break }
            page = try store.readStream(streamId, from: version + 1, limit: pageSize, hashes: false)
        }
        counters.add(read)
        if let state {
            // A hit with nothing after it is already cached as it stands: no second copy is boxed.
            if !cached || read > 0 { cache.put(streamId, state, version: version) }
            if read >= UInt64(snapshots.policy.interval(for: codec.kind)) {
                snapshots.saveLater(streamId, codec: codec, state: state, version: version)
            }
        }
        return (state, version)
    }

    /// Folds a stream without snapshots, stopping after `asOf` (a position or a time).
    static func fold<State>(
        _ streamId: String, in store: EventStore, asOf: PointInTime, _ evolve: (State?, EventRecord) -> State?
    ) throws -> State? {
        var state: State?
        try store.forEachEvent(inStream: streamId) { event in
            guard asOf.includes(event) else { return false }
            state = evolve(state, ProjectedEvent(event).record)
            return true
        }
        return state
    }

    func loadCampaign(_ tenant: String, _ id: String) throws -> (CampaignState?, UInt64) {
        try fold(CampaignEngine.streamId(tenant, id), SnapshotCodecs.campaign, Campaign.evolve)
    }

    func loadSegment(_ tenant: String, _ id: String) throws -> (SegmentState?, UInt64) {
        try fold(CampaignEngine.streamId(tenant, id), SnapshotCodecs.segment, Segment.evolve)
    }

    /// The tenant's contact schema and its stream's version, cached and snapshotted as any
    /// aggregate is: every contact command reads it, and a tenant's fields and their updates may
    /// run to thousands of events.
    func loadSchema(_ tenant: String) throws -> (ContactSchema, UInt64) {
        let (schema, version) = try fold(CampaignEngine.streamId(tenant, "schema"), SnapshotCodecs.schema) {
            TenantSchema.evolve($0 ?? ContactSchema(), $1)
        }
        return (schema ?? ContactSchema(), version)
    }

    func loadContact(_ tenant: String, _ id: String) throws -> (ContactState?, UInt64, JSONObject) {
        var values = JSONObject()
        let (state, version) = try fold(CampaignEngine.streamId(tenant, id), SnapshotCodecs.contact, Contact.evolve) {
            values = try tables.personalValues(tenant: tenant, contactId: id, in: $0)
        }
        return (state, version, values)
    }

    /// A precondition: the stream is still at the version read while deciding.
    static func unchanged(_ streamId: String, at version: UInt64) -> @Sendable (ReadTransaction) throws -> Void {
        { txn in
            let current = try txn.streamVersion(streamId)
            guard current == version else {
                throw EventStoreError.wrongExpectedVersion(
                    streamId: streamId, expected: expectation(version), current: current)
            }
        }
    }

    /// `{streamId, version, events: [{type, position}]}` plus `extra`.
    static func receiptData(_ receipt: AppendReceipt, streamId: String, _ extra: JSONObject) -> JSON {
        var members = extra
        members["streamId"] = .string(streamId)
        members["version"] = .number(Double(receipt.streamVersions[streamId] ?? 0))
        members["events"] = eventList(receipt)
        return .object(members)
    }

    /// `[{type, position, streamId}]`: every event an append wrote, as answers list them.
    static func eventList(_ receipt: AppendReceipt) -> JSON {
        .array(
            receipt.events.map {
                .object([
                    "position": .number(Double($0.position)), "streamId": .string($0.streamId),
                    "type": .string($0.type),
                ])
            })
    }

    /// Applies a decision's events to a state, as the store will number them.
    static func project<State>(
        _ state: State?, _ events: [DomainEvent], from version: UInt64, at now: Date,
        _ evolve: (State?, EventRecord) -> State?
    ) -> State? {
        var state = state
        for (offset, event) in events.enumerated() {
            state = evolve(
                state,
                EventRecord(
                    type: event.type, payload: event.payload, occurredAt: now, version: version + UInt64(offset) + 1))
        }
        return state
    }

    // MARK: Planning

    /// What a command will write; a plan that writes nothing is answered as a command that changed
    /// nothing (``Plan/unchangedData``). Each command goes to the handler of its aggregate with its
    /// own typed command; the route says which stream.
    func plan(_ command: Command, principal: Principal, request: EngineRequest, now: Date) throws -> Plan {
        let tenant = principal.tenant
        guard let route = command.route else {
            switch command {
            case let .contact(.import(inputs)):
                return try planImport(
                    inputs[...], tenant: tenant, now: now, requestId: request.requestId, earlier: ImportTally())
            default:
                throw CampaignError(.internalError, "\(command.name) is handled by its own entry point")
            }
        }
        switch command {
        case let .campaign(command): return try planCampaign(command, route, tenant: tenant, now: now)
        case let .segment(command): return try planSegment(command, route, tenant: tenant, now: now)
        case let .schema(command):
            let streamId = route.streamId(tenant: tenant)
            let (schema, version) = try loadSchema(tenant)
            let decision = try CampaignEngine.onWire {
                try TenantSchema.decide(command, state: schema, context: DecisionContext(now: now, tenant: tenant))
            }
            // The field as it is after the command (a definition, or an enum with its new values);
            // an update to the values it has writes nothing and answers it as it stands.
            let after =
                CampaignEngine.project(schema, decision.events, from: version, at: now) {
                    TenantSchema.evolve($0 ?? ContactSchema(), $1)
                } ?? schema
            let field = JSON.object(after.definition(of: command.name) ?? [:])
            let answer = ReceiptAnswer(streamId: streamId, encoded: [("field", field, field.bytes)])
            var plan = Plan(streams: [(streamId, version, decision.events)], decision: decision) { answer.data($0) }
            plan.receiptAnswer = answer
            plan.snapshot = SnapshotPlan(streamId, SnapshotCodecs.schema, after)
            return plan
        case let .contact(command): return try planContact(command, route, tenant: tenant, now: now)
        case let .social(command): return try planConnection(command, route, tenant: tenant, now: now)
        case let .post(command): return try planPost(command, route, tenant: tenant, now: now)
        case let .experiment(command): return try planExperiment(command, route, tenant: tenant, now: now)
        case .tick: throw CampaignError(.internalError, "system.tick is handled by tick(now:)")
        }
    }

    /// A plan for a command one aggregate decided on its own stream. The state after the command,
    /// folded once here, answers the request (`{<aggregate>Id, <aggregate>}`), goes to the inline
    /// projections that keep aggregate state, and to the snapshot when one is due.
    func decided<State: Sendable>(
        _ route: Route, tenant: String, state: State?, version: UInt64, decision: Decision, now: Date,
        codec: SnapshotCodec<State>, evolve: (State?, EventRecord) -> State?,
        answer: @escaping @Sendable (State) -> JSON,
        answerBytes: ((State, inout [UInt8]) -> Void)? = nil,
        preconditions: [@Sendable (ReadTransaction) throws -> Void] = []
    ) -> Plan {
        let streamId = route.streamId(tenant: tenant)
        let after = CampaignEngine.project(state, decision.events, from: version, at: now, evolve)
        let (id, idField, stateField) = (route.id, route.aggregate.idField, route.aggregate.rawValue)
        // The id and the state are answered as planned: built and encoded here, on the caller's
        // thread, never inside the writer's transaction.
        // The state's key is a prefix of the id's ("campaign", "campaignId"): in key order, it goes first.
        var members: [(key: String, value: JSON?, bytes: [UInt8])] = []
        if let after {
            if let answerBytes {
                // Written straight from the state, its value never made (debug builds check them).
                var bytes = [UInt8]()
                bytes.reserveCapacity(512)
                answerBytes(after, &bytes)
                assert(bytes == answer(after).bytes, "a state's bytes must be its answer's")
                members.append((stateField, nil, bytes))
            } else {
                let value = answer(after)
                members.append((stateField, value, value.bytes))
            }
        }
        members.append((idField, .string(id), JSON.string(id).bytes))
        let receiptAnswer = ReceiptAnswer(streamId: streamId, encoded: members)
        var plan = Plan(
            streams: [(streamId, version, decision.events)], decision: decision, preconditions: preconditions
        ) { receipt in receiptAnswer.data(receipt) }
        plan.receiptAnswer = receiptAnswer
        plan.snapshot = SnapshotPlan(streamId, codec, after)
        plan.stateAfter = after
        plan.conflictIsDuplicate = route.expects == .new
        return plan
    }

    /// `{streamId, version, events: [], changed: false}` plus `extra`: the answer of a command
    /// that wrote nothing, with the stream as it stands.
    static func unchangedData(streamId: String, version: UInt64, _ extra: JSONObject) -> JSON {
        var members = extra
        members["streamId"] = .string(streamId)
        members["version"] = .number(Double(version))
        members["events"] = .array([])
        members["changed"] = .bool(false)
        return .object(members)
    }

    private func planCampaign(_ command: CampaignCommand, _ route: Route, tenant: String, now: Date) throws -> Plan {
        let (state, version) = try loadCampaign(tenant, route.id)
        var segmentIds = Set<String>()
        switch command {
        case let .create(_, _, _, segmentId?, _, _), let .attachSegment(_, segmentId):
            segmentIds.insert(segmentId)
        case .schedule, .transition(.activate, _), .transition(.resume, _):
            if let segmentId = state?.segmentId { segmentIds.insert(segmentId) }
        default: break
        }
        var segments = [String: SegmentState]()
        var preconditions = [@Sendable (ReadTransaction) throws -> Void]()
        for segmentId in segmentIds {
            let (segment, segmentVersion) = try loadSegment(tenant, segmentId)
            segments[segmentId] = segment
            // Deciding read the segment: it must not change (be archived) before this commits.
            preconditions.append(
                CampaignEngine.unchanged(CampaignEngine.streamId(tenant, segmentId), at: segmentVersion))
        }
        var context = DecisionContext(now: now, tenant: tenant, segments: segments)
        if case .update(_, _, let channel?, _) = command, let state, channel != state.channel {
            // A running experiment's variants were written for the channel the campaign has.
            preconditions.append(
                try readRunningExperiments(into: &context, tenant: tenant, campaignId: state.id) { again in
                    _ = try CampaignEngine.onWire { try Campaign.decide(command, state: state, context: again) }
                })
        }
        let decision = try CampaignEngine.onWire { try Campaign.decide(command, state: state, context: context) }
        return decided(
            route, tenant: tenant, state: state, version: version, decision: decision, now: now,
            codec: SnapshotCodecs.campaign, evolve: Campaign.evolve, answer: \.json,
            answerBytes: { $0.writeJSON(into: &$1) }, preconditions: preconditions)
    }

    /// Reads the experiments running on a campaign into `context` and returns the precondition that
    /// reads them again inside the write transaction and hands `decideAgain` the context with them:
    /// an experiment started by a command decided beside this one must still count.
    func readRunningExperiments(
        into context: inout DecisionContext, tenant: String, campaignId: String,
        decideAgain: @escaping @Sendable (DecisionContext) throws -> Void
    ) throws -> @Sendable (ReadTransaction) throws -> Void {
        let projections = self.projections
        context.runningExperiments = try projections.read("experiment-results") {
            try ExperimentResultsProjection.running($0, tenant: tenant, campaignId: campaignId)
        }
        let decided = context
        return { txn in
            var again = decided
            again.runningExperiments = try projections.read("experiment-results", in: txn) {
                try ExperimentResultsProjection.running($0, tenant: tenant, campaignId: campaignId)
            }
            try decideAgain(again)
        }
    }

    private func planSegment(_ command: SegmentCommand, _ route: Route, tenant: String, now: Date) throws -> Plan {
        let segmentId = route.id
        let (state, version) = try loadSegment(tenant, segmentId)
        var context = DecisionContext(now: now, tenant: tenant, schema: try loadSchema(tenant).0)
        var preconditions = [@Sendable (ReadTransaction) throws -> Void]()
        if route.expects != .new {
            let projections = self.projections
            context.campaignsUsingSegment = try projections.read("schedule-index") {
                try ScheduleIndex.campaignsUsing($0, tenant: tenant, segmentId: segmentId)
            }
            // A campaign scheduled between this read and the commit must still block the change.
            preconditions.append { txn in
                let users = try projections.read("schedule-index", in: txn) {
                    try ScheduleIndex.campaignsUsing($0, tenant: tenant, segmentId: segmentId)
                }
                guard users.isEmpty else {
                    throw CampaignError(
                        .resourceConflict,
                        "segment \(segmentId) is used by scheduled or active campaigns: "
                            + "\(users.joined(separator: ", "))",
                        currentState: "in_use")
                }
            }
        }
        let decision = try CampaignEngine.onWire { try Segment.decide(command, state: state, context: context) }
        return decided(
            route, tenant: tenant, state: state, version: version, decision: decision, now: now,
            codec: SnapshotCodecs.segment, evolve: Segment.evolve, answer: \.json, preconditions: preconditions)
    }

    private func planContact(_ command: ContactCommand, _ route: Route, tenant: String, now: Date) throws -> Plan {
        let streamId = route.streamId(tenant: tenant)
        let (state, version, values) = try loadContact(tenant, route.id)
        let decision: Decision
        var extra: JSONObject = ["contactId": .string(route.id)]
        switch command {
        case let .upsert(input):
            let context = DecisionContext(
                now: now, tenant: tenant, schema: try loadSchema(tenant).0, salt: CampaignEngine.salt())
            decision = try CampaignEngine.onWire {
                try Contact.decideUpsert(input, state: state, currentValues: values, context: context)
            }
            if let event = decision.events.first { extra["fields"] = event.payload["fields"] ?? .array([]) }
        case let .erase(contactId):
            decision = try CampaignEngine.onWire { try Contact.decideErase(contactId: contactId, state: state) }
            extra["erased"] = .bool(true)
        case .import:
            throw CampaignError(.internalError, "contact.import spans many streams; it has its own handler")
        }
        guard !decision.events.isEmpty else {
            // Values as they are, or a contact erased already: answered 200 with `changed: false`
            // (``Plan/unchangedData``), once the request's expected version has been checked.
            var plan = Plan(streams: [(streamId, version, [])], decision: decision) { _ in .null }
            plan.receiptAnswer = ReceiptAnswer(
                streamId: streamId, encoded: extra.map { ($0.key, $0.value, $0.value.bytes) })
            return plan
        }
        let (tables, members) = (self.tables, extra)
        return Plan(
            streams: [(streamId, version, decision.events)], decision: decision,
            afterAppend: { txn, _ in
                for change in decision.personalData { try tables.write(change, tenant: tenant, in: txn) }
            },
            respond: { receipt in CampaignEngine.receiptData(receipt, streamId: streamId, members) })
    }

    /// What the slices of an import committed before the one being planned answered
    /// (``planImport(_:tenant:now:requestId:earlier:)``): the answer of the last slice is the whole
    /// import's.
    struct ImportTally: Sendable {
        /// Each earlier item's result, in input order.
        var results: [JSON] = []
        /// How many of them failed.
        var failed = 0
        /// The events the earlier slices wrote, as the answer lists them.
        var events: [JSON] = []

        /// Adds a slice's answer (`results`, `failed` and `events` of its data).
        mutating func add(_ data: JSON?) {
            results += data?["results"]?.arrayValue ?? []
            failed += data?["failed"]?.integerValue ?? 0
            events += data?["events"]?.arrayValue ?? []
        }
    }

    /// Plans one slice of an import (`inputs`, indexed as in the whole request): each contact is
    /// validated on its own; the valid ones are written together (one transaction), invalid ones
    /// (an item the wire could not read, an id that is none, values the checks refuse) are reported
    /// with their index and pointer. The answer holds `earlier`'s results and events before the
    /// slice's own, and is 207 when any item failed. A contact listed twice is merged in order.
    func planImport(
        _ inputs: ArraySlice<ContactInput>, tenant: String, now: Date, requestId: String, earlier: ImportTally
    ) throws -> Plan {
        guard !inputs.isEmpty else {
            throw CampaignError.validation([
                FieldProblem(
                    field: "contacts", pointer: "/payload/contacts", message: "an import needs at least one contact")
            ])
        }
        let schema = try loadSchema(tenant).0
        struct Pending {
            var state: ContactState?
            var version: UInt64
            var values: JSONObject
            var events: [DomainEvent] = []
            var changes: [PersonalDataChange] = []
        }
        var pending = [String: Pending]()
        var order = [String]()
        var results = earlier.results
        var failed = earlier.failed
        let salts = CampaignEngine.salts(inputs.count)
        for (index, input) in zip(inputs.indices, inputs) {
            let pointer = "/payload/contacts/\(index)"
            // An item the wire could not read, or one built in Swift whose id is none.
            if let refusal = input.refusal
                ?? FieldReader.idError(input.contactId, key: "contactId", prefix: "ctc", at: pointer + "/contactId")
            {
                failed += 1
                var result: JSONObject = [
                    "index": .number(Double(index)), "status": .number(Double(refusal.httpStatus)),
                    "error": refusal.body(requestId: requestId),
                ]
                if !input.contactId.isEmpty { result["contactId"] = .string(input.contactId) }
                results.append(.object(result))
                continue
            }
            var entry: Pending
            if let existing = pending[input.contactId] {
                entry = existing
            } else {
                let (state, version, values) = try loadContact(tenant, input.contactId)
                entry = Pending(state: state, version: version, values: values)
                order.append(input.contactId)
            }
            do {
                let context = DecisionContext(
                    now: now, tenant: tenant, schema: schema, salt: salts[index - inputs.startIndex])
                let decision = try CampaignEngine.onWire(under: pointer) {
                    try Contact.decideUpsert(input, state: entry.state, currentValues: entry.values, context: context)
                }
                entry.state = CampaignEngine.project(
                    entry.state, decision.events, from: entry.version + UInt64(entry.events.count), at: now,
                    Contact.evolve)
                entry.events += decision.events
                entry.changes += decision.personalData
                if let values = decision.personalData.last?.values { entry.values = values }
                // The version this item leaves the stream at, as a lone upsert answers it: a contact
                // listed twice answers each item with the version its own write made.
                results.append(
                    .object([
                        "index": .number(Double(index)), "contactId": .string(input.contactId),
                        "streamId": .string(CampaignEngine.streamId(tenant, input.contactId)),
                        "status": .number(decision.events.isEmpty ? 200 : 201),
                        "version": .number(Double(entry.version + UInt64(entry.events.count))),
                    ]))
            } catch {
                failed += 1
                results.append(
                    .object([
                        "index": .number(Double(index)), "contactId": .string(input.contactId),
                        "status": .number(Double(error.httpStatus)), "error": error.body(requestId: requestId),
                    ]))
            }
            pending[input.contactId] = entry
        }
        let streams = order.compactMap { id -> (String, UInt64, [DomainEvent])? in
            guard let entry = pending[id], !entry.events.isEmpty else { return nil }
            return (CampaignEngine.streamId(tenant, id), entry.version, entry.events)
        }
        let changes = order.flatMap { pending[$0]?.changes ?? [] }
        let status = failed > 0 ? 207 : 201
        let summary: JSONObject = [
            "results": .array(results), "failed": .number(Double(failed)),
            "succeeded": .number(Double(inputs.endIndex - failed)),
        ]
        let earlierEvents = earlier.events
        guard !streams.isEmpty else {
            var members = summary
            members["events"] = .array(earlierEvents)
            throw NoChange(status: failed > 0 ? 207 : earlierEvents.isEmpty ? 200 : 201, data: .object(members))
        }
        let tables = self.tables
        var plan = Plan(
            streams: streams, decision: Decision(events: []),
            afterAppend: { txn, _ in for change in changes { try tables.write(change, tenant: tenant, in: txn) } },
            respond: { receipt in
                var members = summary
                let events = CampaignEngine.eventList(receipt)
                members["events"] = earlierEvents.isEmpty ? events : .array(earlierEvents + (events.arrayValue ?? []))
                return .object(members)
            })
        plan.status = status
        return plan
    }

    /// Thrown by a planner whose command writes nothing but still has an answer (an import in which
    /// every contact failed or was unchanged).
    struct NoChange: Error {
        var status: Int
        var data: JSON
    }
}
