import CampaignDomain
import CampaignEngine
import EventStore
import Foundation
import Spawn

/// Kills a writer process at random moments and checks, after each kill, that nothing
/// acknowledged was lost or duplicated, that the chain verifies, and that every projection equals
/// a fresh rebuild.
public enum CrashHarness {
    /// The outcome of a run.
    public struct Summary: Sendable, Equatable {
        /// Kills survived (checks passed after them).
        public var kills = 0
        /// Acknowledged requests checked (over all rounds, against the final log).
        public var acknowledged = 0
        /// Acknowledged requests whose events are missing.
        public var lost = 0
        /// Acknowledged requests whose events appear more than once.
        public var duplicated = 0
        /// Events in the log at the end.
        public var events: UInt64 = 0
        /// Problems found (a broken chain, a projection that differs).
        public var problems: [String] = []

        /// The run in one line, as README quotes it: kills, requests checked, lost, duplicated, chain, projections.
        public var line: String {
            "crash harness: \(kills) kills survived, \(acknowledged) acknowledged requests checked, "
                + "\(lost) lost, \(duplicated) duplicated, "
                + "\(events) events, chain \(problems.contains { $0.hasPrefix("chain") } ? "BROKEN" : "intact"), "
                + "projections \(problems.contains { $0.hasPrefix("projection") } ? "DIFFER" : "match")"
        }
    }

    /// The child: applies a mixed workload (campaigns, segments, contacts, posts, exposures) from
    /// eight concurrent clients, so kills land inside group commits, and prints
    /// `ack <requestId> <events>` for each acknowledged command, until killed or `limit` is reached.
    public static func workload(
        data: String, round: Int, limit: Int, emit: @escaping @Sendable (String) -> Void
    ) async throws {
        let engine = try CampaignEngine(directory: data, configuration: EngineConfiguration(rateLimit: 100_000_000))
        let admin = Principal(
            tenant: "crash", subject: "writer", role: .admin, scopes: Principal.allScopes, expiresAt: .distantFuture)
        let prefix = "r\(round)"
        let rules = try JSON.parse(#"{"all":[{"field":"age","operator":"gte","value":30}]}"#)
        let setup: [Command] = [
            .segment(.create(segmentId: "seg_\(prefix)", name: "Segment \(prefix)", rules: rules)),
            .social(
                .connect(
                    connectionId: "con_\(prefix)", platform: "mastodon", accountId: "acct-\(prefix)",
                    credentialRef: "vault://m/\(prefix)", expiresAt: .distantFuture)),
            .campaign(
                .create(
                    campaignId: "cmp_\(prefix)_base", name: "Base \(prefix)", channel: "email",
                    segmentId: "seg_\(prefix)",
                    content: nil, sendAt: nil)),
            .experiment(
                .create(
                    experimentId: "exp_\(prefix)", campaignId: "cmp_\(prefix)_base", name: "E \(prefix)",
                    variants: [Variant(key: "a", weight: 50), Variant(key: "b", weight: 50)])),
            .experiment(.start(experimentId: "exp_\(prefix)")),
        ]
        func send(_ command: Command, _ id: String) async {
            let response = await engine.execute(.command(command, as: admin, requestId: id))
            if response.error == nil { emit("ack \(id) \(response.data?["events"]?.arrayValue?.count ?? 0)") }
        }
        for (index, command) in setup.enumerated() { await send(command, "\(prefix)-setup-\(index)") }
        await withTaskGroup(of: Void.self) { group in
            for client in 0..<8 {
                group.addTask {
                    var n = client
                    while n < limit {
                        let id = "\(prefix)-\(n)"
                        let command: Command
                        switch n % 6 {
                        case 0:
                            command = .campaign(
                                .create(
                                    campaignId: "cmp_\(prefix)_\(n)", name: "Campaign \(prefix) \(n)", channel: "sms",
                                    segmentId: "seg_\(prefix)", content: Content(body: "Hello \(n)"), sendAt: nil))
                        case 1:
                            command = .campaign(
                                .update(
                                    campaignId: "cmp_\(prefix)_base", name: nil, channel: nil,
                                    content: Content(subject: "S", body: "body \(n)")))
                        case 2:
                            command = .contact(
                                .upsert(
                                    ContactInput(
                                        contactId: "ctc_\(prefix)_\(n % 40)",
                                        attributes: ["age": .number(Double(n % 70))])))
                        case 3:
                            command = .post(
                                .create(
                                    postId: "pst_\(prefix)_\(n)", connectionIds: ["con_\(prefix)"], text: "Post \(n)",
                                    media: [], link: nil, campaignId: nil))
                        case 4:
                            // An exposure needs a contact: this client makes it first.
                            await send(
                                .contact(
                                    .upsert(
                                        ContactInput(
                                            contactId: "ctc_\(prefix)_\(n)",
                                            attributes: ["age": .number(Double(n % 70))]))),
                                "\(id)-contact")
                            command = .experiment(
                                .recordExposure(
                                    experimentId: "exp_\(prefix)", contactId: "ctc_\(prefix)_\(n)"))
                        default:
                            command = .campaign(
                                .schedule(
                                    campaignId: "cmp_\(prefix)_\(n - 5)", sendAt: Date().addingTimeInterval(3_600)))
                        }
                        await send(command, id)
                        n += 8
                    }
                }
            }
        }
        engine.close()
    }

    /// The parent: runs `kills` rounds of start-the-child, wait a random moment, SIGKILL, check.
    /// - Parameters:
    ///   - executable: the `campaign-harness` binary (whose `workload` mode is the child).
    public static func run(
        data: String, kills: Int, seed: UInt64, executable: URL, log: (String) -> Void = { _ in }
    ) async throws -> Summary {
        var random = SeededRandom(seed: seed)
        var acknowledged = [String: Int]()
        var summary = Summary()
        for round in 0..<kills {
            let child = try ChildProcess(
                executable.path, ["workload", "--data", data, "--round", String(round), "--limit", "100000"],
                output: .collect, error: .null)
            // Wait for some acknowledgements, then kill at a random moment.
            let wanted = random.int(1..<60)
            let deadline = Date().addingTimeInterval(10)
            while child.lines.count < wanted && child.isRunning && Date() < deadline {
                try await Task.sleep(for: .milliseconds(1))
            }
            try await Task.sleep(for: .milliseconds(random.int(0..<40)))
            child.send(SIGKILL)
            let termination = await child.waitForExit()
            let lines = child.lines
            for line in lines {
                let parts = line.split(separator: " ")
                if parts.count == 3, parts[0] == "ack", let events = Int(parts[2]) {
                    acknowledged[String(parts[1])] = events
                }
            }
            try check(data: data, acknowledged: acknowledged, into: &summary)
            summary.kills += termination == .signalled(SIGKILL) ? 1 : 0
            log(
                "round \(round + 1)/\(kills): \(lines.count) acknowledgements, \(acknowledged.count) in "
                    + "all, \(summary.events) events"
            )
        }
        return summary
    }

    /// Reopens the store and checks every acknowledged request, the chain and the projections.
    static func check(data: String, acknowledged: [String: Int], into summary: inout Summary) throws {
        let engine = try CampaignEngine(directory: data)
        defer { engine.close() }
        var counts = [String: Int]()
        try engine.eventStore.forEachEvent { event in
            counts[event.requestId, default: 0] += 1
            return true
        }
        summary.acknowledged = acknowledged.count
        summary.lost = acknowledged.filter { counts[$0.key, default: 0] < $0.value }.count
        summary.duplicated = acknowledged.filter { counts[$0.key, default: 0] > $0.value }.count
        let chain = try engine.eventStore.verifyChain()
        summary.events = chain.headPosition
        if !chain.isIntact {
            summary.problems.append("chain broken at \(chain.firstBadPosition ?? 0): \(chain.problem ?? "")")
        }
        for projection in engine.projections.projections {
            let report = try engine.projections.verify(projection.name)
            if !report.matches {
                summary.problems.append("projection \(projection.name) differs in \(report.differenceCount) entries")
            }
        }
    }
}
