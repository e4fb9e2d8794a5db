import EventStore
import Foundation
import TestSupport

func event(_ type: String = "test.happened", payload: String = "{}", request: String = "req") -> NewEvent {
    NewEvent(
        type: type, occurredAt: Date(timeIntervalSince1970: 1_790_000_000), tenant: "acme", actor: "u_1",
        requestId: request, causationId: request, payload: Array(payload.utf8))
}

func appendRequest(
    _ stream: String, _ expected: ExpectedVersion = .any, events: [NewEvent] = [event()]
) -> AppendRequest {
    AppendRequest(streams: [StreamAppend(streamId: stream, expectedVersion: expected, events: events)])
}

extension AppendOutcome {
    var receipt: AppendReceipt? {
        if case let .appended(receipt) = self { return receipt }
        return nil
    }
}
