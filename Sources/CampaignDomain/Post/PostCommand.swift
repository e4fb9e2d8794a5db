import Foundation

/// What the post aggregate decides.
public enum PostCommand: Sendable, Equatable {
    /// `post.create`.
    case create(
        postId: String, connectionIds: [String], text: String = "", media: [Media] = [], link: String? = nil,
        campaignId: String? = nil)
    /// `post.update`: the fields given change; the link may also be removed, and a draft or
    /// scheduled post may be given other targets (`connectionIds`, the whole new list).
    case update(
        postId: String, text: String? = nil, media: [Media]? = nil, link: FieldUpdate<String>? = nil,
        connectionIds: [String]? = nil)
    /// `post.schedule`.
    case schedule(postId: String, publishAt: Date)
    /// `post.unschedule`: a scheduled post goes back to a draft, to be scheduled again later.
    case unschedule(postId: String)
    /// `post.cancel`.
    case cancel(postId: String)
    /// `post.publish`: starts publishing now; the engine runs the attempts after the commit.
    case publish(postId: String)

    /// The post the command is about.
    public var postId: String {
        switch self {
        case let .create(id, _, _, _, _, _), let .update(id, _, _, _, _), let .schedule(id, _), let .unschedule(id),
            let .cancel(id), let .publish(id):
            return id
        }
    }

    /// The part of the wire name after `post.`.
    public var verb: String {
        switch self {
        case .create: return "create"
        case .update: return "update"
        case .schedule: return "schedule"
        case .unschedule: return "unschedule"
        case .cancel: return "cancel"
        case .publish: return "publish"
        }
    }
}
