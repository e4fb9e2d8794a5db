import Foundation

/// An event a decision produces: a type and a JSON payload. The engine adds the envelope.
public struct DomainEvent: Sendable, Equatable {
    /// The event type, such as `campaign.created`.
    public var type: String
    /// What the event says: a JSON object whose members its type defines (stored as the record's payload).
    public var payload: JSON
    /// The payload's schema version.
    public var schemaVersion: UInt16

    /// Creates an event at its type's current schema version.
    public init(_ type: String, _ payload: JSONObject, schemaVersion: UInt16? = nil) {
        self.type = type
        self.payload = .object(payload)
        self.schemaVersion = schemaVersion ?? Upcasters.currentVersion(of: type)
    }
}

/// An event as an aggregate folds it: what it says, when, and the stream version it made.
public struct EventRecord: Sendable, Equatable {
    /// The event type, such as `campaign.scheduled`: one raw kind of the aggregate's event enum.
    public var type: String
    /// The payload, already upcast to the current schema.
    public var payload: JSON
    /// When it happened: the envelope's `occurredAt`, the engine clock's time when its command was decided.
    public var occurredAt: Date
    /// The stream version after it.
    public var version: UInt64

    /// A record of an event of `type` with its upcast `payload`, at `occurredAt`, that made the stream `version`.
    public init(type: String, payload: JSON, occurredAt: Date, version: UInt64) {
        self.type = type
        self.payload = payload
        self.occurredAt = occurredAt
        self.version = version
    }
}

/// A unique value a decision takes or gives back (a campaign name in a tenant), with what to
/// say when someone else holds it.
public struct Reservation: Sendable, Equatable {
    /// The key, namespaced by kind and tenant.
    public var key: String
    /// The owner (the stream id).
    public var owner: String
    /// The pointer to report on a clash.
    public var pointer: String
    /// The message to report on a clash.
    public var message: String

    /// A reservation of `key` for `owner`; a clash answers `DUPLICATE_RESOURCE` with `message` at `pointer`.
    public init(key: String, owner: String, pointer: String, message: String) {
        self.key = key
        self.owner = owner
        self.pointer = pointer
        self.message = message
    }
}

/// Personal contact values to store beside the log (not in hashed events), or erase.
public struct PersonalDataChange: Sendable, Equatable {
    /// The contact's id (`ctc_…`) in the decision's tenant.
    public var contactId: String
    /// The full attribute set after the change; nil erases.
    public var values: JSONObject?
    /// The salt mixed into the commitment event (16 random bytes, hex).
    public var salt: String?

    /// A change to a contact's stored values: `values` nil erases them; `salt` is the commitment's.
    public init(contactId: String, values: JSONObject?, salt: String?) {
        self.contactId = contactId
        self.values = values
        self.salt = salt
    }
}

/// What `decide` returns: the events to append and what goes with them in the same transaction.
public struct Decision: Sendable, Equatable {
    /// The events to append to the aggregate's stream, in order; none when the command changes nothing.
    public var events: [DomainEvent]
    /// Unique values to take.
    public var reservations: [Reservation]
    /// Unique values to release.
    public var releases: [Reservation]
    /// Contact values to write or erase beside the log, in the same transaction (never in a hashed event).
    public var personalData: [PersonalDataChange]

    /// A decision to append `events`, take `reservations`, give back `releases` and write `personalData`, all in
    /// one transaction.
    public init(
        events: [DomainEvent], reservations: [Reservation] = [], releases: [Reservation] = [],
        personalData: [PersonalDataChange] = []
    ) {
        self.events = events
        self.reservations = reservations
        self.releases = releases
        self.personalData = personalData
    }
}

/// Everything `decide` may know beyond the aggregate's own state. The engine loads it; the
/// domain never reads a clock, a database or a random source itself.
public struct DecisionContext: Sendable {
    /// The engine clock's time.
    public var now: Date
    /// The principal's tenant.
    public var tenant: String
    /// Segments the command refers to, by id (absent = not found in this tenant).
    public var segments: [String: SegmentState]
    /// The tenant's contact schema.
    public var schema: ContactSchema
    /// Campaigns in scheduled or active state that use the segment a command is about.
    public var campaignsUsingSegment: [String]
    /// 16 random bytes, hex (a salt for contact commitments).
    public var salt: String
    /// Social connections the command refers to, by id.
    public var connections: [String: ConnectionState] = [:]
    /// Campaigns the command refers to, by id.
    public var campaigns: [String: CampaignState] = [:]
    /// For an exposure or a conversion: whether this contact's exposure (or conversion) is counted already.
    public var alreadyCounted = false
    /// For a conversion: the variant the contact was exposed to, if it was.
    public var exposedVariant: String?
    /// For an experiment's start, the experiments running on its campaign now; for a campaign's
    /// move to another channel, those running on the campaign.
    public var runningExperiments: [String] = []

    /// A context at `now` for `tenant`; what is not given is empty (no segments loaded, the built-in schema,
    /// no campaigns using a segment, an all-zero salt).
    public init(
        now: Date, tenant: String, segments: [String: SegmentState] = [:], schema: ContactSchema = ContactSchema(),
        campaignsUsingSegment: [String] = [], salt: String = "00000000000000000000000000000000"
    ) {
        self.now = now
        self.tenant = tenant
        self.segments = segments
        self.schema = schema
        self.campaignsUsingSegment = campaignsUsingSegment
        self.salt = salt
    }
}

/// An aggregate: the consistency boundary one stream holds. `decide` checks a command against
/// the state folded so far and returns the events to append; `evolve` folds one event. Both are
/// pure: the engine loads the state and the ``DecisionContext``, and appends the decision.
public protocol Aggregate {
    /// The state folded from the aggregate's events (nil before its first event).
    associatedtype State: Sendable
    /// The commands the aggregate decides.
    associatedtype Command: Sendable
    /// The events it folds.
    associatedtype Event: Sendable

    /// Decides a command against the current state.
    /// - Throws: the catalogue error for an illegal transition or invalid input.
    static func decide(_ command: Command, state: State?, context: DecisionContext) throws(CampaignError) -> Decision

    /// Folds one event, which happened at `time` and made the stream's version `version`.
    static func evolve(_ state: State?, _ event: Event, at time: Date, version: UInt64) -> State?
}
