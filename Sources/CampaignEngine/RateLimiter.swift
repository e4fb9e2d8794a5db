import CampaignDomain
import Foundation
import Synchronization

/// A per-tenant request budget over fixed windows (default 1000 requests per 60 s).
///
/// The count lives in this process: two engines on one directory each grant the full budget.
final class RateLimiter: Sendable {
    /// Each tenant's current window: when it started and how many requests it granted.
    private let windows = Mutex<[String: (start: Date, count: Int)]>([:])
    let limit: Int
    let window: TimeInterval

    init(limit: Int, window: TimeInterval) {
        self.limit = limit
        self.window = window
    }

    /// Takes one request from the tenant's budget, or throws `RATE_LIMIT_EXCEEDED` with the headers.
    func take(tenant: String, now: Date) throws(CampaignError) {
        let start = Date(timeIntervalSince1970: (now.timeIntervalSince1970 / window).rounded(.down) * window)
        let reset = start.addingTimeInterval(window)
        let granted: Bool = windows.withLock { windows in
            var entry = windows[tenant] ?? (start, 0)
            if entry.start != start { entry = (start, 0) }
            guard entry.count < limit else { return false }
            entry.count += 1
            windows[tenant] = entry
            return true
        }
        guard !granted else { return }
        let retryAfter = max(1, Int(reset.timeIntervalSince(now).rounded(.up)))
        throw CampaignError(
            .rateLimitExceeded, "tenant \(tenant) sent more than \(limit) requests in \(Int(window)) s",
            retryAfter: retryAfter, retryable: true,
            rateLimit: RateLimitState(limit: limit, remaining: 0, reset: reset, retryAfter: retryAfter))
    }
}
