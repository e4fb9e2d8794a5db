import CampaignDomain
import Foundation
import Testing

private let now = Timestamp.parse("2026-11-21T12:00:00Z")!
private let context = DecisionContext(now: now, tenant: "acme", segments: [:])

/// What each channel's messages carry (``Channel/problems(with:at:field:)``), on campaigns and on
/// experiments' variants, decided without a database.
@Suite struct ChannelRuleTests {
    /// The pointers and messages `decide` refuses `command` with, given `events`; empty when it is accepted.
    func refusal(_ command: CampaignCommand, given events: [CampaignEvent] = []) -> [(String, String)] {
        var state: CampaignState?
        for (index, event) in events.enumerated() {
            state = Campaign.evolve(state, event, at: now, version: UInt64(index + 1))
        }
        do {
            _ = try Campaign.decide(command, state: state, context: context)
            return []
        } catch {
            #expect(error.code == .validationError)
            return (error.details ?? []).map { ($0.pointer, $0.message) }
        }
    }

    func create(_ channel: String, _ content: Content) -> CampaignCommand {
        .create(campaignId: "cmp_1", name: "Spring", channel: channel, segmentId: nil, content: content, sendAt: nil)
    }

    func created(_ channel: String, _ content: Content?) -> CampaignEvent {
        .created(campaignId: "cmp_1", name: "Spring", channel: channel, segmentId: nil, content: content, sendAt: nil)
    }

    @Test func eachChannelRefusesWhatItCannotCarry() {
        #expect(refusal(create("email", Content(subject: "Hi", body: "Hello"))).isEmpty)
        #expect(refusal(create("email", Content(body: "Hello"))).map(\.0) == ["/content/subject"])
        #expect(
            refusal(create("email", Content(subject: " \u{200B}", body: "Hello"))).map(\.1) == [
                "an email needs a subject"
            ])
        #expect(refusal(create("sms", Content(subject: "Hi", body: "Hello"))).map(\.1) == ["an SMS has no subject"])
        #expect(refusal(create("whatsapp", Content(subject: "Hi", body: "Hello"))).map(\.0) == ["/content/subject"])
        // Push and social messages may have a title or not.
        #expect(refusal(create("push", Content(body: "Hello"))).isEmpty)
        #expect(refusal(create("social", Content(subject: "Hi", body: "Hello"))).isEmpty)
    }

    @Test func bodyLimitsAreCountedAsEachChannelCountsThem() {
        // An SMS counts UTF-16 code units: an emoji outside the BMP is two.
        let sms = String(repeating: "a", count: Channel.smsBodyLimit)
        #expect(refusal(create("sms", Content(body: sms))).isEmpty)
        let smsOver = String(repeating: "a", count: Channel.smsBodyLimit - 1) + "🙂"
        #expect(
            refusal(create("sms", Content(body: smsOver)))
                .elementsEqual([("/content/body", "an SMS body must be at most 1600 UTF-16 code units, not 1601")]) {
                    $0 == $1
                })
        // WhatsApp counts characters: 4,096 flags are 8,192 UTF-16 code units and fit.
        let flags = String(repeating: "🇫🇷", count: Channel.whatsAppBodyLimit)
        #expect(refusal(create("whatsapp", Content(body: flags))).isEmpty)
        #expect(
            refusal(create("whatsapp", Content(body: flags + "a"))).map(\.1)
                == ["a WhatsApp body must be at most 4096 characters, not 4097"])
        // Push counts the title's and the body's UTF-8 bytes together: é is two.
        let title = String(repeating: "é", count: 50)
        #expect(refusal(create("push", Content(subject: title, body: String(repeating: "x", count: 3_400)))).isEmpty)
        #expect(
            refusal(create("push", Content(subject: title, body: String(repeating: "x", count: 3_401)))).map(\.1)
                == ["a push notification's title and body must be at most 3500 bytes of UTF-8 together, not 3501"])
    }

    @Test func anUpdateChecksTheContentAgainstTheChannelItWillHave() {
        let email = created("email", Content(subject: "Hi", body: "Hello"))
        // A body alone would drop the subject: the whole content is replaced.
        #expect(
            refusal(
                .update(campaignId: "cmp_1", name: nil, channel: nil, content: Content(body: "New")), given: [email]
            )
            .map(\.0) == ["/content/subject"])
        // Moving to SMS with the kept content: the channel cannot carry its subject.
        #expect(
            refusal(.update(campaignId: "cmp_1", name: nil, channel: "sms", content: nil), given: [email])
                .elementsEqual([
                    ("/channel", "channel sms cannot carry this campaign's content: an SMS has no subject")
                ]) { $0 == $1 })
        // Moving with new content that fits is accepted.
        #expect(
            refusal(
                .update(campaignId: "cmp_1", name: nil, channel: "sms", content: Content(body: "Hi")), given: [email]
            )
            .isEmpty)
        // A campaign without content moves freely; one whose stored content predates the rules can
        // still be renamed, and kept on its channel.
        #expect(
            refusal(
                .update(campaignId: "cmp_1", name: nil, channel: "sms", content: nil), given: [created("email", nil)]
            ).isEmpty)
        let legacy = created("sms", Content(subject: "Old", body: "Hello"))
        #expect(
            refusal(.update(campaignId: "cmp_1", name: "Renamed", channel: "sms", content: nil), given: [legacy])
                .isEmpty)
        // A content problem every channel has is reported once, not again as the channel's.
        #expect(
            refusal(
                .update(campaignId: "cmp_1", name: nil, channel: nil, content: Content(body: "a\u{0}b")), given: [email]
            )
            .map(\.0) == ["/content/body"])
    }

    @Test func aCampaignKeepsItsChannelWhileAnExperimentRunsOnIt() {
        let state = Campaign.evolve(nil, created("email", Content(subject: "Hi", body: "Hello")), at: now, version: 1)
        var running = context
        running.runningExperiments = ["exp_1"]
        let move = CampaignCommand.update(campaignId: "cmp_1", name: nil, channel: "sms", content: Content(body: "Hi"))
        #expect(throws: CampaignError.self) { try Campaign.decide(move, state: state, context: running) }
        // The channel it has, a name or content: no move, no refusal.
        let same = CampaignCommand.update(campaignId: "cmp_1", name: "Summer", channel: "email", content: nil)
        #expect((try? Campaign.decide(same, state: state, context: running))?.events.count == 1)
        #expect((try? Campaign.decide(move, state: state, context: context))?.events.count == 1)
    }

    @Test func anExperimentsVariantsFitItsCampaignsChannelWhenWrittenAndWhenStarted() throws {
        let sms = Campaign.evolve(nil, created("sms", Content(body: "Hello")), at: now, version: 1)!
        var context = context
        context.campaigns = ["cmp_1": sms]
        let variants = [
            Variant(key: "a", weight: 50), Variant(key: "b", weight: 50, content: Content(subject: "Hi", body: "Hey")),
        ]
        let create = ExperimentCommand.create(experimentId: "exp_1", campaignId: "cmp_1", name: "E", variants: variants)
        #expect(throws: CampaignError.self) { try Experiment.decide(create, state: nil, context: context) }
        do {
            _ = try Experiment.decide(create, state: nil, context: context)
        } catch {
            #expect(error.details?.map(\.pointer) == ["/variants/1/content/subject"])
        }
        // Written while the campaign was an email, then the campaign moved to SMS: start refuses.
        var email = sms
        email.channel = "email"
        context.campaigns["cmp_1"] = email
        let event = try Experiment.decide(create, state: nil, context: context).events[0]
        let record = EventRecord(
            type: event.type, payload: try JSON.parse(event.payload.bytes), occurredAt: now, version: 1)
        let draft = Experiment.evolve(nil, try #require(ExperimentEvent(record)), at: now, version: 1)
        context.campaigns["cmp_1"] = sms
        do {
            _ = try Experiment.decide(.start(experimentId: "exp_1"), state: draft, context: context)
            Issue.record("start was accepted")
        } catch {
            #expect(error.code == .resourceConflict)
            #expect(
                error.message.contains(
                    "variant b cannot be sent on campaign cmp_1's channel sms: an SMS has no subject"))
        }
        // Updating the variants to fit lets it start.
        let fitting = [Variant(key: "a", weight: 50), Variant(key: "b", weight: 50, content: Content(body: "Hey"))]
        #expect(
            (try? Experiment.decide(
                .update(experimentId: "exp_1", name: nil, variants: fitting), state: draft, context: context))?.events
                .count == 1)
        var updated = try #require(draft)
        updated.variants = fitting
        #expect(
            (try? Experiment.decide(.start(experimentId: "exp_1"), state: updated, context: context))?.events.count == 1
        )
    }
}
