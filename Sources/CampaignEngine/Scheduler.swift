import CampaignDomain
import EventStore
import Foundation

/// What one scheduler tick did.
public struct TickReport: Sendable, Equatable {
    /// One piece of due work and how it ended.
    public struct Item: Sendable, Equatable {
        /// The tenant.
        public var tenant: String
        /// The campaign activated (or that failed to activate).
        public var campaignId: String
        /// Nil when it succeeded.
        public var error: CampaignError?
    }

    /// The time the tick ran at.
    public var now: Date
    /// Every due item handled, in time order.
    public var items: [Item]

    /// The items that succeeded.
    public var activated: [Item] { items.filter { $0.error == nil } }

    /// The wire data for a tick requested by `tenant`: only that tenant's items are listed.
    func json(for tenant: String) -> JSON {
        let mine = items.filter { $0.tenant == tenant }
        return .object([
            "now": .string(Timestamp.format(now)),
            "activated": .array(mine.filter { $0.error == nil }.map { .string($0.campaignId) }),
            "failed": .array(mine.compactMap { item in
                item.error.map { .object(["campaignId": .string(item.campaignId), "error": $0.body(requestId: "")]) }
            }),
        ])
    }
}

extension CampaignEngine {
    /// Runs the scheduler: activates every scheduled campaign whose send time has come. Due work
    /// is found through the `campaign-schedule` time index, so a tick with nothing due reads one
    /// key however many campaigns wait.
    ///
    /// With a ``ManualClock``, `now` moves the clock first; with the system clock, `now` is
    /// ignored (a tick may not run the future early).
    /// - Returns: what was activated and what failed (a failed activation stays due).
    public func tick(now requested: Date? = nil, requestId: String = "tick") async -> TickReport {
        if let requested, let manual = configuration.clock as? ManualClock { manual.set(requested) }
        let now = configuration.clock.now()
        var report = TickReport(now: now, items: [])
        let due: [(tenant: String, campaignId: String)]
        do {
            due = try store.read { try tables.dueCampaigns(at: now, limit: 100_000, in: $0) }
        } catch {
            return report
        }
        for work in due {
            let system = Principal(tenant: work.tenant, subject: "scheduler", role: .admin, scopes: Principal.allScopes, expiresAt: .distantFuture)
            let request = EngineRequest.command(.campaignTransition(.activate, campaignId: work.campaignId), as: system, requestId: requestId)
            do {
                _ = try await perform(.campaignTransition(.activate, campaignId: work.campaignId), request: request, principal: system)
                report.items.append(.init(tenant: work.tenant, campaignId: work.campaignId, error: nil))
            } catch let error as CampaignError {
                report.items.append(.init(tenant: work.tenant, campaignId: work.campaignId, error: error))
            } catch {
                report.items.append(.init(tenant: work.tenant, campaignId: work.campaignId, error: CampaignEngine.map(error)))
            }
        }
        return report
    }
}
