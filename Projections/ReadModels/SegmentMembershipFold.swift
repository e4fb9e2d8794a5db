import CampaignDomain
import Foundation

extension SegmentMembership: FoldedRebuild {
    /// A fold that evaluates each contact once per segment, however many rule changes the log holds.
    public func makeFold() -> any RebuildFold { MembershipFold() }
    /// True: the fold keeps every contact of every tenant until its rows are made.
    public var foldIsLarge: Bool { true }
}

/// The `segments` rebuild in closed form.
///
/// Folding event by event evaluates a contact against a segment at every trigger: each rule
/// change (every contact of the tenant), each event of the contact (every active segment), and
/// each refresh that finds its boundary due. Contacts are always evaluated with their current
/// values, so what stays in the table for a pair is the evaluation at its last trigger: the
/// segment's final rule, parsed with the schema of that moment, matched at that event's time. This
/// fold therefore only records, per tenant, the schema after each field definition, each segment's
/// state and last rule event, each contact's last event, and the refreshes; ``rows(_:)`` then
/// evaluates each live contact once per active segment at the later of the two last events, and
/// follows the refreshes that would have found its boundary due.
final class MembershipFold: RebuildFold {
    /// An event that made the projection evaluate: where it is in the log, and when it happened.
    struct Trigger {
        var position: UInt64
        var time: Date
    }

    struct SegmentEntry {
        /// The stored state, as `apply` writes it (and parses it back for the next event).
        var bytes: [UInt8]
        var state: SegmentState
        var lastChange: Trigger
    }

    struct Tenant {
        var fields: JSONObject = [:]
        /// The schema in force from each position on (a field definition's), first to last.
        var schemas: [(from: UInt64, schema: ContactSchema)] = [(0, ContactSchema())]
        var segments: [String: SegmentEntry] = [:]
        /// The contacts' events, each contact's last one kept.
        var contacts = ContactEvents()
        /// The tenant's `segment.membershipsRefreshed` events, in log order.
        var refreshes: [Trigger] = []

        /// The index in ``schemas`` of the schema in force at `position`.
        func schemaIndex(at position: UInt64) -> Int {
            schemas.lastIndex { $0.from < position } ?? 0
        }
    }

    private var tenants: [String: Tenant] = [:]

    func fold(_ event: ProjectedEvent) throws {
        let envelope = event.envelope
        let trigger = Trigger(position: envelope.position, time: envelope.occurredAt)
        switch envelope.type {
        case SchemaEvent.Kind.fieldDefined.rawValue, SchemaEvent.Kind.fieldUpdated.rawValue:
            guard let name = event.payload["name"]?.stringValue else { return }
            let stored = tenants[envelope.tenant]?.fields[name]
            tenants[envelope.tenant, default: Tenant()].fields[name] = SegmentMembership.definition(
                stored, after: event)
            let fields = tenants[envelope.tenant]!.fields
            tenants[envelope.tenant]!.schemas.append((envelope.position, SegmentMembership.schema(fields: fields)))
        case SegmentEvent.Kind.created.rawValue, SegmentEvent.Kind.updated.rawValue,
            SegmentEvent.Kind.archived.rawValue:
            guard let id = event.payload["segmentId"]?.stringValue else { return }
            let before = tenants[envelope.tenant]?.segments[id].flatMap {
                (try? JSON.parse($0.bytes)).flatMap(SegmentState.init(snapshot:))
            }
            guard let after = Segment.evolve(before, event.record) else { return }
            tenants[envelope.tenant, default: Tenant()].segments[id] = SegmentEntry(
                bytes: after.snapshot.bytes, state: after, lastChange: trigger)
        case ContactEvent.Kind.upserted.rawValue, ContactEvent.Kind.erased.rawValue:
            guard let contactId = SegmentMembership.contactId(of: event) else { return }
            tenants[envelope.tenant, default: Tenant()].contacts.record(
                contactId.utf8, trigger, erased: envelope.type == ContactEvent.Kind.erased.rawValue)
        case MembershipEvent.Kind.refreshed.rawValue:
            tenants[envelope.tenant, default: Tenant()].refreshes.append(trigger)
        default:
            return
        }
    }

    /// What a tenant's rows hold once every membership is decided. Contacts and segments are named
    /// by their index in byte order (of ``contacts`` and ``segments``), so ordering rows compares
    /// numbers, and no contact id is an array of its own.
    struct Outcome {
        var tenant: [UInt8]
        /// The live contacts' ids, in byte order.
        var contacts = PackedKeys(reservingCapacity: 0)
        /// The active segments' ids, in byte order.
        var segments: [[UInt8]] = []
        /// Each active segment's members, by contact index, ascending.
        var members: [[Int]] = []
        /// The memberships time alone can change: the next boundary (ms), segment, contact; in
        /// contact order, and for one contact in segment order.
        var boundaries: [(time: UInt64, segment: Int, contact: Int)] = []

        /// The first boundary: the tenant's earliest-due entry.
        var earliest: UInt64? { boundaries.map(\.time).min() }
    }

    /// The rows, tenant by tenant: each tenant's memberships are decided and its rows packed into
    /// one buffer per key family before the next tenant is looked at (and its fold state dropped),
    /// so only one tenant's outcome is ever held; the families are then joined in key order.
    func rows(_ personalData: PersonalDataReader) throws -> SortedRows {
        let names = tenants.keys.sorted { Self.precedes(Array($0.utf8), Array($1.utf8)) }
        // Families in key order (W < b < c < d < f < g < m < n < s < w); tenants in byte order within
        // each. Each key is written in place: `tag` 0x00 `tenant`, then each further part after a
        // 0x00 (``Key/make(_:)``'s layout).
        var w = SortedRows()
        var b = SortedRows()
        var c = SortedRows()
        var d = SortedRows()
        var f = SortedRows()
        var g = SortedRows()
        var m = SortedRows()
        var n = SortedRows()
        var s = SortedRows()
        func start(_ tag: Character, _ tenant: [UInt8], _ key: inout [UInt8]) {
            key.append(tag.asciiValue!)
            key.append(0)
            key.append(contentsOf: tenant)
        }
        func part(_ bytes: [UInt8], _ key: inout [UInt8]) {
            key.append(0)
            key.append(contentsOf: bytes)
        }
        func u64(_ value: UInt64, _ key: inout [UInt8]) {
            withUnsafeBytes(of: value.bigEndian) { key.append(contentsOf: $0) }
        }
        var earliest = [(time: UInt64, tenant: [UInt8])]()
        for name in names {
            let outcome = try outcome(name, personalData)
            let tenant = tenants.removeValue(forKey: name)!
            let id = outcome.tenant
            if let first = outcome.earliest {
                w.append(key: { start("W", id, &$0) }, value: { u64(first, &$0) })
                earliest.append((first, id))
            }
            let contacts = outcome.contacts
            let segmentIds = outcome.segments
            for entry in outcome.boundaries.sorted(by: { ($0.segment, $0.contact) < ($1.segment, $1.contact) }) {
                b.append(
                    key: { key in
                        start("b", id, &key)
                        part(segmentIds[entry.segment], &key)
                        key.append(0)
                        contacts.appendKey(entry.contact, to: &key)
                    }, value: { u64(entry.time, &$0) })
            }
            for contact in 0..<contacts.count {
                c.append(key: { key in
                    start("c", id, &key)
                    key.append(0)
                    contacts.appendKey(contact, to: &key)
                })
            }
            let due = outcome.boundaries.sorted {
                ($0.time, $0.segment, $0.contact) < ($1.time, $1.segment, $1.contact)
            }
            for entry in due {
                d.append(key: { key in
                    start("d", id, &key)
                    key.append(0)
                    u64(entry.time, &key)
                    key.append(contentsOf: segmentIds[entry.segment])
                    key.append(0)
                    contacts.appendKey(entry.contact, to: &key)
                })
            }
            if !tenant.fields.isEmpty {
                f.append(
                    key: { start("f", id, &$0) }, value: { $0.append(contentsOf: JSON.object(tenant.fields).bytes) })
            }
            let segments: [(id: [UInt8], bytes: [UInt8])] = tenant.segments.map { (Array($0.key.utf8), $0.value.bytes) }
            for segment in segments.sorted(by: { Self.precedes($0.id, $1.id) }) {
                g.append(
                    key: { key in
                        start("g", id, &key)
                        part(segment.id, &key)
                    }, value: { $0.append(contentsOf: segment.bytes) })
            }
            for (segment, members) in zip(segmentIds, outcome.members) {
                for contact in members {
                    m.append(key: { key in
                        start("m", id, &key)
                        part(segment, &key)
                        key.append(0)
                        contacts.appendKey(contact, to: &key)
                    })
                }
            }
            for (segment, members) in zip(segmentIds, outcome.members) where !members.isEmpty {
                n.append(
                    key: { key in
                        start("n", id, &key)
                        part(segment, &key)
                    }, value: { u64(UInt64(members.count), &$0) })
            }
            var statuses = [String: UInt64]()
            for entry in tenant.segments.values { statuses[entry.state.status.rawValue, default: 0] += 1 }
            for (status, count) in statuses.sorted(by: { ByteOrder.precedes($0.key, $1.key) }) {
                s.append(
                    key: { key in
                        start("s", id, &key)
                        part(Array(status.utf8), &key)
                    }, value: { u64(count, &$0) })
            }
        }
        earliest.sort { a, b in a.time != b.time ? a.time < b.time : Self.precedes(a.tenant, b.tenant) }
        var last = SortedRows()
        for entry in earliest {
            last.append(key: { key in
                key.append(contentsOf: SegmentMembership.earliestPrefix)
                u64(entry.time, &key)
                key.append(contentsOf: entry.tenant)
            })
        }
        var families = [
            consume w, consume b, consume c, consume d, consume f, consume g, consume m, consume n, consume s,
            consume last,
        ]
        var rows = SortedRows(
            reservingBytes: families.reduce(0) { $0 + $1.byteCount }, rows: families.reduce(0) { $0 + $1.count })
        for index in families.indices { rows.append(contentsOf: &families[index]) }
        return rows
    }

    /// Decides every membership of one tenant.
    func outcome(_ name: String, _ personalData: PersonalDataReader) throws -> Outcome {
        let tenant = tenants[name]!
        var outcome = Outcome(tenant: Array(name.utf8))
        let (contacts, lasts) = tenant.contacts.live()
        outcome.contacts = contacts
        let active = tenant.segments.filter { $0.value.state.status == .active }
            .sorted { Self.precedes(Array($0.key.utf8), Array($1.key.utf8)) }
        guard !active.isEmpty else { return outcome }
        // Each segment's rule compiled once per schema it is evaluated with (nil: it does not parse),
        // by the segment's index among the active ones and the schema's index; the contact loop
        // below reads only these arrays (not the segments' entries, each a copy of several values).
        let compiled = active.map { segment in
            tenant.schemas.map { SegmentMembership.matcher(segment.value.state.rules, $0.schema) }
        }
        outcome.segments = active.map { Array($0.key.utf8) }
        let lastChanges = active.map(\.value.lastChange)
        // The fields any rule that can be evaluated reads: only those of a contact's values are
        // made, each into its slot of one array reused for every contact.
        var fields = Set<String>()
        for matcher in compiled.joined() { if let matcher { fields.formUnion(matcher.rule.fields) } }
        let selection = PersonalData.selection(fields)
        let matchers = compiled.map { $0.map { $0.map { SelectionMatcher($0, selection: selection) } } }
        var values = [JSON?](repeating: nil, count: selection.names.count)
        var members = [[Int]](repeating: [], count: active.count)
        /// Decides the memberships of contact `contact` (its index), with its stored document (nil:
        /// no values are kept).
        func decide(_ contact: Int, stored: UnsafeRawBufferPointer?) {
            var read = false
            let last = lasts[contact]
            for index in active.indices {
                let lastChange = lastChanges[index]
                var trigger = last.position > lastChange.position ? last : lastChange
                var schema = tenant.schemaIndex(at: trigger.position)
                // Without a rule (it does not parse) the pair is no member and has no boundary.
                var current = matchers[index][schema]
                if current == nil { continue }
                if !read {
                    if let stored {
                        PersonalDataReader.values(stored: stored, only: selection, into: &values)
                    } else {
                        for slot in values.indices { values[slot] = nil }
                    }
                    read = true
                }
                var boundary = current?.nextChange(values, after: trigger.time)
                // A refresh after the trigger whose time reaches the boundary re-evaluates the pair.
                while let due = boundary.map(Self.millis),
                    let refresh = tenant.refreshes.first(where: {
                        $0.position > trigger.position && Self.millis($0.time) >= due
                    })
                {
                    trigger = refresh
                    schema = tenant.schemaIndex(at: trigger.position)
                    current = matchers[index][schema]
                    boundary = current?.nextChange(values, after: trigger.time)
                }
                if current?.matches(values, now: trigger.time) == true {
                    members[index].append(contact)
                }
                if let boundary {
                    outcome.boundaries.append((Self.millis(boundary), index, contact))
                }
            }
        }
        // The stored values are walked in id order beside the live contacts (also in id order): a
        // contact with none stored has no values; stored values of no live contact are passed over.
        var next = 0
        try personalData.forEachStored(tenant: name) { id, stored in
            // The live contacts up to this stored id: those before it have none stored, an equal one
            // has these values.
            while next < contacts.count {
                let order = contacts.withKey(next) { ByteOrder.compare($0, id) }
                if order > 0 { break }
                decide(next, stored: order == 0 ? stored : nil)
                next += 1
                if order == 0 { break }
            }
            return next < contacts.count
        }
        while next < contacts.count {
            decide(next, stored: nil)
            next += 1
        }
        outcome.members = members
        return outcome
    }

    /// A tenant's contact events as they come, packed (no dictionary: hashing each id and growing
    /// the table was a tenth of the `segments` rebuild's CPU), and from time to time compacted to
    /// each contact's last event, so they take at most about twice the room of one event a contact.
    struct ContactEvents {
        private var ids = PackedKeys(reservingCapacity: 0)
        private var lasts: [Trigger] = []
        private var erased: [Bool] = []
        /// How many events were left after the last compaction.
        private var compacted = 0
        /// How many events more than twice those left after the last compaction start the next.
        private let slack: Int

        /// No events yet; compacted whenever `slack` events more than twice those left after the
        /// last compaction are held.
        init(slack: Int = 65_536) { self.slack = max(1, slack) }

        /// Records a contact's event, and whether it erased the contact.
        mutating func record(_ id: some Collection<UInt8>, _ last: Trigger, erased: Bool) {
            ids.append(id)
            lasts.append(last)
            self.erased.append(erased)
            if ids.count >= 2 * compacted + slack { compact() }
        }

        /// How many events are held.
        var count: Int { ids.count }

        /// Keeps each contact's last event only (its later events come after it in the log, and
        /// the sort keeps equal ids in the order they came), in id order, and drops the contacts
        /// whose last event erased them: an earlier event of theirs is gone with it, and a later
        /// one is recorded after.
        private mutating func compact() {
            let order = ids.sortedIndices()
            var kept = [Int]()
            kept.reserveCapacity(order.count)
            for (at, index) in order.enumerated() where !erased[index] {
                if at + 1 < order.count, ids.same(index, order[at + 1]) { continue }
                kept.append(index)
            }
            ids = ids.reordered(kept)
            lasts = kept.map { lasts[$0] }
            erased = [Bool](repeating: false, count: kept.count)
            compacted = kept.count
        }

        /// The contacts not erased, their ids packed in byte order, and each one's last event.
        func live() -> (ids: PackedKeys, lasts: [Trigger]) {
            var all = self
            all.compact()
            return (all.ids, all.lasts)
        }
    }

    /// A time as the projection's keys hold it: whole milliseconds since 1970.
    static func millis(_ date: Date) -> UInt64 { Key.readU64(Key.time(date)) }

    static func precedes(_ a: [UInt8], _ b: [UInt8]) -> Bool { ByteOrder.precedes(a, b) }

}
