import CampaignDomain
import EventStore
import Foundation

/// Thrown inside the attempt's transaction when the account's publish budget is spent.
private struct AccountBudgetSpent: Error {}

/// Thrown inside a target's transaction when its connection or the post's campaign changed after
/// they were checked (a `social.disconnect` committed in between): the target is checked again.
private struct TargetChanged: Error {}

extension CampaignEngine {
    /// Appends post events built from the post's latest state, deciding again when another
    /// writer changed the post first. `build` returns nil when there is nothing to do any more.
    func appendPostEvents(
        tenant: String, postId: String, as principal: Principal, request: EngineRequest,
        preconditions: [@Sendable (ReadTransaction) throws -> Void] = [],
        extraWrite: (@Sendable (WriteTransaction) throws -> Void)? = nil,
        build: (PostState, Date) -> [DomainEvent]?
    ) async throws -> Bool {
        for _ in 0..<configuration.maximumRetries {
            let now = currentTime
            guard let state = try loadPost(tenant, postId).0 else { return false }
            let version = state.version
            guard let events = build(state, now), !events.isEmpty else { return false }
            let plan = postPlan(
                Route(.post, postId, .existing), tenant: tenant, state, version, Decision(events: events), now: now,
                preconditions: preconditions, extraWrite: extraWrite)
            do {
                _ = try await commit(plan, request: request, principal: principal, now: now, idempotency: nil)
                return true
            } catch EventStoreError.wrongExpectedVersion {
                // Another process changed the post: load again once its commit has ended.
                try await store.awaitOtherWriters()
            }
        }
        throw CampaignError(.resourceConflict, "post \(postId) kept changing; try again", retryable: true)
    }

    /// Makes every due attempt of a post: a target whose connection is unusable fails with
    /// `CONNECTION_EXPIRED`; one whose account budget is spent is retried when the window resets;
    /// otherwise the attempt is recorded first, the platform is called outside any transaction,
    /// and its answer is recorded. Attempts left without an answer for ``Post/inDoubtAfter`` are
    /// failed as unconfirmed and never sent again.
    /// - Returns: the post's state afterwards.
    func publishDue(
        tenant: String, postId: String, as principal: Principal, request: EngineRequest
    ) async throws -> PostState? {
        var handled = Set<String>()
        var rechecks = 0
        while true {
            let now = currentTime
            guard let state = try loadPost(tenant, postId).0, state.status == .publishing else {
                return try loadPost(tenant, postId).0
            }
            if let doubtful = Post.inDoubtTargets(state, at: now).first {
                _ = try await appendPostEvents(tenant: tenant, postId: postId, as: principal, request: request) {
                    fresh, at in
                    Post.inDoubtTargets(fresh, at: at).contains { $0.connectionId == doubtful.connectionId }
                        ? Post.unconfirmed(doubtful.connectionId, in: fresh, at: at) : nil
                }
                continue
            }
            guard let target = Post.dueTargets(state, at: now).first(where: { !handled.contains($0.connectionId) })
            else { return state }
            handled.insert(target.connectionId)
            let connectionId = target.connectionId
            func stillDue(_ fresh: PostState, _ at: Date) -> Bool {
                Post.dueTargets(fresh, at: at).contains { $0.connectionId == connectionId }
            }
            // What the target is decided on (its connection and the post's campaign) must not change
            // before the decision commits: each of the target's transactions checks their streams'
            // versions, read before either is loaded, so a `social.disconnect` committed between the
            // check and the attempt never lets the post out on the disconnected account.
            let watched =
                [CampaignEngine.streamId(tenant, connectionId)]
                + (state.campaignId.map { [CampaignEngine.streamId(tenant, $0)] } ?? [])
            let versions = try store.read { txn in try watched.map { try txn.streamVersion($0) } }
            let unchanged: @Sendable (ReadTransaction) throws -> Void = { txn in
                for (stream, version) in zip(watched, versions) where try txn.streamVersion(stream) != version {
                    throw TargetChanged()
                }
            }
            func changed() throws {
                // Checked again on the next turn; another writer changing them without end gives up.
                handled.remove(connectionId)
                rechecks += 1
                if rechecks > configuration.maximumRetries {
                    throw CampaignError(
                        .resourceConflict, "post \(postId)'s connection kept changing; try again", retryable: true)
                }
            }
            let usable: (connection: ConnectionState, rules: PlatformRules)?
            do {
                usable = try await usableTarget(
                    state, connectionId, tenant: tenant, now: now, as: principal, request: request,
                    unchanged: unchanged,
                    stillDue: stillDue)
            } catch is TargetChanged {
                try changed()
                continue
            }
            guard let (connection, rules) = usable else { continue }
            let window = UInt64(rules.publishWindow)
            let windowStart = UInt64(max(0, now.timeIntervalSince1970)) / window * window
            let rateKey = EngineTables.rateKey(
                tenant: tenant, platform: connection.platform, accountId: connection.accountId, windowStart: windowStart
            )
            let tables = self.tables
            let limit = UInt64(rules.publishLimit)
            var attempt = 0
            if let hook = beforeAttempt.withLock({ $0 }) { await hook(connectionId) }
            do {
                let started = try await appendPostEvents(
                    tenant: tenant, postId: postId, as: principal, request: request,
                    preconditions: [
                        unchanged,
                        { txn in if try tables.publishCount(rateKey, in: txn) >= limit { throw AccountBudgetSpent() } },
                    ],
                    extraWrite: { txn in
                        try tables.setPublishCount(rateKey, try tables.publishCount(rateKey, in: txn) + 1, in: txn)
                    },
                    build: { fresh, at in
                        guard stillDue(fresh, at) else { return nil }
                        attempt = (fresh.targets.first { $0.connectionId == connectionId }?.attempts ?? 0) + 1
                        return [Post.attemptStarted(fresh, connectionId: connectionId, at: at)]
                    }
                )
                guard started else { continue }
            } catch is TargetChanged {
                try changed()
                continue
            } catch is AccountBudgetSpent {
                let reset = Date(timeIntervalSince1970: Double(windowStart + window))
                _ = try await appendPostEvents(tenant: tenant, postId: postId, as: principal, request: request) {
                    fresh, at in
                    stillDue(fresh, at) ? Post.accountRateLimited(connectionId, in: fresh, until: reset, at: at) : nil
                }
                continue
            }
            let outcome = await Self.publish(
                through: configuration.publisher, within: configuration.publishTimeout,
                PublishRequest(
                    tenant: tenant, postId: postId, connectionId: connectionId, platform: connection.platform,
                    accountId: connection.accountId,
                    credentialRef: connection.credentialRef, text: state.text, media: state.media, link: state.link,
                    attempt: attempt,
                    idempotencyKey: "\(tenant):\(postId):\(connectionId)"))
            _ = try await appendPostEvents(tenant: tenant, postId: postId, as: principal, request: request) {
                fresh, at in
                fresh.targets.first { $0.connectionId == connectionId }?.status == "attempting"
                    ? Post.record(outcome, for: connectionId, in: fresh, at: at) : nil
            }
        }
    }

    /// The connection and rules a due target is published with; nil when it may not be, after
    /// appending why (its campaign called off, its connection unusable, its content refused by the
    /// account's rules now). Each append also checks `unchanged`, which throws ``TargetChanged``.
    private func usableTarget(
        _ state: PostState, _ connectionId: String, tenant: String, now: Date, as principal: Principal,
        request: EngineRequest, unchanged: @escaping @Sendable (ReadTransaction) throws -> Void,
        stillDue: (PostState, Date) -> Bool
    ) async throws -> (connection: ConnectionState, rules: PlatformRules)? {
        let postId = state.id
        func fail(_ events: @escaping (PostState, Date) -> [DomainEvent]) async throws {
            _ = try await appendPostEvents(
                tenant: tenant, postId: postId, as: principal, request: request, preconditions: [unchanged]
            ) { fresh, at in stillDue(fresh, at) ? events(fresh, at) : nil }
        }
        // Its campaign may have been called off since the post began publishing (a target waiting
        // for a retry, say): the target is not sent.
        if let refusal = try campaignRefusal(of: state, tenant: tenant) {
            try await fail { Post.campaignCalledOff(connectionId, refusal, in: $0, at: $1) }
            return nil
        }
        guard let connection = try loadConnection(tenant, connectionId).0, connection.isUsable(at: now),
            let rules = connection.rules
        else {
            try await fail { Post.connectionUnusable(connectionId, in: $0, at: $1) }
            return nil
        }
        // Checked when the post was written, against the rules of that moment: an account's own text
        // limit may have been lowered since.
        let problems = rules.problems(text: state.text, media: state.media, link: state.link)
        if !problems.isEmpty {
            try await fail { Post.contentRefused(connectionId, problems, in: $0, at: $1) }
            return nil
        }
        return (connection, rules)
    }

    /// Why `post` may not be published now that its campaign was called off (cancelled, archived
    /// or deleted): `RESOURCE_CONFLICT` with the campaign's state; nil for a post of no campaign or
    /// of one that still posts.
    func campaignRefusal(of post: PostState, tenant: String) throws -> CampaignError? {
        guard let campaignId = post.campaignId else { return nil }
        return Post.campaignRefusal("publish", post: post, campaign: try loadCampaign(tenant, campaignId).0)
    }

    /// The answer to `post.publish`: 201 with the post when every target is published or still
    /// on its way; otherwise the first failed target's code (`CONTENT_REJECTED`,
    /// `PUBLISHING_FAILED`, `CONNECTION_EXPIRED`, or `RESOURCE_CONFLICT` when the post's campaign
    /// was called off before a retry) with every target in `details`, or
    /// `RATE_LIMIT_EXCEEDED` with `retryAfter` when a target waits for a rate limit.
    /// - Parameter since: the post's version before the request, so `events` lists what it wrote.
    func publishAnswer(_ state: PostState, streamId: String, since: UInt64? = nil) throws -> (Int, JSON) {
        let now = currentTime
        let details = state.targets.map {
            FieldProblem(
                field: $0.connectionId, pointer: "/payload/postId",
                message: "\($0.status)\($0.message.map { ": \($0)" } ?? "")")
        }
        if let failed = state.targets.first(where: { $0.status == "failed" }) {
            let code = failed.failureCode.flatMap(ErrorCode.init(rawValue:)) ?? .publishingFailed
            throw CampaignError(
                code, "\(failed.connectionId): \(failed.message ?? "failed")", details: details,
                currentState: state.status.rawValue)
        }
        if let waiting = state.targets.first(where: { $0.status == "retrying" && $0.retryReason == "rate_limited" }),
            let retryAt = waiting.retryAt
        {
            let retryAfter = max(1, Int(retryAt.timeIntervalSince(now).rounded(.up)))
            let platform =
                (try? loadConnection(CampaignEngine.tenant(ofStream: streamId), waiting.connectionId).0?.platform)
                ?? nil
            let limit = platform.flatMap { PlatformRules.all[$0]?.publishLimit } ?? 0
            throw CampaignError(
                .rateLimitExceeded,
                "\(waiting.connectionId): \(waiting.message ?? "rate limited"); retried at "
                    + "\(Timestamp.format(retryAt))",
                details: details, retryAfter: retryAfter, retryable: true,
                rateLimit: RateLimitState(limit: limit, remaining: 0, reset: retryAt, retryAfter: retryAfter))
        }
        var events = [JSON]()
        if let since {
            try store.forEachEvent(inStream: streamId, from: since + 1) { event in
                events.append(
                    .object([
                        "type": .string(event.type), "position": .number(Double(event.position)),
                        "streamId": .string(event.streamId),
                    ]))
                return true
            }
        }
        return (
            201,
            .object([
                "postId": .string(state.id), "streamId": .string(streamId), "version": .number(Double(state.version)),
                "post": state.json, "events": .array(events),
            ])
        )
    }

    static func tenant(ofStream streamId: String) -> String {
        String(streamId.prefix { $0 != ":" })
    }

    /// The host's answer to `request`, or ``PublishOutcome/timedOut`` when it has not come within
    /// `timeout` seconds; the call is then cancelled, and whatever it returns later is dropped. The
    /// call runs in a task of its own, so a host that ignores cancellation holds only that task, not
    /// the caller; cancelling the caller cancels the call, whose answer is then taken as it comes.
    static func publish(
        through publisher: any SocialPublisher, within timeout: TimeInterval, _ request: PublishRequest
    ) async -> PublishOutcome {
        let race = PublishRace()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                race.start(continuation)
                race.timing(
                    Task {
                        try await Task.sleep(for: .seconds(timeout))
                        race.finish(.timedOut)
                    })
                race.calling(Task { race.finish(await publisher.publish(request)) })
            }
        } onCancel: {
            race.cancelCall()
        }
    }
}

/// One platform call raced against its timeout: the first to finish resumes the caller, once, and
/// the other is cancelled (a timer that lost, or a call that ran out of time).
///
/// Invariant that makes `@unchecked Sendable` safe: every stored property is read and written only
/// under `lock`.
private final class PublishRace: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<PublishOutcome, Never>?
    private var call: Task<Void, Never>?
    private var timer: Task<Void, any Error>?
    /// What finished first, once something did.
    private var outcome: PublishOutcome?
    /// Whether the caller was cancelled (the call is cancelled as soon as it exists).
    private var callCancelled = false

    /// The caller waits on `waiting` from now on.
    func start(_ waiting: CheckedContinuation<PublishOutcome, Never>) { lock.withLock { continuation = waiting } }

    /// The timeout's task: cancelled at once if the call has finished already.
    func timing(_ task: Task<Void, any Error>) {
        let late = lock.withLock {
            timer = task
            return outcome != nil
        }
        if late { task.cancel() }
    }

    /// The call's task: cancelled at once if time ran out or the caller was cancelled already.
    func calling(_ task: Task<Void, Never>) {
        let cancel = lock.withLock {
            call = task
            return outcome == .timedOut || callCancelled
        }
        if cancel { task.cancel() }
    }

    /// Cancels the call, now or as soon as it is started.
    func cancelCall() {
        let task = lock.withLock {
            callCancelled = true
            return call
        }
        task?.cancel()
    }

    /// Resumes the caller with `result` if nothing did before, and cancels the other side.
    func finish(_ result: PublishOutcome) {
        let (waiting, lostCall, lostTimer) = lock.withLock {
            () -> (CheckedContinuation<PublishOutcome, Never>?, Task<Void, Never>?, Task<Void, any Error>?) in
            guard outcome == nil else { return (nil, nil, nil) }
            outcome = result
            defer { continuation = nil }
            return (continuation, result == .timedOut ? call : nil, result == .timedOut ? nil : timer)
        }
        lostCall?.cancel()
        lostTimer?.cancel()
        waiting?.resume(returning: result)
    }
}
