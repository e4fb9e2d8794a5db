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

    /// The three kinds of key, by their first part; `a` < `s` < `t`, so all actor keys sort first.
    enum Family: UInt8, CaseIterable {
        case actor = 0x61
        case stream = 0x73
        case time = 0x74
    }

    /// Appends a key's prefix: `family‖tenant‖` and, for actor and stream keys, `name‖`.
    static func appendPrefix(_ family: Family, tenant: String, name: String?, to key: inout [UInt8]) {
        key.append(family.rawValue)
        key.append(0)
        Key.appendPart(tenant, to: &key)
        if let name { Key.appendPart(name, to: &key) }
    }

    /// Indexes one event.
    public func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws {
        let e = event.envelope
        for family in Family.allCases {
            var key = [UInt8]()
            switch family {
            case .actor: Self.appendPrefix(family, tenant: e.tenant, name: e.actor, to: &key)
            case .stream: Self.appendPrefix(family, tenant: e.tenant, name: e.streamId, to: &key)
            case .time:
                Self.appendPrefix(family, tenant: e.tenant, name: nil, to: &key)
                Key.append(Key.milliseconds(e.occurredAt), to: &key)
            }
            Key.append(e.position, to: &key)
            try table.put(key)
        }
    }
}
