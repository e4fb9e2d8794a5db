import CampaignDomain
import CampaignProjections
import EventStore
import Foundation
import Synchronization

/// What an engine has done since it opened and how its store and read models stand now: the
/// figures a host exports to its monitoring (``prometheusText(prefix:constantLabels:)``) and alerts on.
///
/// Counters cover this engine (this process) since it opened; the store's and the read models'
/// figures (head, checkpoints, map use) are read from the store, so they include other processes'
/// writes. No figure names a tenant, a subject or anything a client sent: a label's values come
/// from the engine's own lists (command and query names, catalogue codes, projection names).
public struct EngineMetrics: Sendable, Equatable {
    /// How many requests were answered with one command or query, status and code.
    public struct RequestCount: Sendable, Equatable {
        /// The command's or query's wire name (`campaign.create`, `segment.members`), or
        /// ``unparsed`` for a request refused before it named one the engine knows.
        public var name: String
        /// The HTTP status answered.
        public var status: Int
        /// The catalogue code of a refusal; nil for a success.
        public var code: ErrorCode?
        /// How many.
        public var count: UInt64

        /// A count of `count` answers to `name` with `status` and `code`.
        public init(name: String, status: Int, code: ErrorCode?, count: UInt64) {
            self.name = name
            self.status = status
            self.code = code
            self.count = count
        }
    }

    /// The name counted for a request refused before its command or query was known (not JSON, an
    /// unknown command, a principal missing): a client's text never becomes a label.
    public static let unparsed = "unparsed"

    /// Answers by command or query, status and code, ordered by name, then status, then code.
    public var requests: [RequestCount]
    /// How long commands took inside the engine, from the request's arrival to its answer (the
    /// wait for the writer and the flush included; the host's encoding of the answer not).
    public var commandDurations: DurationHistogram
    /// How long queries took inside the engine (a catch-up read model's catch-up included).
    public var queryDurations: DurationHistogram
    /// The writer's figures: group commits, requests queued and in flight, how long each batch of
    /// appends and each other write job took.
    public var store: StoreStatistics
    /// The log's last position.
    public var head: UInt64
    /// Each read model's version, checkpoint and lag (``ProjectionStatus/lag``; a catch-up read
    /// model falls behind under load and catches up in the background).
    public var projections: [ProjectionStatus]
    /// The map's size and the bytes in use. The map doubles when it fills, up to
    /// ``maximumMapSize``; a store at that size (or on a full disk) refuses writes
    /// (`SERVICE_UNAVAILABLE`).
    public var usage: StoreUsage
    /// The size the map may grow to (`StoreOptions.maximumMapSize`).
    public var maximumMapSize: Int
    /// Free bytes on the store's file system for an unprivileged writer (nil where they cannot be
    /// read): LMDB writes pages into `data.mdb` as the map fills, and a full disk refuses appends
    /// before the map reaches its maximum.
    public var filesystemFreeBytes: Int?
    /// Events folded by aggregate loads since the engine opened (snapshots keep it flat).
    public var eventsFoldedByLoads: UInt64
    /// Why the store refuses appends, or nil while it accepts them: its head record or its chain
    /// failed to verify (kept across restarts until `campaign verify --record` passes).
    public var writesRefused: String?
    /// Whether the rate-limit counts are shared with the other processes on the store (the file
    /// `rate-windows` beside it); false where the file cannot be used, and each process counts alone.
    public var rateLimitShared: Bool
    /// What this engine's scheduler ticks did (``CampaignEngine/tick(now:tenant:requestId:)``, and
    /// `system.tick` through it).
    public var scheduler: SchedulerMetrics

    /// Requests answered in all.
    public var requestsAnswered: UInt64 { requests.reduce(0) { $0 + $1.count } }

    /// Refusals by catalogue code, whatever the command or query.
    public var refusals: [ErrorCode: UInt64] {
        var refusals = [ErrorCode: UInt64]()
        for request in requests { if let code = request.code { refusals[code, default: 0] += request.count } }
        return refusals
    }

    /// Requests answered with `name` (any status), or with `name` and `code` when one is given.
    public func count(_ name: String, code: ErrorCode? = nil) -> UInt64 {
        requests.filter { $0.name == name && (code == nil || $0.code == code) }.reduce(0) { $0 + $1.count }
    }

    /// The metrics in Prometheus's text exposition format (version 0.0.4), each name starting with
    /// `prefix` and an underscore, ready for a host's `/metrics` endpoint; every sample also carries
    /// `constantLabels` (see ``PrometheusText/constantLabels``).
    public func prometheusText(prefix: String = "campaign", constantLabels: [String: String] = [:]) -> String {
        var text = PrometheusText(prefix: prefix, constantLabels: constantLabels)
        text.family("requests_total", .counter, "Requests answered, by command or query, status and catalogue code.")
        for request in requests {
            text.sample(
                "requests_total",
                ["name": request.name, "status": String(request.status), "code": request.code?.rawValue ?? ""],
                Double(request.count))
        }
        text.family(
            "request_duration_seconds", .histogram, "Time from a request's arrival to its answer, inside the engine.")
        text.histogram("request_duration_seconds", ["kind": "command"], commandDurations)
        text.histogram("request_duration_seconds", ["kind": "query"], queryDurations)
        text.family(
            "append_transaction_duration_seconds", .histogram,
            "Time of each group commit, from its transaction's begin to the commit's return, the flush included.")
        text.histogram("append_transaction_duration_seconds", [:], store.appendTransactionDurations)
        text.family(
            "writer_job_duration_seconds", .histogram,
            "Time of each other job of the writer thread (snapshots, catch-up and rebuild batches); appends wait.")
        text.histogram("writer_job_duration_seconds", [:], store.writerJobDurations)
        text.family("group_commit_transactions_total", .counter, "Write transactions of appends committed.")
        text.sample("group_commit_transactions_total", [:], Double(store.groupCommitTransactions))
        text.family("group_commit_requests_total", .counter, "Append requests answered by the group committer.")
        text.sample("group_commit_requests_total", [:], Double(store.groupCommitRequests))
        text.family("writer_queued_requests", .gauge, "Append requests waiting for the writer now.")
        text.sample("writer_queued_requests", [:], Double(store.queuedRequests))
        text.family("writer_in_flight_requests", .gauge, "Append requests in the transaction being committed now.")
        text.sample("writer_in_flight_requests", [:], Double(store.inFlightRequests))
        text.family(
            "writer_busy_seconds", .gauge,
            "How long the writer has been on its current transaction or job (0 while idle); a hung flush grows it.")
        text.sample("writer_busy_seconds", [:], DurationHistogram.seconds(store.writerBusyFor))
        text.family("store_writes_refused", .gauge, "1 while the store refuses appends (its chain failed to verify).")
        text.sample("store_writes_refused", [:], writesRefused == nil ? 0 : 1)
        text.family(
            "rate_limit_shared", .gauge,
            "1 while rate-limit counts are shared with the store's other processes, 0 when this one counts alone.")
        text.sample("rate_limit_shared", [:], rateLimitShared ? 1 : 0)
        text.family("log_head_position", .gauge, "The log's last position.")
        text.sample("log_head_position", [:], Double(head))
        text.family("projection_checkpoint_position", .gauge, "The last position applied to each read model.")
        for projection in projections {
            text.sample(
                "projection_checkpoint_position", Self.labels(projection), Double(projection.checkpoint))
        }
        text.family("projection_lag_events", .gauge, "Events each read model has not applied yet.")
        for projection in projections {
            text.sample("projection_lag_events", Self.labels(projection), Double(projection.lag))
        }
        text.family("projection_rebuilding", .gauge, "1 while a rebuild of the read model is under way, else 0.")
        for projection in projections {
            text.sample(
                "projection_rebuilding", Self.labels(projection), projection.rebuildCheckpoint == nil ? 0 : 1)
        }
        text.family("store_map_size_bytes", .gauge, "The LMDB map's size.")
        text.sample("store_map_size_bytes", [:], Double(usage.mapSize))
        text.family("store_used_bytes", .gauge, "Bytes of the map in use.")
        text.sample("store_used_bytes", [:], Double(usage.usedBytes))
        text.family(
            "store_map_maximum_bytes", .gauge, "The size the map may grow to; past it writes are refused.")
        text.sample("store_map_maximum_bytes", [:], Double(maximumMapSize))
        if let filesystemFreeBytes {
            text.family(
                "store_filesystem_free_bytes", .gauge,
                "Free bytes on the store's file system; a full disk refuses writes.")
            text.sample("store_filesystem_free_bytes", [:], Double(filesystemFreeBytes))
        }
        text.family("aggregate_load_events_folded_total", .counter, "Events folded by aggregate loads.")
        text.sample("aggregate_load_events_folded_total", [:], Double(eventsFoldedByLoads))
        scheduler.write(to: &text)
        return text.output
    }

    private static func labels(_ projection: ProjectionStatus) -> [String: String] {
        ["projection": projection.name, "mode": projection.mode == .inline ? "inline" : "catch-up"]
    }
}

/// What an engine's scheduler ticks did since it opened: a host that runs
/// ``CampaignEngine/tick(now:tenant:requestId:)`` from a timer alerts when ticks stop completing
/// (``lastCompletedAt``), fail, or grow slow.
public struct SchedulerMetrics: Sendable, Equatable {
    /// How many pieces of due work ended one way (``TickReport/Item``).
    public struct ItemCount: Sendable, Equatable {
        /// `campaign`, `post` or `memberships`, as in ``TickReport/Item/kind``.
        public var kind: String
        /// For a campaign `activated` or `failed`; for a post its state afterwards (`published`,
        /// `failed`, `cancelled`, `publishing` while a retry waits, `unknown` where it could not be
        /// read); for memberships `refreshed` or `failed`.
        public var outcome: String
        /// The catalogue code of the item's error; nil when it had none.
        public var code: ErrorCode?
        /// How many.
        public var count: UInt64

        /// A count of `count` items of `kind` that ended with `outcome` and `code`.
        public init(kind: String, outcome: String, code: ErrorCode?, count: UInt64) {
            self.kind = kind
            self.outcome = outcome
            self.code = code
            self.count = count
        }
    }

    /// Ticks that ran to their end (whatever their items' outcomes).
    public var ticksCompleted: UInt64 = 0
    /// Ticks that threw: a `now` before the engine clock, or due work that could not be read.
    public var ticksFailed: UInt64 = 0
    /// How long each tick took, completed or not.
    public var durations = DurationHistogram()
    /// The engine clock's time of the last completed tick (the tick's `now`); nil before one.
    public var lastCompletedAt: Date?
    /// Items by kind, outcome and code, ordered by kind, then outcome, then code.
    public var items: [ItemCount] = []
    /// Relative-date segment memberships re-evaluated (``TickReport/membershipsRefreshed``).
    public var membershipsRefreshed: UInt64 = 0
    /// Idempotency records deleted past their retention (``TickReport/idempotencyRecordsPruned``).
    public var idempotencyRecordsPruned: UInt64 = 0

    /// The figures of an engine that has run no tick.
    public init() {}

    /// Items of `kind` (with `outcome`, when one is given) in all.
    public func count(_ kind: String, outcome: String? = nil) -> UInt64 {
        items.filter { $0.kind == kind && (outcome == nil || $0.outcome == outcome) }.reduce(0) { $0 + $1.count }
    }

    /// Adds one tick's report.
    mutating func add(_ report: TickReport) {
        ticksCompleted += 1
        lastCompletedAt = report.now
        membershipsRefreshed += UInt64(report.membershipsRefreshed)
        idempotencyRecordsPruned += UInt64(report.idempotencyRecordsPruned)
        for item in report.items {
            let outcome =
                switch item.kind {
                case "campaign": item.error == nil ? "activated" : "failed"
                case "memberships": item.error == nil ? "refreshed" : "failed"
                default: item.status ?? "unknown"
                }
            let code = item.error?.code
            if let at = items.firstIndex(where: { $0.kind == item.kind && $0.outcome == outcome && $0.code == code }) {
                items[at].count += 1
            } else {
                items.append(ItemCount(kind: item.kind, outcome: outcome, code: code, count: 1))
            }
        }
        items.sort { ($0.kind, $0.outcome, $0.code?.rawValue ?? "") < ($1.kind, $1.outcome, $1.code?.rawValue ?? "") }
    }

    func write(to text: inout PrometheusText) {
        text.family("scheduler_ticks_total", .counter, "Scheduler ticks, by whether they completed or threw.")
        text.sample("scheduler_ticks_total", ["outcome": "completed"], Double(ticksCompleted))
        text.sample("scheduler_ticks_total", ["outcome": "failed"], Double(ticksFailed))
        text.family("scheduler_tick_duration_seconds", .histogram, "Time of each scheduler tick.")
        text.histogram("scheduler_tick_duration_seconds", [:], durations)
        text.family(
            "scheduler_last_completed_tick_timestamp_seconds", .gauge,
            "The engine clock at the last completed tick, in seconds since 1970 (0 before one).")
        text.sample(
            "scheduler_last_completed_tick_timestamp_seconds", [:], lastCompletedAt?.timeIntervalSince1970 ?? 0)
        text.family(
            "scheduler_items_total", .counter, "Due work a tick handled, by kind, outcome and catalogue code.")
        for item in items {
            text.sample(
                "scheduler_items_total",
                ["kind": item.kind, "outcome": item.outcome, "code": item.code?.rawValue ?? ""],
                Double(item.count))
        }
        text.family(
            "scheduler_memberships_refreshed_total", .counter, "Relative-date segment memberships re-evaluated.")
        text.sample("scheduler_memberships_refreshed_total", [:], Double(membershipsRefreshed))
        text.family(
            "idempotency_records_pruned_total", .counter, "Idempotency records deleted past their retention.")
        text.sample("idempotency_records_pruned_total", [:], Double(idempotencyRecordsPruned))
    }
}

/// Builds Prometheus's text format (0.0.4): a `# HELP` and `# TYPE` line per family, then its
/// samples. ``EngineMetrics/prometheusText(prefix:constantLabels:)`` uses it, and so may a tool that exports
/// figures of its own (the relay's `--metrics` file).
public struct PrometheusText: Sendable {
    /// A family's type.
    public enum Kind: String, Sendable {
        /// Only grows (from zero when the process starts).
        case counter
        /// Goes up and down.
        case gauge
        /// Cumulative buckets, a sum and a count.
        case histogram
    }

    /// What each family's name starts with, before an underscore (`campaign`).
    public let prefix: String
    /// Labels every sample carries besides its own (an operator's name for the process, so two
    /// processes' files collected together keep their series apart); a sample's own label of the
    /// same name wins.
    public let constantLabels: [String: String]
    /// The text so far.
    public private(set) var output = ""

    /// An empty text whose families' names start with `prefix` and an underscore, and whose samples
    /// each carry `constantLabels`.
    public init(prefix: String, constantLabels: [String: String] = [:]) {
        self.prefix = prefix
        self.constantLabels = constantLabels
    }

    /// The label names the engine's and the relay's samples use, which a constant label may not take.
    public static let sampleLabelNames: Set<String> = [
        "code", "consumer", "kind", "le", "mode", "name", "outcome", "projection", "quantile", "status",
    ]

    /// Why `name` cannot be a constant label (Prometheus's label names, less the reserved `__` ones
    /// and ``sampleLabelNames``); nil when it can.
    public static func constantLabelProblem(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        func isLetter(_ b: UInt8) -> Bool { (b | 0x20) >= 0x61 && (b | 0x20) <= 0x7A || b == 0x5F }
        guard let first = bytes.first, isLetter(first), bytes.allSatisfy({ isLetter($0) || (0x30...0x39).contains($0) })
        else { return "a label name is a letter or _ followed by letters, digits and _" }
        if name.hasPrefix("__") { return "label names starting with __ are Prometheus's own" }
        if sampleLabelNames.contains(name) { return "the samples use the label \(name) themselves" }
        return nil
    }

    /// Starts a family: its help text (one line) and its type.
    public mutating func family(_ name: String, _ kind: Kind, _ help: String) {
        output += "# HELP \(prefix)_\(name) \(help)\n# TYPE \(prefix)_\(name) \(kind.rawValue)\n"
    }

    /// One sample; labels in name order, so the text is the same from one scrape to the next.
    public mutating func sample(_ name: String, _ labels: [String: String], _ value: Double) {
        let labels = constantLabels.isEmpty ? labels : labels.merging(constantLabels) { own, _ in own }
        output += "\(prefix)_\(name)"
        if !labels.isEmpty {
            let pairs = labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\(Self.escaped($0.value))\"" }
            output += "{" + pairs.joined(separator: ",") + "}"
        }
        output += " \(Self.number(value))\n"
    }

    /// A histogram's `_bucket` samples (cumulative, `le` ascending, then `+Inf`), `_sum` and `_count`.
    public mutating func histogram(_ name: String, _ labels: [String: String], _ histogram: DurationHistogram) {
        let cumulative = histogram.cumulativeCounts
        for (index, count) in cumulative.enumerated() {
            var bucket = labels
            bucket["le"] = index < histogram.bounds.count ? Self.number(histogram.bounds[index]) : "+Inf"
            sample(name + "_bucket", bucket, Double(count))
        }
        sample(name + "_sum", labels, histogram.sum)
        sample(name + "_count", labels, Double(histogram.count))
    }

    /// Whole numbers without a fraction (counts), others to nine significant digits (a nanosecond in
    /// a sum of seconds; Prometheus parses the exponent `%g` may write).
    static func number(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(format: "%.9g", value)
    }

    /// A label value with `\`, `"` and line feeds escaped, as the format requires.
    static func escaped(_ value: String) -> String {
        var escaped = ""
        for character in value {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}

/// The engine's request counters: answers by command or query, status and code, and how long
/// commands and queries took. One lock a request, taken after the answer is made.
final class RequestMetrics: Sendable {
    private struct Key: Hashable {
        var name: String
        var status: Int
        var code: ErrorCode?
    }

    private struct State {
        var answered: [Key: UInt64] = [:]
        var commands = DurationHistogram()
        var queries = DurationHistogram()
    }

    private let state = Mutex(State())

    /// Counts one answer to a request that named `name` (nil: refused before it named one the engine
    /// knows); `took`, when given, goes to the command's or query's histogram.
    func count(_ name: String?, isCommand: Bool, _ response: EngineResponse, took: Duration?) {
        let key = Key(name: name ?? EngineMetrics.unparsed, status: response.status, code: response.error?.code)
        state.withLock { state in
            state.answered[key, default: 0] += 1
            guard let took, name != nil else { return }
            if isCommand { state.commands.record(took) } else { state.queries.record(took) }
        }
    }

    /// The counts, ordered by name, status and code, and the two histograms.
    var snapshot: (requests: [EngineMetrics.RequestCount], commands: DurationHistogram, queries: DurationHistogram) {
        let state = state.withLock { $0 }
        let requests = state.answered.map {
            EngineMetrics.RequestCount(name: $0.key.name, status: $0.key.status, code: $0.key.code, count: $0.value)
        }
        .sorted { ($0.name, $0.status, $0.code?.rawValue ?? "") < ($1.name, $1.status, $1.code?.rawValue ?? "") }
        return (requests, state.commands, state.queries)
    }
}

/// The engine's scheduler counters (``SchedulerMetrics``): one lock a tick.
final class TickMetrics: Sendable {
    private let state = Mutex(SchedulerMetrics())

    /// Counts a tick that ended after `took`: its report, or nil when it threw.
    func count(_ report: TickReport?, took: Duration) {
        state.withLock { metrics in
            metrics.durations.record(took)
            if let report { metrics.add(report) } else { metrics.ticksFailed += 1 }
        }
    }

    /// The counts now.
    var snapshot: SchedulerMetrics { state.withLock { $0 } }
}

extension CampaignEngine {
    /// The engine's metrics now: its request counts and durations since it opened, the writer's
    /// figures, the log's head, each read model's checkpoint and the map's use as stored, and the
    /// file system's free space. A short read transaction and a `statvfs`; safe to call from any
    /// task, as often as a scraper asks.
    /// - Throws: a storage error when the store cannot be read (closed, damaged).
    public func metrics() throws -> EngineMetrics {
        let counted = requestMetrics.snapshot
        let projections = try self.projections.status()
        let head = try projections.first?.head ?? store.head().position
        return EngineMetrics(
            requests: counted.requests, commandDurations: counted.commands, queryDurations: counted.queries,
            store: store.statistics, head: head,
            projections: projections, usage: try store.usage(),
            maximumMapSize: configuration.storeOptions.maximumMapSize,
            filesystemFreeBytes: Self.freeBytes(at: store.path), eventsFoldedByLoads: eventsFoldedByLoads,
            writesRefused: store.writesRefused, rateLimitShared: rateLimiter.isShared, scheduler: tickMetrics.snapshot)
    }

    /// Free bytes on the file system holding `path` for an unprivileged writer; nil when it cannot
    /// be read.
    static func freeBytes(at path: String) -> Int? {
        var stats = statvfs()
        guard statvfs(path, &stats) == 0 else { return nil }
        return Int(stats.f_bavail) * Int(stats.f_frsize)
    }
}
