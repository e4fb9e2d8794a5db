import CampaignDomain
import Foundation

/// The campaign board: every live campaign of a tenant by status, with counts.
///
/// Keys: `r‖tenant‖campaignId` → the campaign's state; `s‖tenant‖status‖campaignId` → empty;
/// `n‖tenant‖status` → count. Deleted campaigns leave the board.
public struct CampaignBoard: Projection {
    /// Creates the projection.
    public init() {}
    /// `campaign-board`.
    public var name: String { "campaign-board" }
    /// 1.
    public var version: Int { 1 }
    /// Inline: a list right after a command shows it.
    public var mode: ProjectionMode { .inline }

    /// The key of a campaign's row.
    public static func row(_ tenant: String, _ id: String) -> [UInt8] { Key.make(["r", tenant, id]) }

    /// Folds a campaign event.
    public func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws {
        guard event.envelope.type.hasPrefix("campaign."), let id = event.payload["campaignId"]?.stringValue else {
            return
        }
        let tenant = event.envelope.tenant
        let before = try table.json(Self.row(tenant, id)).flatMap(CampaignState.init(snapshot:))
        let after = Campaign.evolve(before, event.record)
        if let before {
            try table.delete(Key.make(["s", tenant, before.status.rawValue, id]))
            try table.add(-1, to: Key.make(["n", tenant, before.status.rawValue]))
        }
        if let after, after.status != .deleted {
            try table.put(Self.row(tenant, id), json: after.snapshot)
            try table.put(Key.make(["s", tenant, after.status.rawValue, id]))
            try table.add(1, to: Key.make(["n", tenant, after.status.rawValue]))
        } else {
            try table.delete(Self.row(tenant, id))
        }
    }
}
