import CampaignDomain
import CampaignProjections
import EventStore
import Foundation
import Signing
import Synchronization

/// When the engine signs a checkpoint of its own tree by itself: after `events` new events or
/// `interval` seconds with new events, whichever comes first. The key is the operator's, read by the
/// host from a file it names; the engine never stores it.
public struct CheckpointSchedule: Sendable {
    /// The operator's signer key.
    public var key: NoteKey
    /// The checkpoints' origin line; nil for `campaign-engine/<store id>`.
    public var origin: String?
    /// Events after which a checkpoint is due.
    public var events: UInt64
    /// Seconds after which a checkpoint is due when there are new events.
    public var interval: TimeInterval

    /// A schedule with the given key (defaults: every 10,000 events or 60 s).
    public init(key: NoteKey, origin: String? = nil, events: UInt64 = 10_000, interval: TimeInterval = 60) {
        self.key = key
        self.origin = origin
        self.events = max(1, events)
        self.interval = max(0.05, interval)
    }

    /// Why the schedule could never sign, or nil: it needs a signer key, and an origin of one line.
    var problem: String? {
        guard key.privateKey != nil else { return "a signer key (PRIVATE+KEY+…) is needed, not a verifier key" }
        return origin.flatMap(TreeCheckpoint.originProblem)
    }
}

/// Signed checkpoints of the log's Merkle tree, and the audit of contact commitments.
public enum Audit {
    /// The origin line of this store's checkpoints unless told otherwise.
    public static func defaultOrigin(storeId: String) -> String { "campaign-engine/\(storeId)" }

    /// Signs the tree as it is now with `key`, keeps the checkpoint in the store (so the change feed
    /// carries it) and returns it. An empty log has nothing to vouch for and is refused.
    /// - Throws: ``CampaignError`` `VALIDATION_ERROR` for an empty log, a verifier-only key or an origin
    ///   that is not one line.
    public static func checkpoint(_ store: EventStore, key: NoteKey, origin: String? = nil) async throws -> SignedNote {
        guard key.privateKey != nil else {
            throw CampaignError(.validationError, "a checkpoint is signed with a signer key (PRIVATE+KEY+…)")
        }
        if let origin, let problem = TreeCheckpoint.originProblem(origin) {
            throw CampaignError(.validationError, problem)
        }
        let head = try store.treeHead()
        guard head.size > 0 else { throw CampaignError(.validationError, "the log is empty: nothing to checkpoint") }
        let storeId = try store.storeId()
        let body = TreeCheckpoint(
            origin: origin ?? defaultOrigin(storeId: storeId), size: head.size, rootHash: head.rootHash)
        let note = try SignedNote(signing: body.text, with: key)
        try await store.keepCheckpoint(StoredCheckpoint(size: head.size, note: note.serialized))
        return note
    }

    /// A kept checkpoint as a CloudEvent (`type` `audit.checkpoint`), which the change feed sends
    /// right after the event at the checkpoint's tree size.
    public static func cloudEvent(_ checkpoint: StoredCheckpoint, storeId: String) -> JSON {
        .object([
            "specversion": .string(CampaignEngine.cloudEventsVersion),
            "id": .string("\(storeId)-checkpoint-\(checkpoint.size)"),
            "source": .string("urn:campaign-engine:\(storeId)"),
            "type": .string("audit.checkpoint"),
            "subject": .string("tree"),
            "sequence": .string(CampaignEngine.sequence(checkpoint.size)),
            "datacontenttype": .string("text/plain"),
            "data": .string(checkpoint.note),
        ])
    }

    /// One contact whose stored values do not match what its events committed to.
    public struct ContactProblem: Sendable, Equatable {
        /// The tenant the contact belongs to.
        public var tenant: String
        /// The contact's id (`ctc_…`) in that tenant.
        public var contactId: String
        /// What is wrong, in a sentence.
        public var problem: String
    }

    /// The outcome of checking every contact's commitment.
    public struct ContactReport: Sendable, Equatable {
        /// Live contacts whose values were checked.
        public var live = 0
        /// Erased contacts (expected to have no values).
        public var erased = 0
        /// Rows of kept values that belong to no contact's stream (each is also a problem).
        public var orphaned = 0
        /// The contacts that do not match, in stream order.
        public var problems: [ContactProblem] = []
    }

    /// Recomputes each live contact's commitment, SHA-256(salt ‖ canonical JSON of its values), from
    /// the values and salt kept in `contact-values`, and compares it with the commitment of the
    /// contact's last event; an erased contact must have no values kept, and no values may be kept
    /// for a contact the log has no events of (a row under another tenant, or left behind). States
    /// are folded from the log itself (never from snapshots or caches).
    public static func verifyContacts(_ store: EventStore) throws -> ContactReport {
        let table = try store.table(named: PersonalData.tableName)
        var contacts = [(tenant: String, id: String, streamId: String)]()
        try store.forEachStream { streamId, _ in
            if let colon = streamId.lastIndex(of: ":"), streamId[streamId.index(after: colon)...].hasPrefix("ctc_") {
                contacts.append(
                    (String(streamId[..<colon]), String(streamId[streamId.index(after: colon)...]), streamId))
            }
            return true
        }
        var report = ContactReport()
        for contact in contacts {
            let state: ContactState? = try CampaignEngine.fold(
                contact.streamId, in: store, asOf: .position(.max), Contact.evolve)
            let kept = try store.read {
                try PersonalData.stored(tenant: contact.tenant, contactId: contact.id, table: table, in: $0)
            }
            func problem(_ text: String) {
                report.problems.append(ContactProblem(tenant: contact.tenant, contactId: contact.id, problem: text))
            }
            switch state?.status {
            case .active?:
                report.live += 1
                guard let kept else {
                    problem("its values are missing")
                    continue
                }
                if Contact.commitment(values: kept.values, salt: kept.salt) != state?.commitment {
                    problem("its stored values do not match the commitment of its last event")
                }
            case .erased?:
                report.erased += 1
                if kept != nil { problem("it was erased, but values are still kept") }
            case nil:
                if kept != nil { problem("values are kept, but its stream has no contact events") }
            }
        }
        // Every kept row must belong to a contact stream seen above.
        let known = Set(contacts.map { PersonalData.key(tenant: $0.tenant, contactId: $0.id) })
        try store.read { txn in
            try txn.forEach(in: table) { key, _ in
                guard !known.contains(key) else { return true }
                let parts = Key.split(key)
                report.orphaned += 1
                report.problems.append(
                    ContactProblem(
                        tenant: parts.first ?? "", contactId: parts.dropFirst().joined(),
                        problem: "values are kept for a contact the log has no events of"))
                return true
            }
        }
        return report
    }
}

/// Signs checkpoints on a ``CheckpointSchedule`` while the engine is open.
final class Checkpointer: Sendable {
    private let task: Mutex<Task<Void, Never>?> = Mutex(nil)

    init(store: EventStore, schedule: CheckpointSchedule) {
        // The store is held only while a turn uses it, so an engine dropped without `close()` still
        // closes its store, and the task ends.
        let loop = Task.detached { [weak store] in
            var lastSize = (try? store?.keptCheckpoints().last?.size) ?? 0
            var lastTime = Date()
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: 100_000_000)
                guard let store else { return }
                guard let head = try? store.head().position, head > lastSize else { continue }
                guard head - lastSize >= schedule.events || Date().timeIntervalSince(lastTime) >= schedule.interval
                else { continue }
                if let note = try? await Audit.checkpoint(store, key: schedule.key, origin: schedule.origin),
                    let size = try? TreeCheckpoint(text: note.text).size
                {
                    lastSize = size
                    lastTime = Date()
                }
            }
        }
        task.withLock { $0 = loop }
    }

    /// Stops signing (waits for nothing: a checkpoint under way either commits or is dropped).
    func stop() { task.withLock { $0?.cancel() } }
}
