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
        var member = 0
        /// The next member's key (named at the call, to read; the bytes are made once).
        func key(_ name: StaticString) {
            assert(cloudEventKeys[member].dropFirst(2).starts(with: name.description.utf8))
            out.append(contentsOf: cloudEventKeys[member])
            member += 1
        }
        /// A string member whose value is `head` followed by `tail` (escaped as one string).
        func string(_ head: String, _ tail: (inout [UInt8]) -> Void = { _ in }) {
            JSON.appendString(head, to: &out)
            out.removeLast()
            tail(&out)
            out.append(UInt8(ascii: "\""))
        }
        key("actor")
        JSON.appendString(event.actor, to: &out)
        key("causationid")
        JSON.appendString(event.causationId, to: &out)
        key("correlationid")
        JSON.appendString(event.requestId, to: &out)
        key("data")
        ((try? JSON.parse(event.payload)) ?? .null).append(to: &out)
        key("datacontenttype")
        out.append(contentsOf: #""application/json""#.utf8)
        key("hash")
        string("") { appendHex(event.hash, to: &$0) }
        key("id")
        string(storeId) {
            $0.append(UInt8(ascii: "-"))
            appendDigits(event.position, width: 0, to: &$0)
        }
        key("partitionkey")
        JSON.appendString(event.streamId, to: &out)
        key("prevhash")
        string("") { appendHex(event.previousHash, to: &$0) }
        key("schemaversion")
        appendNumber(UInt64(event.schemaVersion), to: &out)
        key("sequence")
        string("") { appendDigits(event.position, width: 20, to: &$0) }
        key("source")
        string("urn:campaign-engine:" + storeId)
        key("specversion")
        JSON.appendString(cloudEventsVersion, to: &out)
        key("streamversion")
        appendNumber(event.streamVersion, to: &out)
        key("subject")
        JSON.appendString(event.streamId, to: &out)
        key("tenant")
        JSON.appendString(event.tenant, to: &out)
        key("time")
        string("") { Timestamp.append(event.occurredAt, to: &$0) }
        key("type")
        JSON.appendString(event.type, to: &out)
        out.append(UInt8(ascii: "}"))
    }

    /// `{"actor":`, `,"causationid":`, …: each member's key as ``appendCloudEvent(_:storeId:to:)``
    /// writes them, in key order.
    private static let cloudEventKeys: [[UInt8]] = [
        "actor", "causationid", "correlationid", "data", "datacontenttype", "hash", "id", "partitionkey", "prevhash",
        "schemaversion", "sequence", "source", "specversion", "streamversion", "subject", "tenant", "time", "type",
    ].enumerated().map { index, name in Array("\(index == 0 ? "{" : ",")\"\(name)\":".utf8) }

    /// `bytes` as lower-case hexadecimal, as `hexString` writes them.
    private static func appendHex(_ bytes: [UInt8], to out: inout [UInt8]) {
        let digits: StaticString = "0123456789abcdef"
        let table = digits.utf8Start
        for byte in bytes {
            out.append(table[Int(byte >> 4)])
            out.append(table[Int(byte & 0x0f)])
        }
    }

    /// `value` in decimal, zero-padded to `width` digits.
    private static func appendDigits(_ value: UInt64, width: Int, to out: inout [UInt8]) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for UInt64's 20 digits
        withUnsafeMutableBytes(of: &digits) { buffer in
            var rest = value
            var index = buffer.count
            repeat {
                index -= 1
                buffer[index] = UInt8(48 + rest % 10)
                rest /= 10
            } while rest > 0
            while buffer.count - index < width {
                index -= 1
                buffer[index] = 48
            }
            out.append(contentsOf: buffer[index...])
        }
    }

    /// A whole number as the JSON tree's `.number(Double(value))` encodes it.
    private static func appendNumber(_ value: UInt64, to out: inout [UInt8]) {
        if value < 1_000_000_000_000_000 {
            appendDigits(value, width: 0, to: &out)
        } else {
            JSON.appendNumber(Double(value), to: &out)
        }
    }

    /// A position as a CloudEvents `sequence`: 20 digits, zero-padded (UInt64's width).
    public static func sequence(_ position: UInt64) -> String {
        let digits = String(position)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }
}
