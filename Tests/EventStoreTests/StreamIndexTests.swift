import EventStore
import Foundation
import TestSupport
import Testing

/// The linked stream index (heads, links back, a mark every 64 versions): every read a stream
/// allows gives what the log itself holds, around and across marks, and an older store's
/// one-entry-a-version index is read as it is read-only and upgraded when opened writable.
@Suite struct StreamIndexTests {
    /// Stream lengths around the mark interval, appended interleaved in requests of 1–3 events.
    static let lengths = ["s0": 1, "s63": 63, "s64": 64, "s65": 65, "s128": 128, "s131": 131, "s200": 200]

    static func fill(_ store: EventStore) async throws {
        var left = lengths
        var turn = 0
        while case let open = left.keys.sorted().filter({ left[$0]! > 0 }), !open.isEmpty {
            let stream = open[turn % open.count]
            let count = min(left[stream]!, 1 + turn % 3)
            let events = (0..<count).map { _ in event(payload: "{\"turn\":\(turn)}") }
            _ = try await store.append(appendRequest(stream, events: events))
            left[stream]! -= count
            turn += 1
        }
    }

    /// A store in a directory of its own holding the streams of ``lengths``, closed.
    static func filled() async throws -> TemporaryDirectory {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        try await fill(store)
        return dir
    }

    /// Every stream's versions in order, as the log itself holds them.
    static func expected(_ store: EventStore) throws -> [String: [RecordedEvent]] {
        var byStream = [String: [RecordedEvent]]()
        try store.forEachEvent { event in
            byStream[event.streamId, default: []].append(event)
            return true
        }
        return byStream
    }

    /// Reads every stream forward and backward from versions and with limits around the marks,
    /// and checks each page against the log.
    static func checkReads(_ store: EventStore) throws {
        let log = try expected(store)
        #expect(log.mapValues(\.count) == lengths)
        for (stream, events) in log {
            #expect(try store.streamVersion(stream) == UInt64(events.count))
            let length = UInt64(events.count)
            for from in Set<UInt64>([0, 1, 2, 63, 64, 65, 127, 128, 129, length, length + 1, .max]) {
                for limit in [1, 2, 63, 64, 65, 1_000] {
                    let forward = try store.readStream(stream, from: from, limit: limit)
                    let first = Int(min(max(from, 1), length + 1)) - 1
                    let want = first < events.count ? Array(events[first..<min(events.count, first + limit)]) : []
                    #expect(forward == want, "\(stream) forward from \(from) limit \(limit)")
                    let backward = try store.readStream(stream, from: from, backward: true, limit: limit)
                    let last = Int(min(from, length))
                    let down = last > 0 ? Array(events[max(0, last - limit)..<last].reversed()) : []
                    #expect(backward == down, "\(stream) backward from \(from) limit \(limit)")
                }
            }
        }
        #expect(try store.readStream("missing").isEmpty)
        #expect(try store.readStream("missing", from: .max, backward: true).isEmpty)
        var listed = [String: UInt64]()
        try store.forEachStream { id, version in
            listed[id] = version
            return true
        }
        #expect(listed == lengths.mapValues(UInt64.init))
        // Listed by prefix, in byte order, and paged after a stream id (one or not).
        func ids(_ prefix: String, after: String? = nil, limit: Int = 100) throws -> [String] {
            try store.read { try $0.streamIds(withPrefix: prefix, after: after, limit: limit) }
        }
        #expect(try ids("s") == ["s0", "s128", "s131", "s200", "s63", "s64", "s65"])
        #expect(try ids("s1") == ["s128", "s131"])
        #expect(try ids("s", after: "s131", limit: 2) == ["s200", "s63"])
        #expect(try ids("s6", after: "s6") == ["s63", "s64", "s65"])
        #expect(try ids("s6", after: "s65") == [])
        #expect(try ids("missing") == [])
    }

    @Test func readsAroundAndAcrossMarksGiveWhatTheLogHolds() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        try await Self.fill(store)
        try Self.checkReads(store)
        // A fold's read leaves the hashes out and nothing else.
        let bare = try store.readStream("s200", from: 60, limit: 70, hashes: false)
        var full = try store.readStream("s200", from: 60, limit: 70)
        #expect(bare.allSatisfy { $0.hash.isEmpty && $0.previousHash.isEmpty } && bare.count == 70)
        for index in full.indices { (full[index].hash, full[index].previousHash) = ([], []) }
        #expect(bare == full)
        // One table of heads, one link an event, one mark for every 64th version of a stream.
        let usage = Dictionary(uniqueKeysWithValues: try store.tableUsage().map { ($0.name, $0.entries) })
        #expect(usage["stream-heads"] == Self.lengths.count)
        #expect(usage["stream-links"] == Self.lengths.values.reduce(0, +))
        #expect(usage["stream-marks"] == Self.lengths.values.map { $0 / 64 }.reduce(0, +))
        #expect(usage["streams"] == nil)
        #expect(try store.verifyStreamIndex() == nil)
    }

    @Test(.enabled(if: pythonLMDBAvailable, "python3 with the lmdb module (pip install lmdb) is not installed"))
    func aBinaryFromBeforeTheLinkedIndexCannotOpenItsOldTable() async throws {
        // A new store, and an upgraded one: where `streams` was, the main database keeps a record,
        // which LMDB will not open as a table, so an older binary fails instead of misreading.
        let new = try await Self.filled()
        let upgraded = try await Self.filled()
        try await Self.rewrite(upgraded.path, ["legacy"])
        #expect(try await Self.rewrite(upgraded.path, ["old-binary"]) == "opened\n")
        try EventStore(path: upgraded.path).close()
        for dir in [new, upgraded] {
            #expect(
                try await Self.rewrite(dir.path, ["old-binary"]).hasPrefix("refused: mdb_dbi_open: MDB_INCOMPATIBLE"))
            let store = try EventStore(path: dir.path, options: Self.readOnly)
            try Self.checkReads(store)
            store.close()
        }
    }

    @Test func anExpectedVersionIsCheckedAgainstTheHeadWrittenEarlierInTheSameBatch() async throws {
        let dir = TemporaryDirectory()
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        // Concurrent requests land in one group-commit transaction; each sees the heads before it.
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<40 {
                group.addTask { (try? await store.append(appendRequest("race", .exact(0))))?.receipt != nil }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 }.count == 1)
        // They did share transactions, so some were checked against a head written in the same one.
        #expect(store.statistics.groupCommitTransactions < 40)
        for n in 1...130 { _ = try await store.append(appendRequest("race", .exact(UInt64(n)))) }
        #expect(try store.streamVersion("race") == 131)
        #expect(try store.readStream("race", from: 64, limit: 2).map(\.streamVersion) == [64, 65])
    }

    @Test(.enabled(if: pythonLMDBAvailable, "python3 with the lmdb module (pip install lmdb) is not installed"))
    func anOlderStoreIsReadAsItIsReadOnlyAndUpgradedWhenOpenedWritable() async throws {
        let dir = TemporaryDirectory()
        let before: [String: [RecordedEvent]]
        do {
            let store = try EventStore(path: dir.path)
            try await Self.fill(store)
            before = try Self.expected(store)
            store.close()
        }
        try await Self.rewrite(dir.path, ["legacy"])
        do {
            let store = try EventStore(path: dir.path, options: Self.readOnly)
            try Self.checkReads(store)
            #expect(try Self.expected(store) == before)
            let names = Set(try store.tableUsage().map(\.name))
            #expect(names.contains("streams") && !names.contains("stream-heads"))
            #expect(try store.verifyStreamIndex() == nil)
            store.close()
        }
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        try Self.checkReads(store)
        let usage = Dictionary(uniqueKeysWithValues: try store.tableUsage().map { ($0.name, $0.entries) })
        #expect(usage["stream-links"] == Self.lengths.values.reduce(0, +))
        #expect(usage["streams"] == nil)
        #expect(try store.verifyChain().isIntact)
        #expect(try store.verifyStreamIndex() == nil)
        // Appends go on from the upgraded heads.
        _ = try await store.append(appendRequest("s63", .exact(63)))
        #expect(try store.readStream("s63", from: 63).map(\.streamVersion) == [63, 64])
        store.close()
        let reopened = try EventStore(path: dir.path, options: Self.readOnly)
        defer { reopened.close() }
        #expect(try reopened.readStream("s63", from: 64, backward: true, limit: 2).map(\.streamVersion) == [64, 63])
        #expect(try reopened.tableUsage().contains { $0.name == "streams" } == false)
    }

    @Test(.enabled(if: pythonLMDBAvailable, "python3 with the lmdb module (pip install lmdb) is not installed"))
    func aLinkToAnotherStreamsEventIsReportedAsDamageNotReadAsTheStream() async throws {
        let dir = TemporaryDirectory()
        do {
            let store = try EventStore(path: dir.path)
            for n in 0..<6 { _ = try await store.append(appendRequest(n % 2 == 0 ? "a" : "b")) }
            store.close()
        }
        // a is at positions 1, 3, 5; its version 3 (position 5) now links to b's position 4.
        try await Self.rewrite(dir.path, ["relink", "5", "4"])
        let store = try EventStore(path: dir.path)
        defer { store.close() }
        #expect(try store.readStream("b").map(\.position) == [2, 4, 6])
        #expect(throws: EventStoreError.self) { try store.readStream("a") }
        #expect(try store.readStream("a", from: 3).map(\.position) == [5])
        #expect(try store.verifyStreamIndex() == "position 5 links to 4, not 3")
        try store.rebuildStreamIndex()
        #expect(try store.verifyStreamIndex() == nil)
        #expect(try store.readStream("a").map(\.position) == [1, 3, 5])
    }

    @Test(.enabled(if: pythonLMDBAvailable, "python3 with the lmdb module (pip install lmdb) is not installed"))
    func verifyNamesAMissingMarkOrHeadAndARebuildRestoresThem() async throws {
        let dir = try await Self.filled()
        try await Self.rewrite(dir.path, ["unmark", "s131", "128"])
        try await Self.rewrite(dir.path, ["behead", "s0"])
        do {
            let store = try EventStore(path: dir.path, options: Self.readOnly)
            #expect(try store.verifyStreamIndex() == "version 128 of s131 is not marked")
            #expect(throws: EventStoreError.self) { try store.rebuildStreamIndex() }
            store.close()
        }
        do {
            let store = try EventStore(path: dir.path)
            #expect(try store.verifyStreamIndex() == "version 128 of s131 is not marked")
            try store.rebuildStreamIndex()
            #expect(try store.verifyStreamIndex() == nil)
            try Self.checkReads(store)
            store.close()
        }
        try await Self.rewrite(dir.path, ["behead", "s0"])
        do {
            let store = try EventStore(path: dir.path, options: Self.readOnly)
            #expect(try store.verifyStreamIndex() == "6 heads for the log's 7 streams")
            store.close()
        }
        // s0 back, at the right version but another stream's position.
        try await Self.rewrite(dir.path, ["rehead", "s0", "1", "2"])
        let store = try EventStore(path: dir.path, options: Self.readOnly)
        defer { store.close() }
        #expect(try store.verifyStreamIndex() == "the head of s0 is not its stream's last event")
    }

    @Test(.enabled(if: pythonLMDBAvailable, "python3 with the lmdb module (pip install lmdb) is not installed"))
    func twoProcessesOpeningAnOlderStoreAtOnceUpgradeItOnceAndLoseNoAppend() async throws {
        let dir = try await Self.filled()
        try await Self.rewrite(dir.path, ["legacy"])
        // Both open the older store writable at once; one upgrades it, the other finds it done.
        let writers = try ["a", "b"].map { tag in
            try WriterProcess(arguments: [
                "append-writer", "--data", dir.path, "--streams", "5", "--count", "150", "--mode", "exact", "--tag",
                tag,
            ])
        }
        for writer in writers { #expect(await writer.waitForExit() == .exited(0)) }
        #expect(writers.map(\.acknowledgements.count) == [150, 150])
        let store = try EventStore(path: dir.path, options: Self.readOnly)
        defer { store.close() }
        #expect(try store.verifyStreamIndex() == nil)
        #expect(try store.tableUsage().contains { $0.name == "streams" } == false)
        #expect(try store.head().position == UInt64(Self.lengths.values.reduce(0, +) + 300))
        for stream in 0..<5 {
            let events = try store.readStream("stream-\(stream)", limit: 10_000)
            #expect(events.map(\.streamVersion) == Array(1...UInt64(events.count)))
        }
        for writer in writers {
            for ack in writer.acknowledgements {
                let stored = try #require(try store.readStream(ack.stream, from: ack.version, limit: 1).first)
                #expect(stored.position == ack.position && stored.requestId == ack.request)
            }
        }
    }

    static var readOnly: StoreOptions {
        var options = StoreOptions()
        options.readOnly = true
        return options
    }

    /// Runs the fixture on `directory`; returns what it printed.
    @discardableResult
    static func rewrite(_ directory: String, _ arguments: [String]) async throws -> String {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/stream_index.py").path
        let run = try await runPythonScript(script, [directory] + arguments)
        try #require(run.status == 0, "\(run.output)")
        return run.output
    }
}
