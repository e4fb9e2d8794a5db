import CampaignCLI
import CampaignEngine
import CampaignProjections
import EventStore
import Foundation
import Spawn

/// `campaign-harness`: child processes for the reliability tests.
///
/// `append-writer --data DIR --streams N --count N [--mode any|exact] [--tag T]`
/// appends `count` events spread over `streams` streams and prints one line per acknowledged
/// append, `ack <position> <streamId> <version> <tag>-<n>`, flushed at once, so the parent knows
/// exactly what was acknowledged when it kills the process. In `exact` mode each append reads the
/// stream's version and expects it exactly, retrying on conflict (as a competing engine would).
///
/// `append-writer`, `catch-up`, `workload` and `hold-child` die with the process that started them
/// (PR_SET_PDEATHSIG).
///
/// `catch-up --data DIR --batch N [--hold-after K] [--budget-us U]` advances the catch-up projections
/// `N` events per transaction, printing `batch <projection> <checkpoint>` after each commit, so a
/// test can kill it mid-way; with `--hold-after K` it stops after the K-th commit and waits to be
/// killed, so the kill lands mid-way however fast the machine is. `--budget-us` shortens how long a
/// transaction may run (a commit that leaves the checkpoint where it was applied part of an event).
///
/// `crash --data DIR [--kills 100] [--seed S]` runs the crash harness: a `workload` child killed
/// with SIGKILL at random moments, everything checked after each kill; prints one summary line.
///
/// `fuzz [--data DIR] [--cases 100000] [--seed S]` sends hostile requests through the wire
/// format and checks every answer; prints one summary line.
///
/// `hold-child PROGRAM [ARGUMENT…]` starts PROGRAM as a child that ends with this process
/// (`endsWithThisProcess`, as `LocalNATSServer` starts `nats-server`), prints `child <pid>` and waits
/// to be killed: a test kills it with SIGKILL and checks the child is gone.
///
/// `nats-cluster [--data DIR] [--contacts 3000] [--exclusive]` relays a demo store into a three-node
/// JetStream cluster (replicas 3) and kills a node during the relay; prints one summary line.
/// `--exclusive` runs the relay so (each publish expecting the one before it).

let usage = """
    usage: campaign-harness append-writer --data DIR --streams N --count N [--mode any|exact] [--tag T]
           campaign-harness catch-up --data DIR --batch N [--hold-after K] [--budget-us U]
           campaign-harness crash --data DIR [--kills N] [--seed S]
           campaign-harness fuzz [--data DIR] [--cases N] [--seed S]
           campaign-harness workload --data DIR --round N --limit N
           campaign-harness nats-cluster [--data DIR] [--contacts N] [--exclusive]
           campaign-harness hold-child PROGRAM [ARGUMENT...]
    """

func fail(_ message: String, code: Int32) -> Never {
    FileHandle.standardError.write(Data((message + "\n").utf8))
    exit(code)
}

var arguments = Array(CommandLine.arguments.dropFirst())
guard let mode = arguments.first,
    ["append-writer", "catch-up", "crash", "fuzz", "workload", "nats-cluster", "hold-child"].contains(mode)
else {
    fail(usage, code: 64)
}
arguments.removeFirst()
// The modes a parent starts (a test, or `crash`) end with it: a `catch-up --hold-after` child waits
// to be killed, and after a parent that died (a test run stopped by a timeout) it would wait for ever.
if ["append-writer", "catch-up", "workload", "hold-child"].contains(mode), !ChildProcess.endWithParent(getppid()) {
    fail("campaign-harness: the parent that started this \(mode) has gone", code: 1)
}
if mode == "hold-child" {
    guard let program = arguments.first else { fail(usage, code: 64) }
    do {
        let child = try ChildProcess(
            program, Array(arguments.dropFirst()), output: .null, error: .null, endsWithThisProcess: true)
        FileHandle.standardOutput.write(Data("child \(child.pid)\n".utf8))
        child.waitUntilExit()
        exit(0)
    } catch {
        fail("campaign-harness: \(error)", code: 1)
    }
}
var options: [String: String] = [:]
while let flag = arguments.first {
    if flag == "--exclusive" {
        options["exclusive"] = "yes"
        arguments.removeFirst()
        continue
    }
    guard flag.hasPrefix("--"), arguments.count >= 2 else { fail(usage, code: 64) }
    options[String(flag.dropFirst(2))] = arguments[1]
    arguments.removeFirst(2)
}
/// Writes a line straight to the pipe (no stdio buffer), so nothing acknowledged is held back.
func emit(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

if mode == "workload" {
    guard let data = options["data"], let round = Int(options["round"] ?? ""), let limit = Int(options["limit"] ?? "")
    else { fail(usage, code: 64) }
    do {
        try await CrashHarness.workload(data: data, round: round, limit: limit, emit: emit)
        exit(0)
    } catch {
        fail("campaign-harness: \(error)", code: 1)
    }
}

if mode == "crash" {
    guard let data = options["data"] else { fail(usage, code: 64) }
    let kills = Int(options["kills"] ?? "100") ?? 100
    let seed = UInt64(options["seed"] ?? "") ?? UInt64(Date().timeIntervalSince1970)
    let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    do {
        let summary = try await CrashHarness.run(data: data, kills: kills, seed: seed, executable: executable) { line in
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
        emit(summary.line + " (seed \(seed))")
        for problem in summary.problems { emit("  " + problem) }
        exit(summary.lost == 0 && summary.duplicated == 0 && summary.problems.isEmpty && summary.kills == kills ? 0 : 1)
    } catch {
        fail("campaign-harness: \(error)", code: 1)
    }
}

if mode == "fuzz" {
    let data =
        options["data"]
        ?? FileManager.default.temporaryDirectory.appendingPathComponent("campaign-fuzz-\(UUID().uuidString)").path
    let cases = Int(options["cases"] ?? "100000") ?? 100_000
    let seed = UInt64(options["seed"] ?? "") ?? UInt64(Date().timeIntervalSince1970)
    do {
        let engine = try CampaignEngine(directory: data, configuration: EngineConfiguration(rateLimit: 100_000_000))
        await Fuzzer.prepare(engine)
        let report = await Fuzzer.run(
            engine: engine, cases: cases, seed: seed, hugeSize: Int(options["huge"] ?? "1000000") ?? 1_000_000)
        let chain = try engine.eventStore.verifyChain()
        let differing = try engine.projections.projections.filter { !(try engine.projections.verify($0.name).matches) }
            .map(\.name)
        engine.close()
        emit(
            "fuzz: \(report.cases) cases (seed \(seed)), \(report.accepted) accepted, \(report.refused) "
                + "refused with catalogue codes, "
                + "\(report.problems.count) problems, slowest \(String(format: "%.3f", report.slowest)) s, "
                + "chain \(chain.isIntact ? "intact" : "BROKEN"), "
                + "projections \(differing.isEmpty ? "match" : "differ: " + differing.joined(separator: ", "))")
        for problem in report.problems.prefix(20) { emit("  " + problem) }
        exit(report.problems.isEmpty && chain.isIntact && differing.isEmpty ? 0 : 1)
    } catch {
        fail("campaign-harness: \(error)", code: 1)
    }
}

if mode == "nats-cluster" {
    let data =
        options["data"]
        ?? FileManager.default.temporaryDirectory.appendingPathComponent("campaign-nats-\(UUID().uuidString)").path
    do {
        let summary = try await NATSClusterHarness.run(
            directory: data, contacts: Int(options["contacts"] ?? "3000") ?? 3_000,
            exclusive: options["exclusive"] != nil
        ) { line in FileHandle.standardError.write(Data((line + "\n").utf8)) }
        emit(summary.line)
        let clean = summary.lost == 0 && summary.duplicated == 0 && summary.outOfOrder == 0
        exit(clean && summary.messages == UInt64(summary.events) ? 0 : 1)
    } catch {
        fail("campaign-harness: \(error)", code: 1)
    }
}

if mode == "catch-up" {
    guard let data = options["data"], let batch = Int(options["batch"] ?? ""), batch > 0 else { fail(usage, code: 64) }
    do {
        let store = try EventStore(path: data)
        let budget = Int(options["budget-us"] ?? "").map { Duration.microseconds($0) }
        let runner = try ProjectionRunner(
            store: store, projections: CampaignEngine.standardProjections(),
            jobBudget: budget ?? ProjectionRunner.batchTimeBudget)
        let hold = Int(options["hold-after"] ?? "") ?? .max
        var committed = 0
        try runner.catchUp(batchSize: batch) { name, checkpoint in
            emit("batch \(name) \(checkpoint)")
            committed += 1
            while committed >= hold { sleep(60) }
        }
        store.close()
        exit(0)
    } catch {
        fail("campaign-harness: \(error)", code: 1)
    }
}

guard let data = options["data"], let streams = Int(options["streams"] ?? "1"), streams > 0,
    let count = Int(options["count"] ?? ""), count >= 0
else { fail(usage, code: 64) }
let exact = options["mode"] == "exact"
let tag = options["tag"] ?? "w"

do {
    let store = try EventStore(path: data)
    for n in 0..<count {
        let streamId = "stream-\(n % streams)"
        let event = NewEvent(
            type: "harness.appended", occurredAt: Date(), tenant: "harness", actor: tag,
            requestId: "\(tag)-\(n)", causationId: "\(tag)-\(n)", payload: Array("{\"n\":\(n)}".utf8))
        while true {
            let expected: ExpectedVersion
            if exact {
                let current = try store.streamVersion(streamId)
                expected = current == 0 ? .noStream : .exact(current)
            } else {
                expected = .any
            }
            do {
                let outcome = try store.appendAndWait(
                    AppendRequest(
                        streams: [StreamAppend(streamId: streamId, expectedVersion: expected, events: [event])]))
                if case let .appended(receipt) = outcome, let recorded = receipt.events.first {
                    emit("ack \(recorded.position) \(streamId) \(recorded.streamVersion) \(tag)-\(n)")
                }
                break
            } catch EventStoreError.wrongExpectedVersion {
                emit("conflict \(streamId)")
                continue
            }
        }
    }
    store.close()
} catch {
    fail("campaign-harness: \(error)", code: 1)
}
