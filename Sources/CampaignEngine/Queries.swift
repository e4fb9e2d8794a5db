import CampaignDomain
import CampaignProjections
import CampaignSnapshots
import EventStore
import Foundation
import Hashing

/// A moment in a stream's history: after a global position, or at a time.
public enum PointInTime: Sendable, Equatable {
    /// Every event up to and including this global position.
    case position(UInt64)
    /// Every event that occurred at or before this time.
    case time(Date)

    /// Whether an event is at or before this point.
    public func includes(_ event: RecordedEvent) -> Bool {
        switch self {
        case let .position(position): event.position <= position
        case let .time(time): event.occurredAt <= time
        }
    }
}

extension CampaignEngine {
    /// Reads up to `page.limit` entries under `prefix` after the cursor (or after `start`, a
    /// key suffix, when there is no cursor), keeping those `select` turns into an item. Cursors
    /// hold the key after `prefix`, sealed and bound to `context` (``CursorCodec``).
    func page(
        _ reader: ProjectionReader, prefix: [UInt8], page: Query.Page, context: [UInt8], start: [UInt8]? = nil,
        _ select: ([UInt8]) throws -> JSON?
    ) throws -> (items: [JSON], next: String?) {
        var items = [JSON]()
        var last: [UInt8]?
        var more = false
        let after =
            try page.cursor.map { cursor throws(CampaignError) in try cursors.decode(cursor, context: context) }
            ?? start
        try reader.scan(prefix, after: after.map { prefix + $0 }) { key, _ in
            if items.count == page.limit {
                more = true
                return false
            }
            last = key
            if let item = try select(key) { items.append(item) }
            return true
        }
        return (items, more ? last.map { cursors.encode(Array($0.dropFirst(prefix.count)), context: context) } : nil)
    }

    /// Throws `RESOURCE_NOT_FOUND` at `/params/campaignId` unless the tenant has the campaign (not
    /// deleted): a list filtered by a campaign names one that exists.
    func requireCampaign(_ tenant: String, _ campaignId: String) throws {
        guard let campaign = try loadCampaign(tenant, campaignId).0, campaign.status != .deleted else {
            throw CampaignError.notFound("campaign", campaignId, pointer: "/params/campaignId")
        }
    }

    /// Throws `RESOURCE_NOT_FOUND` at `/params/segmentId` unless the tenant has the segment (archived
    /// or not): a query about a segment names one that exists.
    func requireSegment(_ tenant: String, _ segmentId: String) throws {
        guard try loadSegment(tenant, segmentId).0 != nil else {
            throw CampaignError.notFound("segment", segmentId, pointer: "/params/segmentId")
        }
    }

    /// A contact as `contact.get` and `contact.list` show it: its id, status, current values
    /// (`attributes`), version and last change, plus `extra`.
    static func contactJSON(
        _ id: String, _ state: ContactState, _ values: JSONObject, _ extra: JSONObject = [:]
    ) -> JSON {
        var members = extra
        members["contactId"] = .string(id)
        members["status"] = .string(state.status.rawValue)
        members["attributes"] = .object(values)
        members["updatedAt"] = .string(Timestamp.format(state.updatedAt))
        members["version"] = .number(Double(state.version))
        return .object(members)
    }

    /// `segment.preview`'s answer: how many of the tenant's contacts (those not erased, as the
    /// segments projection knows them) `rule` matches at the engine clock's time, and the first
    /// `limit` of them in id order. Each contact is evaluated as the projection evaluates a member:
    /// with the stored values its rule reads (none for a contact without stored values). The
    /// contacts are read in slices of ``previewSlice``, each in its own read transaction, and the
    /// task yields between slices: a tenant's million contacts take a second of CPU, which other
    /// requests share the pool with instead of waiting behind.
    func preview(_ rule: SegmentRule, schema: ContactSchema, tenant: String, limit: Int) async throws -> JSON {
        let selection = PersonalData.selection(rule.fields)
        let matcher = SelectionMatcher(SegmentMatcher(rule, schema: schema), selection: selection)
        let now = currentTime
        try await projections.catchUpOnWriter("segments")
        let prefix = Key.prefix(["c", tenant])
        var count = 0
        var sample = [JSON]()
        var after: [UInt8]?
        repeat {
            if after != nil { await Task.yield() }
            after = try store.read { txn -> [UInt8]? in
                var known = [[UInt8]]()
                try projections.read("segments", in: txn) { reader in
                    try reader.scan(prefix, after: after.map { prefix + $0 }) { key, _ in
                        known.append(Array(key.dropFirst(prefix.count)))
                        return known.count < Self.previewSlice
                    }
                }
                guard let first = known.first else { return nil }
                var values = [JSON?](repeating: nil, count: selection.names.count)
                func evaluate(_ contact: [UInt8], stored: UnsafeRawBufferPointer?) {
                    if let stored {
                        JSON.members(selection, in: stored, into: &values)
                    } else {
                        for slot in values.indices { values[slot] = nil }
                    }
                    guard matcher.matches(values, now: now) else { return }
                    count += 1
                    if sample.count < limit { sample.append(.string(String(decoding: contact, as: UTF8.self))) }
                }
                // The stored values in id order beside the slice's known contacts (also in id order),
                // as the segments rebuild walks them: stored values of no known contact are passed over.
                var next = 0
                try txn.forEachEntry(in: tables.personalData, withPrefix: Key.prefix([tenant]), from: first) {
                    id, stored in
                    while next < known.count {
                        let order = known[next].withUnsafeBytes { ByteOrder.compare($0, id) }
                        if order > 0 { break }
                        evaluate(known[next], stored: order == 0 ? stored : nil)
                        next += 1
                        if order == 0 { break }
                    }
                    return next < known.count
                }
                for contact in known[next...] { evaluate(contact, stored: nil) }
                return known.count < Self.previewSlice ? nil : known.last
            }
        } while after != nil
        return .object([
            "count": .number(Double(count)), "contactIds": .array(sample),
            "evaluatedAt": .string(Timestamp.format(now)),
        ])
    }

    /// How many contacts `segment.preview` reads in one read transaction before it yields.
    static let previewSlice = 4_096

    /// A list's `status` filter that names no status: `VALIDATION_ERROR` listing those it may name.
    static func statusProblem(_ statuses: [String]) -> CampaignError {
        CampaignError.validation([
            FieldProblem(
                field: "status", pointer: "/params/status",
                message: "status must be one of \(statuses.joined(separator: ", "))")
        ])
    }

    /// A page of the tenant's social connections, in the byte order of their ids, as the stream
    /// index lists their streams: up to `page.limit` that `select` turns into an item, after the
    /// cursor, which holds the last id read, sealed and bound to `context`. Every connection of the
    /// tenant is read once, before the cursor and after the page too, and handed to `tally`: a
    /// connection's status moves with the clock (it expires), so no projection could count them.
    func connectionPage(
        _ tenant: String, _ page: Query.Page, context: [UInt8], tally: (ConnectionState) -> Void,
        select: (ConnectionState) -> JSON?
    ) throws -> JSON {
        let streamPrefix = CampaignEngine.streamId(tenant, "")
        let prefix = streamPrefix + "con_"
        let after = try page.cursor.map { cursor throws(CampaignError) in
            prefix + String(decoding: try cursors.decode(cursor, context: context), as: UTF8.self)
        }
        var items = [JSON]()
        var last: String?
        var more = false
        var from: String?
        while true {
            let streams = try store.read { try $0.streamIds(withPrefix: prefix, after: from, limit: 256) }
            // Each read starts strictly after the last: a store that answered otherwise would loop here.
            guard let end = streams.last, end != from else { break }
            for stream in streams {
                let id = String(decoding: stream.utf8.dropFirst(streamPrefix.utf8.count), as: UTF8.self)
                guard let state = try loadConnection(tenant, id).0 else { continue }
                tally(state)
                // Before the cursor, or after a full page: counted only.
                if more || after.map({ !$0.utf8.lexicographicallyPrecedes(stream.utf8) }) ?? false { continue }
                if items.count == page.limit {
                    more = true
                    continue
                }
                last = stream
                if let item = select(state) { items.append(item) }
            }
            from = end
        }
        let next =
            more ? last.map { cursors.encode(Array($0.utf8.dropFirst(prefix.utf8.count)), context: context) } : nil
        return Self.listData(items, next)
    }

    static func listData(_ items: [JSON], _ next: String?, _ extra: JSONObject = [:]) -> JSON {
        var members = extra
        members["items"] = .array(items)
        members["nextCursor"] = next.map(JSON.string) ?? .null
        return .object(members)
    }

    func answer(_ query: Query, principal: Principal) async throws -> JSON {
        let tenant = principal.tenant
        // A window that ends before it starts matches nothing: say so rather than answer an empty page.
        switch query {
        case let .campaignList(_, from?, to?, _, _) where from > to,
            let .postList(_, from?, to?, _, _, _) where from > to,
            let .auditHistory(_, _, from?, to?, _) where from > to:
            throw CampaignError.validation([
                FieldProblem(
                    field: "from", pointer: "/params/from",
                    message: "from (\(Timestamp.format(from))) is after to (\(Timestamp.format(to)))")
            ])
        default: break
        }
        switch query {
        case let .campaignGet(campaignId):
            guard let state = try loadCampaign(tenant, campaignId).0, state.status != .deleted else {
                throw CampaignError.notFound("campaign", campaignId, pointer: "/params/campaignId")
            }
            return state.json

        case let .segmentGet(segmentId):
            guard let state = try loadSegment(tenant, segmentId).0 else {
                throw CampaignError.notFound("segment", segmentId, pointer: "/params/segmentId")
            }
            try await projections.catchUpOnWriter("segments")
            let count = try projections.read("segments") { try $0.count(SegmentMembership.count(tenant, segmentId)) }
            guard case var .object(members) = state.json else { return state.json }
            members["memberCount"] = .number(Double(count))
            return .object(members)

        case let .postGet(postId):
            guard let state = try loadPost(tenant, postId).0 else {
                throw CampaignError.notFound("post", postId, pointer: "/params/postId")
            }
            return state.json

        case let .connectionGet(connectionId):
            guard let state = try loadConnection(tenant, connectionId).0 else {
                throw CampaignError.notFound("connection", connectionId, pointer: "/params/connectionId")
            }
            return state.json(at: currentTime)

        case let .contactGet(contactId):
            let (found, _, values) = try loadContact(tenant, contactId)
            guard let state = found else {
                throw CampaignError.notFound("contact", contactId, pointer: "/params/contactId")
            }
            // The active segments it is a member of, as the segments projection has them.
            try await projections.catchUpOnWriter("segments")
            let segments = try projections.read("segments") { reader in
                var ids = [JSON]()
                try reader.scan(Key.prefix(["g", tenant])) { _, value in
                    guard let segment = SegmentState(snapshot: try JSON.parse(value)), segment.status == .active,
                        try reader.get(SegmentMembership.members(tenant, segment.id) + Array(contactId.utf8)) != nil
                    else { return true }
                    ids.append(.string(segment.id))
                    return true
                }
                return ids
            }
            return Self.contactJSON(contactId, state, values, ["segments": .array(segments)])

        case let .contactList(segmentId, page):
            // The contacts not erased (`c‖tenant‖contactId`) or the segment's members, as the segments
            // projection has them; each is then read as `contact.get` reads it, outside the projection's
            // transaction.
            if let segmentId { try requireSegment(tenant, segmentId) }
            try await projections.catchUpOnWriter("segments")
            let prefix = segmentId.map { SegmentMembership.members(tenant, $0) } ?? Key.prefix(["c", tenant])
            let context = CursorCodec.context(tenant, query.name, [segmentId])
            let (ids, next) = try projections.read("segments") { reader in
                try self.page(reader, prefix: prefix, page: page, context: context) {
                    .string(String(decoding: $0.dropFirst(prefix.count), as: UTF8.self))
                }
            }
            let items = try ids.compactMap { id -> JSON? in
                guard let contactId = id.stringValue else { return nil }
                let (found, _, values) = try loadContact(tenant, contactId)
                // Erased since the page was read: it is no longer listed.
                guard let state = found, state.status == .active else { return nil }
                return Self.contactJSON(contactId, state, values)
            }
            return Self.listData(items, next)

        case let .experimentGet(experimentId), let .experimentResults(experimentId):
            guard
                let state = try projections.read(
                    "experiment-results",
                    { try ExperimentResultsProjection.experiment($0, tenant: tenant, id: experimentId) })
            else {
                throw CampaignError.notFound("experiment", experimentId, pointer: "/params/experimentId")
            }
            if case .experimentGet = query { return state.json }
            guard case var .object(members) = ExperimentResults(state).json else { return .null }
            members["experimentId"] = .string(experimentId)
            members["status"] = .string(state.status.rawValue)
            if let winner = state.winner { members["winner"] = .string(winner) }
            return .object(members)

        case let .campaignList(status, from, to, segmentId, page):
            let listed = CampaignStatus.allCases.filter { $0 != .deleted }.map(\.rawValue)
            if let status, !listed.contains(status) { throw Self.statusProblem(listed) }
            if let segmentId { try requireSegment(tenant, segmentId) }
            return try projections.read("campaign-board") { reader in
                let prefix = status.map { Key.prefix(["s", tenant, $0]) } ?? Key.prefix(["r", tenant])
                // A cursor issued before the segment filter was there still reads without one.
                let context = CursorCodec.context(
                    tenant, query.name,
                    [status, from.map(Timestamp.format), to.map(Timestamp.format)] + (segmentId.map { [$0] } ?? []))
                let (items, next) = try self.page(reader, prefix: prefix, page: page, context: context) { key in
                    let id = String(decoding: key.dropFirst(prefix.count), as: UTF8.self)
                    guard let row = try reader.get(CampaignBoard.row(tenant, id)), let state = CampaignBoard.state(row),
                        segmentId == nil || state.segmentId == segmentId
                    else { return nil }
                    if from != nil || to != nil {
                        guard let sendAt = state.sendAt, sendAt >= (from ?? .distantPast),
                            sendAt <= (to ?? .distantFuture)
                        else { return nil }
                    }
                    return state.json
                }
                var counts = JSONObject()
                for status in CampaignStatus.allCases where status != .deleted {
                    counts[status.rawValue] = .number(
                        Double(try reader.count(Key.make(["n", tenant, status.rawValue]))))
                }
                return Self.listData(items, next, ["counts": .object(counts)])
            }

        case let .postList(status, from, to, campaignId, connectionId, page):
            if let status, PostStatus(rawValue: status) == nil {
                throw Self.statusProblem(PostStatus.allCases.map(\.rawValue))
            }
            if let campaignId { try requireCampaign(tenant, campaignId) }
            // A disconnected account's posts are listed too: they are the ones to move elsewhere.
            if let connectionId, try loadConnection(tenant, connectionId).0 == nil {
                throw CampaignError.notFound("connection", connectionId, pointer: "/params/connectionId")
            }
            return try projections.read("publishing-queue") { reader in
                let byTime = from != nil || to != nil
                // By time, the calendar; else one campaign's posts (its `p` keys), or every post. The
                // last two end in the post's id, so a cursor reads on in either.
                let prefix =
                    byTime
                    ? Key.prefix(["c", tenant])
                    : campaignId.map { PublishingQueue.campaignPostsPrefix(tenant, $0) } ?? Key.prefix(["r", tenant])
                let upper = Key.readU64(Key.time(to ?? .distantFuture))
                // Start the calendar scan at `from`: just before its first key.
                let start = byTime ? from.map { Key.u64(max(1, Key.readU64(Key.time($0))) - 1) + [0xff] } : nil
                var passedEnd = false
                // A cursor issued before the campaign and connection filters were there still reads
                // without them.
                let context = CursorCodec.context(
                    tenant, query.name,
                    [status, from.map(Timestamp.format), to.map(Timestamp.format)] + (campaignId.map { [$0] } ?? [])
                        + (connectionId.map { [$0] } ?? []))
                let (items, next) = try self.page(reader, prefix: prefix, page: page, context: context, start: start) {
                    key in
                    let rest = Array(key.dropFirst(prefix.count))
                    let id: String
                    if byTime {
                        guard rest.count > 8 else { return nil }
                        if Key.readU64(rest.prefix(8)) > upper {
                            passedEnd = true
                            return nil
                        }
                        id = String(decoding: rest.dropFirst(8), as: UTF8.self)
                    } else {
                        id = String(decoding: rest, as: UTF8.self)
                    }
                    guard !passedEnd, let row = try reader.json(PublishingQueue.row(tenant, id)),
                        let state = PostState(snapshot: row)
                    else { return nil }
                    if let status, state.status.rawValue != status { return nil }
                    if let campaignId, state.campaignId != campaignId { return nil }
                    if let connectionId, !state.connectionIds.contains(connectionId) { return nil }
                    return state.json
                }
                var counts = JSONObject()
                for status in PostStatus.allCases {
                    counts[status.rawValue] = .number(
                        Double(try reader.count(Key.make(["n", tenant, status.rawValue]))))
                }
                return Self.listData(items, passedEnd ? nil : next, ["counts": .object(counts)])
            }

        case let .segmentMembers(segmentId, page):
            try requireSegment(tenant, segmentId)
            try await projections.catchUpOnWriter("segments")
            return try projections.read("segments") { reader in
                let prefix = SegmentMembership.members(tenant, segmentId)
                let context = CursorCodec.context(tenant, query.name, [segmentId])
                let (items, next) = try self.page(reader, prefix: prefix, page: page, context: context) { key in
                    .string(String(decoding: key.dropFirst(prefix.count), as: UTF8.self))
                }
                return .object([
                    "segmentId": .string(segmentId),
                    "count": .number(Double(try reader.count(SegmentMembership.count(tenant, segmentId)))),
                    "contactIds": .array(items), "nextCursor": next.map(JSON.string) ?? .null,
                ])
            }

        case let .segmentList(status, page):
            if let status, SegmentStatus(rawValue: status) == nil {
                throw Self.statusProblem(["active", "archived"])
            }
            try await projections.catchUpOnWriter("segments")
            return try projections.read("segments") { reader in
                let prefix = Key.prefix(["g", tenant])
                let context = CursorCodec.context(tenant, query.name, [status])
                let (items, next) = try self.page(reader, prefix: prefix, page: page, context: context) { key in
                    guard let state = try reader.json(key).flatMap(SegmentState.init(snapshot:)),
                        status.map({ state.status.rawValue == $0 }) ?? true,
                        case var .object(members) = state.json
                    else { return nil }
                    members["memberCount"] = .number(
                        Double(try reader.count(SegmentMembership.count(tenant, state.id))))
                    return .object(members)
                }
                var counts = JSONObject()
                for status in SegmentStatus.allCases {
                    counts[status.rawValue] = .number(Double(try reader.count(SegmentMembership.count(tenant, status))))
                }
                return Self.listData(items, next, ["counts": .object(counts)])
            }

        case let .segmentPreview(rules, limit):
            let schema = try loadSchema(tenant).0
            let rule = try SegmentRule.parse(rules, schema: schema, at: "/params/rules", new: true)
            return try await preview(rule, schema: schema, tenant: tenant, limit: limit)

        case .fieldList:
            let (schema, version) = try loadSchema(tenant)
            let items = schema.fields.sorted { $0.key < $1.key }.map { name, type in
                var item = schema.definition(of: name) ?? [:]
                item["builtIn"] = .bool(ContactSchema.builtIn[name] != nil)
                item["operators"] = .array(type.operators.map(JSON.string))
                return JSON.object(item)
            }
            return .object(["items": .array(items), "version": .number(Double(version))])

        case let .connectionList(status, platform, page):
            let statuses = ["connected", "expired", "disconnected"]
            if let status, !statuses.contains(status) { throw Self.statusProblem(statuses) }
            if let platform, PlatformRules.all[platform] == nil {
                throw CampaignError.validation([
                    FieldProblem(
                        field: "platform", pointer: "/params/platform",
                        message: "platform must be one of \(PlatformRules.all.keys.sorted().joined(separator: ", "))")
                ])
            }
            let now = currentTime
            // The tenant's connections by status at the engine clock, whatever the filters.
            var counts = Dictionary(uniqueKeysWithValues: statuses.map { ($0, 0) })
            let listed = try connectionPage(
                tenant, page, context: CursorCodec.context(tenant, query.name, [status, platform]),
                tally: { counts[$0.status(at: now), default: 0] += 1 },
                select: { state in
                    (status.map { state.status(at: now) == $0 } ?? true)
                        && (platform.map { state.platform == $0 } ?? true) ? state.json(at: now) : nil
                })
            guard case var .object(members) = listed else { return listed }
            members["counts"] = .object(
                JSONObject(uniqueKeysWithValues: counts.map { ($0.key, .number(Double($0.value))) }))
            return .object(members)

        case let .experimentList(status, campaignId, page):
            if let status, ExperimentStatus(rawValue: status) == nil {
                throw Self.statusProblem(ExperimentStatus.allCases.map(\.rawValue))
            }
            if let campaignId { try requireCampaign(tenant, campaignId) }
            return try projections.read("experiment-results") { reader in
                let prefix = Key.prefix(["e", tenant])
                let context = CursorCodec.context(tenant, query.name, [status, campaignId])
                let (items, next) = try self.page(reader, prefix: prefix, page: page, context: context) { key in
                    guard let state = try reader.json(key).flatMap(ExperimentState.init(snapshot:)),
                        status.map({ state.status.rawValue == $0 }) ?? true,
                        campaignId.map({ state.campaignId == $0 }) ?? true
                    else { return nil }
                    return state.json
                }
                var counts = JSONObject()
                for status in ExperimentStatus.allCases {
                    counts[status.rawValue] = .number(
                        Double(try reader.count(ExperimentResultsProjection.count(tenant, status))))
                }
                return Self.listData(items, next, ["counts": .object(counts)])
            }

        case let .auditHistory(streamId, actor, from, to, page):
            let fromBound = Key.readU64(Key.time(from ?? Date(timeIntervalSince1970: 0)))
            let toBound = Key.readU64(Key.time(to ?? .distantFuture))
            /// The event as the trail shows it when it is the tenant's and within the filters.
            func item(_ event: RecordedEvent) -> JSON? {
                let millis = Key.readU64(Key.time(event.occurredAt))
                guard event.tenant == tenant, millis >= fromBound, millis <= toBound,
                    actor == nil || event.actor == actor
                else { return nil }
                return CampaignEngine.auditJSON(event)
            }
            let context = CursorCodec.context(
                tenant, query.name, [streamId, actor, from.map(Timestamp.format), to.map(Timestamp.format)])
            if let streamId {
                // By stream: the log's own stream index, always current (no catch-up to wait for).
                let stream = streamId.contains(":") ? streamId : CampaignEngine.streamId(tenant, streamId)
                return try store.read { txn in
                    let (items, next) = try self.streamPage(txn, stream, of: tenant, page: page, context: context, item)
                    return Self.listData(items, next)
                }
            }
            try await projections.catchUpOnWriter("audit")
            return try store.read { txn in
                try projections.read("audit", in: txn) { reader in
                    let prefix = actor.map { AuditIndex.actorPrefix(tenant, $0) } ?? AuditIndex.timePrefix(tenant)
                    let (items, next) = try self.page(reader, prefix: prefix, page: page, context: context) { key in
                        try txn.event(at: Key.readU64(key.suffix(8))).flatMap(item)
                    }
                    return Self.listData(items, next)
                }
            }

        case let .systemHealth(interval):
            // About the whole engine (its disk, its writer, every tenant's catch-up): the operator's.
            guard let operatorTenant = configuration.operatorTenant, operatorTenant == tenant else {
                // As for a tick, the operator's tenant is not named.
                let who = configuration.operatorTenant == nil ? "the host, through engine.health()," : "the operator"
                throw CampaignError(.forbidden, "only \(who) reads the engine's health")
            }
            return health(HealthThresholds(maximumTickInterval: interval.map { .seconds($0) })).jsonValue
        }
    }

    /// Reads up to `page.limit` events of `streamId` after the cursor, keeping those `select` turns
    /// into an item, through the log's stream index; `tenant` asks. A cursor holds the position of the last event
    /// looked at (as the audit index's stream keys did before version 2, so a cursor issued then
    /// still reads on), sealed and bound to `context`.
    func streamPage(
        _ txn: ReadTransaction, _ streamId: String, of tenant: String, page: Query.Page, context: [UInt8],
        _ select: (RecordedEvent) throws -> JSON?
    ) throws -> (items: [JSON], next: String?) {
        // A name in another tenant's namespace (`other:…`, where the engine writes only that
        // tenant's events) is not read at all.
        let namespace = streamId.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard namespace.count < 2 || namespace[0] == tenant || !Principal.isValidTenant(String(namespace[0]))
        else { return ([], nil) }
        var version: UInt64 = 1
        if let cursor = page.cursor {
            let after = try cursors.decode(cursor, context: context)
            guard after.count == 8, let event = try txn.event(at: Key.readU64(after[...])), event.streamId == streamId
            else { throw CursorCodec.invalid }
            version = event.streamVersion + 1
        }
        var items = [JSON]()
        var last: UInt64?
        while true {
            let events: [RecordedEvent]
            do {
                events = try txn.streamEvents(streamId, from: version, limit: max(page.limit, 64))
            } catch EventStoreError.invalidKey {
                return ([], nil)  // a name the log cannot hold (empty, too long, a NUL) has no events
            }
            for event in events {
                if items.count == page.limit {
                    return (items, last.map { cursors.encode(Key.u64($0), context: context) })
                }
                last = event.position
                if let item = try select(event) { items.append(item) }
            }
            guard let final = events.last, events.count == max(page.limit, 64) else { return (items, nil) }
            version = final.streamVersion + 1
        }
    }

    /// An event as the audit trail shows it.
    public static func auditJSON(_ event: RecordedEvent) -> JSON {
        .object([
            "position": .number(Double(event.position)), "streamId": .string(event.streamId),
            "version": .number(Double(event.streamVersion)),
            "type": .string(event.type), "schemaVersion": .number(Double(event.schemaVersion)),
            "occurredAt": .string(Timestamp.format(event.occurredAt)), "tenant": .string(event.tenant),
            "actor": .string(event.actor),
            "requestId": .string(event.requestId), "causationId": .string(event.causationId),
            "payload": (try? JSON.parse(event.payload)) ?? .null,
            "hash": .string(event.hash.hexString),
        ])
    }

    /// Appends the canonical bytes of ``auditJSON(_:)`` (the same bytes) to `out`, written member
    /// by member in key order instead of made a JSON tree: `campaign replay --json` writes every
    /// event it shows this way. Only the payload is parsed, so that it comes out canonical.
    public static func appendAuditJSON(_ event: RecordedEvent, to out: inout [UInt8]) {
        DocumentWriter.append(auditKeys, to: &out) { document in
            document.string("actor", event.actor)
            document.string("causationId", event.causationId)
            document.hex("hash", event.hash)
            document.time("occurredAt", event.occurredAt)
            document.payload("payload", event.payload)
            document.number("position", event.position)
            document.string("requestId", event.requestId)
            document.number("schemaVersion", UInt64(event.schemaVersion))
            document.string("streamId", event.streamId)
            document.string("tenant", event.tenant)
            document.string("type", event.type)
            document.number("version", event.streamVersion)
        }
    }

    /// The keys ``appendAuditJSON(_:to:)`` writes, in key order.
    private static let auditKeys = MemberKeys([
        "actor", "causationId", "hash", "occurredAt", "payload", "position", "requestId", "schemaVersion", "streamId",
        "tenant", "type", "version",
    ])

    /// Any aggregate's read model as of a position or a time, folded from the log (snapshots are
    /// not used: they hold only the latest state).
    /// - Parameters:
    ///   - id: the resource id; its prefix (`cmp_`, `seg_`, `ctc_`, `con_`, `pst_`, `exp_`) says the kind,
    ///     and `schema` names the tenant's contact fields: `{"fields": [{name, type, values?}]}`, the
    ///     fields the tenant had defined, in name order, each as `field.define` takes it.
    /// - Returns: nil when the resource did not exist then (not yet created, or deleted).
    /// - Throws: `INVALID_FORMAT` when the id's prefix names no kind of resource.
    public func state(tenant: String, id: String, asOf: PointInTime) throws -> JSON? {
        try CampaignEngine.state(in: store, tenant: tenant, id: id, asOf: asOf)
    }

    /// ``state(tenant:id:asOf:)`` read straight from a store (one opened read-only will do).
    public static func state(in store: EventStore, tenant: String, id: String, asOf: PointInTime) throws -> JSON? {
        let streamId = CampaignEngine.streamId(tenant, id)
        func fold<State>(_ evolve: (State?, EventRecord) -> State?) throws -> State? {
            try CampaignEngine.fold(streamId, in: store, asOf: asOf, evolve)
        }
        switch id.prefix(4) {
        case "cmp_": return try (fold(Campaign.evolve) as CampaignState?)?.json
        case "seg_": return try (fold(Segment.evolve) as SegmentState?)?.json
        case "ctc_": return try (fold(Contact.evolve) as ContactState?)?.snapshot
        case "con_": return try (fold(SocialConnection.evolve) as ConnectionState?)?.snapshot
        case "pst_": return try (fold(Post.evolve) as PostState?)?.json
        case "exp_": return try (fold(Experiment.evolve) as ExperimentState?)?.json
        default:
            guard id == "schema" else {
                throw CampaignError(
                    .invalidFormat,
                    "id \(id) names no kind of resource: an id starts with cmp_, seg_, ctc_, con_, pst_ or exp_, "
                        + "or is schema")
            }
            let schema: ContactSchema? = try fold { state, event in TenantSchema.evolve(state ?? ContactSchema(), event)
            }
            return schema.map { schema in
                .object([
                    "fields": .array(schema.definedNames.compactMap { schema.definition(of: $0).map(JSON.object) })
                ])
            }
        }
    }
}
