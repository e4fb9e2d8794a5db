import CampaignDomain
import EventStore
import Foundation

extension CampaignEngine {
    func loadConnection(_ tenant: String, _ id: String) throws -> (ConnectionState?, UInt64) {
        try fold(CampaignEngine.streamId(tenant, id), SocialConnection.evolve)
    }

    func loadPost(_ tenant: String, _ id: String) throws -> (PostState?, UInt64) {
        try fold(CampaignEngine.streamId(tenant, id), Post.evolve)
    }

    func loadExperiment(_ tenant: String, _ id: String) throws -> (ExperimentState?, UInt64) {
        try fold(CampaignEngine.streamId(tenant, id), Experiment.evolve)
    }

    func planConnection(_ command: Command, tenant: String, now: Date) throws -> Plan {
        guard let connectionId = command.connectionId else { preconditionFailure("social command without id") }
        let streamId = CampaignEngine.streamId(tenant, connectionId)
        let (state, version) = try loadConnection(tenant, connectionId)
        let decision = try SocialConnection.decide(command, state: state, context: DecisionContext(now: now, tenant: tenant))
        let after = CampaignEngine.project(state, decision.events, from: version, at: now, SocialConnection.evolve)
        var plan = Plan(streams: [(streamId, version, decision.events)], decision: decision) { receipt in
            var extra: [String: JSON] = ["connectionId": .string(connectionId)]
            if let after { extra["connection"] = after.json(at: now) }
            return CampaignEngine.receiptData(receipt, streamId: streamId, extra)
        }
        if case .socialConnect = command { plan.conflictIsDuplicate = true }
        return plan
    }

    /// A plan that appends post events and keeps the post's entry in the time index current.
    func postPlan(_ tenant: String, _ state: PostState?, _ version: UInt64, _ decision: Decision, now: Date,
                  preconditions: [@Sendable (ReadTransaction) throws -> Void] = [],
                  extraWrite: (@Sendable (WriteTransaction) throws -> Void)? = nil) -> Plan {
        let postId = state?.id ?? decision.events.first?.payload["postId"]?.stringValue ?? ""
        let streamId = CampaignEngine.streamId(tenant, postId)
        let after = CampaignEngine.project(state, decision.events, from: version, at: now, Post.evolve)
        let tables = self.tables
        return Plan(
            streams: [(streamId, version, decision.events)], decision: decision, preconditions: preconditions,
            afterAppend: { txn, _ in
                try tables.recordPostChange(tenant: tenant, before: state, after: after, in: txn)
                try extraWrite?(txn)
            },
            respond: { receipt in
                var extra: [String: JSON] = ["postId": .string(postId)]
                if let after { extra["post"] = after.json }
                return CampaignEngine.receiptData(receipt, streamId: streamId, extra)
            })
    }

    func planPost(_ command: Command, tenant: String, now: Date) throws -> Plan {
        guard let postId = command.resourceIdForPostCommand else { preconditionFailure("post command without id") }
        let (state, version) = try loadPost(tenant, postId)
        var context = DecisionContext(now: now, tenant: tenant)
        var connectionIds = state?.connectionIds ?? []
        if case let .postCreate(_, ids, _, _, _, campaignId) = command {
            connectionIds = ids
            if let campaignId, let campaign = try loadCampaign(tenant, campaignId).0 { context.campaigns[campaignId] = campaign }
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
        let tables = self.tables
        let record: @Sendable (WriteTransaction, AppendReceipt) throws -> Void = { txn, receipt in
            try tables.recordExperimentEvents(tenant: tenant, id: experimentId, receipt.events, in: txn)
        }
        switch command {
        case let .experimentRecordExposure(_, contactId), let .experimentRecordConversion(_, contactId):
            // Exposures and conversions commute, so they append without a version check; the
            // rules that matter (running, counted once) are checked inside the write transaction.
            let isExposure = if case .experimentRecordExposure = command { true } else { false }
            let (state, seen) = try store.read { txn in
                (try tables.experiment(tenant: tenant, id: experimentId, in: txn),
                 try tables.experimentContact(tenant: tenant, experimentId: experimentId, contactId: contactId, in: txn))
            }
            let decision = try Experiment.decide(command, state: state, context: DecisionContext(now: now, tenant: tenant),
                                                 alreadyCounted: isExposure ? seen != nil : seen?.converted == true,
                                                 exposedVariant: seen?.variant)
            guard let event = decision.events.first, let variant = event.payload["variant"]?.stringValue else {
                throw NoChange(status: 200, data: .object([
                    "experimentId": .string(experimentId), "contactId": .string(contactId), "counted": .bool(false),
                    "variant": seen.map { .string($0.variant) } ?? .null, "events": .array([]),
                ]))
            }
            let key = EngineTables.experimentContactKey(tenant, experimentId, contactId)
            let contacts = tables.experimentContacts
            var plan = Plan(
                streams: [(streamId, 0, decision.events)], decision: decision,
                preconditions: [{ txn in
                    guard try tables.experiment(tenant: tenant, id: experimentId, in: txn)?.status == .running else {
                        throw CampaignError(.resourceConflict, "experiment \(experimentId) is not running", currentState: "not_running", allowedStates: ["running"])
                    }
                    let current = try tables.experimentContact(tenant: tenant, experimentId: experimentId, contactId: contactId, in: txn)
                    if isExposure ? current != nil : current?.converted != false {
                        throw NoChange(status: 200, data: .object(["experimentId": .string(experimentId), "contactId": .string(contactId),
                                                                   "counted": .bool(false), "variant": .string(current?.variant ?? variant), "events": .array([])]))
                    }
                }],
                afterAppend: { txn, receipt in
                    try txn.put(Array((isExposure ? variant : variant + "\n1").utf8), forKey: key, in: contacts)
                    try record(txn, receipt)
                },
                respond: { receipt in
                    CampaignEngine.receiptData(receipt, streamId: streamId, [
                        "experimentId": .string(experimentId), "contactId": .string(contactId), "variant": .string(variant), "counted": .bool(true),
                    ])
                })
            plan.unversioned = true
            return plan
        default:
            let (state, version) = try loadExperiment(tenant, experimentId)
            var context = DecisionContext(now: now, tenant: tenant)
            if case let .experimentCreate(_, campaignId, _, _) = command, let campaign = try loadCampaign(tenant, campaignId).0 {
                context.campaigns[campaignId] = campaign
            }
            let decision = try Experiment.decide(command, state: state, context: context)
            let after = CampaignEngine.project(state, decision.events, from: version, at: now, Experiment.evolve)
            var plan = Plan(streams: [(streamId, version, decision.events)], decision: decision, afterAppend: record) { receipt in
                var extra: [String: JSON] = ["experimentId": .string(experimentId)]
                if let after { extra["experiment"] = after.json }
                return CampaignEngine.receiptData(receipt, streamId: streamId, extra)
            }
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
        case let .postUpdate(id, _, _, _), let .postSchedule(id, _), let .postCancel(id), let .postPublish(id): return id
        default: return nil
        }
    }
}
