import EventStore
import Foundation
import Spawn
import TestSupport
import Testing

/// A `campaign-harness append-writer` child and the appends it acknowledged.
final class WriterProcess: @unchecked Sendable {
    // Invariant: `child` is set once in `init`.
    let child: ChildProcess

    init(arguments: [String]) throws {
        child = try startProduct("campaign-harness", arguments)
    }

    /// Acknowledged appends so far: (position, stream, version, request id).
    var acknowledgements: [(position: UInt64, stream: String, version: UInt64, request: String)] {
        child.lines.compactMap { line in
            let parts = line.split(separator: " ")
            guard parts.count == 5, parts[0] == "ack", let position = UInt64(parts[1]), let version = UInt64(parts[3])
            else { return nil }
            return (position, String(parts[2]), version, String(parts[4]))
        }
    }

    func waitForExit() async -> ChildProcess.Termination { await child.waitForExit() }
}

@Suite(.serialized) struct ProcessTests {
    @Test func aSecondProcessAppendingAtTheSameTimeNeverCausesALostOrDuplicateVersion() async throws {
        let dir = TemporaryDirectory()
        let child = try WriterProcess(arguments: [
            "append-writer", "--data", dir.path, "--streams", "5", "--count", "300", "--mode", "exact", "--tag",
            "child",
        ])
        // Give the child time to open the store so the two really overlap.
        try await Task.sleep(for: .milliseconds(200))
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        var mine = 0
        while mine < 300 {
            let stream = "stream-\(mine % 5)"
            let current = try store.streamVersion(stream)
            let request = appendRequest(
                stream, current == 0 ? .noStream : .exact(current), events: [event(request: "parent-\(mine)")])
            do {
                _ = try await store.append(request)
                mine += 1
            } catch EventStoreError.wrongExpectedVersion {
                continue
            }
        }
        #expect(await child.waitForExit() == .exited(0))
        #expect(child.acknowledgements.count == 300)
        for stream in 0..<5 {
            let events = try store.readStream("stream-\(stream)", limit: 10_000)
            #expect(events.map(\.streamVersion) == Array(1...UInt64(events.count)))
        }
        let all = try store.readAll(limit: 10_000)
        #expect(all.count == 600)
        #expect(Set(all.map(\.requestId)).count == 600)
        #expect(try store.verifyChain().isIntact)
    }

    @Test func aWriterKilledMidStreamLosesNoAcknowledgedAppend() async throws {
        let dir = TemporaryDirectory()
        for round in 0..<3 {
            let child = try WriterProcess(arguments: [
                "append-writer", "--data", dir.path, "--streams", "7", "--count", "1000000", "--tag", "k\(round)",
            ])
            let target = 150 + round * 97
            while child.acknowledgements.count < target {
                try await Task.sleep(for: .milliseconds(2))
                guard child.child.isRunning else { break }
            }
            child.child.send(SIGKILL)
            #expect(await child.waitForExit() == .signalled(SIGKILL))
            let acknowledged = child.acknowledgements
            #expect(acknowledged.count >= target)

            let store = try EventStore(path: dir.path)
            for ack in acknowledged {
                let stored = try #require(try store.readAll(from: ack.position, limit: 1).first)
                #expect(stored.position == ack.position && stored.streamId == ack.stream)
                #expect(stored.streamVersion == ack.version && stored.requestId == ack.request)
            }
            let report = try store.verifyChain()
            #expect(report.isIntact, "\(report)")
            #expect(report.headPosition >= acknowledged.last?.position ?? 0)
            store.close()
        }
    }
}

@Suite struct TamperTests {
    /// A store of 40 events, `make(n)` the n-th, on three streams; its chain verified intact.
    static func fortyEvents(_ make: (Int) -> NewEvent) async throws -> TemporaryDirectory {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        for n in 1...40 { _ = try await store.append(appendRequest("s\(n % 3)", events: [make(n)])) }
        let clean = try store.verifyChain()
        #expect(clean.isIntact && clean.eventsChecked == 40 && clean.headPosition == 40)
        return dir
    }

    @Test func aFlippedByteInAStoredEventIsReportedAtItsPosition() async throws {
        let dir = try await TamperTests.fortyEvents {
            event(payload: "{\"m\":\"\(String(format: "marker-%03d-end", $0))\"}", request: "r\($0)")
        }
        let file = dir.path + "/data.mdb"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        #expect(bytes.damageEveryCopy(of: "marker-017-end", at: 8) { $0 ^= 0x01 } >= 1)
        try bytes.write(to: URL(fileURLWithPath: file))

        let store = try EventStore(path: dir.path)
        defer { store.close() }
        let report = try store.verifyChain(pageSize: 5)
        #expect(report.firstBadPosition == 17)
        #expect(report.eventsChecked == 17)
        #expect(report.headPosition == 40)
    }

    @Test func aRecordThatDoesNotDecodeFailsAPagedVisitAfterThePagesBeforeIt() async throws {
        let dir = try await TamperTests.fortyEvents { event(request: String(format: "request-%03d-end", $0)) }
        // The request id of event 23 made invalid UTF-8 in every copy of its page.
        let file = dir.path + "/data.mdb"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        #expect(bytes.damageEveryCopy(of: "request-023-end", at: 8) { $0 = 0xFF } >= 1)
        try bytes.write(to: URL(fileURLWithPath: file))

        let store = try EventStore(path: dir.path)
        defer { store.close() }
        var visited = [UInt64]()
        #expect(throws: EventStoreError.corruptRecord(position: 23, reason: "field is not UTF-8")) {
            try store.forEachEvent(pageSize: 4) {
                visited.append($0.position)
                return true
            }
        }
        // Pages are decoded whole: the visit stops before the page holding the damage.
        #expect(visited == Array(1...20))
    }

    @Test func aParallelVerifyFindsTheSameFirstBadRecordAsOneInSequence() async throws {
        let clean = TemporaryDirectory()
        do {
            let store = try EventStore(path: clean.path)
            for batch in 0..<30 {
                let events = (1...100).map { index in
                    let n = batch * 100 + index
                    return event(payload: "{\"m\":\"\(String(format: "marker-%04d-end", n))\"}", request: "r\(n)")
                }
                _ = try await store.append(appendRequest("s\(batch % 7)", events: events))
            }
            store.close()
        }
        let original = try Data(contentsOf: URL(fileURLWithPath: clean.path + "/data.mdb"))
        // Damaged records: the first, either side of a page and of a worker's share, the last, and
        // two at once (the lower is the first bad one).
        for damaged in [[1], [500], [501], [1000], [1001], [1999, 2500], [2500, 1999], [3000]] {
            var bytes = original
            for n in damaged {
                bytes.damageEveryCopy(of: String(format: "marker-%04d-end", n), at: 9) { $0 ^= 0x01 }
            }
            let copy = TemporaryDirectory()
            try bytes.write(to: URL(fileURLWithPath: copy.path + "/data.mdb"))
            let store = try EventStore(path: copy.path)
            defer { store.close() }
            let sequential = try store.verifyChain(pageSize: 1_000, workers: 1)
            #expect(sequential.firstBadPosition == UInt64(damaged.min()!))
            for workers in [2, 3, 8] {
                for pageSize in [1_000, 8_192] {
                    let parallel = try store.verifyChain(pageSize: pageSize, workers: workers)
                    #expect(parallel == sequential, "\(damaged) with \(workers) workers, pages of \(pageSize)")
                }
            }
        }
        let store = try EventStore(path: clean.path)
        defer { store.close() }
        let intact = try store.verifyChain(workers: 2)
        let inSequence = try store.verifyChain(workers: 1)
        #expect(intact.isIntact && intact.eventsChecked == 3_000 && intact == inSequence)
    }

    @Test func theHeadHashIsTheLastRecordsHashAndChainsFromZero() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        let empty = try store.verifyChain()
        #expect(empty.isIntact && empty.eventsChecked == 0 && empty.headHash == [UInt8](repeating: 0, count: 32))
        _ = try await store.append(appendRequest("s", events: [event(), event(), event()]))
        let events = try store.readAll()
        #expect(events[1].previousHash == events[0].hash)
        #expect(events[2].previousHash == events[1].hash)
        #expect(try store.verifyChain().headHash == events[2].hash)
    }
}

/// Whether `python3` with the `lmdb` binding is on this machine.
let pythonLMDBAvailable = pythonCanImport("lmdb")

@Suite struct ForeignReaderTests {
    /// README promises that a program in another language can verify the chain with a stock LMDB
    /// binding. Tools/verify_chain.py is that program; it shares no code with the engine.
    @Test(.enabled(if: pythonLMDBAvailable, "python3 with the lmdb module (pip install lmdb) is not installed"))
    func anIndependentPythonReaderVerifiesTheChainAndAgreesOnTheHead() async throws {
        let dir = TemporaryDirectory()
        let head: String
        do {
            let store = try EventStore(path: dir.path)
            for n in 0..<30 {
                _ = try await store.append(
                    appendRequest(
                        "s\(n % 4)",
                        events: [event(payload: "{\"n\":\(n),\"text\":\"héllo ☀️\"}", request: "r\(n)")]))
            }
            head = try store.verifyChain().headHash.map { String(format: "%02x", $0) }.joined()
            store.close()
        }
        let (status, text) = try await runPythonTool("verify_chain.py", [dir.path])
        #expect(status == 0, "\(text)")
        #expect(text.contains("30 events verified, head \(head)"))
    }
}
