import CampaignDomain
import Foundation
import Synchronization
import TestSupport
import Testing

@testable import CampaignEngine

/// SPEC.md §6: the rate limit is per tenant. Processes on one store count into one budget.
@Suite struct SharedRateLimitTests {
    private func queries(_ count: Int, tenant: String = "acme", tag: String) -> String {
        (0..<count).map {
            #"{"requestId":"\#(tag)\#($0)","principal":\#(admin(tenant)),"query":"campaign.list","params":{}}"# + "\n"
        }.joined()
    }

    private func statuses(_ run: Run) -> [Int] { run.lines.compactMap { (try? JSON.parse($0))?.status } }

    @Test func processesOneAfterAnotherShareATenantsBudget() async throws {
        let directory = TemporaryDirectory()
        let arguments = ["apply", "--data", directory.path, "--now", "2026-11-30T12:00:10Z", "--rate-limit", "10"]
        let first = try await campaign(arguments, input: queries(6, tag: "a"))
        #expect(statuses(first) == Array(repeating: 200, count: 6))
        let second = try await campaign(arguments, input: queries(6, tag: "b"))
        #expect(statuses(second) == Array(repeating: 200, count: 4) + [429, 429], "\(second.out)")
        let refused = try JSON.parse(second.lines.last ?? "")
        #expect(refused["error"]?["retryAfter"]?.integerValue == 50, "the window ends on the minute")
        // Another tenant's budget is its own.
        let other = try await campaign(arguments, input: queries(6, tenant: "globex", tag: "c"))
        #expect(statuses(other) == Array(repeating: 200, count: 6))
        // The next window starts afresh.
        var later = arguments
        later[later.firstIndex(of: "--now")! + 1] = "2026-11-30T12:01:00Z"
        #expect(statuses(try await campaign(later, input: queries(3, tag: "d"))) == [200, 200, 200])
    }

    @Test func processesAtOnceGrantExactlyTheBudget() async throws {
        let directory = TemporaryDirectory()
        let arguments = [
            "apply", "--data", directory.path, "--now", "2026-11-30T12:00:00Z", "--rate-limit", "50",
            "--concurrency", "8",
        ]
        // Made first, so the two racing processes find the store there.
        _ = try await campaign(arguments, input: "")
        async let first = campaign(arguments, input: queries(40, tag: "a"))
        async let second = campaign(arguments, input: queries(40, tag: "b"))
        let all = try await statuses(first) + statuses(second)
        #expect(all.count == 80)
        #expect(all.filter { $0 == 200 }.count == 50 && all.filter { $0 == 429 }.count == 30)
    }

    @Test func aFullTableTakesASlotWhoseWindowIsOverAndCountsInProcessMeanwhile() throws {
        let directory = TemporaryDirectory()
        let windows = try #require(SharedRateWindows(directory: directory.path, slotCount: 4, probes: 4))
        for tenant in ["t1", "t2", "t3", "t4"] {
            #expect(windows.take(tenant, window: 7, limit: 2) == .granted(count: 1))
        }
        #expect(windows.take("t1", window: 7, limit: 2) == .granted(count: 2))
        #expect(windows.take("t1", window: 7, limit: 2) == .refused)
        // Every slot is another tenant's in this window: the engine counts t5 in its process.
        #expect(windows.take("t5", window: 7, limit: 2) == .noRoom)
        let limiter = RateLimiter(limit: 2, window: 60, shared: windows)
        let now = Date(timeIntervalSince1970: 7 * 60 + 1)
        try limiter.take(tenant: "t5", now: now)
        try limiter.take(tenant: "t5", now: now)
        #expect(throws: CampaignError.self) { try limiter.take(tenant: "t5", now: now) }
        // In the next window t5 takes a slot whose window is over, and counts from one.
        #expect(windows.take("t5", window: 8, limit: 2) == .granted(count: 1))
        #expect(windows.take("t5", window: 8, limit: 2) == .granted(count: 2))
    }

    @Test func aProcessMappingTheFileSeesAnotherMappingsCounts() throws {
        let directory = TemporaryDirectory()
        let one = try #require(SharedRateWindows(directory: directory.path))
        let two = try #require(SharedRateWindows(directory: directory.path))
        #expect(one.take("acme", window: 1, limit: 3) == .granted(count: 1))
        #expect(two.take("acme", window: 1, limit: 3) == .granted(count: 2))
        #expect(one.take("acme", window: 1, limit: 3) == .granted(count: 3))
        #expect(two.take("acme", window: 1, limit: 3) == .refused)
    }

    /// Processes whose clocks disagree (`apply --now` in the past beside a host on the system
    /// clock) each keep a limit, instead of resetting each other's window at every request (both
    /// granting without one): a slot's window only moves forward, and the process behind counts in
    /// itself.
    @Test func aProcessWhoseClockIsBehindLeavesTheLaterWindowAlone() throws {
        let directory = TemporaryDirectory()
        let ahead = try #require(SharedRateWindows(directory: directory.path))
        let behind = try #require(SharedRateWindows(directory: directory.path))
        #expect(ahead.take("acme", window: 100, limit: 3) == .granted(count: 1))
        #expect(behind.take("acme", window: 99, limit: 3) == .noRoom)
        #expect(ahead.take("acme", window: 100, limit: 3) == .granted(count: 2))
        #expect(behind.take("acme", window: 99, limit: 3) == .noRoom)
        #expect(ahead.take("acme", window: 100, limit: 3) == .granted(count: 3))
        #expect(ahead.take("acme", window: 100, limit: 3) == .refused)
        // Once the process behind reaches a later window, the slot is its.
        #expect(behind.take("acme", window: 101, limit: 3) == .granted(count: 1))
        // Nor is another tenant's slot in a later window taken as over.
        let full = TemporaryDirectory()
        let one = try #require(SharedRateWindows(directory: full.path, slotCount: 1, probes: 1))
        #expect(one.take("t1", window: 10, limit: 2) == .granted(count: 1))
        #expect(one.take("t2", window: 9, limit: 2) == .noRoom)
        #expect(one.take("t1", window: 10, limit: 2) == .granted(count: 2))
        #expect(one.take("t2", window: 11, limit: 2) == .granted(count: 1))
        // Window numbers wrap (in 2106 at 1 s, sooner for shorter windows): past the wrap the small
        // numbers are the later ones, and a slot's window still moves forward.
        let wrapped = TemporaryDirectory()
        let wrapping = try #require(SharedRateWindows(directory: wrapped.path, slotCount: 1, probes: 1))
        #expect(wrapping.take("t3", window: .max, limit: 2) == .granted(count: 1))
        #expect(wrapping.take("t4", window: 0, limit: 2) == .granted(count: 1), "t3's window is over")
        #expect(wrapping.take("t3", window: .max, limit: 2) == .noRoom)
        #expect(wrapping.take("t4", window: 0, limit: 2) == .granted(count: 2))
        #expect(SharedRateWindows.isLater(3, than: .max - 3) && !SharedRateWindows.isLater(.max - 3, than: 3))
        // The engine behind counts in its process, to the same limit.
        let limiter = RateLimiter(limit: 2, window: 60, shared: behind)
        let now = Date(timeIntervalSince1970: 99 * 60 + 1)
        try limiter.take(tenant: "acme", now: now)
        try limiter.take(tenant: "acme", now: now)
        #expect(throws: CampaignError.self) { try limiter.take(tenant: "acme", now: now) }
    }

    /// Two tenants racing for one slot, each in its own mapping (as two processes), each taking it
    /// over whenever the other's window is over: no request lands in the other tenant's count. Each
    /// tenant alone makes its requests, so in each of its windows the counts it is granted are
    /// exactly 1, 2, 3, …; a request counted into the slot just after the other tenant took it over
    /// would show as a count the tenant never made.
    @Test func aRequestNeverLandsInTheSlotAnotherTenantTookOver() async throws {
        let directory = TemporaryDirectory()
        let path = directory.path
        let clock = RaceClock()
        @Sendable func race(_ tenant: String) -> (granted: Int, skipped: [String]) {
            guard let windows = SharedRateWindows(directory: path, slotCount: 1, probes: 1) else {
                return (0, ["no mapping"])
            }
            var last: (window: UInt32, count: Int) = (.max, 0)
            var granted = 0
            var skipped: [String] = []
            for _ in 0..<50_000 {
                // Both tenants' windows follow one clock, so at each new window the first to ask finds
                // the other's window over and takes the slot, while the other may be counting.
                let window = UInt32(clock.ticks.add(1, ordering: .relaxed).newValue / 8)
                guard case .granted(let count) = windows.take(tenant, window: window, limit: 1_000_000) else {
                    continue
                }
                granted += 1
                let expected = last.window == window ? last.count + 1 : 1
                if count != expected, skipped.count < 5 { skipped.append("window \(window): \(count) after \(last)") }
                last = (window, count)
            }
            return (granted, skipped)
        }
        // On threads of their own: two loops that never yield would hold Swift's pool from other tests.
        async let a = onThread { race("a") }
        async let b = onThread { race("b") }
        let (first, second) = await (a, b)
        #expect(first.skipped.isEmpty && second.skipped.isEmpty, "\(first.skipped) \(second.skipped)")
        #expect(first.granted > 1_000 && second.granted > 1_000, "both tenants held the slot in turn")
    }

    /// A process configured with 10 s windows and one with 60 s windows count apart, instead of
    /// resetting each other's window at every request.
    @Test func windowsOfOtherLengthsCountApart() throws {
        let directory = TemporaryDirectory()
        let windows = try #require(SharedRateWindows(directory: directory.path))
        #expect(windows.take("acme", window: 6, of: 10, limit: 2) == .granted(count: 1))
        #expect(windows.take("acme", window: 1, of: 60, limit: 2) == .granted(count: 1))
        #expect(windows.take("acme", window: 6, of: 10, limit: 2) == .granted(count: 2))
        #expect(windows.take("acme", window: 1, of: 60, limit: 2) == .granted(count: 2))
        #expect(windows.take("acme", window: 6, of: 10, limit: 2) == .refused)
    }

    /// A slot's key is SHA-256 based and fixed by the file's format (README, "On-disk format"):
    /// every build on a store must compute the same one. Values from Python's `hashlib`.
    @Test func aBudgetsKeyIsTheFormatsSHA256Prefix() {
        #expect(SharedRateWindows.key("acme", length: 60) == 0xeaa0_56b2_5a4a_f4c5)
        #expect(SharedRateWindows.key("acme", length: 10) == 0xcf29_60c3_f2d2_da58)
    }

    /// Two tenant names whose FNV-1a 64 keys are equal (found by a rho search over 13-character
    /// names; FNV-1a, the key until 2026-12-07, is not collision-resistant): with that key they
    /// shared one slot, and one tenant's requests spent the other's budget. A tenant able to pick its
    /// name could aim at another's. With the SHA-256 key each has a budget of its own.
    @Test func tenantsWhoseFNVKeysCollideKeepBudgetsOfTheirOwn() throws {
        let (first, second) = (collidingTenants.0, collidingTenants.1)
        #expect(fnv1a64(first, length: 60) == fnv1a64(second, length: 60))
        #expect(SharedRateWindows.key(first, length: 60) != SharedRateWindows.key(second, length: 60))
        let directory = TemporaryDirectory()
        let windows = try #require(SharedRateWindows(directory: directory.path))
        #expect(windows.take(first, window: 3, limit: 2) == .granted(count: 1))
        #expect(windows.take(first, window: 3, limit: 2) == .granted(count: 2))
        #expect(windows.take(first, window: 3, limit: 2) == .refused)
        #expect(windows.take(second, window: 3, limit: 2) == .granted(count: 1))
        #expect(windows.take(second, window: 3, limit: 2) == .granted(count: 2))
        // The same through the engine's limiter, as a request meets it.
        let limiter = RateLimiter(limit: 3, window: 60, shared: windows)
        let now = Date(timeIntervalSince1970: 4 * 60 + 1)
        for _ in 0..<3 { try limiter.take(tenant: first, now: now) }
        #expect(throws: CampaignError.self) { try limiter.take(tenant: first, now: now) }
        for _ in 0..<3 { try limiter.take(tenant: second, now: now) }
    }

    @Test func aFileOfAnotherLayoutLeavesTheCountInTheProcess() async throws {
        let directory = TemporaryDirectory()
        try Data(repeating: 0xAB, count: 64 + 16 * 16_384).write(
            to: URL(fileURLWithPath: directory.path + "/" + SharedRateWindows.fileName))
        #expect(SharedRateWindows(directory: directory.path) == nil)
        let t = try TestEngine(rateLimit: 2, on: directory)
        #expect(!t.engine.rateLimiter.isShared)
        #expect(try t.engine.metrics().prometheusText().contains("campaign_rate_limit_shared 0\n"))
        #expect(await t.query("campaign.list", "{}").status == 200)
        #expect(await t.query("campaign.list", "{}").status == 200)
        #expect(await t.query("campaign.list", "{}").code == "RATE_LIMIT_EXCEEDED")
        let fresh = try TestEngine(rateLimit: 2)
        #expect(fresh.engine.rateLimiter.isShared)
        #expect(try fresh.engine.metrics().rateLimitShared)
    }
}

/// The one clock two racing tenants' windows follow.
private final class RaceClock: Sendable {
    let ticks = Atomic<Int>(0)
}

/// Two valid tenant ids with one FNV-1a 64 key for 60 s windows (``fnv1a64(_:length:)``).
private let collidingTenants = ("96dpkg07nw6nb", "y00cso3062ddd")

/// The rate windows' key until 2026-12-07: FNV-1a 64 of the tenant's name, a 0x00 byte and the
/// window's length (the bits of the `Double`, little-endian).
private func fnv1a64(_ tenant: String, length: TimeInterval) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    func add(_ byte: UInt8) {
        hash ^= UInt64(byte)
        hash = hash &* 0x0000_0100_0000_01b3
    }
    for byte in tenant.utf8 { add(byte) }
    add(0)
    let bits = length.bitPattern
    for shift in stride(from: 0, to: 64, by: 8) { add(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
    return hash == 0 ? 1 : hash
}

/// Runs `body` on a thread of its own and returns what it returns, leaving Swift's pool free.
private func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: body()) }.start()
    }
}
