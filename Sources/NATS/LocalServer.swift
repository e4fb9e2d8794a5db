import Foundation
import Spawn

#if canImport(Glibc)
import Glibc
#endif

/// A real `nats-server` with JetStream started on a loopback port, its store in a directory of its
/// own (a temporary one unless given, removed when the value is released); stopped by ``stop()``
/// or on release, and killed by the kernel when this process ends without stopping it (a test run
/// stopped by a timeout, a benchmark interrupted). For the tests, the harness and the benchmark,
/// which never mock the broker.
public final class LocalNATSServer: @unchecked Sendable {
    // Invariant: every stored property is set once in `init`; `ChildProcess` is safe to stop from any thread.
    /// The running `nats-server` process, for a test that must kill it (``stop()`` ends it otherwise).
    public let process: ChildProcess
    /// Its client port on 127.0.0.1.
    public let port: UInt16
    /// The JetStream store directory (give it to a new server to restart this one's store).
    public let storePath: String
    private let ownsStore: Bool

    /// `nats://127.0.0.1:PORT`.
    public var url: String { "nats://127.0.0.1:\(port)" }

    /// Starts `nats-server -js` on `port` (a free one when nil) with `arguments` added (a cluster's
    /// name and routes), and waits until it accepts connections.
    public init(port: UInt16? = nil, storeDirectory: String? = nil, arguments: [String] = []) throws {
        self.port = try port ?? LocalNATSServer.freePort()
        ownsStore = storeDirectory == nil
        storePath =
            storeDirectory
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("nats-\(UUID().uuidString)").path
        process = try ChildProcess(
            LocalNATSServer.executable,
            ["-js", "-a", "127.0.0.1", "-p", String(self.port), "-sd", storePath] + arguments,
            output: .null, error: .null, endsWithThisProcess: true)
        let deadline = Date().addingTimeInterval(15)
        while !LocalNATSServer.accepts(self.port) {
            guard Date() < deadline, process.isRunning else {
                stop()
                throw NATSError.connection("nats-server did not start on port \(self.port)")
            }
            usleep(20_000)
        }
    }

    /// Stops the server: SIGTERM, then SIGKILL if it has not exited within `grace` seconds (a server
    /// that stopped answering would otherwise keep its caller waiting for ever), and waits for it.
    public func stop(grace: Double = 10) {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(grace)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        if process.isRunning { process.send(SIGKILL) }
        process.waitUntilExit()
    }

    deinit {
        stop()
        if ownsStore { try? FileManager.default.removeItem(atPath: storePath) }
    }

    /// Where Debian installs it (/usr/sbin, not always on PATH), or elsewhere.
    public static let executable =
        ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        } ?? "/usr/sbin/nats-server"

    /// A loopback port nothing listens on now.
    public static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else { throw NATSError.connection("no free port") }
        return UInt16(bigEndian: address.sin_port)
    }

    static func accepts(_ port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = loopback(port: port)
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }
}
