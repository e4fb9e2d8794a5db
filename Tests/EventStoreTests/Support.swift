import EventStore
import Foundation

/// A directory under the system temporary directory, removed when the value is released.
final class TemporaryDirectory: @unchecked Sendable {
    let path: String

    init() {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("eventstore-tests-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// The folder holding the built products (the test bundle's own folder).
let productsDirectory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()

/// Runs blocking work off the cooperative thread pool.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

func event(_ type: String = "test.happened", payload: String = "{}", request: String = "req") -> NewEvent {
    NewEvent(
        type: type, occurredAt: Date(timeIntervalSince1970: 1_790_000_000), tenant: "acme", actor: "u_1",
        requestId: request, causationId: request, payload: Array(payload.utf8))
}

func appendRequest(_ stream: String, _ expected: ExpectedVersion = .any, events: [NewEvent] = [event()]) -> AppendRequest {
    AppendRequest(streams: [StreamAppend(streamId: stream, expectedVersion: expected, events: events)])
}

extension AppendOutcome {
    var receipt: AppendReceipt? {
        if case let .appended(receipt) = self { return receipt }
        return nil
    }
}
