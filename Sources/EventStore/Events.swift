import Foundation

/// What an append expects of a stream's current version (optimistic concurrency).
public enum ExpectedVersion: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// No check.
    case any
    /// The stream must not exist yet.
    case noStream
    /// The stream's current version must be exactly this (≥ 1).
    case exact(UInt64)

    /// Whether a stream at `current` (0 = none) satisfies this expectation.
    public func admits(_ current: UInt64) -> Bool {
        switch self {
        case .any: return true
        case .noStream: return current == 0
        case let .exact(version): return current == version
        }
    }

    /// `any`, `noStream` or the number.
    public var description: String {
        switch self {
        case .any: return "any"
        case .noStream: return "noStream"
        case let .exact(version): return String(version)
        }
    }
}

/// An event about to be appended: everything but the position, version and hashes, which the
/// store assigns.
public struct NewEvent: Sendable, Equatable {
    /// The event type, for example `campaign.created`.
    public var type: String
    /// The payload's schema version, read by upcasters.
    public var schemaVersion: UInt16
    /// When the event happened, by the engine's clock; stored to the millisecond.
    public var occurredAt: Date
    /// The tenant whose data this is.
    public var tenant: String
    /// Who caused it (the principal's subject, or `system`).
    public var actor: String
    /// The correlation id: the request that caused it.
    public var requestId: String
    /// The id of the message that directly caused it (the command's id).
    public var causationId: String
    /// The payload as JSON bytes.
    public var payload: [UInt8]

    /// Creates an event to append.
    public init(
        type: String, schemaVersion: UInt16 = 1, occurredAt: Date, tenant: String, actor: String,
        requestId: String, causationId: String, payload: [UInt8]
    ) {
        self.type = type
        self.schemaVersion = schemaVersion
        self.occurredAt = occurredAt
        self.tenant = tenant
        self.actor = actor
        self.requestId = requestId
        self.causationId = causationId
        self.payload = payload
    }
}

/// An event as stored: the envelope of SPEC.md §3.
public struct RecordedEvent: Sendable, Equatable {
    /// The global position: dense, from 1.
    public var position: UInt64
    /// The stream the event belongs to.
    public var streamId: String
    /// The version of the stream after this event: dense per stream, from 1.
    public var streamVersion: UInt64
    /// The event type, such as `campaign.created`, as appended.
    public var type: String
    /// The payload's schema version.
    public var schemaVersion: UInt16
    /// When it happened, to the millisecond.
    public var occurredAt: Date
    /// The tenant whose data the event is (the stream id's prefix in the engine's streams).
    public var tenant: String
    /// Who caused it: the principal's subject, or the name the engine's own work appends under.
    public var actor: String
    /// The correlation id: the request that caused it (one request's events share it).
    public var requestId: String
    /// The causation id: the message that directly caused it (`requestId#command` in the engine).
    public var causationId: String
    /// The payload, canonical JSON bytes as hashed into the record.
    public var payload: [UInt8]
    /// The hash of the record before this one (32 zero bytes for position 1).
    public var previousHash: [UInt8]
    /// SHA-256(previousHash ‖ canonical bytes).
    public var hash: [UInt8]
}

/// One stream's part of an append request.
public struct StreamAppend: Sendable {
    /// The stream to append to (1–400 UTF-8 bytes, no NUL).
    public var streamId: String
    /// The version the stream must be at.
    public var expectedVersion: ExpectedVersion
    /// The events to append to the stream, in order; they take consecutive versions.
    public var events: [NewEvent]

    /// Creates a stream append.
    public init(streamId: String, expectedVersion: ExpectedVersion, events: [NewEvent]) {
        self.streamId = streamId
        self.expectedVersion = expectedVersion
        self.events = events
    }
}

/// A unique value (for example a campaign name within a tenant) and who holds it.
public struct UniqueClaim: Sendable, Equatable {
    /// The value's key, including its namespace, for example `campaign-name/acme/spring launch`.
    public var key: String
    /// The owner, usually a stream id.
    public var owner: String

    /// A claim of `key` for `owner`; the append fails with `uniqueValueTaken` when another owner holds it.
    public init(key: String, owner: String) {
        self.key = key
        self.owner = owner
    }
}

/// The idempotency part of a request: the key, a fingerprint of the request, and the result to
/// store so that a retry gets the first answer back.
public struct IdempotencyClaim: Sendable {
    /// The scoped key (the engine prefixes the tenant).
    public var key: String
    /// SHA-256 of the canonical request; a different fingerprint under the same key is a conflict.
    public var fingerprint: [UInt8]
    /// Builds the bytes stored as the result once positions are known.
    public var result: @Sendable (AppendReceipt) -> [UInt8]
    /// Replaces the stored result instead of replaying it: a command that takes several
    /// transactions (a publish) stores a pending marker first and its final answer last. The
    /// fingerprint must still match.
    public var replacesStoredResult: Bool
    /// When the request was made, stored with the record: ``EventStore/pruneIdempotency(before:now:batch:)``
    /// deletes records by it.
    public var recordedAt: Date

    /// Creates an idempotency claim.
    public init(
        key: String, fingerprint: [UInt8], replacesStoredResult: Bool = false, recordedAt: Date = Date(),
        result: @escaping @Sendable (AppendReceipt) -> [UInt8]
    ) {
        self.key = key
        self.fingerprint = fingerprint
        self.replacesStoredResult = replacesStoredResult
        self.recordedAt = recordedAt
        self.result = result
    }
}

/// Everything one command writes, committed together or not at all.
public struct AppendRequest: Sendable {
    /// The streams appended to (often one; an import may touch many).
    public var streams: [StreamAppend]
    /// Unique values to take; taking one held by another owner fails the request.
    public var claims: [UniqueClaim]
    /// Unique values to give back (only released when held by the named owner).
    public var releases: [UniqueClaim]
    /// The idempotency record to check and write, if any.
    public var idempotency: IdempotencyClaim?
    /// Checks run inside the write transaction, after the version checks and before anything is
    /// written: a rule that spans aggregates (a segment no scheduled campaign uses; a stream read
    /// while deciding is still at the version read) holds at commit time. Throwing rejects this
    /// request alone, with the thrown error.
    public var preconditions: [@Sendable (ReadTransaction) throws -> Void]
    /// Runs inside the write transaction after the events are written: inline projections,
    /// snapshots, side tables. Throwing rolls back this request only.
    public var afterAppend: (@Sendable (WriteTransaction, AppendReceipt) throws -> Void)?

    /// Creates a request.
    public init(
        streams: [StreamAppend],
        claims: [UniqueClaim] = [],
        releases: [UniqueClaim] = [],
        idempotency: IdempotencyClaim? = nil,
        preconditions: [@Sendable (ReadTransaction) throws -> Void] = [],
        afterAppend: (@Sendable (WriteTransaction, AppendReceipt) throws -> Void)? = nil
    ) {
        self.streams = streams
        self.claims = claims
        self.releases = releases
        self.idempotency = idempotency
        self.preconditions = preconditions
        self.afterAppend = afterAppend
    }
}

/// What a committed request wrote.
public struct AppendReceipt: Sendable, Equatable {
    /// The events as stored, with positions and hashes.
    public var events: [RecordedEvent]
    /// Each touched stream's version after the append.
    public var streamVersions: [String: UInt64]
}

/// The answer to an append.
public enum AppendOutcome: Sendable, Equatable {
    /// The request was committed.
    case appended(AppendReceipt)
    /// The idempotency key was seen before with the same request: nothing was written, and this is
    /// the result stored the first time.
    case replayed(storedResult: [UInt8])
}
