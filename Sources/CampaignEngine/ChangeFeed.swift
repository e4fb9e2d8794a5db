import CampaignDomain
import EventStore
import Foundation
import Hashing

/// The change feed: committed events for consumers outside the engine, and their mapping to
/// CloudEvents 1.0 (structured JSON), the shape distributed logs and their tools expect.
extension CampaignEngine {
    /// Subscribes `consumer` to every committed event, in position order, gap-free, at least
    /// once (see ``EventStore/subscribe(consumer:from:)``). Acknowledge handled positions with
    /// ``EventSubscription/ack(_:)``; a subscription `from: .checkpoint` (the default) resumes after
    /// the last acknowledged one, across restarts of either side.
    public func subscribe(consumer: String, from start: SubscriptionStart = .checkpoint) throws -> EventSubscription {
        try store.subscribe(consumer: consumer, from: start)
    }

    /// The CloudEvents `specversion` this mapping follows.
    public static let cloudEventsVersion = "1.0"

    /// An event as a CloudEvent (structured JSON mode):
    ///
    /// | attribute | value |
    /// |---|---|
    /// | `specversion` | `1.0` |
    /// | `id` | `<storeId>-<position>`: unique per store and event, the same on every export |
    /// | `source` | `urn:campaign-engine:<storeId>` |
    /// | `type` | the event type (`campaign.scheduled`) |
    /// | `subject` | the stream (`acme:cmp_1`) |
    /// | `time` | `occurredAt` (RFC 3339, milliseconds, UTC) |
    /// | `sequence` | the position, 20 digits zero-padded, so it sorts as text |
    /// | `partitionkey` | the stream (`tenant:id`): one partition keeps a stream in order |
    /// | `datacontenttype` | `application/json` |
    /// | `data` | the payload (commitments and field names; never personal values) |
    /// | `tenant`, `actor`, `correlationid`, `causationid` | the envelope (correlation = request id) |
    /// | `streamversion`, `schemaversion` | the stream version and the payload's schema version |
    /// | `hash`, `prevhash` | the record's chain hash and the one before it (hex), to check the chain |
    public static func cloudEvent(_ event: RecordedEvent, storeId: String) -> JSON {
        .object([
            "specversion": .string(cloudEventsVersion),
            "id": .string("\(storeId)-\(event.position)"),
            "source": .string("urn:campaign-engine:\(storeId)"),
            "type": .string(event.type),
            "subject": .string(event.streamId),
            "time": .string(Timestamp.format(event.occurredAt)),
            "sequence": .string(sequence(event.position)),
            "partitionkey": .string(event.streamId),
            "datacontenttype": .string("application/json"),
            "data": (try? JSON.parse(event.payload)) ?? .null,
            "tenant": .string(event.tenant),
            "actor": .string(event.actor),
            "correlationid": .string(event.requestId),
            "causationid": .string(event.causationId),
            "streamversion": .number(Double(event.streamVersion)),
            "schemaversion": .number(Double(event.schemaVersion)),
            "hash": .string(event.hash.hexString),
            "prevhash": .string(event.previousHash.hexString),
        ])
    }

    /// Appends the canonical bytes of ``cloudEvent(_:storeId:)`` (the same bytes, byte for byte)
    /// to `out`, written member by member in key order instead of made a JSON tree, sorted and
    /// encoded: the export and the relay write every event of the log this way. Only the payload
    /// is parsed, so that `data` is its canonical form (`null` if it is not JSON), as in the tree.
    public static func appendCloudEvent(_ event: RecordedEvent, storeId: String, to out: inout [UInt8]) {
        DocumentWriter.append(cloudEventKeys, to: &out) { document in
            document.string("actor", event.actor)
            document.string("causationid", event.causationId)
            document.string("correlationid", event.requestId)
            document.payload("data", event.payload)
            document.string("datacontenttype", "application/json")
            document.hex("hash", event.hash)
            document.string("id", storeId) {
                $0.append(UInt8(ascii: "-"))
                DocumentWriter.appendDigits(event.position, to: &$0)
            }
            document.string("partitionkey", event.streamId)
            document.hex("prevhash", event.previousHash)
            document.number("schemaversion", UInt64(event.schemaVersion))
            document.string("sequence", "") { DocumentWriter.appendDigits(event.position, width: 20, to: &$0) }
            document.string("source", "urn:campaign-engine:" + storeId)
            document.string("specversion", cloudEventsVersion)
            document.number("streamversion", event.streamVersion)
            document.string("subject", event.streamId)
            document.string("tenant", event.tenant)
            document.time("time", event.occurredAt)
            document.string("type", event.type)
        }
    }

    /// The keys ``appendCloudEvent(_:storeId:to:)`` writes, in key order.
    private static let cloudEventKeys = MemberKeys([
        "actor", "causationid", "correlationid", "data", "datacontenttype", "hash", "id", "partitionkey", "prevhash",
        "schemaversion", "sequence", "source", "specversion", "streamversion", "subject", "tenant", "time", "type",
    ])

    /// A position as a CloudEvents `sequence`: 20 digits, zero-padded (UInt64's width).
    public static func sequence(_ position: UInt64) -> String {
        let digits = String(position)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }
}
