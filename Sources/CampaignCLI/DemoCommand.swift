import CampaignDomain
import CampaignEngine
import EventStore
import Foundation
import Hashing
import Synchronization

/// `campaign demo`: a realistic multi-tenant workload through every command family, then a
/// dashboard from the read models. Each run adds to the store (its resources carry a run tag);
/// `--fresh` starts from an empty directory.
enum DemoCommand {
    static let help = """
        usage: campaign demo [--data DIR] [--fresh] [--tenants 1-3] [--contacts 400-100000] [--json]

        Opens DIR (default ./campaign-data) and runs, for each tenant: a custom contact field, a
        contact import, segments, campaigns through their lifecycle, social connections and posts
        through the simulated publisher (including rate limits, retries, a rejection and a timeout),
        an A/B experiment to a declared winner, and scheduler ticks on a simulated clock. Shows the
        error each illegal move gets, then prints a dashboard from the read models and verifies the
        hash chain. Running it again adds to the same store; --fresh deletes the store in DIR first
        (only a directory holding nothing but a store's data.mdb, lock.mdb and rate-windows).
        """

    /// `--fresh`: deletes the store's files (`data.mdb`, `lock.mdb`, the engine's shared rate-limit
    /// windows) in `path`, and only when the directory holds nothing else: `--data . --fresh` in a
    /// project's folder must not delete it.
    static func removeStore(at path: String) throws {
        let storeFiles = Set(CampaignEngine.directoryFiles)
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: path) else { return }
        let others = entries.filter { !storeFiles.contains($0) }.sorted()
        guard others.isEmpty else {
            let named = others.prefix(3).joined(separator: ", ") + (others.count > 3 ? ", …" : "")
            throw CLI.usage(
                "--fresh deletes only a campaign store, and \(path) holds other files too (\(named)); "
                    + "give --data a directory of its own")
        }
        for file in entries { try FileManager.default.removeItem(atPath: path + "/" + file) }
    }

    static func run(_ arguments: Arguments, console: any Console) async throws -> CLI.Exit {
        guard arguments.positionals.isEmpty else { throw CLI.usage("demo takes options only") }
        let path = CLI.dataDirectory(arguments)
        let tenantCount = try number(arguments, "tenants", default: 3, range: 1...3)
        let contactCount = try number(arguments, "contacts", default: 400, range: 400...100_000)
        if arguments.flags.contains("fresh") { try removeStore(at: path) }

        let start = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / 60).rounded(.down) * 60)
        let clock = ManualClock(start)
        let publisher = SimulatedPublisher()
        let engine = try CampaignEngine(
            directory: path,
            configuration: EngineConfiguration(clock: clock, rateLimit: 1_000_000, publisher: publisher))
        defer { engine.close() }
        var random = SystemRandomNumberGenerator()
        let tag = String((0..<4).map { _ in "abcdefghjkmnpqrstvwxyz23456789".randomElement(using: &random)! })
        let demo = Demo(
            engine: engine, clock: clock, tag: tag, contacts: contactCount, console: console,
            quiet: arguments.flags.contains("json"))
        let began = Date()
        let tenants = Array(["acme", "globex", "initech"].prefix(tenantCount))

        demo.section(
            "Run \(tag) on \(path): \(tenants.count) tenants, \(contactCount) contacts each; simulated "
                + "clock from \(Timestamp.format(start))"
        )
        for tenant in tenants { try await demo.setUp(tenant: tenant, contacts: contactCount) }
        demo.section("Illegal moves get catalogue errors")
        try await demo.illegalMoves(tenant: tenants[0], other: tenants.count > 1 ? tenants[1] : "globex")
        demo.section("Time passes: scheduler ticks")
        for minutes in [30, 60, 61, 62, 90, 120] { try await demo.tick(at: start + Double(minutes * 60)) }
        for tenant in tenants { try await demo.finishLifecycle(tenant: tenant) }
        demo.section("A/B test in \(tenants[0])")
        try await demo.experiment(tenant: tenants[0], contacts: contactCount)

        let report = try engine.eventStore.verifyChain()
        let seconds = Date().timeIntervalSince(began)
        if arguments.flags.contains("json") {
            console.out(try await demo.dashboardJSON(tenants: tenants, chain: report, seconds: seconds).text)
        } else {
            try await demo.dashboard(tenants: tenants, chain: report, seconds: seconds)
        }
        return report.isIntact ? .ok : .failure
    }

    static func number(
        _ arguments: Arguments, _ name: String, default value: Int, range: ClosedRange<Int>
    ) throws(Arguments.UsageError) -> Int {
        guard let text = arguments.options[name] else { return value }
        guard let number = Int(text), range.contains(number) else {
            throw CLI.usage("--\(name) takes a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }
}

/// The demo's workload and output.
final class Demo: Sendable {
    let engine: CampaignEngine
    let clock: ManualClock
    let tag: String
    /// The A/B test's id: its variant split over this run's contacts passes the sample-ratio check.
    let experimentId: String
    let console: any Console
    let quiet: Bool
    private let requestCount = Atomic(0)
    private let errorsShownCount = Atomic(0)

    /// The requests sent so far.
    var requests: Int { requestCount.load(ordering: .relaxed) }
    /// The refusals shown so far.
    var errorsShown: Int { errorsShownCount.load(ordering: .relaxed) }

    init(engine: CampaignEngine, clock: ManualClock, tag: String, contacts: Int, console: any Console, quiet: Bool) {
        self.engine = engine
        self.clock = clock
        self.tag = tag
        experimentId = Demo.experimentId(tag: tag, contacts: contacts)
        self.console = console
        self.quiet = quiet
    }

    func say(_ line: String) { if !quiet { console.out(line) } }

    func section(_ title: String) {
        say("")
        say(console.outputIsTerminal ? "\u{1B}[1m== \(title)\u{1B}[0m" : "== \(title)")
    }

    func principal(
        _ tenant: String, _ role: Role, scopes: Set<String> = Principal.allScopes, expiresAt: Date? = nil
    ) -> Principal {
        Principal(
            tenant: tenant, subject: "\(role.rawValue)@\(tenant)", role: role, scopes: scopes,
            expiresAt: expiresAt ?? clock.now().addingTimeInterval(86_400 * 30))
    }

    /// Every request of the demo goes through here, so the summary counts them all.
    func execute(_ request: EngineRequest) async -> EngineResponse {
        _ = count()
        return await engine.execute(request)
    }

    /// Sends a command that should succeed; a failure is reported (the demo goes on).
    @discardableResult
    func send(_ command: Command, _ tenant: String, role: Role = .editor, note: String? = nil) async -> EngineResponse {
        let response = await execute(
            .command(command, as: principal(tenant, role), requestId: "demo-\(tag)-\(requests)"))
        if let error = response.error, error.code != .duplicateResource || command.name != "field.define" {
            say("  ! \(command.name) in \(tenant): \(error.code.rawValue) \(error.message)")
        } else if let note {
            say("  \(note)")
        }
        return response
    }

    /// Counts one request; returns the count with it.
    func count() -> Int { requestCount.add(1, ordering: .relaxed).newValue }

    /// Sends a request that must be refused, and shows the code it gets.
    func expect(_ code: ErrorCode, _ what: String, _ response: EngineResponse) {
        errorsShownCount.add(1, ordering: .relaxed)
        let got = response.error?.code.rawValue ?? "no error (status \(response.status))"
        let mark = response.error?.code == code ? "ok" : "UNEXPECTED"
        say("  \(what.padding(toLength: 58, withPad: " ", startingAt: 0)) → \(got) \(response.status) [\(mark)]")
    }

    // MARK: Workload

    func setUp(tenant: String, contacts: Int) async throws {
        section("Tenant \(tenant)")
        await send(
            .schema(.defineField(name: "loyalty_tier", type: "enum", values: ["bronze", "silver", "gold"])), tenant,
            role: .admin
        )
        let countries = ["FR", "DE", "US", "GB", "ES"]
        let plans = ["free", "starter", "pro", "enterprise"]
        let tiers = ["bronze", "silver", "gold"]
        let now = clock.now()
        var inputs = [ContactInput]()
        for n in 0..<contacts {
            var attributes = JSONObject()
            attributes["email"] = .string("person\(n).\(tag)@\(tenant).example")
            attributes["first_name"] = .string("Person \(n)")
            attributes["country"] = .string(countries[n % countries.count])
            attributes["age"] = .number(Double(18 + n % 60))
            attributes["plan"] = .string(plans[n % plans.count])
            attributes["loyalty_tier"] = .string(tiers[n % tiers.count])
            attributes["subscribed"] = .bool(n % 7 != 0)
            attributes["tags"] = .array(n % 5 == 0 ? [.string("vip")] : [])
            attributes["signed_up_at"] = .string(Timestamp.format(now.addingTimeInterval(-Double(n % 400) * 86_400)))
            inputs.append(ContactInput(contactId: "ctc_\(tag)_\(n)", attributes: attributes))
        }
        await send(.contact(.import(inputs)), tenant, note: "imported \(contacts) contacts")
        await send(
            .schema(.updateField(name: "loyalty_tier", values: tiers + ["platinum"])), tenant, role: .admin,
            note: "the loyalty_tier field takes platinum too (field.update)")
        await send(
            .contact(
                .upsert(
                    ContactInput(
                        contactId: "ctc_\(tag)_0",
                        attributes: ["city": .string("Lyon"), "loyalty_tier": .string("platinum")]))), tenant,
            note: "upserted a contact (city Lyon, loyalty tier platinum)")
        await send(
            .contact(.erase(contactId: "ctc_\(tag)_1")), tenant, role: .admin,
            note: "erased a contact (its values are deleted; the chain still verifies)")

        let adults = try JSON.parse(
            #"{"all":[{"field":"country","operator":"in","value":["FR","DE"]},{"field":"age","#
                + #""operator":"gte","value":21},{"field":"subscribed","operator":"eq","value":true}]}"#
        )
        let gold = try JSON.parse(
            #"{"any":[{"field":"loyalty_tier","operator":"eq","value":"gold"},{"field":"tags","#
                + #""operator":"includes","value":"vip"}]}"#
        )
        let preview = await execute(
            .query(.segmentPreview(rules: adults, limit: 0), as: principal(tenant, .viewer), requestId: "preview"))
        say("  previewed the EU rule: \(preview.data?["count"]?.integerValue ?? 0) contacts match it")
        await send(.segment(.create(segmentId: "seg_\(tag)_eu", name: "EU subscribers \(tag)", rules: adults)), tenant)
        await send(.segment(.create(segmentId: "seg_\(tag)_vip", name: "VIP \(tag)", rules: gold)), tenant)
        await send(
            .segment(.update(segmentId: "seg_\(tag)_vip", name: "VIP and gold \(tag)", rules: nil)), tenant,
            note: "created 2 segments, renamed one")

        let content = Content(subject: "Spring is here", body: "Hello {{first_name}}, our spring collection is live.")
        for (id, name, minutes) in [
            ("launch", "Spring launch", 60), ("followup", "Spring follow-up", 120), ("flash", "Flash sale", 30),
        ] {
            await send(
                .campaign(
                    .create(
                        campaignId: "cmp_\(tag)_\(id)", name: "\(name) \(tag)", channel: "email",
                        segmentId: "seg_\(tag)_eu", content: content, sendAt: nil)), tenant)
            await send(.campaign(.schedule(campaignId: "cmp_\(tag)_\(id)", sendAt: now + Double(minutes * 60))), tenant)
        }
        await send(
            .campaign(
                .create(
                    campaignId: "cmp_\(tag)_draft", name: "Abandoned idea \(tag)", channel: "sms", segmentId: nil,
                    content: nil, sendAt: nil)), tenant)
        await send(.campaign(.transition(.delete, campaignId: "cmp_\(tag)_draft")), tenant)
        await send(
            .campaign(
                .create(
                    campaignId: "cmp_\(tag)_autumn", name: "Autumn teaser \(tag)", channel: "push",
                    segmentId: "seg_\(tag)_vip", content: Content(subject: "Autumn", body: "Something is coming"),
                    sendAt: nil)), tenant,
            note: "created 5 campaigns: 3 scheduled, 1 draft deleted, 1 draft kept")

        let expiry = now + 86_400 * 60
        for (id, platform) in [("x", "x"), ("ig", "instagram"), ("md", "mastodon")] {
            await send(
                .social(
                    .connect(
                        connectionId: "con_\(tag)_\(id)", platform: platform, accountId: "\(tenant)-\(platform)-\(tag)",
                        credentialRef: "vault://social/\(tenant)/\(platform)", expiresAt: expiry)), tenant)
        }
        let photo = [Media(kind: "image", url: "https://cdn.\(tenant).example/spring.jpg")]
        let posts: [(String, [String], String, [Media])] = [
            ("hello", ["x", "md"], "Spring collection is live!", []),
            ("photo", ["ig"], "New arrivals", photo),
            ("busy", ["x"], "Countdown #busy", []),
            ("flaky", ["md"], "Behind the scenes #flaky", []),
            ("slow", ["x"], "Live now #timeout", []),
            ("bad", ["md"], "Too good to be true #reject", []),
            ("later", ["x", "ig"], "See you tomorrow", photo),
            ("held", ["md"], "Coming soon, once legal signs off", []),
        ]
        for (id, connections, text, media) in posts {
            await send(
                .post(
                    .create(
                        postId: "pst_\(tag)_\(id)", connectionIds: connections.map { "con_\(tag)_\($0)" }, text: text,
                        media: media, link: nil, campaignId: "cmp_\(tag)_launch")), tenant)
        }
        await send(.post(.schedule(postId: "pst_\(tag)_later", publishAt: now + 3_600)), tenant)
        await send(
            .post(.update(postId: "pst_\(tag)_later", connectionIds: ["con_\(tag)_md", "con_\(tag)_ig"])), tenant,
            note: "moved the scheduled post from x to mastodon (post.update with connectionIds)")
        await send(.post(.schedule(postId: "pst_\(tag)_held", publishAt: now + 7_200)), tenant)
        await send(
            .post(.unschedule(postId: "pst_\(tag)_held")), tenant,
            note: "held a scheduled post back as a draft (post.unschedule)")
        var outcomes = [String]()
        for id in ["hello", "photo", "busy", "flaky", "slow", "bad"] {
            let response = await execute(
                .command(
                    .post(.publish(postId: "pst_\(tag)_\(id)")), as: principal(tenant, .editor),
                    requestId: "demo-\(tag)-\(requests)"))
            let status = response.data?["post"]?["status"]?.stringValue ?? "?"
            let failure = response.error.map { error in
                error.code.rawValue + (error.retryAfter.map { " (retry in \($0) s)" } ?? "")
            }
            outcomes.append("\(id): \(failure ?? status)")
        }
        say("  published 6 posts: " + outcomes.joined(separator: ", "))
    }

    func illegalMoves(tenant: String, other: String) async throws {
        let launch = "cmp_\(tag)_flash"
        let editor = principal(tenant, .editor)
        func command(_ command: Command, as who: Principal? = nil) async -> EngineResponse {
            await execute(.command(command, as: who ?? editor, requestId: "demo-\(tag)-\(requests)"))
        }
        await send(.campaign(.transition(.activate, campaignId: launch)), tenant)
        expect(
            .resourceConflict, "delete an active campaign",
            await command(.campaign(.transition(.delete, campaignId: launch))))
        expect(
            .campaignAlreadyActive, "rename an active campaign",
            await command(.campaign(.update(campaignId: launch, name: "Renamed", channel: nil, content: nil))))
        expect(
            .campaignNotScheduled, "activate a draft",
            await command(.campaign(.transition(.activate, campaignId: "cmp_\(tag)_autumn"))))
        expect(
            .segmentRequired, "schedule a campaign without a segment",
            await {
                _ = await command(
                    .campaign(
                        .create(
                            campaignId: "cmp_\(tag)_bare", name: "Bare \(tag)", channel: "sms", segmentId: nil,
                            content: nil, sendAt: nil)))
                return await command(.campaign(.schedule(campaignId: "cmp_\(tag)_bare", sendAt: clock.now() + 3_600)))
            }())
        expect(
            .validationError, "schedule a campaign without content",
            await {
                _ = await command(.campaign(.attachSegment(campaignId: "cmp_\(tag)_bare", segmentId: "seg_\(tag)_vip")))
                return await command(.campaign(.schedule(campaignId: "cmp_\(tag)_bare", sendAt: clock.now() + 3_600)))
            }())
        expect(
            .invalidSchedule, "schedule in the past",
            await command(.campaign(.schedule(campaignId: "cmp_\(tag)_autumn", sendAt: clock.now() - 60))))
        expect(
            .duplicateResource, "reuse a campaign name (case-insensitive)",
            await command(
                .campaign(
                    .create(
                        campaignId: Identifier.make(prefix: "cmp"), name: "SPRING LAUNCH \(tag.uppercased())",
                        channel: "email", segmentId: nil,
                        content: nil, sendAt: nil))))
        expect(
            .resourceConflict, "archive a segment a scheduled campaign uses",
            await command(.segment(.archive(segmentId: "seg_\(tag)_eu"))))
        expect(
            .invalidOperator, "segment rule: gt on a boolean",
            await command(
                .segment(
                    .create(
                        segmentId: Identifier.make(prefix: "seg"), name: "Broken \(tag)",
                        rules: try JSON.parse(#"{"all":[{"field":"subscribed","operator":"gt","value":1}]}"#)))))
        expect(
            .unknownField, "segment rule on an undefined field",
            await command(
                .segment(
                    .create(
                        segmentId: Identifier.make(prefix: "seg"), name: "Broken \(tag)",
                        rules: try JSON.parse(#"{"all":[{"field":"shoe_size","operator":"gt","value":40}]}"#)))))
        expect(
            .forbidden, "a viewer creates a campaign",
            await command(
                .campaign(
                    .create(
                        campaignId: Identifier.make(prefix: "cmp"), name: "Nope", channel: "sms", segmentId: nil,
                        content: nil, sendAt: nil)),
                as: principal(tenant, .viewer)))
        expect(
            .validationError, "give an SMS a subject",
            await command(
                .campaign(
                    .update(
                        campaignId: "cmp_\(tag)_bare", name: nil, channel: nil,
                        content: Content(subject: "Hello", body: "Spring is here")))))
        expect(.forbidden, "an editor erases a contact", await command(.contact(.erase(contactId: "ctc_\(tag)_2"))))
        expect(
            .invalidScope, "no campaigns:write scope",
            await command(
                .campaign(.transition(.pause, campaignId: launch)),
                as: principal(tenant, .admin, scopes: ["campaigns:read"])))
        expect(
            .tokenExpired, "an expired token",
            await command(
                .campaign(.transition(.pause, campaignId: launch)),
                as: principal(tenant, .admin, expiresAt: clock.now())))
        expect(
            .unauthorized, "no principal",
            await execute(.command(.campaign(.transition(.pause, campaignId: launch)), as: nil, requestId: "anon")))
        // cmp_…_bare exists only in this tenant: another tenant's admin must not learn that it does.
        expect(
            .resourceNotFound, "\(other) reads \(tenant)'s campaign",
            await execute(
                .query(.campaignGet(campaignId: "cmp_\(tag)_bare"), as: principal(other, .admin), requestId: "x")))
        expect(
            .validationError, "a 400-character post for x",
            await command(
                .post(
                    .create(
                        postId: Identifier.make(prefix: "pst"), connectionIds: ["con_\(tag)_x"],
                        text: String(repeating: "a", count: 400), media: [],
                        link: nil, campaignId: nil))))
        expect(
            .validationError, "an instagram post without media",
            await command(
                .post(
                    .create(
                        postId: Identifier.make(prefix: "pst"), connectionIds: ["con_\(tag)_ig"], text: "caption",
                        media: [], link: nil,
                        campaignId: nil))))
        expect(
            .validationError, "a token where a credential reference belongs",
            await command(
                .social(
                    .connect(
                        connectionId: Identifier.make(prefix: "con"), platform: "x", accountId: "other",
                        credentialRef: "EAAGm0PX4ZCpsBAKZC",
                        expiresAt: clock.now() + 3_600))))
        let wire: [(ErrorCode, String, String)] = [
            (
                .invalidFormat, "malformed JSON",
                #"{"requestId":"bad","command":"campaign.create","payload":{"name":"x",}}"#
            ),
            (
                .invalidField, "an access token smuggled into a payload",
                #"{"requestId":"tok","principal":{"tenant":"\#(tenant)","subject":"editor@\#(tenant)","#
                    + #""role":"editor","scopes":["campaigns:write"],"expiresAt":"2099-01-01T00:00:00Z"},"#
                    + #""command":"campaign.pause","payload":{"campaignId":"\#(launch)","#
                    + #""accessToken":"secret-123"}}"#
            ),
            (
                .missingField, "a campaign without a name",
                #"{"requestId":"mf","principal":{"tenant":"\#(tenant)","subject":"editor@\#(tenant)","#
                    + #""role":"editor","scopes":["campaigns:write"],"expiresAt":"2099-01-01T00:00:00Z"},"#
                    + #""command":"campaign.create","payload":{"channel":"sms"}}"#
            ),
        ]
        for (code, what, line) in wire {
            _ = count()
            expect(code, what + " (wire)", await engine.handle(Array(line.utf8)))
        }
    }

    func tick(at time: Date) async throws {
        let report = try await engine.tick(now: time)
        let campaigns = report.items.filter { $0.kind == "campaign" && $0.error == nil }.count
        let posts = report.items.filter { $0.kind == "post" }.map {
            "\($0.tenant)/\($0.id.split(separator: "_").last ?? "")→\($0.status ?? "?")"
        }
        say(
            "  tick \(Timestamp.format(time)): \(campaigns) campaign(s) "
                + "activated\(posts.isEmpty ? "" : "; posts " + posts.joined(separator: ", "))"
        )
    }

    func finishLifecycle(tenant: String) async throws {
        let launch = "cmp_\(tag)_launch"
        let flash = "cmp_\(tag)_flash"
        let followup = "cmp_\(tag)_followup"
        await send(.campaign(.transition(.pause, campaignId: launch)), tenant)
        await send(.campaign(.transition(.resume, campaignId: launch)), tenant)
        await send(.campaign(.transition(.complete, campaignId: flash)), tenant)
        await send(.campaign(.transition(.archive, campaignId: flash)), tenant)
        await send(.campaign(.transition(.cancel, campaignId: followup)), tenant)
        say("  \(tenant): launch paused and resumed; flash sale completed and archived; follow-up cancelled")
    }

    /// The first of `exp_<tag>_subject`, `exp_<tag>_subject2`, … whose 50/50 split of the run's
    /// contacts has a sample-ratio p-value of at least 0.05. Assignment hashes the experiment and
    /// contact ids, so with a random run tag about one run in a thousand would otherwise draw a split
    /// the engine rightly refuses to crown (p < 0.001); the demo shows a winner on every run.
    static func experimentId(tag: String, contacts: Int) -> String {
        var attempt = 1
        while true {
            let id = attempt == 1 ? "exp_\(tag)_subject" : "exp_\(tag)_subject\(attempt)"
            let exposed = (0..<contacts).filter { $0 != erasedContact }
            let emoji = exposed.count {
                Experiment.assign(experimentId: id, contactId: "ctc_\(tag)_\($0)", variants: splitVariants) == "emoji"
            }
            let fit = Statistics.chiSquareGoodnessOfFit(
                observed: [exposed.count - emoji, emoji], weights: [50, 50])
            if let fit, fit.pValue >= 0.05 { return id }
            attempt += 1
        }
    }

    /// The A/B test's two variants as assignment sees them (keys and weights).
    static let splitVariants = [Variant(key: "control", weight: 50), Variant(key: "emoji", weight: 50)]

    /// The contact (`ctc_<tag>_1`) the set-up erases: the experiment is not shown it.
    static let erasedContact = 1

    func experiment(tenant: String, contacts: Int) async throws {
        let id = experimentId
        await send(
            .experiment(
                .create(
                    experimentId: id, campaignId: "cmp_\(tag)_launch", name: "Subject line \(tag)",
                    variants: [
                        Variant(key: "control", weight: 50, content: Content(subject: "Spring is here", body: "…")),
                        Variant(
                            key: "emoji", weight: 50, content: Content(subject: "🌷 Spring is here", body: "…")),
                    ])), tenant)
        await send(.experiment(.start(experimentId: id)), tenant)
        let who = principal(tenant, .editor)
        for n in 0..<20 where n != Demo.erasedContact {
            _ = await execute(
                .command(
                    .experiment(.recordExposure(experimentId: id, contactId: "ctc_\(tag)_\(n)")), as: who,
                    requestId: "exp-\(n)"))
        }
        expect(
            .experimentInsufficientData, "declare a winner after 19 exposures",
            await execute(
                .command(
                    .experiment(.declareWinner(experimentId: id, variant: "emoji", force: false)), as: who,
                    requestId: "early")))
        expect(
            .resourceNotFound, "expose the erased contact",
            await execute(
                .command(
                    .experiment(.recordExposure(experimentId: id, contactId: "ctc_\(tag)_\(Demo.erasedContact)")),
                    as: who, requestId: "exp-erased")))
        expect(
            .resourceConflict, "start a second experiment on the campaign",
            await {
                let second = "\(id)_rival"
                _ = await execute(
                    .command(
                        .experiment(
                            .create(
                                experimentId: second, campaignId: "cmp_\(tag)_launch", name: "Rival \(tag)",
                                variants: Demo.splitVariants)), as: who, requestId: "rival-create"))
                return await execute(
                    .command(.experiment(.start(experimentId: second)), as: who, requestId: "rival-start"))
            }())
        // Exposures and conversions arrive concurrently, as from many sending workers.
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<16 {
                group.addTask {
                    for n in stride(from: worker, to: contacts, by: 16) where n != Demo.erasedContact {
                        let contactId = "ctc_\(self.tag)_\(n)"
                        _ = await self.execute(
                            .command(
                                .experiment(.recordExposure(experimentId: id, contactId: contactId)), as: who,
                                requestId: "exp-\(n)"))
                        let variant = Experiment.assign(
                            experimentId: id, contactId: contactId, variants: Demo.splitVariants)
                        // The emoji subject converts at about 30%, the control at about 10%.
                        if n % 10 < (variant == "emoji" ? 3 : 1) {
                            _ = await self.execute(
                                .command(
                                    .experiment(.recordConversion(experimentId: id, contactId: contactId)), as: who,
                                    requestId: "conv-\(n)"))
                        }
                    }
                }
            }
        }
        let declared = await send(.experiment(.declareWinner(experimentId: id, variant: "emoji", force: false)), tenant)
        say(
            "  \((0..<contacts).count { $0 != Demo.erasedContact }) contacts exposed; winner declared: "
                + "\(declared.data?["experiment"]?["winner"]?.stringValue ?? declared.error?.code.rawValue ?? "?")"
        )
    }

    // MARK: Dashboard

    func read(_ query: Query, _ tenant: String) async -> JSON {
        await execute(.query(query, as: principal(tenant, .viewer), requestId: "dashboard")).data ?? .null
    }

    func dashboard(tenants: [String], chain: ChainReport, seconds: Double) async throws {
        section("Dashboard (from the read models)")
        for tenant in tenants {
            let campaigns = await read(.campaignList(status: nil, from: nil, to: nil, page: .init(limit: 500)), tenant)
            let posts = await read(.postList(status: nil, from: nil, to: nil, page: .init(limit: 500)), tenant)
            let counts = { (json: JSON) in
                (json["counts"]?.objectValue ?? [:]).filter { ($0.value.integerValue ?? 0) > 0 }
                    .sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.integerValue ?? 0)" }.joined(
                        separator: ", ")
            }
            say("\(tenant)")
            say("  campaigns: \(counts(campaigns))")
            say("  posts:     \(counts(posts))")
            for segment in ["seg_\(tag)_eu", "seg_\(tag)_vip"] {
                let members = await read(.segmentMembers(segmentId: segment, page: .init(limit: 1)), tenant)
                say("  segment \(segment): \(members["count"]?.integerValue ?? 0) members")
            }
            let audit = await read(
                .auditHistory(streamId: "cmp_\(tag)_launch", actor: nil, from: nil, to: nil, page: .init(limit: 20)),
                tenant)
            let trail = (audit["items"]?.arrayValue ?? []).map {
                "\($0["type"]?.stringValue ?? "")[\($0["actor"]?.stringValue ?? "")]"
            }
            say("  audit of cmp_\(tag)_launch: " + trail.joined(separator: " → "))
        }
        let results = await read(.experimentResults(experimentId: experimentId), tenants[0])
        say("")
        say(
            "experiment \(experimentId) in \(tenants[0]) (\(results["status"]?.stringValue ?? "?"), "
                + "winner \(results["winner"]?.stringValue ?? "none"), SRM p = "
                + "\(String(format: "%.3f", results["srmPValue"]?.numberValue ?? 0)))"
        )
        let rows = (results["variants"]?.arrayValue ?? []).map { row -> [String] in
            let interval = row["interval95"]?.arrayValue?.compactMap(\.numberValue) ?? []
            return [
                row["key"]?.stringValue ?? "", Format.count(row["exposures"]?.integerValue ?? 0),
                Format.count(row["conversions"]?.integerValue ?? 0),
                String(format: "%.1f%%", (row["rate"]?.numberValue ?? 0) * 100),
                interval.count == 2 ? String(format: "%.1f–%.1f%%", interval[0] * 100, interval[1] * 100) : "-",
                row["lift"]?.numberValue.map { String(format: "%+.0f%%", $0 * 100) } ?? "-",
                row["pValue"]?.numberValue.map { $0 < 0.0001 ? "<0.0001" : String(format: "%.4f", $0) } ?? "-",
            ]
        }
        for line in Format.table(["VARIANT", "EXPOSED", "CONVERTED", "RATE", "95% CI", "LIFT", "P"], rows) {
            say("  " + line)
        }
        let usage = try engine.eventStore.usage()
        say("")
        say(
            "store: \(Format.count(chain.headPosition)) events; \(Format.bytes(usage.usedBytes)) used; "
                + "chain \(chain.isIntact ? "verified" : "BROKEN at \(chain.firstBadPosition ?? 0)"); head "
                + "\(chain.headHash.hexString.prefix(16))…"
        )
        say(try metricsLine())
        say(healthLine())
        say(
            "run \(tag): \(Format.count(requests)) requests, \(errorsShown) refusals shown, "
                + "\(String(format: "%.1f", seconds)) s"
        )
    }

    /// What the engine's metrics say of the run: answers and refusals by code, group commits and
    /// how long 99% of them took at most, the scheduler's ticks with the campaigns they activated
    /// and the posts they handled, and which read models are behind (a catch-up one follows the log
    /// when appends pause, or when a query reads it).
    func metricsLine() throws -> String {
        let metrics = try engine.metrics()
        let refusals = metrics.refusals
        let codes = refusals.sorted { ($1.value, $0.key.rawValue) < ($0.value, $1.key.rawValue) }
        let named = codes.prefix(3).map { "\($0.key.rawValue) \($0.value)" } + (codes.count > 3 ? ["…"] : [])
        let p99 =
            metrics.store.appendTransactionDurations.quantileBound(0.99)
            .map { $0.isFinite ? "p99 ≤ " + String(format: "%g ms", $0 * 1000) : "p99 > 10 s" } ?? "none"
        let behind = metrics.projections.filter { $0.lag > 0 }.map { "\($0.name) \(Format.count($0.lag))" }
        let scheduler = metrics.scheduler
        return "metrics: \(Format.count(metrics.requestsAnswered)) answers, "
            + "\(Format.count(refusals.values.reduce(0, +))) refused (\(named.joined(separator: ", "))); "
            + "\(Format.count(metrics.store.groupCommitTransactions)) group commits (\(p99)); "
            + "\(Format.count(scheduler.ticksCompleted)) ticks (\(scheduler.count("campaign", outcome: "activated")) "
            + "activated, \(scheduler.count("post")) posts); "
            + (behind.isEmpty
                ? "read models at the head"
                : "events the catch-up read models have yet to apply: \(behind.joined(separator: ", "))")
    }

    /// What ``CampaignEngine/health(_:)`` says with the default thresholds: `ok`, or the status and
    /// each problem.
    func healthLine() -> String {
        let health = engine.health()
        let problems = health.problems.map { "\($0.check): \($0.detail)" }
        return "health: \(health.status.rawValue)" + (problems.isEmpty ? "" : " (\(problems.joined(separator: "; ")))")
    }

    func dashboardJSON(tenants: [String], chain: ChainReport, seconds: Double) async throws -> JSON {
        var perTenant = JSONObject()
        for tenant in tenants {
            perTenant[tenant] = .object([
                "campaigns": await read(.campaignList(status: nil, from: nil, to: nil, page: .init(limit: 1)), tenant)[
                    "counts"] ?? .null,
                "posts": await read(.postList(status: nil, from: nil, to: nil, page: .init(limit: 1)), tenant)["counts"]
                    ?? .null,
            ])
        }
        return .object([
            "run": .string(tag), "requests": .number(Double(requests)), "refusalsShown": .number(Double(errorsShown)),
            "seconds": .number(seconds), "events": .number(Double(chain.headPosition)),
            "chainIntact": .bool(chain.isIntact),
            "headHash": .string(chain.headHash.hexString), "tenants": .object(perTenant),
            "experiment": await read(.experimentResults(experimentId: experimentId), tenants[0]),
            "metrics": try metricsJSON(),
            "health": engine.health().jsonValue,
        ])
    }

    /// ``metricsLine()`` as JSON: answers, refusals by code, group commits, the bound of their p99
    /// in seconds (null past every bucket), each read model's lag, and the scheduler's ticks.
    func metricsJSON() throws -> JSON {
        let metrics = try engine.metrics()
        var refused = JSONObject()
        for (code, count) in metrics.refusals { refused[code.rawValue] = .number(Double(count)) }
        var lag = JSONObject()
        for projection in metrics.projections { lag[projection.name] = .number(Double(projection.lag)) }
        let p99 = metrics.store.appendTransactionDurations.quantileBound(0.99)
        return .object([
            "answers": .number(Double(metrics.requestsAnswered)), "refused": .object(refused),
            "groupCommits": .number(Double(metrics.store.groupCommitTransactions)),
            "commitP99AtMostSeconds": p99.flatMap { $0.isFinite ? .number($0) : nil } ?? .null,
            "lag": .object(lag),
            "ticks": .object([
                "completed": .number(Double(metrics.scheduler.ticksCompleted)),
                "failed": .number(Double(metrics.scheduler.ticksFailed)),
                "activated": .number(Double(metrics.scheduler.count("campaign", outcome: "activated"))),
                "posts": .number(Double(metrics.scheduler.count("post"))),
            ]),
        ])
    }
}
