import CampaignDomain
import CampaignEngine
import EventStore
import Foundation
import Synchronization
import TestSupport
import Testing

/// `engine.health()`: each check past its threshold, and nothing when none is.
@Suite struct HealthTests {
    @Test func aFreshEngineIsHealthy() async throws {
        let t = try TestEngine()
        #expect(await t.command("campaign.create", #"{"name":"Healthy","channel":"email"}"#).status == 201)
        let health = t.engine.health()
        #expect(health.status == .ok && health.problems.isEmpty && health.httpStatus == 200)
        #expect(health.json == #"{"problems":[],"status":"ok"}"#)
    }

    @Test func aCatchUpReadModelFarBehindDegradesTheEngine() async throws {
        var configuration = EngineConfiguration()
        configuration.catchUp = nil
        let t = try TestEngine(configuration: configuration)
        for n in 1...3 {
            #expect(await t.command("campaign.create", #"{"name":"Behind \#(n)","channel":"email"}"#).status == 201)
        }
        #expect(t.engine.health(HealthThresholds(maximumLag: 3)).status == .ok)
        let health = t.engine.health(HealthThresholds(maximumLag: 2))
        #expect(health.status == .degraded && health.httpStatus == 200)
        #expect(
            health.problems == [
                .init(check: "projection-lag", status: .degraded, detail: "segments is 3 events behind the log"),
                .init(check: "projection-lag", status: .degraded, detail: "audit is 3 events behind the log"),
            ])
        try await t.engine.projections.catchUpOnWriter()
        #expect(t.engine.health(HealthThresholds(maximumLag: 2)).status == .ok)
    }

    @Test func aNearlyFullMapOrDiskDegradesTheEngine() throws {
        let t = try TestEngine()
        let map = t.engine.health(HealthThresholds(maximumMapUse: 0))
        #expect(map.problems.map(\.check) == ["map-use"] && map.status == .degraded)
        #expect(map.problems.first?.detail.hasSuffix("MiB (0%)") == true, "\(map.problems)")
        let disk = t.engine.health(HealthThresholds(minimumFreeDisk: .max))
        #expect(disk.problems.map(\.check) == ["disk-space"] && disk.status == .degraded)
        #expect(disk.problems.first?.detail.hasSuffix("MiB free on the store's file system") == true)
    }

    /// A store whose head record fails to verify refuses appends: a load balancer must stop sending
    /// it writes.
    @Test func aStoreThatRefusesAppendsIsFailing() async throws {
        let t = try TestEngine(on: try await storeRefusingAppends())
        let health = t.engine.health()
        #expect(health.status == .failing && health.httpStatus == 503)
        #expect(health.problems.map(\.check) == ["writes-refused"])
        #expect(health.problems.first?.detail.contains("head record (position 1)") == true)
        #expect(health.json.hasSuffix(#""status":"failing"}"#))
    }

    /// A flush that hangs holds every append behind it and completes nothing: the writer's time on
    /// its current job shows it.
    @Test func aWriterHeldTooLongIsFailing() async throws {
        let t = try TestEngine()
        let hold = WriterHold(t.engine)
        let thresholds = HealthThresholds(maximumWriterBusy: .milliseconds(100))
        try await waitUntil("the writer held past the threshold") { t.engine.health(thresholds).status == .failing }
        #expect(t.engine.health(thresholds).problems.map(\.check) == ["writer-busy"])
        try await hold.release()
        try await waitUntil("the writer free again") { t.engine.health(thresholds).status == .ok }
    }

    /// A host that ticks from a timer learns when the timer stopped: the engine clock passing the
    /// interval without a completed tick, counted from the engine's opening until the first.
    @Test func ticksThatStopDegradeTheEngineWhenAskedFor() async throws {
        let t = try TestEngine()
        let thresholds = HealthThresholds(maximumTickInterval: .seconds(60))
        #expect(t.engine.health(thresholds).status == .ok)
        t.clock.advance(by: 61)
        #expect(
            t.engine.health(thresholds).problems == [
                .init(
                    check: "scheduler-late", status: .degraded,
                    detail: "no scheduler tick completed for 61 s since the engine opened")
            ])
        #expect(t.engine.health().status == .ok, "no interval asked for, no check")
        _ = try await t.engine.tick()
        #expect(t.engine.health(thresholds).status == .ok)
        t.clock.advance(by: 90)
        #expect(
            t.engine.health(thresholds).problems.map(\.detail) == [
                "no scheduler tick completed for 90 s since the last one"
            ])
        // A tick that throws does not count as completed.
        await #expect(throws: CampaignError.self) { try await t.engine.tick(now: testStart) }
        #expect(t.engine.health(thresholds).status == .degraded)
    }

    /// `system.health` on the wire, for a host running `campaign apply` as a co-process: the same
    /// answer as `engine.health()`, to the operator's admins alone.
    @Test func theOperatorReadsTheHealthOnTheWire() async throws {
        var configuration = EngineConfiguration()
        configuration.operatorTenant = "ops"
        let t = try TestEngine(configuration: configuration)
        let ok = await t.query("system.health", "{}", as: admin("ops"))
        #expect(ok.status == 200 && ok.data == .object(["status": .string("ok"), "problems": .array([])]), "\(ok)")
        t.clock.advance(by: 120)
        let late = await t.query("system.health", #"{"maximumTickInterval":60}"#, as: admin("ops"))
        #expect(late.data?["status"] == .string("degraded"))
        #expect(
            late.data?["problems"]?.arrayValue?.first?["detail"]
                == .string("no scheduler tick completed for 120 s since the engine opened"))
        #expect(
            await t.query("system.health", #"{"maximumTickInterval":180}"#, as: admin("ops")).data?["status"]
                == .string("ok"))
        // Another tenant's admin learns nothing of the engine, nor the operator's name.
        let tenant = await t.query("system.health", "{}", as: admin("acme"))
        #expect(tenant.code == "FORBIDDEN" && tenant.status == 403)
        #expect(tenant["error"]?["message"] == .string("only the operator reads the engine's health"))
        for (params, pointer) in [
            (#"{"maximumTickInterval":0}"#, "/params/maximumTickInterval"),
            (#"{"maximumTickInterval":"60"}"#, "/params/maximumTickInterval"),
            (#"{"thresholds":{}}"#, "/params/thresholds"),
        ] {
            let refused = await t.query("system.health", params, as: admin("ops"))
            #expect(refused.status == 400 && refused["error"]?["pointer"] == .string(pointer), "\(params): \(refused)")
        }
        // An engine with no operator answers no one: its host calls `engine.health()`.
        let hosted = try TestEngine()
        let none = await hosted.query("system.health", "{}", as: admin("ops"))
        #expect(none.code == "FORBIDDEN" && none["error"]?["message"]?.stringValue?.contains("engine.health()") == true)
        // Through `campaign apply`, as a co-process host sends it.
        let directory = TemporaryDirectory()
        let run = try await campaign(
            ["apply", "--data", directory.path, "--operator-tenant", "ops"],
            input: #"{"requestId":"h","principal":\#(admin("ops")),"query":"system.health","params":{}}"# + "\n")
        #expect(run.lines == [#"{"data":{"problems":[],"status":"ok"},"requestId":"h","status":200}"#], "\(run.out)")
    }
}
