import Foundation

/// What happened to an experiment: the experiment aggregate's events, each case carrying its fields.
public enum ExperimentEvent: Sendable, Equatable {
    /// Created, as a draft, on a campaign, with its variants.
    case created(experimentId: String, campaignId: String, name: String, variants: [Variant])
    /// Renamed or given new variants (absent fields are unchanged).
    case updated(experimentId: String, name: String?, variants: [Variant]?)
    /// Started: exposures count from now.
    case started(experimentId: String)
    /// Stopped: no more exposures or conversions.
    case stopped(experimentId: String)
    /// A contact saw `variant` (counted once per contact).
    case exposed(experimentId: String, contactId: String, variant: String)
    /// An exposed contact converted (counted once per contact).
    case converted(experimentId: String, contactId: String, variant: String)
    /// A winner was declared, with the p-values it was declared on (`forced` without significance).
    case winnerDeclared(experimentId: String, variant: String, forced: Bool, pValue: Double?, srmPValue: Double?)

    /// The stored event types of an experiment.
    public enum Kind: String, Sendable, CaseIterable {
        /// `experiment.created`.
        case created = "experiment.created"
        /// `experiment.updated`.
        case updated = "experiment.updated"
        /// `experiment.started`.
        case started = "experiment.started"
        /// `experiment.stopped`.
        case stopped = "experiment.stopped"
        /// `experiment.exposed`.
        case exposed = "experiment.exposed"
        /// `experiment.converted`.
        case converted = "experiment.converted"
        /// `experiment.winnerDeclared`.
        case winnerDeclared = "experiment.winnerDeclared"
    }

    /// The case's stored type: its ``Kind``, whose raw value is the record's `type`.
    public var kind: Kind {
        switch self {
        case .created: return .created
        case .updated: return .updated
        case .started: return .started
        case .stopped: return .stopped
        case .exposed: return .exposed
        case .converted: return .converted
        case .winnerDeclared: return .winnerDeclared
        }
    }

    /// The experiment the event belongs to.
    public var experimentId: String {
        switch self {
        case let .created(id, _, _, _), let .updated(id, _, _), let .started(id), let .stopped(id),
            let .exposed(id, _, _), let .converted(id, _, _), let .winnerDeclared(id, _, _, _, _):
            return id
        }
    }

    /// The JSON object the case is stored as: its fields by name, optional ones only when present.
    public var payload: JSONObject {
        var payload: JSONObject = ["experimentId": .string(experimentId)]
        switch self {
        case let .created(_, campaignId, name, variants):
            payload["campaignId"] = .string(campaignId)
            payload["name"] = .string(name)
            payload["variants"] = .array(variants.map(\.json))
        case let .updated(_, name, variants):
            if let name { payload["name"] = .string(name) }
            if let variants { payload["variants"] = .array(variants.map(\.json)) }
        case .started, .stopped: break
        case let .exposed(_, contactId, variant), let .converted(_, contactId, variant):
            payload["contactId"] = .string(contactId)
            payload["variant"] = .string(variant)
        case let .winnerDeclared(_, variant, forced, pValue, srmPValue):
            payload["variant"] = .string(variant)
            payload["forced"] = .bool(forced)
            if let pValue { payload["pValue"] = .number(pValue) }
            if let srmPValue { payload["srmPValue"] = .number(srmPValue) }
        }
        return payload
    }

    /// The event as the engine appends it.
    public var domainEvent: DomainEvent { DomainEvent(kind.rawValue, payload) }

    /// Reads a stored experiment event; nil for another aggregate's type, or an exposure,
    /// conversion or winner without its variant.
    public init?(_ record: EventRecord) {
        guard let kind = Kind(rawValue: record.type) else { return nil }
        let p = record.payload
        let id = p["experimentId"]?.stringValue ?? ""
        let variant = p["variant"]?.stringValue
        func variants(_ json: JSON?) -> [Variant]? { json?.arrayValue?.compactMap(Variant.init(json:)) }
        switch kind {
        case .created:
            self = .created(
                experimentId: id, campaignId: p["campaignId"]?.stringValue ?? "", name: p["name"]?.stringValue ?? "",
                variants: variants(p["variants"]) ?? [])
        case .updated:
            self = .updated(experimentId: id, name: p["name"]?.stringValue, variants: variants(p["variants"]))
        case .started: self = .started(experimentId: id)
        case .stopped: self = .stopped(experimentId: id)
        case .exposed, .converted:
            guard let variant else { return nil }
            let contactId = p["contactId"]?.stringValue ?? ""
            self =
                kind == .exposed
                ? .exposed(experimentId: id, contactId: contactId, variant: variant)
                : .converted(experimentId: id, contactId: contactId, variant: variant)
        case .winnerDeclared:
            guard let variant else { return nil }
            self = .winnerDeclared(
                experimentId: id, variant: variant, forced: p["forced"]?.boolValue ?? false,
                pValue: p["pValue"]?.numberValue, srmPValue: p["srmPValue"]?.numberValue)
        }
    }
}
