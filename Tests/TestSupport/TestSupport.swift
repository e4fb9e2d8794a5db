import Foundation
import Spawn

/// A directory under the system temporary directory, removed when the value is released.
public final class TemporaryDirectory: @unchecked Sendable {
    // Invariant: `path` is set once in `init`.
    /// The directory's path.
    public let path: String

    /// Creates a fresh, empty directory.
    public init() {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("campaign-tests-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// The folder holding the built products (the test bundle's own folder).
public let productsDirectory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    .deletingLastPathComponent()

/// Runs blocking work off the cooperative thread pool.
public func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

/// Thrown by ``waitUntil(_:limit:every:_:)`` when what it waits for did not happen in time.
public struct TimedOut: Error, CustomStringConvertible {
    /// What was waited for, and how long.
    public let description: String
}

/// Polls `condition` every `interval` until it holds, and throws ``TimedOut`` after `limit`: a
/// bound on a hang (a test that waits for ever stops CI only at its own time limit, naming
/// nothing), generous for a loaded machine.
public func waitUntil(
    _ what: String, limit: Duration = .seconds(30), every interval: Duration = .milliseconds(5),
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + limit
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            throw TimedOut(description: "waited \(limit) for \(what)")
        }
        try await Task.sleep(for: interval)
    }
}

/// Holds a store's writer: `enqueue` queues the job it is handed (on the writer thread), and this
/// returns once that job runs, with the semaphore that releases it. Work queued after this waits
/// behind the job; work queued before the job ran might have gone first.
public func holdWriter(_ enqueue: (_ job: @escaping @Sendable () -> Void) -> Void) async throws -> DispatchSemaphore {
    let entered = DispatchSemaphore(value: 0)
    let release = DispatchSemaphore(value: 0)
    enqueue {
        entered.signal()
        release.wait()
    }
    try await blocking { entered.wait() }
    return release
}

/// The path of a built product (`campaign`, `campaign-harness`), to start with ``ChildProcess``.
public func product(_ name: String) -> String { productsDirectory.appendingPathComponent(name).path }

/// Starts a built product with `arguments`, its standard output collected (``ChildProcess/lines``)
/// and its standard error this process's.
public func startProduct(_ name: String, _ arguments: [String]) throws -> ChildProcess {
    try ChildProcess(product(name), arguments, output: .collect)
}

/// Runs one of the project's Python tools (`Tools/NAME`) with `python3` and returns its exit
/// status and standard output.
public func runPythonTool(_ name: String, _ arguments: [String]) async throws -> (status: Int32, output: String) {
    try await runPythonScript(
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Tools/\(name)")
            .standardized.path, arguments)
}

/// Runs a Python script at `script` with `python3`; returns its exit status and standard output.
/// Awaits the script's exit, so the seconds it runs hold none of Swift's pool's threads (two
/// blocking waits at once held both, and stalled every other test's task).
public func runPythonScript(_ script: String, _ arguments: [String]) async throws -> (status: Int32, output: String) {
    let child = try ChildProcess("/usr/bin/env", ["python3", script] + arguments, output: .collect)
    let status = await child.waitForExit().status
    return (status, String(decoding: child.output, as: UTF8.self))
}

/// Whether `python3` can import `module` (an optional binding some tests use).
public func pythonCanImport(_ module: String) -> Bool {
    let child = try? ChildProcess(
        "/usr/bin/env", ["python3", "-c", "import \(module)"], output: .null, error: .null)
    return child?.waitUntilExit() == .exited(0)
}
