import CampaignDomain
import Foundation
import Testing

private let now = Timestamp.parse("2026-11-21T12:00:00Z")!
private let later = Timestamp.parse("2026-11-22T09:00:00Z")!

/// A connection as its events fold it.
private func connection(_ id: String, _ platform: String, disconnected: Bool = false) -> ConnectionState {
    var state = SocialConnection.evolve(
        nil,
        .connected(
            connectionId: id, platform: platform, accountId: "acme", credentialRef: "vault://\(platform)/acme",
            expiresAt: later),
        at: now, version: 1)
    if disconnected { state = SocialConnection.evolve(state, .disconnected(connectionId: id), at: now, version: 2) }
    return state!
}

/// The post aggregate, given events → when command → then events or error.
@Suite struct PostAggregateTests {
    let aggregate: AggregateCase<Post> = {
        var context = DecisionContext(now: now, tenant: "acme")
        context.connections = [
            "con_x": connection("con_x", "x"), "con_gone": connection("con_gone", "x", disconnected: true),
            "con_li": connection("con_li", "linkedin"), "con_ig": connection("con_ig", "instagram"),
        ]
        return AggregateCase(context: context)
    }()
    let created = PostEvent.created(
        postId: "pst_1", connectionIds: ["con_x"], text: "Launch day", media: [], link: nil, campaignId: nil)

    @Test func createChecksItsConnectionsAndThePlatformRules() {
        #expect(
            aggregate.when(.create(postId: "pst_1", connectionIds: ["con_x"], text: "Launch day"), given: [])
                == .events([created]))
        #expect(
            aggregate.when(.create(postId: "pst_1", connectionIds: ["con_x"], text: "Again"), given: [created])
                == .error(.duplicateResource))
        #expect(
            aggregate.when(.create(postId: "pst_2", connectionIds: ["con_none"], text: "Hi"), given: [])
                == .error(.resourceNotFound))
        #expect(
            aggregate.when(.create(postId: "pst_2", connectionIds: ["con_gone"], text: "Hi"), given: [])
                == .error(.connectionExpired))
        // X allows 280 characters.
        #expect(
            aggregate.when(
                .create(postId: "pst_2", connectionIds: ["con_x"], text: String(repeating: "a", count: 281)), given: [])
                == .error(.validationError))
    }

    @Test func scheduleCancelAndPublishFollowThePostStates() {
        #expect(
            aggregate.when(.schedule(postId: "pst_1", publishAt: now), given: [created]) == .error(.invalidSchedule))
        let scheduled = PostEvent.scheduled(postId: "pst_1", publishAt: later)
        #expect(aggregate.when(.schedule(postId: "pst_1", publishAt: later), given: [created]) == .events([scheduled]))
        let cancelled = PostEvent.lifecycle(.cancelled, postId: "pst_1")
        #expect(aggregate.when(.cancel(postId: "pst_1"), given: [created, scheduled]) == .events([cancelled]))
        #expect(aggregate.given([created, scheduled, cancelled])?.status == .cancelled)
        let unscheduled = PostEvent.lifecycle(.unscheduled, postId: "pst_1")
        #expect(aggregate.when(.unschedule(postId: "pst_1"), given: [created, scheduled]) == .events([unscheduled]))
        let draft = aggregate.given([created, scheduled, unscheduled])
        #expect(draft?.status == .draft && draft?.publishAt == nil)
        #expect(aggregate.when(.unschedule(postId: "pst_1"), given: [created]) == .error(.resourceConflict))
        #expect(
            aggregate.when(.update(postId: "pst_1", text: "New"), given: [created, scheduled, cancelled])
                == .error(.resourceConflict))
        #expect(
            aggregate.when(.publish(postId: "pst_1"), given: [created])
                == .events([.lifecycle(.publishingStarted, postId: "pst_1")]))
        #expect(aggregate.when(.publish(postId: "pst_9"), given: []) == .error(.resourceNotFound))
    }

    /// A post is created, scheduled and published only while its campaign is not called off:
    /// cancelled, archived or deleted. Updating and cancelling it stay open.
    @Test func aPostOfACampaignCalledOffIsRefused() {
        func campaign(_ status: CampaignStatus) -> CampaignState {
            CampaignState(
                id: "cmp_1", name: "Launch", channel: "social", segmentId: nil, content: nil, sendAt: nil,
                status: status, createdAt: now, updatedAt: now, version: 1)
        }
        let linked = PostEvent.created(
            postId: "pst_1", connectionIds: ["con_x"], text: "Launch day", media: [], link: nil, campaignId: "cmp_1")
        let create = PostCommand.create(
            postId: "pst_1", connectionIds: ["con_x"], text: "Launch day", campaignId: "cmp_1")
        for status in [CampaignStatus.draft, .scheduled, .active, .paused, .completed, .cancelled, .archived, .deleted]
        {
            var withCampaign = aggregate
            withCampaign.context.campaigns["cmp_1"] = campaign(status)
            let posts = ![.cancelled, .archived, .deleted].contains(status)
            #expect(
                withCampaign.when(create, given: [])
                    == (posts ? .events([linked]) : .error(status == .deleted ? .resourceNotFound : .resourceConflict)),
                "create, \(status)")
            #expect(
                withCampaign.when(.publish(postId: "pst_1"), given: [linked])
                    == (posts ? .events([.lifecycle(.publishingStarted, postId: "pst_1")]) : .error(.resourceConflict)),
                "publish, \(status)")
            #expect(
                withCampaign.when(.schedule(postId: "pst_1", publishAt: later), given: [linked])
                    == (posts ? .events([.scheduled(postId: "pst_1", publishAt: later)]) : .error(.resourceConflict)),
                "schedule, \(status)")
            #expect(
                withCampaign.when(.cancel(postId: "pst_1"), given: [linked])
                    == .events([.lifecycle(.cancelled, postId: "pst_1")]), "cancel, \(status)")
        }
        let refusal = Post.campaignRefusal(
            "publish", post: aggregate.given([linked])!, campaign: campaign(.cancelled))
        #expect(refusal?.currentState == "cancelled" && refusal?.pointer == "/postId")
        #expect(refusal?.allowedStates == ["draft", "scheduled", "active", "paused", "completed"])
    }

    @Test func anUpdateNeedsAFieldAndKeepsThePlatformRules() {
        #expect(aggregate.when(.update(postId: "pst_1"), given: [created]) == .error(.validationError))
        #expect(
            aggregate.when(.update(postId: "pst_1", text: "Launch week"), given: [created])
                == .events([.updated(postId: "pst_1", text: "Launch week", media: nil, link: nil)]))
        #expect(
            aggregate.when(.update(postId: "pst_1", text: String(repeating: "b", count: 281)), given: [created])
                == .error(.validationError))
    }

    /// A draft or scheduled post may be given other targets: the whole new list, each the tenant's
    /// own and still connected, the content checked against each new platform's rules.
    @Test func anUpdateRetargetsThePostWithinThePlatformRules() {
        let retargeted = PostEvent.updated(
            postId: "pst_1", text: nil, media: nil, link: nil, connectionIds: ["con_li", "con_x"])
        #expect(
            aggregate.when(.update(postId: "pst_1", connectionIds: ["con_li", "con_x"]), given: [created])
                == .events([retargeted]))
        let state = aggregate.given([created, retargeted])
        #expect(state?.connectionIds == ["con_li", "con_x"])
        #expect(state?.targets.allSatisfy { $0.status == "pending" && $0.attempts == 0 } == true)
        // A scheduled post keeps its time; the same list in the same order changes nothing.
        let scheduled = PostEvent.scheduled(postId: "pst_1", publishAt: later)
        let moved = aggregate.given([created, scheduled, retargeted])
        #expect(moved?.status == .scheduled && moved?.publishAt == later)
        #expect(aggregate.when(.update(postId: "pst_1", connectionIds: ["con_x"]), given: [created]) == .events([]))
        // Text past X's 280 characters may move to LinkedIn alone, with the new text in one update.
        let long = String(repeating: "c", count: 600)
        #expect(
            aggregate.when(.update(postId: "pst_1", text: long, connectionIds: ["con_li"]), given: [created])
                == .events([.updated(postId: "pst_1", text: long, media: nil, link: nil, connectionIds: ["con_li"])]))
        #expect(
            aggregate.when(.update(postId: "pst_1", text: long, connectionIds: ["con_li", "con_x"]), given: [created])
                == .error(.validationError))
        // Instagram needs media; a target unknown, disconnected, repeated or none at all is refused.
        #expect(
            aggregate.when(.update(postId: "pst_1", connectionIds: ["con_ig"]), given: [created])
                == .error(.validationError))
        #expect(
            aggregate.when(.update(postId: "pst_1", connectionIds: ["con_x", "con_none"]), given: [created])
                == .error(.resourceNotFound))
        #expect(
            aggregate.when(.update(postId: "pst_1", connectionIds: ["con_gone"]), given: [created])
                == .error(.connectionExpired))
        for targets in [[], ["con_x", "con_x"]] {
            #expect(
                aggregate.when(.update(postId: "pst_1", connectionIds: targets), given: [created])
                    == .error(.validationError), "\(targets)")
        }
        // Once publishing has started, the targets are what was published to.
        let publishing = PostEvent.lifecycle(.publishingStarted, postId: "pst_1")
        #expect(
            aggregate.when(.update(postId: "pst_1", connectionIds: ["con_li"]), given: [created, publishing])
                == .error(.resourceConflict))
    }

    @Test func anUpdateSetsOrRemovesTheLink() {
        let linked = PostEvent.updated(postId: "pst_1", text: nil, media: nil, link: "https://example.com/launch")
        #expect(
            aggregate.when(.update(postId: "pst_1", link: "https://example.com/launch"), given: [created])
                == .events([linked]))
        #expect(aggregate.given([created, linked])?.link == "https://example.com/launch")
        // Removed: stored as "link": null, and read back as a removal, not as "unchanged".
        let removed = PostEvent.updated(postId: "pst_1", text: nil, media: nil, link: .remove)
        #expect(
            aggregate.when(.update(postId: "pst_1", link: .remove), given: [created, linked]) == .events([removed]))
        #expect(removed.payload["link"] == .null)
        #expect(aggregate.given([created, linked, removed])?.link == nil)
        // Removing a link the post does not have changes nothing; a bad link is still refused.
        #expect(aggregate.when(.update(postId: "pst_1", link: .remove), given: [created]) == .events([]))
        #expect(
            aggregate.when(.update(postId: "pst_1", link: "http://x.test"), given: [created])
                == .error(.validationError))
    }
}

/// The experiment aggregate, given events → when command → then events or error.
@Suite struct ExperimentAggregateTests {
    static let campaign = Campaign.evolve(
        nil, .created(campaignId: "cmp_1", name: "Spring", channel: "email", segmentId: nil, content: nil, sendAt: nil),
        at: now, version: 1)!
    let variants = [Variant(key: "a", weight: 50), Variant(key: "b", weight: 50)]
    var created: ExperimentEvent {
        .created(experimentId: "exp_1", campaignId: "cmp_1", name: "Subject test", variants: variants)
    }

    func aggregate(alreadyCounted: Bool = false, exposedVariant: String? = nil) -> AggregateCase<Experiment> {
        var context = DecisionContext(now: now, tenant: "acme")
        context.campaigns = ["cmp_1": Self.campaign]
        context.alreadyCounted = alreadyCounted
        context.exposedVariant = exposedVariant
        return AggregateCase(context: context)
    }

    @Test func createNeedsItsCampaignAndVariantsThatSumToAHundred() {
        let create = ExperimentCommand.create(
            experimentId: "exp_1", campaignId: "cmp_1", name: " Subject test ", variants: variants)
        #expect(aggregate().when(create, given: []) == .events([created]))
        #expect(aggregate().when(create, given: [created]) == .error(.duplicateResource))
        #expect(
            aggregate().when(
                .create(experimentId: "exp_2", campaignId: "cmp_9", name: "X", variants: variants), given: [])
                == .error(.resourceNotFound))
        #expect(
            aggregate().when(
                .create(
                    experimentId: "exp_2", campaignId: "cmp_1", name: "X",
                    variants: [Variant(key: "a", weight: 50), Variant(key: "b", weight: 40)]),
                given: [])
                == .error(.validationError))
    }

    /// A campaign that sends nothing more (completed, cancelled, archived) takes no experiment; one
    /// that is active or paused still does. The same holds when the experiment starts: its
    /// campaign may have been completed, cancelled, archived or deleted since it was created.
    @Test func anExperimentNeedsACampaignThatStillSends() {
        let create = ExperimentCommand.create(
            experimentId: "exp_1", campaignId: "cmp_1", name: "Subject test", variants: variants)
        for status in CampaignStatus.allCases {
            var campaign = Self.campaign
            campaign.status = status
            var context = DecisionContext(now: now, tenant: "acme")
            context.campaigns = ["cmp_1": campaign]
            let sends = [.draft, .scheduled, .active, .paused].contains(status)
            let outcome = AggregateCase<Experiment>(context: context).when(create, given: [])
            let refused: ErrorCode = status == .deleted ? .resourceNotFound : .resourceConflict
            #expect(outcome == (sends ? .events([created]) : .error(refused)), "create, \(status)")
            let started = AggregateCase<Experiment>(context: context).when(
                .start(experimentId: "exp_1"), given: [created])
            #expect(
                started == (sends ? .events([.started(experimentId: "exp_1")]) : .error(.resourceConflict)),
                "start, \(status)")
        }
    }

    /// One experiment runs on a campaign at a time: another one running refuses the start; the
    /// experiment itself in the list (a start decided again) does not.
    @Test func anotherExperimentRunningOnTheCampaignRefusesTheStart() {
        var context = aggregate().context
        context.runningExperiments = ["exp_0"]
        let start = ExperimentCommand.start(experimentId: "exp_1")
        #expect(AggregateCase<Experiment>(context: context).when(start, given: [created]) == .error(.resourceConflict))
        context.runningExperiments = ["exp_1"]
        #expect(
            AggregateCase<Experiment>(context: context).when(start, given: [created])
                == .events([.started(experimentId: "exp_1")]))
    }

    @Test func exposuresAndConversionsCountOncePerContactWhileRunning() {
        #expect(
            aggregate().when(.recordExposure(experimentId: "exp_1", contactId: "ctc_1"), given: [created])
                == .error(.resourceConflict))
        let running = [created, .started(experimentId: "exp_1")]
        let variant = Experiment.assign(experimentId: "exp_1", contactId: "ctc_1", variants: variants)
        #expect(
            aggregate().when(.recordExposure(experimentId: "exp_1", contactId: "ctc_1"), given: running)
                == .events([.exposed(experimentId: "exp_1", contactId: "ctc_1", variant: variant)]))
        #expect(
            aggregate(alreadyCounted: true).when(
                .recordExposure(experimentId: "exp_1", contactId: "ctc_1"), given: running) == .events([]))
        // A conversion needs the exposure first, and counts for the variant the contact saw.
        #expect(
            aggregate().when(.recordConversion(experimentId: "exp_1", contactId: "ctc_1"), given: running)
                == .error(.resourceConflict))
        #expect(
            aggregate(exposedVariant: variant).when(
                .recordConversion(experimentId: "exp_1", contactId: "ctc_1"), given: running)
                == .events([.converted(experimentId: "exp_1", contactId: "ctc_1", variant: variant)]))
    }

    @Test func aWinnerNeedsSignificanceUnlessForcedAndIsDeclaredOnce() {
        let stopped: [ExperimentEvent] = [created, .started(experimentId: "exp_1"), .stopped(experimentId: "exp_1")]
        #expect(
            aggregate().when(.declareWinner(experimentId: "exp_1", variant: "a"), given: stopped)
                == .error(.experimentInsufficientData))
        #expect(
            aggregate().when(.declareWinner(experimentId: "exp_1", variant: "z", force: true), given: stopped)
                == .error(.validationError))
        guard
            case let .events(events) = aggregate().when(
                .declareWinner(experimentId: "exp_1", variant: "a", force: true), given: stopped),
            case let .winnerDeclared(_, variant, forced, _, _)? = events.first
        else {
            Issue.record("a forced winner is declared")
            return
        }
        #expect(variant == "a" && forced)
        #expect(
            aggregate().when(.declareWinner(experimentId: "exp_1", variant: "b", force: true), given: stopped + events)
                == .error(.resourceConflict))
        #expect(aggregate().when(.start(experimentId: "exp_1"), given: stopped) == .error(.resourceConflict))
    }
}

/// Who may be declared an experiment's winner once there are more than two variants.
@Suite struct WinnerTests {
    /// The results of a stopped experiment whose variants (the first the control, equal weights)
    /// had these exposures and conversions.
    func results(_ counts: [(key: String, exposures: Int, conversions: Int)]) -> ExperimentResults {
        let weights = counts.indices.map { 100 / counts.count + ($0 < 100 % counts.count ? 1 : 0) }
        var events: [ExperimentEvent] = [
            .created(
                experimentId: "exp_1", campaignId: "cmp_1", name: "Subject test",
                variants: zip(counts, weights).map { Variant(key: $0.key, weight: $1) }),
            .started(experimentId: "exp_1"),
        ]
        for variant in counts {
            for n in 0..<variant.exposures {
                let contact = "ctc_\(variant.key)_\(n)"
                events.append(.exposed(experimentId: "exp_1", contactId: contact, variant: variant.key))
                if n < variant.conversions {
                    events.append(.converted(experimentId: "exp_1", contactId: contact, variant: variant.key))
                }
            }
        }
        events.append(.stopped(experimentId: "exp_1"))
        let state = AggregateCase<Experiment>(context: DecisionContext(now: now, tenant: "acme")).given(events)
        return ExperimentResults(state!)
    }

    func refusal(_ results: ExperimentResults, _ variant: String) -> String? {
        do {
            try results.checkWinner(variant)
            return nil
        } catch {
            return error.code == .experimentInsufficientData ? error.message : "\(error.code)"
        }
    }

    /// A variant that beats the control is no winner while another converts better: before, `b`
    /// (25%) could be declared though `c` converted 50%, since each was tested against the
    /// control alone.
    @Test func theWinnerBeatsEveryOtherVariantNotOnlyTheControl() {
        let three = results([("control", 200, 20), ("b", 200, 50), ("c", 200, 100)])
        #expect(refusal(three, "b") == "variant b is not significantly better than c (p must be < 0.05)")
        #expect(refusal(three, "c") == nil)
        #expect(refusal(three, "control") != nil)
    }

    /// Each comparison takes SPEC.md's p < 0.05, however many variants there are: p = 0.041
    /// against each other variant declares a winner of three as of two. A winner must beat the
    /// variant as good as the control too, and the control must beat every treatment.
    @Test func eachComparisonTakesTheSpecsThreshold() {
        let test = Statistics.twoProportionZTest(
            controlConversions: 30, controlExposures: 200, treatmentConversions: 46, treatmentExposures: 200)!
        #expect(test.pValue > 0.025 && test.pValue < 0.05)
        #expect(refusal(results([("control", 200, 30), ("b", 200, 46)]), "b") == nil)
        #expect(refusal(results([("control", 200, 30), ("b", 200, 46), ("c", 200, 30)]), "b") == nil)
        #expect(
            refusal(results([("control", 200, 30), ("b", 200, 46), ("c", 200, 44)]), "b")
                == "variant b is not significantly better than c (p must be < 0.05)")
        #expect(
            refusal(results([("control", 200, 30), ("b", 200, 46)]), "control")
                == "variant control is not significantly better than b (p must be < 0.05)")
    }
}

/// The social connection aggregate, given events → when command → then events or error.
@Suite struct SocialConnectionAggregateTests {
    let aggregate = AggregateCase<SocialConnection>(context: DecisionContext(now: now, tenant: "acme"))

    func connect(_ platform: String, _ textLimit: Int?) -> SocialCommand {
        .connect(
            connectionId: "con_1", platform: platform, accountId: "acme", credentialRef: "vault://social/acme",
            expiresAt: later, textLimit: textLimit)
    }

    func connected(_ platform: String, _ textLimit: Int?) -> SocialEvent {
        .connected(
            connectionId: "con_1", platform: platform, accountId: "acme", credentialRef: "vault://social/acme",
            expiresAt: later, textLimit: textLimit)
    }

    /// An account's own text limit (X Premium's 25,000, a Mastodon server's) is stored with its
    /// connection, read back from the stored event and from a snapshot, and is the text limit of
    /// the rules its posts are checked by; without one, the platform's.
    @Test func anAccountsOwnTextLimitIsKeptAndBecomesItsRule() {
        #expect(aggregate.when(connect("x", 25_000), given: []) == .events([connected("x", 25_000)]))
        let premium = aggregate.given([connected("x", 25_000)])
        #expect(premium?.textLimit == 25_000 && premium?.rules?.textLimit == 25_000)
        #expect(premium.flatMap { ConnectionState(snapshot: $0.snapshot) } == premium)
        #expect(premium?.rules?.problems(text: String(repeating: "a", count: 25_000), media: []) == [])
        let plain = aggregate.given([connected("x", nil)])
        #expect(plain?.textLimit == nil && plain?.rules == PlatformRules.all["x"])
        #expect(plain.flatMap { ConnectionState(snapshot: $0.snapshot) } == plain)
        #expect(aggregate.when(connect("mastodon", 100_000), given: []) == .events([connected("mastodon", 100_000)]))
        for (platform, limit) in [("x", 279), ("x", 25_001), ("mastodon", 100_001), ("linkedin", 3_000)] {
            #expect(aggregate.when(connect(platform, limit), given: []) == .error(.validationError), "\(platform)")
        }
    }

    /// A refresh sets the account's own text limit or, with ``FieldUpdate/remove``, returns it to
    /// the platform's; the stored event reads back as it was decided, and the fold follows it.
    @Test func aRefreshSetsOrRemovesTheAccountsOwnTextLimit() {
        func refresh(_ limit: FieldUpdate<Int>?) -> SocialCommand {
            .refresh(connectionId: "con_1", expiresAt: later, textLimit: limit)
        }
        let set = SocialEvent.refreshed(
            connectionId: "con_1", credentialRef: nil, expiresAt: later, textLimit: .set(9_000))
        #expect(aggregate.when(refresh(.set(9_000)), given: [connected("x", nil)]) == .events([set]))
        #expect(aggregate.given([connected("x", nil), set])?.textLimit == 9_000)
        let removed = SocialEvent.refreshed(
            connectionId: "con_1", credentialRef: nil, expiresAt: later, textLimit: .remove)
        #expect(aggregate.when(refresh(.remove), given: [connected("x", 9_000)]) == .events([removed]))
        #expect(aggregate.given([connected("x", 9_000), removed])?.textLimit == nil)
        #expect(aggregate.when(refresh(.set(9_000)), given: [connected("x", 9_000)]) == .events([]))
        #expect(aggregate.when(refresh(.remove), given: [connected("x", nil)]) == .events([]))
        #expect(aggregate.when(refresh(.set(3_000)), given: [connected("linkedin", nil)]) == .error(.validationError))
        // A stored limit that is no integer reads as no change, never as a limit of 0.
        let record = EventRecord(
            type: "social.refreshed",
            payload: .object(["connectionId": .string("con_1"), "textLimit": .string("many")]),
            occurredAt: now, version: 2)
        #expect(SocialEvent(record) == .refreshed(connectionId: "con_1", credentialRef: nil, expiresAt: nil))
    }
}
