import CampaignDomain
import CampaignEngine
import Foundation

/// Fills an engine with a log shaped like `campaign demo`'s, through the engine's own commands (so
/// payloads, streams and inline read models are exactly what hosts get), across many tenants.
///
/// Each tenant runs rounds of: a contact import of 400 new contacts, 20 upserts of earlier ones
/// and an erasure; a segment rule change (two segments, made in the first round); ten campaigns,
/// each created with a 300-byte body, updated twice and scheduled, then moved through their
/// lifecycle (activated and completed, paused and resumed, cancelled, unscheduled, or deleted as a
/// draft); two posts (created on two connections, then scheduled or cancelled); and an experiment
/// on one of the campaigns still running (activated, paused and resumed), started, with 100
/// exposures and 20 conversions, then stopped. A round
/// is about 700 events; tenants run at once, each with up to 8 commands in flight where they
/// commute or touch different aggregates.
struct DemoShapedLog {
    let engine: CampaignEngine
    let tenants: Int
    let clock: Date

    /// Commands answered with an error (a workload mistake: the benchmark stops on one).
    let refused = Counter()
    /// The first refused command and its error, for the benchmark's message.
    let firstRefusal = FirstValue<String>()

    /// Runs rounds on every tenant until the log holds at least `events` events.
    func fill(events target: UInt64) async throws {
        await withTaskGroup(of: Void.self) { group in
            for tenant in 0..<tenants {
                group.addTask {
                    var round = 0
                    while (try? engine.eventStore.head().position) ?? target < target {
                        await self.round(round, tenant: "t\(tenant)")
                        round += 1
                    }
                }
            }
        }
    }

    func principal(_ tenant: String) -> Principal {
        Principal(
            tenant: tenant, subject: "bench@\(tenant)", role: .admin, scopes: Principal.allScopes,
            expiresAt: clock + 86_400 * 365)
    }

    func send(_ command: Command, _ tenant: String) async {
        let response = await engine.execute(.command(command, as: principal(tenant), requestId: "demo-log"))
        if let error = response.error {
            refused.add(1)
            firstRefusal.offer("\(command.name): \(error.code.rawValue) \(error.message)")
        }
    }

    /// Sends commands that may run at once, at most 8 in flight.
    func sendAll(_ commands: [Command], _ tenant: String) async {
        await withTaskGroup(of: Void.self) { group in
            for (index, command) in commands.enumerated() {
                if index >= 8 { await group.next() }
                group.addTask { await send(command, tenant) }
            }
        }
    }

    func round(_ round: Int, tenant: String) async {
        let tag = "\(round)"
        if round == 0 {
            await send(.schema(.defineField(name: "tier", type: "enum", values: ["bronze", "silver", "gold"])), tenant)
            for (id, rules) in [("eu", euRule), ("gold", goldRule)] {
                await send(.segment(.create(segmentId: "seg_\(id)", name: "Segment \(id)", rules: rules)), tenant)
            }
            for platform in ["x", "mastodon"] {
                await send(
                    .social(
                        .connect(
                            connectionId: "con_\(platform)", platform: platform, accountId: "\(tenant)-\(platform)",
                            credentialRef: "vault://social/\(tenant)/\(platform)", expiresAt: clock + 86_400 * 365)),
                    tenant)
            }
        }
        // Contacts: an import of new ones, upserts of earlier ones, an erasure.
        let countries = ["FR", "DE", "US", "GB", "ES"]
        let tiers = ["bronze", "silver", "gold"]
        let imported = (0..<400).map { n in
            let number = round * 400 + n
            return ContactInput(
                contactId: "ctc_\(number)",
                attributes: [
                    "email": .string("person\(number)@\(tenant).example"), "first_name": .string("Person \(number)"),
                    "country": .string(countries[number % 5]), "age": .number(Double(18 + number % 60)),
                    "tier": .string(tiers[number % 3]), "subscribed": .bool(number % 7 != 0),
                ])
        }
        await send(.contact(.import(imported)), tenant)
        await sendAll(
            (0..<20).map { n in
                .contact(
                    .upsert(
                        ContactInput(
                            contactId: "ctc_\((round * 400 + n * 19) % (round * 400 + 400))",
                            attributes: ["age": .number(Double(20 + (round + n) % 50))])))
            } + [.contact(.erase(contactId: "ctc_\(round * 400 + 399)"))], tenant)
        await send(
            .segment(.update(segmentId: "seg_gold", rules: round % 2 == 0 ? goldRule : euRule)), tenant)

        // Campaigns through their lifecycle.
        let body = String(repeating: "Spring collection, new arrivals. ", count: 9)
        var lifecycles = [Command]()
        for n in 0..<10 {
            let id = "cmp_\(tag)_\(n)"
            await send(
                .campaign(
                    .create(
                        campaignId: id, name: "Campaign \(tag)-\(n)", channel: "email", segmentId: "seg_eu",
                        content: Content(subject: "Spring", body: body), sendAt: nil)), tenant)
            for edit in 0..<2 {
                await send(
                    .campaign(.update(campaignId: id, content: Content(subject: "Spring \(edit)", body: body))),
                    tenant)
            }
            if n == 9 {
                lifecycles.append(.campaign(.transition(.delete, campaignId: id)))
                continue
            }
            await send(.campaign(.schedule(campaignId: id, sendAt: clock + Double(3_600 * (1 + n)))), tenant)
            switch n % 4 {
            case 0:
                await send(.campaign(.transition(.activate, campaignId: id)), tenant)
                lifecycles.append(.campaign(.transition(.complete, campaignId: id)))
            case 1:
                await send(.campaign(.transition(.activate, campaignId: id)), tenant)
                await send(.campaign(.transition(.pause, campaignId: id)), tenant)
                lifecycles.append(.campaign(.transition(.resume, campaignId: id)))
            case 2: lifecycles.append(.campaign(.transition(.cancel, campaignId: id)))
            default: lifecycles.append(.campaign(.transition(.unschedule, campaignId: id)))
            }
        }
        await sendAll(lifecycles, tenant)

        // Posts.
        for n in 0..<2 {
            let id = "pst_\(tag)_\(n)"
            await send(
                .post(
                    .create(
                        postId: id, connectionIds: ["con_x", "con_mastodon"], text: "Spring is here \(tag)-\(n)",
                        campaignId: "cmp_\(tag)_0")), tenant)
            await send(
                n == 0 ? .post(.schedule(postId: id, publishAt: clock + 7_200)) : .post(.cancel(postId: id)), tenant)
        }

        // An experiment with exposures and conversions.
        let experiment = "exp_\(tag)"
        await send(
            .experiment(
                .create(
                    experimentId: experiment, campaignId: "cmp_\(tag)_1", name: "Subject test \(tag)",
                    variants: [Variant(key: "control", weight: 50), Variant(key: "emoji", weight: 50)])), tenant)
        await send(.experiment(.start(experimentId: experiment)), tenant)
        let contacts = (0..<100).map { "ctc_\(round * 400 + $0)" }
        await sendAll(contacts.map { .experiment(.recordExposure(experimentId: experiment, contactId: $0)) }, tenant)
        await sendAll(
            contacts.prefix(20).map { .experiment(.recordConversion(experimentId: experiment, contactId: $0)) }, tenant)
        await send(.experiment(.stop(experimentId: experiment)), tenant)
    }

    var euRule: JSON {
        .object([
            "all": .array([
                .object([
                    "field": .string("country"), "operator": .string("in"),
                    "value": .array([.string("FR"), .string("DE")]),
                ]),
                .object(["field": .string("subscribed"), "operator": .string("eq"), "value": .bool(true)]),
            ])
        ])
    }

    var goldRule: JSON {
        .object([
            "any": .array([
                .object(["field": .string("tier"), "operator": .string("eq"), "value": .string("gold")]),
                .object(["field": .string("age"), "operator": .string("gte"), "value": .number(60)]),
            ])
        ])
    }
}

/// A count shared between tasks.
///
/// Invariant that makes `@unchecked Sendable` safe: `value` is touched only under `lock`.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0

    func add(_ amount: Int) { lock.withLock { count += amount } }
    var value: Int { lock.withLock { count } }
}

/// The first value offered, kept; later ones are dropped.
///
/// Invariant that makes `@unchecked Sendable` safe: `first` is touched only under `lock`.
final class FirstValue<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var first: T?

    func offer(_ value: T) { lock.withLock { if first == nil { first = value } } }
    var value: T? { lock.withLock { first } }
}
