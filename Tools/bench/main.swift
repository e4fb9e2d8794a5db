import CampaignCLI
import CampaignDomain
import CampaignEngine
import CampaignProjections
import CampaignSnapshots
import EventStore
import Foundation
import Hashing
import NATS
import Spawn

/// `campaign-bench [--quick] [--only 1,2,…] [--dir DIR] [--json FILE] [--no-peer] [--keep]`
///
/// Runs each case beside its baseline in this one process, on the same disk, with the same
/// payload sizes, prints a table and writes JSON. Release builds only (`swift run -c release
/// campaign-bench`). Never part of `swift test`.

let arguments = Array(CommandLine.arguments.dropFirst())
let quick = arguments.contains("--quick")
let withPeer = !arguments.contains("--no-peer")
func option(_ name: String) -> String? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}
let only = option("--only").map { Set($0.split(separator: ",").compactMap { Int($0) }) }
/// Whether case `number` (1–11) runs; `--only 3,4` picks cases (for profiling one at a time).
func runs(_ number: Int) -> Bool { only?.contains(number) ?? true }
// The child mode the rebuild case starts: a fresh process that opens DIR and rebuilds every
// projection, as `campaign projections rebuild` does, so its peak heap is the rebuild's alone.
if let directory = option("--rebuild-child") {
    let store = try EventStore(path: directory)
    let runner = try ProjectionRunner(store: store, projections: CampaignEngine.standardProjections())
    try runner.rebuildAll(lanes: Int(option("--lanes") ?? "") ?? ProjectionRunner.cores)
    store.close()
    exit(0)
}
if arguments.contains("--help") {
    print("usage: campaign-bench [--quick] [--only 1,2,…] [--dir DIR] [--json FILE] [--no-peer] [--keep]")
    print("  --keep leaves the stores in DIR (to profile a rebuild of DIR/big with campaign, say)")
    exit(0)
}
#if DEBUG
FileHandle.standardError.write(
    Data("campaign-bench: this is a debug build; measure with swift run -c release campaign-bench\n".utf8))
#endif

let root = option("--dir") ?? "./.bench-data"
let jsonPath = option("--json") ?? "bench-results/bench-\(Int(Date().timeIntervalSince1970)).json"
/// The file that marks a directory as this benchmark's, which a run may delete and make again.
let rootMarker = root + "/.campaign-bench"
// DIR is deleted before and after a run: only when it is empty or an earlier run's (marked), so
// `--dir .` in a project's folder is refused rather than deleted.
if let entries = try? FileManager.default.contentsOfDirectory(atPath: root), !entries.isEmpty,
    !FileManager.default.fileExists(atPath: rootMarker)
{
    FileHandle.standardError.write(
        Data(
            ("campaign-bench: --dir \(root) holds files of its own; the benchmark deletes its directory, so give "
                + "it an empty or new one (or one an earlier run made)\n").utf8))
    exit(64)
}
try? FileManager.default.removeItem(atPath: root)
try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
// The marker lets the next run delete this directory; without it the next run would refuse it.
if !FileManager.default.createFile(atPath: rootMarker, contents: Data()) {
    FileHandle.standardError.write(Data("campaign-bench: cannot write \(rootMarker)\n".utf8))
    exit(73)
}
let scale = quick ? 0.1 : 1.0
func n(_ full: Int) -> Int { max(1, Int(Double(full) * scale)) }

struct Row {
    var name: String
    var engine: String
    var baseline: String
    var ratio: String
    var json: JSONObject
}
var rows = [Row]()
@MainActor func report(_ name: String, engine: String, baseline: String, ratio: String, _ json: JSONObject) {
    rows.append(Row(name: name, engine: engine, baseline: baseline, ratio: ratio, json: json))
    print("  \(name): \(engine)  |  \(baseline)  |  \(ratio)")
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let started = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
}

func secondsAsync(_ body: () async throws -> Void) async rethrows -> Double {
    let started = DispatchTime.now().uptimeNanoseconds
    try await body()
    return Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
}

/// CPU time this process has used so far, user plus system, in seconds (`getrusage`).
func processCPUSeconds() -> Double {
    let split = processCPUSplit()
    return split.user + split.system
}

/// CPU time this process has used so far in its own code and in the kernel for it, in seconds.
func processCPUSplit() -> (user: Double, system: Double) {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
    return (seconds(usage.ru_utime), seconds(usage.ru_stime))
}

/// How often this process's threads have given up their core to wait so far (`ru_nvcsw`, summed
/// over its threads by `getrusage`): a thread waiting for another's work, or for the disk. A wake
/// after such a wait often crosses cores, which on a virtual machine costs tens of microseconds.
func processThreadWaits() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_nvcsw)
}

/// What waking a thread asleep on another core costs on this machine, in microseconds (nil when
/// the process may run on one core only): two threads, each held to a core of its own, pass a turn
/// back and forth `rounds` times through a condition variable, each sleeping until the other wakes
/// it, and half the mean round trip is one wake. The engine's caller and writer threads hand each
/// command over this way; beside the waits a command, it says how much of one client's latency is
/// threads waking each other. (Left free to share a core, the two threads measured 5.6–12.6 µs a
/// wake here, a sixth to a third of this.)
func crossCoreWakeMicros(rounds: Int = 2_000) -> Double? {
    let cores = EventStore.allowedCores
    // `sched_setaffinity` is declared only under `_GNU_SOURCE`, which Swift's Glibc module leaves
    // out, so it is found by name in the C library.
    typealias SetAffinity = @convention(c) (pid_t, Int, UnsafeRawPointer) -> Int32
    guard cores.count >= 2, let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sched_setaffinity") else {
        return nil
    }
    let setAffinity = unsafeBitCast(symbol, to: SetAffinity.self)
    /// Holds the calling thread to `core` (a mask of 1,024 cores, as glibc's `cpu_set_t`).
    @Sendable func pin(_ core: Int) {
        var mask = [UInt8](repeating: 0, count: 128)
        mask[core / 8] |= UInt8(1 << (core % 8))
        _ = mask.withUnsafeBytes { setAffinity(0, $0.count, $0.baseAddress!) }
    }
    final class Turn: @unchecked Sendable {
        // Invariant: `next` is read and written only with `condition` locked, which only the two
        // threads wait on; `micros` is written before `done` is signalled and read after.
        let condition = NSCondition()
        var next = 0
        var micros = 0.0
        let done = DispatchSemaphore(value: 0)
    }
    let turn = Turn()
    let (first, second) = (cores[0], cores[1])
    Thread {
        pin(second)
        for round in 0..<rounds {
            turn.condition.lock()
            while turn.next != 2 * round + 1 { turn.condition.wait() }
            turn.next += 1
            turn.condition.signal()
            turn.condition.unlock()
        }
    }.start()
    Thread {
        pin(first)
        let started = DispatchTime.now().uptimeNanoseconds
        for round in 0..<rounds {
            turn.condition.lock()
            turn.next = 2 * round + 1
            turn.condition.signal()
            while turn.next != 2 * round + 2 { turn.condition.wait() }
            turn.condition.unlock()
        }
        turn.micros = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e3 / Double(rounds) / 2
        turn.done.signal()
    }.start()
    turn.done.wait()
    return turn.micros
}

/// Bytes this process has handed to `write`-family system calls so far (`wchar` in /proc/self/io):
/// for the engine, LMDB's page writes at each commit.
func processWrittenBytes() -> Double {
    guard let text = try? String(contentsOfFile: "/proc/self/io", encoding: .utf8),
        let line = text.split(separator: "\n").first(where: { $0.hasPrefix("wchar:") })
    else { return 0 }
    return Double(line.dropFirst("wchar:".count).trimmingCharacters(in: .whitespaces)) ?? 0
}

func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))]
}

func median(_ values: [Double]) -> Double { percentile(values, 0.5) }
func rate(_ count: Int, _ seconds: Double) -> Double { Double(count) / max(seconds, 1e-9) }
func f(_ value: Double) -> String {
    value >= 100 ? String(Int(value.rounded())).withCommas : String(format: "%.2f", value)
}
func ms(_ value: Double) -> String { String(format: "%.3f ms", value) }
func x(_ value: Double) -> String { String(format: "%.2f×", value) }
func percent(_ share: Double) -> String { String(format: "%.0f%%", share * 100) }

extension String {
    var withCommas: String {
        var out = ""
        for (index, character) in reversed().enumerated() {
            if index > 0 && index % 3 == 0 && character != "-" { out.append(",") }
            out.append(character)
        }
        return String(out.reversed())
    }
}

/// Peak resident memory since the last reset, in bytes (Linux `VmHWM`).
func peakMemory() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
    else { return 0 }
    return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
}

/// The peak of ``anonymousMemory()`` from its creation until ``stop()``, sampled every 5 ms on a
/// thread of its own (a fold's state peaks before any rebuild progress is reported).
///
/// Invariant that makes `@unchecked Sendable` safe: `peak` and `running` change only under `lock`.
final class HeapSampler: @unchecked Sendable {
    private let lock = NSLock()
    private var peak: Int
    private var running = true
    /// The heap when sampling began: what the process held before (the demo log's engine, caches).
    let start: Int

    init() {
        start = anonymousMemory()
        peak = start
        Thread.detachNewThread { [self] in
            while lock.withLock({ running }) {
                let now = anonymousMemory()
                lock.withLock { peak = max(peak, now) }
                usleep(5_000)
            }
        }
    }

    /// Stops sampling and returns the peak, in bytes.
    func stop() -> Int {
        let now = anonymousMemory()
        return lock.withLock {
            running = false
            return max(peak, now)
        }
    }
}

func resetPeakMemory() { try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8) }

/// Runs this benchmark's `--rebuild-child` mode on `directory` in a fresh process, sampling its
/// resident anonymous memory every 5 ms: the seconds it took and its peak heap, in bytes.
func rebuildInFreshProcess(_ directory: String, lanes: Int) throws -> (seconds: Double, peak: Int) {
    let started = DispatchTime.now().uptimeNanoseconds
    let child = try ChildProcess(
        URL(fileURLWithPath: CommandLine.arguments[0]).path,
        ["--rebuild-child", directory, "--lanes", String(lanes)], input: .inherit)
    var peak = 0
    while child.isRunning {
        peak = max(peak, anonymousMemory(of: "\(child.pid)"))
        usleep(5_000)
    }
    precondition(child.waitUntilExit() == .exited(0), "the rebuild child failed")
    return (Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9, peak)
}

/// Resident anonymous memory now, in bytes (Linux `RssAnon`): the heap, without the pages of the
/// memory-mapped log, which count in `VmHWM` but belong to the page cache.
func anonymousMemory(of process: String = "self") -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(process)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("RssAnon:") })
    else { return 0 }
    return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
}

let payload300 = String(repeating: "x", count: 280)
/// The first 200 characters of `payload300`, made once: building a request is the client's cost.
let payload200 = String(payload300.prefix(200))
func updatePayload(_ id: String) -> [UInt8] {
    JSON.object(["campaignId": .string(id), "content": .object(["body": .string(payload300)])]).bytes
}
func newEvent(_ type: String, _ payload: [UInt8], tenant: String = "bench") -> NewEvent {
    NewEvent(
        type: type, occurredAt: Date(), tenant: tenant, actor: "bench", requestId: "bench", causationId: "bench",
        payload: payload)
}

print(
    "campaign-bench \(quick ? "(quick)" : "") — \(ProcessInfo.processInfo.activeProcessorCount) cores, "
        + "\(ProcessInfo.processInfo.physicalMemory >> 30) GiB, data in \(root)"
)

/// Appends `count` events of ~300 bytes (the envelope brings the 180-byte payload there) to
/// `store` in requests of `batch`, each event to one of 1,000 streams at random.
func appendBenchEvents(_ store: EventStore, batch: Int, count: Int) async throws {
    let payload = Array(repeating: UInt8(ascii: "a"), count: 300 - 120)
    // Seeded and cheap: the system generator is a system call a number, timed with the appends.
    var generator = SeededRandom(seed: UInt64(batch))
    // The 1,000 stream ids are made once, as the peer keeps its 1,000 aggregates in a dictionary:
    // formatting an id for every event is the client's work, not the store's.
    let streamIds = (0..<1_000).map { "bench:cmp_\($0)" }
    var written = 0
    while written < count {
        var streams = [String: [NewEvent]]()
        for _ in 0..<min(batch, count - written) {
            streams[streamIds[Int(generator.next() % 1_000)], default: []].append(
                newEvent(CampaignEvent.Kind.updated.rawValue, payload))
            written += 1
        }
        _ = try await store.append(
            AppendRequest(
                streams: streams.map { StreamAppend(streamId: $0.key, expectedVersion: .any, events: $0.value) }))
    }
}

// MARK: 1 & 2. Appends: raw LMDB against EventStore, same batch shapes.

print("\n[1,2] appends, 300-byte values, durable commits")
for (batch, count) in !runs(1) ? [] : [(1, n(2_000)), (100, n(200_000)), (1_000, n(1_000_000))] {
    for indexed in [false, true] {
        let raw = try RawLMDB(path: "\(root)/raw-\(batch)-\(indexed)")
        let rawRate = rate(count, try raw.append(count: count, batch: batch, valueSize: 300, indexed: indexed))
        var engineRate = 0.0
        if indexed {
            let store = try EventStore(path: "\(root)/store-\(batch)", options: StoreOptions(initialMapSize: 1 << 30))
            let elapsed = try await secondsAsync { try await appendBenchEvents(store, batch: batch, count: count) }
            engineRate = rate(count, elapsed)
            store.close()
        }
        let name = "append batch \(batch)\(indexed ? " + index" : "")"
        if indexed {
            report(
                name, engine: "EventStore \(f(engineRate)) ev/s", baseline: "raw \(f(rawRate)) ev/s",
                ratio: x(engineRate / rawRate),
                [
                    "batch": .number(Double(batch)), "events": .number(Double(count)),
                    "eventStorePerSecond": .number(engineRate), "rawPerSecond": .number(rawRate),
                ])
        } else {
            report(
                name, engine: "-", baseline: "raw \(f(rawRate)) ev/s", ratio: "-",
                ["batch": .number(Double(batch)), "events": .number(Double(count)), "rawPerSecond": .number(rawRate)])
        }
    }
}

/// Runs `body` as a task on the global executor, where a host's request handlers run, and waits for
/// its result. A loop written in this file's top-level code runs on the main actor, and each
/// `await` of the engine from there would add two thread hops (out to the pool and back) to what
/// it times; the peers call their stores in line.
func onGlobalExecutor<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await Task.detached(operation: body).value
}

/// Sends `requests` (bytes, as a host receives them) one after another, encoding each answer, and
/// returns each one's latency in milliseconds.
func timedRequests(_ engine: CampaignEngine, _ requests: [[UInt8]]) async -> [Double] {
    var latencies = [Double]()
    latencies.reserveCapacity(requests.count)
    for request in requests {
        let started = DispatchTime.now().uptimeNanoseconds
        let response = await engine.handle(request)
        _ = response.bytes  // a host sends the body back: encoding it is part of the cost
        latencies.append(Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6)
        precondition(response.status == 201, response.line)
    }
    return latencies
}

/// Runs one task a client, each sending its requests through ``timedRequests(_:_:)``, and returns
/// every latency in milliseconds. The tasks run on the global executor, as a host's connection
/// handlers would; closures made in this file's top-level code would run on the main actor, adding
/// two hops and one serial thread to every command.
func concurrentClients(_ engine: CampaignEngine, requests: [[[UInt8]]]) async -> [Double] {
    await withTaskGroup(of: [Double].self) { group in
        for mine in requests { group.addTask { await timedRequests(engine, mine) } }
        return await group.reduce(into: [Double]()) { $0 += $1 }
    }
}

// MARK: 3. Engine commands end to end.

print("\n[3] engine commands end to end (wire decode, auth, load, decide, append, inline projections), durable")
if runs(3) {
    // The catch-up projections' lag limit scales with the run, so the audit index catches up inside
    // the rounds in a quick run as in a full one (the default 10,000 is more than a quick round's
    // 2,000 commands: quick runs left that work to the pause after each round, and rated higher).
    var configuration = EngineConfiguration(rateLimit: 100_000_000)
    configuration.catchUp = CatchUpSchedule(maximumLag: UInt64(n(10_000)))
    let engine = try CampaignEngine(directory: "\(root)/engine", configuration: configuration)
    let principal =
        #"{"tenant":"bench","subject":"u","role":"admin","scopes":["campaigns:write","campaigns:read"],"#
        + #""expiresAt":"2099-01-01T00:00:00Z"}"#
    for client in 0..<64 {
        _ = await engine.handle(
            line:
                #"{"principal":\#(principal),"command":"campaign.create","#
                + #""payload":{"campaignId":"cmp_\#(client)","name":"Campaign \#(client)","#
                + #""channel":"email"}}"#
        )
    }
    func update(_ client: Int, _ n: Int) -> String {
        #"{"requestId":"r\#(client)-\#(n)","principal":\#(principal),"command":"campaign.update","#
            + #""payload":{"campaignId":"cmp_\#(client)","content":{"subject":"S","body":"update \#(n) "#
            + #"\#(payload200)"}}}"#
    }
    let lines = (0..<n(1_000)).map { Array(update(0, $0).utf8) }
    // Bytes handed to `write` calls a command (or a raw transaction): LMDB writes whole pages, so
    // this counts the pages each commit flushes (plus the meta page's 120 bytes).
    // And the waits a command: a thread handing work to another and sleeping until it is woken.
    var written = processWrittenBytes()
    var waits = processThreadWaits()
    let latencies = try await onGlobalExecutor { await timedRequests(engine, lines) }
    let writtenPerCommand = (processWrittenBytes() - written) / Double(max(lines.count, 1))
    let waitsPerCommand = (processThreadWaits() - waits) / Double(max(lines.count, 1))
    let raw = try RawLMDB(path: "\(root)/raw-latency")
    written = processWrittenBytes()
    waits = processThreadWaits()
    let rawLatencies = try raw.singleTransactionLatencies(samples: n(1_000), valueSize: 300)
    let rawWrittenPerTransaction = (processWrittenBytes() - written) / Double(max(rawLatencies.count, 1))
    let rawWaitsPerTransaction = (processThreadWaits() - waits) / Double(max(rawLatencies.count, 1))
    let wake = crossCoreWakeMicros()
    report(
        "one client, sequential",
        engine:
            "p50 \(ms(median(latencies))) p99 \(ms(percentile(latencies, 0.99))), "
            + "\(f(writtenPerCommand)) bytes written and \(f(waitsPerCommand)) thread waits a command",
        baseline:
            "raw txn p50 \(ms(median(rawLatencies))) p99 \(ms(percentile(rawLatencies, 0.99))), "
            + "\(f(rawWrittenPerTransaction)) bytes written and \(f(rawWaitsPerTransaction)) thread waits a "
            + "transaction; a wake across cores \(wake.map { "\(f($0)) µs" } ?? "n/a (one core)")",
        ratio: "p50 \(x(median(latencies) / median(rawLatencies)))",
        [
            "p50Ms": .number(median(latencies)), "p99Ms": .number(percentile(latencies, 0.99)),
            "rawP50Ms": .number(median(rawLatencies)), "rawP99Ms": .number(percentile(rawLatencies, 0.99)),
            "bytesWrittenPerCommand": .number(writtenPerCommand),
            "rawBytesWrittenPerTransaction": .number(rawWrittenPerTransaction),
            "threadWaitsPerCommand": .number(waitsPerCommand),
            "rawThreadWaitsPerTransaction": .number(rawWaitsPerTransaction),
            "crossCoreWakeMicros": wake.map(JSON.number) ?? .null,
        ])

    // Three rounds, each of `perClient` commands per client: this VM's speed drifts 10–20% from one
    // second to the next, so the rate and the CPU per command are each the median round's, and the
    // table shows their range.
    let perClient = n(20_000) / 64
    let rounds = 3
    let rawSingleRate = 1000 / median(rawLatencies)
    func range(_ values: [Double]) -> String { "\(f(values.min() ?? 0))–\(f(values.max() ?? 0))" }
    /// Runs `rounds` rounds of 64 clients sending `request(round, client, i)` and reports them as
    /// `name`: the median round's rate and CPU per command, each one's range, every round in the JSON.
    func measureRounds(_ name: String, _ request: @escaping @Sendable (Int, Int, Int) -> String) async {
        var all = [Double]()
        var roundRates = [Double]()
        var roundCPU = [Double]()
        var roundUser = [Double]()
        var roundSystem = [Double]()
        var roundWritten = [Double]()
        // The writer's share of the wall time: in group commits, and in its other jobs (the
        // catch-up projections' batches, snapshots), from the engine's own timings.
        var roundCommitShare = [Double]()
        var roundJobShare = [Double]()
        var transactions: UInt64 = 0
        for round in 0..<rounds {
            // The requests arrive as bytes, made before the clock starts: building them is the
            // client's work, not the engine's, and would count in the process's CPU time.
            let requests = (0..<64).map { client in
                (0..<perClient).map { Array(request(round, client, 10_000 + $0).utf8) }
            }
            let before = engine.eventStore.statistics
            let cpuBefore = processCPUSplit()
            let writtenBefore = processWrittenBytes()
            let started = DispatchTime.now().uptimeNanoseconds
            let latencies = await concurrentClients(engine, requests: requests)
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
            let cpuAfter = processCPUSplit()
            let commands = Double(max(perClient * 64, 1))
            roundUser.append((cpuAfter.user - cpuBefore.user) * 1e6 / commands)
            roundSystem.append((cpuAfter.system - cpuBefore.system) * 1e6 / commands)
            roundCPU.append(roundUser.last! + roundSystem.last!)
            roundWritten.append((processWrittenBytes() - writtenBefore) / commands)
            roundRates.append(rate(latencies.count, elapsed))
            let after = engine.eventStore.statistics
            transactions += after.groupCommitTransactions - before.groupCommitTransactions
            roundCommitShare.append(
                (after.appendTransactionDurations.sum - before.appendTransactionDurations.sum) / elapsed)
            roundJobShare.append((after.writerJobDurations.sum - before.writerJobDurations.sum) / elapsed)
            all += latencies
        }
        let commandRate = median(roundRates)
        report(
            name,
            engine:
                "\(f(commandRate)) cmd/s p50 \(ms(median(all))) p99 "
                + "\(ms(percentile(all, 0.99))), \(f(median(roundCPU))) µs CPU/cmd (user \(f(median(roundUser))), "
                + "kernel \(f(median(roundSystem)))) (medians of \(rounds) rounds: "
                + "\(range(roundRates)) cmd/s, \(range(roundCPU)) µs)",
            baseline:
                "raw single durable txns \(f(rawSingleRate))/s; "
                + "\(f(Double(all.count) / Double(max(transactions, 1)))) commands per transaction, "
                + "\(f(median(roundWritten))) bytes written per command; the writer in group commits "
                + "\(percent(median(roundCommitShare))), in other jobs \(percent(median(roundJobShare))) of the time",
            ratio: "\(x(commandRate / rawSingleRate)) of raw single txns",
            [
                "commandsPerSecond": .number(commandRate), "p50Ms": .number(median(all)),
                "p99Ms": .number(percentile(all, 0.99)),
                "transactions": .number(Double(transactions)), "commands": .number(Double(all.count)),
                "cpuMicrosPerCommand": .number(median(roundCPU)),
                "userCPUMicrosPerCommand": .number(median(roundUser)),
                "systemCPUMicrosPerCommand": .number(median(roundSystem)),
                "bytesWrittenPerCommand": .number(median(roundWritten)),
                "rawSingleTransactionsPerSecond": .number(rawSingleRate),
                "roundCommandsPerSecond": .array(roundRates.map(JSON.number)),
                "roundCPUMicrosPerCommand": .array(roundCPU.map(JSON.number)),
                "writerShareInGroupCommits": .number(median(roundCommitShare)),
                "writerShareInOtherJobs": .number(median(roundJobShare)),
            ])
    }
    // Three rounds each: this VM's speed drifts 10–20% from one second to the next.
    await measureRounds("64 concurrent clients") { [principal, payload200] round, client, i in
        #"{"requestId":"r\#(round)-\#(client)-\#(i)","principal":\#(principal),"#
            + #""command":"campaign.update","payload":{"campaignId":"cmp_\#(client)","#
            + #""content":{"subject":"S","body":"update \#(i) \#(payload200)"}}}"#
    }
    // The same load with an idempotency key on every request, as a host that retries would send:
    // each command also claims its key and stores its answer, inside its transaction.
    await measureRounds("64 clients, idempotency keys") { [principal, payload200] round, client, i in
        #"{"requestId":"k\#(round)-\#(client)-\#(i)","idempotencyKey":"k\#(round)-\#(client)-\#(i)","#
            + #""principal":\#(principal),"command":"campaign.update","payload":{"#
            + #""campaignId":"cmp_\#(client)","content":{"subject":"S","body":"keyed \#(i) \#(payload200)"}}}"#
    }
    engine.close()
}

// MARK: 4. Aggregate loads.

print("\n[4] aggregate load (campaign.get), without and with snapshots")
let loadSizes = quick ? [10, 1_000, 10_000] : [10, 1_000, 10_000, 100_000]
if runs(4) {
    let path = "\(root)/loads"
    do {
        let store = try EventStore(path: path, options: StoreOptions(initialMapSize: 1 << 30))
        for size in loadSizes {
            let id = "cmp_\(size)"
            var events = [
                newEvent(
                    CampaignEvent.Kind.created.rawValue,
                    JSON.object([
                        "campaignId": .string(id), "name": .string("Load \(size)"), "channel": .string("email"),
                    ]).bytes)
            ]
            var version: UInt64 = 0
            for _ in 1..<size { events.append(newEvent(CampaignEvent.Kind.updated.rawValue, updatePayload(id))) }
            for chunk in stride(from: 0, to: events.count, by: 1_000) {
                let part = Array(events[chunk..<min(chunk + 1_000, events.count)])
                _ = try await store.append(
                    AppendRequest(streams: [
                        StreamAppend(
                            streamId: "bench:\(id)", expectedVersion: version == 0 ? .noStream : .exact(version),
                            events: part)
                    ]))
                version += UInt64(part.count)
            }
        }
        store.close()
    }
    let viewer = Principal(
        tenant: "bench", subject: "u", role: .viewer, scopes: ["campaigns:read"], expiresAt: .distantFuture)
    func measure(_ engine: CampaignEngine, _ size: Int, runs: Int) async throws -> Double {
        let samples = try await onGlobalExecutor { [viewer] in
            var samples = [Double]()
            for _ in 0..<runs {
                let started = DispatchTime.now().uptimeNanoseconds
                let response = await engine.execute(
                    .query(.campaignGet(campaignId: "cmp_\(size)"), as: viewer, requestId: "load"))
                samples.append(Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6)
                precondition(response.status == 200)
            }
            return samples
        }
        return median(samples)
    }
    var without = [Int: Double]()
    do {
        // The aggregate cache is off in this case: it measures loads from storage.
        let engine = try CampaignEngine(
            directory: path,
            configuration: EngineConfiguration(
                snapshotPolicy: SnapshotPolicy(defaultEvery: Int.max / 2), aggregateCacheCapacity: 0))
        for size in loadSizes { without[size] = try await measure(engine, size, runs: size >= 100_000 ? 3 : 7) }
        engine.close()
    }
    let engine = try CampaignEngine(
        directory: path,
        configuration: EngineConfiguration(snapshotPolicy: SnapshotPolicy(defaultEvery: 100), aggregateCacheCapacity: 0)
    )
    for size in loadSizes {
        _ = try await measure(engine, size, runs: 1)  // the first load leaves a snapshot
        let with = try await measure(engine, size, runs: 51)
        report(
            "load \(size) events", engine: "snapshot \(ms(with))", baseline: "no snapshot \(ms(without[size]!))",
            ratio: x(without[size]! / with),
            [
                "events": .number(Double(size)), "withSnapshotMs": .number(with),
                "withoutSnapshotMs": .number(without[size]!),
            ])
    }
    engine.close()
}

// MARK: 5 & 6. Rebuild and verify over a large log.

let logSize = n(1_000_000)
/// Events read back in order with their payloads parsed, a second (case 6; the peers' rows compare it).
var readDecodeRate = Double.nan
print("\n[5,6] projection rebuild and chain verify over \(String(logSize).withCommas) events shaped like the demo's")
if runs(5) || runs(6) || withPeer {
    let path = "\(root)/big"
    let demoLog: (events: Int, seconds: Double, refused: Int, types: Int)
    do {
        let engine = try CampaignEngine(
            directory: path, configuration: EngineConfiguration(rateLimit: 100_000_000))
        let log = DemoShapedLog(engine: engine, tenants: 32, clock: Date())
        let filled = try await secondsAsync { try await log.fill(events: UInt64(logSize)) }
        var types = Set<String>()
        try engine.eventStore.forEachEvent(pageSize: 8_192) { event in
            types.insert(event.type)
            return true
        }
        demoLog = (Int(try engine.eventStore.head().position), filled, log.refused.value, types.count)
        engine.close()
        // A refused command means the workload is no longer the demo's (a rule changed under it):
        // its figures would describe another log.
        if let first = log.firstRefusal.value {
            FileHandle.standardError.write(
                Data(
                    ("campaign-bench: the demo-shaped log had \(demoLog.refused) commands refused, the first "
                        + "\(first); fix Tools/bench/DemoLog.swift\n").utf8))
            exit(70)
        }
    }
    let events = demoLog.events
    print(
        "  demo-shaped log: \(String(events).withCommas) events of \(demoLog.types) types from 32 tenants in "
            + "\(f(demoLog.seconds)) s (\(demoLog.refused) commands refused)")
    let store = try EventStore(path: path)
    let runner = try ProjectionRunner(store: store, projections: CampaignEngine.standardProjections())
    // Each projection alone, then all in one pass.
    var perProjection = JSONObject()
    var perProjectionText = [String]()
    for projection in runner.projections {
        let alone = try seconds { try runner.rebuild(projection.name) }
        perProjection[projection.name] = .number(rate(events, alone))
        perProjectionText.append("\(projection.name) \(f(rate(events, alone)))")
    }
    // One lane first (the least memory), then every core; the heap is sampled throughout, folds
    // included, since a fold holds its state before any batch reports progress.
    let oneLane = HeapSampler()
    let oneLaneSeconds = try seconds { try runner.rebuildAll(lanes: 1) }
    let oneLanePeak = oneLane.stop()
    resetPeakMemory()
    let baseline = peakMemory()
    let sampler = HeapSampler()
    let rebuildSeconds = try seconds { try runner.rebuildAll() }
    let peakAnonymous = sampler.stop()
    let peak = peakMemory()
    let rebuildRate = rate(events, rebuildSeconds)
    // Bytes on disk per event: the log (records and the stream index) and each read model.
    let usage = try store.tableUsage()
    func bytes(_ names: (String) -> Bool) -> Double {
        Double(usage.filter { names($0.name) }.map(\.bytes).reduce(0, +))
    }
    let logBytes = bytes { $0 == "events" || $0.hasPrefix("stream-") }
    var diskJSON: JSONObject = ["log": .number(logBytes / Double(events))]
    var diskText = ["log \(f(logBytes / Double(events)))"]
    for projection in runner.projections {
        let modelBytes = bytes { $0.hasPrefix("p:\(projection.name):") }
        diskJSON[projection.name] = .number(modelBytes / Double(events))
        diskText.append("\(projection.name) \(f(modelBytes / Double(events)))")
    }
    let allModels = bytes { $0.hasPrefix("p:") }
    report(
        "demo-shaped log on disk", engine: "bytes per event: " + diskText.joined(separator: ", "),
        baseline: "the log \(f(logBytes / Double(events))) bytes per event",
        ratio: "read models \(x(allModels / logBytes)) of the log",
        [
            "events": .number(Double(events)), "eventTypes": .number(Double(demoLog.types)),
            "bytesPerEvent": .object(diskJSON), "readModelsToLog": .number(allModels / logBytes),
            "refusedCommands": .number(Double(demoLog.refused)),
        ])
    report(
        "rebuild one projection", engine: perProjectionText.joined(separator: ", ") + " ev/s",
        baseline: "-", ratio: "-", ["eventsPerSecond": .object(perProjection)])
    var intact = false
    let verifySeconds = try seconds { intact = try store.verifyChain().isIntact }
    precondition(intact)
    let sequentialSeconds = try seconds { intact = try store.verifyChain(workers: 1).isIntact }
    precondition(intact)
    // What `campaign verify` adds after the chain: every stored tree node against the records.
    let treeSeconds = try seconds { intact = try store.verifyTree() == nil }
    precondition(intact)
    store.close()
    // Each event's envelope and payload decoded, as the peers decode their own (they store no hash
    // chain, so the events' hashes are not read): the same count as the peers read, through a store
    // opened for it, so the map's pages are faulted in as a reader's first pass would.
    var decoded = 0
    let reader = try EventStore(path: path)
    let readSeconds = try seconds {
        try reader.forEachEvent(pageSize: 8_192, hashes: false) { event in
            if (try? JSON.parse(event.payload)) != nil { decoded += 1 }
            return decoded < n(300_000)
        }
    }
    reader.close()
    readDecodeRate = rate(decoded, readSeconds)
    // One client sending commands one at a time, alone and then while every projection rebuilds
    // in writer jobs beside it.
    do {
        let engine = try CampaignEngine(directory: path, configuration: EngineConfiguration(rateLimit: 100_000_000))
        let client = DemoShapedLog(engine: engine, tenants: 1, clock: Date())
        func timedUpdates(while running: @escaping @Sendable () -> Bool) async throws -> [Double] {
            try await onGlobalExecutor {
                var latencies = [Double]()
                var n = 0
                while latencies.count < 300 || running() {
                    let started = DispatchTime.now().uptimeNanoseconds
                    await client.send(
                        .campaign(.update(campaignId: "cmp_0_3", name: "During \(n)")), "t0")
                    latencies.append(Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6)
                    n += 1
                }
                return latencies
            }
        }
        let alone = try await timedUpdates { false }
        let names = engine.projections.projections.map(\.name)
        let finished = Counter()
        let rebuilding = Task {
            defer { finished.add(1) }
            try await engine.projections.rebuildOnWriter(names)
        }
        let during = try await timedUpdates { finished.value == 0 }
        _ = try await rebuilding.value
        engine.close()
        precondition(client.refused.value == 0, "the client's updates were refused")
        report(
            "one client during a full rebuild",
            engine: "p99 \(ms(percentile(during, 0.99))) (p50 \(ms(median(during))), \(during.count) commands)",
            baseline: "p99 \(ms(percentile(alone, 0.99))) with no rebuild (p50 \(ms(median(alone))))",
            ratio: "p99 \(x(percentile(during, 0.99) / percentile(alone, 0.99)))",
            [
                "p99Ms": .number(percentile(during, 0.99)), "p50Ms": .number(median(during)),
                "aloneP99Ms": .number(percentile(alone, 0.99)), "aloneP50Ms": .number(median(alone)),
            ])
    }
    let raw = try RawLMDB(path: "\(root)/raw-scan")
    _ = try raw.append(count: logSize, batch: 10_000, valueSize: 300, indexed: false)
    let scanRate = try raw.scan()
    report(
        "rebuild all 6 projections",
        engine:
            "\(f(rebuildRate)) ev/s on \(ProjectionRunner.cores) lanes, peak heap \(peakAnonymous >> 20) MiB, "
            + "\(sampler.start >> 20) MiB before it; peak RSS with the mapped log \(peak >> 20) MiB "
            + "(\(baseline >> 20) before); on one lane \(f(rate(events, oneLaneSeconds))) ev/s, peak heap "
            + "\(oneLanePeak >> 20) MiB, \(oneLane.start >> 20) MiB before it",
        baseline: "raw cursor scan \(f(scanRate)) ev/s", ratio: x(rebuildRate / scanRate),
        [
            "events": .number(Double(events)), "eventsPerSecond": .number(rebuildRate),
            "peakBytes": .number(Double(peak)),
            "peakAnonymousBytes": .number(Double(peakAnonymous)), "rawScanPerSecond": .number(scanRate),
            "anonymousBytesBefore": .number(Double(sampler.start)), "lanes": .number(Double(ProjectionRunner.cores)),
            "oneLane": .object([
                "eventsPerSecond": .number(rate(events, oneLaneSeconds)),
                "peakAnonymousBytes": .number(Double(oneLanePeak)),
                "anonymousBytesBefore": .number(Double(oneLane.start)),
            ]),
        ])
    // The rebuild as an operator runs it, `campaign projections rebuild` in a process of its own:
    // its peak heap is the rebuild's alone (this process holds the demo log's engine and caches).
    let fresh = try rebuildInFreshProcess(path, lanes: ProjectionRunner.cores)
    let freshOneLane = try rebuildInFreshProcess(path, lanes: 1)
    report(
        "rebuild all 6 in a fresh process",
        engine:
            "\(f(rate(events, fresh.seconds))) ev/s on \(ProjectionRunner.cores) lanes, peak heap "
            + "\(fresh.peak >> 20) MiB; on one lane \(f(rate(events, freshOneLane.seconds))) ev/s, peak heap "
            + "\(freshOneLane.peak >> 20) MiB (process start and store open included)",
        baseline: "raw cursor scan \(f(scanRate)) ev/s", ratio: x(rate(events, fresh.seconds) / scanRate),
        [
            "eventsPerSecond": .number(rate(events, fresh.seconds)), "peakAnonymousBytes": .number(Double(fresh.peak)),
            "oneLane": .object([
                "eventsPerSecond": .number(rate(events, freshOneLane.seconds)),
                "peakAnonymousBytes": .number(Double(freshOneLane.peak)),
            ]),
        ])
    // What bounds verify: SHA-256 over records of the same size, alone, with each implementation.
    let record = [UInt8](repeating: 0x61, count: 420)
    let shaCount = n(1_000_000)
    var shaRates = [SHA256.Implementation: Double]()
    for implementation in SHA256.available {
        var digest = [UInt8]()
        let shaSeconds = seconds {
            for _ in 0..<shaCount {
                var hasher = SHA256(using: implementation)
                hasher.update(record)
                digest = hasher.finalize()
            }
        }
        precondition(digest.count == 32)
        shaRates[implementation] = rate(shaCount, shaSeconds)
    }
    let portableRate = shaRates[.portable]!
    let fastestRate = shaRates[SHA256.fastest]!
    report(
        "SHA-256 of a 420-byte record",
        engine: "\(SHA256.fastest == .shaExtensions ? "SHA extensions" : "portable") \(f(fastestRate)) records/s",
        baseline: "portable Swift \(f(portableRate)) records/s", ratio: x(fastestRate / portableRate),
        [
            "recordsPerSecond": .number(fastestRate), "portableRecordsPerSecond": .number(portableRate),
            "shaExtensions": .bool(SHA256.fastest == .shaExtensions),
        ])
    report(
        "verify chain",
        engine:
            "\(f(rate(events, verifySeconds))) ev/s on \(ProcessInfo.processInfo.activeProcessorCount) threads, "
            + "\(f(rate(events, sequentialSeconds))) ev/s on one",
        baseline: "raw scan \(f(scanRate)) ev/s", ratio: x(rate(events, verifySeconds) / scanRate),
        [
            "eventsPerSecond": .number(rate(events, verifySeconds)),
            "oneThreadEventsPerSecond": .number(rate(events, sequentialSeconds)),
            "sha256RecordsPerSecond": .number(fastestRate),
        ])
    report(
        "verify the Merkle tree", engine: "\(f(rate(events, treeSeconds))) ev/s on one thread",
        baseline: "raw scan \(f(scanRate)) ev/s", ratio: x(rate(events, treeSeconds) / scanRate),
        ["eventsPerSecond": .number(rate(events, treeSeconds))])
    report(
        "read and decode the log", engine: "\(f(readDecodeRate)) ev/s (\(String(decoded).withCommas) events)",
        baseline: "raw scan \(f(scanRate)) ev/s", ratio: x(readDecodeRate / scanRate),
        ["eventsPerSecond": .number(readDecodeRate), "events": .number(Double(decoded))])
}

// MARK: 7. Scheduler tick.

let scheduled = n(100_000)
print("\n[7] scheduler tick with \(String(scheduled).withCommas) scheduled campaigns")
if runs(7) {
    let path = "\(root)/tick"
    let far = Date().addingTimeInterval(86_400 * 365)
    do {
        let store = try EventStore(path: path, options: StoreOptions(initialMapSize: 1 << 30))
        var written = 0
        while written < scheduled {
            var streams = [StreamAppend]()
            for c in written..<min(written + 1_000, scheduled) {
                let id = "cmp_\(c)"
                streams.append(
                    StreamAppend(
                        streamId: "bench:\(id)", expectedVersion: .noStream,
                        events: [
                            newEvent(
                                CampaignEvent.Kind.created.rawValue,
                                JSON.object([
                                    "campaignId": .string(id), "name": .string("C \(c)"), "channel": .string("sms"),
                                    "segmentId": .string("seg_1"),
                                ]).bytes),
                            newEvent(
                                CampaignEvent.Kind.scheduled.rawValue,
                                JSON.object([
                                    "campaignId": .string(id),
                                    "sendAt": .string(Timestamp.format(far.addingTimeInterval(Double(c)))),
                                ]).bytes),
                        ]))
            }
            _ = try await store.append(AppendRequest(streams: streams))
            written += streams.count
        }
        store.close()
    }
    let clock = ManualClock(Date())
    let engine = try CampaignEngine(directory: path, configuration: EngineConfiguration(clock: clock))
    try engine.projections.rebuild("schedule-index")
    let idle = try await onGlobalExecutor {
        var idle = [Double]()
        for _ in 0..<51 { idle.append(try await secondsAsync { _ = try await engine.tick(now: clock.now()) } * 1000) }
        return idle
    }
    let admin = Principal(
        tenant: "bench", subject: "u", role: .admin, scopes: Principal.allScopes, expiresAt: .distantFuture)
    _ = await engine.execute(
        .command(
            .segment(
                .create(
                    segmentId: "seg_1", name: "All",
                    rules: try JSON.parse(#"{"all":[{"field":"email","operator":"exists"}]}"#))), as: admin,
            requestId: "s"))
    _ = await engine.execute(
        .command(
            .campaign(
                .create(
                    campaignId: "cmp_due", name: "Due", channel: "sms", segmentId: "seg_1",
                    content: Content(body: "Due now"), sendAt: nil)),
            as: admin, requestId: "c"))
    _ = await engine.execute(
        .command(
            .campaign(.schedule(campaignId: "cmp_due", sendAt: clock.now().addingTimeInterval(60))), as: admin,
            requestId: "s2"))
    let (oneDue, activated) = try await onGlobalExecutor {
        var activated = 0
        let milliseconds =
            try await secondsAsync {
                activated = try await engine.tick(now: clock.now().addingTimeInterval(60)).activated.count
            } * 1000
        return (milliseconds, activated)
    }
    precondition(activated == 1)
    engine.close()
    let small = try CampaignEngine(
        directory: "\(root)/tick-small", configuration: EngineConfiguration(clock: ManualClock(Date())))
    let smallIdle = try await onGlobalExecutor {
        var smallIdle = [Double]()
        for _ in 0..<51 { smallIdle.append(try await secondsAsync { _ = try await small.tick() } * 1000) }
        return smallIdle
    }
    small.close()
    report(
        "tick, none due", engine: "\(ms(median(idle))) with \(String(scheduled).withCommas) waiting",
        baseline: "\(ms(median(smallIdle))) with 0 waiting",
        ratio: x(median(idle) / max(median(smallIdle), 1e-6)),
        [
            "scheduled": .number(Double(scheduled)), "idleMs": .number(median(idle)),
            "emptyMs": .number(median(smallIdle)),
        ])
    report("tick, one due", engine: ms(oneDue), baseline: "-", ratio: "-", ["oneDueMs": .number(oneDue)])
}

print("\n[8] campaign apply piping \(String(n(20_000)).withCommas) independent creates, durable")
if runs(8) {
    let principal =
        #"{"tenant":"bench","subject":"u","role":"admin","scopes":["campaigns:write"],"#
        + #""expiresAt":"2099-01-01T00:00:00Z"}"#
    let lines = (0..<n(20_000)).map { index in
        Array(
            (#"{"requestId":"r\#(index)","principal":\#(principal),"command":"campaign.create","#
                + #""payload":{"name":"Campaign \#(index)","channel":"email","#
                + #""content":{"subject":"S","body":"\#(payload200)"}}}"#).utf8)
    }
    var rates = [Int: Double]()
    for concurrency in [1, 64] {
        let console = PipedConsole(lines)
        let elapsed = await secondsAsync {
            let status = await CLI.run(
                [
                    "apply", "--data", "\(root)/apply-\(concurrency)", "--rate-limit", "100000000",
                    "--concurrency", String(concurrency),
                ], console: console)
            precondition(status == 0 && console.created == lines.count, "apply created \(console.created)")
        }
        rates[concurrency] = Double(lines.count) / elapsed
    }
    report(
        "apply, 64 in flight", engine: "\(String(Int(rates[64]!)).withCommas) requests/s",
        baseline: "one at a time \(String(Int(rates[1]!)).withCommas) requests/s", ratio: x(rates[64]! / rates[1]!),
        [
            "requests": .number(Double(lines.count)), "concurrency64PerSecond": .number(rates[64]!),
            "sequentialPerSecond": .number(rates[1]!),
        ])
}

// MARK: 9. The relay into NATS JetStream.

print("\n[9] export and relay of a demo-shaped log (CloudEvents), into NATS JetStream with a broker on this machine")
if runs(9) {
    let path = "\(root)/relay"
    do {
        let engine = try CampaignEngine(directory: path, configuration: EngineConfiguration(rateLimit: 100_000_000))
        try await DemoShapedLog(engine: engine, tenants: 8, clock: Date()).fill(events: UInt64(n(100_000)))
        engine.close()
    }
    // One store open in the process at a time: LMDB allows an environment to be opened once.
    var events = 0
    var bytes = 0
    var readSeconds = [Double]()
    func readLog(measuring: Bool) throws {
        let store = try EventStore(path: path)
        defer { store.close() }
        events = Int(try store.head().position)
        let storeId = try store.storeId()
        var line = [UInt8]()
        var decoded = 0
        let elapsed = try seconds {
            try store.forEachEvent { event in
                decoded += 1
                if !measuring {
                    line.removeAll(keepingCapacity: true)
                    CampaignEngine.appendCloudEvent(event, storeId: storeId, to: &line)
                    bytes += line.count
                }
                return true
            }
        }
        precondition(decoded == events)
        if measuring { readSeconds.append(elapsed) }
    }
    try readLog(measuring: false)
    // `campaign export` as a host runs it, its lines escaped for a terminal as the real console
    // does and then dropped, against reading and decoding the same log alone.
    var exportSeconds = [Double]()
    for _ in 0..<3 {
        let console = CountingConsole()
        var status: Int32 = 0
        exportSeconds.append(
            await secondsAsync {
                status = await CLI.run(["export", "--data", path], console: console)
            })
        precondition(status == 0 && console.lines == events, "the export failed")
        try readLog(measuring: true)
    }
    report(
        "export as CloudEvent lines",
        engine:
            "\(f(rate(events, median(exportSeconds)))) ev/s, "
            + "\(f(Double(bytes) / median(exportSeconds) / 1e6)) MB/s (\(String(events).withCommas) events)",
        baseline: "the log read and decoded \(f(rate(events, median(readSeconds)))) ev/s",
        ratio: x(median(readSeconds) / median(exportSeconds)),
        [
            "events": .number(Double(events)), "eventsPerSecond": .number(rate(events, median(exportSeconds))),
            "decodedPerSecond": .number(rate(events, median(readSeconds))),
            "meanCloudEventBytes": .number(Double(bytes / max(events, 1))),
        ])
    if FileManager.default.isExecutableFile(atPath: LocalNATSServer.executable) {
        let server = try LocalNATSServer()
        defer { server.stop() }
        let relaySeconds = await secondsAsync {
            let status = await CLI.run(
                ["export", "--data", path, "--to", server.url, "--stream", "RELAY"],
                console: SilentConsole(errors: { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }))
            precondition(status == 0, "the relay failed")
        }
        // The same relay with each publish expecting the one before it (`--exclusive`), into a
        // stream of its own, on subjects of its own (its consumer is its own too, so it starts at
        // the first event).
        let exclusiveSeconds = await secondsAsync {
            let status = await CLI.run(
                [
                    "export", "--data", path, "--to", server.url, "--stream", "RELAYX", "--subject-prefix",
                    "exclusive", "--exclusive",
                ],
                console: SilentConsole(errors: { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }))
            precondition(status == 0, "the exclusive relay failed")
        }
        // The baseline: the same number of messages of the same mean size published by the same
        // client, 256 in flight, each acknowledged by JetStream, with no log read and no checkpoint.
        let connection = try NATSConnection(url: server.url)
        let jetStream = JetStream(connection)
        try await jetStream.ensureStream("RAW", subjects: ["raw.>"])
        let payload = [UInt8](repeating: UInt8(ascii: "x"), count: bytes / max(events, 1))
        let acked = Locked<Int>(0)
        let rawSeconds = try await secondsAsync {
            for index in 0..<events {
                while index - acked.value >= 256 { try await Task.sleep(for: .microseconds(100)) }
                try jetStream.publish("raw.bench", id: "raw-\(index)", payload: payload) { result in
                    precondition((try? result.get()) != nil, "a raw publish failed")
                    acked.mutate { $0 += 1 }
                }
            }
            while acked.value < events { try await Task.sleep(for: .microseconds(100)) }
        }
        connection.close()
        for (name, seconds) in [
            ("relay into JetStream", relaySeconds), ("relay into JetStream, --exclusive", exclusiveSeconds),
        ] {
            report(
                name,
                engine: "\(f(rate(events, seconds))) ev/s (\(String(events).withCommas) events)",
                baseline: "raw acknowledged publishes \(f(rate(events, rawSeconds)))/s",
                ratio: x(rate(events, seconds) / rate(events, rawSeconds)),
                [
                    "events": .number(Double(events)), "eventsPerSecond": .number(rate(events, seconds)),
                    "rawPublishesPerSecond": .number(rate(events, rawSeconds)),
                    "meanCloudEventBytes": .number(Double(bytes / max(events, 1))),
                ])
        }
    } else {
        print("  skipped: nats-server is not installed (apt-get install nats-server)")
    }
}

// MARK: 10. What the Merkle tree costs appends.

print("\n[10] appends keeping the Merkle tree against appends without it, durable commits")
if runs(10) {
    /// Case 1's appends on a fresh store, with or without the tree; returns the seconds taken, the
    /// process CPU seconds used and the bytes of the tree and of the log with its index.
    func appendRun(
        _ path: String, batch: Int, count: Int, tree: Bool
    ) async throws -> (wall: Double, cpu: Double, treeBytes: Int, logBytes: Int) {
        var options = StoreOptions(initialMapSize: 1 << 30)
        options.keepsMerkleTree = tree
        let store = try EventStore(path: path, options: options)
        defer { store.close() }
        let started = DispatchTime.now().uptimeNanoseconds
        let cpuBefore = processCPUSeconds()
        try await appendBenchEvents(store, batch: batch, count: count)
        let wall = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let cpu = processCPUSeconds() - cpuBefore
        let usage = try store.tableUsage()
        let bytes = { (names: Set<String>) in usage.filter { names.contains($0.name) }.reduce(0) { $0 + $1.bytes } }
        return (wall, cpu, bytes(["tree"]), bytes(["events", "stream-heads", "stream-links", "stream-marks"]))
    }
    for (batch, count) in [(1, n(2_000)), (100, n(100_000)), (1_000, n(300_000))] {
        // Alternate the two, each on a fresh store, three times, and keep each one's best run: the
        // disk's speed drifts over a run, and alternating spreads the drift over both. CPU time per
        // event does not move with the disk, so it is reported too.
        var withTree = (wall: Double.infinity, cpu: Double.infinity)
        var without = (wall: Double.infinity, cpu: Double.infinity)
        var bytes = (tree: 0, log: 0)
        for round in 0..<3 {
            let off = try await appendRun("\(root)/tree-off-\(batch)-\(round)", batch: batch, count: count, tree: false)
            without = (min(without.wall, off.wall), min(without.cpu, off.cpu))
            let on = try await appendRun("\(root)/tree-on-\(batch)-\(round)", batch: batch, count: count, tree: true)
            withTree = (min(withTree.wall, on.wall), min(withTree.cpu, on.cpu))
            bytes = (on.treeBytes, on.logBytes)
        }
        let microsPerEvent = { (cpu: Double) in cpu * 1e6 / Double(count) }
        let micros = { (cpu: Double) in String(format: "%.1f", microsPerEvent(cpu)) }
        report(
            "append batch \(batch) keeping the tree",
            engine: "with tree \(f(rate(count, withTree.wall))) ev/s, \(micros(withTree.cpu)) µs CPU",
            baseline: "without \(f(rate(count, without.wall))) ev/s, \(micros(without.cpu)) µs CPU",
            ratio: x(without.wall / withTree.wall)
                + " (tree \(bytes.tree / count) B/event beside \(bytes.log / count) B/event of log and index)",
            [
                "treeBytesPerEvent": .number(Double(bytes.tree / count)),
                "logBytesPerEvent": .number(Double(bytes.log / count)),
                "batch": .number(Double(batch)), "events": .number(Double(count)),
                "withTreePerSecond": .number(rate(count, withTree.wall)),
                "withoutTreePerSecond": .number(rate(count, without.wall)),
                "withTreeCPUMicrosPerEvent": .number(microsPerEvent(withTree.cpu)),
                "withoutTreeCPUMicrosPerEvent": .number(microsPerEvent(without.cpu)),
            ])
    }
}

// MARK: 11. Contact imports.

print("\n[11] contacts: imports of 500 against one contact.upsert a contact from 64 clients, durable")
if runs(11) {
    let engine = try CampaignEngine(
        directory: "\(root)/contacts", configuration: EngineConfiguration(rateLimit: 100_000_000))
    let principal =
        #"{"tenant":"bench","subject":"u","role":"admin","scopes":["contacts:write"],"#
        + #""expiresAt":"2099-01-01T00:00:00Z"}"#
    let count = n(100_000)
    /// A contact as a host sends it: an email and three attributes, the id marked by `kind`.
    func contact(_ kind: String, _ index: Int) -> String {
        #"{"contactId":"ctc_\#(kind)\#(index)","attributes":{"email":"person.\#(index)@example.com","#
            + #""first_name":"Name\#(index)","country":"\#(["DE", "FR", "US", "GB"][index % 4])","#
            + #""city":"City \#(index % 97)"}}"#
    }
    let imports = stride(from: 0, to: count, by: 500).map { first in
        let contacts = (first..<min(first + 500, count)).map { contact("i", $0) }.joined(separator: ",")
        return Array(
            (#"{"requestId":"i\#(first)","principal":\#(principal),"command":"contact.import","#
                + #""payload":{"contacts":[\#(contacts)]}}"#).utf8)
    }
    let upserts = (0..<64).map { client in
        stride(from: client, to: count, by: 64).map { index in
            Array(
                (#"{"requestId":"u\#(index)","principal":\#(principal),"command":"contact.upsert","#
                    + #""payload":\#(contact("u", index))}"#).utf8)
        }
    }
    var cpu = processCPUSeconds()
    let importSeconds = try await secondsAsync {
        _ = try await onGlobalExecutor { await timedRequests(engine, imports) }
    }
    let importCPU = processCPUSeconds() - cpu
    cpu = processCPUSeconds()
    let upsertSeconds = await secondsAsync { _ = await concurrentClients(engine, requests: upserts) }
    let upsertCPU = processCPUSeconds() - cpu
    engine.close()
    let micros = { (seconds: Double) in seconds * 1e6 / Double(count) }
    report(
        "contact import",
        engine:
            "\(f(rate(count, importSeconds))) contacts/s in imports of 500, "
            + "\(String(format: "%.1f", micros(importCPU))) µs CPU a contact",
        baseline:
            "one upsert a contact, 64 clients: \(f(rate(count, upsertSeconds))) contacts/s, "
            + "\(String(format: "%.1f", micros(upsertCPU))) µs CPU a contact",
        ratio: x(upsertSeconds / importSeconds),
        [
            "contacts": .number(Double(count)), "importPerSecond": .number(rate(count, importSeconds)),
            "importCPUMicrosPerContact": .number(micros(importCPU)),
            "upsertPerSecond": .number(rate(count, upsertSeconds)),
            "upsertCPUMicrosPerContact": .number(micros(upsertCPU)),
        ])
}

// MARK: The peers.

/// Runs `command` with `/bin/sh` and returns its exit status and standard output (through a file,
/// as the output of a command that leaves something running is not at an end until it stops).
/// With `endsWithThisProcess` the shell is killed when this process is: give a command that starts
/// with `exec`, so the program it runs is the shell's process and goes with it.
func shell(_ command: String, endsWithThisProcess: Bool = false) -> (Int32, String) {
    let output = NSTemporaryDirectory() + "campaign-bench-\(UUID().uuidString).out"
    defer { try? FileManager.default.removeItem(atPath: output) }
    guard
        let child = try? ChildProcess(
            "/bin/sh", ["-c", "exec >'\(output)' 2>/dev/null </dev/null; \(command)"], output: .null, error: .null,
            endsWithThisProcess: endsWithThisProcess)
    else { return (127, "") }
    let status: Int32 =
        switch child.waitUntilExit() {
        case let .exited(status): status
        case let .signalled(signal): 128 + signal
        }
    return (status, (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
}

/// A throwaway PostgreSQL cluster: `initdb` in a temporary directory, then `postgres` itself (not
/// `pg_ctl`, which leaves a daemon) on a free loopback port as a child that ends with this process,
/// so an interrupted or killed benchmark leaves no server running. Trust authentication, default
/// (durable) settings; Debian's `postgresql` is installed when missing. Runs as the `postgres` user
/// when this process is root (PostgreSQL refuses root), through `setpriv`, which changes the user
/// before it asks for the parent-death signal (a change of user clears it).
final class ThrowawayPostgres: Sendable {
    let directory: String
    let port: UInt16
    let server: ChildProcess

    init?() {
        if shell("ls /usr/lib/postgresql/*/bin/initdb").0 != 0 {
            print("  installing postgresql (apt-get)…")
            _ = shell(
                "(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null")
        }
        let (found, path) = shell("ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1")
        guard found == 0, !path.isEmpty, let port = try? LocalNATSServer.freePort() else { return nil }
        let bin = path.trimmingCharacters(in: .whitespacesAndNewlines)
        self.port = port
        let root = getuid() == 0
        Self.removeAbandoned()
        let (made, temporary) = shell("mktemp -d \(Self.prefix)\(getpid()).XXXXXX")
        guard made == 0 else { return nil }
        let directory = temporary.trimmingCharacters(in: .whitespacesAndNewlines)
        self.directory = directory
        let initialised = shell(
            "chmod 755 \(directory) && " + (root ? "chown postgres \(directory) && runuser -u postgres -- " : "")
                + "\(bin)/initdb -D \(directory)/data -A trust -U postgres >/dev/null")
        let arguments = [
            "\(bin)/postgres", "-D", "\(directory)/data", "-p", String(port), "-k", directory, "-c",
            "listen_addresses=127.0.0.1",
        ]
        guard initialised.0 == 0,
            let server = try? ChildProcess(
                root ? ChildProcess.setpriv : arguments[0],
                root
                    ? ["--reuid=postgres", "--regid=postgres", "--init-groups", "--pdeathsig", "KILL", "--"] + arguments
                    : Array(arguments.dropFirst()),
                output: .null, error: .null, endsWithThisProcess: !root)
        else {
            _ = shell("rm -rf \(directory)")
            return nil
        }
        self.server = server
        let deadline = Date().addingTimeInterval(60)
        while shell("\(bin)/pg_isready -q -h 127.0.0.1 -p \(port)").0 != 0 {
            guard server.isRunning, Date() < deadline else {
                stop()
                return nil
            }
            usleep(50_000)
        }
    }

    /// The environment the peer reads its connection from.
    var environment: String {
        "POSTGRES_HOST=127.0.0.1 POSTGRES_PORT=\(port) POSTGRES_DBNAME=postgres POSTGRES_USER=postgres "
            + "POSTGRES_PASSWORD=unused"
    }

    /// Where clusters live: this prefix, then the pid of the benchmark that made one, `.` and
    /// mktemp's six characters.
    static let prefix = "/tmp/campaign-bench-pg."

    /// Removes the clusters of runs that ended without removing theirs (killed during the peer:
    /// their server went with them, through its parent-death signal, but the directory stayed).
    /// A cluster is abandoned when the benchmark whose pid it names no longer runs; one whose name
    /// holds no pid (made before the names held one) is left alone.
    static func removeAbandoned() {
        let directory = URL(fileURLWithPath: prefix).deletingLastPathComponent().path
        let start = URL(fileURLWithPath: prefix).lastPathComponent
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(start)
        {
            let parts = name.dropFirst(start.count).split(separator: ".")
            guard parts.count == 2, let pid = Int32(parts[0]), pid > 0, pid != getpid(), kill(pid, 0) != 0,
                errno == ESRCH
            else { continue }
            try? FileManager.default.removeItem(atPath: directory + "/" + name)
        }
    }

    /// Stops the server (SIGINT: PostgreSQL's fast shutdown), waits for it and removes the cluster.
    func stop() {
        server.send(SIGINT)
        server.waitUntilExit()
        _ = shell("rm -rf \(directory)")
    }
}

var peer: JSON = .null
var postgresPeer: JSON = .null
if withPeer && only == nil {
    print("\n[peer] Python eventsourcing on SQLite and on PostgreSQL, the same workloads")
    let venv = ".venv-bench"
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("peer.py").path
    let ready =
        shell("test -x \(venv)/bin/python || python3 -m venv \(venv)").0 == 0
        && shell(
            "\(venv)/bin/python -c 'import eventsourcing.postgres, psycopg' 2>/dev/null || "
                + "\(venv)/bin/pip install -q 'eventsourcing[postgres]'"
        ).0 == 0
    func runPeer(_ backend: String, environment: String = "") -> JSON {
        // The peer ends with this process: after an interrupted run it would wait for ever on a
        // PostgreSQL that went with it.
        let (status, output) = shell(
            "exec env \(environment) \(venv)/bin/python \(script) \(root)/peer-\(backend) \(quick ? 1 : 0) \(backend)",
            endsWithThisProcess: true)
        guard status == 0 else { return .null }
        return (try? JSON.parse(output.trimmingCharacters(in: .whitespacesAndNewlines))) ?? .null
    }
    if ready {
        peer = runPeer("sqlite")
        if let postgres = ThrowawayPostgres() {
            postgresPeer = runPeer("postgres", environment: postgres.environment)
            postgres.stop()
        }
    }
    func engineValue(_ name: String, _ key: String) -> Double {
        rows.first { $0.name == name }?.json[key]?.numberValue ?? .nan
    }
    for (label, results) in [("SQLite", peer), ("PostgreSQL", postgresPeer)] {
        guard results != .null else {
            print("  \(label) peer unavailable (venv, pip install or the cluster failed); its rows are omitted")
            continue
        }
        func p(_ key: String) -> Double { results[key]?.numberValue ?? .nan }
        for batch in [1, 100, 1_000] {
            let mine = engineValue("append batch \(batch) + index", "eventStorePerSecond")
            report(
                "\(label) peer append batch \(batch)", engine: "EventStore \(f(mine)) ev/s",
                baseline: "peer \(f(p("append_batch_\(batch)"))) ev/s", ratio: x(mine / p("append_batch_\(batch)")),
                ["peer": .number(p("append_batch_\(batch)")), "engine": .number(mine)])
        }
        report(
            "\(label) peer read and decode the log", engine: "\(f(readDecodeRate)) ev/s",
            baseline: "peer \(f(p("read_decode"))) ev/s (\(Int(p("read_decode_events"))) events)",
            ratio: x(readDecodeRate / p("read_decode")),
            ["enginePerSecond": .number(readDecodeRate), "peer": .number(p("read_decode"))])
        let without = engineValue("load 10000 events", "withoutSnapshotMs")
        let with = engineValue("load 10000 events", "withSnapshotMs")
        report(
            "\(label) peer load 10,000", engine: "\(ms(without)) / snapshot \(ms(with))",
            baseline: "peer \(ms(p("load_10k_ms"))) / snapshot \(ms(p("load_10k_snapshot_ms")))",
            ratio: "\(x(p("load_10k_ms") / without)) / \(x(p("load_10k_snapshot_ms") / with))",
            ["peerMs": .number(p("load_10k_ms")), "peerSnapshotMs": .number(p("load_10k_snapshot_ms"))])
    }
}

// MARK: Output.

print("\n| case | engine | baseline | ratio |\n|---|---|---|---|")
for row in rows { print("| \(row.name) | \(row.engine) | \(row.baseline) | \(row.ratio) |") }
try FileManager.default.createDirectory(
    atPath: URL(fileURLWithPath: jsonPath).deletingLastPathComponent().path, withIntermediateDirectories: true)
let document = JSON.object([
    "date": .string(Timestamp.format(Date())), "quick": .bool(quick),
    "cores": .number(Double(ProcessInfo.processInfo.activeProcessorCount)),
    "cases": .array(rows.map { .object($0.json.merging(["name": .string($0.name)]) { $1 }) }), "peer": peer,
    "postgresPeer": postgresPeer,
])
try Data(document.bytes).write(to: URL(fileURLWithPath: jsonPath))
print("\nwrote \(jsonPath)")
if !arguments.contains("--keep") { try? FileManager.default.removeItem(atPath: root) }

/// A value shared between tasks. Invariant that makes `@unchecked Sendable` safe: `stored` is
/// touched only under `lock`.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value { lock.withLock { stored } }
    func mutate(_ body: (inout Value) -> Void) { lock.withLock { body(&stored) } }
}
