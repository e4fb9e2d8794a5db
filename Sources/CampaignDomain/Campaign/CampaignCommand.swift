import Foundation

/// What the campaign aggregate decides. Every case names its campaign: the engine's wire decoder
/// assigns an id to a create that came without one, so no command carries a missing id.
public enum CampaignCommand: Sendable, Equatable {
    /// `campaign.create`.
    case create(
        campaignId: String, name: String, channel: String, segmentId: String? = nil, content: Content? = nil,
        sendAt: Date? = nil)
    /// `campaign.update`: the fields given change.
    case update(campaignId: String, name: String? = nil, channel: String? = nil, content: Content? = nil)
    /// `campaign.attachSegment`.
    case attachSegment(campaignId: String, segmentId: String)
    /// `campaign.schedule`.
    case schedule(campaignId: String, sendAt: Date)
    /// `campaign.unschedule`, `activate`, `pause`, `resume`, `complete`, `cancel`, `archive`, `delete`.
    case transition(CampaignTransition, campaignId: String)

    /// The campaign the command is about.
    public var campaignId: String {
        switch self {
        case let .create(id, _, _, _, _, _), let .update(id, _, _, _), let .attachSegment(id, _),
            let .schedule(id, _), let .transition(_, id):
            return id
        }
    }

    /// The part of the wire name after `campaign.`.
    public var verb: String {
        switch self {
        case .create: return "create"
        case .update: return "update"
        case .attachSegment: return "attachSegment"
        case .schedule: return "schedule"
        case let .transition(transition, _): return transition.rawValue
        }
    }
}

/// Lifecycle commands on a campaign that carry only its id.
public enum CampaignTransition: String, Sendable, CaseIterable {
    /// scheduled → draft.
    case unschedule
    /// scheduled → active.
    case activate
    /// active → paused.
    case pause
    /// paused → active.
    case resume
    /// active → completed.
    case complete
    /// scheduled, active, paused → cancelled.
    case cancel
    /// draft, completed, cancelled → archived.
    case archive
    /// draft → stream closed.
    case delete
}
