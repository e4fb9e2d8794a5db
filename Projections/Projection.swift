import CampaignDomain
import EventStore
import Foundation
import Hashing

/// How a projection is kept current.
public enum ProjectionMode: String, Sendable {
    /// Applied in the same write transaction as the events it reads: a query right after a
    /// command sees the command's effect.
    case inline
    /// Applied afterwards by the catch-up runner, in batches, each batch in one transaction with
    /// the projection's checkpoint, so it resumes after a crash and never skips or repeats an event.
    case catchUp
}

/// An event as a projection sees it: the envelope, with the payload parsed and upcast to the
/// current schema on first use — a projection that skips an event by its type never pays for
/// the parse (most projections skip most events).
public final class ProjectedEvent {
    /// The stored envelope. Its `previousHash` and `hash` may be empty (the runner reads the log
    /// without them): a projection folds events, not the chain.
    public let envelope: RecordedEvent

    private let knownPayload: JSON?
    private var parsedPayload: JSON?

    /// The payload, upcast: the writer's own value when it just appended the event, else parsed
    /// from the stored bytes on first use.
    public var payload: JSON {
        if let known = knownPayload ?? parsedPayload { return known }
        let parsed = (try? JSON.parse(envelope.payload)) ?? .null
        let upcast = Upcasters.upcast(type: envelope.type, schemaVersion: envelope.schemaVersion, payload: parsed)
        parsedPayload = upcast
        return upcast
    }

    /// The payload's member `name`, as `payload[name]` gives it; read from the stored bytes alone
    /// (``JSON/member(_:of:)``) when the payload is not parsed yet and no upcaster lifts it, for a
    /// projection that needs one field of an event it does not otherwise look into.
    public func payloadMember(_ name: String) -> JSON? {
        if let known = knownPayload ?? parsedPayload { return known[name] }
        guard !Upcasters.lifts(type: envelope.type, from: envelope.schemaVersion) else { return payload[name] }
        return JSON.member(name, of: envelope.payload)
    }

    /// The aggregate's state after this event, when the writer folded it already (the last event
    /// of the command's own stream); nil in rebuilds and catch-up, where a projection folds itself.
    public let stateAfter: (any Sendable)?

    /// A stored event as rebuilds and catch-up hand it over: the payload is parsed when first read, and no state
    /// comes with it.
    public init(_ envelope: RecordedEvent) {
        self.envelope = envelope
        knownPayload = nil
        stateAfter = nil
    }

    /// Wraps an event this process just appended, with what it already knows about it.
    public init(_ envelope: RecordedEvent, known: KnownEvent) {
        self.envelope = envelope
        knownPayload = known.payload
        stateAfter = known.stateAfter
    }

    /// The event as an aggregate folds it.
    public var record: EventRecord {
        EventRecord(
            type: envelope.type, payload: payload, occurredAt: envelope.occurredAt, version: envelope.streamVersion)
    }
}

/// What a writer knows about an event it has just appended, so inline projections neither parse
/// the payload it encoded nor fold the state it folded (STYLE.md 10: never re-parse what this
/// process just wrote).
public struct KnownEvent {
    /// The payload, at its type's current schema version (so no upcaster applies).
    public var payload: JSON
    /// The aggregate's state after the event, if the writer folded it.
    public var stateAfter: (any Sendable)?

    /// Describes an appended event.
    public init(payload: JSON, stateAfter: (any Sendable)? = nil) {
        self.payload = payload
        self.stateAfter = stateAfter
    }
}

/// A read model folded from the log into a key-value table of its own.
///
/// A projection writes only through the ``ProjectionTable`` it is given, so the runner can build it
/// into a scratch table and switch atomically. Bump ``version`` whenever ``apply(_:to:)`` changes
/// what it writes: the runner then rebuilds the projection when the engine opens.
public protocol Projection: Sendable {
    /// A stable name (`campaign-board`).
    var name: String { get }
    /// The version of what it writes.
    var version: Int { get }
    /// Inline or catch-up.
    var mode: ProjectionMode { get }
    /// The event types `apply` reads, or nil for every type. `apply` must leave the table alone for
    /// any other type: a rebuild's fold may not hand it those events at all (and so need not decode
    /// them). Nil by default. The runner reads it once, when it is made.
    var eventTypes: Set<String>? { get }
    /// Whether `apply` (and a ``FoldedRebuild``'s fold) read events' payloads: false for a
    /// projection of envelopes alone, whose events then come with empty payloads in a catch-up, and
    /// in a rebuild's pass when no other fold of the pass reads them. True by default.
    var readsPayloads: Bool { get }
    /// Folds one event into the table.
    func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws
}

extension Projection {
    /// Nil: every event type.
    public var eventTypes: Set<String>? { nil }
    /// True: `apply` reads payloads.
    public var readsPayloads: Bool { true }
}

/// A projection one of whose events can cost more than a writer job may take (a segment's rule
/// change re-evaluates every contact of its tenant) and so applies such an event in parts.
///
/// The runner's catch-up and rebuild batches store the returned resume point with the checkpoint
/// (or the rebuild's), in the part's transaction, and pass it back in the next transaction; no
/// other event reaches that table in between. ``Projection/apply(_:to:)`` must still apply a whole
/// event at once (verify and the event-by-event folds use it).
public protocol PartialApply: Projection {
    /// Applies `event`, or what is left of it after `resume`, until it is done or `shouldStop`
    /// returns true; `shouldStop` is asked only after some work, so every call moves.
    /// - Returns: where to resume (at most 65,535 bytes, opaque to the runner), or nil once the
    ///   event is wholly applied.
    func apply(
        _ event: ProjectedEvent, to table: ProjectionTable, resumingAfter resume: [UInt8]?, shouldStop: () -> Bool
    ) throws -> [UInt8]?
}

/// Composite keys: parts joined by a 0x00 byte (parts never contain one), so a key prefix
/// selects a range; integers are big-endian so byte order is numeric order.
public enum Key {
    /// The parts' UTF-8 bytes joined by 0x00, so a key's leading parts select a range of keys.
    public static func make(_ parts: [String]) -> [UInt8] {
        // Sized once: appended part by part, the array grew (and was copied) several times a key.
        var key = [UInt8]()
        key.reserveCapacity(parts.reduce(parts.count) { $0 + $1.utf8.count })
        for (index, part) in parts.enumerated() {
            if index > 0 { key.append(0) }
            key.append(contentsOf: part.utf8)
        }
        return key
    }

    /// Joins string parts and ends with a separator, to select everything under them.
    public static func prefix(_ parts: [String]) -> [UInt8] { make(parts) + [0] }

    /// `value` as 8 big-endian bytes, so keys order numerically.
    public static func u64(_ value: UInt64) -> [UInt8] {
        withUnsafeBytes(of: value.bigEndian) { Array($0) }
    }

    /// Appends `value` to `bytes` as a big-endian UInt64 (no array of its own).
    public static func append(_ value: UInt64, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    /// Reads a big-endian UInt64 from 8 bytes.
    public static func readU64<C: Collection>(_ bytes: C) -> UInt64 where C.Element == UInt8 {
        bytes.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    /// Milliseconds since 1970 as a big-endian UInt64 (0 for earlier times).
    public static func time(_ date: Date) -> [UInt8] { u64(milliseconds(date)) }

    /// Milliseconds since 1970, as ``time(_:)`` writes them (0 for earlier times).
    public static func milliseconds(_ date: Date) -> UInt64 {
        UInt64(max(0, (date.timeIntervalSince1970 * 1000).rounded()))
    }

    /// Appends one part and the separator after it, as ``prefix(_:)`` ends each part.
    public static func appendPart(_ part: String, to key: inout [UInt8]) {
        key.append(contentsOf: part.utf8)
        key.append(0)
    }

    /// The parts of a key made with ``make(_:)``.
    public static func split(_ key: [UInt8]) -> [String] {
        key.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// The table a projection writes while applying events (the live one, or a scratch one during a
/// rebuild, or rows in memory during a folded rebuild), plus read access to tables kept beside the
/// log (personal data).
public struct ProjectionTable {
    private enum Storage {
        case stored(WriteTransaction, Table, personalData: Table)
        case memory(MemoryRows)
    }

    private let storage: Storage
    /// What a projection derives from its rows once and reuses for the rest of the batch (compiled
    /// segment rules, an experiment's decoded state): it lives for one write transaction (an inline
    /// projection's, every request a group commit puts in it) and is never stored.
    public let memo: BatchMemo

    init(txn: WriteTransaction, table: Table, personalData: Table, memo: BatchMemo = BatchMemo()) {
        storage = .stored(txn, table, personalData: personalData)
        self.memo = memo
    }

    /// A table whose rows live in `rows` (a folded rebuild's), not in LMDB.
    init(memory rows: MemoryRows) {
        storage = .memory(rows)
        memo = BatchMemo()
    }

    /// The value under `key`.
    public func get(_ key: [UInt8]) throws -> [UInt8]? {
        switch storage {
        case let .stored(txn, table, _): return try txn.value(forKey: key, in: table)
        case let .memory(rows): return rows.values[ByteKey(key)]
        }
    }

    /// The value under `key`, parsed as JSON.
    public func json(_ key: [UInt8]) throws -> JSON? { try get(key).flatMap { try? JSON.parse($0) } }

    /// Stores `value` under `key`.
    public func put(_ key: [UInt8], _ value: [UInt8] = []) throws {
        switch storage {
        case let .stored(txn, table, _): try txn.put(value, forKey: key, in: table)
        case let .memory(rows): rows.values[ByteKey(key)] = value
        }
    }

    /// Stores JSON under `key`.
    public func put(_ key: [UInt8], json: JSON) throws { try put(key, json.bytes) }

    /// Removes the row under `key`, if there is one (no row is not an error).
    public func delete(_ key: [UInt8]) throws {
        switch storage {
        case let .stored(txn, table, _): _ = try txn.delete(key: key, in: table)
        case let .memory(rows): rows.values[ByteKey(key)] = nil
        }
    }

    /// Adds `delta` to a counter kept as a big-endian UInt64 (removed when it reaches 0).
    public func add(_ delta: Int, to key: [UInt8]) throws {
        let current = Int(try get(key).map { Key.readU64($0) } ?? 0)
        let next = max(0, current + delta)
        if next == 0 { try delete(key) } else { try put(key, Key.u64(UInt64(next))) }
    }

    /// Visits the keys that start with `prefix`, in order, while `body` returns true.
    /// - Throws: ``MemoryRows/UnavailableInMemory`` in memory: a projection that scans while
    ///   applying implements its own fold.
    public func scan(_ prefix: [UInt8], _ body: (_ key: [UInt8], _ value: [UInt8]) throws -> Bool) throws {
        try scan(prefix, after: nil, body)
    }

    /// Visits the keys that start with `prefix` and sort after `after` (every one when nil), in
    /// order, while `body` returns true.
    /// - Throws: ``MemoryRows/UnavailableInMemory`` in memory, as ``scan(_:_:)``.
    public func scan(
        _ prefix: [UInt8], after: [UInt8]?, _ body: (_ key: [UInt8], _ value: [UInt8]) throws -> Bool
    ) throws {
        guard case let .stored(txn, table, _) = storage else { throw MemoryRows.UnavailableInMemory() }
        // The least key greater than `after` is `after` ‖ 0x00.
        var start = prefix
        if let after, prefix.lexicographicallyPrecedes(after + [0]) { start = after + [0] }
        try txn.forEach(in: table, from: start) { key, value in
            guard key.starts(with: prefix) else { return false }
            return try body(key, value)
        }
    }

    /// The current personal values of a contact (empty once erased).
    /// - Throws: ``MemoryRows/UnavailableInMemory`` in memory, where a fold has no transaction: a
    ///   projection that reads personal values while applying implements its own fold.
    public func contactValues(tenant: String, contactId: String) throws -> JSONObject {
        guard case let .stored(txn, _, personalData) = storage else { throw MemoryRows.UnavailableInMemory() }
        return try PersonalData.values(tenant: tenant, contactId: contactId, table: personalData, in: txn)
    }
}

/// A projection table's rows held in memory while a folded rebuild applies the log to them.
///
/// Invariant that makes `@unchecked Sendable` safe: one fold owns it, on one thread at a time.
public final class MemoryRows: @unchecked Sendable {
    /// Thrown when a projection folded in memory scans its table or reads personal values.
    public struct UnavailableInMemory: Error {}

    /// The rows, by key.
    var values: [ByteKey: [UInt8]] = [:]

    /// An empty set of rows, for a fold run without a database.
    public init() {}

    /// Moves the rows out in key order (bytes compared unsigned, as LMDB orders them), leaving none:
    /// the rows are sorted last key first and each is freed as it is copied (the packed buffer is
    /// sized once), so they are never held twice over.
    public func takeSorted() -> SortedRows {
        var entries = values.map { (key: $0.key.bytes, value: $0.value) }
        values = [:]
        entries.sort { ByteOrder.precedes($1.key, $0.key) }
        var rows = SortedRows(
            reservingBytes: entries.reduce(0) { $0 + $1.key.count + $1.value.count }, rows: entries.count)
        while let last = entries.popLast() { rows.append(key: last.key, value: last.value) }
        return rows
    }
}

/// The fold of a projection whose `apply` needs only `get`, `put`, `delete`, `add` and `json` (a
/// `scan` or a personal-data read throws in memory): its own `apply`, run against rows in memory, so
/// the fold is the live fold by construction.
public final class InMemoryFold: RebuildFold {
    private let projection: any Projection
    private let rows = MemoryRows()
    private let table: ProjectionTable

    /// A fold of `projection`'s events.
    public init(_ projection: any Projection) {
        self.projection = projection
        table = ProjectionTable(memory: rows)
    }

    /// Applies the event to the rows in memory.
    public func fold(_ event: ProjectedEvent) throws { try projection.apply(event, to: table) }

    /// The rows, sorted by key.
    public func rows(_ personalData: PersonalDataReader) throws -> SortedRows { rows.takeSorted() }
}

/// A read-only view of one projection's live table.
public struct ProjectionReader {
    let txn: ReadTransaction
    let table: Table

    /// The value under `key`.
    public func get(_ key: [UInt8]) throws -> [UInt8]? { try txn.value(forKey: key, in: table) }

    /// The value under `key`, parsed as JSON.
    public func json(_ key: [UInt8]) throws -> JSON? { try get(key).flatMap { try? JSON.parse($0) } }

    /// A counter kept with ``ProjectionTable/add(_:to:)``.
    public func count(_ key: [UInt8]) throws -> Int { Int(try get(key).map { Key.readU64($0) } ?? 0) }

    /// Visits the keys that start with `prefix`, in order, after `after` (exclusive) when given,
    /// while `body` returns true.
    public func scan(
        _ prefix: [UInt8], after: [UInt8]? = nil, _ body: (_ key: [UInt8], _ value: [UInt8]) throws -> Bool
    ) throws {
        try txn.forEach(in: table, from: after.map { $0 + [0] } ?? prefix) { key, value in
            guard key.starts(with: prefix) else { return false }
            return try body(key, value)
        }
    }

    /// The last component of each key under `Key.prefix(parts)`, in key order: the ids a marker
    /// row such as `u ‖ tenant ‖ segmentId ‖ campaignId` lists.
    public func names(under parts: [String]) throws -> [String] {
        var names = [String]()
        let prefix = Key.prefix(parts)
        try scan(prefix) { key, _ in
            names.append(String(decoding: key.dropFirst(prefix.count), as: UTF8.self))
            return true
        }
        return names
    }
}

/// Personal contact values kept beside the log (`contact-values`: tenant ‖ 0 ‖ contactId →
/// `{"salt", "values"}`): written with the contact's events, deleted on erasure, never hashed.
public enum PersonalData {
    /// The LMDB table the values live in, `contact-values`, outside every projection's tables.
    public static let tableName = "contact-values"

    /// A contact's key in the table: tenant ‖ 0x00 ‖ contactId.
    public static func key(tenant: String, contactId: String) -> [UInt8] { Key.make([tenant, contactId]) }

    /// A contact's values, or an empty set.
    public static func values(
        tenant: String, contactId: String, table: Table, in txn: ReadTransaction
    ) throws -> JSONObject {
        guard let bytes = try txn.value(forKey: key(tenant: tenant, contactId: contactId), in: table) else {
            return [:]
        }
        // Only the values are made (the salt is checked, not kept): as a full parse would give them.
        return JSON.member("values", of: bytes)?.objectValue ?? [:]
    }

    /// The selection of the values named `fields`, for ``PersonalDataReader/values(stored:only:into:)``.
    public static func selection(_ fields: some Collection<String>) -> JSONSelection {
        JSONSelection(fields, of: "values")
    }

    /// A contact's kept values and the salt of their commitment, or nil when none are kept.
    public static func stored(
        tenant: String, contactId: String, table: Table, in txn: ReadTransaction
    ) throws -> (salt: String, values: JSONObject)? {
        guard let bytes = try txn.value(forKey: key(tenant: tenant, contactId: contactId), in: table) else {
            return nil
        }
        guard let stored = try? JSON.parse(bytes) else { return ("", [:]) }
        return (stored["salt"]?.stringValue ?? "", stored["values"]?.objectValue ?? [:])
    }

    /// Stores or erases a contact's values.
    public static func write(
        _ change: PersonalDataChange, tenant: String, table: Table, in txn: WriteTransaction
    ) throws {
        let key = key(tenant: tenant, contactId: change.contactId)
        if let values = change.values {
            try txn.put(
                JSON.object(["salt": .string(change.salt ?? ""), "values": .object(values)]).bytes, forKey: key,
                in: table)
        } else {
            try txn.delete(key: key, in: table)
        }
    }
}

/// Values a projection derives once per batch, by key. A projection that changes what a value is
/// derived from removes it (or replaces it) in the same call.
public final class BatchMemo {
    private var values: [String: Any] = [:]

    /// The value under `key`, if any.
    public subscript(key: String) -> Any? {
        get { values[key] }
        set { values[key] = newValue }
    }
}
