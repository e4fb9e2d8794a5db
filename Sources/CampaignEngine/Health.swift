import CampaignDomain
import CampaignProjections
import EventStore
import Foundation

/// Where an engine's health check draws its lines (``CampaignEngine/health(_:)``).
public struct HealthThresholds: Sendable, Equatable {
    /// Events a catch-up read model (`segments`, `audit`) may be behind before the engine is
    /// degraded: its queries catch it up first, so they slow down (default 100,000: ten times the
    /// background catch-up's own lag limit).
    public var maximumLag: UInt64
    /// The share of the map's maximum size (``StoreOptions/maximumMapSize``) in use past which the
    /// engine is degraded (default 0.9): at the maximum, appends are refused.
    public var maximumMapUse: Double
    /// Free bytes on the store's file system below which the engine is degraded (default 512 MiB):
    /// LMDB writes pages into the file as the map fills, and a full disk refuses appends.
    public var minimumFreeDisk: Int
    /// How long the writer may be on one transaction or job before the engine is failing (default
    /// 10 s): a flush that hangs on a broken disk or volume holds every append behind it.
    public var maximumWriterBusy: Duration
    /// When given, how long the engine clock may pass without a completed scheduler tick (since the
    /// last one, or since the engine opened) before the engine is degraded: a host whose timer
    /// stopped leaves due campaigns and posts waiting. Nil (the default) for a host that ticks from
    /// elsewhere.
    public var maximumTickInterval: Duration?

    /// Thresholds with the defaults each names.
    public init(
        maximumLag: UInt64 = 100_000, maximumMapUse: Double = 0.9, minimumFreeDisk: Int = 512 << 20,
        maximumWriterBusy: Duration = .seconds(10), maximumTickInterval: Duration? = nil
    ) {
        self.maximumLag = maximumLag
        self.maximumMapUse = maximumMapUse
        self.minimumFreeDisk = minimumFreeDisk
        self.maximumWriterBusy = maximumWriterBusy
        self.maximumTickInterval = maximumTickInterval
    }
}

/// How an engine stands, for a host's health endpoint: `ok`, `degraded` (it serves, but an operator
/// should look) or `failing` (it cannot take writes), with each problem found.
public struct EngineHealth: Sendable, Equatable {
    /// How an engine, or one of its checks, stands; ordered from best to worst.
    public enum Status: String, Sendable, Comparable, CaseIterable {
        /// Nothing found.
        case ok
        /// It serves, but something is past a threshold.
        case degraded
        /// It refuses appends, or cannot be read.
        case failing

        /// Whether `lhs` is better than `rhs`.
        public static func < (lhs: Status, rhs: Status) -> Bool {
            allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
        }
    }

    /// One check past its threshold.
    public struct Problem: Sendable, Equatable {
        /// Which check: `writes-refused`, `store-unreadable`, `writer-busy`, `map-use`, `disk-space`,
        /// `projection-lag` or `scheduler-late`.
        public var check: String
        /// `degraded` or `failing`.
        public var status: Status
        /// What was found, in figures (no tenant's data).
        public var detail: String

        /// A problem found by `check`.
        public init(check: String, status: Status, detail: String) {
            self.check = check
            self.status = status
            self.detail = detail
        }
    }

    /// The worst of the problems' statuses; `ok` when there is none.
    public var status: Status { problems.map(\.status).max() ?? .ok }
    /// Each check past its threshold, in the order the checks run.
    public var problems: [Problem]

    /// The HTTP status a health endpoint answers: 503 while failing (a load balancer sends writes
    /// elsewhere), 200 otherwise.
    public var httpStatus: Int { status == .failing ? 503 : 200 }

    /// The body a health endpoint answers, keys in byte order:
    /// `{"problems":[{"check":…,"detail":…,"status":"degraded"}],"status":"degraded"}`.
    public var json: String { jsonValue.text }

    /// ``json`` as a value: `system.health`'s `data`, and what a tool puts in a JSON report of its
    /// own (`campaign demo --json`'s `health`).
    public var jsonValue: JSON {
        JSON.object([
            "status": .string(status.rawValue),
            "problems": .array(
                problems.map {
                    .object([
                        "check": .string($0.check), "status": .string($0.status.rawValue), "detail": .string($0.detail),
                    ])
                }),
        ])
    }
}

extension CampaignEngine {
    /// Checks the engine against `thresholds`, for a host's health endpoint: whether the store refuses
    /// appends (its chain failed to verify), the writer has been on one transaction too long, the
    /// map or the disk is nearly full, a catch-up read model is far behind, or (when asked) the
    /// scheduler's ticks have stopped. Reads the metrics (a short read transaction) and the file
    /// system's free space; never throws: a store that cannot be read is itself a failing check.
    public func health(_ thresholds: HealthThresholds = HealthThresholds()) -> EngineHealth {
        let metrics: EngineMetrics
        do {
            metrics = try self.metrics()
        } catch {
            return EngineHealth(problems: [.init(check: "store-unreadable", status: .failing, detail: "\(error)")])
        }
        var problems = [EngineHealth.Problem]()
        if let reason = metrics.writesRefused {
            problems.append(.init(check: "writes-refused", status: .failing, detail: reason))
        }
        if metrics.store.writerBusyFor > thresholds.maximumWriterBusy {
            let seconds = DurationHistogram.seconds(metrics.store.writerBusyFor)
            problems.append(
                .init(
                    check: "writer-busy", status: .failing,
                    detail: "the writer has been on one transaction or job for \(String(format: "%.1f", seconds)) s"))
        }
        let use = Double(metrics.usage.usedBytes) / Double(max(1, metrics.maximumMapSize))
        if use > thresholds.maximumMapUse {
            problems.append(
                .init(
                    check: "map-use", status: .degraded,
                    detail: "\(Self.bytes(metrics.usage.usedBytes)) used of a maximum map of "
                        + "\(Self.bytes(metrics.maximumMapSize)) (\(Int(use * 100))%)"))
        }
        if let free = metrics.filesystemFreeBytes, free < thresholds.minimumFreeDisk {
            problems.append(
                .init(
                    check: "disk-space", status: .degraded,
                    detail: "\(Self.bytes(free)) free on the store's file system"))
        }
        for projection in metrics.projections
        where projection.mode == .catchUp && projection.lag > thresholds.maximumLag {
            problems.append(
                .init(
                    check: "projection-lag", status: .degraded,
                    detail: "\(projection.name) is \(projection.lag) events behind the log"))
        }
        if let interval = thresholds.maximumTickInterval {
            let since = metrics.scheduler.lastCompletedAt ?? openedAt
            let waited = currentTime.timeIntervalSince(since)
            if waited > DurationHistogram.seconds(interval) {
                let which = metrics.scheduler.lastCompletedAt == nil ? "since the engine opened" : "since the last one"
                problems.append(
                    .init(
                        check: "scheduler-late", status: .degraded,
                        detail: "no scheduler tick completed for \(Int(waited)) s \(which)"))
            }
        }
        return EngineHealth(problems: problems)
    }

    /// `count` in MiB, to a tenth.
    private static func bytes(_ count: Int) -> String {
        String(format: "%.1f MiB", Double(count) / 1_048_576)
    }
}
