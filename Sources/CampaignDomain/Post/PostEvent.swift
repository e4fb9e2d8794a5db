import Foundation

/// What happened to a social post: the post aggregate's events, each case carrying its fields.
/// The per-target events follow one platform's publish; the post-wide ones its lifecycle.
public enum PostEvent: Sendable, Equatable {
    /// Created, as a draft, for the given connections (one target each).
    case created(
        postId: String, connectionIds: [String], text: String, media: [Media], link: String?, campaignId: String?)
    /// New text, media, link or targets, or the link removed (absent fields are unchanged; a
    /// removed link is stored as `"link": null`; `connectionIds` is the whole new list of targets).
    case updated(
        postId: String, text: String?, media: [Media]?, link: FieldUpdate<String>?, connectionIds: [String]? = nil)
    /// Scheduled to publish at `publishAt`.
    case scheduled(postId: String, publishAt: Date)
    /// A post-wide change that carries only the id: unscheduled, cancelled, publishing started,
    /// published, failed.
    case lifecycle(Kind, postId: String)
    /// An attempt on one target began (committed before the platform is called).
    case attemptStarted(postId: String, connectionId: String, attempt: Int, at: Date)
    /// One target is live on the platform.
    case targetPublished(postId: String, connectionId: String, platformPostId: String, url: String)
    /// One target will be tried again at `retryAt` (`reason`: `transient` or `rate_limited`).
    case targetRetryScheduled(postId: String, connectionId: String, reason: String, retryAt: Date, message: String)
    /// One target failed for good, with its catalogue code (`unconfirmed`: it may be live).
    case targetFailed(postId: String, connectionId: String, code: String, message: String, unconfirmed: Bool)

    /// The stored event types of a post.
    public enum Kind: String, Sendable, CaseIterable {
        /// `post.created`.
        case created = "post.created"
        /// `post.updated`.
        case updated = "post.updated"
        /// `post.scheduled`.
        case scheduled = "post.scheduled"
        /// `post.unscheduled`: back to a draft, with no publish time.
        case unscheduled = "post.unscheduled"
        /// `post.cancelled`.
        case cancelled = "post.cancelled"
        /// `post.publishingStarted`.
        case publishingStarted = "post.publishingStarted"
        /// `post.attemptStarted`.
        case attemptStarted = "post.attemptStarted"
        /// `post.targetPublished`.
        case targetPublished = "post.targetPublished"
        /// `post.targetRetryScheduled`.
        case targetRetryScheduled = "post.targetRetryScheduled"
        /// `post.targetFailed`.
        case targetFailed = "post.targetFailed"
        /// `post.published`: every target is live.
        case published = "post.published"
        /// `post.failed`: every target finished and one failed.
        case failed = "post.failed"

        /// The status a lifecycle event leaves the post in (nil for the others).
        var status: PostStatus? {
            switch self {
            case .unscheduled: return .draft
            case .cancelled: return .cancelled
            case .publishingStarted: return .publishing
            case .published: return .published
            case .failed: return .failed
            default: return nil
            }
        }
    }

    /// The case's stored type: its ``Kind``, whose raw value is the record's `type`.
    public var kind: Kind {
        switch self {
        case .created: return .created
        case .updated: return .updated
        case .scheduled: return .scheduled
        case let .lifecycle(kind, _): return kind
        case .attemptStarted: return .attemptStarted
        case .targetPublished: return .targetPublished
        case .targetRetryScheduled: return .targetRetryScheduled
        case .targetFailed: return .targetFailed
        }
    }

    /// The post the event belongs to.
    public var postId: String {
        switch self {
        case let .created(id, _, _, _, _, _), let .updated(id, _, _, _, _), let .scheduled(id, _),
            let .lifecycle(_, id),
            let .attemptStarted(id, _, _, _), let .targetPublished(id, _, _, _),
            let .targetRetryScheduled(id, _, _, _, _), let .targetFailed(id, _, _, _, _):
            return id
        }
    }

    /// The target a per-target event is about.
    public var connectionId: String? {
        switch self {
        case let .attemptStarted(_, id, _, _), let .targetPublished(_, id, _, _),
            let .targetRetryScheduled(_, id, _, _, _), let .targetFailed(_, id, _, _, _):
            return id
        default: return nil
        }
    }

    /// The JSON object the case is stored as: its fields by name, optional ones only when present.
    public var payload: JSONObject {
        var payload: JSONObject = ["postId": .string(postId)]
        if let connectionId { payload["connectionId"] = .string(connectionId) }
        switch self {
        case let .created(_, connectionIds, text, media, link, campaignId):
            payload["connectionIds"] = .array(connectionIds.map(JSON.string))
            payload["text"] = .string(text)
            payload["media"] = .array(media.map(\.json))
            if let link { payload["link"] = .string(link) }
            if let campaignId { payload["campaignId"] = .string(campaignId) }
        case let .updated(_, text, media, link, connectionIds):
            if let text { payload["text"] = .string(text) }
            if let media { payload["media"] = .array(media.map(\.json)) }
            if let link { payload["link"] = link.value.map(JSON.string) ?? .null }
            if let connectionIds { payload["connectionIds"] = .array(connectionIds.map(JSON.string)) }
        case let .scheduled(_, publishAt): payload["publishAt"] = .string(Timestamp.format(publishAt))
        case .lifecycle: break
        case let .attemptStarted(_, _, attempt, at):
            payload["attempt"] = .number(Double(attempt))
            payload["at"] = .string(Timestamp.format(at))
        case let .targetPublished(_, _, platformPostId, url):
            payload["platformPostId"] = .string(platformPostId)
            payload["url"] = .string(url)
        case let .targetRetryScheduled(_, _, reason, retryAt, message):
            payload["reason"] = .string(reason)
            payload["retryAt"] = .string(Timestamp.format(retryAt))
            payload["message"] = .string(message)
        case let .targetFailed(_, _, code, message, unconfirmed):
            payload["code"] = .string(code)
            payload["message"] = .string(message)
            payload["unconfirmed"] = .bool(unconfirmed)
        }
        return payload
    }

    /// The event as the engine appends it.
    public var domainEvent: DomainEvent { DomainEvent(kind.rawValue, payload) }

    /// Reads a stored post event; nil for another aggregate's type, or one without the fields the
    /// engine always writes for it.
    public init?(_ record: EventRecord) {
        guard let kind = Kind(rawValue: record.type) else { return nil }
        let p = record.payload
        let id = p["postId"]?.stringValue ?? ""
        let target = p["connectionId"]?.stringValue
        func text(_ key: String) -> String? { p[key]?.stringValue }
        func date(_ key: String) -> Date? { p[key]?.stringValue.flatMap { Timestamp.parse($0) } }
        func media(_ json: JSON?) -> [Media]? { json?.arrayValue?.compactMap(Media.init(json:)) }
        switch kind {
        case .created:
            self = .created(
                postId: id, connectionIds: (p["connectionIds"]?.arrayValue ?? []).compactMap(\.stringValue),
                text: text("text") ?? "", media: media(p["media"]) ?? [], link: text("link"),
                campaignId: text("campaignId"))
        case .updated:
            let link: FieldUpdate<String>? =
                p["link"] == .null ? .remove : text("link").map(FieldUpdate.set)
            self = .updated(
                postId: id, text: text("text"), media: media(p["media"]), link: link,
                connectionIds: p["connectionIds"]?.arrayValue?.compactMap(\.stringValue))
        case .scheduled:
            guard let publishAt = date("publishAt") else { return nil }
            self = .scheduled(postId: id, publishAt: publishAt)
        case .unscheduled, .cancelled, .publishingStarted, .published, .failed: self = .lifecycle(kind, postId: id)
        case .attemptStarted:
            guard let target, let attempt = p["attempt"]?.integerValue, let at = date("at") else { return nil }
            self = .attemptStarted(postId: id, connectionId: target, attempt: attempt, at: at)
        case .targetPublished:
            guard let target else { return nil }
            self = .targetPublished(
                postId: id, connectionId: target, platformPostId: text("platformPostId") ?? "", url: text("url") ?? "")
        case .targetRetryScheduled:
            guard let target, let retryAt = date("retryAt") else { return nil }
            self = .targetRetryScheduled(
                postId: id, connectionId: target, reason: text("reason") ?? "", retryAt: retryAt,
                message: text("message") ?? "")
        case .targetFailed:
            guard let target else { return nil }
            self = .targetFailed(
                postId: id, connectionId: target, code: text("code") ?? "", message: text("message") ?? "",
                unconfirmed: p["unconfirmed"]?.boolValue ?? false)
        }
    }
}
