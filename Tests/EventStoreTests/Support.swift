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

extension Data {
    /// Changes byte `offset` of every copy of `marker` (copy-on-write leaves stale copies of a page
    /// in a data file, so damage must reach each); returns how many copies it changed.
    @discardableResult
    mutating func damageEveryCopy(of marker: String, at offset: Int, _ change: (inout UInt8) -> Void) -> Int {
        let needle = Data(marker.utf8)
        var searchStart = startIndex
        var changed = 0
        while let found = range(of: needle, in: searchStart..<endIndex) {
            change(&self[found.lowerBound + offset])
            searchStart = found.upperBound
            changed += 1
        }
        return changed
    }
}
