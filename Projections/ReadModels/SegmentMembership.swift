import CampaignDomain
import Foundation

/// The segment catalog and membership, kept current as contacts and rules change.
///
/// Keys: `g‖tenant‖segmentId` → the segment's state; `m‖tenant‖segmentId‖contactId` → empty;
/// `n‖tenant‖segmentId` → member count; `c‖tenant‖contactId` → empty (known contacts);
/// `f‖tenant` → the tenant's defined fields.
///
/// A catch-up projection: a rule change re-evaluates every contact of the tenant, which belongs
/// in the runner's batches rather than in the command's transaction. Contacts are evaluated with
/// their current values (the log holds only commitments) at the time of the triggering event,
/// so `within_last_days` rules are as of that change.
public struct SegmentMembership: Projection {
    /// Creates the projection.
    public init() {}
    /// `segments`.
    public var name: String { "segments" }
    /// 1.
    public var version: Int { 1 }
    /// Catch-up.
    public var mode: ProjectionMode { .catchUp }

    /// The members prefix of a segment.
    public static func members(_ tenant: String, _ segmentId: String) -> [UInt8] { Key.prefix(["m", tenant, segmentId]) }
    /// The member-count key of a segment.
    public static func count(_ tenant: String, _ segmentId: String) -> [UInt8] { Key.make(["n", tenant, segmentId]) }

    func schema(_ tenant: String, _ table: ProjectionTable) throws -> ContactSchema {
        var schema = ContactSchema()
        for (name, definition) in try table.json(Key.make(["f", tenant]))?.objectValue ?? [:] {
            schema = TenantSchema.evolve(schema, EventRecord(type: "field.defined", payload: definition.merging(name: name), occurredAt: .distantPast, version: 0))
        }
        return schema
    }

    func segments(_ tenant: String, _ table: ProjectionTable) throws -> [SegmentState] {
        var segments = [SegmentState]()
        try table.scan(Key.prefix(["g", tenant])) { _, value in
            if let state = (try? JSON.parse(value)).flatMap(SegmentState.init(snapshot:)), state.status == .active { segments.append(state) }
            return true
        }
        return segments
    }

    func setMember(_ member: Bool, _ tenant: String, _ segmentId: String, _ contactId: String, _ table: ProjectionTable) throws {
        let key = Self.members(tenant, segmentId) + Array(contactId.utf8)
        let present = try table.get(key) != nil
        if member && !present {
            try table.put(key)
            try table.add(1, to: Self.count(tenant, segmentId))
        } else if !member && present {
            try table.delete(key)
            try table.add(-1, to: Self.count(tenant, segmentId))
        }
    }

    /// Folds a segment, contact or field event.
    public func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws {
        let tenant = event.envelope.tenant
        let now = event.envelope.occurredAt
        switch event.envelope.type {
        case "field.defined":
            guard let name = event.payload["name"]?.stringValue else { return }
            var fields = try table.json(Key.make(["f", tenant]))?.objectValue ?? [:]
            fields[name] = event.payload
            try table.put(Key.make(["f", tenant]), json: .object(fields))
        case "segment.created", "segment.updated", "segment.archived":
            guard let id = event.payload["segmentId"]?.stringValue else { return }
            let before = try table.json(Key.make(["g", tenant, id])).flatMap(SegmentState.init(snapshot:))
            guard let after = Segment.evolve(before, event.record) else { return }
            try table.put(Key.make(["g", tenant, id]), json: after.snapshot)
            let schema = try schema(tenant, table)
            let rule = after.status == .active ? try? SegmentRule.parse(after.rules, schema: schema, at: "") : nil
            var contacts = [String]()
            let known = Key.prefix(["c", tenant])
            try table.scan(known) { key, _ in
                contacts.append(String(decoding: key.dropFirst(known.count), as: UTF8.self))
                return true
            }
            for contactId in contacts {
                let matches = try rule.map { try $0.matches(table.contactValues(tenant: tenant, contactId: contactId), schema: schema, now: now) } ?? false
                try setMember(matches, tenant, id, contactId, table)
            }
        case "contact.upserted", "contact.erased":
            guard let contactId = event.payload["contactId"]?.stringValue else { return }
            let erased = event.envelope.type == "contact.erased"
            if erased { try table.delete(Key.make(["c", tenant, contactId])) } else { try table.put(Key.make(["c", tenant, contactId])) }
            let schema = try schema(tenant, table)
            let values = erased ? [:] : try table.contactValues(tenant: tenant, contactId: contactId)
            for segment in try segments(tenant, table) {
                let rule = try? SegmentRule.parse(segment.rules, schema: schema, at: "")
                try setMember(!erased && (rule?.matches(values, schema: schema, now: now) ?? false), tenant, segment.id, contactId, table)
            }
        default:
            return
        }
    }
}

private extension JSON {
    func merging(name: String) -> JSON {
        guard case var .object(members) = self else { return self }
        members["name"] = .string(name)
        return .object(members)
    }
}
