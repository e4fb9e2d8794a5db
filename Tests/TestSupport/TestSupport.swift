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

/// A real `nats-server` with JetStream, on a free loopback port, its store in a temporary
/// directory; stopped (SIGTERM) by ``stop()`` or when released. Tests never mock the broker.
public final class NATSServer: @unchecked Sendable {
    /// The server process.
    public let process = Process()
    /// Its port on 127.0.0.1.
    public let port: UInt16
    private let store = TemporaryDirectory()

    /// `nats://127.0.0.1:PORT`.
    public var url: String { "nats://127.0.0.1:\(port)" }

    /// Starts `nats-server -js` on a free port (or on `port`, to restart one) and waits until it
    /// accepts connections.
    public init(port: UInt16? = nil, storeDirectory: String? = nil) throws {
        self.port = try port ?? NATSServer.freePort()
        process.executableURL = URL(fileURLWithPath: NATSServer.executable)
        process.arguments = [
            "-js", "-a", "127.0.0.1", "-p", String(self.port), "-sd", storeDirectory ?? store.path,
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(15)
        while !NATSServer.accepts(self.port) {
            guard Date() < deadline, process.isRunning else {
                throw NSError(domain: "nats-server", code: 1, userInfo: [NSLocalizedDescriptionKey: "did not start"])
            }
            usleep(20_000)
        }
    }

    /// The JetStream store directory (to restart the same server with ``init(port:storeDirectory:)``).
    public var storePath: String { store.path }

    /// Stops the server and waits for it to exit.
    public func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    deinit { stop() }

    /// Debian installs it in /usr/sbin, which is not always on a test's PATH.
    static let executable =
        ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        } ?? "/usr/sbin/nats-server"

    static func accepts(_ port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else { throw NSError(domain: "nats-server", code: 2) }
        return UInt16(bigEndian: address.sin_port)
    }
}
