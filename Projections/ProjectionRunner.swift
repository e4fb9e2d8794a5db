import CampaignDomain
import EventStore
import Foundation
import Synchronization

#if os(Linux)
import CMalloc
#endif

/// A projection's state as the operator sees it.
public struct ProjectionStatus: Sendable, Equatable {
    /// The projection's name, as `campaign projections` takes it (`campaign-board`, `segments`, …).
    public var name: String
    /// Inline (written in each append's transaction) or catch-up (following the log behind a checkpoint).
    public var mode: ProjectionMode
    /// The version of the code.
    public var version: Int
    /// The version the live table was built with (0 when never built).
    public var builtVersion: Int
    /// The last position applied to the live table.
    public var checkpoint: UInt64
    /// The log's last position.
    public var head: UInt64
    /// Where an unfinished rebuild stands, if one is under way.
    public var rebuildCheckpoint: UInt64?
    /// Whether the event after the checkpoint is part-way applied (a catch-up stopped inside a
    /// costly one, ``PartialApply``, and the next catch-up resumes it).
    public var partWay = false

    /// Events not yet applied.
    public var lag: UInt64 { head > checkpoint ? head - checkpoint : 0 }
}

/// How a rebuild is going.
public struct RebuildProgress: Sendable {
    /// The projection being rebuilt.
    public var name: String
    /// Events applied so far.
    public var done: UInt64
    /// Events to apply in all (the head when the rebuild started or resumed).
    public var total: UInt64
    /// Events per second since the rebuild started or resumed.
    public var eventsPerSecond: Double
}

/// One entry that differs between a live table and a fresh rebuild.
public struct ProjectionDifference: Sendable, Equatable {
    /// The row's key, as stored.
    public var key: [UInt8]
    /// The live value (nil when missing from the live table).
    public var live: [UInt8]?
    /// The rebuilt value (nil when the live table has an entry the rebuild does not).
    public var rebuilt: [UInt8]?
}

/// The outcome of verifying a projection against a fresh rebuild.
public struct VerifyReport: Sendable, Equatable {
    /// The projection verified.
    public var name: String
    /// How many keys were compared: every key of the live table and of the fresh rebuild, each once.
    public var entries: Int
    /// The first differences (at most 20).
    public var differences: [ProjectionDifference]
    /// How many differences there are.
    public var differenceCount: Int

    /// Whether the live table equals the rebuild.
    public var matches: Bool { differenceCount == 0 }
}

/// Keeps projections current and rebuilds them.
///
/// Each projection has two tables, slots `a` and `b`, and a meta record (`projections`: name →
/// version, slot, checkpoint, rebuild?, part-way resume points?). Readers use the slot the meta
/// record names, in the same read transaction. A rebuild fills the other slot in short
/// transactions, recording its own checkpoint so an interrupted rebuild resumes, and switches the
/// meta record in the transaction where it reaches the head: readers never see a half-built model,
/// and no event committed meanwhile is missed. `verify` builds a third table the same way and compares.
///
/// Invariant that makes `@unchecked Sendable` safe: all stored properties are immutable after
/// `init`; `catchUpLock` serialises this process's catch-up runs (LMDB serialises processes).
public final class ProjectionRunner: @unchecked Sendable {
    let store: EventStore
    /// The projections, in the order they are applied.
    public let projections: [any Projection]
    /// The inline projections, in order, each with the event types it reads and its two slots:
    /// worked out once, since a projection's `eventTypes` builds its set each time it is asked.
    let inline: [InlineProjection]
    /// For each event type an inline projection names in its `eventTypes`, which inline projections
    /// read it (bit `i`: `inline[i]`); any other type is read by ``inlineReadersOfEveryType``.
    let inlineReaders: [String: UInt64]
    /// The inline projections that read every type (`eventTypes` nil), as bits.
    let inlineReadersOfEveryType: UInt64
    let meta: Table
    let slots: [String: (a: Table, b: Table, verify: Table)]
    let personalData: Table
    private let catchUpLock = NSLock()

    struct Meta {
        var version: Int
        var slot: String
        var checkpoint: UInt64
        var rebuild: (slot: String, checkpoint: UInt64, version: Int)?
        /// Where a catch-up stopped inside the event after `checkpoint` (a ``PartialApply``
        /// projection's resume point), or nil when no event is part-way applied to the live slot.
        var partial: [UInt8]?
        /// The same for the rebuild's scratch slot: where a rebuild batch stopped inside the event
        /// after the rebuild's checkpoint.
        var rebuildPartial: [UInt8]?

        init(version: Int = 0, slot: String = "a", checkpoint: UInt64 = 0) {
            self.version = version
            self.slot = slot
            self.checkpoint = checkpoint
        }

        /// Reads a stored meta: the binary form below, or the JSON object earlier versions wrote.
        init?(bytes: [UInt8]) {
            if bytes.first == UInt8(ascii: "{") {
                guard let json = try? JSON.parse(bytes) else { return nil }
                version = json["version"]?.integerValue ?? 0
                slot = json["slot"]?.stringValue ?? "a"
                checkpoint = UInt64(json["checkpoint"]?.integerValue ?? 0)
                if let r = json["rebuild"], let slot = r["slot"]?.stringValue {
                    rebuild = (slot, UInt64(r["checkpoint"]?.integerValue ?? 0), r["version"]?.integerValue ?? 0)
                }
                return
            }
            guard bytes.count >= 19, bytes[0] == Self.format else { return nil }
            version = Int(Key.readU64(bytes[1..<9]))
            slot = String(UnicodeScalar(bytes[9]))
            checkpoint = Key.readU64(bytes[10..<18])
            var end = 19
            if bytes.count >= 36, bytes[18] == 1 {
                rebuild = (
                    String(UnicodeScalar(bytes[19])), Key.readU64(bytes[20..<28]), Int(Key.readU64(bytes[28..<36]))
                )
                end = 36
            }
            // Then the resume points, each a u16 length and its bytes (0: none), the live slot's first.
            var resumePoints = [[UInt8]?]()
            while bytes.count >= end + 2 {
                let length = Int(bytes[end]) << 8 | Int(bytes[end + 1])
                guard bytes.count >= end + 2 + length else { return nil }
                resumePoints.append(length == 0 ? nil : Array(bytes[(end + 2)..<(end + 2 + length)]))
                end += 2 + length
            }
            guard end == bytes.count, resumePoints.count <= 2 else { return nil }
            partial = resumePoints.first ?? nil
            rebuildPartial = resumePoints.count > 1 ? resumePoints[1] : nil
        }

        static let format: UInt8 = 0x01

        /// `0x01` ‖ version u64 ‖ live slot (`a`/`b`, 1 byte) ‖ checkpoint u64 ‖ `0x00`, or `0x01`
        /// ‖ rebuild slot (1 byte) ‖ rebuild checkpoint u64 ‖ rebuild version u64; then, only while
        /// an event is part-way applied, the live slot's resume point and the rebuild's, each a
        /// length (u16, 0 for none) ‖ its bytes. Fixed offsets, so the per-append bookkeeping of
        /// inline projections costs no parsing.
        var bytes: [UInt8] {
            var out = [Self.format]
            out.reserveCapacity(36)
            Key.append(UInt64(version), to: &out)
            out.append(slot.utf8.first ?? UInt8(ascii: "a"))
            Key.append(checkpoint, to: &out)
            if let rebuild {
                out += [1, rebuild.slot.utf8.first ?? UInt8(ascii: "a")]
                Key.append(rebuild.checkpoint, to: &out)
                Key.append(UInt64(rebuild.version), to: &out)
            } else {
                out.append(0)
            }
            if partial != nil || rebuildPartial != nil {
                for point in [partial ?? [], rebuildPartial ?? []] {
                    precondition(point.count <= Int(UInt16.max), "a resume point is at most 65,535 bytes")
                    out += [UInt8(point.count >> 8), UInt8(point.count & 0xff)] + point
                }
            }
            return out
        }
    }

    /// Opens the projections' tables. Call ``prepare(progress:)`` next to rebuild what changed.
    /// - Parameter jobBudget: how long one batch may hold the writer (tests make it short).
    public init(
        store: EventStore, projections: [any Projection], jobBudget: Duration = ProjectionRunner.batchTimeBudget
    ) throws {
        self.store = store
        self.projections = projections
        self.jobBudget = jobBudget
        meta = try store.table(named: "projections")
        personalData = try store.table(named: PersonalData.tableName)
        var slots = [String: (Table, Table, Table)]()
        for projection in projections {
            slots[projection.name] = (
                try store.table(named: "p:\(projection.name):a"), try store.table(named: "p:\(projection.name):b"),
                try store.table(named: "p:\(projection.name):v")
            )
        }
        self.slots = slots
        inline = projections.filter { $0.mode == .inline }.map { projection in
            let tables = slots[projection.name]!
            return InlineProjection(projection, types: projection.eventTypes, a: tables.0, b: tables.1)
        }
        precondition(inline.count <= 64, "at most 64 inline projections")
        var readers = [String: UInt64]()
        var everyType: UInt64 = 0
        for (index, entry) in inline.enumerated() {
            if let types = entry.types {
                for type in types { readers[type, default: 0] |= 1 << index }
            } else {
                everyType |= 1 << index
            }
        }
        inlineReaders = readers.mapValues { $0 | everyType }
        inlineReadersOfEveryType = everyType
    }

    /// An inline projection as the writer applies it to each request of a group commit: a class, so
    /// the writer's loop takes one reference each, where a tuple of an existential, a set and two
    /// tables was copied through the runtime's generic witnesses.
    final class InlineProjection: Sendable {
        let projection: any Projection
        let name: String
        let version: Int
        /// The event types it reads, or nil for all.
        let types: Set<String>?
        /// Its two slots, `a` and `b`.
        let a: Table
        let b: Table

        init(_ projection: any Projection, types: Set<String>?, a: Table, b: Table) {
            self.projection = projection
            name = projection.name
            version = projection.version
            self.types = types
            self.a = a
            self.b = b
        }
    }

    /// The projection with this name.
    /// - Throws: `RESOURCE_NOT_FOUND` naming the projections there are.
    public func projection(named name: String) throws -> any Projection {
        guard let projection = projections.first(where: { $0.name == name }) else {
            throw CampaignError(
                .resourceNotFound,
                "no projection named \(name); projections are \(projections.map(\.name).joined(separator: ", "))")
        }
        return projection
    }

    /// A projection's stored state; in a write transaction, as this transaction last set it.
    func meta(_ name: String, in txn: ReadTransaction) throws -> Meta? {
        if let writer = txn as? WriteTransaction { return try metas(in: writer).meta(name) }
        return try storedMeta(name, in: txn)
    }

    /// Sets a projection's state for the rest of the transaction; it is stored once, just before
    /// the transaction commits, however often it was set (a group commit sets each inline
    /// projection's checkpoint once per request).
    func setMeta(_ value: Meta, _ name: String, in txn: WriteTransaction) {
        metas(in: txn).set(value, name)
    }

    private func storedMeta(_ name: String, in txn: ReadTransaction) throws -> Meta? {
        try txn.value(forKey: Array(name.utf8), in: meta).flatMap(Meta.init(bytes:))
    }

    /// What one write transaction keeps for the projections (see `WriteTransaction.local`): their
    /// states as read or set, and each inline projection's ``BatchMemo``, shared by the requests a
    /// group commit puts in it (each applies its own events through a table of its own).
    private final class TransactionMetas {
        /// A projection's state as read or set, whether it was read yet, and whether it was set.
        struct Entry {
            let name: String
            var meta: Meta?
            var loaded: Bool
            var changed: Bool
        }

        private let read: (String) throws -> Meta?
        /// The inline projections' entries first, in ``ProjectionRunner/inline``'s order (found by
        /// index, read when first asked for), then any other projection's, in the order first met
        /// (a few, named by the same string literals each time: a scan compares their bytes where
        /// a dictionary would hash each name).
        private var entries: [Entry]
        /// Each inline projection's memo for this transaction, by index, made when first asked for.
        private var memos: [BatchMemo?]

        init(inline: [String], read: @escaping (String) throws -> Meta?) {
            self.read = read
            entries = inline.map { Entry(name: $0, meta: nil, loaded: false, changed: false) }
            memos = Array(repeating: nil, count: inline.count)
        }

        func meta(_ name: String) throws -> Meta? {
            guard let index = entries.firstIndex(where: { $0.name == name }) else {
                let value = try read(name)
                entries.append(Entry(name: name, meta: value, loaded: true, changed: false))
                return value
            }
            return try meta(at: index)
        }

        /// The state of the projection at `index` among the entries (the inline ones come first).
        func meta(at index: Int) throws -> Meta? {
            if !entries[index].loaded {
                entries[index].meta = try read(entries[index].name)
                entries[index].loaded = true
            }
            return entries[index].meta
        }

        func set(_ value: Meta, _ name: String) {
            if let index = entries.firstIndex(where: { $0.name == name }) {
                entries[index].meta = value
                entries[index].loaded = true
                entries[index].changed = true
            } else {
                entries.append(Entry(name: name, meta: value, loaded: true, changed: true))
            }
        }

        /// Moves the checkpoint of the inline projection at `index`, whose state ``meta(at:)`` read,
        /// up to `position` (never back), in place.
        func advance(at index: Int, to position: UInt64) {
            guard entries[index].meta != nil else { return }
            entries[index].meta!.checkpoint = max(entries[index].meta!.checkpoint, position)
            entries[index].changed = true
        }

        /// The memo of the inline projection at `index`.
        func memo(at index: Int) -> BatchMemo {
            if let memo = memos[index] { return memo }
            let memo = BatchMemo()
            memos[index] = memo
            return memo
        }

        /// The states set in this transaction, in the order of the entries.
        var changed: [(name: String, meta: Meta)] {
            entries.compactMap { entry in entry.changed ? entry.meta.map { (entry.name, $0) } : nil }
        }
    }

    private func metas(in txn: WriteTransaction) -> TransactionMetas {
        txn.local(
            ObjectIdentifier(self),
            make: {
                TransactionMetas(inline: inline.map(\.name)) { [unowned self, unowned txn] name in
                    try self.storedMeta(name, in: txn)
                }
            },
            finish: { [meta] metas, txn in
                for (name, value) in metas.changed { try txn.put(value.bytes, forKey: Array(name.utf8), in: meta) }
            })
    }

    func table(_ name: String, slot: String) -> Table {
        let tables = slots[name]!
        return slot == "b" ? tables.b : tables.a
    }

    /// Brings every projection to its code's version: a projection never built, or built by an
    /// older version, is rebuilt (resuming an interrupted rebuild); then catch-up projections
    /// catch up. A projection added to an empty store is simply marked built.
    public func prepare(progress: ((RebuildProgress) -> Void)? = nil) throws {
        for projection in projections {
            let current = try store.read { try meta(projection.name, in: $0) }
            if current == nil, try store.head().position == 0 {
                try store.write { txn in
                    if try meta(projection.name, in: txn) == nil {
                        setMeta(Meta(version: projection.version), projection.name, in: txn)
                    }
                }
                continue
            }
            if current?.version != projection.version {
                try rebuild(projection.name, progress: progress)
            }
        }
        try catchUp()
    }

    /// Reads a projection's live table.
    public func read<T>(_ name: String, in txn: ReadTransaction, _ body: (ProjectionReader) throws -> T) throws -> T {
        let slot = try meta(name, in: txn)?.slot ?? "a"
        return try body(ProjectionReader(txn: txn, table: table(name, slot: slot)))
    }

    /// Reads a projection's live table in a read transaction of its own.
    public func read<T>(_ name: String, _ body: (ProjectionReader) throws -> T) throws -> T {
        try store.read { txn in try read(name, in: txn, body) }
    }

    // MARK: Inline

    /// Applies committed-in-this-transaction events to every inline projection. If a projection's
    /// checkpoint is behind the first event (events appended by code that does not project), the
    /// gap is applied first, from the log, in this same transaction.
    /// - Parameter known: what the writer knows about each event (see ``KnownEvent``): `known[i]`
    ///   describes `events[i]`; shorter than `events`, or nil at `i`, where it knows nothing.
    public func applyInline(
        _ events: [RecordedEvent], known: [KnownEvent?] = [], in txn: WriteTransaction
    ) throws {
        guard let first = events.first, let last = events.last else { return }
        let projected = events.indices.map { index in
            let event = events[index]
            return (index < known.count ? known[index] : nil).map { ProjectedEvent(event, known: $0) }
                ?? ProjectedEvent(event)
        }
        // The transaction's projection states and memos, found once for all of them.
        let metas = metas(in: txn)
        // Which inline projections read each event's type (`eventTypes`; a projection leaves the
        // table alone for the others): one lookup an event, not one a projection.
        let readers = projected.map { inlineReaders[$0.envelope.type] ?? inlineReadersOfEveryType }
        for (index, entry) in inline.enumerated() {
            guard let state = try metas.meta(at: index), state.version == entry.version else { continue }
            let table = ProjectionTable(
                txn: txn, table: state.slot == "b" ? entry.b : entry.a, personalData: personalData,
                memo: metas.memo(at: index))
            if state.checkpoint + 1 < first.position {
                for position in (state.checkpoint + 1)..<first.position {
                    if let missing = try txn.event(at: position), entry.types?.contains(missing.type) ?? true {
                        try entry.projection.apply(ProjectedEvent(missing), to: table)
                    }
                }
            }
            for (at, event) in projected.enumerated()
            where readers[at] & (1 << index) != 0 && event.envelope.position > state.checkpoint {
                try entry.projection.apply(event, to: table)
            }
            metas.advance(at: index, to: last.position)
        }
    }

    // MARK: Catch-up

    /// Applies new events to catch-up projections (all, or one), up to the head as it is when
    /// called, in transactions of at most `batchSize` events of the types each reads (below 1
    /// counts as 1; positions of other types are passed over whatever their number) and about
    /// ``jobBudget`` each, each with its checkpoint. Safe to call from several tasks and processes.
    /// (Up to that head, not the head as it moves: under appends that never stop, the first
    /// projection would chase it and the next never start.)
    /// - Parameter deadline: when given, no batch starts after it (a projection may be left behind,
    ///   each at a batch's checkpoint).
    /// - Returns: the number of events applied.
    @discardableResult
    public func catchUp(
        _ name: String? = nil, batchSize: Int = 5_000, until deadline: ContinuousClock.Instant? = nil,
        onBatch: ((String, UInt64) -> Void)? = nil
    ) throws -> UInt64 {
        try catchUpLock.withLock {
            let head = try store.read { try $0.headPosition() }
            var applied: UInt64 = 0
            for projection in projections where projection.mode == .catchUp && (name == nil || projection.name == name)
            {
                while deadline.map({ ContinuousClock.now < $0 }) ?? true {
                    let step = try store.write { txn in
                        try catchUpBatch(projection, batchSize: batchSize, through: head, in: txn)
                    }
                    applied += step.applied
                    guard step.moved else { break }
                    onBatch?(projection.name, step.checkpoint)
                }
            }
            return applied
        }
    }

    /// Catches up like ``catchUp(_:batchSize:until:onBatch:)`` (to the head as it is when called),
    /// with each batch a job of the store's writer thread (``EventStore/perform(_:)``): a query
    /// waiting for its read model never blocks
    /// a thread of Swift's cooperative pool on LMDB's writer lock, and each job holds the writer for
    /// at most about ``jobBudget`` (less when appends wait), even for one costly event. Jobs
    /// run one at a time, and each reads its checkpoint inside its transaction, so concurrent
    /// callers never apply an event twice.
    /// - Returns: the number of events applied.
    @discardableResult
    public func catchUpOnWriter(_ name: String? = nil, batchSize: Int = 1_000) async throws -> UInt64 {
        let head = try store.read { try $0.headPosition() }
        var applied: UInt64 = 0
        for projection in projections where projection.mode == .catchUp && (name == nil || projection.name == name) {
            while true {
                let step = try await store.perform { txn in
                    try self.catchUpBatch(projection, batchSize: batchSize, through: head, in: txn)
                }
                applied += step.applied
                if !step.moved { break }
            }
        }
        return applied
    }

    /// What one catch-up transaction did.
    struct CatchUpStep {
        /// Positions passed whole: events applied, and events of types the projection does not
        /// read (a part-way event is not counted until its last part).
        var applied: UInt64
        /// The checkpoint after the transaction.
        var checkpoint: UInt64
        /// Whether the transaction applied anything, whole events or part of one: the caller goes on.
        var moved: Bool
    }

    /// Applies events after the projection's checkpoint, at most `batchSize` of the types it reads
    /// (passing over those of other types) and none after position `through`, until its time is up
    /// (``shouldYield(startedAt:)``, checked after each event and, for a ``PartialApply``
    /// projection, inside a costly one, whose resume point is then stored with the checkpoint).
    func catchUpBatch(
        _ projection: any Projection, batchSize: Int, through: UInt64, in txn: WriteTransaction
    ) throws -> CatchUpStep {
        guard var state = try meta(projection.name, in: txn), state.version == projection.version else {
            return CatchUpStep(applied: 0, checkpoint: 0, moved: false)
        }
        let began = ContinuousClock.now
        let stop = { self.shouldYield(startedAt: began) }
        let table = ProjectionTable(
            txn: txn, table: table(projection.name, slot: state.slot), personalData: personalData)
        let resumable = projection as? any PartialApply
        var applied: UInt64 = 0
        // Events of the types it reads: they count toward the batch's size, and positions of other
        // types are passed over almost free (a log of other events once took a transaction, and a
        // flush, every 1,000 positions to pass).
        var read = 0
        var moved = false
        // Only the types it declares are decoded (a record of another type is read no further than
        // its type), and no payloads for a projection that reads none; the positions between are
        // passed over with the window that holds them.
        let payloads = projection.readsPayloads
        // A batch of none would never move (and a caller would stop, behind, as if caught up).
        let batchSize = max(1, batchSize)
        reading: while read < batchSize && state.checkpoint < through {
            let last = state.checkpoint + UInt64(min(256, Int(through - state.checkpoint)))
            let events = try txn.events(
                from: state.checkpoint + 1, through: last, types: projection.eventTypes, hashes: false,
                payloads: payloads)
            moved = true
            for event in events {
                // The positions before it were of other types: passed over, so a part-way event's
                // checkpoint stays just before it.
                applied += event.position - 1 - state.checkpoint
                state.checkpoint = event.position - 1
                let projected = ProjectedEvent(event)
                if let resumable {
                    state.partial = try resumable.apply(
                        projected, to: table, resumingAfter: state.partial, shouldStop: stop)
                    if state.partial != nil { break reading }
                } else {
                    try projection.apply(projected, to: table)
                }
                applied += 1
                read += 1
                state.checkpoint = event.position
                if stop() || read == batchSize { break reading }
            }
            applied += last - state.checkpoint
            state.checkpoint = last
            if stop() { break }
        }
        if moved { setMeta(state, projection.name, in: txn) }
        return CatchUpStep(applied: applied, checkpoint: state.checkpoint, moved: moved)
    }

    // MARK: Rebuild

    /// How long one rebuild or catch-up batch may hold the writer by default: appends wait behind it.
    public static let batchTimeBudget: Duration = .milliseconds(50)

    /// How long one rebuild or catch-up batch of this runner may hold the writer
    /// (``batchTimeBudget`` unless the runner was made with another).
    public let jobBudget: Duration

    /// How long a rebuild or catch-up batch works before it ends early because appends are waiting:
    /// long enough that a rebuild under steady load still moves, short enough that an append waits
    /// little.
    public static let batchTimeWhenAppendsWait: Duration = .milliseconds(1)

    /// Whether a writer job that started at `start` should end now: its budget is spent, or it has
    /// done its minimum and appends are waiting for the writer.
    func shouldYield(startedAt start: ContinuousClock.Instant) -> Bool {
        let elapsed = ContinuousClock.now - start
        return elapsed >= jobBudget
            || (elapsed >= min(jobBudget, Self.batchTimeWhenAppendsWait) && store.appendsWaiting)
    }

    /// Rebuilds one projection from position 1 into its scratch slot, then switches to it
    /// atomically. Resumes an interrupted rebuild of the same version.
    public func rebuild(_ name: String, batchSize: Int = 20_000, progress: ((RebuildProgress) -> Void)? = nil) throws {
        try rebuild([name], batchSize: batchSize, progress: progress)
    }

    /// Rebuilds every projection, in one pass over the log.
    public func rebuildAll(
        batchSize: Int = 20_000, lanes: Int = cores, progress: ((RebuildProgress) -> Void)? = nil
    ) throws {
        try rebuild(projections.map(\.name), batchSize: batchSize, lanes: lanes, progress: progress)
    }

    /// Rebuilds several projections in one pass over the log, each batch in a write transaction
    /// of its own on the calling thread: for a store nobody else writes in this process (opening
    /// one, or a tool). Each event is read and decoded once and applied to every projection's
    /// scratch slot; each projection switches in the transaction where its scratch slot reaches
    /// the head. A batch ends after `batchSize` events or ``jobBudget``, whichever is first,
    /// so a writer in another process waits at most about that long.
    /// - Parameter lanes: how many threads fold at once (``fold(_:lanes:deliver:)``), by default every
    ///   core. A lane makes its passes over the log one after another and writes a pass's rows
    ///   before the next, so it holds at most one large fold at a time.
    public func rebuild(
        _ names: [String], batchSize: Int = 20_000, lanes: Int = cores, progress: ((RebuildProgress) -> Void)? = nil
    ) throws {
        let run = try RebuildRun(self, names)
        let started = try store.write(run.start)
        let store = self.store
        try run.fold(lanes: lanes) { folded in
            var written = 0
            repeat {
                written = try store.write { try run.write(folded, from: written, in: $0) }
            } while written < folded.rows.count
        }
        while true {
            let (done, finished) = try store.write { try run.batch(batchSize: batchSize, in: $0) }
            progress?(run.progress(done: done, started: started))
            if finished { return }
        }
    }

    /// Rebuilds like ``rebuild(_:batchSize:lanes:progress:)``, with each batch a job of
    /// the store's writer thread (``EventStore/perform(_:)``): for a process that is also serving
    /// commands. No thread of Swift's cooperative pool blocks on LMDB's writer lock, and appends
    /// commit between batches, each of which holds the writer for at most ``jobBudget``.
    /// - Parameter lanes: how many threads fold at once (``fold(_:lanes:deliver:)``); by default one core
    ///   fewer than the machine has (at least one), leaving a core to the commands the process serves.
    /// - Returns: the progress at the end (events applied, the rate).
    @discardableResult
    public func rebuildOnWriter(
        _ names: [String], batchSize: Int = 20_000, lanes: Int = max(1, cores - 1),
        progress: (@Sendable (RebuildProgress) -> Void)? = nil
    ) async throws -> RebuildProgress {
        let run = try RebuildRun(self, names)
        let started = try await store.perform(run.start)
        let store = self.store
        try await Self.offPool {
            // The lanes' threads are not the cooperative pool's: they wait for the writer's jobs.
            try run.fold(lanes: lanes) { folded in
                var written = 0
                repeat {
                    let from = written
                    written = try store.performAndWait { try run.write(folded, from: from, in: $0) }
                } while written < folded.rows.count
            }
        }
        while true {
            let (done, finished) = try await store.perform { try run.batch(batchSize: batchSize, in: $0) }
            let reached = run.progress(done: done, started: started)
            progress?(reached)
            if finished { return reached }
        }
    }

    /// Runs `work` on a thread outside Swift's cooperative pool (a fold keeps a core busy for
    /// seconds) and returns its result.
    static func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
        }
    }

    /// The cores this process may run on.
    public static var cores: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    /// Folds the log from position 1 to the head into each projection's fold and hands the rows each
    /// arrives at, with the last position folded, to `deliver`, on the lane's thread, as soon as
    /// that fold is done.
    ///
    /// The folds go to at most `lanes` threads, which run at once, in passes over the log
    /// (``passes(_:weights:count:)``): a large fold (``FoldedRebuild/foldIsLarge``) has a pass of its own,
    /// and so has each small fold when there are several lanes (on one lane the small folds share
    /// a pass). A lane takes the next pass not yet taken, large ones first, whenever it is free, so
    /// the lane whose large fold finishes first takes the small folds while the other still folds
    /// (dealt to lanes in advance, a lane could be left idle for the last third of a rebuild). A
    /// pass reads the log in read transactions of 4,096 positions, decodes only the events of the
    /// types its folds read (``Projection/eventTypes``), each once, and hands each to the folds that
    /// read its type. A lane delivers a pass's rows before it takes the next, so it holds at most
    /// one large fold at a time (the folds of one pass over the log for all six held 230 MiB at
    /// once on the demo-shaped log); on two lanes or more, two large folds may run at once, one a
    /// lane.
    func fold(
        _ projections: [any FoldedRebuild], lanes: Int,
        deliver: @escaping @Sendable (_ index: Int, _ rows: SortedRows, _ through: UInt64) throws -> Void
    ) throws {
        guard !projections.isEmpty else { return }
        let head = try store.read { try $0.headPosition() }
        let passes = Self.passes(projections.map(\.foldIsLarge), weights: projections.map(\.foldWeight), count: lanes)
        let queue = PassQueue(count: passes.count)
        DispatchQueue.concurrentPerform(iterations: min(max(1, lanes), passes.count)) { _ in
            while let next = queue.take() {
                let pass = passes[next]
                do {
                    try fold(pass.map { projections[$0] }, through: head) { try deliver(pass[$0], $1, $2) }
                } catch {
                    queue.fail(error)
                    return
                }
            }
        }
        try queue.rethrow()
    }

    /// Hands the allocator's free memory back to the system. glibc keeps a freed block in its
    /// thread's arena for that thread's next allocations, so with two lanes a fold's memory stayed
    /// held beside the other lane's fold and rows: called after a fold is released and after its
    /// rows are written, it took a two-lane rebuild of the demo-shaped log from 178–208 MiB of heap at
    /// its peak (median 204) to 168–185 (median 175), in the same time.
    static func returnFreedMemory() {
        #if os(Linux)
        _ = malloc_trim(0)
        #endif
    }

    /// The passes over the log, in the order lanes take them, each the projections (by index) it
    /// folds: each large fold alone, in the order given, then each small fold alone, the heaviest
    /// first (``FoldedRebuild/foldWeight``; equal ones in the order given), or, on one lane, the
    /// small folds together (one pass reads the log once for all of them).
    static func passes(_ large: [Bool], weights: [Int], count: Int) -> [[Int]] {
        let big = large.indices.filter { large[$0] }
        let small = large.indices.filter { !large[$0] }
        guard count > 1 else { return big.map { [$0] } + (small.isEmpty ? [] : [small]) }
        let heaviestFirst = small.sorted { weights[$0] != weights[$1] ? weights[$0] > weights[$1] : $0 < $1 }
        return (big + heaviestFirst).map { [$0] }
    }

    /// Folds the log up to `head` into the folds of some projections in one pass, then hands each
    /// fold's rows to `deliver` (with its index among them) and releases it.
    private func fold(
        _ projections: [any FoldedRebuild], through head: UInt64,
        deliver: (_ index: Int, _ rows: SortedRows, _ through: UInt64) throws -> Void
    ) throws {
        var folds = projections.map { Optional($0.makeFold()) }
        let types = projections.map(\.eventTypes)
        let wanted: Set<String>? = types.contains { $0 == nil } ? nil : types.reduce(into: []) { $0.formUnion($1!) }
        let payloads = projections.contains(where: \.readsPayloads)
        // Which folds read each type, worked out once per type.
        var readers: [String: [Int]] = [:]
        func readersOf(_ type: String) -> [Int] {
            if let known = readers[type] { return known }
            let found = types.indices.filter { types[$0]?.contains(type) ?? true }
            readers[type] = found
            return found
        }
        var reached: UInt64 = 0
        while reached < head {
            let last = min(head, reached + 4_096)
            // Last first, taken off the end: each event moves into its projected event, not copied.
            var events = try store.read {
                try $0.events(
                    from: reached + 1, through: last, types: wanted, hashes: false, payloads: payloads, lastFirst: true)
            }
            while let event = events.popLast() {
                let projected = ProjectedEvent(event)
                if folds.count == 1 {
                    try folds[0]!.fold(projected)
                } else {
                    for index in readersOf(projected.envelope.type) { try folds[index]!.fold(projected) }
                }
            }
            reached = last
        }
        for index in folds.indices {
            let rows = try store.read { txn in
                try folds[index]!.rows(PersonalDataReader(txn: txn, table: personalData))
            }
            folds[index] = nil
            Self.returnFreedMemory()
            try deliver(index, rows, reached)
            Self.returnFreedMemory()
        }
    }

    /// The passes of ``fold(_:lanes:deliver:)`` not yet taken, and the first error of any lane:
    /// after one, no lane takes another pass.
    private final class PassQueue: Sendable {
        private let count: Int
        /// Passes taken so far, and the first error.
        private let state = Mutex<(taken: Int, error: (any Error)?)>((0, nil))

        init(count: Int) { self.count = count }

        /// The index of the next pass, or nil when none is left or a lane failed.
        func take() -> Int? {
            state.withLock { state in
                guard state.error == nil, state.taken < count else { return nil }
                state.taken += 1
                return state.taken - 1
            }
        }

        func fail(_ failure: any Error) { state.withLock { $0.error = $0.error ?? failure } }
        func rethrow() throws { if let error = state.withLock({ $0.error }) { throw error } }
    }

    /// The rows a folded projection's rebuild arrived at, to write into its scratch slot.
    struct FoldedRows: Sendable {
        /// The projection.
        var name: String
        /// Its rows, in key order.
        var rows: SortedRows
        /// The last position folded into them: the rebuild's checkpoint once they are written.
        var through: UInt64
    }

    /// One rebuild of some projections, as steps that each run in a write transaction.
    struct RebuildRun: Sendable {
        /// Where a run stands when it starts: the position it resumes from, the head, the time.
        struct Start: Sendable {
            var resumedFrom: UInt64
            var total: UInt64
            var time: ContinuousClock.Instant
        }

        let runner: ProjectionRunner
        let selected: [any Projection]
        let label: String

        init(_ runner: ProjectionRunner, _ names: [String]) throws {
            self.runner = runner
            selected = try names.map(runner.projection(named:))
            label = names.count == 1 ? names[0] : "all"
        }

        /// Clears each projection's scratch slot, unless an interrupted rebuild of the same version
        /// is under way there (it resumes).
        @Sendable func start(_ txn: WriteTransaction) throws -> Start {
            var lowest = UInt64.max
            for projection in selected {
                var state = try runner.meta(projection.name, in: txn) ?? Meta()
                let scratch = state.slot == "a" ? "b" : "a"
                // A checkpoint of 0 resumes nothing; a folded projection may have written some of
                // its rows under it, so its slot is cleared too.
                if let rebuild = state.rebuild, rebuild.version == projection.version, rebuild.slot == scratch,
                    rebuild.checkpoint > 0
                {
                    lowest = min(lowest, rebuild.checkpoint)
                    continue
                }
                try txn.clear(runner.table(projection.name, slot: scratch))
                state.rebuild = (scratch, 0, projection.version)
                state.rebuildPartial = nil
                runner.setMeta(state, projection.name, in: txn)
                lowest = 0
            }
            return Start(resumedFrom: lowest == .max ? 0 : lowest, total: try txn.headPosition(), time: .now)
        }

        /// Folds the log for each ``FoldedRebuild`` projection whose rebuild starts from scratch, in
        /// read transactions (no writer held), and hands each one's rows, with the position they
        /// reach, to `write` as soon as they are made (on a lane's thread; see ``fold(_:lanes:deliver:)``).
        func fold(lanes: Int, write: @escaping @Sendable (FoldedRows) throws -> Void) throws {
            let fresh = try runner.store.read { txn in
                try selected.compactMap { projection -> (any FoldedRebuild)? in
                    guard let folded = projection as? any FoldedRebuild,
                        try runner.meta(projection.name, in: txn)?.rebuild?.checkpoint == 0
                    else { return nil }
                    return folded
                }
            }
            try runner.fold(fresh, lanes: lanes) { index, rows, through in
                guard through > 0 else { return }
                try write(FoldedRows(name: fresh[index].name, rows: rows, through: through))
            }
        }

        /// Appends folded rows from `start` to the projection's scratch slot for at most
        /// ``jobBudget`` (less when appends wait); the job that writes the last row also records `through` as the
        /// rebuild's checkpoint. Nothing is written unless the rebuild is still at checkpoint 0.
        /// - Returns: the index of the next row to write (the row count when done).
        func write(_ folded: FoldedRows, from start: Int, in txn: WriteTransaction) throws -> Int {
            guard var state = try runner.meta(folded.name, in: txn), var rebuild = state.rebuild,
                rebuild.checkpoint == 0
            else { return folded.rows.count }
            let began = ContinuousClock.now
            let index = try folded.rows.append(from: start, to: runner.table(folded.name, slot: rebuild.slot), in: txn)
            {
                runner.shouldYield(startedAt: began)
            }
            guard index == folded.rows.count else { return index }
            rebuild.checkpoint = folded.through
            state.rebuild = rebuild
            runner.setMeta(state, folded.name, in: txn)
            return index
        }

        /// Applies the next events (at most `batchSize`, for at most ``jobBudget``, less when
        /// appends wait: ``batchTimeWhenAppendsWait``) to every
        /// scratch slot and records each checkpoint; a projection whose slot reaches the head
        /// switches to it here.
        /// - Returns: the position reached, and whether every projection has switched.
        func batch(batchSize: Int, in txn: WriteTransaction) throws -> (UInt64, Bool) {
            let began = ContinuousClock.now
            let stop = { runner.shouldYield(startedAt: began) }
            var states = [(projection: any Projection, state: Meta, scratch: ProjectionTable)]()
            for projection in selected {
                guard let state = try runner.meta(projection.name, in: txn), let rebuild = state.rebuild else {
                    continue
                }
                let table = runner.table(projection.name, slot: rebuild.slot)
                states.append(
                    (projection, state, ProjectionTable(txn: txn, table: table, personalData: runner.personalData)))
            }
            guard let from = states.map({ $0.state.rebuild!.checkpoint }).min() else {
                return (try txn.headPosition(), true)
            }
            var reached = from
            var applied = 0
            // Read in chunks, and check the time budget after every event: one event can be costly
            // (a segment's rule change re-evaluates the tenant's contacts), and a ``PartialApply``
            // projection applies such an event in parts, its checkpoint staying before it meanwhile.
            var outOfTime = false
            while applied < batchSize, !outOfTime {
                let events = try txn.events(from: reached + 1, limit: min(256, batchSize - applied), hashes: false)
                if events.isEmpty { break }
                for event in events {
                    let projected = ProjectedEvent(event)
                    for index in states.indices where event.position > states[index].state.rebuild!.checkpoint {
                        if let resumable = states[index].projection as? any PartialApply {
                            let rest = try resumable.apply(
                                projected, to: states[index].scratch,
                                resumingAfter: states[index].state.rebuildPartial, shouldStop: stop)
                            states[index].state.rebuildPartial = rest
                            if rest != nil {
                                outOfTime = true
                                continue
                            }
                        } else {
                            try states[index].projection.apply(projected, to: states[index].scratch)
                        }
                        states[index].state.rebuild!.checkpoint = event.position
                    }
                    reached = event.position
                    applied += 1
                    if outOfTime || stop() {
                        outOfTime = true
                        break
                    }
                }
            }
            let head = try txn.headPosition()
            var remaining = false
            for var entry in states {
                let rebuild = entry.state.rebuild!
                if rebuild.checkpoint >= head {
                    try txn.clear(runner.table(entry.projection.name, slot: entry.state.slot))
                    entry.state = Meta(version: rebuild.version, slot: rebuild.slot, checkpoint: rebuild.checkpoint)
                } else {
                    remaining = true
                }
                runner.setMeta(entry.state, entry.projection.name, in: txn)
            }
            return (reached, !remaining)
        }

        func progress(done: UInt64, started: Start) -> RebuildProgress {
            let elapsed = (ContinuousClock.now - started.time).components
            let seconds = max(Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18, 1e-6)
            return RebuildProgress(
                name: label, done: done, total: max(started.total, done),
                eventsPerSecond: Double(done - min(done, started.resumedFrom)) / seconds)
        }
    }

    // MARK: Verify

    /// Rebuilds a projection into a scratch table and compares it with the live table, entry by
    /// entry, at the same head. The live table changes only as a catch-up would change it: a
    /// catch-up projection is caught up, with its checkpoint, before the comparison. Every write
    /// is a short transaction (at most ``jobBudget`` of events, then the few events appended since),
    /// and the comparison runs in a read transaction, so appends from other processes keep flowing.
    public func verify(_ name: String, batchSize: Int = 20_000) throws -> VerifyReport {
        let projection = try self.projection(named: name)
        let scratch = slots[name]!.verify
        if projection.mode == .catchUp { try catchUp(name) }
        var checkpoint: UInt64 = 0
        try store.write { try $0.clear(scratch) }
        if let projection = projection as? any FoldedRebuild {
            var folded: (rows: SortedRows, through: UInt64) = (SortedRows(), 0)
            try fold([projection], through: try store.read { try $0.headPosition() }) { folded = ($1, $2) }
            let (rows, through) = folded
            var written = 0
            while written < rows.count {
                let began = ContinuousClock.now
                written = try store.write { txn in
                    try rows.append(from: written, to: scratch, in: txn) { shouldYield(startedAt: began) }
                }
            }
            checkpoint = through
        }
        // The scratch table follows the log to its head in short write transactions.
        while true {
            let began = ContinuousClock.now
            let (next, atHead): (UInt64, Bool) = try store.write { txn in
                let table = ProjectionTable(txn: txn, table: scratch, personalData: personalData)
                var reached = checkpoint
                var applied = 0
                reading: while applied < batchSize {
                    let events = try txn.events(from: reached + 1, limit: min(256, batchSize - applied), hashes: false)
                    if events.isEmpty { break }
                    for event in events {
                        try projection.apply(ProjectedEvent(event), to: table)
                        reached = event.position
                        applied += 1
                        if shouldYield(startedAt: began) { break reading }
                    }
                }
                return (reached, reached >= (try txn.headPosition()))
            }
            checkpoint = next
            if atHead { break }
        }
        // Then both tables are brought to one head in a short write transaction and compared in a
        // read transaction at that head, so the comparison (every entry of both) holds no writer.
        // An append landing between the two moves the head: the step is retried, and after a few
        // misses the comparison runs inside the write transaction instead.
        for _ in 1...8 {
            let (head, slot): (UInt64, String?) = try store.write { txn in
                (
                    try bringToHead(projection, scratch: scratch, from: checkpoint, in: txn),
                    try meta(name, in: txn)?.slot
                )
            }
            checkpoint = head
            guard let slot else { return VerifyReport(name: name, entries: 0, differences: [], differenceCount: 0) }
            let report: VerifyReport? = try store.read { txn in
                guard try txn.headPosition() == head, try meta(name, in: txn)?.slot == slot else { return nil }
                return try compare(name, live: table(name, slot: slot), scratch: scratch, in: txn)
            }
            if let report {
                try store.write { try $0.clear(scratch) }
                return report
            }
        }
        // Appends kept landing in between: compare inside the write transaction instead.
        return try store.write { txn in
            _ = try bringToHead(projection, scratch: scratch, from: checkpoint, in: txn)
            guard let state = try meta(name, in: txn) else {
                return VerifyReport(name: name, entries: 0, differences: [], differenceCount: 0)
            }
            let report = try compare(name, live: table(name, slot: state.slot), scratch: scratch, in: txn)
            try txn.clear(scratch)
            return report
        }
    }

    /// Applies the events after `checkpoint` to the scratch table and, for a catch-up projection,
    /// the events after its checkpoint to the live table as a catch-up batch would (checkpoint and
    /// all, finishing an event part-way applied), so both stand at the head; returns the head.
    private func bringToHead(
        _ projection: any Projection, scratch: Table, from checkpoint: UInt64, in txn: WriteTransaction
    ) throws -> UInt64 {
        let table = ProjectionTable(txn: txn, table: scratch, personalData: personalData)
        for event in try txn.events(from: checkpoint + 1, limit: .max, hashes: false) {
            try projection.apply(ProjectedEvent(event), to: table)
        }
        let head = try txn.headPosition()
        guard projection.mode == .catchUp, let state = try meta(projection.name, in: txn), state.checkpoint < head
        else { return head }
        let liveTable = ProjectionTable(
            txn: txn, table: self.table(projection.name, slot: state.slot), personalData: personalData)
        for event in try txn.events(from: state.checkpoint + 1, limit: .max, hashes: false) {
            // The first may be part-way applied by another process's catch-up since ours.
            if let partial = event.position == state.checkpoint + 1 ? state.partial : nil,
                let resumable = projection as? any PartialApply
            {
                _ = try resumable.apply(
                    ProjectedEvent(event), to: liveTable, resumingAfter: partial, shouldStop: { false })
            } else {
                try projection.apply(ProjectedEvent(event), to: liveTable)
            }
        }
        var advanced = state
        advanced.checkpoint = head
        advanced.partial = nil
        setMeta(advanced, projection.name, in: txn)
        return head
    }

    /// Compares a live table with a rebuilt one, entry by entry, in one transaction.
    private func compare(_ name: String, live: Table, scratch: Table, in txn: ReadTransaction) throws -> VerifyReport {
        var report = VerifyReport(name: name, entries: 0, differences: [], differenceCount: 0)
        func note(_ difference: ProjectionDifference) {
            report.differenceCount += 1
            if report.differences.count < 20 { report.differences.append(difference) }
        }
        try txn.forEach(in: live) { key, value in
            report.entries += 1
            let rebuilt = try txn.value(forKey: key, in: scratch)
            if rebuilt != value { note(ProjectionDifference(key: key, live: value, rebuilt: rebuilt)) }
            return true
        }
        try txn.forEach(in: scratch) { key, value in
            if try txn.value(forKey: key, in: live) == nil {
                report.entries += 1
                note(ProjectionDifference(key: key, live: nil, rebuilt: value))
            }
            return true
        }
        return report
    }

    // MARK: Status

    /// Every projection's version, checkpoint and lag.
    public func status() throws -> [ProjectionStatus] {
        try store.read { txn in
            let head = try txn.headPosition()
            return try projections.map { projection in
                let state = try meta(projection.name, in: txn) ?? Meta()
                return ProjectionStatus(
                    name: projection.name, mode: projection.mode, version: projection.version,
                    builtVersion: state.version,
                    checkpoint: state.checkpoint, head: head, rebuildCheckpoint: state.rebuild?.checkpoint,
                    partWay: state.partial != nil)
            }
        }
    }
}
