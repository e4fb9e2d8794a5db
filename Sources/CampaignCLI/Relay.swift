import CampaignDomain
import CampaignEngine
import EventStore
import Foundation
import Hashing
import NATS
import Synchronization

/// `campaign export --to nats://…`: relays the log into a JetStream stream, at least once, in
/// order, with duplicates dropped by JetStream (`Nats-Msg-Id` = the CloudEvent id). A broker that
/// fails with publishes in flight can drop one of them and store later ones: sent again, it lands
/// after them (README, the cluster harness), unless the relay is ``exclusive``.
///
/// The consumer's checkpoint moves only past events JetStream acknowledged, and only as far as
/// every event before them is acknowledged too; after a crash, a lost broker or a stop, the next
/// run starts after that checkpoint, so nothing is lost, and what is sent again is dropped by
/// JetStream within its duplicate window (two minutes), once the relay has checked that the message
/// stored under the repeated id is the same event.
struct Relay {
    let store: EventStore
    let storeId: String
    /// The servers to try, in turn (a cluster's members), each with the credentials it takes.
    let endpoints: [NATSEndpoint]
    let stream: String
    /// Copies of the stream JetStream keeps (1, or up to the cluster's size).
    var replicas = 1
    /// How long the relay retries while no event is acknowledged before it gives up (exit 1);
    /// nil: for ever.
    var retryFor: Duration?
    /// `--auth-file`, read again before each connection after the first for the servers that take
    /// their credentials from it (``authFileServers``), so credentials renewed under a running relay
    /// (a `.creds` whose JWT was about to expire) are those it reconnects with; nil without one.
    /// Once a server has taken the file's credentials, a refusal of them is retried, waiting for
    /// renewed ones, instead of ending the relay.
    var authFile: String?
    /// The indexes in ``endpoints`` of the servers whose URL gave no credentials, which take
    /// ``authFile``'s.
    var authFileServers: Set<Int> = []
    let prefix: String
    let consumer: String
    let follow: Bool
    let console: any Console
    /// What the relay does, counted for `--metrics` (counted whether or not a file is written).
    let metrics: RelayMetrics
    /// `--exclusive`: the relay is the stream's only publisher, so each publish names the one
    /// before it (`Nats-Expected-Last-Msg-Id`) and the stream refuses it unless that one is the
    /// last it stored. A publish a failing broker drops then makes every later one in flight
    /// refused, not stored ahead of it, and the retry sends them again in order. The first publish
    /// of each connection expects nothing (after a broker restart the server may not know its last
    /// message's id) and goes out alone; the others follow once it is acknowledged.
    var exclusive = false

    /// Publishes in flight at most.
    static let window = 256

    func run() async throws -> CLI.Exit {
        let from = try acknowledgedThrough()
        let stop = StopSignal()
        let work = Task { try await relayUntilDone(stop) }
        let signals = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number)
            source.setEventHandler {
                stop.request()
                work.cancel()
            }
            source.resume()
            return source
        }
        defer { for source in signals { source.cancel() } }
        let exit = try await work.value
        if exit == .ok {
            // What this run added, so an operator sees the relay did its work (stdout is free: the
            // events went to JetStream).
            let through = try acknowledgedThrough()
            let added = through - min(from, through)
            let range = added == 0 ? "" : " (positions \(Format.count(from + 1))–\(Format.count(through)))"
            console.out(
                "relayed \(Format.count(added)) events to JetStream stream \(stream)\(range); consumer "
                    + "\(consumer) at \(Format.count(through)) of \(Format.count(try store.head().position))")
        }
        return exit
    }

    /// The position the consumer has acknowledged through (0 before its first acknowledgement).
    private func acknowledgedThrough() throws -> UInt64 {
        try store.consumers().first { $0.name == consumer }?.position ?? 0
    }

    private func relayUntilDone(_ stop: StopSignal) async throws -> CLI.Exit {
        var backoff = 0.2
        var attempt = 0
        // The last time the consumer's checkpoint moved (or the relay started).
        var progressed = ContinuousClock.now
        var through = try acknowledgedThrough()
        // Whether a server took credentials from the auth file in this run: credentials refused
        // after that expired or were revoked, and renewing the file mends that.
        var authFileTaken = false
        while true {
            let fromAuthFile = authFile != nil && authFileServers.contains(attempt % endpoints.count)
            var connected = false
            var waitForRenewal = false
            do {
                // Each attempt starts with the next server: a cluster member that went away is
                // skipped on the retry.
                defer { metrics.disconnected() }
                try await relayOnce(stop, endpoint: endpoint(attempt)) {
                    metrics.connected()
                    connected = true
                    authFileTaken = authFileTaken || fromAuthFile
                }
                return .ok
            } catch let refused as StreamRefused {
                // The stream cannot be made as asked (its subjects overlap another stream's, …), or
                // another publisher writes to an exclusive relay's stream: waiting will not change that.
                let reached = (try? acknowledgedThrough()) ?? through
                console.err("relay: \(refused.reason); consumer \(consumer) at \(Format.count(reached))")
                return .failure
            } catch let error as NATSError
                where error.isPermanent && !(error.isAuthorization && fromAuthFile && authFileTaken && !connected)
            {
                // Credentials missing or refused from the start, a user not let publish, or TLS
                // required: waiting will not change them either.
                console.err("relay: \(error); consumer \(consumer) at \(Format.count(through))")
                return .failure
            } catch {
                // Here a refusal is of credentials the auth file held when they were taken before.
                waitForRenewal = (error as? NATSError)?.isAuthorization ?? false
                attempt += 1
                if stop.requested { return .ok }
                if let now = try? acknowledgedThrough(), now > through {
                    through = now
                    progressed = .now
                }
                if let retryFor, ContinuousClock.now - progressed >= retryFor {
                    console.err(
                        "relay: \(error); giving up: no event acknowledged for \(retryFor.components.seconds) s "
                            + "(--retry-for); consumer \(consumer) at \(Format.count(through))")
                    return .failure
                }
                metrics.retried()
                let renewal = waitForRenewal ? "; waiting for renewed credentials in \(authFile ?? "")" : ""
                console.err("relay: \(error)\(renewal); retrying in \(String(format: "%.1f", backoff)) s")
                try? await Task.sleep(for: .seconds(backoff))
                if stop.requested { return .ok }
                backoff = min(backoff * 2, 5)
            }
        }
    }

    /// The server to try at `attempt`, with its credentials: after the first attempt, those
    /// ``authFile`` holds now for a server that takes them from it. A file that cannot be read at
    /// that moment (being replaced, say) leaves the ones read before, and says so.
    private func endpoint(_ attempt: Int) -> NATSEndpoint {
        var endpoint = endpoints[attempt % endpoints.count]
        guard attempt > 0, let authFile, authFileServers.contains(attempt % endpoints.count) else { return endpoint }
        do {
            endpoint.credentials = try ExportCommand.authFile(authFile)
        } catch {
            console.err("relay: \(error.message); keeping the credentials read before")
        }
        return endpoint
    }

    /// One connection's worth: from the checkpoint to the head (and on, with --follow). A lost
    /// connection or a failed publish ends it at once, even while it waits for new events.
    /// `connected` is called once the server has taken the endpoint's credentials.
    private func relayOnce(
        _ stop: StopSignal, endpoint: NATSEndpoint, connected: () -> Void
    ) async throws {
        let connection = try NATSConnection(endpoint: endpoint, name: "campaign-relay-\(consumer)")
        connected()
        defer { connection.close() }
        let jetStream = JetStream(connection)
        do {
            try await jetStream.ensureStream(stream, subjects: ["\(prefix).>"], replicas: replicas)
        } catch let error as NATSError {
            // A stream asked for wrongly (subjects overlapping another stream's, a bad
            // configuration, more replicas than servers or a server outside any cluster can keep,
            // or a stream of that name on other subjects) stays wrong; anything else (a cluster
            // still electing its leader) is retried.
            if case let .jetStream(code, _) = error,
                [10_052, 10_023, 10_065, 10_074, JetStream.nameInUseCode].contains(code)
            {
                throw StreamRefused(reason: error.description)
            }
            throw error
        }
        // An exclusive relay's stream ends with one of this store's messages, or with none: anything
        // else came from another publisher, maybe while this relay was not connected; and this
        // store's last message there must be one of its log (not from a future a restored copy of
        // the store never had).
        if exclusive, let last = try await jetStream.lastMessage(stream) {
            let id = last.headers["Nats-Msg-Id"] ?? ""
            guard id.hasPrefix("\(storeId)-") else { throw StreamRefused(reason: Self.foreign(id, in: stream)) }
            if let problem = try divergence(id, last.payload) { throw StreamRefused(reason: problem) }
        }
        let subscription = try store.subscribe(consumer: consumer, from: .checkpoint)
        let acks = AckWindow(first: subscription.firstPosition)
        metrics.relaying(acks)
        let checkpoint = Checkpoint(subscription, acks)
        let publishing = Task { try await publish(subscription, jetStream, acks, checkpoint, stop) }
        acks.onFailure = { publishing.cancel() }
        connection.onFailure = { _ in publishing.cancel() }
        do {
            try await withTaskCancellationHandler {
                try await publishing.value
            } onCancel: {
                publishing.cancel()
            }
            try await acks.drain()
            if let failure = connection.error, !stop.requested { throw failure }
            try await checkpoint.store()
        } catch {
            // What JetStream acknowledged stays acknowledged: the next attempt starts after it.
            try? await checkpoint.store()
            if let refusal = acks.refusal { throw StreamRefused(reason: refusal) }
            // An exclusive relay's publish refused after a message that is not this store's: another
            // publisher shares the stream, and every retry would be refused the same way. (After
            // one of this store's own, a publish was dropped; with no id, the server lost it in a
            // restart: the next connection's first publish, which expects nothing, mends both.)
            if exclusive, let failure = acks.failure, let last = JetStream.lastId(inRefusal: failure), !last.isEmpty,
                !last.hasPrefix("\(storeId)-")
            {
                throw StreamRefused(reason: Self.foreign(last, in: stream))
            }
            throw error
        }
        if follow && !stop.requested { throw NATSError.connection("the subscription ended") }
    }

    private func publish(
        _ subscription: EventSubscription, _ jetStream: JetStream, _ acks: AckWindow, _ checkpoint: Checkpoint,
        _ stop: StopSignal
    ) async throws {
        var head = try store.head().position
        if !follow, subscription.firstPosition > head { return }
        var keptCheckpoints = KeptCheckpoints(store: store, from: subscription.firstPosition)
        var subjects = SubjectCache(prefix: prefix)
        // An exclusive relay's last publish on this connection, which the next one expects.
        var lastId: String?
        for try await event in subscription {
            try await acks.waitForRoom(Relay.window)
            let position = event.position
            let subject = subjects.subject(tenant: event.tenant, type: event.type)
            var body = [UInt8]()
            body.reserveCapacity(1_024)
            CampaignEngine.appendCloudEvent(event, storeId: storeId, to: &body)
            // A signed checkpoint follows the event at its tree size, on its own subject. Its publish
            // counts for the event's position, so the relay's checkpoint passes the event only once
            // both are acknowledged (a failed one is sent again after a restart). Both are counted
            // before either goes out, so a fast acknowledgement cannot pass the position early.
            let due = try keptCheckpoints.due(through: position)
            acks.sent(position, publishes: 1 + due.count)
            metrics.published(checkpoints: due.count)
            let first = exclusive && lastId == nil
            try publish(
                jetStream, acks, subject, id: "\(storeId)-\(position)", body, for: position, hash: event.hash,
                lastId: &lastId)
            // The first publish of a connection goes out alone: those after it expect it stored.
            if first { try await acks.waitUntil(position, awaits: due.count) }
            for kept in due {
                try publish(
                    jetStream, acks, "\(prefix).audit.checkpoint", id: "\(storeId)-checkpoint-\(kept.size)",
                    Audit.cloudEvent(kept, storeId: storeId).bytes, for: position, lastId: &lastId)
            }
            if acks.contiguous - checkpoint.stored >= 1_000 { try await checkpoint.store() }
            if stop.requested { return }
            if position >= head { head = try store.head().position }
            if position >= head {
                // Caught up: store the checkpoint now, not 1,000 events later. A relay that idles
                // longer than JetStream's duplicate window and then crashes would otherwise send
                // events again that JetStream no longer recognises.
                try await acks.drain()
                try await checkpoint.store()
                if !follow { return }
            }
        }
    }

    /// Publishes one message whose acknowledgement counts for `position`; an exclusive relay's
    /// expects `lastId` (nothing when nil) and leaves its own id there for the next. An event's
    /// message (with its chain `hash`) that JetStream calls a repeat counts only once the message
    /// stored under its id is found to be the same event (``sameEvent(_:_:hash:)``).
    private func publish(
        _ jetStream: JetStream, _ acks: AckWindow, _ subject: String, id: String, _ body: [UInt8],
        for position: UInt64, hash: [UInt8]? = nil, lastId: inout String?
    ) throws {
        let sent = ContinuousClock.now
        let metrics = self.metrics
        let expected = exclusive ? lastId : nil
        if exclusive { lastId = id }
        let stream = self.stream
        do {
            try jetStream.publish(subject, id: id, payload: body, expectedLastId: expected) { result in
                metrics.answered(acknowledged: (try? result.get()) != nil, took: .now - sent)
                guard case let .success(ack) = result, ack.duplicate, let hash else {
                    acks.finished(position, result.map { _ in () })
                    return
                }
                Task {
                    switch await Self.sameEvent(jetStream, stream, ack: ack, hash: hash, id: id) {
                    case nil: acks.finished(position, .success(()))
                    case let .failure(error)?: acks.finished(position, .failure(error))
                    case let .success(reason)?: acks.refuse(position, reason)
                    }
                }
            }
        } catch {
            metrics.answered(acknowledged: false, took: .now - sent)
            acks.finished(position, .failure(error as? NATSError ?? .connection("\(error)")))
            throw error
        }
    }

    /// Whether the message JetStream holds under a repeated event's id (the sequence its duplicate
    /// acknowledgement names) is that event: nil when its CloudEvent has the event's chain `hash`;
    /// why not, when it has another (a copy of the store restored from an older backup publishes an
    /// event of its own under the id of one the original published); the failure, when it could not
    /// be read (the attempt is retried).
    static func sameEvent(
        _ jetStream: JetStream, _ stream: String, ack: JetStream.PublishAck, hash: [UInt8], id: String
    ) async -> Result<String, NATSError>? {
        let stored: JetStream.StoredMessage
        do {
            stored = try await jetStream.message(stream, sequence: ack.sequence)
        } catch {
            return .failure(error as? NATSError ?? .connection("\(error)"))
        }
        let held = chainHash(of: stored.payload)
        let sent = hash.hexString
        guard stored.headers["Nats-Msg-Id"] != id || held != sent else { return nil }
        return .success(
            "stream \(stream) holds \(id) (sequence \(ack.sequence)) with hash \(held ?? "none"), where this store's "
                + "event has \(sent): \(restoredCopy)")
    }

    /// The chain hash a relayed CloudEvent carries (its `hash`, hexadecimal), if it is one.
    static func chainHash(of cloudEvent: [UInt8]) -> String? {
        (try? JSON.parse(cloudEvent))?["hash"]?.stringValue
    }

    /// What a stream holding another event of this store under one of its ids suggests.
    static let restoredCopy = "is this a copy of the store restored from an older backup, whose log went another way?"

    /// Why the stream's last message, this store's `id` with the CloudEvent `payload`, is not one
    /// of the log's: an event past the log's head, or at a position where the log holds another
    /// (its hash differs), or a checkpoint of a larger tree. Nil when it is the log's.
    private func divergence(_ id: String, _ payload: [UInt8]) throws -> String? {
        let name = id.dropFirst(storeId.count + 1)
        let head = try store.head().position
        let restored = Self.restoredCopy
        if name.hasPrefix("checkpoint-"), let size = UInt64(name.dropFirst("checkpoint-".count)), size > head {
            return "stream \(stream) holds this store's checkpoint of \(Format.count(size)) events, past the log's "
                + "head at \(Format.count(head)): \(restored)"
        }
        guard let position = UInt64(name) else { return nil }
        guard position <= head else {
            return "stream \(stream) holds this store's event \(Format.count(position)), past the log's head at "
                + "\(Format.count(head)): \(restored)"
        }
        let held = Self.chainHash(of: payload)
        let logged = try store.read { try $0.event(at: position) }?.hash.hexString
        guard let held, held != logged else { return nil }
        return "stream \(stream) holds this store's event \(Format.count(position)) with hash \(held), where the "
            + "log's has \(logged ?? "none"): \(restored)"
    }

    /// Why an exclusive relay stops: the stream's last message, `id`, is another publisher's.
    static func foreign(_ id: String, in stream: String) -> String {
        "stream \(stream) holds a message this store did not publish (Nats-Msg-Id \(id.isEmpty ? "none" : id)) after "
            + "its own: --exclusive needs a stream no other publisher writes to"
    }

    /// A tenant as one subject token (anything but letters, digits, `-` and `_` becomes `_`).
    static func token(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { isToken(String($0)) ? $0 : "_" }))
    }

    /// An event type as subject tokens (`campaign.scheduled` stays two tokens).
    static func subjectPart(_ type: String) -> String {
        type.split(separator: ".", omittingEmptySubsequences: false).map { token(String($0)) }.joined(separator: ".")
    }
}

/// The relay's subjects (`<prefix>.<tenant>.<type>`) as made before, by tenant and type: a log has
/// few of each, and making one escapes both a scalar at a time.
struct SubjectCache {
    let prefix: String
    private var made: [String: [String: String]] = [:]
    private var count = 0

    init(prefix: String) { self.prefix = prefix }

    /// The subject of an event of `type` in `tenant`'s streams.
    mutating func subject(tenant: String, type: String) -> String {
        if let known = made[tenant]?[type] { return known }
        // A log of very many tenants keeps at most 10,000 subjects made.
        if count >= 10_000 {
            made.removeAll()
            count = 0
        }
        let subject = "\(prefix).\(Relay.token(tenant)).\(Relay.subjectPart(type))"
        made[tenant, default: [:]][type] = subject
        count += 1
        return subject
    }
}

/// SIGINT or SIGTERM was received.
final class StopSignal: Sendable {
    private let flag = Atomic(false)
    func request() { flag.store(true, ordering: .releasing) }
    var requested: Bool { flag.load(ordering: .acquiring) }
}

/// Publishes under way and acknowledged: how far the log is acknowledged without a gap.
///
/// A publish JetStream never answers (the stream's leader died with it, and the server it was
/// forwarded through reports nothing) would hold its place in the window for ever: once no answer
/// has come for ``replyTimeout`` while publishes are under way, every wait here fails with
/// ``NATSError/timeout``, and the relay retries from its checkpoint.
final class AckWindow: Sendable {
    private struct State {
        var acknowledgedThrough: UInt64
        var ahead = Set<UInt64>()
        /// Acknowledgements still awaited, by position.
        var outstanding = [UInt64: Int]()
        var inFlight = 0
        var failure: NATSError?
        var failureHandler: (@Sendable () -> Void)?
        /// Why the stream cannot be relayed into, once a repeat was found to be another event.
        var refusal: String?
        /// When the last answer came, or the window last went from empty to busy.
        var lastAnswer = ContinuousClock.now
    }
    private let window: Mutex<State>
    /// How long publishes may be under way with no answer before the waits fail.
    let replyTimeout: Duration

    init(first: UInt64, replyTimeout: Duration = .seconds(5)) {
        window = Mutex(State(acknowledgedThrough: first - 1))
        self.replyTimeout = replyTimeout
    }

    /// Called once, when a publish fails.
    var onFailure: (@Sendable () -> Void)? {
        get { window.withLock { $0.failureHandler } }
        set { window.withLock { $0.failureHandler = newValue } }
    }

    /// The last position such that it and every one before it are acknowledged.
    var contiguous: UInt64 { window.withLock { $0.acknowledgedThrough } }

    /// `publishes` messages for the event at `position` are going out (the event, and a checkpoint
    /// that follows it); the position counts as acknowledged once all of theirs have arrived.
    func sent(_ position: UInt64, publishes: Int = 1) {
        window.withLock { state in
            if state.inFlight == 0 { state.lastAnswer = .now }
            state.inFlight += publishes
            state.outstanding[position, default: 0] += publishes
        }
    }

    /// One acknowledgement for `position` arrived (or its publish failed).
    func finished(_ position: UInt64, _ result: Result<Void, NATSError>) {
        let failed = window.withLock { state -> (@Sendable () -> Void)? in
            state.inFlight -= 1
            state.lastAnswer = .now
            if case let .failure(error) = result {
                guard state.failure == nil else { return nil }
                state.failure = error
                return state.failureHandler
            }
            let left = (state.outstanding[position] ?? 1) - 1
            guard left == 0 else {
                state.outstanding[position] = left
                return nil
            }
            state.outstanding[position] = nil
            state.ahead.insert(position)
            while state.ahead.remove(state.acknowledgedThrough + 1) != nil { state.acknowledgedThrough += 1 }
            return nil
        }
        failed?()
    }

    /// The first publish that failed, if one did.
    var failure: NATSError? { window.withLock { $0.failure } }

    /// Why the stream cannot be relayed into, if a repeat was found to be another event.
    var refusal: String? { window.withLock { $0.refusal } }

    /// The publish for `position` was a repeat of another event: the relay stops (``refusal``).
    func refuse(_ position: UInt64, _ reason: String) {
        window.withLock { state in
            if state.refusal == nil { state.refusal = reason }
        }
        finished(position, .failure(.jetStream(code: 0, description: reason)))
    }

    /// Waits until `done` holds for the window; throws a publish's failure, or
    /// ``NATSError/timeout`` once publishes have been under way for ``replyTimeout`` with no answer.
    private func wait(until done: (borrowing State) -> Bool) async throws {
        while true {
            let (finished, failure, stalled) = window.withLock { state in
                (done(state), state.failure, state.inFlight > 0 && .now - state.lastAnswer > replyTimeout)
            }
            if let failure { throw failure }
            if finished { return }
            if stalled { throw NATSError.timeout }
            await AckWindow.pause()
        }
    }

    /// Waits until at most `left` of the publishes for `position` are awaited.
    func waitUntil(_ position: UInt64, awaits left: Int) async throws {
        try await wait { ($0.outstanding[position] ?? 0) <= left }
    }

    /// Waits until fewer than `limit` publishes are under way.
    func waitForRoom(_ limit: Int) async throws {
        try await wait { $0.inFlight < limit }
    }

    /// Waits for every publish under way.
    func drain() async throws {
        try await wait { $0.inFlight == 0 }
    }

    /// A millisecond's wait that a stop (which cancels the relay's task) does not cut short, so
    /// the acknowledgements under way can still arrive.
    static func pause() async {
        await Task.detached { try? await Task.sleep(for: .milliseconds(1)) }.value
    }
}

/// The consumer's stored checkpoint, moved up to what is acknowledged without a gap.
///
/// Stores run one at a time (each is a writer job, and only the relay's task calls ``store()``).
final class Checkpoint: Sendable {
    private let position: Mutex<UInt64>
    private let subscription: EventSubscription
    private let acks: AckWindow

    init(_ subscription: EventSubscription, _ acks: AckWindow) {
        self.subscription = subscription
        self.acks = acks
        position = Mutex(subscription.firstPosition - 1)
    }

    /// The position stored last.
    var stored: UInt64 { position.withLock { $0 } }

    /// Stores how far the log is acknowledged without a gap, when that is further.
    func store() async throws {
        let reached = acks.contiguous
        guard reached > stored else { return }
        try await subscription.ack(reached)
        position.withLock { $0 = max($0, reached) }
    }
}

/// JetStream refused to make the stream, or an exclusive relay found another publisher in it: a
/// configuration to fix, not a failure to retry.
struct StreamRefused: Error {
    /// What is wrong, for the operator.
    let reason: String
}
