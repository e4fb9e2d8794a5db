import CampaignDomain
import Foundation

/// The publishing queue and calendar.
///
/// Keys: `r‖tenant‖postId` → the post's state; `d‖` + due time + `tenant‖postId` → empty, for every
/// post the scheduler must look at (publish time, retry time, in-doubt deadline);
/// `c‖tenant‖` + time + postId → empty, the calendar (publish time while scheduled, publication
/// time once published); `n‖tenant‖status` → count.
public struct PublishingQueue: Projection {
    /// Creates the projection.
    public init() {}
    /// `publishing-queue`, the name its tables and `campaign projections` use.
    public var name: String { "publishing-queue" }
    /// 1: the first shape of its rows (a change rebuilds it).
    public var version: Int { 1 }
    /// Inline: a post's row and calendar entry change in the transaction that changes the post.
    public var mode: ProjectionMode { .inline }

    /// The key of a post's row.
    public static func row(_ tenant: String, _ id: String) -> [UInt8] { Key.make(["r", tenant, id]) }

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
        try table.put(Self.row(tenant, id), json: after.snapshot)
    }
}

extension PublishingQueue: FoldedRebuild {
    /// Its own `apply` over rows in memory (it reads and writes nothing else).
    public func makeFold() -> any RebuildFold { InMemoryFold(self) }
}
