import CampaignDomain
import Foundation
import Hashing
import Synchronization

/// One publish call: everything a platform client needs, including the credential *reference*
/// (the host resolves it to a token in its own vault; the engine never sees the token).
public struct PublishRequest: Sendable, Equatable {
    /// The tenant whose post it is.
    public var tenant: String
    /// The post being published (`pst_…`).
    public var postId: String
    /// The connection (`con_…`) of this target, whose credential reference the call carries.
    public var connectionId: String
    /// The platform to publish to (`x`, `linkedin`, …), as the connection names it.
    public var platform: String
    /// The account on the platform to publish as.
    public var accountId: String
    /// Where the host keeps the credential.
    public var credentialRef: String
    /// The post's text, already checked against the platform's rules.
    public var text: String
    /// The post's media, already checked against the platform's count and kinds.
    public var media: [Media]
    /// The post's link, if it has one.
    public var link: String?
    /// 1 for the first attempt at this target, then 2, 3…
    public var attempt: Int
    /// Stable per post and target: a platform that supports idempotency keys can use it to
    /// drop a duplicate.
    public var idempotencyKey: String
}

/// What the host implements to reach the social platforms. The engine calls it outside any
/// write transaction, after recording that the attempt started, and records the outcome.
public protocol SocialPublisher: Sendable {
    /// Publishes one post to one account and says what happened.
    func publish(_ request: PublishRequest) async -> PublishOutcome
}

/// A deterministic stand-in for the platforms, for the demo and the tests.
///
/// Outcomes come, in order, from a per-account script set with ``enqueue(_:forAccount:)``;
/// when an account has none left, markers in the text decide: `#reject` → rejected, `#timeout`
/// → timed out, `#flaky` → a transient failure on attempts 1 and 2, `#busy` → rate limited
/// (60 s) on attempt 1; anything else is published with an id derived from the request.
public final class SimulatedPublisher: SocialPublisher, Sendable {
    /// The outcomes queued per account, and every call made so far.
    private struct Record {
        var script: [String: [PublishOutcome]] = [:]
        var calls: [PublishRequest] = []
    }
    private let record = Mutex(Record())

    /// Creates a publisher with no script.
    public init() {}

    /// Queues outcomes for an account's next calls.
    public func enqueue(_ outcomes: [PublishOutcome], forAccount accountId: String) {
        record.withLock { $0.script[accountId, default: []].append(contentsOf: outcomes) }
    }

    /// Every call made so far, in order.
    public var requests: [PublishRequest] { record.withLock { $0.calls } }

    /// Answers from the script or the text markers.
    public func publish(_ request: PublishRequest) async -> PublishOutcome {
        let scripted: PublishOutcome? = record.withLock { record in
            record.calls.append(request)
            guard var queue = record.script[request.accountId], !queue.isEmpty else { return nil }
            let next = queue.removeFirst()
            record.script[request.accountId] = queue
            return next
        }
        if let scripted { return scripted }
        let text = request.text
        if text.contains("#reject") { return .rejected(reason: "simulated policy violation") }
        if text.contains("#timeout") { return .timedOut }
        if text.contains("#flaky") && request.attempt <= 2 { return .transientFailure(reason: "simulated 503") }
        if text.contains("#busy") && request.attempt == 1 { return .rateLimited(retryAfter: 60) }
        let id = SHA256.hash(Array("\(request.tenant)/\(request.postId)/\(request.connectionId)".utf8)).prefix(8)
            .hexString
        return .published(
            platformPostId: "sim-\(id)", url: "https://\(request.platform).example/\(request.accountId)/\(id)")
    }
}
