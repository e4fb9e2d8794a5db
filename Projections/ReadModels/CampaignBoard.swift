import CampaignDomain
import Foundation

/// The campaign board: every live campaign of a tenant by status, with counts.
///
/// Keys: `r‖tenant‖campaignId` → the campaign's status ‖ `0x00` ‖ its state (snapshot JSON);
/// `s‖tenant‖status‖campaignId` → empty; `n‖tenant‖status` → count. Deleted campaigns leave the
/// board. The status leads the row so an event whose state the engine already folded moves the
/// campaign between statuses without parsing the stored state.
public struct CampaignBoard: Projection {
    /// Creates the projection.
    public init() {}
    /// `campaign-board`.
    public var name: String { "campaign-board" }
    /// 2: rows lead with the status.
    public var version: Int { 2 }
    /// Inline: a list right after a command shows it.
    public var mode: ProjectionMode { .inline }

    /// The key of a campaign's row.
    public static func row(_ tenant: String, _ id: String) -> [UInt8] { Key.make(["r", tenant, id]) }

    /// A campaign's state from its row, or nil.
    public static func state(_ row: [UInt8]) -> CampaignState? {
        guard let separator = row.firstIndex(of: 0) else { return nil }
        return (try? JSON.parse(Array(row[(separator + 1)...]))).flatMap(CampaignState.init(snapshot:))
    }

    /// Folds a campaign event: with the state the writer folded when it has one, else by folding
    /// the stored row.
    public func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws {
        guard CampaignEvent.Kind(rawValue: event.envelope.type) != nil else { return }
        let tenant = event.envelope.tenant
        let known = event.stateAfter as? CampaignState
        guard let id = known?.id ?? event.payload["campaignId"]?.stringValue else { return }
        let row = try table.get(Self.row(tenant, id))
        let beforeStatus = row.flatMap { row in
            row.firstIndex(of: 0).map { String(decoding: row[..<$0], as: UTF8.self) }
        }
        let after = known ?? Campaign.evolve(row.flatMap(Self.state), event.record)
        let afterStatus = after.flatMap { $0.status == .deleted ? nil : $0.status.rawValue }
        if beforeStatus != afterStatus {
            if let beforeStatus {
                try table.delete(Key.make(["s", tenant, beforeStatus, id]))
                try table.add(-1, to: Key.make(["n", tenant, beforeStatus]))
            }
            if let afterStatus {
                try table.put(Key.make(["s", tenant, afterStatus, id]))
                try table.add(1, to: Key.make(["n", tenant, afterStatus]))
            }
        }
        if let after, let afterStatus {
            try table.put(Self.row(tenant, id), Array(afterStatus.utf8) + [0] + after.snapshot.bytes)
        } else {
            try table.delete(Self.row(tenant, id))
        }
    }
}
