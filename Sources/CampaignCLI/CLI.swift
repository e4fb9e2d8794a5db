import CampaignDomain
import CampaignEngine
import CampaignProjections
import EventStore
import Foundation
import Hashing

/// The `campaign` command line: `demo`, `apply`, `replay`, `verify`, `projections`, `export`,
/// `subscriptions`, `stats`, `compact`. Exit codes: 0 success, 1 failure (a broken chain, a projection that differs, an
/// error), 64 usage.
public enum CLI {
    /// The process's exit status: 0 it worked, 1 it found a failure or could not run, 64 the command line is wrong.
    public enum Exit: Int32, Sendable {
        /// It worked.
        case ok = 0
        /// It ran and found a failure, or could not run.
        case failure = 1
        /// The command line is wrong.
        case usage = 64
    }

    static let overview = """
        usage: campaign <command> [options]

        commands:
          demo          run a multi-tenant workload of every command family and print a dashboard
          apply         read JSON requests (one per line) on stdin, write one response per line
          replay        the audit trail: filter events by tenant, stream, actor, type and time
          verify        walk the hash chain and the Merkle tree; --checkpoint FILE: prove the log extends
                        a signed checkpoint; --contacts: check contact values against their commitments
          keygen        make the operator's Ed25519 key pair for signing checkpoints
          checkpoint    sign the Merkle tree as it is now (C2SP tlog-checkpoint)
          prove         an inclusion proof for the event at a position
          projections   status | rebuild [NAME] | verify [NAME] of the read models
          export        the log as CloudEvents, one JSON object per line, or relayed into NATS JetStream (--to)
          subscriptions consumers of the change feed with their checkpoints and lag; --remove NAME
          stats         events, streams, tenants, sizes, map usage and each table's entries and size
          compact       write a compacted copy of the store (drops freed pages)

        Every command takes --data DIR (default ./campaign-data) and --help.
        Exit codes: 0 ok, 1 failure, 64 usage. verify, projections verify, replay, prove, stats, compact
        and export read in a child process: a store page damaged beyond what LMDB checks is then
        reported in one line (exit 1) instead of crashing the command.
        """

    /// Runs a command line (without the program name) and returns the exit code.
    public static func run(_ words: [String], console: any Console = StandardConsole()) async -> Int32 {
        guard let command = words.first else {
            console.err(lines: overview)
            return Exit.usage.rawValue
        }
        if command == "--help" || command == "-h" || command == "help" {
            console.out(lines: overview)
            return Exit.ok.rawValue
        }
        let rest = Array(words.dropFirst())
        let handlers: [String: (String, Set<String>, Set<String>, (Arguments, any Console) async throws -> Exit)] = [
            "demo": (DemoCommand.help, ["data", "tenants", "contacts"], ["fresh", "json"], DemoCommand.run),
            "apply": (
                ApplyCommand.help,
                [
                    "data", "now", "rate-limit", "operator-tenant", "concurrency", "metrics", "metrics-every",
                    "metrics-label",
                ], [],
                ApplyCommand.run
            ),
            "replay": (
                ReplayCommand.help, ["data", "tenant", "stream", "actor", "type", "from", "to", "as-of", "limit"],
                ["json"], ReplayCommand.run
            ),
            "verify": (
                VerifyCommand.help, ["data", "checkpoint", "key"], ["json", "record", "contacts"], VerifyCommand.run
            ),
            "keygen": (KeygenCommand.help, ["name", "out"], [], KeygenCommand.run),
            "checkpoint": (
                CheckpointCommand.help, ["data", "key", "origin"], ["list", "json"], CheckpointCommand.run
            ),
            "prove": (ProveCommand.help, ["data", "checkpoint"], ["json"], ProveCommand.run),
            "projections": (ProjectionsCommand.help, ["data", "batch", "lanes"], ["json"], ProjectionsCommand.run),
            "stats": (StatsCommand.help, ["data"], ["json"], StatsCommand.run),
            "export": (
                ExportCommand.help,
                [
                    "data", "format", "tenant", "stream", "actor", "type", "from", "to", "limit", "consumer",
                    "subject-prefix", "replicas", "retry-for", "auth-file", "metrics", "metrics-every", "metrics-label",
                ],
                ["follow", "exclusive"],
                ExportCommand.run
            ),
            "subscriptions": (SubscriptionsCommand.help, ["data", "remove"], ["json"], SubscriptionsCommand.run),
            "compact": (CompactCommand.help, ["data", "to"], [], CompactCommand.run),
        ]
        guard let (help, options, flags, handler) = handlers[command] else {
            console.err("campaign: unknown command \"\(command)\"; run campaign --help")
            return Exit.usage.rawValue
        }
        if rest.contains("--help") || rest.contains("-h") {
            console.out(lines: help)
            return Exit.ok.rawValue
        }
        do {
            let arguments = try Arguments.parse(rest, options: options, flags: flags)
            // A page damaged beyond what LMDB checks crashes whatever reads it: such commands read in
            // a child (GuardedRun), after their arguments were found well-formed here.
            if GuardedRun.guards(command, arguments) {
                if GuardedRun.runsHere(console) {
                    guard GuardedRun.tieToParent() else { return Exit.failure.rawValue }
                } else if let exit = await GuardedRun.inChild(
                    command == "projections" ? "projections verify" : command, json: arguments.flags.contains("json"),
                    console: console)
                {
                    return exit.rawValue
                }
            }
            return try await handler(arguments, console).rawValue
        } catch let error as Arguments.UsageError {
            console.err("campaign \(command): \(error.message); run campaign \(command) --help")
            return Exit.usage.rawValue
        } catch let error as OutputError {
            // Nothing more can be written there (not even an error body).
            console.err("campaign \(command): \(error)")
            return Exit.failure.rawValue
        } catch {
            // Every failure is a catalogue error; with --json it is also written as JSON on stdout.
            let failure = (error as? CampaignError) ?? CampaignEngine.catalogueError(for: error)
            console.err("campaign \(command): \(failure.code.rawValue): \(failure.message)")
            if rest.contains("--json") { console.out(JSON.object(["error": failure.body(requestId: command)]).text) }
            return Exit.failure.rawValue
        }
    }

    static func dataDirectory(_ arguments: Arguments) -> String { arguments.options["data"] ?? "./campaign-data" }

    /// The folder a file path names (`.` for a bare name), or a usage error for `--option` when
    /// there is no such folder. Found by hand: Foundation's path and URL methods trap on a
    /// one-character name such as `k`.
    static func folder(of path: String, option: String) throws -> String {
        let directory = path.lastIndex(of: "/").map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue
        else { throw usage("--\(option) \(path): there is no directory \(directory)") }
        return directory
    }

    /// Opens an existing store read-only (never creates one: an auditor's typo must not make an
    /// empty store; and a tool that only reads works on a store it may not write).
    static func openStore(_ arguments: Arguments, readOnly: Bool = true) throws -> EventStore {
        let path = dataDirectory(arguments)
        guard FileManager.default.fileExists(atPath: path + "/data.mdb") else {
            throw CampaignError(.resourceNotFound, "no store at \(path) (no data.mdb)")
        }
        var options = StoreOptions()
        options.readOnly = readOnly
        return try EventStore(path: path, options: options)
    }

    static func openEngine(
        _ arguments: Arguments, configuration: EngineConfiguration = EngineConfiguration()
    ) throws -> CampaignEngine {
        let path = dataDirectory(arguments)
        guard FileManager.default.fileExists(atPath: path + "/data.mdb") else {
            throw CampaignError(.resourceNotFound, "no store at \(path) (no data.mdb)")
        }
        return try CampaignEngine(directory: path, configuration: configuration)
    }

    static func usage(_ message: String) -> Arguments.UsageError { Arguments.UsageError(message: message) }

    /// A time (ISO 8601) or a global position (a whole number).
    enum Bound: Equatable {
        case time(Date)
        case position(UInt64)

        static func parse(_ text: String, option: String) throws(Arguments.UsageError) -> Bound {
            if let position = UInt64(text) { return .position(position) }
            if let time = Timestamp.parse(text, as: .dateValue) { return .time(time) }
            throw usage("--\(option) takes an ISO 8601 time or a position, not \(text)")
        }
    }
}

/// `campaign apply`.
enum ApplyCommand {
    static let help = """
        usage: campaign apply [--data DIR] [--now ISO8601] [--rate-limit N] [--operator-tenant NAME]
                              [--concurrency N]
                              [--metrics FILE [--metrics-every SECONDS] [--metrics-label NAME=VALUE]]

        Reads one JSON request per line on stdin (SPEC.md §4) and writes one JSON response per line
        on stdout, in order, each as soon as its line is complete (so a host may drive it as a
        co-process). Every line gets exactly one answer: a malformed line, a blank line, invalid
        UTF-8, or a line longer than 64 MiB (read in chunks, never held whole) gets an
        INVALID_FORMAT response and the run goes on. A UTF-8 byte order mark at the start of the
        input and a CR before a newline are ignored.
        --now fixes the engine clock; system.tick with a "now" moves it forward, never back, and
        only an admin of the operator tenant (--operator-tenant, default "system") may send that
        tick: it runs every tenant's due work. A tenant's admin may tick without "now", for its own
        tenant. The operator's admins may also ask system.health (README, "Health").
        --rate-limit sets the per-tenant budget per 60 s window (default 1000).
        --concurrency N (1–256, default 1) runs up to N requests at once, so their appends share
        durable commits; answers still come in input order, each as soon as it and every answer
        before it are ready. Only for independent requests: with N > 1 a request may run before an
        earlier line's request has committed.
        --metrics FILE writes the engine's metrics in Prometheus's text format (README, "Metrics")
        to FILE when the run starts, every --metrics-every seconds (1–3600, default 10) and as it
        ends, each time whole (a file beside it renamed over it): name it *.prom in node_exporter's
        textfile directory. A FILE that cannot be written at the start is a usage error; a later
        write that fails is tried again at the next interval. --metrics-label NAME=VALUE adds the
        label to every sample, so two processes' files in one directory keep their series apart.
        Exit 0 when every line was processed.
        """

    static func run(_ arguments: Arguments, console: any Console) async throws -> CLI.Exit {
        guard arguments.positionals.isEmpty else { throw CLI.usage("apply takes no arguments") }
        var configuration = EngineConfiguration()
        if let now = arguments.options["now"] {
            guard let date = Timestamp.parse(now) else {
                throw CLI.usage("--now takes an ISO 8601 time such as 2026-12-01T09:00:00Z")
            }
            configuration.clock = ManualClock(date)
        }
        configuration.operatorTenant = arguments.options["operator-tenant"] ?? "system"
        if let tenant = configuration.operatorTenant, !Principal.isValidTenant(tenant) {
            throw CLI.usage("--operator-tenant takes a tenant: \(Principal.tenantRule)")
        }
        if let limit = arguments.options["rate-limit"] {
            guard let value = Int(limit), value > 0 else {
                throw CLI.usage("--rate-limit takes a positive whole number")
            }
            configuration.rateLimit = value
        }
        var concurrency = 1
        if let given = arguments.options["concurrency"] {
            guard let value = Int(given), (1...256).contains(value) else {
                throw CLI.usage("--concurrency takes a whole number from 1 to 256")
            }
            concurrency = value
        }
        let metricsOptions = try MetricsFile.options(arguments)
        let engine = try CampaignEngine(directory: CLI.dataDirectory(arguments), configuration: configuration)
        defer { engine.close() }
        let metrics = try metricsOptions.map {
            let labels = $0.labels
            return try MetricsFile(path: $0.path, every: $0.every) {
                try engine.metrics().prometheusText(constantLabels: labels)
            }
        }
        // Before the engine closes (defers run last first): the last write reads the open store, after
        // the catch-up `close()` makes, so the file shows the read models where the run leaves them.
        defer {
            if let metrics {
                engine.catchUpForClose()
                metrics.stop()
            }
        }
        let inputs = InputFeed(console, limit: configuration.jsonLimits.maximumBytes, ahead: concurrency)
        guard concurrency > 1 else {
            for await request in inputs.stream {
                inputs.taken()
                switch request {
                case let .answer(line): console.out(line)
                case let .request(bytes): console.out(await engine.handle(bytes).line)
                }
            }
            return .ok
        }
        // A reader starts each request as a task (waiting while N are in flight); the writer prints
        // the answers in input order as each one, and all before it, are done.
        let slots = Slots(concurrency)
        let (answers, queue) = AsyncStream.makeStream(of: Task<String, Never>.self)
        let reader = Task {
            for await request in inputs.stream {
                inputs.taken()
                await slots.acquire()
                switch request {
                case let .answer(line): queue.yield(Task { line })
                case let .request(bytes): queue.yield(Task { await engine.handle(bytes).line })
                }
            }
            queue.finish()
        }
        for await answer in answers {
            console.out(await answer.value)
            await slots.release()
        }
        await reader.value
        return .ok
    }

    /// What a line of input asks for: a request for the engine, or an answer given without it.
    enum Input: Sendable {
        case request([UInt8])
        case answer(String)
    }

    /// Reads the next line: nil at the end of the input.
    static func nextRequest(_ console: any Console, limit: Int, isFirstLine: Bool) -> Input? {
        switch console.readLine(limit: limit) {
        case .end:
            return nil
        case let .tooLong(length):
            // Refused without ever holding the line in memory.
            return .answer(
                EngineResponse.failure(
                    CampaignError(
                        .invalidFormat, "request line of \(length) bytes is longer than the \(limit)-byte limit",
                        pointer: ""),
                    requestId: WireFormat.fallbackRequestId
                ).line)
        case var .line(line):
            if isFirstLine, line.starts(with: [0xEF, 0xBB, 0xBF]) { line.removeFirst(3) }
            if line.last == 0x0D { line.removeLast() }
            guard !line.allSatisfy({ [0x20, 0x09].contains($0) }) else {
                // Every line gets one answer, so a co-process never waits for one that will not come.
                return .answer(
                    EngineResponse.failure(
                        CampaignError(.invalidFormat, "empty line: each line must hold one JSON request", pointer: ""),
                        requestId: WireFormat.fallbackRequestId
                    ).line)
            }
            return .request(line)
        }
    }

    /// The input's lines, read on a thread of its own: a read of standard input blocks until the
    /// co-process writes, and must not hold one of the cooperative pool's few threads meanwhile. At
    /// most `ahead` lines are read before the engine takes them, so a long input is never buffered.
    ///
    /// Invariant that makes `@unchecked Sendable` safe: every stored property is immutable, and
    /// the stream and the semaphore are safe to use from any thread.
    final class InputFeed: @unchecked Sendable {
        /// The lines, as requests or ready answers, in input order; it ends with the input.
        let stream: AsyncStream<Input>
        private let room: DispatchSemaphore

        init(_ console: any Console, limit: Int, ahead: Int) {
            let (stream, continuation) = AsyncStream.makeStream(of: Input.self)
            // Made at 0 and raised to `ahead`: a semaphore disposed of below its initial value traps.
            let room = DispatchSemaphore(value: 0)
            for _ in 0..<max(1, ahead) { room.signal() }
            self.stream = stream
            self.room = room
            let reader = Thread {
                // Named for `ps` and `top` (Foundation does not pass a thread's name to Linux).
                try? "campaign apply".write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)
                var isFirstLine = true
                while true {
                    room.wait()
                    guard let input = nextRequest(console, limit: limit, isFirstLine: isFirstLine) else { break }
                    isFirstLine = false
                    continuation.yield(input)
                }
                continuation.finish()
            }
            reader.start()
        }

        /// Says a line was taken, so the reader may read one more.
        func taken() { room.signal() }
    }

    /// At most N requests in flight: the reader takes a slot per line, the writer gives it back
    /// once the answer is out.
    actor Slots {
        private var free: Int
        private var waiting: [CheckedContinuation<Void, Never>] = []

        init(_ count: Int) { free = count }

        func acquire() async {
            if free > 0 {
                free -= 1
                return
            }
            await withCheckedContinuation { waiting.append($0) }
        }

        func release() {
            if waiting.isEmpty {
                free += 1
            } else {
                waiting.removeFirst().resume()
            }
        }
    }
}

/// `campaign verify`.
enum VerifyCommand {
    static let help = """
        usage: campaign verify [--data DIR] [--json] [--record]
                               [--checkpoint FILE --key VERIFIER_KEY] [--contacts]

        Walks the hash chain from position 1: every position present, every record's previous hash
        equal to the hash before it, every hash equal to SHA-256(previous hash ‖ record). Prints the
        events checked, the head position and the head hash. Exit 1 with the first bad position.
        Then checks the Merkle tree kept beside the log against the log's records (every node), and
        the stream index (every stream's head, every event's link back, every mark).
        The store is opened read-only. With --record it is opened for writing and the outcome is
        kept: a broken chain makes engines refuse appends; an intact one lifts that refusal (the
        operator's step after restoring or repairing a store); and a damaged stream index is made
        again from the log's records (one transaction; appends wait for it).

        --checkpoint FILE --key VERIFIER_KEY: checks the checkpoint's signature with the verifier
        key (a file from campaign keygen, or the key text), then proves that the log extends the
        signed tree (an RFC 9162 consistency proof). When it does not, says what happened: the log
        TRUNCATED to N events, or REWRITTEN from position P (found by walking the store's tree,
        which must itself still hash to the signed root; when it was rewritten too, the signed
        checkpoints kept in the store narrow P down).

        --contacts: recomputes every live contact's commitment from its kept values and salt and
        lists the contacts whose values do not match their last event, erased contacts that still
        have values, and values kept for a contact the log has no events of.
        """

    static func run(_ arguments: Arguments, console: any Console) async throws -> CLI.Exit {
        guard arguments.positionals.isEmpty else { throw CLI.usage("verify takes no arguments") }
        let checkpointKey = try arguments.options["key"].map { try readNoteKey($0, option: "key") }
        if (arguments.options["checkpoint"] == nil) != (checkpointKey == nil) {
            throw CLI.usage("--checkpoint FILE and --key VERIFIER_KEY go together")
        }
        let store = try CLI.openStore(arguments, readOnly: !arguments.flags.contains("record"))
        defer { store.close() }
        let total = try store.head().position
        let started = Date()
        let report = try store.verifyChain { checked in
            if console.errorIsTerminal {
                console.progress(
                    Format.progressBar(
                        done: checked, total: total,
                        rate: Double(checked) / max(Date().timeIntervalSince(started), 1e-6)))
            }
        }
        if console.errorIsTerminal { console.progress("") }
        let seconds = Date().timeIntervalSince(started)
        let json = arguments.flags.contains("json")
        let text: any Console = json ? SilentConsole() : console
        var members: JSONObject = [
            "intact": .bool(report.isIntact), "eventsChecked": .number(Double(report.eventsChecked)),
            "headPosition": .number(Double(report.headPosition)), "headHash": .string(report.headHash.hexString),
        ]
        var passed = report.isIntact
        if let bad = report.firstBadPosition {
            members["firstBadPosition"] = .number(Double(bad))
            members["problem"] = .string(report.problem ?? "")
            text.out("chain BROKEN at position \(bad): \(report.problem ?? "")")
            text.out("events checked: \(Format.count(report.eventsChecked)); head position: \(report.headPosition)")
        } else {
            text.out(
                "chain intact: \(Format.count(report.eventsChecked)) events checked in "
                    + "\(String(format: "%.2f", seconds)) s"
            )
            text.out("head position: \(report.headPosition)")
            text.out("head hash:     \(report.headHash.hexString)")
            // The tree and the checkpoint are read from records the chain has just proven.
            passed = try TreeAudit.verifyTree(store, console: text, json: &members) && passed
            passed =
                try verifyStreamIndex(store, repair: arguments.flags.contains("record"), console: text, json: &members)
                && passed
            if let path = arguments.options["checkpoint"], let checkpointKey {
                passed =
                    try TreeAudit.verifyCheckpoint(store, path: path, key: checkpointKey, console: text, json: &members)
                    && passed
            }
        }
        if arguments.flags.contains("contacts") {
            let contacts = try Audit.verifyContacts(store)
            members["contacts"] = .object([
                "live": .number(Double(contacts.live)), "erased": .number(Double(contacts.erased)),
                "orphaned": .number(Double(contacts.orphaned)),
                "mismatched": .array(
                    contacts.problems.map {
                        .object([
                            "tenant": .string($0.tenant), "contactId": .string($0.contactId),
                            "problem": .string($0.problem),
                        ])
                    }),
            ])
            if contacts.problems.isEmpty {
                text.out(
                    "contacts intact: \(Format.count(contacts.live)) live contacts match their commitments; "
                        + "\(Format.count(contacts.erased)) erased hold no values; no values without a contact")
            } else {
                text.out(
                    "contacts MISMATCHED: \(contacts.problems.count - contacts.orphaned) of "
                        + Format.count(contacts.live + contacts.erased)
                        + ", and \(Format.count(contacts.orphaned)) rows of values without a contact"
                )
                for problem in contacts.problems {
                    text.out("  \(problem.tenant) \(problem.contactId): \(problem.problem)")
                }
            }
            passed = passed && contacts.problems.isEmpty
        }
        if json { console.out(JSON.object(members).text) }
        return passed ? .ok : .failure
    }
}

extension VerifyCommand {
    /// Checks the stream index against the records; with `repair`, makes a damaged one again.
    /// Prints a line and returns whether the index is the log's now.
    static func verifyStreamIndex(
        _ store: EventStore, repair: Bool, console: any Console, json: inout JSONObject
    ) throws -> Bool {
        guard let problem = try store.verifyStreamIndex() else {
            json["streamIndex"] = .object(["intact": .bool(true)])
            console.out("stream index intact")
            return true
        }
        guard repair else {
            json["streamIndex"] = .object(["intact": .bool(false), "problem": .string(problem)])
            console.out("stream index DAMAGED: \(problem) (campaign verify --record makes it again from the log)")
            return false
        }
        try store.rebuildStreamIndex()
        let left = try store.verifyStreamIndex()
        json["streamIndex"] = .object([
            "intact": .bool(left == nil), "rebuilt": .bool(true), "problem": .string(left ?? problem),
        ])
        console.out("stream index was DAMAGED (\(problem)); made again from the log: \(left ?? "intact")")
        return left == nil
    }
}

/// `campaign projections`.
enum ProjectionsCommand {
    static let help = """
        usage: campaign projections status [--data DIR] [--json]
               campaign projections rebuild [NAME] [--data DIR] [--batch N] [--lanes N]
               campaign projections verify [NAME] [--data DIR] [--json]

        status   each projection's mode, version, checkpoint and lag
        rebuild  rebuild one projection (or all, in one pass over the log) from position 1 into a
                 scratch table and switch atomically; resumable; a progress bar with events/s and
                 ETA on a terminal; --lanes N folds on N threads at once (default: every
                 core); each lane holds its projections' state, so fewer lanes use less memory
        verify   rebuild into a scratch table and compare with the live model; exit 1 on a difference
        """

    static func run(_ arguments: Arguments, console: any Console) async throws -> CLI.Exit {
        guard let action = arguments.positionals.first, ["status", "rebuild", "verify"].contains(action) else {
            throw CLI.usage("projections needs status, rebuild or verify")
        }
        guard arguments.positionals.count <= 2, action != "status" || arguments.positionals.count == 1 else {
            throw CLI.usage("too many arguments")
        }
        func positive(_ option: String) throws(Arguments.UsageError) -> Int? {
            try arguments.options[option].map { text throws(Arguments.UsageError) -> Int in
                guard let value = Int(text), value > 0 else {
                    throw CLI.usage("--\(option) takes a positive whole number")
                }
                return value
            }
        }
        let batch = try positive("batch") ?? 20_000
        let lanes = try positive("lanes") ?? ProjectionRunner.cores
        let known = CampaignEngine.standardProjections().map(\.name)
        let names = arguments.positionals.count == 2 ? [arguments.positionals[1]] : known
        for name in names where !known.contains(name) {
            throw CLI.usage("no projection named \(name); projections are \(known.joined(separator: ", "))")
        }
        let json = arguments.flags.contains("json")
        if action == "status" {
            // Read-only: status never writes, so it works on a store it may not write.
            let store = try CLI.openStore(arguments)
            defer { store.close() }
            let statuses = try ProjectionRunner(store: store, projections: CampaignEngine.standardProjections())
                .status()
            return status(statuses, json: json, console: console)
        }
        let engine = try CLI.openEngine(arguments)
        defer { engine.close() }
        let runner = engine.projections

        switch action {
        case "rebuild":
            // One pass for all of them: folded projections fold on every core (this process serves
            // no commands), and each writer job holds the writer only briefly, so a process serving
            // commands beside this one keeps committing.
            let started = Date()
            let last = try await runner.rebuildOnWriter(names, batchSize: batch, lanes: lanes) {
                progress in
                if console.errorIsTerminal {
                    console.progress(
                        "\(progress.name) "
                            + Format.progressBar(
                                done: progress.done, total: progress.total, rate: progress.eventsPerSecond))
                }
            }
            if console.errorIsTerminal { console.progress("") }
            let seconds = Date().timeIntervalSince(started)
            let rate = Format.count(Int(Double(last.done) / max(seconds, 1e-6)))
            console.out(
                "rebuilt \(names.joined(separator: ", ")): \(Format.count(last.done)) events in "
                    + "\(String(format: "%.2f", seconds)) s (\(rate) events/s)")
            return .ok

        default:
            var failed = false
            for name in names {
                let report = try runner.verify(name, batchSize: batch)
                failed = failed || !report.matches
                if json {
                    console.out(
                        JSON.object([
                            "name": .string(name), "matches": .bool(report.matches),
                            "entries": .number(Double(report.entries)),
                            "differences": .number(Double(report.differenceCount)),
                            "keys": .array(report.differences.map { .string(describe($0.key)) }),
                        ]).text)
                } else if report.matches {
                    console.out("\(name): ok (\(Format.count(report.entries)) entries match a fresh rebuild)")
                } else {
                    console.out(
                        "\(name): DIFFERS in \(report.differenceCount) of \(Format.count(report.entries)) entries")
                    for difference in report.differences {
                        console.out(
                            "  \(describe(difference.key)): live \(preview(difference.live)) ≠ rebuilt "
                                + "\(preview(difference.rebuilt))"
                        )
                    }
                }
            }
            return failed ? .failure : .ok
        }
    }

    /// Prints each projection's status, as a table or JSON lines.
    static func status(_ statuses: [ProjectionStatus], json: Bool, console: any Console) -> CLI.Exit {
        if json {
            for status in statuses {
                var members: JSONObject = [
                    "name": .string(status.name), "mode": .string(status.mode.rawValue),
                    "version": .number(Double(status.version)),
                    "builtVersion": .number(Double(status.builtVersion)),
                    "checkpoint": .number(Double(status.checkpoint)),
                    "head": .number(Double(status.head)), "lag": .number(Double(status.lag)),
                ]
                if let rebuilding = status.rebuildCheckpoint {
                    members["rebuildCheckpoint"] = .number(Double(rebuilding))
                }
                if status.partWay { members["partWay"] = .bool(true) }
                console.out(JSON.object(members).text)
            }
        } else {
            let rows = statuses.map { s in
                [
                    s.name, s.mode.rawValue, "\(s.version)", "\(s.builtVersion)",
                    Format.count(s.checkpoint) + (s.partWay ? " (next part-way)" : ""), Format.count(s.lag),
                    s.rebuildCheckpoint.map { "at \(Format.count($0))" } ?? "-",
                ]
            }
            Format.table(["PROJECTION", "MODE", "VERSION", "BUILT", "CHECKPOINT", "LAG", "REBUILD"], rows).forEach(
                console.out)
            // An unfinished rebuild reads the same whether another process runs it or it was
            // interrupted: say what it means and how to finish it.
            if let unfinished = statuses.first(where: { $0.rebuildCheckpoint != nil }) {
                console.out(
                    "REBUILD: begun and not finished (running in another process, or interrupted); the live table "
                        + "serves queries meanwhile. `campaign projections rebuild \(unfinished.name)` finishes it.")
            }
        }
        return .ok
    }

    /// A key with its 0x00 separators shown as `/` and binary runs as hex.
    static func describe(_ key: [UInt8]) -> String {
        key.split(separator: 0, omittingEmptySubsequences: false).map { part in
            let text = String(decoding: part, as: UTF8.self)
            return part.allSatisfy({ (32...126).contains($0) }) ? text : "0x" + Array(part).hexString
        }.joined(separator: "/")
    }

    static func preview(_ value: [UInt8]?) -> String {
        guard let value else { return "(missing)" }
        let text = String(decoding: value.prefix(80), as: UTF8.self)
        guard value.allSatisfy({ $0 >= 32 }) else { return "0x" + value.prefix(16).hexString }
        return text + (value.count > 80 ? "…" : "")
    }
}

/// `campaign stats`.
enum StatsCommand {
    static let help = """
        usage: campaign stats [--data DIR] [--json]

        Events, streams, tenants, events by type, file and map sizes, the head, and each table's
        entries and bytes (the log's, the read models' slots p:NAME:a/b/v, idempotency, …), so the
        room each takes shows.
        """

    static func run(_ arguments: Arguments, console: any Console) async throws -> CLI.Exit {
        guard arguments.positionals.isEmpty else { throw CLI.usage("stats takes no arguments") }
        let store = try CLI.openStore(arguments)
        defer { store.close() }
        let head = try store.head()
        var streams = 0
        var tenants = Set<String>()
        try store.forEachStream { streamId, _ in
            streams += 1
            tenants.insert(String(streamId.prefix { $0 != ":" }))
            return true
        }
        var types = [String: Int]()
        try store.forEachEvent { event in
            types[event.type, default: 0] += 1
            return true
        }
        let usage = try store.usage()
        let tables = try store.allTableUsage()
        let fileSize = (try? FileManager.default.attributesOfItem(atPath: store.path + "/data.mdb")[.size] as? Int) ?? 0
        if arguments.flags.contains("json") {
            console.out(
                JSON.object([
                    "events": .number(Double(head.position)), "streams": .number(Double(streams)),
                    "tenants": .number(Double(tenants.count)),
                    "headHash": .string(head.hash.hexString), "fileBytes": .number(Double(fileSize)),
                    "usedBytes": .number(Double(usage.usedBytes)),
                    "mapBytes": .number(Double(usage.mapSize)), "pageSize": .number(Double(usage.pageSize)),
                    "eventsByType": .object(JSONObject(types.mapValues { .number(Double($0)) })),
                    "tables": .object(
                        JSONObject(
                            uniqueKeysWithValues: tables.map { table in
                                (
                                    table.name,
                                    JSON.object([
                                        "entries": .number(Double(table.entries)),
                                        "bytes": .number(Double(table.bytes)),
                                    ])
                                )
                            })),
                ]).text)
        } else {
            console.out("store:    \(store.path)")
            console.out(
                "events:   \(Format.count(head.position))   streams: \(Format.count(streams))   tenants: "
                    + "\(tenants.count) (\(tenants.sorted().joined(separator: ", ")))"
            )
            console.out("head:     \(head.hash.hexString)")
            console.out(
                "file:     \(Format.bytes(fileSize)) on disk; \(Format.bytes(usage.usedBytes)) used of a "
                    + "\(Format.bytes(usage.mapSize)) map "
                    + "(\(usage.mapSize > 0 ? usage.usedBytes * 100 / usage.mapSize : 0)%), "
                    + "\(usage.pageSize)-byte pages"
            )
            console.out("")
            Format.table(
                ["EVENT TYPE", "COUNT"],
                types.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }.map {
                    [$0.key, Format.count($0.value)]
                }
            ).forEach(console.out)
            console.out("")
            Format.table(
                ["TABLE", "ENTRIES", "SIZE"],
                tables.map { [$0.name, Format.count($0.entries), Format.bytes($0.bytes)] }
            ).forEach(console.out)
        }
        return .ok
    }
}

/// `campaign compact`.
enum CompactCommand {
    static let help = """
        usage: campaign compact [--data DIR] --to EMPTY_DIR

        Writes a compacted copy of the store (LMDB's MDB_CP_COMPACT): freed pages are not copied, so
        values deleted by contact.erase do not survive in the copy. The copy is written to
        data.mdb.partial and becomes data.mdb only once it is whole and flushed; a copy cut short
        leaves the partial file, and compact may be run again into the same directory. Replace the
        store with the copy while no process has it open.
        """

    static func run(_ arguments: Arguments, console: any Console) async throws -> CLI.Exit {
        guard let target = arguments.options["to"] else { throw CLI.usage("compact needs --to EMPTY_DIR") }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: target, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw CLI.usage("--to \(target) is a file, not a directory")
        }
        // A copy cut short (the process killed or the machine down) leaves only its partial file.
        let existing = (try? FileManager.default.contentsOfDirectory(atPath: target)) ?? []
        if !existing.allSatisfy({ $0 == EventStore.partialCopyName }) {
            throw CLI.usage("--to \(target) is not empty")
        }
        let store = try CLI.openStore(arguments)
        defer { store.close() }
        try store.copyCompacted(to: target)
        let size = (try? FileManager.default.attributesOfItem(atPath: target + "/data.mdb")[.size] as? Int) ?? 0
        console.out("compacted copy written to \(target) (\(Format.bytes(size)))")
        return .ok
    }
}
