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

    /// Whether `contactId` names a contact of `tenant` that exists and is not erased: an exposure or
    /// a conversion is recorded only for one (an erased contact's activity is no longer processed).
    static func isActiveContact(_ contactId: String, tenant: String, in txn: ReadTransaction) throws -> Bool {
        let streamId = CampaignEngine.streamId(tenant, contactId)
        let version = try txn.streamVersion(streamId)
        guard version > 0, let last = try txn.streamEvents(streamId, from: version, limit: 1).first else {
            return false
        }
        return last.type == ContactEvent.Kind.upserted.rawValue
    }

    /// RESOURCE_NOT_FOUND for the contact an exposure or a conversion names, at `/payload/contactId`.
    static func contactNotFound(_ contactId: String) -> CampaignError {
        CampaignError.notFound("contact", contactId, pointer: "/contactId").located(under: "/payload")
    }

    func planConnection(_ command: SocialCommand, _ route: Route, tenant: String, now: Date) throws -> Plan {
        let (state, version) = try loadConnection(tenant, route.id)
        let decision = try CampaignEngine.onWire {
            try SocialConnection.decide(command, state: state, context: DecisionContext(now: now, tenant: tenant))
        }
        return decided(
            route, tenant: tenant, state: state, version: version, decision: decision, now: now,
            codec: SnapshotCodecs.connection, evolve: SocialConnection.evolve, answer: { $0.json(at: now) })
    }

    /// A plan that appends post events (the publishing-queue projection keeps the time index current).
    func postPlan(
        _ route: Route, tenant: String, _ state: PostState?, _ version: UInt64, _ decision: Decision, now: Date,
        preconditions: [@Sendable (ReadTransaction) throws -> Void] = [],
        extraWrite: (@Sendable (WriteTransaction) throws -> Void)? = nil
    ) -> Plan {
        var plan = decided(
            route, tenant: tenant, state: state, version: version, decision: decision, now: now,
            codec: SnapshotCodecs.post, evolve: Post.evolve, answer: \.json, preconditions: preconditions)
        if let extraWrite { plan.afterAppend = { txn, _ in try extraWrite(txn) } }
        return plan
    }

    func planPost(_ command: PostCommand, _ route: Route, tenant: String, now: Date) throws -> Plan {
        let (state, version) = try loadPost(tenant, route.id)
        var context = DecisionContext(now: now, tenant: tenant)
        var connectionIds = state?.connectionIds ?? []
        var campaignId = state?.campaignId
        if case let .create(_, ids, _, _, _, named) = command {
            connectionIds = ids
            campaignId = named
        }
        // New targets are checked as a created post's are: the tenant's own, still connected.
        if case let .update(_, _, _, _, ids?) = command { connectionIds = ids }
        // What deciding read of other streams must not change before this commits (a campaign
        // cancelled, a connection disconnected meanwhile): the command is then decided again.
        var preconditions = [@Sendable (ReadTransaction) throws -> Void]()
        // A post is created, scheduled and published only while its campaign is not called off.
        switch command {
        case .create, .schedule, .publish:
            if let campaignId {
                let (campaign, campaignVersion) = try loadCampaign(tenant, campaignId)
                if let campaign { context.campaigns[campaignId] = campaign }
                preconditions.append(
                    CampaignEngine.unchanged(CampaignEngine.streamId(tenant, campaignId), at: campaignVersion))
            }
        case .update, .unschedule, .cancel: break
        }
        // Created and updated against its targets' rules (a publish checks them at each attempt).
        let checksTargets =
            switch command {
            case .create, .update: true
            case .schedule, .unschedule, .cancel, .publish: false
            }
        for id in Set(connectionIds) {
            let (connection, connectionVersion) = try loadConnection(tenant, id)
            if let connection { context.connections[id] = connection }
            if checksTargets {
                preconditions.append(
                    CampaignEngine.unchanged(CampaignEngine.streamId(tenant, id), at: connectionVersion))
            }
        }
        let decision = try CampaignEngine.onWire { try Post.decide(command, state: state, context: context) }
        var plan = postPlan(route, tenant: tenant, state, version, decision, now: now, preconditions: preconditions)
        if case .publish = command { plan.pendingFrom = version }
        return plan
    }

    func planExperiment(_ command: ExperimentCommand, _ route: Route, tenant: String, now: Date) throws -> Plan {
        let experimentId = route.id
        let streamId = route.streamId(tenant: tenant)
        let projections = self.projections
        switch command {
        case let .recordExposure(_, contactId), let .recordConversion(_, contactId):
            // Exposures and conversions commute, so they append without a version check; the
            // rules that matter (running, counted once) are checked inside the write transaction
            // against the experiment-results projection, which every earlier append updated.
            let isExposure = if case .recordExposure = command { true } else { false }
            let (state, seen) = try projections.read("experiment-results") { reader in
                (
                    try ExperimentResultsProjection.experiment(reader, tenant: tenant, id: experimentId),
                    try ExperimentResultsProjection.exposure(
                        reader, tenant: tenant, id: experimentId, contactId: contactId)
                )
            }
            var context = DecisionContext(now: now, tenant: tenant)
            context.alreadyCounted = isExposure ? seen != nil : seen?.converted == true
            context.exposedVariant = seen?.variant
            // The write transaction checks the contact of a request that appends. One that will not
            // (counted already, or a conversion of a contact never exposed) checks it here, so an
            // unknown or erased contact is not found rather than "counted" or "not exposed"; an
            // experiment that is not running answers with its own conflict first.
            let appends = isExposure ? seen == nil : seen?.converted == false
            if state?.status == .running, !appends,
                try !store.read({ try CampaignEngine.isActiveContact(contactId, tenant: tenant, in: $0) })
            {
                throw CampaignEngine.contactNotFound(contactId)
            }
            let decision = try CampaignEngine.onWire { try Experiment.decide(command, state: state, context: context) }
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
                            // Checked here, in the transaction, so an erasure committed meanwhile wins.
                            guard try CampaignEngine.isActiveContact(contactId, tenant: tenant, in: txn) else {
                                throw CampaignEngine.contactNotFound(contactId)
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
        case .create, .update, .start, .stop, .declareWinner:
            let (state, version) = try loadExperiment(tenant, experimentId)
            var context = DecisionContext(now: now, tenant: tenant)
            // Created on, and started in, only a campaign that will still send; its channel decides
            // what the variants' content may hold.
            var campaignId: String?
            if case let .create(_, named, _, _) = command { campaignId = named }
            if case .start = command { campaignId = state?.campaignId }
            // New variants' content is checked against the campaign's channel.
            if case .update(_, _, _?) = command { campaignId = state?.campaignId }
            // Deciding read the campaign: it must not change (be cancelled, say) before this commits.
            var preconditions = [@Sendable (ReadTransaction) throws -> Void]()
            if let campaignId {
                let (campaign, campaignVersion) = try loadCampaign(tenant, campaignId)
                if let campaign { context.campaigns[campaignId] = campaign }
                preconditions.append(
                    CampaignEngine.unchanged(CampaignEngine.streamId(tenant, campaignId), at: campaignVersion))
            }
            if case .start = command, let state {
                // One experiment runs on a campaign at a time.
                preconditions.append(
                    try readRunningExperiments(into: &context, tenant: tenant, campaignId: state.campaignId) { again in
                        _ = try CampaignEngine.onWire { try Experiment.decide(command, state: state, context: again) }
                    })
            }
            let decision = try CampaignEngine.onWire { try Experiment.decide(command, state: state, context: context) }
            return decided(
                route, tenant: tenant, state: state, version: version, decision: decision, now: now,
                codec: SnapshotCodecs.experiment, evolve: Experiment.evolve, answer: \.json,
                preconditions: preconditions)
        }
    }
}
