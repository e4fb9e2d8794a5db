import CampaignDomain
import CampaignProjections
import CampaignSnapshots
import EventStore
import Foundation
import Hashing
import Synchronization

/// How an engine is set up.
public struct EngineConfiguration: Sendable {
    /// The time source; a ``ManualClock`` makes runs reproducible.
    public var clock: any EngineClock
    /// Requests per tenant per window.
    public var rateLimit: Int
    /// The rate-limit window, in seconds.
    public var rateLimitWindow: TimeInterval
    /// Storage options (map size, batch size).
    public var storeOptions: StoreOptions
    /// The host's client for the social platforms; a ``SimulatedPublisher`` by default.
    public var publisher: any SocialPublisher
    /// The host's directory of subjects: `(tenant, subject) -> known?`. Unknown subjects are `UNAUTHORIZED`.
    public var isKnownSubject: @Sendable (String, String) -> Bool
    /// Limits on a request's JSON.
    public var jsonLimits: JSONLimits
    /// How often a command is decided again when another writer changed its aggregate first
    /// (64 by default). Within a process, commands on one aggregate take turns and never race;
    /// two processes writing one aggregate at full speed do: with 16 tries about one command in
    /// 1,300–4,000 ran out of them (a 409 `retryable`), even with each try waiting for the
    /// winner's commit (``EventStore/awaitOtherWriters()``); with 64, none in 12,000.
    public var maximumRetries: Int
    /// When to take aggregate snapshots.
    public var snapshotPolicy: SnapshotPolicy
    /// Aggregates kept in memory between commands (0 turns the cache off). A cached state is only
    /// a starting point: every load still reads the stream's events after the cached version.
    public var aggregateCacheCapacity: Int
    /// The tenant whose admins are the engine's operator on the wire: only they may send
    /// `system.tick` with a `now` that moves the shared clock, and their tick runs every tenant's
    /// due work. Nil (the default): nobody moves the clock over the wire; the host calls
    /// ``CampaignEngine/tick(now:tenant:requestId:)``. A tenant's own admin always may tick, at the
    /// current clock, for that tenant only.
    public var operatorTenant: String?
    /// Signed checkpoints of the log's tree taken by the engine itself; nil (the default): none.
    public var checkpoints: CheckpointSchedule?
    /// When the catch-up projections (`segments`, `audit`) are brought to the head in the
    /// background and at close; nil: only when a query reads them and when an engine opens.
    public var catchUp: CatchUpSchedule? = CatchUpSchedule()
    /// How long an idempotency key's answer is kept (seven days by default; nil: forever). A retry
    /// within it gets the original answer; after it the key is free and the request runs again.
    /// The scheduler's tick deletes expired records, at most once an hour of the engine's clock,
    /// in writer jobs that appends run between, so the table does not grow without end.
    public var idempotencyRetention: TimeInterval? = 7 * 86_400
    /// The most contacts one transaction of a `contact.import` writes (5,000 by default): a larger
    /// import is written a slice at a time, so the writer serves other commands between its slices.
    /// At about 6.5 µs of the writer's time a contact (release build), 5,000 hold it for about 30 ms;
    /// a 100,000-contact import in one transaction held every tenant's commands for 0.65 s.
    public var importSlice = 5_000
    /// How long the engine waits for the host's ``SocialPublisher`` to answer one call, in seconds of
    /// real time whatever the engine's clock (30 by default). A call not answered by then is a
    /// timeout: the target fails as unconfirmed and is never sent again, and the call is cancelled
    /// (an answer that comes later is dropped). Without it, a call that never returned held its
    /// tick, and so every tenant's later ticks behind it.
    public var publishTimeout: TimeInterval = 30

    /// Defaults: the system clock, 1000 requests a 60 s window, every subject known.
    public init(
        clock: any EngineClock = SystemClock(), rateLimit: Int = 1_000, rateLimitWindow: TimeInterval = 60,
        storeOptions: StoreOptions = StoreOptions(),
        isKnownSubject: @escaping @Sendable (String, String) -> Bool = { _, _ in true },
        jsonLimits: JSONLimits = JSONLimits(), maximumRetries: Int = 64,
        publisher: any SocialPublisher = SimulatedPublisher(),
        snapshotPolicy: SnapshotPolicy = SnapshotPolicy(), aggregateCacheCapacity: Int = 10_000
    ) {
        self.snapshotPolicy = snapshotPolicy
        self.aggregateCacheCapacity = aggregateCacheCapacity
        self.publisher = publisher
        self.clock = clock
        self.rateLimit = rateLimit
        self.rateLimitWindow = rateLimitWindow
        self.storeOptions = storeOptions
        self.isKnownSubject = isKnownSubject
        self.jsonLimits = jsonLimits
        self.maximumRetries = maximumRetries
    }

    /// Throws `VALIDATION_ERROR` naming every setting an engine cannot run with: a rate limit below one
    /// request, a window that is not a positive number of seconds, fewer than one try, an import slice
    /// of no contact, an idempotency retention under a minute, a publish timeout that is not a
    /// positive number of seconds, JSON limits below
    /// ``JSONLimits/smallestUsable`` (no request would pass), a reader count LMDB cannot take, a
    /// checkpoint schedule that could never sign (a verifier key, an origin that is not one line), or an
    /// operator tenant no principal could belong to. An engine checks it before it opens anything: some
    /// of these would trap later, and the schedule's task signs in the background, where a failure says
    /// nothing.
    public func check() throws {
        var problems = [String]()
        if rateLimit < 1 { problems.append("rateLimit must be at least 1 request a window, not \(rateLimit)") }
        if !(rateLimitWindow.isFinite && rateLimitWindow > 0) {
            problems.append("rateLimitWindow must be a positive number of seconds, not \(rateLimitWindow)")
        }
        if maximumRetries < 1 { problems.append("maximumRetries must be at least 1, not \(maximumRetries)") }
        if importSlice < 1 { problems.append("importSlice must be at least 1 contact, not \(importSlice)") }
        if let retention = idempotencyRetention, !(retention.isFinite && retention >= 60) {
            problems.append("idempotencyRetention must be at least 60 seconds (or nil: forever), not \(retention)")
        }
        if !(publishTimeout.isFinite && publishTimeout > 0) {
            problems.append("publishTimeout must be a positive number of seconds, not \(publishTimeout)")
        }
        // Below these no request gets through: its principal's scopes are an array in an object in the
        // request object, and the smallest request with a principal is a few hundred bytes.
        if jsonLimits.maximumBytes < JSONLimits.smallestUsable.maximumBytes {
            problems.append(
                "jsonLimits.maximumBytes must be at least \(JSONLimits.smallestUsable.maximumBytes), "
                    + "not \(jsonLimits.maximumBytes)")
        }
        if jsonLimits.maximumDepth < JSONLimits.smallestUsable.maximumDepth {
            problems.append(
                "jsonLimits.maximumDepth must be at least \(JSONLimits.smallestUsable.maximumDepth), "
                    + "not \(jsonLimits.maximumDepth)")
        }
        if let problem = storeOptions.problem { problems.append("storeOptions: \(problem)") }
        if let problem = checkpoints?.problem { problems.append("checkpoints: \(problem)") }
        if let tenant = operatorTenant, !Principal.isValidTenant(tenant) {
            problems.append(
                "operatorTenant \"\(tenant)\" is no tenant: \(Principal.tenantRule)")
        }
        guard problems.isEmpty else {
            throw CampaignError(.validationError, "EngineConfiguration: " + problems.joined(separator: "; "))
        }
    }
}

/// The embeddable engine: open it on a directory, hand it requests, return its responses.
///
/// ```swift
/// let engine = try CampaignEngine(directory: "./campaign-data")
/// let response = await engine.execute(.command(.campaign(.create(...)), as: principal, requestId: "req_1"))
/// // or, for a host speaking JSON: let line = await engine.handle(line: requestJSON)
/// ```
///
/// Each command flows: authorise → rate limit → idempotency → load aggregate → `decide` →
/// append (group-committed; events, unique names, idempotency record and side tables in one
/// transaction) → response. Nothing is cached between commands: every decision is checked against
/// the stream version inside the write transaction, so another process's writes always win over
/// a stale read, and the command is simply decided again.
public final class CampaignEngine: Sendable {
    let store: EventStore
    let tables: EngineTables
    let configuration: EngineConfiguration
    let rateLimiter: RateLimiter
    /// The read models, ``standardProjections()``: their status, rebuilds and verification.
    public let projections: ProjectionRunner
    /// The aggregate snapshots.
    public let snapshots: SnapshotStore
    let counters = FoldCounters()
    let requestMetrics = RequestMetrics()
    let tickMetrics = TickMetrics()
    let cache: AggregateCache
    let aggregateLocks = KeyedLock()
    let cursors: CursorCodec
    let checkpointer: Checkpointer?
    let catchUpKeeper: CatchUpKeeper?
    /// When a tick last deleted expired idempotency records (engine clock), if one has.
    let idempotencyPruned = Mutex<Date?>(nil)
    /// Run, when set, after a due target passed its checks and before its attempt is recorded: a
    /// test's way into the moment between them (nothing sets it outside tests).
    let beforeAttempt = Mutex<(@Sendable (_ connectionId: String) async -> Void)?>(nil)
    /// The engine clock when the engine opened (``health(_:)``'s scheduler check counts from it
    /// until a tick completes).
    let openedAt: Date

    /// The read models the engine keeps.
    public static func standardProjections() -> [any Projection] {
        [
            CampaignBoard(), ScheduleIndex(), PublishingQueue(), ExperimentResultsProjection(), SegmentMembership(),
            AuditIndex(),
        ]
    }

    /// The engine's clock.
    public var clock: any EngineClock { configuration.clock }

    /// The clock's time rounded to the millisecond, the resolution of stored event times, so a
    /// state the engine folds while deciding equals the state folded later from the log.
    var currentTime: Date {
        Date(timeIntervalSince1970: (configuration.clock.now().timeIntervalSince1970 * 1000).rounded() / 1000)
    }

    /// Opens (creating if needed) an engine directory.
    /// - Throws: `VALIDATION_ERROR` for a configuration it cannot run with (``EngineConfiguration/check()``);
    ///   a storage error when the directory cannot be opened.
    public init(directory: String, configuration: EngineConfiguration = EngineConfiguration()) throws {
        try configuration.check()
        store = try EventStore(path: directory, options: configuration.storeOptions)
        do {
            tables = try EngineTables(store: store)
            projections = try ProjectionRunner(store: store, projections: CampaignEngine.standardProjections())
            snapshots = try SnapshotStore(store: store, policy: configuration.snapshotPolicy)
            cursors = CursorCodec(secret: try store.secret(named: "cursor"))
            try projections.prepare()
        } catch {
            store.close()
            throw error
        }
        self.configuration = configuration
        openedAt = configuration.clock.now()
        cache = AggregateCache(capacity: configuration.aggregateCacheCapacity)
        rateLimiter = RateLimiter(
            limit: configuration.rateLimit, window: configuration.rateLimitWindow,
            shared: store.isReadOnly ? nil : SharedRateWindows(directory: directory))
        let store = self.store
        checkpointer = configuration.checkpoints.map { Checkpointer(store: store, schedule: $0) }
        let projections = self.projections
        catchUpKeeper =
            store.isReadOnly
            ? nil : configuration.catchUp.map { CatchUpKeeper(store: store, projections: projections, schedule: $0) }
    }

    /// Stops taking checkpoints and catching up in the background, catches the catch-up projections
    /// up for at most ``CatchUpSchedule/atClose``, finishes queued writes and closes the store.
    /// Blocks until the store is closed: call it from outside Swift concurrency's pool when you can.
    public func close() {
        checkpointer?.stop()
        catchUpKeeper?.stop()
        catchUpForClose()
        store.close()
    }

    /// Catches the catch-up projections up as ``close()`` does, for at most
    /// ``CatchUpSchedule/atClose`` (nothing for an engine without a catch-up schedule, or
    /// read-only): for a host that reports on the engine once more before it closes it, so the
    /// report shows the read models where the run leaves them (`campaign apply`'s last `--metrics`
    /// write, which a collector keeps serving after the run). Blocks, as ``close()`` does.
    public func catchUpForClose() {
        guard catchUpKeeper != nil, let budget = configuration.catchUp?.atClose, budget > .zero else { return }
        _ = try? projections.catchUp(until: .now + budget)
    }

    /// The underlying event store, for tools (replay, verify, stats).
    public var eventStore: EventStore { store }

    // MARK: Entry points

    /// Handles one wire-format request (a JSON object) and returns the wire response.
    public func handle(_ bytes: [UInt8]) async -> EngineResponse {
        switch WireFormat.decode(bytes, limits: configuration.jsonLimits) {
        case let .request(request): return await execute(request)
        case let .rejected(response):
            requestMetrics.count(nil, isCommand: false, response, took: nil)
            return response
        }
    }

    /// Handles one JSON line and returns the response line.
    public func handle(line: String) async -> String {
        await handle(Array(line.utf8)).line
    }

    /// Executes a typed request. Never throws: every failure is a response with a catalogue code.
    /// A request built in Swift is first checked as the wire decoder checks one (its ids of their
    /// kind, its page sizes, its request id and idempotency key, the nesting of its JSON values).
    public func execute(_ request: EngineRequest) async -> EngineResponse {
        let started = ContinuousClock.now
        let response = await respond(to: request)
        let name: String
        let isCommand: Bool
        switch request.body {
        case let .command(command): (name, isCommand) = (command.name, true)
        case let .query(query): (name, isCommand) = (query.name, false)
        }
        requestMetrics.count(name, isCommand: isCommand, response, took: .now - started)
        return response
    }

    /// ``execute(_:)`` without its counting.
    private func respond(to request: EngineRequest) async -> EngineResponse {
        if !request.readFromWire {
            do {
                try request.checkForm(limits: configuration.jsonLimits)
            } catch {
                // As on the wire, a request id that is not one is not echoed.
                let echoed =
                    WireFormat.isValidRequestId(request.requestId) ? request.requestId : WireFormat.fallbackRequestId
                return .failure(error, requestId: echoed)
            }
        }
        do {
            let now = currentTime
            let permission: Permission
            switch request.body {
            case let .command(command): permission = command.permission
            case let .query(query): permission = query.permission
            }
            let principal = try Authorizer.authorize(
                request.principal, for: permission, now: now, isKnownSubject: configuration.isKnownSubject)
            try rateLimiter.take(tenant: principal.tenant, now: now)
            switch request.body {
            case let .query(query):
                return EngineResponse(
                    requestId: request.requestId, status: 200, data: try await answer(query, principal: principal))
            case let .command(command):
                let answer = try await perform(command, request: request, principal: principal)
                return EngineResponse(
                    requestId: request.requestId, status: answer.status, data: answer.data,
                    encodedData: answer.encodedData)
            }
        } catch let error as CampaignError {
            return .failure(error, requestId: request.requestId)
        } catch {
            return .failure(CampaignEngine.map(error), requestId: request.requestId)
        }
    }

    // MARK: Commands

    /// What a command handler hands back for the engine to append.
    struct Plan {
        /// Streams and their events; the first is the command's own aggregate.
        var streams: [(streamId: String, loadedVersion: UInt64, events: [DomainEvent])]
        var decision: Decision
        var preconditions: [@Sendable (ReadTransaction) throws -> Void] = []
        var afterAppend: (@Sendable (WriteTransaction, AppendReceipt) throws -> Void)?
        /// Builds the response data once positions are known.
        var respond: @Sendable (AppendReceipt) -> JSON
        /// The same answer made from members built while planning, when the handler has them
        /// (see ``ReceiptAnswer``): then no member is built or encoded inside the transaction.
        var receiptAnswer: ReceiptAnswer?
        var status = 201
        /// What a version clash on the first stream means when the client set no expectation.
        var conflictIsDuplicate = false
        /// Append without a version check (events that commute, such as exposures); the rules that
        /// matter are preconditions checked inside the write transaction.
        var unversioned = false
        /// The snapshot to store when the first stream crosses the policy's interval.
        var snapshot: SnapshotPlan?
        /// The first stream's aggregate state after the command, as folded while planning; inline
        /// projections that keep aggregate state take it instead of folding again.
        var stateAfter: (any Sendable)?
        /// Set for a command that goes on after this commit (a publish): the idempotency record
        /// stores a pending marker with this version (the stream's before the command), not the
        /// response, and the final answer replaces it.
        var pendingFrom: UInt64?

        /// The answer of a plan that writes nothing to its one stream and holds nothing else to
        /// commit: `{streamId, version, events: [], changed: false}` and the aggregate as it is;
        /// nil for a plan with something to write.
        var unchangedData: JSON? {
            guard streams.count == 1, let stream = streams.first, stream.events.isEmpty,
                decision.reservations.isEmpty, decision.releases.isEmpty, afterAppend == nil, pendingFrom == nil,
                let receiptAnswer
            else { return nil }
            var members = JSONObject()
            for member in receiptAnswer.members {
                members[member.key] = member.value ?? (try? JSON.parse(member.bytes)) ?? .null
            }
            return CampaignEngine.unchangedData(streamId: stream.streamId, version: stream.loadedVersion, members)
        }
    }

    func perform(_ command: Command, request: EngineRequest, principal: Principal) async throws -> Answer {
        let route = command.route
        if request.expectedVersion != nil, route == nil || route?.expects == .commutes {
            throw CampaignError(
                .invalidField,
                "expectedVersion does not apply to \(command.name), which spans many streams or commutes; leave it out",
                param: "expectedVersion", pointer: "/expectedVersion")
        }
        var idempotency: IdempotencyClaim?
        if let key = request.idempotencyKey {
            let scoped = principal.tenant + "\u{0}" + key
            // The payload as the client sent it (canonical bytes), so a retry that left the id out
            // matches the first try, whose id the decoder made up; a request built in Swift carries
            // its ids and is fingerprinted from its encoding.
            let fingerprint = SHA256.hash(
                JSON.object([
                    "command": .string(command.name),
                    "expectedVersion": request.expectedVersion.map { .number(Double($0)) } ?? .null,
                    "payload": request.wirePayload ?? command.payload, "subject": .string(principal.subject),
                ]).bytes)
            let claim = IdempotencyClaim(key: scoped, fingerprint: fingerprint, recordedAt: currentTime) { _ in [] }
            do {
                if let stored = try store.idempotentResult(key: scoped, fingerprint: fingerprint) {
                    return try await replay(
                        StoredAnswer(bytes: stored), command: command, request: request, principal: principal,
                        claim: claim)
                }
            } catch EventStoreError.idempotencyKeyReused {
                throw CampaignError(
                    .resourceConflict, "idempotency key \(key) was used with a different request",
                    param: "idempotencyKey", pointer: "/idempotencyKey")
            }
            idempotency = claim
        }
        if case let .contact(.import(inputs)) = command, inputs.count > configuration.importSlice {
            return try await importInSlices(inputs, request: request, principal: principal, idempotency: idempotency)
        }
        if case let .tick(requested) = command {
            let data = try await wireTick(requested, principal: principal, requestId: request.requestId)
            if let idempotency { try await recordFinal(.success(status: 200, data: data), for: idempotency) }
            return Answer(200, data)
        }
        // Commands on one aggregate take turns in this process (see KeyedLock); commuting ones need not.
        let lockKey = route.flatMap { $0.expects == .commutes ? nil : $0.streamId(tenant: principal.tenant) }
        if let lockKey { await aggregateLocks.acquire(lockKey) }
        defer { if let lockKey { aggregateLocks.release(lockKey) } }
        var attempt = 0
        while true {
            attempt += 1
            let now = currentTime
            let plan: Plan
            do {
                plan = try self.plan(command, principal: principal, request: request, now: now)
            } catch let answer as NoChange {
                return try await answerOnce(answer.status, answer.data, idempotency)
            }
            if let expected = request.expectedVersion, let first = plan.streams.first, !plan.unversioned,
                first.loadedVersion != expected
            {
                throw CampaignEngine.versionConflict(current: first.loadedVersion, expected: expected)
            }
            // A decision that writes nothing (an update to the values there already) commits nothing.
            if let unchanged = plan.unchangedData {
                return try await answerOnce(200, unchanged, idempotency)
            }
            do {
                let result = try await commit(
                    plan, request: request, principal: principal, now: now, idempotency: idempotency)
                if case let .post(.publish(postId)) = command, result.status == 201, let from = plan.pendingFrom {
                    // The attempts run after the command committed, outside its transaction; the
                    // idempotency record holds a pending marker until the outcome replaces it.
                    return try await finishPublish(
                        postId, fromVersion: from, request: request, principal: principal, idempotency: idempotency)
                }
                return result
            } catch let answer as NoChange {
                return try await answerOnce(answer.status, answer.data, idempotency)
            } catch let EventStoreError.wrongExpectedVersion(streamId, _, current) {
                if streamId == plan.streams.first?.streamId {
                    if let expected = request.expectedVersion {
                        throw CampaignEngine.versionConflict(current: current, expected: expected)
                    }
                    if plan.conflictIsDuplicate, let route {
                        throw CampaignError(
                            .duplicateResource, "\(route.aggregate.rawValue) \(route.id) already exists",
                            param: route.aggregate.idField, pointer: route.idPointer)
                    }
                }
                try await waitToRetry(after: attempt)
            }
        }
    }

    /// The answer of a command that wrote nothing (an update to the values there already, an import
    /// whose items all failed or were unchanged, an exposure counted before), stored under its
    /// idempotency key unless an answer is there already, which is then the one given: a request sent
    /// again with the key while the first ran may have written what this one found unchanged, and
    /// both must be answered alike.
    private func answerOnce(_ status: Int, _ data: JSON, _ idempotency: IdempotencyClaim?) async throws -> Answer {
        guard var claim = idempotency else { return Answer(status, data) }
        let stored = StoredAnswer.success(status: status, data: data).bytes
        claim.result = { _ in stored }
        if case let .replayed(first) = try await store.append(AppendRequest(streams: [], idempotency: claim)),
            case let .success(_, firstData) = StoredAnswer(bytes: first)
        {
            // Replays answer 200 (SPEC.md §4).
            return Answer(200, firstData)
        }
        return Answer(status, data)
    }

    /// After a version conflict on attempt `attempt`: `RESOURCE_CONFLICT` (retryable) once the
    /// configuration's tries are spent, else a short wait before the command is decided again.
    private func waitToRetry(after attempt: Int) async throws {
        guard attempt < configuration.maximumRetries else {
            throw CampaignError(.resourceConflict, "the resource kept changing; try again", retryable: true)
        }
        // Another process won the race: back off a little (jittered), then wait until the
        // writer lock is free, so the next load sees the winner's commit rather than reading
        // while its next one is flushed. Two processes updating one campaign: with 16 tries
        // one command in 300–1,000 ran out of them; this wait made it one in 1,300–4,000,
        // and the 64 tries of the default left none in 12,000.
        try? await Task.sleep(for: .microseconds(Int.random(in: 0...(100 * attempt))))
        try await store.awaitOtherWriters()
    }

    /// An import of more than ``EngineConfiguration/importSlice`` contacts, written a slice at a time, each
    /// slice its own transaction, so the writer serves other commands between them. The last slice's answer
    /// is the whole import's, and only it is stored under the idempotency key (or, when that slice writes
    /// nothing, the answer is stored after it). Every item is an upsert, so an import cut short by a crash,
    /// which answered nothing, is sent again whole: the slices written come back unchanged.
    private func importInSlices(
        _ inputs: [ContactInput], request: EngineRequest, principal: Principal, idempotency: IdempotencyClaim?
    ) async throws -> Answer {
        var earlier = ImportTally()
        var start = inputs.startIndex
        while true {
            let end = min(start + configuration.importSlice, inputs.endIndex)
            let last = end == inputs.endIndex
            var attempt = 0
            while true {
                attempt += 1
                let now = currentTime
                do {
                    // The last slice answers for them all; the others answer their own items.
                    let plan = try planImport(
                        inputs[start..<end], tenant: principal.tenant, now: now, requestId: request.requestId,
                        earlier: last ? earlier : ImportTally())
                    let answer = try await commit(
                        plan, request: request, principal: principal, now: now, idempotency: last ? idempotency : nil)
                    if last { return answer }
                    // An import's plan answers with its data's value (it has no receipt answer).
                    earlier.add(answer.data)
                    break
                } catch let answer as NoChange {
                    guard last else {
                        earlier.add(answer.data)
                        break
                    }
                    // Earlier slices may have written: a retry with the key gets this answer.
                    return try await answerOnce(answer.status, answer.data, idempotency)
                } catch EventStoreError.wrongExpectedVersion {
                    try await waitToRetry(after: attempt)
                }
            }
            start = end
        }
    }

    func commit(
        _ plan: Plan, request: EngineRequest, principal: Principal, now: Date, idempotency: IdempotencyClaim?
    ) async throws -> Answer {
        let actor = principal.subject
        let causation = request.requestId + "#" + (request.body.commandName ?? "")
        let streams = plan.streams.enumerated().map { index, stream in
            StreamAppend(
                streamId: stream.streamId,
                expectedVersion: plan.unversioned
                    ? .any
                    : index == 0 && request.expectedVersion != nil
                        ? CampaignEngine.expectation(request.expectedVersion!)
                        : CampaignEngine.expectation(stream.loadedVersion),
                events: stream.events.map {
                    NewEvent(
                        type: $0.type, schemaVersion: $0.schemaVersion, occurredAt: now, tenant: principal.tenant,
                        actor: actor,
                        requestId: request.requestId, causationId: causation, payload: $0.payload.bytes)
                })
        }
        var claim = idempotency
        let respond = plan.respond
        let receiptAnswer = plan.receiptAnswer
        let status = plan.status
        // The answer is built once: inside the transaction when the idempotency record stores it,
        // and that same value is returned.
        let answered = AnswerBox()
        if let from = plan.pendingFrom {
            let pending = StoredAnswer.pending(fromVersion: from).bytes
            claim?.result = { _ in pending }
        } else {
            claim?.result = { receipt in
                // The data is encoded once: for the record, and for the host's response body. With
                // members made while planning, only the receipt's facts are encoded here, on the
                // writer, and the data's value is built after the commit.
                if let receiptAnswer {
                    let encoded = receiptAnswer.bytes(receipt)
                    answered.set(nil, encoded: encoded)
                    return StoredAnswer.success(status: status, encodedData: encoded)
                }
                let data = respond(receipt)
                let encoded = data.bytes
                answered.set(data, encoded: encoded)
                return StoredAnswer.success(status: status, encodedData: encoded)
            }
        }
        let afterAppend = plan.afterAppend
        let projections = self.projections
        let snapshots = self.snapshots
        let snapshot = plan.snapshot
        let planned = plan.streams.map { (streamId: $0.streamId, payloads: $0.events.map(\.payload)) }
        let stateAfter = plan.stateAfter
        let appendRequest = AppendRequest(
            streams: streams,
            claims: plan.decision.reservations.map { UniqueClaim(key: $0.key, owner: $0.owner) },
            releases: plan.decision.releases.map { UniqueClaim(key: $0.key, owner: $0.owner) },
            idempotency: claim, preconditions: plan.preconditions,
            afterAppend: { txn, receipt in
                try afterAppend?(txn, receipt)
                try projections.applyInline(
                    receipt.events, known: CampaignEngine.known(receipt, planned, stateAfter: stateAfter), in: txn)
                if let snapshot, let new = receipt.streamVersions[snapshot.streamId] {
                    let old = new - UInt64(receipt.events.count { $0.streamId == snapshot.streamId })
                    if snapshots.policy.isDue(kind: snapshot.kind, from: old, to: new),
                        let state = try snapshot.state(txn)
                    {
                        try snapshots.save(
                            snapshot.streamId, kind: snapshot.kind, schemaVersion: snapshot.schemaVersion, state: state,
                            version: new, in: txn)
                    }
                }
            })
        do {
            switch try await store.append(appendRequest) {
            case let .appended(receipt):
                remember(plan, receipt)
                let (data, encoded) = answered.value
                if let receiptAnswer {
                    // The value is left to the host to decode, if it reads it (``EngineResponse/data``).
                    return Answer(status, nil, encoded: encoded ?? receiptAnswer.bytes(receipt))
                }
                if let data { return Answer(status, data, encoded: encoded) }
                return Answer(status, respond(receipt))
            case let .replayed(stored):
                // Another request with the same key committed first (a concurrent retry).
                guard case let .success(_, data) = StoredAnswer(bytes: stored) else {
                    throw CampaignError(
                        .resourceConflict, "a request with this idempotency key is still under way; retry it",
                        param: "idempotencyKey", pointer: "/idempotencyKey", retryable: true)
                }
                return Answer(200, data)
            }
        } catch let EventStoreError.uniqueValueTaken(key, _) {
            let reservation = plan.decision.reservations.first { $0.key == key }
            throw CampaignError(
                .duplicateResource, reservation?.message ?? "the value is taken",
                pointer: reservation.map { "/payload" + $0.pointer })
        } catch EventStoreError.idempotencyKeyReused {
            throw CampaignError(
                .resourceConflict, "idempotency key was used with a different request", param: "idempotencyKey",
                pointer: "/idempotencyKey")
        }
    }

    /// Keeps the first stream's state after a committed command in the aggregate cache, so the
    /// next command on it folds nothing. Only for a versioned append: the version check proved the
    /// stream held exactly the folded events, so state and version agree (a commuting append may
    /// have interleaved with another and is left to the next load to fold).
    private func remember(_ plan: Plan, _ receipt: AppendReceipt) {
        guard !plan.unversioned, let after = plan.stateAfter, let first = plan.streams.first,
            let version = receipt.streamVersions[first.streamId],
            version == first.loadedVersion + UInt64(first.events.count)
        else { return }
        cache.put(first.streamId, after, version: version)
    }

    /// What the engine knows about the events it just appended, in the receipt's order (nil for
    /// an event it did not plan): each payload as a value, and the first stream's state after its
    /// last event.
    static func known(
        _ receipt: AppendReceipt, _ planned: [(streamId: String, payloads: [JSON])], stateAfter: (any Sendable)?
    ) -> [KnownEvent?] {
        var known = [KnownEvent?]()
        known.reserveCapacity(receipt.events.count)
        if let only = planned.first, planned.count == 1 {
            // One stream (most commands): its events in order, no lookup.
            var index = 0
            for event in receipt.events {
                guard event.streamId == only.streamId && index < only.payloads.count else {
                    known.append(nil)
                    continue
                }
                let last = index == only.payloads.count - 1
                known.append(KnownEvent(payload: only.payloads[index], stateAfter: last ? stateAfter : nil))
                index += 1
            }
            return known
        }
        // Stream → (its place in the plan, the next of its events): one lookup per event, so an
        // import of 100,000 contacts stays linear.
        var cursor = [String: (stream: Int, next: Int)](minimumCapacity: planned.count)
        for (stream, entry) in planned.enumerated() where cursor[entry.streamId] == nil {
            cursor[entry.streamId] = (stream, 0)
        }
        for event in receipt.events {
            guard let (stream, index) = cursor[event.streamId] else {
                known.append(nil)
                continue
            }
            cursor[event.streamId] = (stream, index + 1)
            let payloads = planned[stream].payloads
            guard index < payloads.count else {
                known.append(nil)
                continue
            }
            let last = stream == 0 && index == payloads.count - 1
            known.append(KnownEvent(payload: payloads[index], stateAfter: last ? stateAfter : nil))
        }
        return known
    }

    static func expectation(_ version: UInt64) -> ExpectedVersion { version == 0 ? .noStream : .exact(version) }

    static func versionConflict(current: UInt64, expected: UInt64) -> CampaignError {
        CampaignError(
            .resourceConflict, "expected version \(expected) but the resource is at version \(current)",
            pointer: "/expectedVersion", currentVersion: current, expectedVersion: expected)
    }

    /// The catalogue error for any error an engine, its store or a tool may throw.
    public static func catalogueError(for error: any Error) -> CampaignError {
        (error as? CampaignError) ?? map(error)
    }

    /// Storage errors by their class (``EventStoreError``): full or unavailable storage is
    /// `SERVICE_UNAVAILABLE`, retryable; a store that refuses writes until an operator acts (or
    /// one opened read-only) is `SERVICE_UNAVAILABLE`, not retryable; damage is `INTERNAL_ERROR`,
    /// not retryable; anything unexpected is `INTERNAL_ERROR`.
    static func map(_ error: Error) -> CampaignError {
        guard let error = error as? EventStoreError else {
            return CampaignError(.internalError, "unexpected error: \(error)")
        }
        switch error {
        case .storageFull, .storage, .closed:
            return CampaignError(.serviceUnavailable, "storage is unavailable: \(error)", retryable: true)
        case .writesRefused, .readOnly:
            return CampaignError(
                .serviceUnavailable, "\(error); an operator must act (see campaign verify)", retryable: false)
        case .corrupted:
            return CampaignError(
                .internalError, "\(error); writes are refused until campaign verify passes", retryable: false)
        default:
            return CampaignError(.internalError, "storage error: \(error)")
        }
    }

    /// 16 random bytes, hex, for a contact's commitment (``salts(_:)`` of one).
    static func salt() -> String { salts(1)[0] }

    /// `count` salts of 16 random bytes each, hex, for contacts' commitments, drawn in one call of
    /// the system's generator (`arc4random_buf`, which glibc serves with one `getrandom` of all
    /// the bytes). Drawn a byte at a time, a salt took 16 calls, each keeping one byte of eight:
    /// 16% of a contact import's CPU.
    static func salts(_ count: Int) -> [String] {
        var bytes = [UInt8](repeating: 0, count: 16 * count)
        bytes.withUnsafeMutableBytes { if let base = $0.baseAddress { arc4random_buf(base, $0.count) } }
        return (0..<count).map { bytes[16 * $0..<16 * ($0 + 1)].hexString }
    }
}

/// The answer a commit built inside its transaction (for the idempotency record), kept for the reply.
final class AnswerBox: Sendable {
    private let stored = Mutex<(data: JSON?, encoded: [UInt8]?)>((nil, nil))

    func set(_ data: JSON?, encoded: [UInt8]) { stored.withLock { $0 = (data, encoded) } }
    var value: (data: JSON?, encoded: [UInt8]?) { stored.withLock { $0 } }
}

/// An answer that is the receipt's facts (`streamId`, `version`, `events`) around members made
/// while planning (the aggregate's id and state), each with its canonical bytes: its canonical
/// encoding is then spliced from those bytes and the receipt's few, so the state is neither built
/// nor encoded inside the writer's transaction, and encoded once in all.
struct ReceiptAnswer: Sendable {
    var streamId: String
    /// Each member's key, value (nil when only its bytes were made) and canonical bytes.
    var members: [(key: String, value: JSON?, bytes: [UInt8])]
    /// The answer's bytes around the two values only the receipt gives, made when the command is
    /// planned: `head` ‖ events ‖ `middle` ‖ version ‖ `tail`. (`events` sorts before `version`, so
    /// that is their order whatever the other members are.) Nil if a member took one of the
    /// receipt's names; the answer is then encoded from its value.
    private var parts: (head: [UInt8], middle: [UInt8], tail: [UInt8])?

    /// An answer of members whose bytes are already made; one without its value is parsed from
    /// its bytes only if ``data(_:)`` is asked for.
    init(streamId: String, encoded members: [(key: String, value: JSON?, bytes: [UInt8])]) {
        self.streamId = streamId
        self.members = members
        guard !members.contains(where: { $0.key == "events" || $0.key == "streamId" || $0.key == "version" }) else {
            parts = nil
            return
        }
        // Every member in key order; the receipt's two values are left out, to be written between
        // the parts.
        enum Slot {
            case member(Int)
            case streamId, receipt
        }
        var slots = self.members.indices.map { (key: self.members[$0].key, slot: Slot.member($0)) }
        slots += [("events", .receipt), ("streamId", .streamId), ("version", .receipt)]
        slots.sort { ByteOrder.precedes($0.key, $1.key) }
        var parts: [[UInt8]] = []
        var part: [UInt8] = [UInt8(ascii: "{")]
        part.reserveCapacity(
            self.members.reduce(64 + streamId.utf8.count) { $0 + $1.key.utf8.count + $1.bytes.count + 4 })
        for (index, entry) in slots.enumerated() {
            if index > 0 { part.append(UInt8(ascii: ",")) }
            JSON.appendString(entry.key, to: &part)
            part.append(UInt8(ascii: ":"))
            switch entry.slot {
            case let .member(member): part += self.members[member].bytes
            case .streamId: JSON.appendString(streamId, to: &part)
            case .receipt:
                parts.append(part)
                part = []
            }
        }
        part.append(UInt8(ascii: "}"))
        parts.append(part)
        self.parts = (parts[0], parts[1], parts[2])
    }

    /// The answer as a value: ``CampaignEngine/receiptData(_:streamId:_:)`` around the members.
    func data(_ receipt: AppendReceipt) -> JSON {
        CampaignEngine.receiptData(
            receipt, streamId: streamId,
            JSONObject(
                uniqueKeysWithValues: members.map {
                    // Bytes this engine wrote canonically: they parse.
                    ($0.key, $0.value ?? (try? JSON.parse($0.bytes)) ?? .null)
                }))
    }

    /// The answer's canonical bytes (those of ``data(_:)``), from the parts made when planned and
    /// the receipt's events and version, written straight as bytes.
    func bytes(_ receipt: AppendReceipt) -> [UInt8] {
        guard let (head, middle, tail) = parts else { return data(receipt).bytes }
        var out = [UInt8]()
        out.reserveCapacity(head.count + middle.count + tail.count + 24 + receipt.events.count * 96)
        out += head
        // `[{"position":…,"streamId":…,"type":…}]`, as `eventList` makes it.
        out.append(UInt8(ascii: "["))
        for (index, event) in receipt.events.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: #"{"position":"#.utf8)
            JSON.appendNumber(Double(event.position), to: &out)
            out.append(contentsOf: #","streamId":"#.utf8)
            JSON.appendString(event.streamId, to: &out)
            out.append(contentsOf: #","type":"#.utf8)
            JSON.appendString(event.type, to: &out)
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "]"))
        out += middle
        JSON.appendNumber(Double(receipt.streamVersions[streamId] ?? 0), to: &out)
        out += tail
        // Debug builds (the tests) check every answer against the encoding of its value.
        assert(out == data(receipt).bytes)
        return out
    }
}

/// A command's answer: its status, and its data as a value, as canonical bytes already made (for
/// the idempotency record), or both; the response body reuses the bytes.
struct Answer: Sendable {
    var status: Int
    var data: JSON?
    var encodedData: [UInt8]?

    init(_ status: Int, _ data: JSON?, encoded: [UInt8]? = nil) {
        precondition(data != nil || encoded != nil, "an answer has data")
        self.status = status
        self.data = data
        self.encodedData = encoded
    }
}

/// A snapshot to take with an append when it is due.
struct SnapshotPlan: Sendable {
    var streamId: String
    var kind: String
    var schemaVersion: Int
    /// The state after the append, encoded when called: only when a snapshot is due.
    var state: @Sendable (WriteTransaction) throws -> JSON?

    init<State>(_ streamId: String, _ codec: SnapshotCodec<State>, _ after: State?) where State: Sendable {
        self.streamId = streamId
        kind = codec.kind
        schemaVersion = codec.schemaVersion
        // Encoded only when a snapshot is due (every Nth version), not on every command.
        let encode = codec.encode
        state = { _ in after.map(encode) }
    }

    init(
        streamId: String, kind: String, schemaVersion: Int,
        state: @escaping @Sendable (WriteTransaction) throws -> JSON?
    ) {
        self.streamId = streamId
        self.kind = kind
        self.schemaVersion = schemaVersion
        self.state = state
    }
}

/// Recently loaded aggregates: stream id → (state, version). Not a source of truth: a load starts
/// from the cached state and still folds every event after its version, inside a read of the
/// stream, and the append that follows expects exactly the version folded — so an append by
/// another process is always seen, and a stale entry can never win a write.
final class AggregateCache: Sendable {
    private let entries = Mutex<[String: (state: any Sendable, version: UInt64)]>([:])
    private let capacity: Int

    init(capacity: Int) { self.capacity = max(0, capacity) }

    func get<State: Sendable>(_ streamId: String, as _: State.Type) -> (State, UInt64)? {
        entries.withLock { entries in
            guard let entry = entries[streamId], let state = entry.state as? State else { return nil }
            return (state, entry.version)
        }
    }

    func put(_ streamId: String, _ state: any Sendable, version: UInt64) {
        guard capacity > 0 else { return }
        entries.withLock { entries in
            if entries.count >= capacity, entries[streamId] == nil, let victim = entries.keys.first {
                entries[victim] = nil
            }
            if let existing = entries[streamId], existing.version > version { return }
            entries[streamId] = (state, version)
        }
    }
}

/// How many events aggregate loads folded (tests check that snapshots keep it flat).
final class FoldCounters: Sendable {
    private let folded = Atomic<UInt64>(0)

    func add(_ count: UInt64) { folded.add(count, ordering: .relaxed) }
    var eventsFolded: UInt64 { folded.load(ordering: .relaxed) }
}

extension CampaignEngine {
    /// Events folded by aggregate loads since the engine opened (snapshots keep this flat).
    public var eventsFoldedByLoads: UInt64 { counters.eventsFolded }
}

extension EngineRequest.Body {
    var commandName: String? {
        if case let .command(command) = self { return command.name }
        return nil
    }
}
