/// Every event type the engine writes: the raw kinds of the aggregates' event enums.
public enum EventTypes {
    /// The stored `type` names (`campaign.created`, …), sorted.
    public static let all: [String] = {
        let kinds =
            CampaignEvent.Kind.allCases.map(\.rawValue) + SegmentEvent.Kind.allCases.map(\.rawValue)
            + MembershipEvent.Kind.allCases.map(\.rawValue) + ContactEvent.Kind.allCases.map(\.rawValue)
            + SchemaEvent.Kind.allCases.map(\.rawValue) + SocialEvent.Kind.allCases.map(\.rawValue)
            + PostEvent.Kind.allCases.map(\.rawValue) + ExperimentEvent.Kind.allCases.map(\.rawValue)
        return Set(kinds).sorted()
    }()

    /// Whether a type filter (`campaign.created`, or a prefix ending in `*` such as `campaign.*`) can
    /// match an event the engine writes.
    public static func canMatch(_ filter: String) -> Bool {
        guard filter.hasSuffix("*") else { return all.contains(filter) }
        let prefix = filter.dropLast()
        return all.contains { $0.hasPrefix(prefix) }
    }
}
