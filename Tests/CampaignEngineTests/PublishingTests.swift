import CampaignDomain
import EventStore
import Foundation
import Synchronization
import TestSupport
import Testing

@testable import CampaignEngine

/// Social publishing through the engine with the simulated publisher and a manual clock.
@Suite struct PublishingTests {
    func connected(
        _ platforms: [(String, String)] = [("con_x", "x")], expiresAt: String = "2027-01-01T00:00:00Z"
    ) async throws -> TestEngine {
        let t = try TestEngine()
        for (id, platform) in platforms {
            let response = await t.command(
                "social.connect",
                #"{"connectionId":"\#(id)","platform":"\#(platform)","accountId":"acct_\#(id)","#
                    + #""credentialRef":"vault://social/\#(id)","expiresAt":"\#(expiresAt)"}"#
            )
            try #require(response.status == 201, "\(response)")
        }
        return t
    }

    func post(
        _ t: TestEngine, _ id: String, text: String, on connections: [String] = ["con_x"], media: String = "[]"
    ) async -> JSON {
        let ids = connections.map { "\"\($0)\"" }.joined(separator: ",")
        return await t.command(
            "post.create", #"{"postId":"\#(id)","connectionIds":[\#(ids)],"text":"\#(text)","media":\#(media)}"#)
    }

    func get(_ t: TestEngine, _ id: String) async -> JSON? { await t.query("post.get", #"{"postId":"\#(id)"}"#).data }

    func tick(_ t: TestEngine, _ at: Date) async throws -> TickReport { try await t.engine.tick(now: at) }

    @Test func aSuccessfulPublishRecordsThePlatformIdAndUrl() async throws {
        let t = try await connected()
        #expect(await post(t, "pst_1", text: "Hello").status == 201)
        let response = await t.command("post.publish", #"{"postId":"pst_1"}"#)
        #expect(response.status == 201)
        let target = response.data?["post"]?["targets"]?.arrayValue?.first
        #expect(response.data?["post"]?["status"]?.stringValue == "published")
        #expect(
            target?["platformPostId"]?.stringValue?.hasPrefix("sim-") == true
                && target?["url"]?.stringValue?.hasPrefix("https://x.example/") == true)
        let types = try t.engine.eventStore.readStream("acme:pst_1").map(\.type)
        #expect(
            types == [
                "post.created", "post.publishingStarted", "post.attemptStarted", "post.targetPublished",
                "post.published",
            ])
        #expect(t.publisher.requests.count == 1 && t.publisher.requests[0].credentialRef == "vault://social/con_x")
    }

    /// A host that sends every command with `expectedVersion` publishes as one that does not: the
    /// version is the post's before the publish, and the attempts after it append to the post as it
    /// is then. Before, they appended at the old version and failed: the publish answered 409
    /// "kept changing" with the post left publishing until a tick.
    @Test func aPublishWithAnExpectedVersionRunsItsAttempts() async throws {
        let t = try await connected()
        #expect(await post(t, "pst_1", text: "Hello").status == 201)
        let stale = await t.send(
            #"{"requestId":"p0","expectedVersion":2,"principal":\#(admin()),"command":"post.publish","#
                + #""payload":{"postId":"pst_1"}}"#)
        #expect(stale.code == "RESOURCE_CONFLICT" && stale["error"]?["currentVersion"]?.integerValue == 1, "\(stale)")
        #expect(await get(t, "pst_1")?["status"]?.stringValue == "draft")
        let published = await t.send(
            #"{"requestId":"p1","expectedVersion":1,"idempotencyKey":"pub-1","principal":\#(admin()),"#
                + #""command":"post.publish","payload":{"postId":"pst_1"}}"#)
        #expect(published.status == 201, "\(published)")
        #expect(published["data"]?["post"]?["status"]?.stringValue == "published")
        #expect(t.publisher.requests.count == 1)
        // Its retry answers the same, from the idempotency record, and calls nobody again.
        let retried = await t.send(
            #"{"requestId":"p2","expectedVersion":1,"idempotencyKey":"pub-1","principal":\#(admin()),"#
                + #""command":"post.publish","payload":{"postId":"pst_1"}}"#)
        #expect(retried.status == 200 && retried["data"] == published["data"], "\(retried)")
        #expect(t.publisher.requests.count == 1)
    }

    @Test func aRateLimitAnswers429AndATickAfterRetryAfterPublishes() async throws {
        let t = try await connected()
        t.publisher.enqueue([.rateLimited(retryAfter: 120)], forAccount: "acct_con_x")
        _ = await post(t, "pst_1", text: "Launch day")
        let limited = await t.command("post.publish", #"{"postId":"pst_1"}"#)
        #expect(limited.code == "RATE_LIMIT_EXCEEDED" && limited.status == 429)
        #expect(limited["error"]?["retryAfter"]?.integerValue == 120)
        #expect(limited["headers"]?["Retry-After"]?.stringValue == "120")
        #expect(await get(t, "pst_1")?["status"]?.stringValue == "publishing")

        let early = try await tick(t, testStart + 119)
        #expect(early.items.isEmpty)
        #expect(t.publisher.requests.count == 1)
        let due = try await tick(t, testStart + 120)
        #expect(due.items.map(\.id) == ["pst_1"] && due.items.first?.error == nil)
        #expect(await get(t, "pst_1")?["status"]?.stringValue == "published")
        #expect(t.publisher.requests.count == 2)
        #expect((try await tick(t, testStart + 999)).items.isEmpty)
    }

    @Test func aRejectionIsContentRejectedAndFailsThePost() async throws {
        let t = try await connected()
        _ = await post(t, "pst_1", text: "Bad #reject")
        let response = await t.command("post.publish", #"{"postId":"pst_1"}"#)
        #expect(response.code == "CONTENT_REJECTED" && response.status == 422)
        #expect(await get(t, "pst_1")?["status"]?.stringValue == "failed")
    }

    @Test func transientFailuresRetryWithBackoffThenPublish() async throws {
        let t = try await connected()
        t.publisher.enqueue(
            [.transientFailure(reason: "503"), .transientFailure(reason: "502")], forAccount: "acct_con_x")
        _ = await post(t, "pst_1", text: "Try again")
        let first = await t.command("post.publish", #"{"postId":"pst_1"}"#)
        #expect(first.status == 201 && first.data?["post"]?["status"]?.stringValue == "publishing")
        #expect(first.data?["post"]?["targets"]?.arrayValue?.first?["retryAt"]?.stringValue == "2026-11-21T10:00:30Z")
        #expect((try await tick(t, testStart + 29)).items.isEmpty)
        _ = try await tick(t, testStart + 30)
        #expect(await get(t, "pst_1")?["targets"]?.arrayValue?.first?["retryAt"]?.stringValue == "2026-11-21T10:01:30Z")
        _ = try await tick(t, testStart + 90)
        let done = await get(t, "pst_1")
        #expect(done?["status"]?.stringValue == "published")
        #expect(done?["targets"]?.arrayValue?.first?["attempts"]?.integerValue == 3)
        #expect(t.publisher.requests.map(\.attempt) == [1, 2, 3])
    }

    /// A target's connection is checked, then its attempt is recorded; a `social.disconnect`
    /// committed in between must keep the post off the account. The attempt's transaction finds the
    /// connection changed since it was checked, and the target is checked again: `CONNECTION_EXPIRED`,
    /// and no call to the platform. Before, the attempt started and the platform was called with the
    /// disconnected account's credential.
    @Test func aConnectionDisconnectedBetweenItsCheckAndTheAttemptIsNotPublishedTo() async throws {
        let t = try await connected()
        _ = await post(t, "pst_1", text: "Racing")
        let disconnected = Mutex(false)
        // The hook holds `t`, which holds the engine: cleared at the end, or the engine and its
        // directory would outlive the test.
        defer { t.engine.beforeAttempt.withLock { $0 = nil } }
        t.engine.beforeAttempt.withLock {
            $0 = { _ in
                guard !disconnected.withLock({ $0 }) else { return }
                _ = await t.command("social.disconnect", #"{"connectionId":"con_x"}"#)
                disconnected.withLock { $0 = true }
            }
        }
        let response = await t.command("post.publish", #"{"postId":"pst_1"}"#)
        #expect(disconnected.withLock { $0 })
        #expect(response.code == "CONNECTION_EXPIRED", "\(response)")
        #expect(t.publisher.requests.isEmpty, "the platform was called for a disconnected account")
        let target = await get(t, "pst_1")?["targets"]?.arrayValue?.first
        #expect(target?["status"]?.stringValue == "failed" && target?["attempts"]?.integerValue == 0)
    }

    /// A connection that changes before every attempt (refreshed each time, here) is checked again a
    /// bounded number of times; then the publish answers a retryable conflict and nothing was sent.
    @Test func aConnectionThatKeepsChangingIsAConflictToRetry() async throws {
        let t = try await connected()
        _ = await post(t, "pst_1", text: "Moving target")
        let refreshes = Mutex(0)
        defer { t.engine.beforeAttempt.withLock { $0 = nil } }
        t.engine.beforeAttempt.withLock {
            $0 = { _ in
                let count = refreshes.withLock {
                    $0 += 1
                    return $0
                }
                let expiresAt = Timestamp.format(testStart + 86_400 * Double(100 + count))
                let refreshed = await t.command(
                    "social.refresh", #"{"connectionId":"con_x","expiresAt":"\#(expiresAt)"}"#)
                #expect(refreshed.status == 201)
            }
        }
        let response = await t.command("post.publish", #"{"postId":"pst_1"}"#)
        #expect(response.code == "RESOURCE_CONFLICT" && response["error"]?["retryable"] == .bool(true), "\(response)")
        #expect(refreshes.withLock { $0 } == t.engine.configuration.maximumRetries + 1)
        #expect(t.publisher.requests.isEmpty)
        // Once the connection holds still, the next tick publishes.
        t.engine.beforeAttempt.withLock { $0 = nil }
        _ = try await tick(t, testStart + 1)
        #expect(await get(t, "pst_1")?["status"]?.stringValue == "published")
        #expect(t.publisher.requests.count == 1)
    }

    @Test func threeTransientFailuresArePublishingFailed() async throws {
        let t = try await connected()
        _ = await post(t, "pst_1", text: "Unlucky")
        t.publisher.enqueue(Array(repeating: .transientFailure(reason: "503"), count: 3), forAccount: "acct_con_x")
        _ = await t.command("post.publish", #"{"postId":"pst_1"}"#)
        _ = try await tick(t, testStart + 30)
        let last = try await tick(t, testStart + 90)
        #expect(last.items.first?.error?.code == .publishingFailed)
        #expect(await get(t, "pst_1")?["status"]?.stringValue == "failed")
        #expect(t.publisher.requests.count == 3)
    }

    @Test func aTimeoutFailsAsUnconfirmedAndIsNeverResent() async throws {
        let t = try await connected()
        _ = await post(t, "pst_1", text: "Slow #timeout")
        let response = await t.command("post.publish", #"{"postId":"pst_1"}"#)
        #expect(response.code == "PUBLISHING_FAILED" && response.status == 502)
        #expect(response["error"]?["message"]?.stringValue?.contains("not sent again") == true)
        _ = try await tick(t, testStart + 86_400)
        #expect(t.publisher.requests.count == 1)
        let failed = try t.engine.eventStore.readStream("acme:pst_1").first { $0.type == "post.targetFailed" }
        let failedPayload = String(decoding: failed?.payload ?? [UInt8](), as: UTF8.self)
        #expect(failedPayload.contains(#""unconfirmed":true"#))
    }

    /// A platform call that never comes back, as when the process dies during it, or until it is
    /// cancelled (then it answers anyway, late).
    final class StallingPublisher: SocialPublisher, @unchecked Sendable {
        // Invariant: `calls` and `cancellations` are touched only under `lock`.
        private let lock = NSLock()
        private var calls = 0
        private var cancellations = 0
        var count: Int { lock.withLock { calls } }
        /// How many calls were cancelled.
        var cancelled: Int { lock.withLock { cancellations } }

        func publish(_ request: PublishRequest) async -> PublishOutcome {
            lock.withLock { calls += 1 }
            try? await Task.sleep(for: .seconds(3_600))
            if Task.isCancelled { lock.withLock { cancellations += 1 } }
            return .published(platformPostId: "late", url: "https://x.example/late")
        }
    }

    /// An engine publishing through `publisher` (with `configuration`'s settings), and `post.publish`
    /// of post `pst_1` on an X connection, under way.
    func publishingThrough(
        _ publisher: StallingPublisher, configuration: EngineConfiguration? = nil
    ) async throws -> (TestEngine, Task<JSON, Never>) {
        let t = try TestEngine(configuration: configuration, publishVia: publisher)
        _ = await t.command(
            "social.connect",
            #"{"connectionId":"con_x","platform":"x","accountId":"a","credentialRef":"vault://x/a","#
                + #""expiresAt":"2027-01-01T00:00:00Z"}"#
        )
        _ = await post(t, "pst_1", text: "Hanging")
        return (t, Task { await t.command("post.publish", #"{"postId":"pst_1"}"#) })
    }

    /// A host's platform call that does not answer within `publishTimeout` is a timeout: the target
    /// fails as unconfirmed at once, the call is cancelled, its late answer changes nothing, and the
    /// post is never sent again. Before, the engine waited for the call for ever, and a tick with it.
    @Test func aPlatformCallNotAnsweredInTimeIsATimeoutAndIsCancelled() async throws {
        let stalling = StallingPublisher()
        var configuration = EngineConfiguration()
        configuration.publishTimeout = 0.2
        let (t, publishing) = try await publishingThrough(stalling, configuration: configuration)
        // Cancelling the command cancels the call, so a regression fails here rather than hangs.
        defer { publishing.cancel() }
        try await waitUntil("the call to time out", limit: .seconds(10)) {
            await get(t, "pst_1")?["status"]?.stringValue == "failed"
        }
        let response = await publishing.value
        #expect(response.code == "PUBLISHING_FAILED" && response.status == 502, "\(response)")
        #expect(response["error"]?["message"]?.stringValue?.contains("not sent again") == true)
        try await waitUntil("the call to be cancelled") { stalling.cancelled == 1 }
        let failed = try t.engine.eventStore.readStream("acme:pst_1").first { $0.type == "post.targetFailed" }
        let failedPayload = String(decoding: failed?.payload ?? [UInt8](), as: UTF8.self)
        #expect(failedPayload.contains(#""unconfirmed":true"#))
        #expect(await get(t, "pst_1")?["status"]?.stringValue == "failed")
        #expect((try await tick(t, testStart + 86_400)).items.isEmpty)
        #expect(stalling.count == 1)
    }

    @Test func anAttemptWithoutAnOutcomeIsSettledAsUnconfirmedAndNeverResent() async throws {
        let stalling = StallingPublisher()
        let (t, publishing) = try await publishingThrough(stalling)
        try await waitUntil("the attempt to start") {
            await get(t, "pst_1")?["targets"]?.arrayValue?.first?["status"]?.stringValue == "attempting"
        }
        #expect((try await tick(t, testStart + Post.inDoubtAfter - 1)).items.isEmpty)
        let settled = try await tick(t, testStart + Post.inDoubtAfter)
        #expect(settled.items.first?.error?.code == .publishingFailed)
        let after = await get(t, "pst_1")
        #expect(after?["status"]?.stringValue == "failed")
        #expect(after?["targets"]?.arrayValue?.first?["message"]?.stringValue?.contains("not sent again") == true)
        #expect(stalling.count == 1)
        // The late answer finds the attempt settled and changes nothing.
        publishing.cancel()
        let late = await publishing.value
        #expect(late.code == "PUBLISHING_FAILED")
        #expect(await get(t, "pst_1")?["status"]?.stringValue == "failed")
        #expect((try await tick(t, testStart + 86_400)).items.isEmpty)
        #expect(stalling.count == 1)
    }

    @Test func anExpiredOrDisconnectedConnectionIsConnectionExpiredWithoutACall() async throws {
        let t = try await connected([("con_x", "x"), ("con_m", "mastodon")], expiresAt: "2026-11-21T11:00:00Z")
        _ = await post(t, "pst_1", text: "Later", on: ["con_x"])
        t.clock.set(testStart + 3_600)
        let expired = await t.command("post.publish", #"{"postId":"pst_1"}"#)
        #expect(expired.code == "CONNECTION_EXPIRED" && expired.status == 409)
        t.clock.set(testStart)
        _ = await post(t, "pst_2", text: "Later", on: ["con_m"])
        #expect(await t.command("social.disconnect", #"{"connectionId":"con_m"}"#).status == 201)
        #expect(await t.command("post.publish", #"{"postId":"pst_2"}"#).code == "CONNECTION_EXPIRED")
        #expect(await post(t, "pst_3", text: "x", on: ["con_m"]).code == "CONNECTION_EXPIRED")
        #expect(
            await t.command("social.refresh", #"{"connectionId":"con_m","expiresAt":"2027-01-01T00:00:00Z"}"#).code
                == "CONNECTION_EXPIRED")
        #expect(t.publisher.requests.isEmpty)
    }

    /// A post whose account was disconnected is moved to another before it goes out: the update's
    /// `connectionIds` replaces the targets, checked as a created post's are, and the scheduled
    /// post publishes to the new ones only.
    @Test func anUpdateMovesAPostToOtherConnections() async throws {
        let t = try await connected([("con_x", "x"), ("con_m", "mastodon"), ("con_li", "linkedin")])
        #expect(await post(t, "pst_1", text: "Launch day", on: ["con_x"]).status == 201)
        let at = Timestamp.format(testStart + 3_600)
        #expect(await t.command("post.schedule", #"{"postId":"pst_1","publishAt":"\#(at)"}"#).status == 201)
        #expect(await t.command("social.disconnect", #"{"connectionId":"con_x"}"#).status == 201)
        func update(_ payload: String) async -> JSON {
            await t.command("post.update", #"{"postId":"pst_1",\#(payload)}"#)
        }
        func refusal(_ response: JSON) -> String {
            "\(response.code ?? "-") \(response["error"]?["pointer"]?.stringValue ?? "-")"
        }
        // Refused at the item's pointer: not a connection id, unknown, another tenant's, disconnected.
        _ = await t.command(
            "social.connect",
            #"{"connectionId":"con_o","platform":"x","accountId":"other","credentialRef":"vault://o","#
                + #""expiresAt":"2027-01-01T00:00:00Z"}"#, as: admin("other"))
        #expect(refusal(await update(#""connectionIds":["con_m","x_1"]"#)) == "INVALID_FORMAT /payload/connectionIds/1")
        #expect(
            refusal(await update(#""connectionIds":["con_m","con_o"]"#))
                == "RESOURCE_NOT_FOUND /payload/connectionIds/1")
        #expect(refusal(await update(#""connectionIds":["con_x"]"#)) == "CONNECTION_EXPIRED /payload/connectionIds/0")
        #expect(refusal(await update(#""connectionIds":null"#)) == "INVALID_FORMAT /payload/connectionIds")
        let emptyList = await update(#""connectionIds":[]"#)
        #expect(refusal(emptyList) == "VALIDATION_ERROR /payload/connectionIds", "\(emptyList)")
        let moved = await update(#""connectionIds":["con_m","con_li"]"#)
        #expect(moved.status == 201, "\(moved)")
        let targets = moved.data?["post"]?["targets"]?.arrayValue?.compactMap { $0["connectionId"]?.stringValue }
        #expect(targets == ["con_m", "con_li"])
        #expect(moved.data?["post"]?["status"]?.stringValue == "scheduled")
        let again = await update(#""connectionIds":["con_m","con_li"]"#)
        #expect(again.status == 200 && again.data?["changed"] == .bool(false), "\(again)")
        // The log holds the whole new list, so a rebuild folds the same targets.
        let last = try #require(try t.engine.eventStore.readStream("acme:pst_1").last)
        #expect(last.type == "post.updated")
        #expect(try JSON.parse(last.payload)["connectionIds"] == .array([.string("con_m"), .string("con_li")]))
        let due = try await tick(t, testStart + 3_600)
        #expect(due.items.map(\.id) == ["pst_1"] && due.items.first?.error == nil, "\(due)")
        #expect(await get(t, "pst_1")?["status"]?.stringValue == "published")
        #expect(
            t.publisher.requests.map(\.credentialRef).sorted() == ["vault://social/con_li", "vault://social/con_m"])
    }

    /// A post created for an account while the account is disconnected: decided on the connection
    /// as connected, but the disconnect commits first, so the create is decided again and refused.
    /// Before, both committed and the post targeted a disconnected account.
    @Test func aPostDecidedBeforeItsConnectionIsDisconnectedIsRefusedAfter() async throws {
        let t = try await connected([("con_m", "mastodon")])
        let (disconnected, created) = try await t.decidedTogether(
            ("social.disconnect", #"{"connectionId":"con_m"}"#),
            then: ("post.create", #"{"postId":"pst_1","connectionIds":["con_m"],"text":"Hi"}"#))
        #expect(disconnected.status == 201, "\(disconnected)")
        #expect(created.code == "CONNECTION_EXPIRED", "\(created)")
        #expect(await get(t, "pst_1") == nil)
    }

    @Test func refreshingAConnectionMakesItUsableAgain() async throws {
        let t = try await connected(expiresAt: "2026-11-21T11:00:00Z")
        t.clock.set(testStart + 7_200)
        #expect(await t.query("connection.get", #"{"connectionId":"con_x"}"#).data?["status"]?.stringValue == "expired")
        #expect(
            await t.command(
                "social.refresh",
                #"{"connectionId":"con_x","credentialRef":"vault://social/con_x/v2","#
                    + #""expiresAt":"2027-01-01T00:00:00Z"}"#
            ).status == 201)
        _ = await post(t, "pst_1", text: "Back")
        #expect(await t.command("post.publish", #"{"postId":"pst_1"}"#).status == 201)
        #expect(t.publisher.requests.first?.credentialRef == "vault://social/con_x/v2")
    }

    @Test func anAccountsPublishBudgetIsEnforcedPerWindow() async throws {
        let t = try await connected([("con_t", "tiktok")])
        let media = #"[{"kind":"video","url":"https://cdn.example/v.mp4"}]"#
        for n in 0..<16 {
            #expect(await post(t, "pst_\(n)", text: "Clip \(n)", on: ["con_t"], media: media).status == 201)
        }
        for n in 0..<15 { #expect(await t.command("post.publish", #"{"postId":"pst_\#(n)"}"#).status == 201) }
        let over = await t.command("post.publish", #"{"postId":"pst_15"}"#)
        #expect(over.code == "RATE_LIMIT_EXCEEDED")
        #expect(over["headers"]?["X-RateLimit-Limit"]?.stringValue == "15")
        #expect(over["headers"]?["X-RateLimit-Reset"]?.stringValue == "1795305600")  // the next UTC day
        #expect(t.publisher.requests.count == 15)
        _ = try await tick(t, Timestamp.parse("2026-11-22T00:00:00Z")!)
        #expect(await get(t, "pst_15")?["status"]?.stringValue == "published")
    }

    @Test func mixedOutcomesFailThePostAndListEveryTarget() async throws {
        let t = try await connected([("con_x", "x"), ("con_l", "linkedin")])
        t.publisher.enqueue([.rejected(reason: "spam")], forAccount: "acct_con_l")
        _ = await post(t, "pst_1", text: "Two places", on: ["con_x", "con_l"])
        let response = await t.command("post.publish", #"{"postId":"pst_1"}"#)
        #expect(response.code == "CONTENT_REJECTED")
        #expect(
            response["error"]?["details"]?.arrayValue?.compactMap { $0["field"]?.stringValue } == ["con_x", "con_l"])
        let targets = await get(t, "pst_1")?["targets"]?.arrayValue ?? []
        #expect(targets.compactMap { $0["status"]?.stringValue } == ["published", "failed"])
        #expect(await get(t, "pst_1")?["status"]?.stringValue == "failed")
    }

    @Test func aScheduledPostPublishesOnceWhenDueAndNotBefore() async throws {
        let t = try await connected()
        _ = await post(t, "pst_1", text: "Timed")
        #expect(
            await t.command("post.schedule", #"{"postId":"pst_1","publishAt":"2026-11-21T10:00:00Z"}"#).code
                == "INVALID_SCHEDULE")
        #expect(
            await t.command("post.schedule", #"{"postId":"pst_1","publishAt":"2026-11-21T12:00:00Z"}"#).status == 201)
        #expect((try await tick(t, testStart + 7_199)).items.isEmpty)
        #expect(t.publisher.requests.isEmpty)
        let due = try await tick(t, testStart + 7_200)
        #expect(due.items.map(\.status) == ["published"])
        #expect((try await tick(t, testStart + 9_999)).items.isEmpty)
        #expect(t.publisher.requests.count == 1)
    }

    /// A tick reads what is due, then publishes it post by post. A post rescheduled for later or
    /// unscheduled after that read is left as it now is: before, one rescheduled for later was
    /// published anyway, ahead of its new time.
    @Test func aPostMovedDuringATickIsNotPublishedEarly() async throws {
        let t = try await connected()
        await withTaskGroup(of: Void.self) { group in
            for lane in 0..<8 {
                group.addTask {
                    for n in stride(from: lane, to: 120, by: 8) {
                        _ = await post(t, "pst_\(1_000 + n)", text: "Post \(n)")
                        let at = #"{"postId":"pst_\#(1_000 + n)","publishAt":"2026-11-21T11:00:00Z"}"#
                        _ = await t.command("post.schedule", at)
                    }
                }
            }
        }
        for id in ["pst_later", "pst_off"] {
            _ = await post(t, id, text: "Moved")
            _ = await t.command("post.schedule", #"{"postId":"\#(id)","publishAt":"2026-11-21T11:30:00Z"}"#)
        }
        let tick = Task { try await self.tick(t, testStart + 7_200) }
        while await get(t, "pst_1000")?["status"]?.stringValue != "published" {
            try await Task.sleep(for: .milliseconds(1))
        }
        #expect(
            await t.command("post.schedule", #"{"postId":"pst_later","publishAt":"2026-11-21T18:00:00Z"}"#).status
                == 201)
        #expect(await t.command("post.unschedule", #"{"postId":"pst_off"}"#).status == 201)
        let report = try await tick.value
        #expect(await get(t, "pst_later")?["status"]?.stringValue == "scheduled")
        #expect(await get(t, "pst_off")?["status"]?.stringValue == "draft")
        #expect(report.items.filter { $0.status == "published" }.count == 120)
        #expect(!t.publisher.requests.contains { ["pst_later", "pst_off"].contains($0.postId) })
    }

    /// A scheduled post taken back to a draft is not published at its old time, leaves the
    /// calendar, and can be scheduled again.
    @Test func anUnscheduledPostWaitsAsADraftUntilScheduledAgain() async throws {
        let t = try await connected()
        _ = await post(t, "pst_1", text: "Timed")
        let schedule = #"{"postId":"pst_1","publishAt":"2026-11-21T12:00:00Z"}"#
        #expect(await t.command("post.schedule", schedule).status == 201)
        func calendar() async -> [String]? {
            let list = await t.query("post.list", #"{"from":"2026-11-21T00:00:00Z","to":"2026-11-22T00:00:00Z"}"#)
            return list.data?["items"]?.arrayValue?.compactMap { $0["postId"]?.stringValue }
        }
        #expect(await calendar() == ["pst_1"])
        let unscheduled = await t.command("post.unschedule", #"{"postId":"pst_1"}"#)
        #expect(unscheduled.status == 201, "\(unscheduled)")
        #expect(unscheduled.data?["post"]?["status"]?.stringValue == "draft")
        #expect(unscheduled.data?["post"]?["publishAt"] == nil)
        #expect(try t.engine.eventStore.readStream("acme:pst_1").last?.type == "post.unscheduled")
        #expect(await calendar() == [])
        #expect((try await tick(t, testStart + 7_200)).items.isEmpty)
        #expect(t.publisher.requests.isEmpty)
        // A draft is not scheduled: unscheduling it again is a conflict naming its state.
        let again = await t.command("post.unschedule", #"{"postId":"pst_1"}"#)
        #expect(again.code == "RESOURCE_CONFLICT" && again["error"]?["currentState"]?.stringValue == "draft")
        let later = #"{"postId":"pst_1","publishAt":"2026-11-21T13:00:00Z"}"#
        #expect(await t.command("post.schedule", later).status == 201)
        #expect((try await tick(t, testStart + 10_800)).items.map(\.status) == ["published"])
        #expect(t.publisher.requests.count == 1)
    }

    @Test func postCreationChecksEveryTargetPlatformWithPointers() async throws {
        let t = try await connected([("con_x", "x"), ("con_i", "instagram")])
        let long = String(repeating: "a", count: 281)
        let response = await post(t, "pst_1", text: long, on: ["con_x", "con_i"])
        #expect(response.code == "VALIDATION_ERROR")
        #expect(
            response["error"]?["details"]?.arrayValue?.compactMap { $0["message"]?.stringValue }
                == [
                    "x allows 280 characters as X weighs them (CJK and emoji 2, a link 23); this text has 281",
                    "instagram needs at least one image or video",
                ])
        #expect(await post(t, "pst_2", text: "hi", on: ["con_nope"]).code == "RESOURCE_NOT_FOUND")
        #expect(await post(t, "pst_3", text: "hi", on: ["con_x", "con_x"]).code == "VALIDATION_ERROR")
        #expect(
            await t.command(
                "post.create", #"{"postId":"pst_4","connectionIds":["con_x"],"text":"hi","link":"http://insecure"}"#
            ).code == "VALIDATION_ERROR")
        // Text that displays as nothing is no text.
        for blank in ["  ", "\\u200B", "\\u2060\\uFEFF"] {
            let response = await post(t, "pst_5", text: blank, on: ["con_x"])
            #expect(response["error"]?["message"] == .string("a post needs text or media"), "\(blank)")
        }
    }

    /// A TikTok caption is measured in UTF-16 code units through the wire too: 1,100 emoji fit and
    /// 1,101 are refused with the platform's count, where counting scalars let them through.
    @Test func aTikTokCaptionIsCountedInUTF16CodeUnits() async throws {
        let t = try await connected([("con_t", "tiktok")])
        let media = #"[{"kind":"video","url":"https://cdn.example/v.mp4"}]"#
        let fits = String(repeating: "😀", count: 1_100)
        #expect(await post(t, "pst_1", text: fits, on: ["con_t"], media: media).status == 201)
        let over = await post(t, "pst_2", text: fits + "😀", on: ["con_t"], media: media)
        #expect(over.code == "VALIDATION_ERROR")
        let detail = over["error"]?["details"]?.arrayValue?.first
        #expect(detail?["pointer"]?.stringValue == "/payload/text")
        #expect(
            detail?["message"]?.stringValue == "tiktok allows 2200 UTF-16 code units (an emoji 2); this text has 2202")
        #expect(await get(t, "pst_2") == nil, "nothing is written")
    }

    /// Threads takes 5 distinct links a post, its link attachment counted when it is none of the
    /// text's; an update is checked with the link the post keeps. And a carousel of 20 items.
    @Test func aThreadsPostCarriesAtMostFiveDistinctLinks() async throws {
        let t = try await connected([("con_th", "threads")])
        let five = (1...5).map { "https://acme.com/\($0)" }.joined(separator: " ")
        #expect(await post(t, "pst_1", text: five, on: ["con_th"]).status == 201)
        let sixth = await t.command("post.update", #"{"postId":"pst_1","link":"https://acme.com/6"}"#)
        #expect(sixth.code == "VALIDATION_ERROR")
        #expect(
            sixth["error"]?["details"]?.arrayValue?.compactMap { $0["pointer"]?.stringValue } == ["/payload/link"])
        #expect(await t.command("post.update", #"{"postId":"pst_1","link":"https://acme.com/2"}"#).status == 201)
        // The post keeps its link: a text with five other links is one too many.
        let others = (6...10).map { "https://acme.com/\($0)" }.joined(separator: " ")
        let update = await t.command("post.update", #"{"postId":"pst_1","text":"\#(others)"}"#)
        #expect(
            update["error"]?["details"]?.arrayValue?.first?["message"]?.stringValue
                == "threads allows at most 5 distinct links; this post has 6")
        #expect(await get(t, "pst_1")?["text"]?.stringValue == five, "nothing is written")
        let image = #"{"kind":"image","url":"https://cdn.example/i.jpg"}"#
        let twenty = "[" + Array(repeating: image, count: 20).joined(separator: ",") + "]"
        #expect(await post(t, "pst_2", text: "Album", on: ["con_th"], media: twenty).status == 201)
        let more = "[" + Array(repeating: image, count: 21).joined(separator: ",") + "]"
        #expect(await post(t, "pst_3", text: "Album", on: ["con_th"], media: more).code == "VALIDATION_ERROR")
    }

    /// An X account with Premium takes 25,000 characters and a Mastodon server may set its own
    /// limit: the connection carries the account's `textLimit`, and its posts are checked by it.
    /// Before, every X post over 280 was refused here, though the account could publish it.
    @Test func aConnectionsOwnTextLimitChecksItsPosts() async throws {
        let t = try await connected([("con_x", "x")])
        func connect(_ id: String, _ platform: String, _ limit: String) async -> JSON {
            await t.command(
                "social.connect",
                #"{"connectionId":"\#(id)","platform":"\#(platform)","accountId":"acct_\#(id)","#
                    + #""credentialRef":"vault://social/\#(id)","expiresAt":"2027-01-01T00:00:00Z","#
                    + #""textLimit":\#(limit)}"#
            )
        }
        #expect(await connect("con_xp", "x", "25000").status == 201)
        #expect(await t.query("connection.get", #"{"connectionId":"con_xp"}"#).data?["textLimit"] == .number(25_000))
        #expect(await t.query("connection.get", #"{"connectionId":"con_x"}"#).data?["textLimit"] == nil)
        #expect(await connect("con_m", "mastodon", "5000").status == 201)
        let long = String(repeating: "a", count: 1_000)
        #expect(await post(t, "pst_1", text: long, on: ["con_xp", "con_m"]).status == 201)
        let both = await post(t, "pst_2", text: long, on: ["con_x", "con_xp"])
        #expect(
            both["error"]?["details"]?.arrayValue?.compactMap { $0["message"]?.stringValue } == [
                "x allows 280 characters as X weighs them (CJK and emoji 2, a link 23); this text has 1000"
            ], "only the account without Premium refuses it")
        let over = await t.command(
            "post.update", #"{"postId":"pst_1","text":"\#(String(repeating: "b", count: 5_001))"}"#)
        #expect(
            over["error"]?["details"]?.arrayValue?.compactMap { $0["message"]?.stringValue } == [
                "mastodon allows 5000 characters; this text has 5001"
            ])
        // Each platform's own range; a platform whose accounts all have one limit takes none.
        for (platform, limit) in [("x", "25001"), ("x", "279"), ("linkedin", "3000")] {
            let refused = await connect("con_\(platform)\(limit)", platform, limit)
            #expect(refused.code == "VALIDATION_ERROR", "\(platform) \(limit)")
            #expect(refused["error"]?["pointer"]?.stringValue == "/payload/textLimit")
        }
        #expect(await connect("con_bad", "x", "\"25000\"").code == "INVALID_FORMAT")
        #expect(await connect("con_bad", "x", "0").code == "INVALID_FORMAT")
    }

    /// An account that takes X Premium after it was connected keeps its connection (and the posts
    /// that name it): `social.refresh` sets its own text limit, and `null` returns it to the
    /// platform's. The same limit again, with the same expiry, changes nothing.
    @Test func aRefreshChangesAnAccountsOwnTextLimit() async throws {
        let t = try await connected([("con_x", "x"), ("con_l", "linkedin")])
        func refresh(_ id: String, _ limit: String) async -> JSON {
            await t.command(
                "social.refresh",
                #"{"connectionId":"\#(id)","expiresAt":"2027-01-01T00:00:00Z","textLimit":\#(limit)}"#)
        }
        func limit() async -> JSON? { await t.query("connection.get", #"{"connectionId":"con_x"}"#).data?["textLimit"] }
        let long = String(repeating: "a", count: 1_000)
        #expect(await post(t, "pst_1", text: long).code == "VALIDATION_ERROR")
        #expect(await refresh("con_x", "25000").status == 201)
        #expect(await limit() == .number(25_000))
        #expect(await post(t, "pst_1", text: long).status == 201)
        let same = await refresh("con_x", "25000")
        #expect(same.status == 200 && same.data?["changed"] == .bool(false))
        #expect(await refresh("con_x", "null").status == 201)
        #expect(await limit() == nil)
        #expect(
            await t.command("post.update", #"{"postId":"pst_1","text":"\#(long)b"}"#).code == "VALIDATION_ERROR",
            "the platform's 280 again")
        let stored = try t.engine.eventStore.readStream("acme:con_x").map(\.type)
        #expect(stored == ["social.connected", "social.refreshed", "social.refreshed"])
        let refused = await refresh("con_l", "3000")
        #expect(refused.code == "VALIDATION_ERROR" && refused["error"]?["pointer"]?.stringValue == "/payload/textLimit")
        #expect(await refresh("con_x", "25001").code == "VALIDATION_ERROR")
        #expect(await refresh("con_x", "\"big\"").code == "INVALID_FORMAT")
    }

    /// A post is checked again when it is published, by its targets' rules as they are then: one
    /// written for a Premium account whose limit went back to 280 fails that target as content the
    /// platform would refuse, without a call. Before, it was sent, and X refused it.
    @Test func aPostThatNoLongerFitsItsTargetFailsWithoutACall() async throws {
        let t = try await connected([("con_x", "x"), ("con_l", "linkedin")])
        let expiry = #""expiresAt":"2027-01-01T00:00:00Z""#
        let premium = #"{"connectionId":"con_x",\#(expiry),"textLimit":25000}"#
        #expect(await t.command("social.refresh", premium).status == 201)
        let long = String(repeating: "a", count: 1_000)
        #expect(await post(t, "pst_1", text: long, on: ["con_x", "con_l"]).status == 201)
        let plain = #"{"connectionId":"con_x",\#(expiry),"textLimit":null}"#
        #expect(await t.command("social.refresh", plain).status == 201)
        let published = await t.command("post.publish", #"{"postId":"pst_1"}"#)
        #expect(published.code == "CONTENT_REJECTED", "\(published)")
        let message = "x allows 280 characters as X weighs them (CJK and emoji 2, a link 23); this text has 1000"
        #expect(published["error"]?["message"]?.stringValue == "con_x: \(message)")
        #expect(t.publisher.requests.map(\.connectionId) == ["con_l"], "only LinkedIn was called")
        let targets = await get(t, "pst_1")?["targets"]?.arrayValue ?? []
        #expect(targets.compactMap { $0["status"]?.stringValue } == ["failed", "published"])
    }

    /// A post of a campaign that was called off is not sent. Creating one for a cancelled or
    /// archived campaign, and scheduling or publishing one whose campaign was cancelled, archived
    /// or deleted, is `RESOURCE_CONFLICT` with the campaign's state; a due scheduled post is
    /// cancelled by the tick, which says why; a target waiting for a retry fails at it without a
    /// call. A completed campaign's posts still go out. Before, every one of them was sent.
    @Test func aPostOfACampaignCalledOffIsNotSent() async throws {
        let t = try await connected()
        let segment = #"{"segmentId":"seg_1","name":"All","rules":{"all":[{"field":"email","operator":"exists"}]}}"#
        try #require(await t.command("segment.create", segment).status == 201)
        func campaign(_ id: String, _ moves: [String] = []) async throws {
            let create =
                #"{"campaignId":"\#(id)","name":"Campaign \#(id)","channel":"social","segmentId":"seg_1","#
                + #""content":{"body":"Hello"}}"#
            try #require(await t.command("campaign.create", create).status == 201)
            for move in moves {
                let payload =
                    move == "schedule"
                    ? #"{"campaignId":"\#(id)","sendAt":"\#(Timestamp.format(testStart + 3_600))"}"#
                    : #"{"campaignId":"\#(id)"}"#
                try #require(await t.command("campaign.\(move)", payload).status == 201, "\(move) \(id)")
            }
        }
        func linkedPost(_ id: String, _ campaignId: String) async -> JSON {
            await t.command(
                "post.create",
                #"{"postId":"\#(id)","connectionIds":["con_x"],"text":"Hello","campaignId":"\#(campaignId)"}"#)
        }
        let publishAt = Timestamp.format(testStart + 60)
        func schedule(_ id: String) async -> JSON {
            await t.command("post.schedule", #"{"postId":"\#(id)","publishAt":"\#(publishAt)"}"#)
        }

        // Created for a campaign called off or put away: refused, naming the campaign's state.
        try await campaign("cmp_off", ["schedule", "cancel"])
        let refused = await linkedPost("pst_off", "cmp_off")
        #expect(refused.code == "RESOURCE_CONFLICT" && refused.status == 409, "\(refused)")
        #expect(refused["error"]?["currentState"]?.stringValue == "cancelled")
        #expect(refused["error"]?["pointer"]?.stringValue == "/payload/campaignId")
        #expect(
            refused["error"]?["message"]?.stringValue
                == "Cannot create a post for a cancelled campaign; allowed from: draft, scheduled, active, paused, "
                + "completed")

        // Scheduled while its campaign went on, then the campaign cancelled: the tick cancels it.
        try await campaign("cmp_a", ["schedule"])
        #expect(await linkedPost("pst_a", "cmp_a").status == 201)
        #expect(await schedule("pst_a").status == 201)
        // A draft post whose draft campaign is deleted, and one whose campaign is archived.
        try await campaign("cmp_d")
        #expect(await linkedPost("pst_d", "cmp_d").status == 201)
        try await campaign("cmp_r")
        #expect(await linkedPost("pst_r", "cmp_r").status == 201)
        // A completed campaign's post, scheduled as a follow-up.
        try await campaign("cmp_done", ["schedule", "activate"])
        #expect(await linkedPost("pst_done", "cmp_done").status == 201)
        #expect(await schedule("pst_done").status == 201)
        #expect(await t.command("campaign.complete", #"{"campaignId":"cmp_done"}"#).status == 201)

        #expect(await t.command("campaign.cancel", #"{"campaignId":"cmp_a"}"#).status == 201)
        #expect(await t.command("campaign.delete", #"{"campaignId":"cmp_d"}"#).status == 201)
        #expect(await t.command("campaign.archive", #"{"campaignId":"cmp_r"}"#).status == 201)
        for (post, state) in [("pst_d", "deleted"), ("pst_r", "archived")] {
            let published = await t.command("post.publish", #"{"postId":"\#(post)"}"#)
            #expect(published.code == "RESOURCE_CONFLICT", "\(published)")
            #expect(published["error"]?["currentState"]?.stringValue == state)
            #expect(published["error"]?["pointer"]?.stringValue == "/payload/postId")
            let scheduled = await schedule(post)
            #expect(
                scheduled["error"]?["message"]?.stringValue
                    == "Cannot schedule a post of \(state.withArticle) campaign; allowed from: draft, scheduled, "
                    + "active, paused, completed")
            #expect(await get(t, post)?["status"]?.stringValue == "draft")
        }

        let report = try await tick(t, testStart + 60)
        let items = Dictionary(report.items.filter { $0.kind == "post" }.map { ($0.id, $0) }) { first, _ in first }
        #expect(items["pst_a"]?.status == "cancelled" && items["pst_a"]?.error?.code == .resourceConflict)
        #expect(items["pst_a"]?.error?.currentState == "cancelled")
        #expect(items["pst_a"]?.error?.pointer == "/payload/postId", "post.publish's pointer, as README says")
        #expect(items["pst_done"]?.status == "published" && items["pst_done"]?.error == nil)
        #expect(t.publisher.requests.map(\.postId) == ["pst_done"], "only the completed campaign's post was sent")
        let types = try t.engine.eventStore.readStream("acme:pst_a").map(\.type)
        #expect(types == ["post.created", "post.scheduled", "post.cancelled"])

        // Publishing, its target waiting for a retry, when the campaign is cancelled: the retry
        // fails the target without a call.
        try await campaign("cmp_b", ["schedule"])
        #expect(await linkedPost("pst_b", "cmp_b").status == 201)
        t.publisher.enqueue([.rateLimited(retryAfter: 120)], forAccount: "acct_con_x")
        #expect(await t.command("post.publish", #"{"postId":"pst_b"}"#).code == "RATE_LIMIT_EXCEEDED")
        #expect(await t.command("campaign.cancel", #"{"campaignId":"cmp_b"}"#).status == 201)
        let retry = try await tick(t, testStart + 300)
        #expect(retry.items.filter { $0.kind == "post" }.map(\.id) == ["pst_b"], "the cancelled post is not due again")
        #expect(retry.items.first { $0.id == "pst_b" }?.status == "failed")
        #expect(t.publisher.requests.map(\.postId) == ["pst_done", "pst_b"], "one call, before the cancel")
        let target = await get(t, "pst_b")?["targets"]?.arrayValue?.first
        #expect(target?["status"]?.stringValue == "failed")
        #expect(target?["code"]?.stringValue == "RESOURCE_CONFLICT", "\(String(describing: target))")
        #expect(target?["message"]?.stringValue?.hasPrefix("Cannot publish a post of a cancelled campaign") == true)
    }

    // MARK: The post state table

    static let postStates = ["draft", "scheduled", "publishing", "published", "failed", "cancelled"]
    static let postCommands = ["update", "schedule", "unschedule", "cancel", "publish"]
    /// `→state` for a success, else the error code (written out from SPEC.md §6; `unschedule`, beyond
    /// it, takes a scheduled post back to a draft).
    static let postExpected: [String: [String]] = [
        "draft": ["→draft", "→scheduled", "CONFLICT", "→cancelled", "→published"],
        "scheduled": ["→scheduled", "→scheduled", "→draft", "→cancelled", "→published"],
        "publishing": ["CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT"],
        "published": ["CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT"],
        "failed": ["CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT"],
        "cancelled": ["CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT"],
    ]

    @Test func everyPostStateAndCommandPairGivesTheSpecifiedOutcome() async throws {
        let t = try await connected()
        for state in Self.postStates {
            for (column, command) in Self.postCommands.enumerated() {
                let id = "pst_\(state)_\(command)"
                let text = state == "publishing" ? "Wobbly #flaky" : state == "failed" ? "Nope #reject" : "Fine"
                try #require(await post(t, id, text: text).status == 201)
                switch state {
                case "scheduled":
                    _ = await t.command("post.schedule", #"{"postId":"\#(id)","publishAt":"2026-12-01T00:00:00Z"}"#)
                case "publishing", "published", "failed": _ = await t.command("post.publish", #"{"postId":"\#(id)"}"#)
                case "cancelled": _ = await t.command("post.cancel", #"{"postId":"\#(id)"}"#)
                default: break
                }
                try #require(await get(t, id)?["status"]?.stringValue == state, "setting up \(state)")
                let payload: String
                switch command {
                case "update": payload = #"{"postId":"\#(id)","text":"Edited"}"#
                case "schedule": payload = #"{"postId":"\#(id)","publishAt":"2026-12-02T00:00:00Z"}"#
                default: payload = #"{"postId":"\#(id)"}"#
                }
                let response = await t.command("post.\(command)", payload)
                let expected = Self.postExpected[state]![column]
                if expected.hasPrefix("→") {
                    #expect(response.status == 201, "\(state) × \(command): \(response)")
                    #expect(
                        await get(t, id)?["status"]?.stringValue == String(expected.dropFirst()),
                        "\(state) × \(command)")
                } else {
                    #expect(
                        response.code == "RESOURCE_CONFLICT" && response.status == 409,
                        "\(state) × \(command): \(response)")
                    #expect(response["error"]?["currentState"]?.stringValue == state)
                    let allowed = command == "unschedule" ? ["scheduled"] : ["draft", "scheduled"]
                    #expect(response["error"]?["allowedStates"] == .array(allowed.map(JSON.string)))
                }
            }
        }
        #expect(await t.command("post.publish", #"{"postId":"pst_missing"}"#).code == "RESOURCE_NOT_FOUND")
    }
}
