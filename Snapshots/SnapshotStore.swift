import CampaignDomain
import EventStore
import Foundation

/// When to take a snapshot: every N events per aggregate kind.
public struct SnapshotPolicy: Sendable, Equatable {
    /// N for kinds not listed in ``every``.
    public var defaultEvery: Int
    /// N per aggregate kind (`campaign`, `segment`, `contact`, `connection`, `post`, `experiment`).
    public var every: [String: Int]

    /// Creates a policy; the default takes a snapshot every 100 events.
    public init(defaultEvery: Int = 100, every: [String: Int] = [:]) {
        self.defaultEvery = max(1, defaultEvery)
        self.every = every
    }

    /// How many events of a `kind` stream make a snapshot due: its own setting, else the default (at least 1).
    public func interval(for kind: String) -> Int { max(1, every[kind] ?? defaultEvery) }

    /// Whether a stream going from version `old` to `new` crossed a multiple of N.
    public func isDue(kind: String, from old: UInt64, to new: UInt64) -> Bool {
        let n = UInt64(interval(for: kind))
        return new / n > old / n
    }
}

/// How one aggregate's state is written into a snapshot and read back. A snapshot whose kind or
/// schema version differs from the codec's is ignored (and replaced by the next one taken).
public struct SnapshotCodec<State>: Sendable {
    /// The aggregate kind the codec is for (`campaign`, `post`, …); a snapshot of another kind is ignored.
    public var kind: String
    /// The version of the encoded shape; bump it when ``encode`` changes.
    public var schemaVersion: Int
    /// Writes a state as the JSON a snapshot stores.
    public var encode: @Sendable (State) -> JSON
    /// JSON → state, nil when it does not fit.
    public var decode: @Sendable (JSON) -> State?

    /// A codec for `kind` at `schemaVersion`, writing with `encode` and reading with `decode`.
    public init(
        kind: String, schemaVersion: Int, encode: @escaping @Sendable (State) -> JSON,
        decode: @escaping @Sendable (JSON) -> State?
    ) {
        self.kind = kind
        self.schemaVersion = schemaVersion
        self.encode = encode
        self.decode = decode
    }
}

/// The codecs of the engine's aggregates.
public enum SnapshotCodecs {
    /// Campaigns (`campaign`, schema 1): the state's full read model.
    public static let campaign = SnapshotCodec<CampaignState>(
        kind: "campaign", schemaVersion: 1, encode: { $0.snapshot }, decode: CampaignState.init(snapshot:))
    /// Segments (`segment`, schema 1): the state's full read model, rules included.
    public static let segment = SnapshotCodec<SegmentState>(
        kind: "segment", schemaVersion: 1, encode: { $0.snapshot }, decode: SegmentState.init(snapshot:))
    /// Contacts (`contact`, schema 1): the commitment and field names, never a personal value.
    public static let contact = SnapshotCodec<ContactState>(
        kind: "contact", schemaVersion: 1, encode: { $0.snapshot }, decode: ContactState.init(snapshot:))
    /// Social connections (`connection`, schema 1): the credential reference, never a token.
    public static let connection = SnapshotCodec<ConnectionState>(
        kind: "connection", schemaVersion: 1, encode: { $0.snapshot }, decode: ConnectionState.init(snapshot:))
    /// Posts (`post`, schema 1): the read model and every target's retry bookkeeping.
    public static let post = SnapshotCodec<PostState>(
        kind: "post", schemaVersion: 1, encode: { $0.snapshot }, decode: PostState.init(snapshot:))
    /// A tenant's contact schema (`schema`, schema 1): the fields it defined, with their types.
    public static let schema = SnapshotCodec<ContactSchema>(
        kind: "schema", schemaVersion: 1, encode: { $0.snapshot }, decode: ContactSchema.init(snapshot:))
    /// Experiments (`experiment`, schema 1): the definition and the counts per variant.
    public static let experiment = SnapshotCodec<ExperimentState>(
        kind: "experiment", schemaVersion: 1, encode: { $0.snapshot }, decode: ExperimentState.init(snapshot:))
}

/// A snapshot read back: the state and the stream version it was taken at.
public struct Snapshot<State> {
    /// The state at ``version``.
    public var state: State
    /// The stream version the state includes.
    public var version: UInt64
}

/// Snapshots, one per stream (the latest), in the `snapshots` table: streamId →
/// `{"kind", "schemaVersion", "version", "state"}`. Written in the same transaction as the events
/// that made them due; a snapshot that cannot be decoded is ignored, never fatal.
public final class SnapshotStore: Sendable {
    let store: EventStore
    let table: Table
    /// When to take snapshots.
    public let policy: SnapshotPolicy

    /// Opens the snapshot table.
    public init(store: EventStore, policy: SnapshotPolicy) throws {
        self.store = store
        self.policy = policy
        table = try store.table(named: "snapshots")
    }

    /// The latest usable snapshot of a stream, or nil (none, unreadable, other kind or schema).
    public func load<State>(_ streamId: String, codec: SnapshotCodec<State>) throws -> Snapshot<State>? {
        try store.read { txn in try load(streamId, codec: codec, in: txn) }
    }

    /// The latest usable snapshot, read in `txn`.
    public func load<State>(
        _ streamId: String, codec: SnapshotCodec<State>, in txn: ReadTransaction
    ) throws -> Snapshot<State>? {
        guard let bytes = try txn.value(forKey: Array(streamId.utf8), in: table), let json = try? JSON.parse(bytes),
            json["kind"]?.stringValue == codec.kind, json["schemaVersion"]?.integerValue == codec.schemaVersion,
            let version = json["version"]?.integerValue, version > 0,
            let stateJSON = json["state"], let state = codec.decode(stateJSON)
        else { return nil }
        return Snapshot(state: state, version: UInt64(version))
    }

    /// Stores a snapshot in `txn`.
    public func save<State>(
        _ streamId: String, codec: SnapshotCodec<State>, state: State, version: UInt64, in txn: WriteTransaction
    ) throws {
        try save(
            streamId, kind: codec.kind, schemaVersion: codec.schemaVersion, state: codec.encode(state),
            version: version, in: txn)
    }

    /// Stores an already encoded snapshot in `txn`.
    public func save(
        _ streamId: String, kind: String, schemaVersion: Int, state: JSON, version: UInt64, in txn: WriteTransaction
    ) throws {
        let record = JSON.object([
            "kind": .string(kind), "schemaVersion": .number(Double(schemaVersion)),
            "version": .number(Double(version)), "state": state,
        ])
        try txn.put(record.bytes, forKey: Array(streamId.utf8), in: table)
    }

    /// Queues a snapshot found due while loading for the store's writer thread and returns at once:
    /// a load never waits for LMDB's writer lock on Swift's cooperative pool. The snapshot is
    /// skipped if one at this version or later was stored meanwhile; losing it costs only a
    /// longer fold next time.
    public func saveLater<State: Sendable>(
        _ streamId: String, codec: SnapshotCodec<State>, state: State, version: UInt64
    ) {
        store.enqueueWrite { txn in
            if let stored = try? self.load(streamId, codec: codec, in: txn), stored.version >= version { return }
            try self.save(streamId, codec: codec, state: state, version: version, in: txn)
        }
    }
}
