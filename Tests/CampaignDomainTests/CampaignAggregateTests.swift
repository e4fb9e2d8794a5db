import CampaignDomain
import Foundation
import Testing

private let now = Timestamp.parse("2026-11-21T12:00:00Z")!
private let later = Timestamp.parse("2026-11-22T09:00:00Z")!
private let segment = SegmentState(
    id: "seg_1", name: "All", rules: .object([:]), status: .active, createdAt: now, updatedAt: now, version: 1)
private let context = DecisionContext(now: now, tenant: "acme", segments: ["seg_1": segment])

/// The campaign aggregate, given events → when command → then events or error.
@Suite struct CampaignAggregateTests {
    let created = CampaignEvent.created(
        campaignId: "cmp_1", name: "Spring", channel: "email", segmentId: "seg_1",
        content: Content(subject: "Hi", body: "Hello"), sendAt: nil)
    let aggregate = AggregateCase<Campaign>(context: context)

    func given(_ events: [CampaignEvent]) -> CampaignState? { aggregate.given(events) }

    func when(_ command: CampaignCommand, given events: [CampaignEvent]) -> Then<CampaignEvent> {
        aggregate.when(command, given: events)
    }

    /// The error `command` is refused with, given `events`; nil when it is decided.
    func refusal(_ command: CampaignCommand, given events: [CampaignEvent]) -> CampaignError? {
        do {
            _ = try Campaign.decide(command, state: given(events), context: context)
            return nil
        } catch {
            return error
        }
    }

    @Test func createRecordsTheTrimmedNameAndTheFieldsGiven() {
        let command = CampaignCommand.create(
            campaignId: "cmp_1", name: "  Spring ", channel: "email", segmentId: "seg_1",
            content: Content(subject: "Hi", body: "Hello"), sendAt: nil)
        #expect(when(command, given: []) == .events([created]))
        #expect(when(command, given: [created]) == .error(.duplicateResource))
    }

    @Test func scheduleActivatePauseResumeFollowTheStateTable() {
        let scheduled = CampaignEvent.scheduled(campaignId: "cmp_1", sendAt: later)
        #expect(when(.schedule(campaignId: "cmp_1", sendAt: later), given: [created]) == .events([scheduled]))
        #expect(when(.schedule(campaignId: "cmp_1", sendAt: now), given: [created]) == .error(.invalidSchedule))
        #expect(
            when(.transition(.activate, campaignId: "cmp_1"), given: [created])
                == .error(.campaignNotScheduled))
        let active = [created, scheduled, .transitioned(.activated, campaignId: "cmp_1")]
        #expect(given(active)?.status == .active)
        #expect(
            when(.transition(.pause, campaignId: "cmp_1"), given: active)
                == .events([.transitioned(.paused, campaignId: "cmp_1")]))
        #expect(
            when(.update(campaignId: "cmp_1", name: "New", channel: nil, content: nil), given: active)
                == .error(.campaignAlreadyActive))
        #expect(
            when(.transition(.delete, campaignId: "cmp_1"), given: active) == .error(.resourceConflict))
    }

    /// A campaign scheduled without content (a store written before `schedule` checked it) is not
    /// activated, by a host or the scheduler, nor resumed: it would send nothing. Content given,
    /// it is.
    @Test func aCampaignWithoutContentIsNotSent() {
        let bare = CampaignEvent.created(
            campaignId: "cmp_1", name: "Bare", channel: "sms", segmentId: "seg_1", content: nil, sendAt: nil)
        let scheduled = [bare, .scheduled(campaignId: "cmp_1", sendAt: later)]
        let paused =
            scheduled + [.transitioned(.activated, campaignId: "cmp_1"), .transitioned(.paused, campaignId: "cmp_1")]
        #expect(when(.transition(.activate, campaignId: "cmp_1"), given: scheduled) == .error(.validationError))
        #expect(when(.transition(.resume, campaignId: "cmp_1"), given: paused) == .error(.validationError))
        let refused = refusal(.transition(.activate, campaignId: "cmp_1"), given: scheduled)
        #expect(refused?.details?.map(\.pointer) == ["/campaignId"])
        #expect(refused?.message == "campaign cmp_1 has no content: give it content (campaign.update) first")
        let content = CampaignEvent.updated(campaignId: "cmp_1", name: nil, channel: nil, content: Content(body: "Hi"))
        #expect(
            when(.transition(.activate, campaignId: "cmp_1"), given: scheduled + [content])
                == .events([.transitioned(.activated, campaignId: "cmp_1")]))
        #expect(
            when(.transition(.resume, campaignId: "cmp_1"), given: paused + [content])
                == .events([.transitioned(.resumed, campaignId: "cmp_1")]))
        // Cancelling one is not sending it.
        #expect(
            when(.transition(.cancel, campaignId: "cmp_1"), given: scheduled)
                == .events([.transitioned(.cancelled, campaignId: "cmp_1")]))
    }

    /// Content written before the channel rules folds as it was (an email without a subject), but
    /// it is neither scheduled nor sent so: schedule, activate and resume name what it lacks.
    @Test func contentItsChannelCannotCarryIsNotSent() {
        let old = CampaignEvent.created(
            campaignId: "cmp_1", name: "Old", channel: "email", segmentId: "seg_1", content: Content(body: "Hi"),
            sendAt: nil)
        #expect(given([old])?.content == Content(body: "Hi"))
        let scheduled = [old, .scheduled(campaignId: "cmp_1", sendAt: later)]
        #expect(when(.schedule(campaignId: "cmp_1", sendAt: later), given: [old]) == .error(.validationError))
        let refused = refusal(.transition(.activate, campaignId: "cmp_1"), given: scheduled)
        #expect(refused?.details?.map(\.pointer) == ["/campaignId"])
        #expect(
            refused?.message
                == "campaign cmp_1's content cannot be sent on email: an email needs a subject; give it content "
                + "that fits (campaign.update) first")
        let fixed = CampaignEvent.updated(
            campaignId: "cmp_1", name: nil, channel: nil, content: Content(subject: "Hello", body: "Hi"))
        #expect(
            when(.transition(.activate, campaignId: "cmp_1"), given: scheduled + [fixed])
                == .events([.transitioned(.activated, campaignId: "cmp_1")]))
    }

    @Test func anUpdateThatChangesNothingDecidesNoEvent() {
        let same = CampaignCommand.update(campaignId: "cmp_1", name: "Spring", channel: "email", content: nil)
        #expect(when(same, given: [created]) == .events([]))
        let renamed = CampaignCommand.update(campaignId: "cmp_1", name: "Summer", channel: nil, content: nil)
        #expect(
            when(renamed, given: [created])
                == .events([.updated(campaignId: "cmp_1", name: "Summer", channel: nil, content: nil)]))
    }

    @Test func aDeletedCampaignIsNotFound() {
        let deleted = [created, .transitioned(.deleted, campaignId: "cmp_1")]
        #expect(given(deleted)?.status == .deleted)
        #expect(when(.transition(.archive, campaignId: "cmp_1"), given: deleted) == .error(.resourceNotFound))
    }

    @Test(arguments: CampaignEvent.Kind.allCases)
    func everyEventReadsBackFromItsStoredForm(kind: CampaignEvent.Kind) {
        let event: CampaignEvent
        switch kind {
        case .created: event = created
        case .updated:
            event = .updated(campaignId: "cmp_1", name: "N", channel: "sms", content: Content(body: "B"))
        case .segmentAttached: event = .segmentAttached(campaignId: "cmp_1", segmentId: "seg_2")
        case .scheduled: event = .scheduled(campaignId: "cmp_1", sendAt: later)
        default: event = .transitioned(kind, campaignId: "cmp_1")
        }
        let stored = event.domainEvent
        #expect(stored.type == kind.rawValue)
        let payload = (try? JSON.parse(stored.payload.bytes)) ?? .null
        #expect(CampaignEvent(EventRecord(type: stored.type, payload: payload, occurredAt: now, version: 1)) == event)
    }

    /// The bytes an answer carries, written from the fields, are the canonical bytes of the state's
    /// value, whichever optional fields are present and whatever the strings hold.
    @Test func aStatesBytesAreTheCanonicalBytesOfItsValue() {
        let odd = "Quote \" slash \\ tab \t nul \u{0} del \u{7f} é ☀️ 🌷"
        let contents: [Content?] = [
            nil, Content(body: ""), Content(subject: "Hi", body: "Hello"), Content(subject: odd, body: odd),
        ]
        for content in contents {
            for (segmentId, sendAt) in [(nil, nil), ("seg_1", later), (nil, later), ("seg_\u{1}", nil)]
                as [(String?, Date?)]
            {
                for status in [CampaignStatus.draft, .scheduled, .archived] {
                    let state = CampaignState(
                        id: "cmp_\(status.rawValue)", name: content == nil ? "Spring" : odd, channel: "email",
                        segmentId: segmentId, content: content, sendAt: sendAt, status: status, createdAt: now,
                        updatedAt: Date(timeIntervalSince1970: 1_790_000_000.123), version: 12_345_678)
                    var bytes = [UInt8]()
                    state.writeJSON(into: &bytes)
                    #expect(bytes == state.json.bytes)
                }
            }
        }
    }
}
