import EventStore
import Foundation
import Hashing
import Synchronization
import TestSupport
import Testing

@Suite struct AppendAndReadTests {
    @Test func appendsGetDensePositionsFromOneAndStreamVersionsFromOne() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        let first = try await store.append(appendRequest("a", .noStream, events: [event(), event()])).receipt
        let second = try await store.append(appendRequest("b", .noStream)).receipt
        let third = try await store.append(appendRequest("a", .exact(2))).receipt
        #expect(first?.events.map(\.position) == [1, 2])
        #expect(first?.events.map(\.streamVersion) == [1, 2])
        #expect(second?.events.map(\.position) == [3])
        #expect(second?.events.map(\.streamVersion) == [1])
        #expect(third?.events.map(\.position) == [4])
        #expect(third?.streamVersions["a"] == 3)
        #expect(try store.streamVersion("a") == 3)
        #expect(try store.streamVersion("missing") == 0)
        #expect(try store.head().position == 4)
    }

    /// Records are written in place in their pages and a receipt's events are made as they are
    /// written: what a receipt says must be what is read back, hashes included, for a request over
    /// several streams, an empty payload and fields of every kind of UTF-8.
    @Test func aReceiptHoldsTheRecordsAsStoredForARequestOverSeveralStreams() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        _ = try await store.append(appendRequest("a", events: [event(payload: #"{"n":0}"#)]))
        let odd = NewEvent(
            type: "test.odd", schemaVersion: 2, occurredAt: Date(timeIntervalSince1970: 1_790_000_000.5),
            tenant: "t", actor: "Zoë ☀️", requestId: "", causationId: "c", payload: [])
        let request = AppendRequest(streams: [
            StreamAppend(streamId: "b ☀️", expectedVersion: .noStream, events: [odd, event(payload: #"{"n":1}"#)]),
            StreamAppend(streamId: "a", expectedVersion: .exact(1), events: [event(payload: #"{"n":2}"#)]),
            StreamAppend(streamId: "c", expectedVersion: .any, events: [event(), odd, event()]),
        ])
        let receipt = try #require(try await store.append(request).receipt)
        #expect(receipt.events.map(\.position) == Array(2...7))
        #expect(receipt.events.map(\.streamId) == ["b ☀️", "b ☀️", "a", "c", "c", "c"])
        #expect(receipt.streamVersions == ["b ☀️": 2, "a": 2, "c": 3])
        #expect(try store.readAll(from: 2) == receipt.events)
        #expect(receipt.events[0].payload.isEmpty && receipt.events[0].actor == "Zoë ☀️")
        #expect(try store.head().hash == receipt.events.last?.hash)
        let report = try store.verifyChain()
        #expect(report.isIntact && report.eventsChecked == 7 && report.headHash == receipt.events.last?.hash)
    }

    @Test func storedEnvelopeRoundTripsEveryField() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        let new = NewEvent(
            type: "campaign.created", schemaVersion: 3, occurredAt: Date(timeIntervalSince1970: 1_790_000_000.123),
            tenant: "acme", actor: "Zoë Ørsted ☀️", requestId: "req_9", causationId: "cmd_9",
            payload: Array(#"{"name":"Spring ☀️"}"#.utf8))
        _ = try await store.append(appendRequest("cmp_1", .noStream, events: [new]))
        let stored = try #require(try store.readStream("cmp_1").first)
        #expect(stored.type == new.type)
        #expect(stored.schemaVersion == 3)
        #expect(stored.occurredAt == Date(timeIntervalSince1970: 1_790_000_000.123))
        // ASCII fields are copied straight into strings, others validated as UTF-8: both come back.
        #expect(stored.tenant == "acme" && stored.actor == "Zoë Ørsted ☀️")
        #expect(stored.requestId == "req_9" && stored.causationId == "cmd_9")
        #expect(stored.payload == new.payload)
        #expect(stored.previousHash == [UInt8](repeating: 0, count: 32))
    }

    /// More types than the decoder keeps slots for (256), so types share slots and replace each
    /// other's verdicts: a filtered read still returns exactly the events of the wanted types.
    @Test func aLogReadOfSomeOfManyTypesFindsEachWantedOne() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        let types = (0..<700).map { "t.kind\($0)" }
        for chunk in stride(from: 0, to: 1_400, by: 100) {
            let events = (chunk..<chunk + 100).map { n in
                NewEvent(
                    type: types[(n * 37) % 700], occurredAt: Date(timeIntervalSince1970: 1_790_000_000),
                    tenant: "acme", actor: "u", requestId: "r", causationId: "r", payload: Array("{}".utf8))
            }
            _ = try await store.append(appendRequest("s\(chunk)", events: events))
        }
        let full = try store.read { try $0.events(from: 1, limit: .max) }
        for wanted in [Set(types.enumerated().filter { $0.offset % 3 == 0 }.map(\.element)), ["t.kind5"], []] {
            let some = try store.read { try $0.events(from: 1, through: 1_400, types: wanted) }
            #expect(some == full.filter { wanted.contains($0.type) })
            // Last first: the same events, the other way round, whatever the bounds.
            for (from, through) in [(1, 1_400), (37, 1_001), (700, 700), (1_300, 2_000)] as [(UInt64, UInt64)] {
                let forward = try store.read { try $0.events(from: from, through: through, types: wanted) }
                let backward = try store.read {
                    try $0.events(from: from, through: through, types: wanted, lastFirst: true)
                }
                #expect(backward == Array(forward.reversed()))
            }
        }
    }

    /// Types, tenants and actors that differ only in their middle bytes (same length, same first
    /// and last eight bytes) share one slot of the decoder's shared strings and take it from each
    /// other, event after event: each event still reads back its own.
    @Test func sharedStringsThatDifferOnlyInTheMiddleReadBackAsWritten() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        func middle(_ prefix: String, _ n: Int) -> String { "\(prefix)-prefix.\(n % 7).the-same-suffix" }
        let events = (0..<300).map { n in
            NewEvent(
                type: middle("type", n), occurredAt: Date(timeIntervalSince1970: 1_790_000_000),
                tenant: middle("tenant", n / 3), actor: middle("actor", n * 5), requestId: "r", causationId: "r",
                payload: Array("{}".utf8))
        }
        _ = try await store.append(appendRequest("s", events: events))
        for hashes in [false, true] {
            let read = try store.read { try $0.events(from: 1, limit: .max, hashes: hashes) }
            #expect(read.map(\.type) == events.map(\.type))
            #expect(read.map(\.tenant) == events.map(\.tenant))
            #expect(read.map(\.actor) == events.map(\.actor))
        }
        let some = try store.read { try $0.events(from: 1, through: 300, types: [middle("type", 3)]) }
        let wanted: [UInt64] = (1...300).filter { ($0 - 1) % 7 == 3 }
        #expect(some.map(\.position) == wanted)
    }

    @Test func aLogReadOfSomeTypesDecodesThemAsAFullReadDoesAndSkipsTheRest() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        // Types, tenants and actors recur (the decoder shares their strings), one type is too long
        // to share, some are not ASCII; requests span several events, causations sometimes differ.
        let longType = "long." + String(repeating: "x", count: 70)
        let types = ["a.one", "b.two", "c.trois ☀️", longType, "d.four"]
        let tenants = ["acme", "Zoë", "globex"]
        for n in 0..<300 {
            let request = "req_\(n / 3)"
            let new = NewEvent(
                type: types[(n * 7) % types.count], occurredAt: Date(timeIntervalSince1970: 1_790_000_000 + Double(n)),
                tenant: tenants[n % tenants.count], actor: "u_\(n % 4)", requestId: request,
                causationId: n % 5 == 0 ? "cmd_\(n)" : request, payload: Array(#"{"n":\#(n)}"#.utf8))
            _ = try await store.append(appendRequest("s\(n % 11)", events: [new]))
        }
        let full = try store.read { try $0.events(from: 1, limit: .max) }
        #expect(full.count == 300)
        let all = try store.read { try $0.events(from: 1, through: 300, types: nil) }
        #expect(all == full)
        let wanted: Set<String> = ["a.one", "c.trois ☀️", longType]
        let some = try store.read { try $0.events(from: 40, through: 120, types: wanted, hashes: false) }
        let expected = full.filter { (40...120).contains($0.position) && wanted.contains($0.type) }.map { event in
            var bare = event
            bare.previousHash = []
            bare.hash = []
            return bare
        }
        #expect(!expected.isEmpty)
        #expect(some == expected)
        // Envelopes alone: the same events with empty payloads.
        let bare = try store.read {
            try $0.events(from: 40, through: 120, types: wanted, hashes: false, payloads: false)
        }
        #expect(
            bare
                == expected.map { event in
                    var envelope = event
                    envelope.payload = []
                    return envelope
                })
        #expect(try store.read { try $0.events(from: 301, through: 400, types: wanted) }.isEmpty)
        #expect(try store.read { try $0.events(from: 9, through: 8, types: nil) }.isEmpty)
    }

    @Test func readsStreamsForwardBackwardAndTheGlobalLogFromAPosition() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        for n in 1...10 {
            _ = try await store.append(appendRequest(n % 2 == 0 ? "even" : "odd", events: [event(request: "r\(n)")]))
        }
        #expect(try store.readStream("even").map(\.requestId) == ["r2", "r4", "r6", "r8", "r10"])
        #expect(try store.readStream("even", from: 3).map(\.requestId) == ["r6", "r8", "r10"])
        #expect(try store.readStream("even", from: 4, backward: true).map(\.requestId) == ["r8", "r6", "r4", "r2"])
        #expect(try store.readStream("even", from: .max, backward: true, limit: 2).map(\.requestId) == ["r10", "r8"])
        #expect(try store.readAll(from: 8).map(\.position) == [8, 9, 10])
        // A stream whose id extends another's is not mixed in.
        _ = try await store.append(appendRequest("even-more"))
        #expect(try store.streamVersion("even") == 5)
        #expect(try store.readStream("even").count == 5)
    }

    @Test func pagedVisitsSeeEveryEventOnceAndCanStopEarly() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        for n in 1...25 { _ = try await store.append(appendRequest("s", events: [event(request: "r\(n)")])) }
        var positions = [UInt64]()
        try store.forEachEvent(from: 3, pageSize: 4) {
            positions.append($0.position)
            return true
        }
        #expect(positions == Array(3...25))
        var backward = [UInt64]()
        try store.forEachEvent(inStream: "s", from: .max, backward: true, pageSize: 3) {
            backward.append($0.streamVersion)
            return true
        }
        #expect(backward == Array((1...25).reversed()))
        var seen = 0
        try store.forEachEvent(pageSize: 4) { _ in
            seen += 1
            return seen < 6
        }
        #expect(seen == 6)
    }

    @Test func invalidStreamIdsAreRejectedWithoutWriting() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        for bad in ["", String(repeating: "x", count: 401), "a\u{0}b"] {
            await #expect(throws: EventStoreError.self) { try await store.append(appendRequest(bad)) }
        }
        #expect(try store.head().position == 0)
    }

    @Test func aSecondOpenOfTheSameDirectoryInOneProcessIsRefused() throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        #expect(throws: EventStoreError.alreadyOpen(path: store.path)) { try EventStore(path: dir.path) }
        // Through a symbolic link, and through a relative path: the same directory, so refused too
        // (the check went by the path's text, and a link opened LMDB's environment a second time).
        let links = TemporaryDirectory()
        try FileManager.default.createSymbolicLink(atPath: links.path + "/data", withDestinationPath: dir.path)
        #expect(throws: EventStoreError.self) { try EventStore(path: links.path + "/data") }
        #expect(throws: EventStoreError.self) {
            try EventStore(path: dir.path + "/../" + (dir.path as NSString).lastPathComponent)
        }
        store.close()
        let reopened = try EventStore(path: links.path + "/data")
        reopened.close()
    }

    @Test func aStoreWhoseLastReferenceEndsOnItsWriterThreadClosesThere() async throws {
        let dir = TemporaryDirectory()
        let gate = DispatchSemaphore(value: 0)
        let queued = try {
            let store = try EventStore(path: dir.path)
            // The queued write is then all that holds the store: it lets go on the writer thread,
            // whose close used to wait for that thread to end, and so for itself.
            store.enqueueWrite { [store] _ in
                _ = store.path
                gate.wait()
            }
            return store.appended
        }()
        gate.signal()
        // Closed when the generation moves (a store bumps it as it closes), then open again here.
        await queued.wait(after: 0, atMost: .seconds(10))
        #expect(queued.generation > 0, "the store never closed")
        let reopened = try EventStore(path: dir.path)
        reopened.close()
    }
}

@Suite struct ExpectedVersionTests {
    @Test func noStreamOnAnExistingStreamIsAConflictWithTheCurrentVersion() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        _ = try await store.append(appendRequest("s", .noStream, events: [event(), event()]))
        await #expect(throws: EventStoreError.wrongExpectedVersion(streamId: "s", expected: .noStream, current: 2)) {
            try await store.append(appendRequest("s", .noStream))
        }
    }

    @Test func exactVersionMismatchIsAConflictAndWritesNothing() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        _ = try await store.append(appendRequest("s", .noStream))
        await #expect(throws: EventStoreError.wrongExpectedVersion(streamId: "s", expected: .exact(5), current: 1)) {
            try await store.append(appendRequest("s", .exact(5)))
        }
        await #expect(throws: EventStoreError.wrongExpectedVersion(streamId: "new", expected: .exact(1), current: 0)) {
            try await store.append(appendRequest("new", .exact(1)))
        }
        #expect(try store.head().position == 1)
    }

    @Test func aMultiStreamRequestIsAllOrNothing() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        _ = try await store.append(appendRequest("taken", .noStream))
        let request = AppendRequest(streams: [
            StreamAppend(streamId: "fresh", expectedVersion: .noStream, events: [event()]),
            StreamAppend(streamId: "taken", expectedVersion: .noStream, events: [event()]),
        ])
        await #expect(throws: EventStoreError.self) { try await store.append(request) }
        #expect(try store.streamVersion("fresh") == 0)
    }
}

@Suite struct ConcurrencyTests {
    @Test func manyTasksOnOneStreamLoseNothingAndNeverDuplicateAVersion() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        let count = 300
        try await withThrowingTaskGroup(of: Void.self) { group in
            for n in 0..<count {
                group.addTask { _ = try await store.append(appendRequest("one", events: [event(request: "r\(n)")])) }
            }
            try await group.waitForAll()
        }
        let events = try store.readStream("one", limit: 10_000)
        #expect(events.map(\.streamVersion) == Array(1...UInt64(count)))
        #expect(Set(events.map(\.requestId)).count == count)
        #expect(try store.verifyChain().isIntact)
    }

    @Test func manyTasksOnManyStreamsLoseNothing() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for n in 0..<400 {
                group.addTask {
                    _ = try await store.append(appendRequest("s\(n % 20)", events: [event(request: "r\(n)")]))
                }
            }
            try await group.waitForAll()
        }
        for stream in 0..<20 {
            #expect(try store.readStream("s\(stream)").map(\.streamVersion) == Array(1...20))
        }
        #expect(try store.head().position == 400)
        #expect(Set(try store.readAll(limit: 1_000).map(\.requestId)).count == 400)
    }

    @Test func exactlyOneOfManyRacersExpectingTheSameVersionWins() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        _ = try await store.append(appendRequest("race", .noStream))
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for n in 0..<50 {
                group.addTask {
                    (try? await store.append(appendRequest("race", .exact(1), events: [event(request: "r\(n)")])))
                        != nil
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 }.count == 1)
        #expect(try store.streamVersion("race") == 2)
    }

    @Test func concurrentRequestsShareWriteTransactions() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        let count = 100
        let before = store.statistics.groupCommitTransactions
        // Hold LMDB's writer lock so the requests pile up behind the group committer.
        let release = try await holdWriter { job in DispatchQueue.global().async { try? store.write { _ in job() } } }
        defer { release.signal() }  // also when the wait below throws, so the store can close
        let appends = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for n in 0..<count {
                    group.addTask {
                        _ = try await store.append(appendRequest("g\(n % 7)", events: [event(request: "r\(n)")]))
                    }
                }
                try await group.waitForAll()
            }
        }
        try await waitUntil("\(count) requests queued or in flight") {
            store.statistics.queuedRequests + store.statistics.inFlightRequests >= count
        }
        release.signal()
        try await appends.value
        let used = store.statistics.groupCommitTransactions - before
        // One transaction already waiting for the lock, and one for everything queued behind it.
        #expect(used <= 2, "used \(used) transactions for \(count) requests")
        #expect(try store.head().position == UInt64(count))
    }

    @Test func aRejectedRequestInABatchFailsAloneAndTheOthersCommit() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        _ = try await store.append(appendRequest("existing", .noStream))
        struct ProjectionBug: Error {}
        let requests: [AppendRequest] = (0..<30).map { n in
            switch n {
            case 10: return appendRequest("existing", .noStream)
            case 20:
                var request = appendRequest("hooked")
                request.afterAppend = { _, _ in throw ProjectionBug() }
                return request
            default: return appendRequest("ok\(n)", .noStream)
            }
        }
        let results = await withTaskGroup(of: (Int, Bool).self) { group in
            for (n, request) in requests.enumerated() {
                group.addTask { (n, (try? await store.append(request)) != nil) }
            }
            return await group.reduce(into: [Int: Bool]()) { $0[$1.0] = $1.1 }
        }
        #expect(results.filter { !$0.value }.map(\.key).sorted() == [10, 20])
        #expect(try store.streamVersion("hooked") == 0)
        #expect(try store.head().position == 29)
        #expect(try store.verifyChain().isIntact)
    }
}

/// Counts what one transaction's requests did; written back once, by its finisher.
final class TransactionTally {
    var requests = 0
}

@Suite struct TransactionLocalTests {
    @Test func aLocalIsOneObjectPerTransactionAndItsFinisherRunsOnceBeforeTheCommit() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        let table = try store.table(named: "tally")
        let key = ObjectIdentifier(TransactionTally.self)
        @Sendable func tally(_ txn: WriteTransaction) -> TransactionTally {
            txn.local(key, make: TransactionTally.init) { tally, txn in
                let stored = try txn.value(forKey: Array("requests".utf8), in: table).map { Int($0[0]) } ?? 0
                let writes = try txn.value(forKey: Array("writes".utf8), in: table).map { Int($0[0]) } ?? 0
                try txn.put([UInt8(stored + tally.requests)], forKey: Array("requests".utf8), in: table)
                try txn.put([UInt8(writes + 1)], forKey: Array("writes".utf8), in: table)
            }
        }
        func stored(_ name: String) throws -> Int {
            try store.read { try $0.value(forKey: Array(name.utf8), in: table).map { Int($0[0]) } ?? 0 }
        }
        try store.write { txn in
            tally(txn).requests += 1
            #expect(tally(txn) === tally(txn))
            tally(txn).requests += 2
            let written = try txn.value(forKey: Array("writes".utf8), in: table)
            #expect(written == nil, "written only at the end")
        }
        #expect(try stored("requests") == 3)
        #expect(try stored("writes") == 1)

        // A finisher that sets the value again after its write-back gets a new one, written too.
        let other = ObjectIdentifier(WriteTransaction.self)
        try store.write { txn in
            tally(txn).requests += 1
            _ = txn.local(other, make: TransactionTally.init) { _, txn in tally(txn).requests += 10 }
        }
        #expect(try stored("requests") == 14)
        #expect(try stored("writes") == 3)

        struct Abandoned: Error {}
        #expect(throws: Abandoned.self) {
            try store.write { txn in
                tally(txn).requests += 50
                throw Abandoned()
            }
        }
        #expect(try stored("writes") == 3, "a failed transaction writes nothing back")

        // A group commit: each request's hook counts itself; each transaction writes once. The
        // writer is held until every request waits, so they share one transaction. The requests
        // are sent only once the writer is inside the holding job: a writer that last ran a job
        // (opening the table) gives queued appends the next turn, and would commit those already
        // waiting before it took the job.
        let release = try await holdWriter { job in store.enqueueWrite { _ in job() } }
        defer { release.signal() }  // also when a wait below throws, so the store can close
        let before = store.statistics.groupCommitTransactions
        let count = 40
        let appends = Task {
            await withTaskGroup(of: Void.self) { group in
                for n in 0..<count {
                    group.addTask {
                        var request = appendRequest("s\(n)")
                        request.afterAppend = { txn, _ in tally(txn).requests += 1 }
                        _ = try? await store.append(request)
                    }
                }
            }
        }
        try await waitUntil("\(count) requests queued") { store.statistics.queuedRequests >= count }
        release.signal()
        await appends.value
        #expect(store.statistics.groupCommitTransactions - before == 1)
        #expect(try stored("requests") == 14 + count)
        #expect(try stored("writes") == 4)
        #expect(try store.head().position == UInt64(count))
    }
}

@Suite struct IdempotencyAndUniquenessTests {
    func claim(_ key: String, _ fingerprint: String) -> IdempotencyClaim {
        IdempotencyClaim(key: key, fingerprint: SHA256.hash(Array(fingerprint.utf8))) { receipt in
            Array("positions:\(receipt.events.map(\.position))".utf8)
        }
    }

    @Test func aRetryWithTheSameKeyReturnsTheFirstResultAndWritesNothing() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        var request = appendRequest("s", events: [event(), event()])
        request.idempotency = claim("acme/k1", "create s")
        let first = try await store.append(request)
        #expect(first.receipt?.events.count == 2)
        let again = try await store.append(request)
        #expect(again == .replayed(storedResult: Array("positions:[1, 2]".utf8)))
        #expect(try store.head().position == 2)
        #expect(
            try store.idempotentResult(key: "acme/k1", fingerprint: SHA256.hash(Array("create s".utf8)))
                == Array("positions:[1, 2]".utf8))
    }

    @Test func theSameKeyWithADifferentRequestIsAConflict() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        var request = appendRequest("s")
        request.idempotency = claim("acme/k1", "one")
        _ = try await store.append(request)
        request.idempotency = claim("acme/k1", "two")
        await #expect(throws: EventStoreError.idempotencyKeyReused(key: "acme/k1")) { try await store.append(request) }
        #expect(throws: EventStoreError.idempotencyKeyReused(key: "acme/k1")) {
            try store.idempotentResult(key: "acme/k1", fingerprint: SHA256.hash(Array("two".utf8)))
        }
        #expect(try store.head().position == 1)
    }

    @Test func concurrentRetriesOfOneKeyWriteOnce() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        var request = appendRequest("s")
        request.idempotency = claim("acme/k", "same")
        let sent = request
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<20 { group.addTask { _ = try? await store.append(sent) } }
        }
        #expect(try store.head().position == 1)
    }

    @Test func aUniqueValueHeldByAnotherOwnerIsRefusedUntilReleased() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        var first = appendRequest("cmp_1", .noStream)
        first.claims = [UniqueClaim(key: "name/acme/spring", owner: "cmp_1")]
        _ = try await store.append(first)
        var second = appendRequest("cmp_2", .noStream)
        second.claims = [UniqueClaim(key: "name/acme/spring", owner: "cmp_2")]
        await #expect(throws: EventStoreError.uniqueValueTaken(key: "name/acme/spring", owner: "cmp_1")) {
            try await store.append(second)
        }
        #expect(try store.streamVersion("cmp_2") == 0)
        var release = appendRequest("cmp_1")
        release.releases = [UniqueClaim(key: "name/acme/spring", owner: "cmp_1")]
        _ = try await store.append(release)
        _ = try await store.append(second)
        #expect(try store.uniqueOwner(of: "name/acme/spring") == "cmp_2")
    }

    @Test func releasingAValueOneDoesNotHoldLeavesItAlone() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        var first = appendRequest("cmp_1")
        first.claims = [UniqueClaim(key: "k", owner: "cmp_1")]
        _ = try await store.append(first)
        var other = appendRequest("cmp_2")
        other.releases = [UniqueClaim(key: "k", owner: "cmp_2")]
        _ = try await store.append(other)
        #expect(try store.uniqueOwner(of: "k") == "cmp_1")
    }
}

@Suite struct TablesAndCheckpointsTests {
    @Test func sideTablesAndCheckpointsCommitWithTheirTransaction() throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        let table = try store.table(named: "board")
        try store.write { txn in
            for n in 0..<5 { try txn.put(Array("v\(n)".utf8), forKey: Array("k\(n)".utf8), in: table) }
            try txn.setCheckpoint("board", to: 42)
        }
        struct Abort: Error {}
        #expect(throws: Abort.self) {
            try store.write { txn in
                try txn.put(Array("lost".utf8), forKey: Array("k9".utf8), in: table)
                throw Abort()
            }
        }
        try store.read { txn in
            #expect(try txn.value(forKey: Array("k3".utf8), in: table) == Array("v3".utf8))
            #expect(try txn.value(forKey: Array("k9".utf8), in: table) == nil)
            #expect(try txn.checkpoint("board") == 42)
            #expect(try txn.checkpoint("other") == 0)
            var keys = [String]()
            try txn.forEach(in: table, from: Array("k1".utf8)) { key, _ in
                keys.append(String(decoding: key, as: UTF8.self))
                return true
            }
            #expect(keys == ["k1", "k2", "k3", "k4"])
            var backward = [String]()
            try txn.forEach(in: table, from: Array("k2z".utf8), reverse: true) { key, _ in
                backward.append(String(decoding: key, as: UTF8.self))
                return true
            }
            #expect(backward == ["k2", "k1", "k0"])
            #expect(try txn.count(of: table) == 5)
        }
        #expect(throws: EventStoreError.self) { try store.table(named: "events") }
    }

    /// LMDB calls a table handle its transaction does not know misuse (it was a trap here); a
    /// handle of another store may even name a different table. Both are refused with an error.
    @Test func aTableOpenedAfterTheTransactionBeganOrByAnotherStoreIsRefusedNotTrapped() throws {
        let dir = TemporaryDirectory()
        let other = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        let otherStore = try EventStore(path: other.path)
        defer { otherStore.close() }
        let known = try store.table(named: "known")
        try store.write { try $0.put([1], forKey: [1], in: known) }
        let foreign = try otherStore.table(named: "known")
        try otherStore.write { try $0.put([2], forKey: [1], in: foreign) }
        /// The table an error names as unavailable, if it is that error.
        func unavailable(_ error: EventStoreError?) -> String? {
            if case let .tableUnavailable(table, _) = error { return table }
            return nil
        }
        try store.read { txn in
            let late = try store.table(named: "late")
            #expect(
                unavailable(#expect(throws: EventStoreError.self) { try txn.value(forKey: [1], in: late) }) == "late")
            #expect(unavailable(#expect(throws: EventStoreError.self) { try txn.count(of: late) }) == "late")
            #expect(
                unavailable(#expect(throws: EventStoreError.self) { try txn.value(forKey: [1], in: foreign) })
                    == "known")
            #expect(try txn.value(forKey: [1], in: known) == [1])
        }
        #expect(
            unavailable(
                #expect(throws: EventStoreError.self) { try store.write { try $0.put([3], forKey: [1], in: foreign) } })
                == "known")
        // Opened before it, the late table is usable in the next transaction, and nothing was written.
        let late = try store.table(named: "late")
        try store.read { txn throws in
            #expect(try txn.count(of: late) == 0)
            #expect(try txn.value(forKey: [1], in: known) == [1])
        }
        #expect(try otherStore.read { try $0.value(forKey: [1], in: foreign) } == [2])
        #expect(try store.tableUsage().contains { $0.name == "late" })
    }

    @Test func emptyAndOverlongKeysAreAnsweredNotTrapped() throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        let table = try store.table(named: "side")
        let long = [UInt8](repeating: UInt8(ascii: "k"), count: 600)
        try store.write { txn in
            for key in ["a", "k", String(repeating: "k", count: 511), "z"] {
                try txn.put([1], forKey: Array(key.utf8), in: table)
            }
            #expect(throws: EventStoreError.self) { try txn.put([1], forKey: [], in: table) }
            #expect(throws: EventStoreError.self) { try txn.put([1], forKey: long, in: table) }
            #expect(try txn.delete(key: [], in: table) == false)
            #expect(try txn.delete(key: long, in: table) == false)
        }
        try store.read { (txn) throws -> Void in
            #expect(try txn.value(forKey: [], in: table) == nil)
            #expect(try txn.value(forKey: long, in: table) == nil)
            func keys(from start: [UInt8], reverse: Bool = false) throws -> [Int] {
                var lengths = [Int]()
                try txn.forEach(in: table, from: start, reverse: reverse) { key, _ in
                    lengths.append(key.count)
                    return true
                }
                return lengths
            }
            // The empty key is before every key; a 600-byte key sorts after its 511-byte prefix.
            #expect(try keys(from: []) == [1, 1, 511, 1])
            #expect(try keys(from: long) == [1])
            #expect(try keys(from: long, reverse: true) == [511, 1, 1])
            #expect(try keys(from: [], reverse: true) == [])
        }
    }

    @Test func appendsFromBufferPointersKeepTheArrayFormsRules() throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        let table = try store.table(named: "side")
        // Keys and values packed back to back in one buffer, as a rebuild's rows are.
        let packed = Array("a1b22c333".utf8)
        try store.write { txn in
            try packed.withUnsafeBytes { bytes in
                for (key, value) in [(0..<1, 1..<2), (2..<3, 3..<5), (5..<6, 6..<9)] {
                    try txn.append(
                        UnsafeRawBufferPointer(rebasing: bytes[value]),
                        forKey: UnsafeRawBufferPointer(rebasing: bytes[key]),
                        in: table)
                }
                // Out of order, equal to the last, empty or overlong: refused as the array form refuses them.
                #expect(throws: EventStoreError.self) {
                    try txn.append(
                        UnsafeRawBufferPointer(rebasing: bytes[1..<2]),
                        forKey: UnsafeRawBufferPointer(rebasing: bytes[2..<3]), in: table)
                }
                #expect(throws: EventStoreError.self) {
                    try txn.append(
                        UnsafeRawBufferPointer(rebasing: bytes[1..<2]),
                        forKey: UnsafeRawBufferPointer(rebasing: bytes[5..<6]), in: table)
                }
                #expect(throws: EventStoreError.self) {
                    try txn.append(
                        UnsafeRawBufferPointer(rebasing: bytes[1..<2]),
                        forKey: UnsafeRawBufferPointer(rebasing: bytes[9..<9]), in: table)
                }
            }
            let long = [UInt8](repeating: UInt8(ascii: "z"), count: 600)
            long.withUnsafeBytes { key in
                _ = #expect(throws: EventStoreError.self) { try txn.append(key, forKey: key, in: table) }
            }
        }
        try store.read { txn in
            var rows = [String]()
            try txn.forEach(in: table, from: []) { key, value in
                rows.append(String(decoding: key, as: UTF8.self) + "=" + String(decoding: value, as: UTF8.self))
                return true
            }
            #expect(rows == ["a=1", "b=22", "c=333"])
        }
    }
}

@Suite struct MapGrowthTests {
    @Test func theMapGrowsByItselfFromATinyStart() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path, options: StoreOptions(initialMapSize: 64 << 10))
        defer { store.close() }
        let startSize = try store.usage().mapSize
        let payload = "{\"blob\":\"" + String(repeating: "x", count: 2_000) + "\"}"
        for batch in 0..<40 {
            let events = (0..<25).map { event(payload: payload, request: "r\(batch)-\($0)") }
            _ = try await store.append(appendRequest("big\(batch)", .noStream, events: events))
        }
        #expect(try store.head().position == 1_000)
        #expect(try store.usage().mapSize > startSize)
        #expect(try store.verifyChain().isIntact)
    }

    /// A `data.mdb` cut short (an interrupted copy) is refused as damaged when opened, read-only too;
    /// reading its missing pages through the map would have stopped the process with SIGBUS.
    @Test func aFileCutShortIsRefusedAsDamagedNotReadIntoASignal() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        let payload = "{\"blob\":\"" + String(repeating: "x", count: 2_000) + "\"}"
        for batch in 0..<10 {
            let events = (0..<25).map { event(payload: payload, request: "r\(batch)-\($0)") }
            _ = try await store.append(appendRequest("big\(batch)", .noStream, events: events))
        }
        store.close()
        let file = dir.path + "/data.mdb"
        let size = try #require(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
        #expect(truncate(file, off_t(size / 2)) == 0)
        for readOnly in [false, true] {
            var options = StoreOptions()
            options.readOnly = readOnly
            #expect {
                _ = try EventStore(path: dir.path, options: options)
            } throws: { error in
                guard case let .corrupted(message)? = error as? EventStoreError else { return false }
                return message.contains("is \(size / 2) bytes") && message.contains("the file was cut short")
            }
        }
    }

    @Test func aMapLimitIsAClearStorageFullErrorAndTheStoreStaysUsable() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(
            path: dir.path, options: StoreOptions(initialMapSize: 64 << 10, maximumMapSize: 256 << 10))
        defer { store.close() }
        let payload = "{\"blob\":\"" + String(repeating: "x", count: 4_000) + "\"}"
        var acknowledged = 0
        do {
            for n in 0..<1_000 {
                _ = try await store.append(appendRequest("s", events: [event(payload: payload, request: "r\(n)")]))
                acknowledged += 1
            }
            Issue.record("a 256 KiB map should not hold 4 MB")
        } catch let error as EventStoreError {
            #expect(error.isStorageUnavailable)
            guard case .storageFull = error else {
                Issue.record("expected storageFull, got \(error)")
                return
            }
        }
        #expect(try store.head().position == UInt64(acknowledged))
        #expect(try store.verifyChain().isIntact)
    }
}

@Suite struct PreconditionTests {
    struct Refused: Error, Equatable {}

    @Test func aFailingPreconditionRejectsOnlyItsRequestWithItsOwnError() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        let table = try store.table(named: "locks")
        try store.write { try $0.put([1], forKey: Array("seg_1".utf8), in: table) }
        var guarded = appendRequest("seg_1-update")
        guarded.preconditions = [
            { txn in
                if try txn.value(forKey: Array("seg_1".utf8), in: table) != nil { throw Refused() }
            }
        ]
        await #expect(throws: Refused.self) { try await store.append(guarded) }
        #expect(try store.streamVersion("seg_1-update") == 0)
        try store.write { _ = try $0.delete(key: Array("seg_1".utf8), in: table) }
        _ = try await store.append(guarded)
        #expect(try store.streamVersion("seg_1-update") == 1)
    }

    @Test func aPreconditionSeesWritesOfEarlierRequestsInTheSameBatch() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        // Each request may only append while the other stream is still empty: exactly one wins,
        // even when both land in one transaction.
        func request(_ mine: String, _ other: String) -> AppendRequest {
            var request = appendRequest(mine)
            request.preconditions = [{ txn in if try txn.streamVersion(other) > 0 { throw Refused() } }]
            return request
        }
        let (a, b) = (request("a", "b"), request("b", "a"))
        async let first = try? store.append(a)
        async let second = try? store.append(b)
        let results = await [first, second]
        #expect(results.compactMap { $0 }.count == 1)
    }
}

/// Writes other than appends go through the one writer thread too (STYLE.md 5).
@Suite struct WriterJobTests {
    @Test func writerJobsInterleaveWithAppendsRunInOrderAndReportTheirErrors() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        let table = try store.table(named: "jobs")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for n in 0..<50 {
                group.addTask { _ = try await store.append(appendRequest("acme:s\(n % 5)")) }
                group.addTask {
                    try await store.perform { txn in
                        let count = try txn.value(forKey: Array("n".utf8), in: table).map { Int($0[0]) } ?? 0
                        try txn.put([UInt8(count + 1)], forKey: Array("n".utf8), in: table)
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try store.read { try $0.value(forKey: Array("n".utf8), in: table) } == [50])
        #expect(try store.head().position == 50)

        struct Refused: Error {}
        await #expect(throws: Refused.self) { try await store.perform { _ in throw Refused() } }
        // A queued write nobody waits for runs before a later job.
        store.enqueueWrite { txn in try txn.put([7], forKey: Array("later".utf8), in: table) }
        let seen = try await store.perform { txn in try txn.value(forKey: Array("later".utf8), in: table) }
        #expect(seen == [7])
    }

    /// After a transaction of one request the writer watches for the next one instead of sleeping.
    /// Every submission must end the watch (appends, jobs and the close alike): with a watch of a
    /// minute, a request it missed would wait that minute, and the watch would run out. (Not timed:
    /// in the whole suite other tests' blocking waits can hold Swift's two pool threads for half a
    /// minute, and this test's own steps with them.)
    @Test func aWatchingWriterTakesEachNextRequestAndTheCloseAtOnce() async throws {
        let dir = TemporaryDirectory()
        var options = StoreOptions()
        options.writerWatch = .seconds(60)
        let store = try EventStore(path: dir.path, options: options)
        let table = try store.table(named: "jobs")
        for n in 0..<20 {
            try await store.perform { txn in try txn.put([UInt8(n)], forKey: Array("n".utf8), in: table) }
            let receipt = try await store.append(appendRequest("acme:s\(n % 3)")).receipt
            #expect(receipt?.events.map(\.position) == [UInt64(n + 1)])
        }
        // The last append left the writer watching: the close must end it.
        store.close()
        #expect(store.statistics.writerWatchesRunOut == 0)

        // The counter does count: a short watch with nothing submitted runs out (where the writer
        // watches at all: not on one CPU).
        var short = StoreOptions()
        short.writerWatch = .milliseconds(20)
        let idleDirectory = TemporaryDirectory()
        let idle = try EventStore(path: idleDirectory.path, options: short)
        defer { idle.close() }
        _ = try await idle.append(appendRequest("acme:s0"))
        for _ in 0..<500 where idle.statistics.writerWatchesRunOut == 0 && idle.writerWatch > .zero {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(idle.statistics.writerWatchesRunOut == (idle.writerWatch > .zero ? 1 : 0))
        let reopened = try EventStore(path: dir.path)
        defer { reopened.close() }
        #expect(try reopened.head().position == 20)
        let jobs = try reopened.table(named: "jobs")
        #expect(try reopened.read { try $0.value(forKey: Array("n".utf8), in: jobs) } == [19])
    }

    /// A store opened on a thread allowed one CPU keeps no watch: its writer thread inherits that
    /// affinity, and watching would hold the one core the next request needs. Opened on a thread
    /// allowed more, it keeps the option's watch.
    @Test func aStoreOpenedOnAThreadAllowedOneCPUKeepsNoWatch() async throws {
        let dir = TemporaryDirectory()
        let options = {
            var options = StoreOptions()
            options.writerWatch = .microseconds(300)
            return options
        }()
        let narrowed = try onAThreadAllowedOneCPU { try EventStore(path: dir.path, options: options) }
        #expect(narrowed.writerWatch == .zero)
        let receipt = try await narrowed.append(appendRequest("acme:s")).receipt
        #expect(receipt?.events.map(\.position) == [1])
        narrowed.close()

        let reopened = try EventStore(path: dir.path, options: options)
        defer { reopened.close() }
        #expect(reopened.writerWatch == (cpusAllowedThisThread() > 1 ? .microseconds(300) : .zero))
    }

    @Test func aJobAfterCloseIsRefused() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        store.close()
        await #expect(throws: EventStoreError.self) { try await store.perform { _ in 1 } }
    }
}

/// `sched_getaffinity` or `sched_setaffinity`, which Swift's Glibc module leaves out (they need
/// `_GNU_SOURCE`), looked up in the C library.
private typealias AffinityCall = @convention(c) (pid_t, Int, UnsafeMutableRawPointer) -> Int32

/// Calls `name` (`sched_getaffinity` or `sched_setaffinity`) for the calling thread on `set`.
private func affinity(_ name: String, _ set: inout cpu_set_t) -> Bool {
    guard let symbol = dlsym(nil, name) else { return false }
    let call = unsafeBitCast(symbol, to: AffinityCall.self)
    return withUnsafeMutableBytes(of: &set) { call(0, $0.count, $0.baseAddress!) } == 0
}

/// The CPUs the calling thread may run on.
private func cpusAllowedThisThread() -> Int {
    var set = cpu_set_t()
    guard affinity("sched_getaffinity", &set) else { return 0 }
    return withUnsafeBytes(of: set) { bytes in bytes.reduce(0) { $0 + $1.nonzeroBitCount } }
}

/// Runs `body` on a thread of its own whose affinity is narrowed to the first CPU it was allowed,
/// and returns what it returns.
private func onAThreadAllowedOneCPU<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
    let result = Mutex<Result<T, Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
        defer { done.signal() }
        var set = cpu_set_t()
        let narrowed =
            affinity("sched_getaffinity", &set)
            && withUnsafeMutableBytes(of: &set) { bytes in
                guard let index = bytes.firstIndex(where: { $0 != 0 }) else { return false }
                let lowest = bytes[index] & (0 &- bytes[index])
                for other in bytes.indices { bytes[other] = 0 }
                bytes[index] = lowest
                return true
            }
            && affinity("sched_setaffinity", &set)
        let outcome = narrowed ? Result { try body() } : .failure(POSIXError(.EINVAL))
        result.withLock { $0 = outcome }
    }
    thread.start()
    done.wait()
    return try result.withLock { $0 }!.get()
}
