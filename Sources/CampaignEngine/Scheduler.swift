import CampaignDomain
import CampaignProjections
import EventStore
import Foundation

/// What one scheduler tick did.
public struct TickReport: Sendable, Equatable {
    /// One piece of due work and how it ended.
    public struct Item: Sendable, Equatable {
        /// `campaign` (activation) or `post` (publish, retry, or an in-doubt attempt settled).
        public var kind: String
        /// The tenant.
        public var tenant: String
        /// The campaign or post.
        public var id: String
        /// The post's state afterwards (for posts).
        public var status: String?
        /// Nil when it succeeded (or is still on its way).
        public var error: CampaignError?
    }

    /// The time the tick ran at.
    public var now: Date
    /// Every due item handled, campaigns first, each kind in time order.
    public var items: [Item]

    /// Campaigns activated.
    public var activated: [Item] { items.filter { $0.kind == "campaign" && $0.error == nil } }

    /// The wire data for a tick requested by `tenant`: only that tenant's items are listed.
    func json(for tenant: String) -> JSON {
        let mine = items.filter { $0.tenant == tenant }
        return .object([
            "now": .string(Timestamp.format(now)),
            "activated": .array(mine.filter { $0.kind == "campaign" && $0.error == nil }.map { .string($0.id) }),
            "posts": .array(mine.filter { $0.kind == "post" }.map { item in
                var members: [String: JSON] = ["postId": .string(item.id), "status": .string(item.status ?? "")]
                if let error = item.error { members["error"] = error.body(requestId: "") }
                return .object(members)
            }),
            "failed": .array(mine.filter { $0.kind == "campaign" && $0.error != nil }.map { item in
                .object(["campaignId": .string(item.id), "error": item.error!.body(requestId: "")])
            }),
        ])
    }
}

extension CampaignEngine {
    /// Runs the scheduler: activates scheduled campaigns whose send time has come, publishes
    /// posts whose publish time has come, retries what is due, and settles attempts left
    /// without an outcome. Due work is found through time indexes (`campaign-schedule`,
    /// `post-schedule`), so a tick with nothing due reads one key of each however much waits.
    ///
    /// With a ``ManualClock``, `now` moves the clock first; with the system clock, `now` is
    /// ignored (a tick may not run the future early).
    public func tick(now requested: Date? = nil, requestId: String = "tick") async -> TickReport {
        if let requested, let manual = configuration.clock as? ManualClock { manual.set(requested) }
        let now = configuration.clock.now()
        var report = TickReport(now: now, items: [])
        let projections = self.projections
        guard let (campaigns, posts) = try? store.read({ txn in
            (try projections.read("schedule-index", in: txn) { try ScheduleIndex.due($0, at: now, limit: 100_000) },
             try projections.read("publishing-queue", in: txn) { try ScheduleIndex.due($0, at: now, limit: 100_000) })
        }) else { return report }

        for work in campaigns {
            let system = CampaignEngine.scheduler(work.tenant)
            let command = Command.campaignTransition(.activate, campaignId: work.id)
            do {
                _ = try await perform(command, request: .command(command, as: system, requestId: requestId), principal: system)
                report.items.append(.init(kind: "campaign", tenant: work.tenant, id: work.id))
            } catch {
                report.items.append(.init(kind: "campaign", tenant: work.tenant, id: work.id, error: CampaignEngine.campaignError(error)))
            }
        }
        for work in posts {
            let system = CampaignEngine.scheduler(work.tenant)
            let command = Command.postPublish(postId: work.id)
            let request = EngineRequest.command(command, as: system, requestId: requestId)
            var item = TickReport.Item(kind: "post", tenant: work.tenant, id: work.id)
            do {
                let state = try loadPost(work.tenant, work.id).0
                if state?.status == .scheduled {
                    _ = try await perform(command, request: request, principal: system)
                } else if let after = try await publishDue(tenant: work.tenant, postId: work.id, as: system, request: request) {
                    _ = try publishAnswer(after, streamId: CampaignEngine.streamId(work.tenant, work.id))
                }
            } catch {
                item.error = CampaignEngine.campaignError(error)
            }
            item.status = (try? loadPost(work.tenant, work.id).0)?.status.rawValue
            report.items.append(item)
        }
        return report
    }

    static func scheduler(_ tenant: String) -> Principal {
        Principal(tenant: tenant, subject: "scheduler", role: .admin, scopes: Principal.allScopes, expiresAt: .distantFuture)
    }

    static func campaignError(_ error: Error) -> CampaignError {
        (error as? CampaignError) ?? map(error)
    }
}

extension TickReport.Item {
    init(kind: String, tenant: String, id: String, error: CampaignError? = nil) {
        self.init(kind: kind, tenant: tenant, id: id, status: nil, error: error)
    }
}
