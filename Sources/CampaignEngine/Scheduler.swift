import CampaignDomain
import CampaignProjections
import EventStore
import Foundation

/// What one scheduler tick did.
public struct TickReport: Sendable, Equatable {
    /// One piece of due work and how it ended.
    public struct Item: Sendable, Equatable {
        /// `campaign` (activation), `post` (publish, retry, or an in-doubt attempt settled) or
        /// `memberships` (a tenant's relative-date segment memberships re-evaluated).
        public var kind: String
        /// The tenant the work belongs to.
        public var tenant: String
        /// The campaign or post; for `memberships`, the refresh event's stream.
        public var id: String
        /// The post's state afterwards (for posts).
        public var status: String?
        /// Nil when it succeeded (or is still on its way).
        public var error: CampaignError?
        /// For `memberships`: how many were due and re-evaluated.
        public var count = 0
    }

    /// The time the tick ran at.
    public var now: Date
    /// Every due item handled, campaigns first, each kind in time order.
    public var items: [Item]
    /// Idempotency records this tick deleted, their retention past
    /// (``EngineConfiguration/idempotencyRetention``; looked for at most once an hour).
    public var idempotencyRecordsPruned = 0

    /// Relative-date segment memberships re-evaluated, over all tenants in the report.
    public var membershipsRefreshed: Int { Self.refreshed(items) }

    static func refreshed(_ items: [Item]) -> Int {
        items.filter { $0.kind == "memberships" && $0.error == nil }.reduce(0) { $0 + $1.count }
    }

    /// The campaigns this tick activated (their `sendAt` had come), failures left out.
    public var activated: [Item] { items.filter { $0.kind == "campaign" && $0.error == nil } }

    /// The wire data of a tick. For a tenant's tick the items are that tenant's, named by id;
    /// for the operator's (`tenant` nil) they are every tenant's, named by stream id (`tenant:id`).
    func json(for tenant: String?, requestId: String) -> JSON {
        let mine = items.filter { tenant == nil || $0.tenant == tenant }
        func name(_ item: Item) -> JSON { .string(tenant == nil ? item.tenant + ":" + item.id : item.id) }
        return .object([
            "now": .string(Timestamp.format(now)),
            "activated": .array(mine.filter { $0.kind == "campaign" && $0.error == nil }.map(name)),
            "posts": .array(
                mine.filter { $0.kind == "post" }.map { item in
                    var members: JSONObject = ["postId": name(item), "status": .string(item.status ?? "")]
                    if let error = item.error { members["error"] = error.body(requestId: requestId) }
                    return .object(members)
                }),
            "failed": .array(
                mine.filter { $0.kind == "campaign" && $0.error != nil }.map { item in
                    .object(["campaignId": name(item), "error": item.error!.body(requestId: requestId)])
                }),
            "memberships": .number(Double(Self.refreshed(mine))),
        ])
    }
}

extension CampaignEngine {
    /// Runs the scheduler: re-evaluates segment memberships whose relative-date rule
    /// (`within_last_days`) crossed a boundary, activates scheduled campaigns whose send time has
    /// come, publishes posts whose publish time has come, retries what is due, and settles
    /// attempts left without an outcome. Due work is found through time indexes (the `segments`
    /// projection's boundaries, `schedule-index`, `publishing-queue`), so a tick with nothing due
    /// reads one key of each however much waits.
    ///
    /// The clock never moves backwards. With a ``ManualClock``, `now` moves it forward first;
    /// with any other clock `now` may only be the current time (a tick may not run the future early).
    /// - Parameters:
    ///   - now: the time to move a manual clock to; nil runs at the current time.
    ///   - tenant: run only this tenant's due work; nil runs every tenant's.
    /// - Throws: `INVALID_SCHEDULE` for a `now` before the clock (or a system clock moved), and
    ///   a storage error when the due work cannot be read: a failed tick says so.
    public func tick(
        now requested: Date? = nil, tenant: String? = nil, requestId: String = "tick"
    ) async throws -> TickReport {
        let started = ContinuousClock.now
        do {
            let report = try await runTick(now: requested, tenant: tenant, requestId: requestId)
            tickMetrics.count(report, took: .now - started)
            return report
        } catch {
            tickMetrics.count(nil, took: .now - started)
            throw error
        }
    }

    /// ``tick(now:tenant:requestId:)`` without its counting in the metrics.
    private func runTick(now requested: Date?, tenant: String?, requestId: String) async throws -> TickReport {
        if let requested {
            let current = currentTime
            let moved = (configuration.clock as? ManualClock)?.moveForward(to: requested) != nil
            if !moved && requested != current {
                let problem =
                    requested < current
                    ? "the clock never moves backwards: now \(Timestamp.format(requested)) is before the "
                        + "engine clock \(Timestamp.format(current))"
                    : "the engine runs on the system clock, which a tick cannot move; leave out now"
                throw CampaignError(.invalidSchedule, problem, param: "now", pointer: "/payload/now")
            }
        }
        let now = currentTime
        var report = TickReport(now: now, items: [])
        let projections = self.projections
        report.items += try await refreshMemberships(at: now, tenant: tenant, requestId: requestId)
        var (campaigns, posts) = try store.read { txn in
            (
                try projections.read("schedule-index", in: txn) { try ScheduleIndex.due($0, at: now, limit: 100_000) },
                try projections.read("publishing-queue", in: txn) { try ScheduleIndex.due($0, at: now, limit: 100_000) }
            )
        }
        if let tenant {
            campaigns.removeAll { $0.tenant != tenant }
            posts.removeAll { $0.tenant != tenant }
        }

        // The due lists were read before each item's turn. An item is acted on only while it is
        // still scheduled and due, and only at the version read for that check: a reschedule, an
        // unschedule or a cancel committed meanwhile wins (the next tick sees the item as it is
        // then), where before the scheduler could activate or publish it early.
        for work in campaigns {
            let system = CampaignEngine.scheduler(work.tenant)
            let command = Command.campaign(.transition(.activate, campaignId: work.id))
            do {
                guard let version = try dueVersion(campaign: work.id, of: work.tenant, at: now) else { continue }
                _ = try await perform(
                    command,
                    request: .command(command, as: system, requestId: requestId, expectedVersion: version),
                    principal: system)
                report.items.append(.init(kind: "campaign", tenant: work.tenant, id: work.id))
            } catch {
                report.items.append(
                    .init(
                        kind: "campaign", tenant: work.tenant, id: work.id, error: CampaignEngine.campaignError(error)))
            }
        }
        for work in posts {
            let system = CampaignEngine.scheduler(work.tenant)
            let command = Command.post(.publish(postId: work.id))
            let request = EngineRequest.command(command, as: system, requestId: requestId)
            var item = TickReport.Item(kind: "post", tenant: work.tenant, id: work.id)
            do {
                let state = try loadPost(work.tenant, work.id).0
                if let state, state.status == .scheduled {
                    // Rescheduled for later since the due list was read: not due yet.
                    guard let publishAt = state.publishAt, publishAt <= now else { continue }
                    if let refusal = try campaignRefusal(of: state, tenant: work.tenant) {
                        // Its campaign was called off after it was scheduled: the scheduler cancels
                        // it, and the report says why.
                        let cancel = Command.post(.cancel(postId: work.id))
                        let request = EngineRequest.command(
                            cancel, as: system, requestId: requestId, expectedVersion: state.version)
                        _ = try await perform(cancel, request: request, principal: system)
                        item.error = refusal.located(under: "/payload")
                    } else {
                        var request = request
                        request.expectedVersion = state.version
                        _ = try await perform(command, request: request, principal: system)
                    }
                } else if let after = try await publishDue(
                    tenant: work.tenant, postId: work.id, as: system, request: request)
                {
                    _ = try publishAnswer(after, streamId: CampaignEngine.streamId(work.tenant, work.id))
                }
            } catch {
                item.error = CampaignEngine.campaignError(error)
            }
            item.status = (try? loadPost(work.tenant, work.id).0)?.status.rawValue
            report.items.append(item)
        }
        report.idempotencyRecordsPruned = try await pruneIdempotency(at: now)
        return report
    }

    /// The campaign's version when it is still scheduled with its send time at or before `now`;
    /// nil when it is not (rescheduled for later, unscheduled, cancelled since the due list was read).
    private func dueVersion(campaign id: String, of tenant: String, at now: Date) throws -> UInt64? {
        guard let state = try loadCampaign(tenant, id).0, state.status == .scheduled, let sendAt = state.sendAt,
            sendAt <= now
        else { return nil }
        return state.version
    }

    /// Deletes idempotency records past their retention, when an hour (or the retention, if
    /// shorter) of the engine's clock has passed since the last time; returns how many.
    func pruneIdempotency(at now: Date) async throws -> Int {
        guard let retention = configuration.idempotencyRetention else { return 0 }
        let due = idempotencyPruned.withLock { last in
            guard last.map({ now.timeIntervalSince($0) >= min(3_600, retention) }) ?? true else { return false }
            last = now
            return true
        }
        guard due else { return 0 }
        return try await store.pruneIdempotency(before: now.addingTimeInterval(-retention), now: now).deleted
    }

    /// Appends `segment.membershipsRefreshed` for each tenant (or only `tenant`) with relative-date
    /// memberships due by `now`; the `segments` projection re-evaluates exactly those when it
    /// folds the event, at the event's time. Catching the projection up first makes the due list
    /// current, and catching up after makes queries that follow the tick see the new memberships.
    func refreshMemberships(at now: Date, tenant only: String?, requestId: String) async throws -> [TickReport.Item] {
        let projections = self.projections
        try await projections.catchUpOnWriter("segments")
        let due = try projections.read("segments") { reader in
            try SegmentMembership.tenantsDue(reader, at: now).filter { only == nil || $0 == only }.map { tenant in
                (tenant, try SegmentMembership.dueCount(reader, tenant: tenant, at: now))
            }
        }
        var items = [TickReport.Item]()
        for (tenant, count) in due {
            let system = CampaignEngine.scheduler(tenant)
            let streamId = CampaignEngine.streamId(tenant, SegmentMembership.refreshStream)
            let event = MembershipEvent.refreshed(through: now, due: count).domainEvent
            var plan = Plan(streams: [(streamId, 0, [event])], decision: Decision(events: [event])) { receipt in
                CampaignEngine.receiptData(receipt, streamId: streamId, [:])
            }
            plan.unversioned = true
            var item = TickReport.Item(kind: "memberships", tenant: tenant, id: SegmentMembership.refreshStream)
            do {
                _ = try await commit(
                    plan, request: .command(.tick(now: nil), as: system, requestId: requestId),
                    principal: system, now: now, idempotency: nil)
                item.count = count
            } catch {
                item.error = CampaignEngine.campaignError(error)
            }
            items.append(item)
        }
        if !due.isEmpty { try await projections.catchUpOnWriter("segments") }
        return items
    }

    /// `system.tick` on the wire. The operator (a principal of ``EngineConfiguration/operatorTenant``)
    /// may move the shared clock and runs every tenant's due work; any other tenant's admin runs
    /// its own tenant's due work at the current clock, and may not move it: the clock is shared,
    /// so moving it would activate other tenants' campaigns and expire their tokens.
    func wireTick(_ requested: Date?, principal: Principal, requestId: String) async throws -> JSON {
        let isOperator = configuration.operatorTenant == principal.tenant
        if !isOperator, let requested, requested != currentTime {
            // The operator's tenant is not named: a tenant has no need to learn it.
            let who = configuration.operatorTenant == nil ? "the host" : "the operator"
            throw CampaignError(
                .forbidden,
                "only \(who) moves the shared clock; a tenant's tick runs at the engine clock, so leave out now",
                param: "now", pointer: "/payload/now")
        }
        let report = try await tick(now: requested, tenant: isOperator ? nil : principal.tenant, requestId: requestId)
        return report.json(for: isOperator ? nil : principal.tenant, requestId: requestId)
    }

    static func scheduler(_ tenant: String) -> Principal {
        Principal(
            tenant: tenant, subject: "scheduler", role: .admin, scopes: Principal.allScopes, expiresAt: .distantFuture)
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
