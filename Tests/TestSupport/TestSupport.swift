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
