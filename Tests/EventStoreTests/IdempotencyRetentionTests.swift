import Foundation
import Hashing
import TestSupport
import Testing

@testable import EventStore

/// Idempotency records keep the time they were made, so expired ones can be deleted; records of
/// before times were kept still replay, and are stamped rather than deleted when first met.
@Suite struct IdempotencyRetentionTests {
    let day: TimeInterval = 86_400
    let start = Date(timeIntervalSince1970: 1_796_083_200)

    func claim(_ key: String, at time: Date) -> IdempotencyClaim {
        IdempotencyClaim(key: key, fingerprint: SHA256.hash(Array(key.utf8)), recordedAt: time) { receipt in
            Array("positions:\(receipt.events.map(\.position))".utf8)
        }
    }

    func result(_ store: EventStore, _ key: String) throws -> String? {
        try store.idempotentResult(key: key, fingerprint: SHA256.hash(Array(key.utf8))).map {
            String(decoding: $0, as: UTF8.self)
        }
    }

    @Test func expiredRecordsAreDeletedInBatchesAndOldFormatRecordsAreStampedNotDeleted() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        // Ten records a day apart, made by appends.
        for n in 0..<10 {
            var request = appendRequest("s\(n)")
            request.idempotency = claim("acme/k\(n)", at: start + Double(n) * day)
            _ = try await store.append(request)
        }
        // Two records as earlier versions wrote them: fingerprint ‖ result, no time.
        try await store.perform { [idempotency = store.idempotency] writer in
            for key in ["acme/old-a", "globex/old-b"] {
                _ = try writer.txn.put(
                    idempotency.table, Array(key.utf8), SHA256.hash(Array(key.utf8)) + Array("positions:[0]".utf8))
            }
        }
        #expect(try result(store, "acme/old-a") == "positions:[0]")
        #expect(try result(store, "acme/k3") == "positions:[4]")

        // Keep the last seven days as of day 10: days 0–2 go. Batches of 3 records: every batch
        // boundary is crossed, and nothing is skipped or deleted twice.
        let now = start + 10 * day
        let first = try await store.pruneIdempotency(before: now - 7 * day, now: now, batch: 3)
        #expect(first.deleted == 3 && first.stamped == 2)
        for n in 0..<10 { #expect(try (result(store, "acme/k\(n)") != nil) == (n >= 3), "k\(n)") }
        #expect(try result(store, "acme/old-a") == "positions:[0]", "stamped, still replayed")
        #expect(try store.tableUsage().first { $0.name == "idempotency" }?.entries == 9)

        // A week later the stamped records go too, and a pass with nothing due changes nothing.
        let later = now + 7 * day + 1
        let second = try await store.pruneIdempotency(before: later - 7 * day, now: later, batch: 3)
        #expect(second.deleted == 9 && second.stamped == 0)
        #expect(try await store.pruneIdempotency(before: later, now: later) == (0, 0))
        #expect(try store.tableUsage().first { $0.name == "idempotency" }?.entries == 0)
        // The key is free again: the same request runs as a new one.
        var again = appendRequest("s9")
        again.idempotency = claim("acme/k9", at: later)
        #expect(try await store.append(again).receipt?.events.first?.position == 11)
    }
}
