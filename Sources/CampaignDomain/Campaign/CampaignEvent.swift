import Foundation

/// What happened to a campaign: the campaign aggregate's events, each case carrying its fields.
///
/// ``Kind``'s raw values are the stored `type` names, written here once; ``payload`` and
/// ``init(_:)`` are the only places that know the stored JSON shape (on disk as before).
public enum CampaignEvent: Sendable, Equatable {
    /// Created, as a draft (with the send time it was planned for, if any).
    case created(
        campaignId: String, name: String, channel: String, segmentId: String?, content: Content?, sendAt: Date?)
    /// Renamed, moved to another channel, or given new content (absent fields are unchanged).
    case updated(campaignId: String, name: String?, channel: String?, content: Content?)
    /// Given a segment to send to.
    case segmentAttached(campaignId: String, segmentId: String)
    /// Scheduled to send at `sendAt`.
    case scheduled(campaignId: String, sendAt: Date)
    /// Moved by a lifecycle command whose event carries only the id (unscheduled … deleted).
    case transitioned(Kind, campaignId: String)

    /// The stored event types of a campaign.
    public enum Kind: String, Sendable, CaseIterable {
        /// `campaign.created`.
        case created = "campaign.created"
        /// `campaign.updated`.
        case updated = "campaign.updated"
        /// `campaign.segmentAttached`.
        case segmentAttached = "campaign.segmentAttached"
        /// `campaign.scheduled`.
        case scheduled = "campaign.scheduled"
        /// `campaign.unscheduled`: back to draft.
        case unscheduled = "campaign.unscheduled"
        /// `campaign.activated`: sending.
        case activated = "campaign.activated"
        /// `campaign.paused`.
        case paused = "campaign.paused"
        /// `campaign.resumed`: sending again.
        case resumed = "campaign.resumed"
        /// `campaign.completed`.
        case completed = "campaign.completed"
        /// `campaign.cancelled`.
        case cancelled = "campaign.cancelled"
        /// `campaign.archived`.
        case archived = "campaign.archived"
        /// `campaign.deleted`: the stream is closed.
        case deleted = "campaign.deleted"

        /// The status a lifecycle event leaves the campaign in (nil for the events with fields).
        var status: CampaignStatus? {
            switch self {
            case .created, .updated, .segmentAttached, .scheduled: return nil
            case .unscheduled: return .draft
            case .activated, .resumed: return .active
            case .paused: return .paused
            case .completed: return .completed
            case .cancelled: return .cancelled
            case .archived: return .archived
            case .deleted: return .deleted
            }
        }

        /// The event a lifecycle command records.
        init(_ transition: CampaignTransition) {
            switch transition {
            case .unschedule: self = .unscheduled
            case .activate: self = .activated
            case .pause: self = .paused
            case .resume: self = .resumed
            case .complete: self = .completed
            case .cancel: self = .cancelled
            case .archive: self = .archived
            case .delete: self = .deleted
            }
        }
    }

    /// The case's stored type: its ``Kind``, whose raw value is the record's `type`.
    public var kind: Kind {
        switch self {
        case .created: return .created
        case .updated: return .updated
        case .segmentAttached: return .segmentAttached
        case .scheduled: return .scheduled
        case let .transitioned(kind, _): return kind
        }
    }

    /// The campaign the event belongs to.
    public var campaignId: String {
        switch self {
        case let .created(id, _, _, _, _, _), let .updated(id, _, _, _), let .segmentAttached(id, _),
            let .scheduled(id, _), let .transitioned(_, id):
            return id
        }
    }

    /// The JSON object the case is stored as: its fields by name, optional ones only when present.
    public var payload: JSONObject {
        var payload: JSONObject = ["campaignId": .string(campaignId)]
        switch self {
        case let .created(_, name, channel, segmentId, content, sendAt):
            payload["name"] = .string(name)
            payload["channel"] = .string(channel)
            if let segmentId { payload["segmentId"] = .string(segmentId) }
            if let content { payload["content"] = content.json }
            if let sendAt { payload["sendAt"] = .string(Timestamp.format(sendAt)) }
        case let .updated(_, name, channel, content):
            if let name { payload["name"] = .string(name) }
            if let channel { payload["channel"] = .string(channel) }
            if let content { payload["content"] = content.json }
        case let .segmentAttached(_, segmentId): payload["segmentId"] = .string(segmentId)
        case let .scheduled(_, sendAt): payload["sendAt"] = .string(Timestamp.format(sendAt))
        case .transitioned: break
        }
        return payload
    }

    /// The event as the engine appends it.
    public var domainEvent: DomainEvent { DomainEvent(kind.rawValue, payload) }

    /// Reads a stored campaign event (its payload already upcast); nil for another aggregate's type.
    /// Missing fields read as empty, as the fold always has: the log is trusted, never re-validated.
    public init?(_ record: EventRecord) {
        guard let kind = Kind(rawValue: record.type) else { return nil }
        let p = record.payload
        let id = p["campaignId"]?.stringValue ?? ""
        func date(_ key: String) -> Date? { p[key]?.stringValue.flatMap { Timestamp.parse($0) } }
        switch kind {
        case .created:
            self = .created(
                campaignId: id, name: p["name"]?.stringValue ?? "", channel: p["channel"]?.stringValue ?? "",
                segmentId: p["segmentId"]?.stringValue, content: Content(json: p["content"]), sendAt: date("sendAt"))
        case .updated:
            self = .updated(
                campaignId: id, name: p["name"]?.stringValue, channel: p["channel"]?.stringValue,
                content: Content(json: p["content"]))
        case .segmentAttached:
            guard let segmentId = p["segmentId"]?.stringValue else { return nil }
            self = .segmentAttached(campaignId: id, segmentId: segmentId)
        case .scheduled:
            guard let sendAt = date("sendAt") else { return nil }
            self = .scheduled(campaignId: id, sendAt: sendAt)
        default:
            self = .transitioned(kind, campaignId: id)
        }
    }
}
