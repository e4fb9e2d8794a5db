import CampaignDomain
import CampaignEngine
import EventStore
import Foundation
import Spawn
import Synchronization
import TestSupport
import Testing

@Suite struct EngineMetricsTests {
    /// Sends the same mix to a fresh engine whose rate limit lets five requests through.
    private func engineAfterAMix() async throws -> TestEngine {
        let t = try TestEngine(rateLimit: 5)
        let create = #"{"campaignId":"cmp_1","name":"Counted","channel":"email"}"#
        #expect(await t.command("campaign.create", create).status == 201)
        #expect(await t.command("campaign.create", create).code == "DUPLICATE_RESOURCE")
        #expect(await t.query("campaign.get", #"{"campaignId":"cmp_1"}"#).status == 200)
        #expect(await t.query("campaign.get", #"{"campaignId":"cmp_none"}"#).code == "RESOURCE_NOT_FOUND")
        #expect(await t.send("not json").code == "INVALID_FORMAT")
        let viewer = principal(role: "viewer", scopes: ["campaigns:read"])
        #expect(await t.command("campaign.create", create, as: viewer).code == "FORBIDDEN")
        #expect(await t.query("campaign.get", #"{"campaignId":"cmp_1"}"#).status == 200)
        #expect(await t.query("campaign.get", #"{"campaignId":"cmp_1"}"#).code == "RATE_LIMIT_EXCEEDED")
        return t
    }

    @Test func eachAnswerIsCountedByCommandOrQueryStatusAndCode() async throws {
        let t = try await engineAfterAMix()
        let metrics = try t.engine.metrics()
        typealias Count = EngineMetrics.RequestCount
        #expect(
            metrics.requests == [
                Count(name: "campaign.create", status: 201, code: nil, count: 1),
                Count(name: "campaign.create", status: 403, code: .forbidden, count: 1),
                Count(name: "campaign.create", status: 409, code: .duplicateResource, count: 1),
                Count(name: "campaign.get", status: 200, code: nil, count: 2),
                Count(name: "campaign.get", status: 404, code: .resourceNotFound, count: 1),
                Count(name: "campaign.get", status: 429, code: .rateLimitExceeded, count: 1),
                Count(name: EngineMetrics.unparsed, status: 400, code: .invalidFormat, count: 1),
            ])
        #expect(metrics.requestsAnswered == 8)
        #expect(
            metrics.refusals == [
                .duplicateResource: 1, .resourceNotFound: 1, .invalidFormat: 1, .forbidden: 1, .rateLimitExceeded: 1,
            ])
        #expect(metrics.count("campaign.get") == 4 && metrics.count("campaign.get", code: .resourceNotFound) == 1)
        // A line that named no command or query is counted, but timed as neither.
        #expect(metrics.commandDurations.count == 3 && metrics.queryDurations.count == 4)
        #expect(metrics.commandDurations.sum > 0)
        // One event written, in one group commit, each timed.
        #expect(metrics.head == 1)
        #expect(metrics.store.groupCommitTransactions == 1)
        #expect(metrics.store.appendTransactionDurations.count == 1)
        #expect(metrics.projections.map(\.name) == CampaignEngine.standardProjections().map(\.name))
        #expect(metrics.projections.filter { $0.mode == .inline }.allSatisfy { $0.lag == 0 })
        #expect(metrics.usage.usedBytes > 0 && metrics.usage.usedBytes <= metrics.usage.mapSize)
        #expect(metrics.maximumMapSize == StoreOptions().maximumMapSize)
        let free = try #require(metrics.filesystemFreeBytes)
        #expect(free > 0)
        let freeLine = metrics.prometheusText().split(separator: "\n").first {
            $0.hasPrefix("campaign_store_filesystem_free_bytes ")
        }
        #expect(freeLine == "campaign_store_filesystem_free_bytes \(free)")
        // (The writer may be on a background catch-up batch now: its busy time has a test of its own.)
        #expect(metrics.writesRefused == nil)
        #expect(metrics.prometheusText().contains("campaign_store_writes_refused 0\n"))
    }

    /// A flush that hangs completes no histogram sample: the writer's time on its current
    /// transaction or job shows it while it lasts. The job holds the writer until the test has seen
    /// that (a busy machine may delay the test's polling by more than any fixed hold).
    @Test func aWriterHeldByAJobShowsHowLongItHasBeenBusy() async throws {
        let t = try TestEngine()
        let hold = WriterHold(t.engine)
        try await waitUntil("the writer busy for 100 ms") {
            try t.engine.metrics().store.writerBusyFor >= .milliseconds(100)
        }
        let busyLine = try t.engine.metrics().prometheusText().split(separator: "\n")
            .first { $0.hasPrefix("campaign_writer_busy_seconds ") }
        #expect((busyLine?.split(separator: " ").last.flatMap { Double($0) } ?? 0) >= 0.1)
        try await hold.release()
        // The job's caller resumes before the writer notes the job's end: wait for that, too.
        try await waitUntil("the writer idle") { try t.engine.metrics().store.writerBusyFor == .zero }
        #expect(try t.engine.metrics().prometheusText().contains("campaign_writer_busy_seconds 0\n"))
    }

    /// A store whose head record fails to verify refuses appends until a verify passes: an operator
    /// must learn it from the metrics, not from the first refused command.
    @Test func aStoreThatRefusesAppendsSaysSoInItsMetrics() async throws {
        let t = try TestEngine(on: try await storeRefusingAppends())
        let metrics = try t.engine.metrics()
        #expect(metrics.writesRefused?.contains("head record (position 1)") == true, "\(metrics.writesRefused ?? "")")
        #expect(metrics.prometheusText().contains("campaign_store_writes_refused 1\n"))
    }

    @Test func aCatchUpReadModelsLagShowsUntilItCatchesUpOnTheWriter() async throws {
        var configuration = EngineConfiguration()
        configuration.catchUp = nil
        let t = try TestEngine(configuration: configuration)
        for n in 1...3 {
            let payload = #"{"campaignId":"cmp_\#(n)","name":"Lagging \#(n)","channel":"email"}"#
            #expect(await t.command("campaign.create", payload).status == 201)
        }
        let behind = try t.engine.metrics()
        #expect(behind.head == 3)
        #expect(behind.projections.first { $0.name == "audit" }?.lag == 3)
        let jobsBefore = behind.store.writerJobDurations.count
        try await t.engine.projections.catchUpOnWriter()
        let caughtUp = try t.engine.metrics()
        #expect(caughtUp.projections.allSatisfy { $0.lag == 0 })
        #expect(caughtUp.store.writerJobDurations.count > jobsBefore, "each catch-up batch is a timed writer job")
        #expect(
            caughtUp.prometheusText().contains(#"campaign_projection_lag_events{mode="catch-up",projection="audit"} 0"#)
        )
    }

    @Test func thePrometheusTextIsWellFormedAndNamesNoTenant() async throws {
        let t = try await engineAfterAMix()
        let metrics = try t.engine.metrics()
        let text = metrics.prometheusText()
        let lines = text.split(separator: "\n").map(String.init)
        #expect(text.hasSuffix("\n"))
        // Each family declares its help and type once, before its samples.
        let types = lines.filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] }
        #expect(Set(types).count == types.count)
        #expect(lines.contains("# TYPE campaign_request_duration_seconds histogram"))
        #expect(lines.contains("# TYPE campaign_requests_total counter"))
        let sample = try Regex(#"^campaign_[a-z_]+(\{([a-z_]+="[^"\\\n]*",)*[a-z_]+="[^"\\\n]*"\})? [0-9.e+-]+$"#)
        for line in lines where !line.hasPrefix("#") {
            #expect(line.wholeMatch(of: sample) != nil, "not a sample line: \(line)")
        }
        #expect(lines.contains(#"campaign_requests_total{code="",name="campaign.create",status="201"} 1"#))
        #expect(lines.contains(#"campaign_requests_total{code="INVALID_FORMAT",name="unparsed",status="400"} 1"#))
        #expect(lines.contains(#"campaign_request_duration_seconds_count{kind="query"} 4"#))
        #expect(lines.contains(#"campaign_request_duration_seconds_bucket{kind="query",le="+Inf"} 4"#))
        #expect(lines.contains("campaign_log_head_position 1"))
        #expect(lines.contains("campaign_store_map_maximum_bytes \(1 << 40)"))
        #expect(lines.contains("campaign_group_commit_transactions_total 1"))
        #expect(lines.contains("campaign_append_transaction_duration_seconds_count 1"))
        // Buckets are cumulative: never fewer under a larger bound.
        let buckets = lines.filter { $0.hasPrefix(#"campaign_request_duration_seconds_bucket{kind="command""#) }
        let counts = buckets.compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }
        #expect(counts.count == DurationHistogram.standardBounds.count + 1)
        #expect(zip(counts, counts.dropFirst()).allSatisfy { $0 <= $1 } && counts.last == 3)
        // Labels come from the engine's lists, never from a request: no tenant, subject or id.
        for secret in ["acme", "u_1", "cmp_1", "cmp_none", "Counted", "not json"] {
            #expect(!text.contains(secret), "\(secret) leaked into the metrics")
        }
    }

    /// A host that runs ticks from a timer alerts on them: each tick is counted, completed or
    /// failed, with its items by kind, outcome and code, and the engine time of the last one.
    @Test func schedulerTicksAreCountedWithTheirItems() async throws {
        let t = try TestEngine()
        let segment = #"{"segmentId":"seg_1","name":"All","rules":{"all":[{"field":"email","operator":"exists"}]}}"#
        #expect(await t.command("segment.create", segment).status == 201)
        let campaign =
            #"{"campaignId":"cmp_1","name":"Ticked","channel":"sms","segmentId":"seg_1","content":{"body":"Hi"}}"#
        #expect(await t.command("campaign.create", campaign).status == 201)
        let sendAt = #"{"campaignId":"cmp_1","sendAt":"2026-11-21T11:00:00Z"}"#
        #expect(await t.command("campaign.schedule", sendAt).status == 201)
        let connect =
            #"{"connectionId":"con_x","platform":"x","accountId":"acct_x","credentialRef":"vault://x","#
            + #""expiresAt":"2027-01-01T00:00:00Z"}"#
        #expect(await t.command("social.connect", connect).status == 201)
        t.publisher.enqueue([.published(platformPostId: "p1", url: "https://x.example/p1")], forAccount: "acct_x")
        t.publisher.enqueue([.rejected(reason: "not allowed")], forAccount: "acct_x")
        for id in ["pst_1", "pst_2"] {
            let post = #"{"postId":"\#(id)","connectionIds":["con_x"],"text":"Hello \#(id)"}"#
            #expect(await t.command("post.create", post).status == 201)
            let at = #"{"postId":"\#(id)","publishAt":"2026-11-21T11:30:00Z"}"#
            #expect(await t.command("post.schedule", at).status == 201)
        }
        #expect(try t.engine.metrics().scheduler == SchedulerMetrics())

        _ = try await t.engine.tick(now: Timestamp.parse("2026-11-21T10:30:00Z")!)
        let due = Timestamp.parse("2026-11-21T12:00:00Z")!
        let report = try await t.engine.tick(now: due)
        #expect(report.items.count == 3, "\(report.items)")
        await #expect(throws: CampaignError.self) { try await t.engine.tick(now: testStart) }
        #expect(await t.command("system.tick", "{}").status == 200)

        let metrics = try t.engine.metrics().scheduler
        typealias Count = SchedulerMetrics.ItemCount
        #expect(metrics.ticksCompleted == 3 && metrics.ticksFailed == 1)
        #expect(metrics.durations.count == 4)
        #expect(metrics.lastCompletedAt == due)
        #expect(
            metrics.items == [
                Count(kind: "campaign", outcome: "activated", code: nil, count: 1),
                Count(kind: "post", outcome: "failed", code: .contentRejected, count: 1),
                Count(kind: "post", outcome: "published", code: nil, count: 1),
            ])
        #expect(metrics.count("post") == 2 && metrics.count("post", outcome: "published") == 1)
        let text = try t.engine.metrics().prometheusText()
        for line in [
            #"campaign_scheduler_ticks_total{outcome="completed"} 3"#,
            #"campaign_scheduler_ticks_total{outcome="failed"} 1"#,
            #"campaign_scheduler_tick_duration_seconds_count 4"#,
            "campaign_scheduler_last_completed_tick_timestamp_seconds \(Int(due.timeIntervalSince1970))",
            #"campaign_scheduler_items_total{code="",kind="campaign",outcome="activated"} 1"#,
            #"campaign_scheduler_items_total{code="CONTENT_REJECTED",kind="post",outcome="failed"} 1"#,
            #"campaign_scheduler_items_total{code="",kind="post",outcome="published"} 1"#,
            "campaign_scheduler_memberships_refreshed_total 0",
            "campaign_idempotency_records_pruned_total 0",
        ] {
            #expect(text.contains(line + "\n"), "\(line)")
        }
    }
}

@Suite struct ApplyMetricsFileTests {
    /// A co-process host cannot call `metrics()`: `apply --metrics FILE` writes them at the start, at
    /// each interval while the input stays open, and as the run ends, each time whole.
    @Test func applyWritesTheMetricsFileAtTheStartAtEachIntervalAndAtTheEnd() async throws {
        let directory = TemporaryDirectory()
        let file = directory.path + "/campaign.prom"
        let child = try ChildProcess(
            product("campaign"),
            ["apply", "--data", directory.path + "/data", "--metrics", file, "--metrics-every", "1"],
            input: .pipe, output: .collect)
        defer { child.terminate() }
        func text() -> String { (try? String(contentsOfFile: file, encoding: .utf8)) ?? "" }
        try await waitUntil("the first write") { text().contains("campaign_log_head_position 0\n") }
        let create =
            #"{"requestId":"r","principal":\#(admin()),"command":"campaign.create","#
            + #""payload":{"campaignId":"cmp_1","name":"Metered","channel":"email"}}"#
        #expect(child.write(Array((create + "\n").utf8)))
        try await waitUntil("the answer") { child.lines.count == 1 }
        // Written again within the interval, with the input still open.
        try await waitUntil("a write after the command") {
            text().contains(#"campaign_requests_total{code="",name="campaign.create",status="201"} 1"#)
        }
        #expect(child.write(Array("not json\n".utf8)))
        child.closeInput()
        #expect(await child.waitForExit() == .exited(0))
        // The last write, as the run ended, counts the line answered just before it.
        #expect(text().contains(#"campaign_requests_total{code="INVALID_FORMAT",name="unparsed",status="400"} 1"#))
        #expect(text().contains("campaign_log_head_position 1\n"))
        let left = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        #expect(left.sorted() == ["campaign.prom", "data"], "no temporary file is left behind")
    }

    /// A collector keeps serving the last write after the run: it shows the read models caught up
    /// as the engine closes, not behind by the run's last commands.
    @Test func theLastWriteShowsTheReadModelsCaughtUp() async throws {
        let directory = TemporaryDirectory()
        let file = directory.path + "/campaign.prom"
        let creates = (1...50).map {
            #"{"requestId":"r\#($0)","principal":\#(admin()),"command":"campaign.create","#
                + #""payload":{"name":"Caught up \#($0)","channel":"email"}}"# + "\n"
        }
        let run = try await campaign(
            ["apply", "--data", directory.path + "/data", "--metrics", file], input: creates.joined())
        #expect(run.status == 0 && run.lines.count == 50)
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(text.contains("campaign_log_head_position 50\n"))
        for projection in ["audit", "segments"] {
            let lag = #"campaign_projection_lag_events{mode="catch-up",projection="\#(projection)"} 0"#
            #expect(text.contains(lag + "\n"), "\(text)")
        }
    }

    /// Two `apply` processes writing into one textfile directory: without a label of their own, their
    /// series are the same, and a collector refuses series it collected twice.
    @Test func aLabelOfTheOperatorsKeepsTwoProcessesSeriesApart() async throws {
        let directory = TemporaryDirectory()
        var texts: [String] = []
        for name in ["blue", "green"] {
            let file = directory.path + "/\(name).prom"
            let run = try await campaign(
                [
                    "apply", "--data", directory.path + "/\(name)", "--metrics", file, "--metrics-label",
                    "process=\(name)",
                ],
                input: #"{"requestId":"r","principal":\#(admin()),"query":"campaign.list","params":{}}"# + "\n")
            #expect(run.status == 0)
            texts.append(try String(contentsOfFile: file, encoding: .utf8))
        }
        let samples = texts.map { $0.split(separator: "\n").filter { !$0.hasPrefix("#") } }
        #expect(samples[0].count > 100 && samples[0].count == samples[1].count)
        #expect(samples[0].contains("campaign_log_head_position{process=\"blue\"} 0"))
        #expect(
            samples[1].contains(
                #"campaign_projection_lag_events{mode="catch-up",process="green",projection="audit"} 0"#))
        #expect(samples[0].allSatisfy { $0.contains(#"process="blue""#) }, "every sample is labelled")
        #expect(Set(samples[0]).isDisjoint(with: Set(samples[1])), "no series in both files")
        // The names a constant label may not take are the ones the samples use: a label added to the
        // samples without joining that list would silently win over the operator's.
        let used = Set(
            samples[0].flatMap { sample -> [String] in
                guard let open = sample.firstIndex(of: "{"), let close = sample.lastIndex(of: "}") else { return [] }
                return sample[sample.index(after: open)..<close].split(separator: ",").compactMap {
                    $0.split(separator: "=").first.map(String.init)
                }
            })
        #expect(used.subtracting(["process"]).isSubset(of: PrometheusText.sampleLabelNames), "\(used)")
        // A value is escaped as the format requires.
        let file = directory.path + "/odd.prom"
        let odd = try await campaign([
            "apply", "--data", directory.path + "/odd", "--metrics", file, "--metrics-label", #"site=a "quoted" \ one"#,
        ])
        #expect(odd.status == 0)
        #expect(try String(contentsOfFile: file, encoding: .utf8).contains(#"{site="a \"quoted\" \\ one"} "#))
    }

    @Test(arguments: [
        ["--metrics-every", "5"], ["--metrics", "m.prom", "--metrics-every", "0"],
        ["--metrics", "/nonexistent/m.prom"], ["--metrics", "/tmp/"], ["--metrics", "/tmp"],
        ["--metrics-label", "process=blue"], ["--metrics", "m.prom", "--metrics-label", "blue"],
        ["--metrics", "m.prom", "--metrics-label", "projection=blue"],
        ["--metrics", "m.prom", "--metrics-label", "__name__=blue"],
        ["--metrics", "m.prom", "--metrics-label", "9lives=blue"],
        ["--metrics", "m.prom", "--metrics-label", "process="],
    ])
    func aMetricsFileThatCannotBeWrittenIsAUsageErrorBeforeAnyStoreIsMade(_ options: [String]) async throws {
        let directory = TemporaryDirectory()
        let run = try await campaign(["apply", "--data", directory.path + "/data"] + options)
        #expect(run.status == 64 && run.err.hasPrefix("campaign apply: --metrics"), "\(options): \(run.err)")
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/data"))
    }
}
