import Foundation

/// What the scheduler records when time alone changes a tenant's segment memberships (rules with
/// `within_last_days` or `not_within_last_days`); the `segments` read model re-evaluates them
/// when it folds the event, so a rebuild from the log reaches the same memberships.
public enum MembershipEvent: Sendable, Equatable {
    /// The memberships whose boundary passed by `through` (`due` of them) were re-evaluated then.
    case refreshed(through: Date, due: Int)

    /// The stored event types.
    public enum Kind: String, Sendable, CaseIterable {
        /// `segment.membershipsRefreshed`.
        case refreshed = "segment.membershipsRefreshed"
    }

    /// The case's stored type: its ``Kind``, whose raw value is the record's `type`.
    public var kind: Kind { .refreshed }

    /// The JSON object the case is stored as: its fields by name, optional ones only when present.
    public var payload: JSONObject {
        switch self {
        case let .refreshed(through, due):
            return ["through": .string(Timestamp.format(through)), "due": .number(Double(due))]
        }
    }

    /// The event as the engine appends it.
    public var domainEvent: DomainEvent { DomainEvent(kind.rawValue, payload) }
}
