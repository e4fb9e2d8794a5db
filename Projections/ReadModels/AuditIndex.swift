import CampaignDomain
import Foundation

/// The audit index: every event of a tenant by stream, by actor and by time.
///
/// Keys (values empty; the event is read from the log by position):
/// `s‖tenant‖streamId‖` + position; `a‖tenant‖actor‖` + position; `t‖tenant‖` + time (ms) + position.
public struct AuditIndex: Projection {
    /// Creates the projection.
    public init() {}
    /// `audit`.
    public var name: String { "audit" }
    /// 1.
    public var version: Int { 1 }
    /// Catch-up: auditors read it after the runner catches up.
    public var mode: ProjectionMode { .catchUp }

    /// Indexes one event.
    public func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws {
        let e = event.envelope
        let position = Key.u64(e.position)
        try table.put(Key.prefix(["s", e.tenant, e.streamId]) + position)
        try table.put(Key.prefix(["a", e.tenant, e.actor]) + position)
        try table.put(Key.prefix(["t", e.tenant]) + Key.time(e.occurredAt) + position)
    }
}
