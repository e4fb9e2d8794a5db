import CampaignDomain
import CampaignEngine
import Foundation
import Synchronization
import TestSupport

let testStart = Timestamp.parse("2026-11-21T10:00:00Z")!

/// An engine on a temporary directory with a manual clock, speaking the wire format.
final class TestEngine: @unchecked Sendable {
    let directory: TemporaryDirectory
    let clock = ManualClock(testStart)
    let engine: CampaignEngine

    let publisher: SimulatedPublisher

    /// An engine on `directory` (a new one unless given: a store written beforehand, say).
    init(
        rateLimit: Int = 1_000_000, configuration base: EngineConfiguration? = nil,
        publishVia custom: (any SocialPublisher)? = nil, on directory: TemporaryDirectory = TemporaryDirectory()
    ) throws {
        self.directory = directory
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
    func command(
        _ name: String, _ payload: String, as principal: String = admin(), requestId: String = "req",
        extra: String = ""
    ) async -> JSON {
        await send(
            #"{"requestId":"\#(requestId)",\#(extra)"principal":\#(principal),"command":"\#(name)","#
                + #""payload":\#(payload)}"#
        )
    }

    /// Sends a query as `principal`.
    func query(_ name: String, _ params: String, as principal: String = admin()) async -> JSON {
        await send(#"{"requestId":"q","principal":\#(principal),"query":"\#(name)","params":\#(params)}"#)
    }

    /// Sends the command `first`, then `second`, while a job holds the writer thread, so both are
    /// decided before either commits, and they commit in that order; returns both answers.
    func decidedTogether(
        _ first: (name: String, payload: String), then second: (name: String, payload: String)
    ) async throws -> (JSON, JSON) {
        let held = Task { try await engine.eventStore.perform { _ in Thread.sleep(forTimeInterval: 0.3) } }
        try await Task.sleep(for: .milliseconds(40))
        let earlier = Task { await command(first.name, first.payload, requestId: "first") }
        try await Task.sleep(for: .milliseconds(40))
        let later = await command(second.name, second.payload, requestId: "second")
        try await held.value
        return (await earlier.value, later)
    }
}

let allScopes = Principal.allScopes.sorted()

/// A principal as wire JSON.
func principal(
    tenant: String = "acme", subject: String = "u_1", role: String = "admin", scopes: [String] = allScopes,
    expiresAt: String = "2027-01-01T00:00:00Z"
) -> String {
    let list = scopes.map { "\"\($0)\"" }.joined(separator: ",")
    return
        #"{"tenant":"\#(tenant)","subject":"\#(subject)","role":"\#(role)","scopes":[\#(list)],"#
        + #""expiresAt":"\#(expiresAt)"}"#
}

func admin(_ tenant: String = "acme") -> String { principal(tenant: tenant) }

extension JSON {
    var status: Int? { self["status"]?.integerValue }
    var code: String? { self["error"]?["code"]?.stringValue }
    var data: JSON? { self["data"] }
}

/// Flips `mask` in the byte at `offset` of every copy of `marker` in `directory`'s `data.mdb`
/// (copy-on-write leaves stale copies of a record in freed pages): the tamper a test makes.
func flipEveryCopy(of marker: String, in directory: String, at offset: Int = 0, mask: UInt8 = 0x01) throws {
    let file = URL(fileURLWithPath: directory + "/data.mdb")
    var bytes = try Data(contentsOf: file)
    var from = bytes.startIndex
    while let found = bytes.range(of: Data(marker.utf8), in: from..<bytes.endIndex) {
        bytes[found.lowerBound + offset] ^= mask
        from = found.upperBound
    }
    try bytes.write(to: file)
}

/// A store whose head record fails to verify (a bit flipped in every copy of it), so an engine that
/// opens it refuses appends.
func storeRefusingAppends() async throws -> TemporaryDirectory {
    let directory = TemporaryDirectory()
    do {
        let t = try TestEngine(on: directory)
        let payload = #"{"campaignId":"cmp_1","name":"Tampered-with name","channel":"email"}"#
        guard await t.command("campaign.create", payload).status == 201 else {
            throw CampaignError(.internalError, "the campaign to tamper with was not created")
        }
    }
    try flipEveryCopy(of: "Tampered-with", in: directory.path)
    return directory
}

/// A job that holds an engine's writer thread until ``release()`` (or for a minute): a flush that
/// hangs, as the metrics and the health check see it.
final class WriterHold: Sendable {
    private let released = Atomic(false)
    private let job = Mutex<Task<Void, Error>?>(nil)

    /// Starts the job on `engine`'s writer.
    init(_ engine: CampaignEngine) {
        let task = Task {
            try await engine.eventStore.perform { _ in
                let deadline = Date().addingTimeInterval(60)
                while !self.released.load(ordering: .acquiring) && Date() < deadline {
                    Thread.sleep(forTimeInterval: 0.005)
                }
            }
        }
        job.withLock { $0 = task }
    }

    /// Ends the job and waits for it.
    func release() async throws {
        released.store(true, ordering: .releasing)
        try await job.withLock { $0 }?.value
    }
}
