import Foundation

/// What the experiment aggregate decides.
public enum ExperimentCommand: Sendable, Equatable {
    /// `experiment.create`.
    case create(experimentId: String, campaignId: String, name: String, variants: [Variant])
    /// `experiment.update`: the fields given change.
    case update(experimentId: String, name: String? = nil, variants: [Variant]? = nil)
    /// `experiment.start`.
    case start(experimentId: String)
    /// `experiment.stop`.
    case stop(experimentId: String)
    /// `experiment.recordExposure`: commutes with other exposures, so it appends without a version check.
    case recordExposure(experimentId: String, contactId: String)
    /// `experiment.recordConversion`: commutes like an exposure.
    case recordConversion(experimentId: String, contactId: String)
    /// `experiment.declareWinner`: `force` skips the significance checks.
    case declareWinner(experimentId: String, variant: String, force: Bool = false)

    /// The experiment the command is about.
    public var experimentId: String {
        switch self {
        case let .create(id, _, _, _), let .update(id, _, _), let .start(id), let .stop(id),
            let .recordExposure(id, _), let .recordConversion(id, _), let .declareWinner(id, _, _):
            return id
        }
    }

    /// The part of the wire name after `experiment.`.
    public var verb: String {
        switch self {
        case .create: return "create"
        case .update: return "update"
        case .start: return "start"
        case .stop: return "stop"
        case .recordExposure: return "recordExposure"
        case .recordConversion: return "recordConversion"
        case .declareWinner: return "declareWinner"
        }
    }
}
