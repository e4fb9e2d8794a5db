import Foundation

/// What the segment aggregate decides.
public enum SegmentCommand: Sendable, Equatable {
    /// `segment.create`: `rules` is the rule tree as sent; `decide` parses it against the tenant's schema.
    case create(segmentId: String, name: String, rules: JSON)
    /// `segment.update`.
    case update(segmentId: String, name: String? = nil, rules: JSON? = nil)
    /// `segment.archive`.
    case archive(segmentId: String)

    /// The segment the command is about.
    public var segmentId: String {
        switch self {
        case let .create(id, _, _), let .update(id, _, _), let .archive(id): return id
        }
    }

    /// The part of the wire name after `segment.`.
    public var verb: String {
        switch self {
        case .create: return "create"
        case .update: return "update"
        case .archive: return "archive"
        }
    }
}
