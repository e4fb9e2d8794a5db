import Foundation

/// What a platform said when asked to publish.
public enum PublishOutcome: Sendable, Equatable {
    /// Published, with the platform's id and URL.
    case published(platformPostId: String, url: String)
    /// Refused for now; try again after `retryAfter` seconds.
    case rateLimited(retryAfter: Int)
    /// The platform refused the content for good.
    case rejected(reason: String)
    /// A passing failure (5xx, network); safe to retry.
    case transientFailure(reason: String)
    /// No answer in time: the post may or may not be live, so it is never sent again blindly.
    case timedOut
}

/// A post's states: draft → scheduled → publishing → published or failed, or cancelled before publishing.
public enum PostStatus: String, Sendable, CaseIterable {
    /// Being edited.
    case draft
    /// Waiting for its publish time.
    case scheduled
    /// Being published to its targets.
    case publishing
    /// Live on every target.
    case published
    /// Every target finished and at least one failed.
    case failed
    /// Cancelled before publishing.
    case cancelled
}

/// One target (connection) of a post and how its publishing stands.
public struct PostTarget: Sendable, Equatable {
    /// The social connection (`con_…`) this target publishes through.
    public var connectionId: String
    /// `pending`, `attempting`, `retrying`, `published` or `failed`.
    public var status: String
    /// Attempts started on the platform, retries included.
    public var attempts: Int
    /// Transient failures so far (3 attempts in all, then `PUBLISHING_FAILED`).
    public var transientFailures: Int
    /// Rate-limit refusals so far.
    public var rateLimits: Int
    /// When the next attempt is due, while retrying (``retryReason`` says why).
    public var retryAt: Date?
    /// Why it is retrying: `rate_limited` or `transient`.
    public var retryReason: String?
    /// When the current attempt started (an attempt with no outcome is in doubt).
    public var attemptStartedAt: Date?
    /// The platform's post id, once published.
    public var platformPostId: String?
    /// The platform's URL, once published.
    public var url: String?
    /// The error code, once failed.
    public var failureCode: String?
    /// Why it failed or is retrying.
    public var message: String?

    var isTerminal: Bool { status == "published" || status == "failed" }

    var json: JSON {
        var members: JSONObject = [
            "connectionId": .string(connectionId), "status": .string(status), "attempts": .number(Double(attempts)),
        ]
        if let retryAt { members["retryAt"] = .string(Timestamp.format(retryAt)) }
        if let platformPostId { members["platformPostId"] = .string(platformPostId) }
        if let url { members["url"] = .string(url) }
        if let failureCode { members["code"] = .string(failureCode) }
        if let message { members["message"] = .string(message) }
        return .object(members)
    }
}

/// A post's state, folded from its events.
public struct PostState: Sendable, Equatable {
    /// The id (`pst_…`).
    public var id: String
    /// Target connections, in order.
    public var targets: [PostTarget]
    /// The text, checked against each target platform's limit (counted as the rules table says).
    public var text: String
    /// The media, checked against each target platform's count and kinds.
    public var media: [Media]
    /// A link published with the text, if any: an `https` URL of at most 2,048 characters naming a host and no user.
    public var link: String?
    /// The campaign it belongs to.
    public var campaignId: String?
    /// Where it is: a post is published when every target is, failed when every target finished and one failed.
    public var status: PostStatus
    /// When it is to be published.
    public var publishAt: Date?
    /// When it was created.
    public var createdAt: Date
    /// When it last changed.
    public var updatedAt: Date
    /// The stream version this state folds to: the number of the post's events so far.
    public var version: UInt64

    /// The targets' connection ids, in the order the post names them.
    public var connectionIds: [String] { targets.map(\.connectionId) }

    /// The read model returned by `post.get`.
    public var json: JSON {
        var members: JSONObject = [
            "postId": .string(id), "text": .string(text), "media": .array(media.map(\.json)),
            "status": .string(status.rawValue),
            "targets": .array(targets.map(\.json)), "createdAt": .string(Timestamp.format(createdAt)),
            "updatedAt": .string(Timestamp.format(updatedAt)), "version": .number(Double(version)),
        ]
        if let link { members["link"] = .string(link) }
        if let campaignId { members["campaignId"] = .string(campaignId) }
        if let publishAt { members["publishAt"] = .string(Timestamp.format(publishAt)) }
        return .object(members)
    }
}

/// The post aggregate and its publishing policy.
public enum Post: Aggregate {
    /// A post's state, as ``evolve(_:_:)`` folds it from the stream.
    public typealias State = PostState
    /// The `post.*` commands: create, update, schedule, unschedule, cancel and publish.
    public typealias Command = PostCommand
    /// The `post.*` events, one case each; their raw kinds are the stored types.
    public typealias Event = PostEvent

    /// How long an attempt may go without an outcome before it is failed as unconfirmed.
    public static let inDoubtAfter: TimeInterval = 300
    /// Attempts per target for transient failures (then `PUBLISHING_FAILED`).
    public static let maximumAttempts = 3
    /// The first retry's delay; each later one doubles it.
    public static let backoffBase: TimeInterval = 30
    /// Rate-limit refusals per target before giving up with `RATE_LIMIT_EXCEEDED`.
    public static let maximumRateLimits = 10

    static func allowed(_ verb: String) -> [PostStatus] {
        switch verb {
        case "update", "schedule", "cancel", "publish": return [.draft, .scheduled]
        case "unschedule": return [.scheduled]
        default: return []
        }
    }

    /// Decides `post.create`, `post.update`, `post.schedule`, `post.unschedule`, `post.cancel` and
    /// `post.publish`.
    /// `context.connections` and `context.campaigns` hold what the command names.
    public static func decide(
        _ command: PostCommand, state: PostState?, context: DecisionContext
    ) throws(CampaignError) -> Decision {
        if case let .create(postId, connectionIds, text, media, link, campaignId) = command {
            guard state == nil else {
                throw CampaignError(
                    .duplicateResource, "post \(postId) already exists", param: "postId", pointer: "/postId")
            }
            if let campaignId, context.campaigns[campaignId] == nil || context.campaigns[campaignId]?.status == .deleted
            {
                throw CampaignError.notFound("campaign", campaignId, pointer: "/campaignId")
            }
            if let campaignId, var refusal = campaignRefusal("create a post for", context.campaigns[campaignId]) {
                refusal.pointer = "/campaignId"
                throw refusal
            }
            try checkConnections(connectionIds, context)
            var problems = shapeProblems(connectionIds: connectionIds, text: text, media: media, link: link)
            problems += platformProblems(
                connectionIds.compactMap { context.connections[$0] }, text: text, media: media, link: link)
            guard problems.isEmpty else { throw .validation(problems) }
            return Decision(events: [
                PostEvent.created(
                    postId: postId, connectionIds: connectionIds, text: text, media: media, link: link,
                    campaignId: campaignId
                ).domainEvent
            ])
        }

        guard let state else {
            throw CampaignError.notFound("post", command.postId, pointer: "/postId")
        }
        let verb = command.verb
        guard allowed(verb).contains(state.status) else {
            throw CampaignError.illegalTransition(
                verb, "post", from: state.status.rawValue, allowed: allowed(verb).map(\.rawValue))
        }
        // Scheduled and published only while its campaign is not called off.
        if verb == "schedule" || verb == "publish",
            let refusal = campaignRefusal(
                verb, post: state, campaign: state.campaignId.flatMap { context.campaigns[$0] })
        {
            throw refusal
        }
        switch command {
        case let .create(postId, _, _, _, _, _):
            // Answered above while there was no state; a create on an existing stream is a clash.
            throw CampaignError(
                .duplicateResource, "post \(postId) already exists", param: "postId", pointer: "/postId")
        case let .update(_, text, media, link, connectionIds):
            guard text != nil || media != nil || link != nil || connectionIds != nil else {
                throw CampaignError.validation([
                    FieldProblem(
                        field: "payload", pointer: "",
                        message: "nothing to update: give text, media, link or connectionIds")
                ])
            }
            if let connectionIds { try checkConnections(connectionIds, context) }
            let newTargets = connectionIds ?? state.connectionIds
            let newText = text ?? state.text
            let newMedia = media ?? state.media
            var problems = shapeProblems(
                connectionIds: newTargets, text: newText, media: newMedia, link: link?.value)
            problems += platformProblems(
                newTargets.compactMap { context.connections[$0] }, text: newText, media: newMedia,
                link: link.map(\.value) ?? state.link)
            guard problems.isEmpty else { throw .validation(problems) }
            // The text, media, link and targets the post has already: nothing changes.
            if newText == state.text && newMedia == state.media && newTargets == state.connectionIds
                && link.map({ $0.value == state.link }) ?? true
            {
                return Decision(events: [])
            }
            return Decision(events: [
                PostEvent.updated(
                    postId: state.id, text: text, media: media, link: link,
                    connectionIds: newTargets == state.connectionIds ? nil : newTargets
                ).domainEvent
            ])
        case let .schedule(_, publishAt):
            guard publishAt > context.now else {
                throw CampaignError(
                    .invalidSchedule, "publishAt must be after now (\(Timestamp.format(context.now)))",
                    param: "publishAt", pointer: "/publishAt")
            }
            // Scheduling a scheduled post for the time it has changes nothing.
            if state.status == .scheduled && state.publishAt == publishAt { return Decision(events: []) }
            return Decision(events: [PostEvent.scheduled(postId: state.id, publishAt: publishAt).domainEvent])
        case .unschedule:
            return Decision(events: [PostEvent.lifecycle(.unscheduled, postId: state.id).domainEvent])
        case .cancel:
            return Decision(events: [PostEvent.lifecycle(.cancelled, postId: state.id).domainEvent])
        case .publish:
            return Decision(events: [PostEvent.lifecycle(.publishingStarted, postId: state.id).domainEvent])
        }
    }

    /// The states of a campaign whose posts may be created, scheduled and published: not once it
    /// was called off (cancelled), put away (archived) or deleted. A completed campaign's sending
    /// is done, and a post that follows it up still goes out.
    public static let campaignStatesThatPost: [CampaignStatus] = [.draft, .scheduled, .active, .paused, .completed]

    /// Why a post of `campaign` may not `verb` (`RESOURCE_CONFLICT`, with the campaign's state as
    /// `currentState`), or nil when it may; nil for a post of no campaign.
    public static func campaignRefusal(_ verb: String, _ campaign: CampaignState?) -> CampaignError? {
        guard let campaign, !campaignStatesThatPost.contains(campaign.status) else { return nil }
        return CampaignError.illegalTransition(
            verb, "campaign", from: campaign.status.rawValue, allowed: campaignStatesThatPost.map(\.rawValue))
    }

    /// Why `post` may not `verb` (`schedule`, `publish`) now that its campaign, `campaign`, was
    /// called off, or nil; the pointer is the post's id.
    public static func campaignRefusal(_ verb: String, post: PostState, campaign: CampaignState?) -> CampaignError? {
        guard post.campaignId != nil else { return nil }
        var refusal = campaignRefusal("\(verb) a post of", campaign)
        refusal?.pointer = "/postId"
        return refusal
    }

    /// `RESOURCE_NOT_FOUND` for a target the tenant has no connection for, then
    /// `CONNECTION_EXPIRED` for one that was disconnected, each at its index in `connectionIds`.
    static func checkConnections(_ connectionIds: [String], _ context: DecisionContext) throws(CampaignError) {
        for (index, id) in connectionIds.enumerated() where context.connections[id] == nil {
            throw CampaignError.notFound("connection", id, pointer: "/connectionIds/\(index)")
        }
        for (index, id) in connectionIds.enumerated() where context.connections[id]?.disconnected == true {
            throw CampaignError(
                .connectionExpired, "connection \(id) was disconnected", pointer: "/connectionIds/\(index)")
        }
    }

    static func shapeProblems(connectionIds: [String], text: String, media: [Media], link: String?) -> [FieldProblem] {
        var problems = [FieldProblem]()
        if connectionIds.isEmpty || connectionIds.count > 10 || Set(connectionIds).count != connectionIds.count {
            problems.append(
                FieldProblem(
                    field: "connectionIds", pointer: "/connectionIds",
                    message: "connectionIds must hold 1–10 distinct connections"))
        }
        // Text of white space and invisible characters (zero-width spaces, say) displays as nothing.
        if TextRules.showsNothing(text) && media.isEmpty {
            problems.append(
                FieldProblem(field: "text", pointer: "/text", message: "a post needs text or media"))
        } else if let message = TextRules.controlCharacterMessage(text, field: "text", multiline: true) {
            problems.append(FieldProblem(field: "text", pointer: "/text", message: message))
        }
        for (index, item) in media.enumerated() {
            if !["image", "video", "gif"].contains(item.kind) {
                problems.append(
                    FieldProblem(
                        field: "media.kind", pointer: "/media/\(index)/kind",
                        message: "kind must be image, video or gif"))
            }
            if !isHTTPSURL(item.url) {
                problems.append(
                    FieldProblem(
                        field: "media.url", pointer: "/media/\(index)/url",
                        message: "url must be an https URL of at most 2048 characters, naming a host and no user"))
            }
        }
        if let link, !isHTTPSURL(link) {
            problems.append(
                FieldProblem(
                    field: "link", pointer: "/link",
                    message: "link must be an https URL of at most 2048 characters, naming a host and no user"))
        }
        return problems
    }

    /// Each target's problems with the content, by its rules (its platform's, with the account's
    /// own text limit); a problem shared by several targets of one platform and limit is reported
    /// once, so the client sees which platform refuses what.
    static func platformProblems(
        _ connections: [ConnectionState], text: String, media: [Media], link: String?
    ) -> [FieldProblem] {
        var seen = Set<PlatformRules>()
        return connections.compactMap(\.rules).filter { seen.insert($0).inserted }.flatMap {
            $0.problems(text: text, media: media.filter { ["image", "video", "gif"].contains($0.kind) }, link: link)
        }
    }

    /// Whether `text` is an `https` URL a platform can fetch: at most 2,048 characters, no white
    /// space or control character, and an authority that names a host (a domain name, IPv4 or
    /// bracketed IPv6 address, with an optional port of 1–65535) and no user: `https://user:pass@…`
    /// would store a password in the log, which never holds a secret.
    static func isHTTPSURL(_ text: String) -> Bool {
        guard text.utf8.count > 8, text.count <= 2048,
            text.prefix(8).lowercased() == "https://",
            !text.unicodeScalars.contains(where: { $0 == " " || TextRules.isControl($0) })
        else { return false }
        let rest = text.dropFirst(8)
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard !authority.contains("@") else { return false }
        var host = Substring(authority)
        if host.hasPrefix("[") {
            // An IPv6 literal: hexadecimal digits and colons (and dots, for an embedded IPv4) in brackets.
            guard let close = host.firstIndex(of: "]") else { return false }
            let inside = host[host.index(after: host.startIndex)..<close]
            guard inside.contains(":"), inside.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else {
                return false
            }
            host = host[host.index(after: close)...]
            guard host.isEmpty || host.hasPrefix(":") else { return false }
            return host.isEmpty || isPort(host.dropFirst())
        }
        if let colon = host.lastIndex(of: ":") {
            guard isPort(host[host.index(after: colon)...]) else { return false }
            host = host[..<colon]
        }
        // Labels of letters (any script, for an internationalised name), digits, hyphens and the
        // underscores some hosts' names hold.
        let labels = host.split(separator: ".", omittingEmptySubsequences: false)
        return !host.isEmpty && host.utf8.count <= 253
            && labels.enumerated().allSatisfy { index, label in
                // A fully qualified name may end in a dot: the last label alone may be empty.
                (label.isEmpty && index == labels.count - 1 && labels.count > 1)
                    || (!label.isEmpty && label.first != "-" && label.last != "-"
                        && label.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
            }
    }

    /// Whether `text` is a port number, 1–65535, in decimal digits.
    private static func isPort(_ text: Substring) -> Bool {
        guard (1...5).contains(text.count), text.allSatisfy({ $0.isASCII && $0.isNumber }), let port = Int(text) else {
            return false
        }
        return (1...65_535).contains(port)
    }

    // MARK: Publishing policy

    /// Targets ready for an attempt at `now`: never attempted, or retrying and due.
    public static func dueTargets(_ state: PostState, at now: Date) -> [PostTarget] {
        guard state.status == .publishing else { return [] }
        return state.targets.filter {
            $0.status == "pending" || ($0.status == "retrying" && ($0.retryAt ?? now) <= now)
        }
    }

    /// Targets whose attempt has had no outcome for ``inDoubtAfter``: the process died mid-call.
    public static func inDoubtTargets(_ state: PostState, at now: Date) -> [PostTarget] {
        state.targets.filter { $0.status == "attempting" && ($0.attemptStartedAt ?? now) + inDoubtAfter <= now }
    }

    /// When the scheduler must next look at the post, if ever.
    public static func nextDue(_ state: PostState?) -> Date? {
        guard let state else { return nil }
        switch state.status {
        case .scheduled: return state.publishAt
        case .publishing:
            return state.targets.compactMap { target -> Date? in
                switch target.status {
                case "pending": return state.updatedAt
                case "retrying": return target.retryAt
                case "attempting": return target.attemptStartedAt.map { $0 + inDoubtAfter }
                default: return nil
                }
            }.min()
        default: return nil
        }
    }

    /// The event that starts an attempt; committed before the platform is called, so that a
    /// crash during the call leaves a visible attempt that is failed as unconfirmed, never resent.
    public static func attemptStarted(_ state: PostState, connectionId: String, at now: Date) -> DomainEvent {
        let attempt = (state.targets.first { $0.connectionId == connectionId }?.attempts ?? 0) + 1
        return PostEvent.attemptStarted(postId: state.id, connectionId: connectionId, attempt: attempt, at: now)
            .domainEvent
    }

    /// The events recording a platform's answer for one target, plus the post's final event when
    /// every target has finished.
    public static func record(
        _ outcome: PublishOutcome, for connectionId: String, in state: PostState, at now: Date
    ) -> [DomainEvent] {
        guard let target = state.targets.first(where: { $0.connectionId == connectionId }) else { return [] }
        let base = (postId: state.id, connectionId: connectionId)
        let event: PostEvent
        switch outcome {
        case let .published(platformPostId, url):
            event = .targetPublished(
                postId: state.id, connectionId: connectionId, platformPostId: platformPostId, url: url)
        case let .rateLimited(retryAfter):
            if target.rateLimits + 1 >= maximumRateLimits {
                event = failure(base, .rateLimitExceeded, "the platform kept refusing with a rate limit")
            } else {
                event = retry(
                    base, "rate_limited", now + TimeInterval(max(1, retryAfter)),
                    "the platform asked to retry after \(retryAfter) s")
            }
        case let .rejected(reason):
            event = failure(base, .contentRejected, "the platform rejected the content: \(reason)")
        case let .transientFailure(reason):
            if target.transientFailures + 1 >= maximumAttempts {
                event = failure(base, .publishingFailed, "the platform failed \(maximumAttempts) times: \(reason)")
            } else {
                let delay = backoffBase * Double(1 << target.transientFailures)
                event = retry(
                    base, "transient", now + delay, "transient failure (\(reason)); retrying in \(Int(delay)) s")
            }
        case .timedOut:
            event = failure(
                base, .publishingFailed,
                "the platform did not answer in time; the outcome is unknown, so the post is not sent again",
                unconfirmed: true)
        }
        return withCompletion([event], state, now)
    }

    /// The target's connection is expired or revoked: failed without calling the platform.
    public static func connectionUnusable(_ connectionId: String, in state: PostState, at now: Date) -> [DomainEvent] {
        withCompletion(
            [
                failure(
                    (state.id, connectionId), .connectionExpired, "connection \(connectionId) is expired or revoked")
            ], state, now)
    }

    /// The post no longer fits the target's rules as they are now (its account's own text limit
    /// was lowered after the post was written, say): the target fails as content the platform
    /// would refuse, without a call.
    public static func contentRefused(
        _ connectionId: String, _ problems: [FieldProblem], in state: PostState, at now: Date
    ) -> [DomainEvent] {
        withCompletion(
            [failure((state.id, connectionId), .contentRejected, problems.map(\.message).joined(separator: "; "))],
            state, now)
    }

    /// The post's campaign was called off (cancelled, archived or deleted) while the post was
    /// being published: the target fails with `refusal`'s code and message, without a call.
    public static func campaignCalledOff(
        _ connectionId: String, _ refusal: CampaignError, in state: PostState, at now: Date
    ) -> [DomainEvent] {
        withCompletion([failure((state.id, connectionId), refusal.code, refusal.message)], state, now)
    }

    /// The account's publish budget is spent: retry when the window resets, without calling.
    public static func accountRateLimited(
        _ connectionId: String, in state: PostState, until retryAt: Date, at now: Date
    ) -> [DomainEvent] {
        let base = (postId: state.id, connectionId: connectionId)
        let rateLimits = state.targets.first { $0.connectionId == connectionId }?.rateLimits ?? 0
        if rateLimits + 1 >= maximumRateLimits {
            return withCompletion(
                [failure(base, .rateLimitExceeded, "the account's publish limit kept being reached")], state, now)
        }
        return withCompletion(
            [
                retry(
                    base, "rate_limited", retryAt,
                    "the account's publish limit is reached until \(Timestamp.format(retryAt))")
            ], state, now)
    }

    /// An attempt that never recorded an outcome: failed as unconfirmed, never resent.
    public static func unconfirmed(_ connectionId: String, in state: PostState, at now: Date) -> [DomainEvent] {
        withCompletion(
            [
                failure(
                    (state.id, connectionId), .publishingFailed,
                    "an attempt recorded no outcome; it may be live, so it is not sent again", unconfirmed: true)
            ], state, now)
    }

    /// A post and one of its targets.
    private typealias Target = (postId: String, connectionId: String)

    private static func retry(_ target: Target, _ reason: String, _ at: Date, _ message: String) -> PostEvent {
        .targetRetryScheduled(
            postId: target.postId, connectionId: target.connectionId, reason: reason, retryAt: at, message: message)
    }

    private static func failure(
        _ target: Target, _ code: ErrorCode, _ message: String, unconfirmed: Bool = false
    ) -> PostEvent {
        .targetFailed(
            postId: target.postId, connectionId: target.connectionId, code: code.rawValue, message: message,
            unconfirmed: unconfirmed)
    }

    /// The events, plus `post.published` or `post.failed` when they leave every target finished.
    private static func withCompletion(_ events: [PostEvent], _ state: PostState, _ now: Date) -> [DomainEvent] {
        var after: PostState? = state
        for event in events { after = evolve(after, event, at: now, version: state.version) }
        let domainEvents = events.map(\.domainEvent)
        guard let after, after.targets.allSatisfy(\.isTerminal) else { return domainEvents }
        let done = after.targets.allSatisfy { $0.status == "published" }
        return domainEvents + [PostEvent.lifecycle(done ? .published : .failed, postId: state.id).domainEvent]
    }

    /// Folds one stored event into the state (events of other aggregates leave it as it is).
    public static func evolve(_ state: PostState?, _ event: EventRecord) -> PostState? {
        guard let typed = PostEvent(event) else {
            // A post type without the fields it always carries still advances the version, as before.
            guard var state, PostEvent.Kind(rawValue: event.type) != nil else { return state }
            state.version = event.version
            state.updatedAt = event.occurredAt
            return state
        }
        return evolve(state, typed, at: event.occurredAt, version: event.version)
    }

    /// Folds one event, which happened at `time` and made the stream's version `version`.
    public static func evolve(_ state: PostState?, _ event: PostEvent, at time: Date, version: UInt64) -> PostState? {
        if case let .created(id, connectionIds, text, media, link, campaignId) = event {
            let targets = connectionIds.map {
                PostTarget(connectionId: $0, status: "pending", attempts: 0, transientFailures: 0, rateLimits: 0)
            }
            return PostState(
                id: id, targets: targets, text: text, media: media, link: link, campaignId: campaignId, status: .draft,
                publishAt: nil, createdAt: time, updatedAt: time, version: version)
        }
        guard var state else { return nil }
        state.version = version
        state.updatedAt = time
        func updateTarget(_ body: (inout PostTarget) -> Void) {
            guard let id = event.connectionId, let index = state.targets.firstIndex(where: { $0.connectionId == id })
            else { return }
            body(&state.targets[index])
        }
        switch event {
        case .created: break
        case let .updated(_, text, media, link, connectionIds):
            if let text { state.text = text }
            if let media { state.media = media }
            if let link { state.link = link.value }
            if let connectionIds {
                // A target kept stays as it is; a new one waits, as a created post's targets do.
                let kept = Dictionary(
                    state.targets.map { ($0.connectionId, $0) }, uniquingKeysWith: { first, _ in first })
                state.targets = connectionIds.map {
                    kept[$0]
                        ?? PostTarget(
                            connectionId: $0, status: "pending", attempts: 0, transientFailures: 0, rateLimits: 0)
                }
            }
        case let .scheduled(_, publishAt):
            state.status = .scheduled
            state.publishAt = publishAt
        case let .lifecycle(kind, _):
            if let status = kind.status { state.status = status }
            if kind == .unscheduled { state.publishAt = nil }
        case let .attemptStarted(_, _, attempt, at):
            updateTarget {
                $0.status = "attempting"
                $0.attempts = attempt
                $0.attemptStartedAt = at
                $0.retryAt = nil
            }
        case let .targetPublished(_, _, platformPostId, url):
            updateTarget {
                $0.status = "published"
                $0.platformPostId = platformPostId
                $0.url = url
                $0.message = nil
            }
        case let .targetRetryScheduled(_, _, reason, retryAt, message):
            updateTarget {
                $0.status = "retrying"
                $0.retryAt = retryAt
                $0.retryReason = reason
                $0.message = message
                if reason == "transient" { $0.transientFailures += 1 } else { $0.rateLimits += 1 }
            }
        case let .targetFailed(_, _, code, message, _):
            updateTarget {
                $0.status = "failed"
                $0.failureCode = code
                $0.message = message
                $0.retryAt = nil
            }
        }
        return state
    }
}
