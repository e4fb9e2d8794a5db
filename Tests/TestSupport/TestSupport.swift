import Foundation

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

/// A built product run as a child process, its standard output collected line by line as it comes.
public final class ChildProcess: @unchecked Sendable {
    // Invariant: `buffer` and `collected` are touched only under `lock`.
    /// The process.
    public let process = Process()
    private let pipe = Pipe()
    private let lock = NSLock()
    private var buffer = Data()
    private var collected: [String] = []

    /// Starts `executable` (a product name) with `arguments`, feeding `input` on stdin when given.
    public init(_ executable: String, _ arguments: [String], input: String? = nil) throws {
        process.executableURL = productsDirectory.appendingPathComponent(executable)
        process.arguments = arguments
        process.standardOutput = pipe
        process.standardError = FileHandle.standardError
        if let input {
            let stdin = Pipe()
            process.standardInput = stdin
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.withLock {
                self.buffer.append(data)
                while let newline = self.buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    self.collected.append(
                        String(decoding: self.buffer[self.buffer.startIndex..<newline], as: UTF8.self))
                    self.buffer.removeSubrange(self.buffer.startIndex...newline)
                }
            }
        }
        try process.run()
    }

    /// The complete lines printed so far.
    public var lines: [String] { lock.withLock { collected } }

    /// Waits for the process to end (off the cooperative pool) and returns its status.
    public func waitForExit() async throws -> Int32 {
        try await blocking { self.process.waitUntilExit() }
        pipe.fileHandleForReading.readabilityHandler = nil
        return process.terminationStatus
    }
}

/// Runs one of the project's Python tools (`Tools/NAME`) with `python3` and returns its exit
/// status and standard output.
public func runPythonTool(_ name: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    try runPythonScript(
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Tools/\(name)")
            .standardized.path, arguments)
}

/// Runs a Python script at `script` with `python3`; returns its exit status and standard output.
public func runPythonScript(_ script: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    let output = Pipe()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", script] + arguments
    process.standardOutput = output
    try process.run()
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, text)
}

/// Whether `python3` can import `module` (an optional binding some tests use).
public func pythonCanImport(_ module: String) -> Bool {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", "import \(module)"]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return false }
    process.waitUntilExit()
    return process.terminationStatus == 0
}
