import CampaignDomain
import CampaignProjections
import CampaignSnapshots
import EventStore
import Foundation

extension CampaignEngine {
    func loadConnection(_ tenant: String, _ id: String) throws -> (ConnectionState?, UInt64) {
        try fold(CampaignEngine.streamId(tenant, id), SnapshotCodecs.connection, SocialConnection.evolve)
    }

    func loadPost(_ tenant: String, _ id: String) throws -> (PostState?, UInt64) {
        try fold(CampaignEngine.streamId(tenant, id), SnapshotCodecs.post, Post.evolve)
    }

    func loadExperiment(_ tenant: String, _ id: String) throws -> (ExperimentState?, UInt64) {
        try fold(CampaignEngine.streamId(tenant, id), SnapshotCodecs.experiment, Experiment.evolve)
    }

    func planConnection(_ command: Command, tenant: String, now: Date) throws -> Plan {
        guard let connectionId = command.connectionId else { preconditionFailure("social command without id") }
        let streamId = CampaignEngine.streamId(tenant, connectionId)
        let (state, version) = try loadConnection(tenant, connectionId)
        let decision = try SocialConnection.decide(
            command, state: state, context: DecisionContext(now: now, tenant: tenant))
        let after = CampaignEngine.project(state, decision.events, from: version, at: now, SocialConnection.evolve)
        var plan = Plan(streams: [(streamId, version, decision.events)], decision: decision) { receipt in
            var extra: [String: JSON] = ["connectionId": .string(connectionId)]
            if let after { extra["connection"] = after.json(at: now) }
            return CampaignEngine.receiptData(receipt, streamId: streamId, extra)
        }
        plan.snapshot = SnapshotPlan(streamId, SnapshotCodecs.connection, after)
        if case .socialConnect = command { plan.conflictIsDuplicate = true }
        return plan
    }

    /// A plan that appends post events (the publishing-queue projection keeps the time index current).
    func postPlan(
        _ tenant: String, _ state: PostState?, _ version: UInt64, _ decision: Decision, now: Date,
        preconditions: [@Sendable (ReadTransaction) throws -> Void] = [],
        extraWrite: (@Sendable (WriteTransaction) throws -> Void)? = nil
    ) -> Plan {
        let postId = state?.id ?? decision.events.first?.payload["postId"]?.stringValue ?? ""
        let streamId = CampaignEngine.streamId(tenant, postId)
        let after = CampaignEngine.project(state, decision.events, from: version, at: now, Post.evolve)
        var afterAppend: (@Sendable (WriteTransaction, AppendReceipt) throws -> Void)?
        if let extraWrite { afterAppend = { txn, _ in try extraWrite(txn) } }
        var plan = Plan(
            streams: [(streamId, version, decision.events)], decision: decision, preconditions: preconditions,
            afterAppend: afterAppend,
            respond: { receipt in
                var extra: [String: JSON] = ["postId": .string(postId)]
                if let after { extra["post"] = after.json }
                return CampaignEngine.receiptData(receipt, streamId: streamId, extra)
            })
        plan.snapshot = SnapshotPlan(streamId, SnapshotCodecs.post, after)
        return plan
    }

    func planPost(_ command: Command, tenant: String, now: Date) throws -> Plan {
        guard let postId = command.resourceIdForPostCommand else { preconditionFailure("post command without id") }
        let (state, version) = try loadPost(tenant, postId)
        var context = DecisionContext(now: now, tenant: tenant)
        var connectionIds = state?.connectionIds ?? []
        if case let .postCreate(_, ids, _, _, _, campaignId) = command {
            connectionIds = ids
            if let campaignId, let campaign = try loadCampaign(tenant, campaignId).0 {
                context.campaigns[campaignId] = campaign
            }
        }
        for id in Set(connectionIds) {
            if let connection = try loadConnection(tenant, id).0 { context.connections[id] = connection }
        }
        let decision = try Post.decide(command, state: state, context: context)
        var plan = postPlan(tenant, state, version, decision, now: now)
        if case .postCreate = command { plan.conflictIsDuplicate = true }
        return plan
    }

    func planExperiment(_ command: Command, tenant: String, now: Date) throws -> Plan? {
        guard let experimentId = command.experimentId else { preconditionFailure("experiment command without id") }
        let streamId = CampaignEngine.streamId(tenant, experimentId)
        let projections = self.projections
        switch command {
        case let .experimentRecordExposure(_, contactId), let .experimentRecordConversion(_, contactId):
            // Exposures and conversions commute, so they append without a version check; the
            // rules that matter (running, counted once) are checked inside the write transaction
            // against the experiment-results projection, which every earlier append updated.
            let isExposure = if case .experimentRecordExposure = command { true } else { false }
            let (state, seen) = try projections.read("experiment-results") { reader in
                (
                    try ExperimentResultsProjection.experiment(reader, tenant: tenant, id: experimentId),
                    try ExperimentResultsProjection.exposure(
                        reader, tenant: tenant, id: experimentId, contactId: contactId)
                )
            }
            let decision = try Experiment.decide(
                command, state: state, context: DecisionContext(now: now, tenant: tenant),
                alreadyCounted: isExposure ? seen != nil : seen?.converted == true,
                exposedVariant: seen?.variant)
            guard let event = decision.events.first, let variant = event.payload["variant"]?.stringValue else {
                throw NoChange(
                    status: 200,
                    data: .object([
                        "experimentId": .string(experimentId), "contactId": .string(contactId), "counted": .bool(false),
                        "variant": seen.map { .string($0.variant) } ?? .null, "events": .array([]),
                    ]))
            }
            var plan = Plan(
                streams: [(streamId, 0, decision.events)], decision: decision,
                preconditions: [
                    { txn in
                        try projections.read("experiment-results", in: txn) { reader in
                            guard
                                try ExperimentResultsProjection.experiment(reader, tenant: tenant, id: experimentId)?
                                    .status == .running
                            else {
                                throw CampaignError(
                                    .resourceConflict, "experiment \(experimentId) is not running",
                                    currentState: "not_running", allowedStates: ["running"])
                            }
                            let current = try ExperimentResultsProjection.exposure(
                                reader, tenant: tenant, id: experimentId, contactId: contactId)
                            if isExposure ? current != nil : current?.converted != false {
                                throw NoChange(
                                    status: 200,
                                    data: .object([
                                        "experimentId": .string(experimentId), "contactId": .string(contactId),
                                        "counted": .bool(false), "variant": .string(current?.variant ?? variant),
                                        "events": .array([]),
                                    ]))
                            }
                        }
                    }
                ],
                respond: { receipt in
                    CampaignEngine.receiptData(
                        receipt, streamId: streamId,
                        [
                            "experimentId": .string(experimentId), "contactId": .string(contactId),
                            "variant": .string(variant), "counted": .bool(true),
                        ])
                })
            plan.unversioned = true
            // The projection row is the experiment's state after this append: snapshot it when due.
            plan.snapshot = SnapshotPlan(
                streamId: streamId, kind: SnapshotCodecs.experiment.kind,
                schemaVersion: SnapshotCodecs.experiment.schemaVersion
            ) { txn in
                try projections.read("experiment-results", in: txn) {
                    try ExperimentResultsProjection.experiment($0, tenant: tenant, id: experimentId)?.snapshot
                }
            }
            return plan
        default:
            let (state, version) = try loadExperiment(tenant, experimentId)
            var context = DecisionContext(now: now, tenant: tenant)
            if case let .experimentCreate(_, campaignId, _, _) = command,
                let campaign = try loadCampaign(tenant, campaignId).0
            {
                context.campaigns[campaignId] = campaign
            }
            let decision = try Experiment.decide(command, state: state, context: context)
            let after = CampaignEngine.project(state, decision.events, from: version, at: now, Experiment.evolve)
            var plan = Plan(streams: [(streamId, version, decision.events)], decision: decision) { receipt in
                var extra: [String: JSON] = ["experimentId": .string(experimentId)]
                if let after { extra["experiment"] = after.json }
                return CampaignEngine.receiptData(receipt, streamId: streamId, extra)
            }
            plan.snapshot = SnapshotPlan(streamId, SnapshotCodecs.experiment, after)
            if case .experimentCreate = command { plan.conflictIsDuplicate = true }
            return plan
        }
    }
}

extension Command {
    var connectionId: String? {
        switch self {
        case let .socialConnect(id, _, _, _, _): return id
        case let .socialRefresh(id, _, _), let .socialDisconnect(id): return id
        default: return nil
        }
    }

    var resourceIdForPostCommand: String? {
        switch self {
        case let .postCreate(id, _, _, _, _, _): return id
        case let .postUpdate(id, _, _, _), let .postSchedule(id, _), let .postCancel(id), let .postPublish(id):
            return id
        default: return nil
        }
    }
}
