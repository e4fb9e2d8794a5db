import CampaignDomain
import CampaignEngine
import Foundation
import TestSupport
import Testing

@Suite struct ExperimentTests {
    static let variants = [Variant(key: "control", weight: 50), Variant(key: "b", weight: 50)]

    /// Creates `cmp_1` and its experiment `exp_1` (started unless `start` is false), and imports the
    /// contacts `ctc_0` to `ctc_<contacts - 1>` that the tests expose (an exposure needs a contact).
    func experiment(_ t: TestEngine, start: Bool = true, contacts count: Int = 1_000) async throws {
        let contacts = (0..<count).map { #"{"contactId":"ctc_\#($0)","attributes":{"age":\#(20 + $0 % 50)}}"# }
        let imported = await t.command("contact.import", #"{"contacts":["# + contacts.joined(separator: ",") + "]}")
        try #require(imported.status == 201, "\(imported)")
        try #require(
            await t.command("campaign.create", #"{"campaignId":"cmp_1","name":"Spring","channel":"email"}"#).status
                == 201)
        let created = await t.command(
            "experiment.create",
            #"{"experimentId":"exp_1","campaignId":"cmp_1","name":"Subject","variants":[{"key":"control","#
                + #""weight":50},{"key":"b","weight":50,"content":{"subject":"New!","body":"Hi"}}]}"#
        )
        try #require(created.status == 201, "\(created)")
        if start { try #require(await t.command("experiment.start", #"{"experimentId":"exp_1"}"#).status == 201) }
    }

    /// Contacts that the hash assigns to `variant`, `count` of them.
    func contacts(for variant: String, count: Int, from start: Int = 0) -> [String] {
        var found = [String]()
        var n = start
        while found.count < count {
            let id = "ctc_\(n)"
            if Experiment.assign(experimentId: "exp_1", contactId: id, variants: Self.variants) == variant {
                found.append(id)
            }
            n += 1
        }
        return found
    }

    func expose(_ t: TestEngine, _ ids: [String], convert: Int) async {
        for (index, id) in ids.enumerated() {
            _ = await t.command("experiment.recordExposure", #"{"experimentId":"exp_1","contactId":"\#(id)"}"#)
            if index < convert {
                _ = await t.command("experiment.recordConversion", #"{"experimentId":"exp_1","contactId":"\#(id)"}"#)
            }
        }
    }

    /// An experiment starting while its campaign is archived: the start was decided on the campaign
    /// as a draft, but the archive commits first, so the start is decided again and refused. Before,
    /// both committed and the experiment ran on an archived campaign.
    @Test func anExperimentDecidedBeforeItsCampaignIsArchivedDoesNotStartAfter() async throws {
        let t = try TestEngine()
        let create = #"{"campaignId":"cmp_1","name":"Spring","channel":"email"}"#
        try #require(await t.command("campaign.create", create).status == 201)
        let experiment = await t.command(
            "experiment.create",
            #"{"experimentId":"exp_1","campaignId":"cmp_1","name":"Subject","variants":[{"key":"control","#
                + #""weight":50},{"key":"b","weight":50}]}"#)
        try #require(experiment.status == 201, "\(experiment)")
        let (archived, started) = try await t.decidedTogether(
            ("campaign.archive", #"{"campaignId":"cmp_1"}"#), then: ("experiment.start", #"{"experimentId":"exp_1"}"#))
        #expect(archived.status == 201, "\(archived)")
        #expect(started.code == "RESOURCE_CONFLICT", "\(started)")
        #expect(started["error"]?["currentState"]?.stringValue == "archived")
        let state = await t.query("experiment.get", #"{"experimentId":"exp_1"}"#)
        #expect(state.data?["status"]?.stringValue == "draft")
    }

    /// An experiment created on a draft campaign does not start once the campaign was archived
    /// or deleted: `RESOURCE_CONFLICT` with the campaign's state, as at creation. Before, it
    /// started and took exposures for a campaign that would never send.
    @Test func anExperimentDoesNotStartOnceItsCampaignSendsNothingMore() async throws {
        let t = try TestEngine()
        for (campaign, move) in [("cmp_1", "archive"), ("cmp_2", "delete")] {
            let create = #"{"campaignId":"\#(campaign)","name":"Spring \#(campaign)","channel":"email"}"#
            try #require(await t.command("campaign.create", create).status == 201)
            let experiment = await t.command(
                "experiment.create",
                #"{"experimentId":"exp_\#(move)","campaignId":"\#(campaign)","name":"Subject","variants":["#
                    + #"{"key":"control","weight":50},{"key":"b","weight":50}]}"#)
            try #require(experiment.status == 201, "\(experiment)")
            try #require(await t.command("campaign.\(move)", #"{"campaignId":"\#(campaign)"}"#).status == 201)
            let started = await t.command("experiment.start", #"{"experimentId":"exp_\#(move)"}"#)
            #expect(started.code == "RESOURCE_CONFLICT" && started.status == 409, "\(started)")
            let state = move == "archive" ? "archived" : "deleted"
            #expect(started["error"]?["currentState"]?.stringValue == state)
            #expect(started["error"]?["pointer"]?.stringValue == "/payload/experimentId")
            #expect(
                started["error"]?["message"]?.stringValue
                    == "Cannot start an experiment of \(state.withArticle) campaign; allowed from: draft, scheduled, "
                    + "active, paused")
            let status = await t.query("experiment.get", #"{"experimentId":"exp_\#(move)"}"#).data?["status"]
            #expect(status?.stringValue == "draft")
        }
    }

    /// One experiment runs on a campaign at a time: a contact exposed to two would be sent which
    /// one's variant? A second start is `RESOURCE_CONFLICT` naming the running one, also when the two
    /// starts are decided together; once the first stops or completes, the second starts. Before,
    /// both ran. The `experiment-results` rows that mark running experiments match a rebuild.
    @Test func oneExperimentRunsOnACampaignAtATime() async throws {
        let t = try TestEngine()
        let campaigns = [("cmp_1", "Spring"), ("cmp_2", "Autumn")]
        for (id, name) in campaigns {
            let created = await t.command(
                "campaign.create", #"{"campaignId":"\#(id)","name":"\#(name)","channel":"email"}"#)
            try #require(created.status == 201)
        }
        for (experiment, campaign) in [("exp_a", "cmp_1"), ("exp_b", "cmp_1"), ("exp_c", "cmp_1"), ("exp_d", "cmp_2")] {
            let created = await t.command(
                "experiment.create",
                #"{"experimentId":"\#(experiment)","campaignId":"\#(campaign)","name":"E","variants":["#
                    + #"{"key":"control","weight":50},{"key":"b","weight":50}]}"#)
            try #require(created.status == 201, "\(created)")
        }
        // Two starts decided together on cmp_1: the first commits, the second is refused.
        let (first, second) = try await t.decidedTogether(
            ("experiment.start", #"{"experimentId":"exp_a"}"#), then: ("experiment.start", #"{"experimentId":"exp_b"}"#)
        )
        #expect(first.status == 201, "\(first)")
        #expect(second.code == "RESOURCE_CONFLICT", "\(second)")
        #expect(
            second["error"]?["message"]?.stringValue
                == "experiment exp_a is already running on campaign cmp_1; stop it first")
        #expect(second["error"]?["pointer"]?.stringValue == "/payload/experimentId")
        let draft = await t.query("experiment.get", #"{"experimentId":"exp_b"}"#)
        #expect(draft.data?["status"]?.stringValue == "draft")
        // Another campaign's experiment starts beside it.
        #expect(await t.command("experiment.start", #"{"experimentId":"exp_d"}"#).status == 201)
        #expect(try t.engine.projections.verify("experiment-results").matches)
        // Stopped, the first no longer blocks; completed, the second no longer blocks the third.
        #expect(await t.command("experiment.stop", #"{"experimentId":"exp_a"}"#).status == 201)
        #expect(await t.command("experiment.start", #"{"experimentId":"exp_b"}"#).status == 201)
        let third = await t.command("experiment.start", #"{"experimentId":"exp_c"}"#)
        #expect(third["error"]?["message"]?.stringValue?.hasPrefix("experiment exp_b is already running") == true)
        let declared = await t.command(
            "experiment.declareWinner", #"{"experimentId":"exp_b","variant":"b","force":true}"#)
        #expect(declared.status == 201)
        #expect(await t.command("experiment.start", #"{"experimentId":"exp_c"}"#).status == 201)
        let report = try t.engine.projections.verify("experiment-results")
        #expect(report.matches, "\(report.differences.prefix(3))")
        // The running marks are rebuilt from the log: after a rebuild exp_c still blocks exp_a's campaign.
        try t.engine.projections.rebuild("experiment-results")
        let created = await t.command(
            "experiment.create",
            #"{"experimentId":"exp_e","campaignId":"cmp_1","name":"E","variants":["#
                + #"{"key":"control","weight":50},{"key":"b","weight":50}]}"#)
        #expect(created.status == 201)
        let blocked = await t.command("experiment.start", #"{"experimentId":"exp_e"}"#)
        #expect(blocked["error"]?["message"]?.stringValue?.hasPrefix("experiment exp_c is already running") == true)
    }

    /// A campaign keeps its channel while an experiment runs on it: the running variants were written
    /// for that channel (and results across two channels compare nothing). The move is
    /// `RESOURCE_CONFLICT` at the channel, also when it is decided together with the start; other
    /// updates go on; once the experiment stops, the campaign moves.
    @Test func aCampaignKeepsItsChannelWhileAnExperimentRunsOnIt() async throws {
        let t = try TestEngine()
        let created = await t.command(
            "campaign.create",
            #"{"campaignId":"cmp_1","name":"Spring","channel":"email","content":{"subject":"Hi","body":"Hello"}}"#)
        try #require(created.status == 201)
        let experiment = await t.command(
            "experiment.create",
            #"{"experimentId":"exp_1","campaignId":"cmp_1","name":"E","variants":[{"key":"control","weight":50},"#
                + #"{"key":"b","weight":50,"content":{"subject":"Hey","body":"Hello"}}]}"#)
        try #require(experiment.status == 201)
        let move = #"{"campaignId":"cmp_1","channel":"sms","content":{"body":"Hello"}}"#
        let (started, moved) = try await t.decidedTogether(
            ("experiment.start", #"{"experimentId":"exp_1"}"#), then: ("campaign.update", move))
        #expect(started.status == 201, "\(started)")
        #expect(moved.code == "RESOURCE_CONFLICT", "\(moved)")
        #expect(moved["error"]?["pointer"]?.stringValue == "/payload/channel")
        #expect(
            moved["error"]?["message"]?.stringValue
                == "experiment exp_1 is running on campaign cmp_1 with variants for its channel email; stop it "
                + "before moving the campaign to sms")
        let renamed = await t.command("campaign.update", #"{"campaignId":"cmp_1","name":"Spring sale"}"#)
        #expect(renamed.status == 201)
        #expect(await t.command("campaign.update", move).code == "RESOURCE_CONFLICT")
        #expect(await t.command("experiment.stop", #"{"experimentId":"exp_1"}"#).status == 201)
        #expect(await t.command("campaign.update", move).status == 201)
    }

    @Test func creationChecksVariantsWithPointers() async throws {
        let t = try TestEngine()
        _ = await t.command("campaign.create", #"{"campaignId":"cmp_1","name":"Spring","channel":"email"}"#)
        let bad = await t.command(
            "experiment.create",
            #"{"campaignId":"cmp_1","name":"E","variants":[{"key":"a","weight":60},{"key":"a","weight":30}]}"#)
        #expect(bad.code == "VALIDATION_ERROR")
        #expect(
            bad["error"]?["details"]?.arrayValue?.compactMap { $0["pointer"]?.stringValue } == [
                "/payload/variants/1/key", "/payload/variants",
            ])
        let one = await t.command(
            "experiment.create", #"{"campaignId":"cmp_1","name":"E","variants":[{"key":"a","weight":100}]}"#)
        #expect(one.code == "VALIDATION_ERROR")
        #expect(
            await t.command(
                "experiment.create",
                #"{"campaignId":"cmp_9","name":"E","variants":[{"key":"a","weight":50},{"key":"b","weight":50}]}"#
            ).code == "RESOURCE_NOT_FOUND")
        #expect(
            await t.command(
                "experiment.create",
                #"{"campaignId":"cmp_1","name":"E","variants":[{"key":"a","weight":50.5},{"key":"b","weight":49.5}]}"#
            ).code == "VALIDATION_ERROR")
    }

    static let states = ["draft", "running", "stopped", "completed"]
    static let commands = ["update", "start", "stop", "recordExposure", "recordConversion", "declareWinner"]
    /// `→state`, `=` (accepted, state unchanged) or the error code, from SPEC.md §6.
    static let expected: [String: [String]] = [
        "draft": ["→draft", "→running", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT"],
        "running": ["CONFLICT", "CONFLICT", "→stopped", "→running", "→running", "→completed"],
        "stopped": ["CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "→completed"],
        "completed": ["CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT"],
    ]

    @Test func everyExperimentStateAndCommandPairGivesTheSpecifiedOutcome() async throws {
        for state in Self.states {
            for (column, command) in Self.commands.enumerated() {
                let t = try TestEngine()
                try await experiment(t, start: state != "draft", contacts: 10)
                // ctc_0 is exposed while running, so a conversion is allowed where the state is.
                if state != "draft" {
                    _ = await t.command("experiment.recordExposure", #"{"experimentId":"exp_1","contactId":"ctc_0"}"#)
                }
                if state == "stopped" { _ = await t.command("experiment.stop", #"{"experimentId":"exp_1"}"#) }
                if state == "completed" {
                    _ = await t.command(
                        "experiment.declareWinner", #"{"experimentId":"exp_1","variant":"b","force":true}"#)
                }
                try #require(
                    await t.query("experiment.get", #"{"experimentId":"exp_1"}"#).data?["status"]?.stringValue == state)
                let payload: String
                switch command {
                case "update": payload = #"{"experimentId":"exp_1","name":"Renamed"}"#
                case "recordExposure": payload = #"{"experimentId":"exp_1","contactId":"ctc_9"}"#
                case "recordConversion": payload = #"{"experimentId":"exp_1","contactId":"ctc_0"}"#
                case "declareWinner": payload = #"{"experimentId":"exp_1","variant":"b","force":true}"#
                default: payload = #"{"experimentId":"exp_1"}"#
                }
                let response = await t.command("experiment.\(command)", payload)
                let outcome = Self.expected[state]![column]
                let label = "\(state) × \(command)"
                if outcome.hasPrefix("→") {
                    #expect(response.status == 201, "\(label): \(response)")
                } else {
                    #expect(response.code == "RESOURCE_CONFLICT" && response.status == 409, "\(label): \(response)")
                    #expect(response["error"]?["currentState"]?.stringValue == state, "\(label)")
                }
                let after = await t.query("experiment.get", #"{"experimentId":"exp_1"}"#).data?["status"]?.stringValue
                #expect(after == (outcome.hasPrefix("→") ? String(outcome.dropFirst()) : state), "\(label)")
            }
        }
    }

    /// An exposure or a conversion names a contact of the tenant that is not erased: an unknown id,
    /// another tenant's contact and an erased one are not found (nothing is recorded for them, even
    /// for an erased contact exposed before); a contact upserted again after its erasure counts.
    @Test func exposuresAndConversionsNeedAContactOfTheTenantThatIsNotErased() async throws {
        let t = try TestEngine()
        try await experiment(t, contacts: 3)
        let other = await t.command(
            "contact.upsert", #"{"contactId":"ctc_77","attributes":{"age":40}}"#, as: admin("globex"))
        try #require(other.status == 201)
        func record(_ kind: String, _ contactId: String) async -> JSON {
            await t.command("experiment.record\(kind)", #"{"experimentId":"exp_1","contactId":"\#(contactId)"}"#)
        }
        for contactId in ["ctc_77", "ctc_404"] {
            for kind in ["Exposure", "Conversion"] {
                let refused = await record(kind, contactId)
                #expect(
                    refused.code == "RESOURCE_NOT_FOUND" && refused.status == 404, "\(kind) \(contactId): \(refused)")
                #expect(refused["error"]?["pointer"]?.stringValue == "/payload/contactId")
            }
        }
        #expect(await record("Exposure", "ctc_1").data?["counted"] == .bool(true))
        #expect(await t.command("contact.erase", #"{"contactId":"ctc_1"}"#).status == 201)
        #expect(await record("Exposure", "ctc_1").code == "RESOURCE_NOT_FOUND")
        #expect(await record("Conversion", "ctc_1").code == "RESOURCE_NOT_FOUND")
        #expect(await record("Exposure", "ctc_2").data?["counted"] == .bool(true))
        let results = await t.query("experiment.results", #"{"experimentId":"exp_1"}"#).data?["variants"]?.arrayValue
        #expect(results?.reduce(0) { $0 + ($1["exposures"]?.integerValue ?? 0) } == 2)
        #expect(results?.reduce(0) { $0 + ($1["conversions"]?.integerValue ?? 0) } == 0)
        let upserted = await t.command("contact.upsert", #"{"contactId":"ctc_1","attributes":{"age":33}}"#)
        #expect(upserted.status == 201)
        #expect(await record("Conversion", "ctc_1").data?["counted"] == .bool(true))
    }

    @Test func exposuresAndConversionsCountOnceEvenWhenSentConcurrently() async throws {
        let t = try TestEngine()
        try await experiment(t)
        let responses = await withTaskGroup(of: JSON.self) { group in
            for _ in 0..<30 {
                group.addTask {
                    await t.command("experiment.recordExposure", #"{"experimentId":"exp_1","contactId":"ctc_7"}"#)
                }
            }
            return await group.reduce(into: [JSON]()) { $0.append($1) }
        }
        #expect(responses.filter { $0.data?["counted"] == .bool(true) }.count == 1)
        #expect(Set(responses.compactMap { $0.data?["variant"]?.stringValue }).count == 1)
        #expect(
            await t.command("experiment.recordConversion", #"{"experimentId":"exp_1","contactId":"ctc_8"}"#).code
                == "RESOURCE_CONFLICT")
        #expect(
            await t.command("experiment.recordConversion", #"{"experimentId":"exp_1","contactId":"ctc_7"}"#).data?[
                "counted"] == .bool(true))
        #expect(
            await t.command("experiment.recordConversion", #"{"experimentId":"exp_1","contactId":"ctc_7"}"#).data?[
                "counted"] == .bool(false))
        let results = await t.query("experiment.results", #"{"experimentId":"exp_1"}"#).data
        let total = (results?["variants"]?.arrayValue ?? []).reduce(0) { $0 + ($1["exposures"]?.integerValue ?? 0) }
        #expect(total == 1)
    }

    /// Exposures and conversions of many contacts sent at once share transactions (group commit),
    /// where the projection keeps the experiment's state decoded from one request's events to the
    /// next: every contact is counted, and the live rows are what a rebuild from the log makes.
    @Test func exposuresOfManyContactsSentTogetherAreEachCountedAndMatchARebuild() async throws {
        let t = try TestEngine()
        try await experiment(t)
        let before = t.engine.eventStore.statistics
        let counted = await withTaskGroup(of: Int.self) { group in
            for n in 0..<200 {
                group.addTask {
                    let exposed = await t.command(
                        "experiment.recordExposure", #"{"experimentId":"exp_1","contactId":"ctc_\#(n)"}"#)
                    guard n % 4 == 0 else { return exposed.data?["counted"] == .bool(true) ? 1 : 0 }
                    let converted = await t.command(
                        "experiment.recordConversion", #"{"experimentId":"exp_1","contactId":"ctc_\#(n)"}"#)
                    return (exposed.data?["counted"] == .bool(true) ? 1 : 0)
                        + (converted.data?["counted"] == .bool(true) ? 1 : 0)
                }
            }
            return await group.reduce(0, +)
        }
        #expect(counted == 250)
        let after = t.engine.eventStore.statistics
        let requests = after.groupCommitRequests - before.groupCommitRequests
        let transactions = after.groupCommitTransactions - before.groupCommitTransactions
        #expect(requests > transactions, "some requests shared a transaction (\(requests) in \(transactions))")
        let rows = await t.query("experiment.results", #"{"experimentId":"exp_1"}"#).data?["variants"]?.arrayValue ?? []
        #expect(rows.reduce(0) { $0 + ($1["exposures"]?.integerValue ?? 0) } == 200)
        #expect(rows.reduce(0) { $0 + ($1["conversions"]?.integerValue ?? 0) } == 50)
        let report = try t.engine.projections.verify("experiment-results")
        #expect(report.matches && report.entries > 200, "\(report.differenceCount) differences")
    }

    @Test func aClearWinnerIsDeclaredOnceWithResultsMatchingTheStatistics() async throws {
        let t = try TestEngine()
        try await experiment(t)
        await expose(t, contacts(for: "control", count: 200), convert: 20)
        await expose(t, contacts(for: "b", count: 200), convert: 50)
        let results = try #require(await t.query("experiment.results", #"{"experimentId":"exp_1"}"#).data)
        let rows = results["variants"]?.arrayValue ?? []
        #expect(rows.compactMap { $0["exposures"]?.integerValue } == [200, 200])
        #expect(rows.compactMap { $0["conversions"]?.integerValue } == [20, 50])
        #expect(rows[1]["rate"]?.numberValue == 0.25)
        #expect(abs((rows[1]["lift"]?.numberValue ?? 0) - 1.5) < 1e-12)
        let expected = Statistics.twoProportionZTest(
            controlConversions: 20, controlExposures: 200, treatmentConversions: 50, treatmentExposures: 200)!
        #expect(rows[1]["pValue"]?.numberValue == expected.pValue)
        #expect(results["srmPValue"]?.numberValue == 1)
        #expect(rows[0]["interval95"]?.arrayValue?.count == 2)

        #expect(
            await t.command("experiment.declareWinner", #"{"experimentId":"exp_1","variant":"control"}"#).code
                == "EXPERIMENT_INSUFFICIENT_DATA")
        let declared = await t.command("experiment.declareWinner", #"{"experimentId":"exp_1","variant":"b"}"#)
        #expect(declared.status == 201 && declared.data?["experiment"]?["winner"]?.stringValue == "b")
        let again = await t.command("experiment.declareWinner", #"{"experimentId":"exp_1","variant":"b"}"#)
        #expect(again.code == "RESOURCE_CONFLICT" && again["error"]?["currentState"]?.stringValue == "completed")
    }

    @Test func tooFewExposuresAreInsufficientUnlessForced() async throws {
        let t = try TestEngine()
        try await experiment(t)
        await expose(t, contacts(for: "control", count: 149), convert: 5)
        await expose(t, contacts(for: "b", count: 200), convert: 80)
        let refused = await t.command("experiment.declareWinner", #"{"experimentId":"exp_1","variant":"b"}"#)
        #expect(refused.code == "EXPERIMENT_INSUFFICIENT_DATA" && refused.status == 422)
        #expect(refused["error"]?["message"]?.stringValue?.contains("control has 149 exposures") == true)
        let forced = await t.command(
            "experiment.declareWinner", #"{"experimentId":"exp_1","variant":"b","force":true}"#)
        #expect(forced.status == 201 && forced.data?["experiment"]?["forced"] == .bool(true))
    }

    /// `experiment-results` rebuilds by folding with each experiment's state kept decoded; its rows
    /// must be those the inline appends wrote, conversions and the winner included.
    @Test func theExperimentResultsRebuildEqualsTheLiveModel() async throws {
        let t = try TestEngine()
        try await experiment(t)
        await expose(t, contacts(for: "control", count: 40), convert: 7)
        await expose(t, contacts(for: "b", count: 30), convert: 12)
        let forced = await t.command(
            "experiment.declareWinner", #"{"experimentId":"exp_1","variant":"b","force":true}"#)
        #expect(forced.status == 201)
        let report = try t.engine.projections.verify("experiment-results")
        #expect(report.matches, "\(report.differences.prefix(3))")
        #expect(report.entries == 72, "70 exposures, the experiment's row and the count of its status")
        let before = await t.query("experiment.results", #"{"experimentId":"exp_1"}"#)
        try t.engine.projections.rebuild("experiment-results")
        let after = await t.query("experiment.results", #"{"experimentId":"exp_1"}"#)
        #expect(after == before)
        #expect(after.data?["variants"]?.arrayValue?.compactMap { $0["conversions"]?.integerValue } == [7, 12])
    }

    @Test func aSampleRatioMismatchBlocksAWinner() async throws {
        let t = try TestEngine()
        try await experiment(t)
        await expose(t, contacts(for: "control", count: 400), convert: 20)
        await expose(t, contacts(for: "b", count: 200), convert: 60)
        let refused = await t.command("experiment.declareWinner", #"{"experimentId":"exp_1","variant":"b"}"#)
        #expect(refused.code == "EXPERIMENT_INSUFFICIENT_DATA")
        #expect(refused["error"]?["message"]?.stringValue?.contains("sample ratio mismatch") == true)
    }

    @Test func anInsignificantDifferenceIsInsufficient() async throws {
        let t = try TestEngine()
        try await experiment(t)
        await expose(t, contacts(for: "control", count: 160), convert: 30)
        await expose(t, contacts(for: "b", count: 160), convert: 33)
        #expect(
            await t.command("experiment.declareWinner", #"{"experimentId":"exp_1","variant":"b"}"#).code
                == "EXPERIMENT_INSUFFICIENT_DATA")
        #expect(
            await t.command("experiment.declareWinner", #"{"experimentId":"exp_1","variant":"z"}"#).code
                == "VALIDATION_ERROR")
    }
}

@Suite struct SchedulerTests {
    func scheduled(_ t: TestEngine, _ id: String, at sendAt: String) async throws {
        try #require(
            await t.command(
                "campaign.create",
                #"{"campaignId":"\#(id)","name":"Campaign \#(id)","channel":"sms","segmentId":"seg_1","#
                    + #""content":{"body":"Hello"}}"#
            ).status == 201)
        try #require(
            await t.command("campaign.schedule", #"{"campaignId":"\#(id)","sendAt":"\#(sendAt)"}"#).status == 201)
    }

    /// A tick reads what is due, then activates it item by item. A campaign rescheduled for later
    /// (or unscheduled) after that read is left as it now is: before, the tick activated it anyway,
    /// ahead of its new send time.
    @Test func aCampaignRescheduledDuringATickIsNotActivatedEarly() async throws {
        let t = try TestEngine()
        _ = await t.command(
            "segment.create",
            #"{"segmentId":"seg_1","name":"All","rules":{"all":[{"field":"email","operator":"exists"}]}}"#)
        // 300 due at 11:00, and the two under test last (due later, and after the others in the index).
        await withTaskGroup(of: Void.self) { group in
            for lane in 0..<8 {
                group.addTask {
                    for n in stride(from: lane, to: 300, by: 8) {
                        try? await scheduled(t, "cmp_\(1_000 + n)", at: "2026-11-21T11:00:00Z")
                    }
                }
            }
        }
        try await scheduled(t, "cmp_later", at: "2026-11-21T11:30:00Z")
        try await scheduled(t, "cmp_off", at: "2026-11-21T11:30:00Z")
        func status(_ id: String) async -> String? {
            await t.query("campaign.get", #"{"campaignId":"\#(id)"}"#).data?["status"]?.stringValue
        }
        let tick = Task { try await t.engine.tick(now: Timestamp.parse("2026-11-21T12:00:00Z")!) }
        // Once the tick is activating (its due list read), move the last two.
        while await status("cmp_1000") != "active" { try await Task.sleep(for: .milliseconds(1)) }
        let moved = #"{"campaignId":"cmp_later","sendAt":"2026-11-21T18:00:00Z"}"#
        #expect(await t.command("campaign.schedule", moved).status == 201)
        #expect(await t.command("campaign.unschedule", #"{"campaignId":"cmp_off"}"#).status == 201)
        let report = try await tick.value
        #expect(await status("cmp_later") == "scheduled")
        #expect(await status("cmp_off") == "draft")
        #expect(!report.items.contains { ["cmp_later", "cmp_off"].contains($0.id) })
        #expect(report.activated.count == 300)
        let later = try await t.engine.tick(now: Timestamp.parse("2026-11-21T18:00:00Z")!)
        #expect(later.activated.map(\.id) == ["cmp_later"])
    }

    @Test func nothingFiresEarlyAndEverythingDueFiresOnce() async throws {
        let t = try TestEngine()
        _ = await t.command(
            "segment.create",
            #"{"segmentId":"seg_1","name":"All","rules":{"all":[{"field":"email","operator":"exists"}]}}"#)
        try await scheduled(t, "cmp_a", at: "2026-11-21T11:00:00Z")
        try await scheduled(t, "cmp_b", at: "2026-11-21T12:00:00Z")
        try await scheduled(t, "cmp_c", at: "2026-11-21T13:00:00Z")
        try await scheduled(t, "cmp_gone", at: "2026-11-21T11:30:00Z")
        _ = await t.command("campaign.unschedule", #"{"campaignId":"cmp_gone"}"#)
        try await scheduled(t, "cmp_moved", at: "2026-11-21T11:15:00Z")
        _ = await t.command("campaign.schedule", #"{"campaignId":"cmp_moved","sendAt":"2026-11-21T14:00:00Z"}"#)

        func tick(_ at: String) async throws -> [String] {
            try await t.engine.tick(now: Timestamp.parse(at)!).activated.map(\.id)
        }
        #expect(try await tick("2026-11-21T10:59:59Z") == [])
        #expect(try await tick("2026-11-21T12:00:00Z") == ["cmp_a", "cmp_b"])
        #expect(try await tick("2026-11-21T12:30:00Z") == [])
        #expect(try await tick("2026-11-21T13:59:59Z") == ["cmp_c"])
        #expect(try await tick("2026-11-21T14:00:00Z") == ["cmp_moved"])
        #expect(try await tick("2026-11-22T00:00:00Z") == [])
        for id in ["cmp_a", "cmp_b", "cmp_c", "cmp_moved"] {
            #expect(await t.query("campaign.get", #"{"campaignId":"\#(id)"}"#).data?["status"]?.stringValue == "active")
            let activations = try t.engine.eventStore.readStream("acme:\(id)").filter {
                $0.type == "campaign.activated"
            }
            #expect(activations.count == 1 && activations.first?.actor == "scheduler")
        }
        #expect(await t.query("campaign.get", #"{"campaignId":"cmp_gone"}"#).data?["status"]?.stringValue == "draft")
    }

    @Test func onlyTheOperatorMovesTheSharedClockAndATenantsTickTouchesOnlyItsTenant() async throws {
        var configuration = EngineConfiguration()
        configuration.operatorTenant = "ops"
        let t = try TestEngine(configuration: configuration)
        for tenant in ["acme", "globex"] {
            _ = await t.command(
                "segment.create",
                #"{"segmentId":"seg_1","name":"All","rules":{"all":[{"field":"email","operator":"exists"}]}}"#,
                as: admin(tenant))
            _ = await t.command(
                "campaign.create",
                #"{"campaignId":"cmp_1","name":"Same id","channel":"sms","segmentId":"seg_1","#
                    + #""content":{"body":"Hello"}}"#,
                as: admin(tenant))
            _ = await t.command(
                "campaign.schedule", #"{"campaignId":"cmp_1","sendAt":"2026-11-21T11:00:00Z"}"#, as: admin(tenant))
        }
        func status(_ tenant: String) async -> String? {
            await t.query("campaign.get", #"{"campaignId":"cmp_1"}"#, as: admin(tenant)).data?["status"]?.stringValue
        }
        // A tenant's admin may not move the shared clock: it would activate globex's campaign.
        let moved = await t.command("system.tick", #"{"now":"2029-01-01T00:00:00Z"}"#)
        #expect(moved.code == "FORBIDDEN" && moved["error"]?["pointer"] == .string("/payload/now"))
        #expect(t.clock.now() == testStart)
        #expect(await status("globex") == "scheduled")

        // The operator moves it, forward only, and runs every tenant's due work.
        let operatorTick = await t.command("system.tick", #"{"now":"2026-11-21T11:00:00Z"}"#, as: admin("ops"))
        #expect(operatorTick.data?["activated"] == .array([.string("acme:cmp_1"), .string("globex:cmp_1")]))
        #expect(t.clock.now() == Timestamp.parse("2026-11-21T11:00:00Z"))
        let backwards = await t.command("system.tick", #"{"now":"2020-01-01T00:00:00Z"}"#, as: admin("ops"))
        #expect(backwards.code == "INVALID_SCHEDULE" && backwards["error"]?["pointer"] == .string("/payload/now"))
        #expect(t.clock.now() == Timestamp.parse("2026-11-21T11:00:00Z"))
        await #expect(throws: CampaignError.self) {
            try await t.engine.tick(now: Timestamp.parse("2026-11-21T10:00:00Z")!)
        }

        // A tenant's tick at the current clock runs that tenant's work only.
        for tenant in ["acme", "globex"] {
            _ = await t.command(
                "campaign.create",
                #"{"campaignId":"cmp_2","name":"Later","channel":"sms","segmentId":"seg_1","#
                    + #""content":{"body":"Hello"}}"#,
                as: admin(tenant))
            _ = await t.command(
                "campaign.schedule", #"{"campaignId":"cmp_2","sendAt":"2026-11-21T11:30:00Z"}"#, as: admin(tenant))
        }
        t.clock.set(Timestamp.parse("2026-11-21T12:00:00Z")!)
        let own = await t.command("system.tick", "{}")
        #expect(own.data?["activated"] == .array([.string("cmp_2")]))
        #expect(
            await t.query("campaign.get", #"{"campaignId":"cmp_2"}"#, as: admin("globex")).data?["status"]?.stringValue
                == "scheduled")
    }

    @Test func aScheduledCampaignKeepsItsSegmentSoTheSchedulerCanActivateIt() async throws {
        let t = try TestEngine()
        _ = await t.command(
            "segment.create",
            #"{"segmentId":"seg_1","name":"All","rules":{"all":[{"field":"email","operator":"exists"}]}}"#)
        _ = await t.command(
            "segment.create",
            #"{"segmentId":"seg_2","name":"Other","rules":{"all":[{"field":"email","operator":"exists"}]}}"#)
        try await scheduled(t, "cmp_a", at: "2026-11-21T11:00:00Z")
        #expect(await t.command("segment.archive", #"{"segmentId":"seg_1"}"#).code == "RESOURCE_CONFLICT")
        let report = try await t.engine.tick(now: Timestamp.parse("2026-11-21T11:00:00Z")!)
        #expect(report.activated.map(\.id) == ["cmp_a"])
    }
}
