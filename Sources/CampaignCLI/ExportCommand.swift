import CampaignDomain
import CampaignEngine
import EventStore
import Foundation
import NATS

/// `campaign export`: the log as CloudEvents, one JSON object per line, for `kcat`, a broker's
/// CLI or any tool that reads JSON lines.
enum ExportCommand {
    static let help = """
        usage: campaign export [--data DIR] [--format cloudevents] [--tenant T] [--stream ID] [--actor A]
                               [--type TYPE] [--from TIME|POSITION] [--to TIME|POSITION] [--limit N]
                               [--consumer NAME] [--follow]
               campaign export --to nats://[USER:PASSWORD@|TOKEN@]HOST:PORT[,nats://…] --stream NAME
                               [--subject-prefix campaign] [--replicas N] [--consumer NAME] [--follow]
                               [--exclusive] [--retry-for SECONDS] [--auth-file FILE] [--data DIR]
                               [--metrics FILE [--metrics-every SECONDS]
                               [--metrics-label NAME=VALUE]]

        Writes each event as a CloudEvent 1.0 (structured JSON) on its own line, in log order: id
        <storeId>-<position>, type, subject (the stream), time, sequence (the position, zero-padded),
        data (the payload) and the envelope and chain hashes as extensions (README, "Change feed").
        Filters are replay's. --follow keeps going with every event committed from then on, until
        interrupted. --consumer NAME resumes after NAME's checkpoint and stores the position written
        (at least once: after a crash, events after the last stored position are written again); with
        --to it is never stored past the first event after --to. A time --to reads the log to its head
        (a later position can carry an earlier time); with --follow it ends a minute past that time.

        With --to, the relay publishes each event to the JetStream stream NAME (made when missing,
        subjects <prefix>.<tenant>.<type>) with the header Nats-Msg-Id = the CloudEvent id, so
        JetStream drops a repeat; up to 256 publishes are in flight, and the consumer's checkpoint
        (default nats-NAME) advances only past acknowledged events. A broker that goes away, or
        that leaves publishes unanswered for 5 s (a stream leader that died with them), is
        retried with backoff and the relay resumes from its checkpoint; SIGINT or SIGTERM stops it
        after the acknowledgements under way. Without --follow it stops once the log is relayed.
        --retry-for SECONDS: when no event has been acknowledged for that long and the last attempt
        failed, it stops retrying and exits 1 (default: 300 without --follow; with --follow it
        retries for ever unless given; 0 gives up at the first failure).
        As it ends, it prints how many events the run relayed and where the consumer stands.
        --metrics FILE writes the relay's metrics in Prometheus's text format (README, "Metrics":
        connected, publishes and acknowledgements, their latency, the lag behind the log), labelled
        with the consumer, when it starts, every --metrics-every seconds (1–3600, default 10) and as
        it ends, each time whole (a temporary file renamed over FILE); --metrics-label NAME=VALUE
        adds a label of the operator's to every sample.
        Several URLs (a cluster's members) are tried in turn; --replicas makes the stream with that
        many copies.
        A cluster that loses a stream's leader with publishes in flight can drop one of them and
        store later ones; sent again, the dropped event lands after them. --exclusive, for a stream
        this relay alone publishes to, keeps the stream in log order even then: each publish carries
        Nats-Expected-Last-Msg-Id, the id of the one before it, so JetStream refuses what would land
        out of order and the retry sends it again in order (the first publish of each connection goes
        out alone). It exits 1 when the stream's last message is another publisher's, or an event
        this store's log does not hold (a copy of the store restored from an older backup). Shards
        sharing one stream cannot use it (README, "Scaling out").

        A server that asks for credentials gets the URL's (USER:PASSWORD@ or TOKEN@, percent-encoded)
        or else --auth-file's: a file only its owner may read (chmod 600), either a NATS credentials
        file (NAME.creds: a user's JWT and seed, for a server in operator mode) or the lines user=NAME
        and password=SECRET, or token=SECRET, or nkey=SEED (a user's NKEY seed, SU…, whose public key
        U… the server lists), so no secret is on the command line for other users to read.
        The file is read again whenever the relay reconnects, so credentials renewed in it (a new
        .creds as the JWT expires) reach a running --follow relay; once the server has taken the
        file's credentials, a refusal of them (expired, revoked) is retried like a lost connection
        until the file holds credentials the server takes (or --retry-for runs out).
        Credentials missing or refused at the start, or a user the server does not let publish, exit
        1 at once; a server that requires TLS is refused (this client does not speak TLS). No message
        shows a password, token or seed.
        """

    /// Reads `--auth-file`: a NATS credentials file (`NAME.creds`, a user's JWT and seed, as `nsc`
    /// writes it), or the lines `user=NAME` and `password=SECRET`, or `token=SECRET`, or
    /// `nkey=SEED` (a user's NKEY seed, `SU…`), with blank lines and lines starting with `#`
    /// skipped; from a file no one but its owner may read.
    /// A file that cannot be read, is open to others, or holds anything else is a usage error
    /// that names the line, never its secret.
    static func authFile(_ path: String) throws(Arguments.UsageError) -> NATSEndpoint.Credentials {
        var status = stat()
        guard stat(path, &status) == 0, let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw CLI.usage("--auth-file \(path): cannot be read")
        }
        guard status.st_mode & 0o077 == 0 else {
            throw CLI.usage(
                "--auth-file \(path): others may read it (mode \(String(status.st_mode & 0o777, radix: 8))); "
                    + "chmod 600 it")
        }
        do {
            if let credentials = try NATSEndpoint.credentialsFile(text) { return credentials }
        } catch {
            throw CLI.usage("--auth-file \(path): a credentials file whose seed is \(error)")
        }
        var values = [String: String]()
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = line.hasSuffix("\r") ? line.dropLast() : line
            if line.allSatisfy(\.isWhitespace) || line.hasPrefix("#") { continue }
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(parts[0])
            guard parts.count == 2, !parts[1].isEmpty, ["user", "password", "token", "nkey"].contains(key),
                values[key] == nil
            else {
                throw CLI.usage(
                    "--auth-file \(path): line \(number + 1) is not user=NAME, password=SECRET, token=SECRET or "
                        + "nkey=SEED (each once)")
            }
            values[key] = String(parts[1])
        }
        switch (values["user"], values["password"], values["token"], values["nkey"]) {
        case let (user?, password?, nil, nil): return .user(user, password: password)
        case let (nil, nil, token?, nil): return .token(token)
        case let (nil, nil, nil, seed?):
            do {
                return .nkey(try NATSUserKey(seed: seed))
            } catch {
                throw CLI.usage("--auth-file \(path): nkey= is \(error)")
            }
        default: throw CLI.usage("--auth-file \(path): give user= and password=, or token= alone, or nkey= alone")
        }
    }

    /// `--consumer`, checked before any store is opened: a malformed name is a usage error.
    static func consumerName(_ options: [String: String]) throws -> String? {
        guard let name = options["consumer"] else { return nil }
        if let problem = EventStore.consumerNameProblem(name) { throw CLI.usage("--consumer: \(problem)") }
        return name
    }

    static func run(_ arguments: Arguments, console: any Console) async throws -> CLI.Exit {
        guard arguments.positionals.isEmpty else { throw CLI.usage("export takes options only") }
        let options = arguments.options
        // --to is replay's upper bound, or, as a nats:// URL, where the relay publishes.
        if let url = options["to"], url.hasPrefix("nats://") {
            guard let name = options["stream"], isToken(name) else {
                throw CLI.usage("--to needs --stream NAME (letters, digits, '-' and '_'), the JetStream stream")
            }
            let prefix = options["subject-prefix"] ?? "campaign"
            guard !prefix.isEmpty, prefix.split(separator: ".", omittingEmptySubsequences: false).allSatisfy(isToken)
            else { throw CLI.usage("--subject-prefix takes dot-separated tokens of letters, digits, '-' and '_'") }
            for option in ["tenant", "actor", "type", "from", "limit"] where options[option] != nil {
                throw CLI.usage("the relay takes the whole log (no --\(option)); filter downstream by subject")
            }
            let parsed = url.split(separator: ",").map { NATSEndpoint(url: String($0)) }
            var endpoints = parsed.compactMap { $0 }
            guard endpoints.count == parsed.count else {
                throw CLI.usage(
                    "--to takes nats://HOST:PORT, nats://USER:PASSWORD@HOST:PORT or nats://TOKEN@HOST:PORT, or "
                        + "several separated by commas (a cluster)")
            }
            let authFileServers = Set(endpoints.indices.filter { endpoints[$0].credentials == nil })
            if let file = options["auth-file"] {
                let credentials = try authFile(file)
                for index in authFileServers { endpoints[index].credentials = credentials }
            }
            let replicas =
                try options["replicas"].map { text throws(Arguments.UsageError) -> Int in
                    guard let value = Int(text), (1...5).contains(value) else {
                        throw CLI.usage("--replicas takes 1 to 5")
                    }
                    return value
                } ?? 1
            let follow = arguments.flags.contains("follow")
            let exclusive = arguments.flags.contains("exclusive")
            let retryFor =
                try options["retry-for"].map { text throws(Arguments.UsageError) -> Duration in
                    guard let seconds = Int(text), (0...31_536_000).contains(seconds) else {
                        throw CLI.usage("--retry-for takes a whole number of seconds, 0 to 31536000")
                    }
                    return .seconds(seconds)
                } ?? (follow ? nil : .seconds(300))
            let consumer = try consumerName(options) ?? "nats-\(name)"
            if options["consumer"] == nil, EventStore.consumerNameProblem(consumer) != nil {
                throw CLI.usage("the stream name makes no consumer name (nats-\(name)); give --consumer NAME")
            }
            let metricsOptions = try MetricsFile.options(arguments)
            let store = try CLI.openStore(arguments, readOnly: false)
            defer { store.close() }
            let metrics = RelayMetrics(store: store, consumer: consumer)
            let file = try metricsOptions.map {
                let labels = $0.labels
                return try MetricsFile(path: $0.path, every: $0.every) {
                    try metrics.prometheusText(constantLabels: labels)
                }
            }
            // Before the store closes (defers run last first): the last write reads the open store.
            defer { file?.stop() }
            var relay = Relay(
                store: store, storeId: try store.storeId(), endpoints: endpoints, stream: name, prefix: prefix,
                consumer: consumer, follow: follow, console: console, metrics: metrics)
            relay.replicas = replicas
            relay.exclusive = exclusive
            relay.retryFor = retryFor
            relay.authFile = options["auth-file"]
            relay.authFileServers = authFileServers
            return try await relay.run()
        }
        guard (options["format"] ?? "cloudevents") == "cloudevents" else {
            throw CLI.usage("--format takes cloudevents (the only format so far)")
        }
        let (filter, limit) = try ReplayCommand.Filter.parse(options)
        let consumer = try consumerName(options)
        let follow = arguments.flags.contains("follow")
        for option in [
            "subject-prefix", "replicas", "retry-for", "auth-file", "metrics", "metrics-every", "metrics-label",
        ]
        where options[option] != nil {
            throw CLI.usage("--\(option) goes with --to nats://…")
        }
        if arguments.flags.contains("exclusive") { throw CLI.usage("--exclusive goes with --to nats://…") }

        // Storing a consumer's checkpoint writes, and a store made before store ids gets its id on
        // the first writable open; anything else reads.
        var store = try CLI.openStore(arguments, readOnly: consumer == nil)
        var storeId = try? store.storeId()
        if storeId == nil {
            store.close()
            store = try CLI.openStore(arguments, readOnly: false)
            storeId = try store.storeId()
        }
        defer { store.close() }
        let id = storeId!
        var start: UInt64 = 1
        if case let .position(p)? = filter.from { start = p }

        var written = 0
        var checkpoints = KeptCheckpoints(store: store, from: start)
        // Lines are written 64 KiB at a time, and whenever the export waits or stores a checkpoint.
        var lines = [UInt8]()
        lines.reserveCapacity(1 << 17)
        func flush() throws {
            guard !lines.isEmpty else { return }
            try console.out(encodedLines: lines)
            lines.removeAll(keepingCapacity: true)
        }
        /// Whether the export ends before `event` (see ``ReplayCommand/Filter/isPastEnd(_:settle:)``).
        func ends(before event: RecordedEvent) -> Bool {
            filter.isPastEnd(event, settle: follow ? ReplayCommand.Filter.timeSettle : .infinity)
        }
        func write(_ event: RecordedEvent) throws -> Bool {
            if filter.admits(event) {
                CampaignEngine.appendCloudEvent(event, storeId: id, to: &lines)
                lines.append(UInt8(ascii: "\n"))
                written += 1
            }
            // A signed checkpoint follows the event at its tree size, whatever the filter.
            for checkpoint in try checkpoints.due(through: event.position) {
                Audit.cloudEvent(checkpoint, storeId: id).append(to: &lines)
                lines.append(UInt8(ascii: "\n"))
            }
            if lines.count >= 1 << 16 { try flush() }
            return written < limit
        }
        do {
            guard consumer != nil || follow else {
                try store.forEachEvent(from: start) { try !ends(before: $0) && write($0) }
                try flush()
                return .ok
            }
            let subscription = try store.subscribe(
                consumer: consumer ?? "export", from: consumer == nil ? .position(start) : .checkpoint)
            var last: UInt64 = 0
            var acked: UInt64 = 0
            // The checkpoint never passes the first event after --to: it was not written (nor, with a
            // time bound, any later one; an earlier-timed event after it is written now and again by
            // the consumer's next export: at least once).
            var ackLimit = UInt64.max
            var head = try store.head().position
            // Without --follow, a consumer already at the head has nothing to wait for.
            if !follow, subscription.firstPosition > head { return .ok }
            for try await event in subscription {
                if ends(before: event) { break }
                if ackLimit == .max, filter.isPastEnd(event, settle: 0) { ackLimit = event.position - 1 }
                let more = try write(event)
                last = event.position
                // Caught up with the head as it is now (read again only once the old one is reached).
                if last >= head { head = try store.head().position }
                let caughtUp = last >= head
                // What is written is flushed before the export waits for new events and before a
                // checkpoint passes it (at least once: never stored past a line not yet written).
                if caughtUp { try flush() }
                // A consumer's checkpoint is stored every 1,000 events and when it has caught up: one
                // writer transaction per batch, not per event.
                let ackable = min(last, ackLimit)
                if consumer != nil, ackable > acked, ackable - acked >= 1_000 || caughtUp {
                    try flush()
                    try await subscription.ack(ackable)
                    acked = ackable
                }
                if !more || (!follow && caughtUp) { break }
            }
            try flush()
            let ackable = min(last, ackLimit)
            if consumer != nil, ackable > acked { try await subscription.ack(ackable) }
            return .ok
        } catch {
            // What was read before a failure is still written, as it was a line at a time; no
            // checkpoint passes it.
            try? flush()
            throw error
        }
    }
}

/// `campaign subscriptions`: consumers of the change feed, their checkpoints and how far behind
/// the head they are.
enum SubscriptionsCommand {
    static let help = """
        usage: campaign subscriptions [--data DIR] [--json]
               campaign subscriptions --remove NAME [--data DIR]

        Lists each consumer that has stored a checkpoint (campaign export --consumer, or a host's
        engine.subscribe), with its checkpoint and its lag (events committed after it).
        --remove NAME forgets a retired consumer: its checkpoint is deleted, so it is no longer
        listed (one still running stores it again at its next acknowledgement; one that comes back
        starts from the beginning). A name no consumer has is RESOURCE_NOT_FOUND (exit 1).
        """

    static func run(_ arguments: Arguments, console: any Console) async throws -> CLI.Exit {
        guard arguments.positionals.isEmpty else { throw CLI.usage("subscriptions takes options only") }
        if let name = arguments.options["remove"] {
            if let problem = EventStore.consumerNameProblem(name) { throw CLI.usage("--remove: \(problem)") }
            if arguments.flags.contains("json") { throw CLI.usage("--json lists; it does not go with --remove") }
            let store = try CLI.openStore(arguments, readOnly: false)
            defer { store.close() }
            guard let position = try await store.removeConsumer(name) else {
                throw CampaignError(.resourceNotFound, "no consumer named \(name) has stored a checkpoint")
            }
            console.out("removed consumer \(name) (its checkpoint was \(Format.count(position)))")
            return .ok
        }
        let store = try CLI.openStore(arguments)
        defer { store.close() }
        let head = try store.head().position
        let consumers = try store.consumers()
        if arguments.flags.contains("json") {
            console.out(
                JSON.object([
                    "head": .number(Double(head)),
                    "consumers": .array(
                        consumers.map { consumer in
                            .object([
                                "name": .string(consumer.name), "checkpoint": .number(Double(consumer.position)),
                                "lag": .number(Double(head - min(head, consumer.position))),
                            ])
                        }),
                ]).text)
            return .ok
        }
        let rows = consumers.map { consumer in
            [consumer.name, Format.count(consumer.position), Format.count(head - min(head, consumer.position))]
        }
        Format.table(["CONSUMER", "CHECKPOINT", "LAG"], rows).forEach(console.out)
        console.out(
            "head \(Format.count(head)); \(Format.count(consumers.count)) consumer\(consumers.count == 1 ? "" : "s")")
        return .ok
    }
}

/// A NATS subject token (or stream name): letters, digits, `-` and `_`.
func isToken<S: StringProtocol>(_ text: S) -> Bool {
    !text.isEmpty
        && text.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                true
            default: false
            }
        }
}

/// The signed checkpoints kept in a store, handed out in tree-size order as the change feed passes
/// their sizes; read in pages, and looked for again only after the last known one is passed.
struct KeptCheckpoints {
    let store: EventStore
    private var pending: [StoredCheckpoint] = []
    private var next: UInt64
    private var lookedAt: UInt64 = 0
    private var exhausted = false

    init(store: EventStore, from position: UInt64) {
        self.store = store
        next = position
    }

    /// The checkpoints with sizes from the last call's position up to `position`.
    mutating func due(through position: UInt64) throws -> [StoredCheckpoint] {
        // Read the next page when this one is used up; once none are left, look for new ones at most
        // every 1,000 events (a checkpoint taken meanwhile follows a later event).
        if pending.isEmpty, !exhausted || position >= lookedAt {
            pending = try store.keptCheckpoints(from: next, limit: 64)
            exhausted = pending.count < 64
            lookedAt = position + 1_000
        }
        var due = [StoredCheckpoint]()
        while let first = pending.first, first.size <= position {
            due.append(pending.removeFirst())
        }
        if let last = due.last { next = last.size + 1 }
        return due
    }
}
