import CampaignDomain
import Foundation

/// The audit index: every event of a tenant by actor and by time.
///
/// Keys (values empty; the event is read from the log by position):
/// `a‖tenant‖actor‖` + position; `t‖tenant‖` + time (ms) + position. Events by stream are the
/// log's own stream index (version 1 kept a third family, `s‖tenant‖streamId‖` + position, which
/// repeated it: a third of the keys, and most of the rebuild's work, for 685,000 streams of a
/// demo-shaped log).
public struct AuditIndex: Projection {
    /// Creates the projection.
    public init() {}
    /// `audit`, the name its tables and `campaign projections` use.
    public var name: String { "audit" }
    /// 2: actor and time keys only (1 also kept stream keys, which the log's own index serves now).
    public var version: Int { 2 }
    /// Catch-up: auditors read it after the runner catches up.
    public var mode: ProjectionMode { .catchUp }
    /// False: `apply` and the rebuild's fold read each event's envelope (position, time, tenant,
    /// actor) alone.
    public var readsPayloads: Bool { false }

    /// The two kinds of key, by their first part; `a` < `t`, so all actor keys sort first.
    enum Family: UInt8, CaseIterable {
        case actor = 0x61
        case time = 0x74
    }

    /// The prefix of the actor keys of `actor` in `tenant`.
    public static func actorPrefix(_ tenant: String, _ actor: String) -> [UInt8] {
        var key = [UInt8]()
        appendPrefix(.actor, tenant: tenant, name: actor, to: &key)
        return key
    }

    /// The prefix of the time keys of `tenant`.
    public static func timePrefix(_ tenant: String) -> [UInt8] {
        var key = [UInt8]()
        appendPrefix(.time, tenant: tenant, name: nil, to: &key)
        return key
    }

    /// Appends a key's prefix: `family‖tenant‖` and, for actor keys, `name‖`.
    static func appendPrefix(_ family: Family, tenant: String, name: String?, to key: inout [UInt8]) {
        key.append(family.rawValue)
        key.append(0)
        Key.appendPart(tenant, to: &key)
        if let name { Key.appendPart(name, to: &key) }
    }

    /// Appends what follows a key's prefix: for time keys the time (ms), then the position.
    static func appendSuffix(_ family: Family, time: UInt64, position: UInt64, to key: inout [UInt8]) {
        if family == .time { Key.append(time, to: &key) }
        Key.append(position, to: &key)
    }

    /// Indexes one event: an actor key and a time key, both ending in its position, with empty values.
    public func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws {
        let e = event.envelope
        for family in Family.allCases {
            let name: String? =
                switch family {
                case .actor: e.actor
                case .time: nil
                }
            var key = [UInt8]()
            Self.appendPrefix(family, tenant: e.tenant, name: name, to: &key)
            Self.appendSuffix(family, time: Key.milliseconds(e.occurredAt), position: e.position, to: &key)
            try table.put(key)
        }
    }
}
