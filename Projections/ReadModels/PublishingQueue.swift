import CampaignDomain
import Foundation
import Hashing

/// The publishing queue and calendar.
///
/// Keys: `r‖tenant‖postId` → the post's state; `d‖` + due time + `tenant‖postId` → empty, for every
/// post the scheduler must look at (publish time, retry time, in-doubt deadline);
/// `c‖tenant‖` + time + postId → empty, the calendar (publish time while scheduled, publication
/// time once published); `n‖tenant‖status` → count; `p‖tenant‖campaignId‖postId` → empty, for
/// every post that names a campaign.
public struct PublishingQueue: Projection {
    /// Creates the projection.
    public init() {}
    /// `publishing-queue`, the name its tables and `campaign projections` use.
    public var name: String { "publishing-queue" }
    /// 2: the rows of version 1 and the `p` keys, which list a campaign's posts (a change rebuilds
    /// it).
    public var version: Int { 2 }
    /// Inline: a post's row and calendar entry change in the transaction that changes the post.
    public var mode: ProjectionMode { .inline }

    /// The key of a post's row.
    public static func row(_ tenant: String, _ id: String) -> [UInt8] { Key.make(["r", tenant, id]) }

    /// The key that lists post `id` under the campaign it names.
    static func campaignPostKey(_ tenant: String, _ campaignId: String, _ id: String) -> [UInt8] {
        Key.make(["p", tenant, campaignId, id])
    }

    /// The prefix of the keys that list campaign `campaignId`'s posts (of every state): each key
    /// goes on with a post's id, so they come in id order.
    public static func campaignPostsPrefix(_ tenant: String, _ campaignId: String) -> [UInt8] {
        Key.prefix(["p", tenant, campaignId])
    }

    /// The calendar time of a post: its publish time, or when it was published.
    static func calendarTime(_ state: PostState?) -> Date? {
        guard let state else { return nil }
        switch state.status {
        case .scheduled: return state.publishAt
        case .published: return state.updatedAt
        default: return nil
        }
    }

    /// The calendar key of a post at `time`.
    public static func calendarKey(_ tenant: String, _ time: Date, _ id: String) -> [UInt8] {
        Key.prefix(["c", tenant]) + Key.time(time) + Array(id.utf8)
    }

    /// Every post event type.
    public var eventTypes: Set<String>? { Set(PostEvent.Kind.allCases.map(\.rawValue)) }

    /// Folds a post event: rewrites the post's row and moves its due key, calendar key and status count.
    public func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws {
        guard PostEvent.Kind(rawValue: event.envelope.type) != nil, let id = event.payload["postId"]?.stringValue else {
            return
        }
        let tenant = event.envelope.tenant
        let before = try table.json(Self.row(tenant, id)).flatMap(PostState.init(snapshot:))
        guard let after = Post.evolve(before, event.record) else { return }
        if let due = Post.nextDue(before) { try table.delete(ScheduleIndex.dueKey(due, tenant, id)) }
        if let due = Post.nextDue(after) { try table.put(ScheduleIndex.dueKey(due, tenant, id)) }
        if let time = Self.calendarTime(before) { try table.delete(Self.calendarKey(tenant, time, id)) }
        if let time = Self.calendarTime(after) { try table.put(Self.calendarKey(tenant, time, id)) }
        if let before { try table.add(-1, to: Key.make(["n", tenant, before.status.rawValue])) }
        try table.add(1, to: Key.make(["n", tenant, after.status.rawValue]))
        // A post names its campaign when it is created, and keeps it: the key moves only then.
        if before?.campaignId != after.campaignId {
            if let old = before?.campaignId { try table.delete(Self.campaignPostKey(tenant, old, id)) }
            if let new = after.campaignId { try table.put(Self.campaignPostKey(tenant, new, id)) }
        }
        try table.put(Self.row(tenant, id), json: after.snapshot)
    }
}

extension PublishingQueue: FoldedRebuild {
    /// Keeps each post's state as a value while it folds, and makes the rows once at the end.
    public func makeFold() -> any RebuildFold { Fold() }

    /// The rebuild's fold: the same `evolve` as ``apply(_:to:)``, on a state kept as a value instead
    /// of decoded from its row and encoded back on every event (a row reads back exactly as it was
    /// written: ``PostState/init(snapshot:)``). An event `evolve` refuses leaves the state as it
    /// was, as it leaves the row. Every other key follows from the final states: a post's due key
    /// and calendar key are those of its last state (each event moves them from the state before to
    /// the state after), its campaign key is its last state's (the key moves with the campaign it
    /// names), and a status's count is the number of posts in it (a count that falls to
    /// zero has no row).
    final class Fold: RebuildFold {
        private var posts: [ByteKey: (tenant: String, id: String, state: PostState)] = [:]

        /// Folds a post event.
        func fold(_ event: ProjectedEvent) throws {
            guard PostEvent.Kind(rawValue: event.envelope.type) != nil,
                let id = event.payload["postId"]?.stringValue
            else { return }
            let tenant = event.envelope.tenant
            let key = ByteKey(PublishingQueue.row(tenant, id))
            guard let after = Post.evolve(posts[key]?.state, event.record) else { return }
            posts[key] = (tenant, id, after)
        }

        /// Every post's row, due key, calendar key and campaign key, and each status's count, in key order.
        func rows(_: PersonalDataReader) throws -> SortedRows {
            let rows = MemoryRows()
            var counts: [ByteKey: UInt64] = [:]
            for (key, post) in posts {
                rows.values[key] = post.state.snapshot.bytes
                if let due = Post.nextDue(post.state) {
                    rows.values[ByteKey(ScheduleIndex.dueKey(due, post.tenant, post.id))] = []
                }
                if let time = PublishingQueue.calendarTime(post.state) {
                    rows.values[ByteKey(PublishingQueue.calendarKey(post.tenant, time, post.id))] = []
                }
                if let campaignId = post.state.campaignId {
                    rows.values[ByteKey(PublishingQueue.campaignPostKey(post.tenant, campaignId, post.id))] = []
                }
                counts[ByteKey(Key.make(["n", post.tenant, post.state.status.rawValue])), default: 0] += 1
            }
            posts = [:]
            for (key, count) in counts { rows.values[key] = Key.u64(count) }
            return rows.takeSorted()
        }
    }
}
