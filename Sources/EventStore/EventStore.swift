internal import CLMDB
import Foundation
import Hashing
import Synchronization

/// The event store of one directory: an append-only, hash-chained log in LMDB with a stream
/// index, idempotency records, unique-value reservations and checkpoints.
///
/// Appends go through a group committer (many requests, one transaction, one fsync); a request
/// is answered only after its transaction committed with LMDB's default durable sync. Reads use
/// short read transactions and page through large results, so memory stays bounded.
///
/// Several processes may open the same directory: LMDB's lock file serialises their writers, and
/// every check (expected version, unique values, idempotency) is made inside the write transaction,
/// so it always sees the other process's latest commit. Within one process, open a directory once.
///
/// Invariant that makes `@unchecked Sendable` safe: every stored property is immutable after
/// `init`; the mutable parts (`Environment`, `GroupCommitter`) guard their own state.
public final class EventStore: @unchecked Sendable {
    let environment: Environment
    let log: EventLog
    let idempotency: IdempotencyRecords
    let unique: UniqueReservations
    let checkpoints: Checkpoints
    /// `store`: facts about the store itself (`writes-refused` → the reason, while appends are refused).
    let storeFacts: MDB_dbi?
    /// `tree`: the Merkle tree over the log (nil only in a read-only store made before trees).
    let tree: MerkleLog?
    /// `signed-checkpoints`: tree size u64 → a signed checkpoint note (nil as for `tree`).
    let signedCheckpoints: MDB_dbi?
    /// The tree's peaks after the last commit of this process, so an append need not read them;
    /// used only while the log's head is still where that commit left it.
    private let frontierCache = Mutex<MerkleFrontier?>(nil)
    /// Why appends are refused, if they are (see ``writesRefused``).
    private let refusal = Mutex<String?>(nil)
    private var committer: GroupCommitter!
    /// Bumped after each commit of appends made through this store object (appends by another
    /// process move the log's head without it): subscriptions, and engines' catch-up, wait on it.
    public let appended = AppendSignal()
    private let closed = Mutex(false)

    /// The directory the store lives in.
    public var path: String { environment.path }

    /// Whether the store was opened read-only.
    public var isReadOnly: Bool { environment.readOnly }

    /// Opens (creating if needed) the store in `path`.
    ///
    /// Opening checks the head record cheaply (its hash recomputed, its previous hash against the
    /// record before): when it does not verify, or an earlier full verify failed and recorded it,
    /// appends are refused (``writesRefused``) until ``verifyChain(pageSize:progress:)`` passes.
    /// - Throws: ``EventStoreError/alreadyOpen(path:)`` if this process has it open,
    ///   ``EventStoreError/cannotOpen(path:reason:)`` for a path that cannot hold a store, or a storage error.
    public init(path: String, options: StoreOptions = StoreOptions()) throws {
        environment = try Environment(path: path, options: options)
        do {
            let environment = self.environment
            let core = { (name: String) throws -> MDB_dbi in
                guard let dbi = try environment.table(named: name) else {
                    throw EventStoreError.cannotOpen(
                        path: environment.path, reason: "it holds no event store (no \(name) table)")
                }
                return dbi
            }
            log = EventLog(events: try core("events"), index: try EventStore.openStreamIndex(environment, core))
            idempotency = IdempotencyRecords(table: try core("idempotency"))
            unique = UniqueReservations(table: try core("unique"))
            checkpoints = Checkpoints(table: try core("checkpoints"))
            storeFacts = try environment.table(named: "store")
            let events = log.events
            tree =
                options.keepsMerkleTree
                ? try environment.table(named: "tree").map { MerkleLog(nodes: $0, events: events) } : nil
            signedCheckpoints = try environment.table(named: "signed-checkpoints")
            try checkHeadOnOpen()
            try makeStoreId()
            try buildTree()
        } catch {
            environment.close()
            throw error
        }
        committer = GroupCommitter(
            maximumBatchSize: options.maximumBatchSize,
            watch: options.writerWatch,
            commit: { [unowned self] jobs in
                defer { self.appended.notify() }
                return try self.commitBatch(jobs)
            },
            commitAlone: { [unowned self] job in
                Result { try self.commitBatch([job])[0].get() }
            })
    }

    /// Commits what is queued, then closes the environment. Later calls throw ``EventStoreError/closed``.
    public func close() {
        committer.stop()
        environment.close()
        closed.withLock { $0 = true }
        appended.notify()
    }

    /// Whether ``close()`` has run.
    var isClosed: Bool { closed.withLock { $0 } }

    deinit { close() }

    /// Opens (creating if needed) a named table for data kept beside the log. Call it before, not
    /// inside, a transaction. Creating a table takes a write transaction: it runs on the writer
    /// thread, like every write, and the caller waits for it.
    public func table(named name: String) throws -> Table {
        let reserved = Set(
            [
                "events", "streams", "idempotency", "unique", "checkpoints", "store", "tree", "signed-checkpoints",
            ] + StreamIndex.tableNames)
        guard !reserved.contains(name) else { throw EventStoreError.invalidKey("table name \(name) is reserved") }
        let environment = self.environment
        let opened =
            environment.readOnly
            ? try environment.table(named: name)
            : try committer.runOnWriter { try environment.table(named: name) }
        guard let dbi = opened else {
            throw EventStoreError.cannotOpen(
                path: path, reason: "table \(name) does not exist, and a read-only store creates none")
        }
        return Table(name: name, dbi: dbi, store: environment.serial)
    }

    // MARK: - Refusing writes on a broken chain

    /// Why appends are refused, or nil when they are accepted: the head record did not verify on
    /// open, a full verify failed, or LMDB reported damage. Survives a restart (kept in the store).
    public var writesRefused: String? { refusal.withLock { $0 } }

    private static let refusalKey = Array("writes-refused".utf8)

    private func checkHeadOnOpen() throws {
        try environment.read { txn in
            if let storeFacts, let stored = try txn.get(storeFacts, EventStore.refusalKey) {
                refusal.withLock { $0 = String(decoding: stored, as: UTF8.self) }
            }
            let head = try log.head(in: txn)
            guard head.position > 0 else { return }
            let previous: [UInt8]
            if head.position == 1 {
                previous = RecordCodec.zeroHash
            } else if let before = try txn.withValue(log.events, .bigEndian(head.position - 1), RecordCodec.storedHash)
            {
                previous = before
            } else {
                previous = []
            }
            let outcome = try txn.withValue(log.events, .bigEndian(head.position)) {
                RecordCodec.verify($0, position: head.position, expectedPrevious: previous)
            }
            if case let .failure(.corruptRecord(position, reason))? = outcome {
                refusal.withLock { $0 = "the head record (position \(position)) does not verify: \(reason)" }
            }
        }
        if let reason = writesRefused, !environment.readOnly { try? record(refusal: reason) }
    }

    /// This store's id: 16 random bytes as 32 hex digits, made once when the store is first opened
    /// writable and kept in its own table (not in the log). Exports name events `<storeId>-<position>`.
    /// - Throws: ``EventStoreError/readOnly`` for a read-only store made before ids existed.
    public func storeId() throws -> String {
        guard let storeFacts, let id = try environment.read({ try $0.get(storeFacts, EventStore.storeIdKey) }) else {
            throw EventStoreError.readOnly
        }
        return String(decoding: id, as: UTF8.self)
    }

    private static let storeIdKey = Array("store-id".utf8)

    private func makeStoreId() throws {
        guard let storeFacts, !environment.readOnly else { return }
        if try environment.read({ try $0.get(storeFacts, EventStore.storeIdKey) }) != nil { return }
        var random = SystemRandomNumberGenerator()
        let fresh = Array((0..<16).map { _ in UInt8.random(in: 0...255, using: &random) }.hexString.utf8)
        _ = try environment.write { txn in
            // Another process may have made it first: keep theirs.
            if try txn.get(storeFacts, EventStore.storeIdKey) == nil {
                try txn.put(storeFacts, EventStore.storeIdKey, fresh)
            }
        }
    }

    /// A secret of this store: 32 random bytes made the first time `name` is asked for and kept in
    /// the store's own table, never in the log (so no export or replay carries it). Engines use
    /// one to authenticate list cursors.
    /// - Throws: ``EventStoreError/readOnly`` when a read-only store has none yet.
    public func secret(named name: String) throws -> [UInt8] {
        let key = Array("secret/\(name)".utf8)
        if let storeFacts, let existing = try environment.read({ try $0.get(storeFacts, key) }) { return existing }
        guard let storeFacts, !environment.readOnly else { throw EventStoreError.readOnly }
        var random = SystemRandomNumberGenerator()
        let fresh = (0..<32).map { _ in UInt8.random(in: 0...255, using: &random) }
        return try environment.write { txn in
            // Another process may have made it first: keep theirs.
            if let existing = try txn.get(storeFacts, key) { return existing }
            try txn.put(storeFacts, key, fresh)
            return fresh
        }
    }

    /// Refuses appends from now on, and records why in the store (when it is writable).
    func refuseWrites(_ reason: String) {
        refusal.withLock { $0 = reason }
        if !environment.readOnly { try? record(refusal: reason) }
    }

    /// Accepts appends again (a full verify passed).
    func acceptWrites() {
        let wasRefused = refusal.withLock { current in
            defer { current = nil }
            return current != nil
        }
        // The refusal kept in the store was loaded on open, so there is nothing to delete otherwise.
        if wasRefused { try? record(refusal: nil) }
    }

    private func record(refusal reason: String?) throws {
        guard let storeFacts, !environment.readOnly else { return }
        _ = try environment.write { txn in
            if let reason {
                try txn.put(storeFacts, EventStore.refusalKey, Array(reason.utf8))
            } else {
                try txn.delete(storeFacts, EventStore.refusalKey)
            }
        }
    }

    /// Runs `body` in a read-only transaction: a consistent snapshot of the store.
    public func read<T>(_ body: (ReadTransaction) throws -> T) throws -> T {
        try environment.read { try body(ReadTransaction(txn: $0, store: self)) }
    }

    /// Runs `body` in a write transaction of its own (not group-committed), committed when it
    /// returns. Meant for bulk maintenance such as projection rebuilds. The body may run more than
    /// once if the map has to grow, so it must not have side effects outside the transaction.
    public func write<T>(_ body: (WriteTransaction) throws -> T) throws -> T {
        try environment.write { txn in
            let writer = WriteTransaction(txn: txn, store: self)
            let result = try body(writer)
            try writer.finish()
            return result
        }
    }

    /// Runs `body` in a write transaction of its own on the writer thread, between batches of
    /// appends, and blocks the calling thread until it returns: for a thread that is not Swift's
    /// cooperative pool's (a rebuild's fold lanes), where ``perform(_:)`` cannot be awaited. On the
    /// writer thread itself it simply runs.
    public func performAndWait<T: Sendable>(_ body: @escaping @Sendable (WriteTransaction) throws -> T) throws -> T {
        try committer.runOnWriter { [unowned self] in try self.write(body) }
    }

    /// Runs `body` in a write transaction of its own on the writer thread, between batches of
    /// appends, and returns its result: the way to write from Swift concurrency without blocking a
    /// thread of the cooperative pool on LMDB's writer lock. Keep each body short (≤ ~50 ms), since
    /// appends wait behind it; like ``write(_:)`` it may run more than once if the map grows.
    public func perform<T: Sendable>(_ body: @escaping @Sendable (WriteTransaction) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let queued = committer.submitWrite { [unowned self] in
                continuation.resume(with: Result { try self.write(body) })
            }
            if !queued { continuation.resume(throwing: EventStoreError.closed) }
        }
    }

    /// Returns once the writer thread has held LMDB's writer lock, which every process writing
    /// this directory shares: a commit another process had under way has ended, so a read made
    /// after this sees it. For a command that lost a race for its stream's version to another
    /// process: reloading at once often reads while the winner's next commit is still being
    /// flushed, and loses again the same way. The job writes nothing (LMDB commits an untouched
    /// transaction without a flush).
    public func awaitOtherWriters() async throws {
        try await perform { _ in }
    }

    /// Whether appends are queued for the writer: a long writer job (a rebuild batch) checks it to
    /// end early and let them commit.
    public var appendsWaiting: Bool { committer.load.queued > 0 }

    /// The CPUs the calling thread may run on, ascending: its affinity mask (`Cpus_allowed` in
    /// `/proc/thread-self/status`, which `taskset`, `sched_setaffinity` and container CPU sets
    /// narrow); empty where no such file says. A store's writer thread inherits the mask of the
    /// thread that opens the store, and watches for requests only when it allows two CPUs or more.
    public static var allowedCores: [Int] {
        for file in ["/proc/thread-self/status", "/proc/self/status"] {
            if let status = try? String(contentsOfFile: file, encoding: .utf8),
                let cores = GroupCommitter.allowedCores(inStatus: status)
            {
                return cores
            }
        }
        return []
    }

    /// How long the writer keeps watching for the next request after a small transaction:
    /// ``StoreOptions/writerWatch``, or zero when the thread that opened the store (whose CPU
    /// affinity the writer inherits) may run on one CPU only.
    public var writerWatch: Duration { committer.watch }

    /// Queues `body` to run in a write transaction of its own on the writer thread and returns at
    /// once, for writes nobody waits for (a snapshot): a failure is dropped, and nothing runs
    /// once the store is closed.
    public func enqueueWrite(_ body: @escaping @Sendable (WriteTransaction) throws -> Void) {
        _ = committer.submitWrite { [unowned self] in _ = try? self.write(body) }
    }

    /// Appends a request through the group committer and returns once it is durably committed.
    /// - Throws: ``EventStoreError/wrongExpectedVersion(streamId:expected:current:)``,
    ///   ``EventStoreError/uniqueValueTaken(key:owner:)``, ``EventStoreError/idempotencyKeyReused(key:)``,
    ///   or a storage error; nothing of the request is written when it throws.
    public func append(_ request: AppendRequest) async throws -> AppendOutcome {
        try await withCheckedThrowingContinuation { continuation in
            committer.submit(.init(request: request) { continuation.resume(with: $0) })
        }
    }

    /// The blocking form of ``append(_:)`` for callers outside Swift concurrency.
    public func appendAndWait(_ request: AppendRequest) throws -> AppendOutcome {
        let outcome = Outcome<AppendOutcome>()
        committer.submit(.init(request: request) { outcome.finish($0) })
        return try outcome.wait().get()
    }

    /// The current version of a stream; 0 when it has no events.
    public func streamVersion(_ streamId: String) throws -> UInt64 {
        try environment.read { try log.streamVersion(streamId, in: $0) }
    }

    /// Up to `limit` events of a stream from `version` on (or down from it when `backward`).
    /// With `hashes` false the events' two hashes are left empty (a fold that never reads them
    /// saves two arrays an event).
    public func readStream(
        _ streamId: String, from version: UInt64 = 1, backward: Bool = false, limit: Int = 1_000, hashes: Bool = true
    ) throws -> [RecordedEvent] {
        try environment.read {
            try log.streamEvents(streamId, from: version, backward: backward, limit: limit, hashes: hashes, in: $0)
        }
    }

    /// Up to `limit` events of the global log from `position` on; with `hashes` false the events'
    /// two hashes are left empty (see ``readStream(_:from:backward:limit:hashes:)``).
    public func readAll(from position: UInt64 = 1, limit: Int = 1_000, hashes: Bool = true) throws -> [RecordedEvent] {
        try environment.read { try log.events(from: position, limit: limit, hashes: hashes, in: $0) }
    }

    /// Visits the global log from `position` on, a page at a time (one short read transaction a
    /// page, so memory stays bounded), while `body` returns true; with `hashes` false the events'
    /// hashes are left empty.
    public func forEachEvent(
        from position: UInt64 = 1, pageSize: Int = 1_024, hashes: Bool = true, _ body: (RecordedEvent) throws -> Bool
    ) throws {
        var next = max(position, 1)
        let size = UInt64(max(1, pageSize))
        while true {
            // Positions are dense: a page is `next` through the lesser of the head and `size` on.
            var (page, last, head) = try environment.read { txn in
                let head = try log.head(in: txn).position
                let last = next > head ? head : next + min(size - 1, head - next)
                let page = try log.events(
                    from: next, through: last, types: nil, hashes: hashes, lastFirst: true, in: txn)
                return (page, last, head)
            }
            while let event = page.popLast() { guard try body(event) else { return } }
            guard last < head else { return }
            next = last + 1
        }
    }

    /// Visits one stream from `version` on (or down from it when `backward`), a page at a time;
    /// with `hashes` false the events' hashes are left empty (see ``readStream(_:from:backward:limit:hashes:)``).
    public func forEachEvent(
        inStream streamId: String, from version: UInt64 = 1, backward: Bool = false, pageSize: Int = 1_024,
        hashes: Bool = true, _ body: (RecordedEvent) throws -> Bool
    ) throws {
        var next = backward && version == 0 ? UInt64.max : version
        while true {
            let page = try readStream(streamId, from: next, backward: backward, limit: pageSize, hashes: hashes)
            for event in page { guard try body(event) else { return } }
            guard let last = page.last, page.count == pageSize else { return }
            if backward {
                guard last.streamVersion > 1 else { return }
                next = last.streamVersion - 1
            } else {
                next = last.streamVersion + 1
            }
        }
    }

    /// Visits every stream with its current version, in stream-id order, while `body` returns
    /// true. One read transaction; nothing is accumulated.
    public func forEachStream(_ body: (_ streamId: String, _ version: UInt64) throws -> Bool) throws {
        try environment.read { try log.forEachStream(in: $0, body) }
    }

    /// Checks the stream index against the log's records, in one read transaction: each stream's
    /// head, each event's link back, each mark, and nothing left over (for a store with the older
    /// index, opened read-only: an entry for every event). Returns what is wrong first, or nil.
    public func verifyStreamIndex() throws -> String? {
        do {
            return try environment.read { try log.streamIndexProblem(in: $0) }
        } catch let EventStoreError.corruptRecord(position, reason) {
            return "the record at position \(position): \(reason)"
        }
    }

    /// Makes the stream index again from the log's records, in one job of the writer: the repair
    /// when ``verifyStreamIndex()`` reports a problem. Throws ``EventStoreError/readOnly`` on a
    /// store opened read-only.
    public func rebuildStreamIndex() throws {
        guard !environment.readOnly, case let .linked(index) = log.index else { throw EventStoreError.readOnly }
        let (environment, events) = (self.environment, log.events)
        try committer.runOnWriter { try environment.write { try index.rebuild(from: events, in: $0) } }
    }

    /// The last position (0 when empty) and its hash (32 zero bytes when empty).
    public func head() throws -> (position: UInt64, hash: [UInt8]) {
        try environment.read { txn in
            let head = try log.head(in: txn)
            return (head.position, head.hash)
        }
    }

    /// Who holds a unique value, if anyone.
    public func uniqueOwner(of key: String) throws -> String? {
        try environment.read { try unique.owner(of: key, in: $0) }
    }

    /// The stored result for an idempotency key, when it was used with the same fingerprint.
    /// - Throws: ``EventStoreError/idempotencyKeyReused(key:)`` when the fingerprint differs.
    public func idempotentResult(key: String, fingerprint: [UInt8]) throws -> [UInt8]? {
        try environment.read { txn in
            if case let .replay(result) = try idempotency.lookup(key, fingerprint: fingerprint, in: txn) {
                return result
            }
            return nil
        }
    }

    /// Deletes the idempotency records made before `cutoff`, in writer jobs of at most `batch`
    /// records looked at (appends keep flowing between them). A record written before records kept
    /// their time is stamped with `now` the first time a pass meets it, so it goes a retention
    /// later, never at once: its request may still be retried.
    /// - Returns: the records deleted, and the records stamped.
    @discardableResult
    public func pruneIdempotency(
        before cutoff: Date, now: Date, batch: Int = 5_000
    ) async throws -> (deleted: Int, stamped: Int) {
        var totals = (deleted: 0, stamped: 0)
        var start: [UInt8]?
        repeat {
            let from = start
            let step = try await perform { [idempotency] writer in
                try idempotency.prune(before: cutoff, stamp: now, from: from, limit: max(1, batch), in: writer.txn)
            }
            totals.deleted += step.deleted
            totals.stamped += step.stamped
            start = step.next
        } while start != nil
        return totals
    }

    /// Entries and bytes on disk of every table in the file, whether or not this store has opened
    /// it (a tool's store opens only the log's own): the names LMDB's main database lists, each
    /// opened as it exists (nothing is created). For `campaign stats`.
    public func allTableUsage() throws -> [TableUsage] {
        let names: [String] = try environment.read { txn in
            var main = MDB_dbi()
            try LMDB.check(mdb_dbi_open(txn.pointer, nil, 0, &main), "mdb_dbi_open main")
            return try txn.withCursor(main) { cursor in
                var names = [String]()
                var entry = try cursor.first()
                while let current = entry {
                    names.append(String(decoding: current.key, as: UTF8.self))
                    entry = try cursor.next()
                }
                return names
            }
        }
        // A name that is no table (a marker the stream index's upgrade keeps there) opens as nil.
        for name in names { _ = try environment.existingTable(named: name) }
        return try tableUsage()
    }

    /// Entries and bytes on disk of every table this store has opened (all of an engine's, once
    /// it is open), by name. Free pages are not in any table.
    public func tableUsage() throws -> [TableUsage] {
        try environment.read { txn in
            // A table another thread opened after this read began is left out (LMDB would not read it).
            try environment.openTables.filter { txn.knows($0.dbi) }.map { table in
                let usage = try txn.usage(table.dbi)
                return TableUsage(name: table.name, entries: usage.entries, bytes: usage.bytes)
            }
        }
    }

    /// Counters for tests, benchmarks and `campaign stats`.
    public var statistics: StoreStatistics {
        let counters = committer.counters
        let load = committer.load
        let timings = committer.timings
        return StoreStatistics(
            groupCommitTransactions: counters.transactions, groupCommitRequests: counters.requests,
            queuedRequests: load.queued, inFlightRequests: load.inFlight, writerWatchesRunOut: counters.watchesRunOut,
            appendTransactionDurations: timings.appends, writerJobDurations: timings.jobs, writerBusyFor: timings.busy)
    }

    /// Map size, bytes in use and page size of the environment.
    public func usage() throws -> StoreUsage {
        let usage = try environment.usage()
        return StoreUsage(mapSize: usage.mapSize, usedBytes: usage.usedBytes, pageSize: usage.pageSize)
    }

    /// Writes a compacted copy of the store (LMDB's `MDB_CP_COMPACT`) into a directory without a
    /// `data.mdb`. Freed pages are not copied, so erased values do not survive in the copy; the copy's
    /// `data.mdb` appears only once it is whole and flushed (until then it is `data.mdb.partial`,
    /// which a crash may leave and the next copy writes over).
    public func copyCompacted(to directory: String) throws {
        try environment.copyCompacted(to: directory)
    }

    /// The name ``copyCompacted(to:)`` writes its copy under until the copy is whole.
    public static let partialCopyName = "data.mdb.partial"

    // MARK: - Committing

    private func commitBatch(_ jobs: [GroupCommitter.Job]) throws -> [Result<AppendOutcome, Error>] {
        if let reason = writesRefused {
            return jobs.map { _ in .failure(EventStoreError.writesRefused(reason: reason)) }
        }
        do {
            return try commitBatchTransaction(jobs)
        } catch let EventStoreError.corrupted(message) {
            refuseWrites("LMDB reported damage: \(message)")
            throw EventStoreError.corrupted(message: message)
        }
    }

    private func commitBatchTransaction(_ jobs: [GroupCommitter.Job]) throws -> [Result<AppendOutcome, Error>] {
        let (results, frontier) = try environment.write { txn in
            var head = try log.head(in: txn)
            var frontier = try currentFrontier(head: head.position, in: txn)
            let startSize = frontier.size
            let writer = WriteTransaction(txn: txn, store: self)
            var results = [Result<AppendOutcome, Error>]()
            results.reserveCapacity(jobs.count)
            for job in jobs {
                let plan: Plan
                do {
                    plan = try check(job.request, in: txn)
                } catch {
                    results.append(.failure(error))
                    continue
                }
                // From here on a failure throws out of the transaction: it is no longer clean.
                let outcome = try write(job.request, plan, head: &head, writer: writer)
                if case let .appended(receipt) = outcome, let tree {
                    // By index: a `for` over the events would copy each one (a retain of each field).
                    for index in receipt.events.indices {
                        try tree.append(recordHash: receipt.events[index].hash, to: &frontier, in: txn)
                    }
                }
                results.append(.success(outcome))
            }
            if let tree, frontier.size != startSize { try tree.setSize(of: frontier, from: startSize, in: txn) }
            try writer.finish()
            return (results, frontier)
        }
        frontierCache.withLock { $0 = frontier }
        return results
    }

    /// The tree's peaks at the log's head: the cached ones when this process made the last commit,
    /// else read from the tree (and brought up to the head if another writer appended without it).
    private func currentFrontier(head: UInt64, in txn: Txn) throws -> MerkleFrontier {
        if let cached = frontierCache.withLock({ $0 }), cached.size == head { return cached }
        guard let tree else { return MerkleFrontier() }
        var frontier = try tree.frontier(in: txn)
        try tree.catchUp(&frontier, to: head, log: log, in: txn)
        return frontier
    }

    /// Builds the tree of a store made before trees (or finishes one), 100,000 events a transaction.
    private func buildTree() throws {
        guard let tree, !environment.readOnly else { return }
        while true {
            let done = try environment.write { txn in
                let head = try log.head(in: txn).position
                var frontier = try tree.frontier(in: txn)
                guard frontier.size < head else { return true }
                try tree.catchUp(&frontier, to: head, limit: 100_000, log: log, in: txn)
                return false
            }
            if done { return }
        }
    }

    /// The stream index: the linked one, made from the log first when an older store opened
    /// writable still has `streams` (one transaction, so a crash leaves the older layout whole);
    /// `streams` itself when such a store is opened read-only.
    ///
    /// Where `streams` was, the main database keeps a plain record of that name
    /// (``EventLog/streamsMoved``): a binary from before the linked index opens `streams` with
    /// `MDB_CREATE`, and LMDB refuses to open a record as a table (`MDB_INCOMPATIBLE`), so such a
    /// binary fails to open the store instead of finding every stream empty and appending version 1
    /// again.
    private static func openStreamIndex(
        _ environment: Environment, _ core: (String) throws -> MDB_dbi
    ) throws -> EventLog.Index {
        let names = StreamIndex.tableNames
        if environment.readOnly {
            // An upgraded store is never asked for `streams`, which is a record there, not a table.
            if try environment.table(named: names[0]) == nil, let legacy = try environment.table(named: "streams") {
                return .everyVersion(legacy)
            }
            return .linked(StreamIndex(heads: try core(names[0]), links: try core(names[1]), marks: try core(names[2])))
        }
        let linked = StreamIndex(heads: try core(names[0]), links: try core(names[1]), marks: try core(names[2]))
        let events = try core("events")
        try environment.write { txn in
            // Looked for inside the writer's transaction: another process may have upgraded it since.
            var legacy = MDB_dbi()
            let code = mdb_dbi_open(txn.pointer, "streams", 0, &legacy)
            if code == MDB_INCOMPATIBLE { return }  // the record is there: nothing to do
            if code != MDB_NOTFOUND {
                try LMDB.check(code, "mdb_dbi_open streams")
                try EventLog.upgrade(events: events, legacy: legacy, to: linked, in: txn)
            }
            var main = MDB_dbi()
            try LMDB.check(mdb_dbi_open(txn.pointer, nil, 0, &main), "mdb_dbi_open main")
            try txn.put(main, Array("streams".utf8), EventLog.streamsMoved)
        }
        return .linked(linked)
    }

    private enum Plan {
        case replay([UInt8])
        /// Each stream's head before the append, in the request's order.
        case append(currentHeads: [StreamIndex.Head])
    }

    /// The read-only half of a request: every rule is checked before anything is written, so a
    /// rejected request leaves the batch's transaction untouched.
    private func check(_ request: AppendRequest, in txn: Txn) throws -> Plan {
        if let claim = request.idempotency,
            case let .replay(stored) = try idempotency.lookup(claim.key, fingerprint: claim.fingerprint, in: txn),
            !claim.replacesStoredResult
        {
            return .replay(stored)
        }
        if request.streams.count > 1 {
            var seen = Set<String>(minimumCapacity: request.streams.count)
            for stream in request.streams where !seen.insert(stream.streamId).inserted {
                throw EventStoreError.invalidKey("stream \(stream.streamId) appears twice in one request")
            }
        }
        var heads = [StreamIndex.Head]()
        heads.reserveCapacity(request.streams.count)
        for stream in request.streams {
            let current = try log.streamHead(stream.streamId, in: txn)
            guard stream.expectedVersion.admits(current.version) else {
                throw EventStoreError.wrongExpectedVersion(
                    streamId: stream.streamId, expected: stream.expectedVersion, current: current.version)
            }
            heads.append(current)
        }
        for claim in request.claims { try unique.check(claim, in: txn) }
        for release in request.releases { try UniqueReservations.validate(release.key) }
        if !request.preconditions.isEmpty {
            let reader = ReadTransaction(txn: txn, store: self)
            for precondition in request.preconditions { try precondition(reader) }
        }
        return .append(currentHeads: heads)
    }

    private func write(
        _ request: AppendRequest, _ plan: Plan, head: inout EventLog.Head, writer: WriteTransaction
    ) throws -> AppendOutcome {
        guard case let .append(currentHeads) = plan else {
            if case let .replay(stored) = plan { return .replayed(storedResult: stored) }
            fatalError("unreachable")
        }
        var events = [RecordedEvent]()
        events.reserveCapacity(request.streams.reduce(0) { $0 + $1.events.count })
        var versions = [String: UInt64](minimumCapacity: request.streams.count)
        for (stream, current) in zip(request.streams, currentHeads) {
            try log.append(
                stream.events, to: stream.streamId, after: current, head: &head, recorded: &events, in: writer.txn)
            versions[stream.streamId] = current.version + UInt64(stream.events.count)
        }
        let receipt = AppendReceipt(events: events, streamVersions: versions)
        for release in request.releases { try unique.release(release, in: writer.txn) }
        for claim in request.claims { try unique.take(claim, in: writer.txn) }
        if let claim = request.idempotency {
            try idempotency.record(
                claim.key, fingerprint: claim.fingerprint, at: claim.recordedAt, result: claim.result(receipt),
                in: writer.txn)
        }
        try request.afterAppend?(writer, receipt)
        return .appended(receipt)
    }
}

/// What one table holds on disk.
public struct TableUsage: Sendable, Equatable {
    /// The table's name (`events`, `p:campaign-board:a`, …).
    public var name: String
    /// How many key-value pairs it holds (`mdb_stat`'s `ms_entries`).
    public var entries: Int
    /// The bytes of its pages (branch, leaf and overflow), as `mdb_stat` counts them.
    public var bytes: Int
}

/// Counters of the group committer, for tests, benchmarks and the engine's metrics.
public struct StoreStatistics: Sendable, Equatable {
    /// Write transactions the group committer has run.
    public var groupCommitTransactions: UInt64
    /// Append requests it has answered.
    public var groupCommitRequests: UInt64
    /// Requests waiting for the writer now.
    public var queuedRequests: Int
    /// Requests in the transaction being committed now.
    public var inFlightRequests: Int
    /// Times the writer watched for a next request (``StoreOptions/writerWatch``) until the watch's
    /// end and then slept: a request submitted during a watch ends it, so with a long watch this
    /// stays at zero however slowly requests come.
    public var writerWatchesRunOut: UInt64
    /// How long each group commit took, from its transaction's begin to the commit's return (the
    /// flush included): what an append waits for once the writer takes it.
    public var appendTransactionDurations: DurationHistogram
    /// How long each other job of the writer thread took (snapshots, catch-up and rebuild batches,
    /// table opens): appends wait behind them.
    public var writerJobDurations: DurationHistogram
    /// How long the writer has been on its current batch of appends or job; zero while it waits
    /// for work. A flush that hangs completes no sample of the histograms above, but grows this.
    public var writerBusyFor: Duration
}

/// Space facts of a store.
public struct StoreUsage: Sendable, Equatable {
    /// The current LMDB map size in bytes.
    public var mapSize: Int
    /// Bytes of the map in use (last page number × page size).
    public var usedBytes: Int
    /// LMDB's page size in bytes (the OS page size, 4,096 here).
    public var pageSize: Int
}
