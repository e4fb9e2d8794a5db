import CampaignDomain
import Foundation

/// The segment catalog and membership, kept current as contacts, rules and time change.
///
/// Keys: `g‖tenant‖segmentId` → the segment's state; `s‖tenant‖status` → how many of the tenant's
/// segments have that status (u64, absent at 0); `m‖tenant‖segmentId‖contactId` → empty;
/// `n‖tenant‖segmentId` → member count; `c‖tenant‖contactId` → empty (known contacts);
/// `f‖tenant` → the tenant's defined fields. Memberships that time alone can change (a rule with
/// `within_last_days` or `not_within_last_days`) are indexed by their next boundary:
/// `d‖tenant‖` + time (ms, u64) + `segmentId‖contactId` → empty, in time order per tenant;
/// `b‖tenant‖segmentId‖contactId` → that time (to move the entry); and the tenant's earliest
/// entry, `w‖` + time + `tenant` → empty with `W‖tenant` → time, which the scheduler reads.
///
/// A catch-up projection: a rule change re-evaluates every contact of the tenant, which belongs
/// in the runner's batches rather than in the command's transaction, and is applied in parts
/// (``PartialApply``), so no batch holds the writer for long however many contacts. Contacts are evaluated with
/// their current values (the log holds only commitments) at the time of the triggering event.
/// When a boundary passes, the scheduler appends `segment.membershipsRefreshed` for the tenant
/// and this projection re-evaluates exactly the memberships due by that event's time, so a rebuild
/// from the log arrives at the same memberships.
public struct SegmentMembership: PartialApply {
    /// Creates the projection.
    public init() {}
    /// `segments`, the name its tables and `campaign projections` use.
    public var name: String { "segments" }
    /// 3: the segments are counted by status (2 indexed relative-date memberships by their next
    /// boundary, without the counts).
    public var version: Int { 3 }
    /// Catch-up: a rule change re-evaluates every contact of the tenant, too much for an append's transaction.
    public var mode: ProjectionMode { .catchUp }

    /// The stream (`tenant:` + this) that holds a tenant's refresh events.
    public static let refreshStream = "segment-memberships"

    /// The members prefix of a segment.
    public static func members(_ tenant: String, _ segmentId: String) -> [UInt8] {
        Key.prefix(["m", tenant, segmentId])
    }
    /// The key of the count of a tenant's segments with `status`.
    public static func count(_ tenant: String, _ status: SegmentStatus) -> [UInt8] {
        Key.make(["s", tenant, status.rawValue])
    }
    /// The member-count key of a segment.
    public static func count(_ tenant: String, _ segmentId: String) -> [UInt8] { Key.make(["n", tenant, segmentId]) }

    static let earliestPrefix: [UInt8] = [UInt8(ascii: "w"), 0]
    static func duePrefix(_ tenant: String) -> [UInt8] { Key.prefix(["d", tenant]) }
    static func boundaryKey(_ tenant: String, _ segmentId: String, _ contactId: String) -> [UInt8] {
        Key.make(["b", tenant, segmentId, contactId])
    }
    static func earliestKey(_ tenant: String) -> [UInt8] { Key.make(["W", tenant]) }

    /// The tenants with memberships due by `now`, earliest first (the scheduler's work list).
    public static func tenantsDue(_ reader: ProjectionReader, at now: Date) throws -> [String] {
        let bound = Key.readU64(Key.time(now))
        var tenants = [String]()
        try reader.scan(earliestPrefix) { key, _ in
            guard key.count > 10, Key.readU64(key[2..<10]) <= bound else { return false }
            tenants.append(String(decoding: key[10...], as: UTF8.self))
            return true
        }
        return tenants
    }

    /// How many of a tenant's memberships are due by `now`.
    public static func dueCount(_ reader: ProjectionReader, tenant: String, at now: Date) throws -> Int {
        let prefix = duePrefix(tenant)
        let bound = Key.readU64(Key.time(now))
        var count = 0
        try reader.scan(prefix) { key, _ in
            guard Key.readU64(key[prefix.count...]) <= bound else { return false }
            count += 1
            return true
        }
        return count
    }

    func schema(_ tenant: String, _ table: ProjectionTable) throws -> ContactSchema {
        Self.schema(fields: try table.json(Key.make(["f", tenant]))?.objectValue ?? [:])
    }

    /// A field's stored definition (a `field.defined` payload) after a schema event: the event's own
    /// payload for a definition, the stored one with the update's `values` for an update.
    static func definition(_ stored: JSON?, after event: ProjectedEvent) -> JSON? {
        guard event.envelope.type == SchemaEvent.Kind.fieldUpdated.rawValue else { return event.payload }
        guard var definition = stored?.objectValue, let values = event.payload["values"] else { return stored }
        definition["values"] = values
        return .object(definition)
    }

    /// The schema of a tenant whose field definitions (`field.defined` payloads, an update's values
    /// in place), by name, are `fields`.
    static func schema(fields: JSONObject) -> ContactSchema {
        var schema = ContactSchema()
        for (name, definition) in fields {
            let type = definition["type"]?.stringValue ?? ""
            let values = definition["values"]?.arrayValue?.compactMap(\.stringValue)
            schema = TenantSchema.evolve(schema, .fieldDefined(name: name, type: type, values: values))
        }
        return schema
    }

    /// A tenant's active segments with their rules compiled for its schema, once per batch.
    struct TenantRules {
        var segments: [(id: String, rule: SegmentMatcher?)]
    }

    /// A segment's rule compiled for `schema`; nil when it does not parse with it (then no contact
    /// is a member).
    static func matcher(_ rules: JSON, _ schema: ContactSchema) -> SegmentMatcher? {
        (try? SegmentRule.parse(rules, schema: schema, at: "")).map { SegmentMatcher($0, schema: schema) }
    }

    func rules(_ tenant: String, _ table: ProjectionTable) throws -> TenantRules {
        let key = "segments/" + tenant
        if let cached = table.memo[key] as? TenantRules { return cached }
        let schema = try schema(tenant, table)
        let rules = TenantRules(segments: try segments(tenant, table).map { ($0.id, Self.matcher($0.rules, schema)) })
        table.memo[key] = rules
        return rules
    }

    func segments(_ tenant: String, _ table: ProjectionTable) throws -> [SegmentState] {
        var segments = [SegmentState]()
        try table.scan(Key.prefix(["g", tenant])) { _, value in
            if let state = (try? JSON.parse(value)).flatMap(SegmentState.init(snapshot:)), state.status == .active {
                segments.append(state)
            }
            return true
        }
        return segments
    }

    func setMember(
        _ member: Bool, _ tenant: String, _ segmentId: String, _ contactId: String, _ table: ProjectionTable
    ) throws {
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

    /// Decides a contact's membership of a segment at `now` (false without a rule: the segment is
    /// archived or the contact erased) and indexes the next time the answer can change by itself.
    func evaluate(
        _ rule: SegmentMatcher?, _ values: JSONObject, now: Date,
        _ tenant: String, _ segmentId: String, _ contactId: String, _ table: ProjectionTable
    ) throws {
        try setMember(rule?.matches(values, now: now) ?? false, tenant, segmentId, contactId, table)
        let boundary = Self.boundaryKey(tenant, segmentId, contactId)
        let old = try table.get(boundary)
        let new = rule?.nextChange(values, after: now).map(Key.time)
        guard old != new else { return }
        let entry = Key.make([segmentId, contactId])
        if let old { try table.delete(Self.duePrefix(tenant) + old + entry) }
        if let new {
            try table.put(Self.duePrefix(tenant) + new + entry)
            try table.put(boundary, new)
        } else {
            try table.delete(boundary)
        }
    }

    /// Keeps the tenant's earliest-due entry (`w`, `W`) equal to the first of its `d` entries.
    func updateEarliest(_ tenant: String, _ table: ProjectionTable) throws {
        let prefix = Self.duePrefix(tenant)
        var first: [UInt8]?
        try table.scan(prefix) { key, _ in
            first = Array(key[prefix.count..<(prefix.count + 8)])
            return false
        }
        let old = try table.get(Self.earliestKey(tenant))
        guard old != first else { return }
        if let old { try table.delete(Self.earliestPrefix + old + Array(tenant.utf8)) }
        if let first {
            try table.put(Self.earliestPrefix + first + Array(tenant.utf8))
            try table.put(Self.earliestKey(tenant), first)
        } else {
            try table.delete(Self.earliestKey(tenant))
        }
    }

    /// Field definitions and updates, segment and contact events, and the scheduler's refreshes.
    public var eventTypes: Set<String>? {
        Set(
            SchemaEvent.Kind.allCases.map(\.rawValue) + [MembershipEvent.Kind.refreshed.rawValue]
                + [SegmentEvent.Kind.created, .updated, .archived].map(\.rawValue)
                + ContactEvent.Kind.allCases.map(\.rawValue))
    }

    /// Folds a segment, contact or field event, and the scheduler's refreshes.
    public func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws {
        _ = try apply(event, to: table, resumingAfter: nil, shouldStop: { false })
    }

    /// Folds an event as ``apply(_:to:)`` does, a rule change or a refresh in parts. A rule change
    /// re-evaluates the tenant's contacts in key order and can stop after any of them, returning that
    /// contact's id to resume after; the segment's new state is stored by the first part and later
    /// parts read it back. A refresh re-evaluates the due entries in key order and can stop after
    /// any of them, returning that entry's key.
    public func apply(
        _ event: ProjectedEvent, to table: ProjectionTable, resumingAfter resume: [UInt8]?, shouldStop: () -> Bool
    ) throws -> [UInt8]? {
        let tenant = event.envelope.tenant
        let now = event.envelope.occurredAt
        switch event.envelope.type {
        case SchemaEvent.Kind.fieldDefined.rawValue, SchemaEvent.Kind.fieldUpdated.rawValue:
            guard let name = event.payload["name"]?.stringValue else { return nil }
            var fields = try table.json(Key.make(["f", tenant]))?.objectValue ?? [:]
            fields[name] = Self.definition(fields[name], after: event)
            try table.put(Key.make(["f", tenant]), json: .object(fields))
            table.memo["segments/" + tenant] = nil
            return nil
        case SegmentEvent.Kind.created.rawValue, SegmentEvent.Kind.updated.rawValue,
            SegmentEvent.Kind.archived.rawValue:
            guard let id = event.payload["segmentId"]?.stringValue else { return nil }
            let after: SegmentState
            if resume == nil {
                let before = try table.json(Key.make(["g", tenant, id])).flatMap(SegmentState.init(snapshot:))
                guard let evolved = Segment.evolve(before, event.record) else { return nil }
                try table.put(Key.make(["g", tenant, id]), json: evolved.snapshot)
                if before?.status != evolved.status {
                    if let before { try table.add(-1, to: Self.count(tenant, before.status)) }
                    try table.add(1, to: Self.count(tenant, evolved.status))
                }
                table.memo["segments/" + tenant] = nil
                after = evolved
            } else {
                guard let stored = try table.json(Key.make(["g", tenant, id])).flatMap(SegmentState.init(snapshot:))
                else { return nil }
                after = stored
            }
            let schema = try schema(tenant, table)
            let rule = after.status == .active ? Self.matcher(after.rules, schema) : nil
            // Contacts in key order, a chunk at a time (they are read before the chunk's
            // evaluations write to the table), from the one after `resume`.
            let known = Key.prefix(["c", tenant])
            var last = resume
            while true {
                var chunk = [[UInt8]]()
                try table.scan(known, after: last.map { known + $0 }) { key, _ in
                    chunk.append(Array(key.dropFirst(known.count)))
                    return chunk.count < 256
                }
                if chunk.isEmpty { break }
                for contact in chunk {
                    let contactId = String(decoding: contact, as: UTF8.self)
                    let values = rule == nil ? [:] : try table.contactValues(tenant: tenant, contactId: contactId)
                    try evaluate(rule, values, now: now, tenant, id, contactId, table)
                    last = contact
                    if shouldStop() {
                        try updateEarliest(tenant, table)
                        return contact
                    }
                }
            }
        case ContactEvent.Kind.upserted.rawValue, ContactEvent.Kind.erased.rawValue:
            guard let contactId = Self.contactId(of: event) else { return nil }
            let erased = event.envelope.type == ContactEvent.Kind.erased.rawValue
            if erased {
                try table.delete(Key.make(["c", tenant, contactId]))
            } else {
                try table.put(Key.make(["c", tenant, contactId]))
            }
            let rules = try rules(tenant, table)
            let values = erased ? [:] : try table.contactValues(tenant: tenant, contactId: contactId)
            for segment in rules.segments {
                let rule = erased ? nil : segment.rule
                try evaluate(rule, values, now: now, tenant, segment.id, contactId, table)
            }
        case MembershipEvent.Kind.refreshed.rawValue:
            if let rest = try refresh(tenant, at: now, table, resumingAfter: resume, shouldStop: shouldStop) {
                try updateEarliest(tenant, table)
                return rest
            }
        default:
            return nil
        }
        try updateEarliest(tenant, table)
        return nil
    }

    /// The contact a contact event is about, here and in the rebuild's fold. A contact's stream is
    /// `tenant:contactId`, so the id is read from the envelope's stream id, which the log reader
    /// has made already; the payload's `contactId` is read only for a stream named otherwise.
    /// (Scanning every payload for it was 6.6% of the `segments` rebuild's CPU.)
    static func contactId(of event: ProjectedEvent) -> String? {
        let envelope = event.envelope
        let stream = envelope.streamId.utf8
        let tenant = envelope.tenant.utf8
        if stream.count > tenant.count + 1, stream.starts(with: tenant) {
            let colon = stream.index(stream.startIndex, offsetBy: tenant.count)
            if stream[colon] == UInt8(ascii: ":") {
                return String(decoding: stream[stream.index(after: colon)...], as: UTF8.self)
            }
        }
        return event.payloadMember("contactId")?.stringValue
    }

    /// Re-evaluates exactly the tenant's memberships due by `now`, each at `now`, in key order from
    /// the due entry after `resume`, until `shouldStop`.
    /// - Returns: the last due entry re-evaluated when it stopped early, nil when none is left.
    func refresh(
        _ tenant: String, at now: Date, _ table: ProjectionTable, resumingAfter resume: [UInt8]?,
        shouldStop: () -> Bool
    ) throws -> [UInt8]? {
        let prefix = Self.duePrefix(tenant)
        let bound = Key.readU64(Key.time(now))
        let schema = try schema(tenant, table)
        var rules = [String: SegmentMatcher?]()
        var last = resume
        while true {
            // A chunk of due entries is read before its evaluations move them. An entry moved to a
            // time still due may come round again in a later chunk; evaluated again at the same
            // time, it gives the same answer and the same entry.
            var due = [(key: [UInt8], segmentId: String, contactId: String)]()
            try table.scan(prefix, after: last) { key, _ in
                guard Key.readU64(key[prefix.count...]) <= bound else { return false }
                let parts = Key.split(Array(key[(prefix.count + 8)...]))
                due.append((key, parts.count == 2 ? parts[0] : "", parts.count == 2 ? parts[1] : ""))
                return due.count < 256
            }
            if due.isEmpty { return nil }
            for (key, segmentId, contactId) in due {
                last = key
                guard !segmentId.isEmpty else { continue }
                if rules[segmentId] == nil {
                    let state = try table.json(Key.make(["g", tenant, segmentId])).flatMap(
                        SegmentState.init(snapshot:))
                    rules[segmentId] =
                        state?.status == .active ? Self.matcher(state!.rules, schema) : nil
                }
                let known = try table.get(Key.make(["c", tenant, contactId])) != nil
                let rule = known ? rules[segmentId] ?? nil : nil
                let values = rule == nil ? [:] : try table.contactValues(tenant: tenant, contactId: contactId)
                try evaluate(rule, values, now: now, tenant, segmentId, contactId, table)
                if shouldStop() { return key }
            }
        }
    }
}
