import CampaignDomain
import CampaignEngine
import Foundation

/// A directory under the system temporary directory, removed when the value is released.
final class TemporaryDirectory: @unchecked Sendable {
    let path: String

    init() {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("engine-tests-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

let testStart = Timestamp.parse("2026-11-21T10:00:00Z")!

/// An engine on a temporary directory with a manual clock, speaking the wire format.
final class TestEngine: @unchecked Sendable {
    let directory = TemporaryDirectory()
    let clock = ManualClock(testStart)
    let engine: CampaignEngine

    let publisher: SimulatedPublisher

    init(rateLimit: Int = 1_000_000, configuration base: EngineConfiguration? = nil, publishVia custom: (any SocialPublisher)? = nil) throws {
        var configuration = base ?? EngineConfiguration()
        publisher = SimulatedPublisher()
        configuration.publisher = custom ?? publisher
        configuration.clock = clock
        configuration.rateLimit = rateLimit
        engine = try CampaignEngine(directory: directory.path, configuration: configuration)
    }

    deinit { engine.close() }

    /// Sends one wire request and returns the parsed response object.
    func send(_ line: String) async -> JSON {
        let response = await engine.handle(line: line)
        return (try? JSON.parse(response)) ?? .string("unparsable response: \(response)")
    }

    /// Sends a command as `principal` and returns the response.
    func command(_ name: String, _ payload: String, as principal: String = admin(), requestId: String = "req",
                 extra: String = "") async -> JSON {
        await send(#"{"requestId":"\#(requestId)",\#(extra)"principal":\#(principal),"command":"\#(name)","payload":\#(payload)}"#)
    }

    /// Sends a query as `principal`.
    func query(_ name: String, _ params: String, as principal: String = admin()) async -> JSON {
        await send(#"{"requestId":"q","principal":\#(principal),"query":"\#(name)","params":\#(params)}"#)
    }
}

let allScopes = Principal.allScopes.sorted()

/// A principal as wire JSON.
func principal(tenant: String = "acme", subject: String = "u_1", role: String = "admin", scopes: [String] = allScopes,
               expiresAt: String = "2027-01-01T00:00:00Z") -> String {
    let list = scopes.map { "\"\($0)\"" }.joined(separator: ",")
    return #"{"tenant":"\#(tenant)","subject":"\#(subject)","role":"\#(role)","scopes":[\#(list)],"expiresAt":"\#(expiresAt)"}"#
}

func admin(_ tenant: String = "acme") -> String { principal(tenant: tenant) }

extension JSON {
    var status: Int? { self["status"]?.integerValue }
    var code: String? { self["error"]?["code"]?.stringValue }
    var data: JSON? { self["data"] }
}

/// The folder holding the built products (the test bundle's own folder).
let productsDirectory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()

/// Runs blocking work off the cooperative thread pool.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

/// A child process whose standard output is collected line by line.
final class ChildProcess: @unchecked Sendable {
    // Invariant: `buffer` and `collected` are touched only under `lock`.
    let process = Process()
    private let pipe = Pipe()
    private let lock = NSLock()
    private var buffer = Data()
    private var collected: [String] = []

    init(_ executable: String, _ arguments: [String], input: String? = nil) throws {
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
                    self.collected.append(String(decoding: self.buffer[self.buffer.startIndex..<newline], as: UTF8.self))
                    self.buffer.removeSubrange(self.buffer.startIndex...newline)
                }
            }
        }
        try process.run()
    }

    var lines: [String] { lock.withLock { collected } }

    func waitForExit() async throws -> Int32 {
        try await blocking { self.process.waitUntilExit() }
        pipe.fileHandleForReading.readabilityHandler = nil
        return process.terminationStatus
    }
}
