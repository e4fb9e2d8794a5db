import Foundation

/// Turns stored payloads of older schema versions into the current shape, on read. An event's
/// `schemaVersion` selects where in its type's chain to start; each step lifts one version.
///
/// History so far:
/// - `campaign.scheduled` v1 carried `sendAt` as Unix seconds (a number); v2 carries an ISO 8601
///   string, like every other time in the payloads.
public enum Upcasters {
    /// One step: from `version` to `version + 1`.
    typealias Step = @Sendable (JSON) -> JSON

    static let chains: [String: [UInt16: Step]] = [
        CampaignEvent.Kind.scheduled.rawValue: [
            1: { payload in
                guard case var .object(members) = payload, let seconds = members["sendAt"]?.numberValue else {
                    return payload
                }
                members["sendAt"] = .string(Timestamp.format(Date(timeIntervalSince1970: seconds)))
                return .object(members)
            }
        ]
    ]

    /// The schema version new events of `type` are written with.
    public static func currentVersion(of type: String) -> UInt16 {
        guard let steps = chains[type], let highest = steps.keys.max() else { return 1 }
        return highest + 1
    }

    /// Whether ``upcast(type:schemaVersion:payload:)`` changes a payload of `type` stored at
    /// `schemaVersion` (false: it is already in the current shape).
    public static func lifts(type: String, from schemaVersion: UInt16) -> Bool {
        chains[type]?[schemaVersion] != nil
    }

    /// The payload lifted from `schemaVersion` to the current version of `type`.
    public static func upcast(type: String, schemaVersion: UInt16, payload: JSON) -> JSON {
        guard let steps = chains[type] else { return payload }
        var version = schemaVersion
        var current = payload
        while let step = steps[version] {
            current = step(current)
            version += 1
        }
        return current
    }
}
