import Foundation
import Synchronization

/// Where a new subscription starts reading.
public enum SubscriptionStart: Sendable, Equatable {
    /// After the consumer's stored checkpoint (from the first event when it has none): resuming.
    case checkpoint
    /// From position 1.
    case beginning
    /// From this position (the first event delivered is the one at it).
    case position(UInt64)
    /// After the current head: only events committed from now on.
    case head
}

/// A consumer and the last position it acknowledged.
public struct ConsumerCheckpoint: Sendable, Equatable {
    /// The consumer's name, as given to `subscribe(consumer:from:)` (stored under `consumer/NAME`).
    public var name: String
    /// The last position it acknowledged (0 when none).
    public var position: UInt64

    /// A consumer at a position.
    public init(name: String, position: UInt64) {
        self.name = name
        self.position = position
    }
}

extension EventStore {
    /// The prefix of consumer checkpoints in the `checkpoints` table.
    static let consumerPrefix = "consumer/"

    /// Subscribes `consumer` to the log: committed events in position order, gap-free, from
    /// `start`. Delivery is at least once: events after the consumer's last ``EventSubscription/ack(_:)``
    /// are delivered again after a restart. A commit in this process wakes the subscription at once;
    /// an append by another process is seen within ``EventSubscription/pollInterval``.
    /// - Parameter consumer: 1–100 characters of `A–Z a–z 0–9 . _ -`.
    /// - Throws: ``EventStoreError/invalidKey(_:)`` for a bad consumer name.
    public func subscribe(consumer: String, from start: SubscriptionStart = .checkpoint) throws -> EventSubscription {
        try EventStore.checkConsumerName(consumer)
        let first: UInt64 =
            switch start {
            case .checkpoint: try read { try $0.checkpoint(EventStore.consumerPrefix + consumer) } + 1
            case .beginning: 1
            case let .position(position): max(1, position)
            case .head: try head().position + 1
            }
        return EventSubscription(store: self, consumer: consumer, first: first)
    }

    /// Every consumer that has acknowledged something, with its checkpoint, by name.
    public func consumers() throws -> [ConsumerCheckpoint] {
        try read { txn in
            var found = [ConsumerCheckpoint]()
            let prefix = Array(EventStore.consumerPrefix.utf8)
            try txn.forEachCheckpoint(from: prefix) { name, position in
                guard name.starts(with: prefix) else { return false }
                found.append(
                    ConsumerCheckpoint(
                        name: String(decoding: name.dropFirst(prefix.count), as: UTF8.self), position: position))
                return true
            }
            return found
        }
    }

    /// Forgets a consumer that is retired: its checkpoint is deleted (a job of the writer thread), so
    /// it is no longer listed or counted as lagging; a later `subscribe` under the name with
    /// `.checkpoint` starts from the beginning. Returns the position it had acknowledged, or nil
    /// when no consumer of that name had stored one.
    /// - Throws: ``EventStoreError/invalidKey(_:)`` for a bad consumer name.
    public func removeConsumer(_ consumer: String) async throws -> UInt64? {
        try EventStore.checkConsumerName(consumer)
        let name = EventStore.consumerPrefix + consumer
        return try await perform { txn in
            let position = try txn.checkpoint(name)
            return try txn.removeCheckpoint(name) ? position : nil
        }
    }

    /// What is wrong with a consumer name, or nil when it is one: 1–100 characters of
    /// `A–Z a–z 0–9 . _ -` (a tool checks its input with this before it opens a store).
    public static func consumerNameProblem(_ name: String) -> String? {
        let allowed = name.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                true
            default: false
            }
        }
        guard (1...100).contains(name.utf8.count), allowed else {
            return "a consumer name is 1 to 100 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
        }
        return nil
    }

    static func checkConsumerName(_ name: String) throws {
        if let problem = consumerNameProblem(name) { throw EventStoreError.invalidKey(problem) }
    }
}

/// A consumer's view of the log: an `AsyncSequence` of committed events in position order that
/// waits for new commits and ends only when its task is cancelled or the store closes.
/// Acknowledge what has been handled with ``ack(_:)``; the checkpoint is stored in LMDB under the
/// consumer's name, so a new subscription `from: .checkpoint` resumes after it.
public final class EventSubscription: AsyncSequence, Sendable {
    /// The events, one at a time.
    public typealias Element = RecordedEvent

    /// How often a waiting subscription checks the head for appends made by another process
    /// (appends of this process wake it at once).
    public static let pollInterval: Duration = .milliseconds(250)

    /// The consumer's name.
    public let consumer: String
    /// The position of the first event this subscription delivers.
    public let firstPosition: UInt64
    private let store: EventStore

    init(store: EventStore, consumer: String, first: UInt64) {
        self.store = store
        self.consumer = consumer
        firstPosition = first
    }

    /// Stores `position` as the consumer's checkpoint (a job of the writer thread). A checkpoint
    /// never moves backwards: acknowledging an earlier position than the stored one changes nothing.
    /// - Throws: ``EventStoreError/invalidKey(_:)`` for a position past the head.
    public func ack(_ position: UInt64) async throws {
        let name = EventStore.consumerPrefix + consumer
        try await store.perform { txn in
            guard position <= (try txn.headPosition()) else {
                throw EventStoreError.invalidKey("position \(position) is past the head of the log")
            }
            if position > (try txn.checkpoint(name)) { try txn.setCheckpoint(name, to: position) }
        }
    }

    /// The consumer's stored checkpoint.
    public var checkpoint: UInt64 {
        get throws { try store.read { try $0.checkpoint(EventStore.consumerPrefix + consumer) } }
    }

    /// Starts reading at ``firstPosition``.
    public func makeAsyncIterator() -> Iterator { Iterator(store: store, next: firstPosition) }

    /// Reads pages of the log, and waits for the next commit when it has read them all.
    public struct Iterator: AsyncIteratorProtocol {
        let store: EventStore
        var next: UInt64
        var page: [RecordedEvent] = []
        var index = 0

        /// The next committed event, waiting for one if need be; nil once the task is cancelled
        /// or the store is closed.
        public mutating func next() async throws -> RecordedEvent? {
            while true {
                if index < page.count {
                    defer { index += 1 }
                    return page[index]
                }
                if Task.isCancelled { return nil }
                let seen = store.appended.generation
                let from = next
                do {
                    page = try store.read { try $0.events(from: from, limit: 512) }
                } catch EventStoreError.closed {
                    return nil
                }
                index = 0
                if let last = page.last {
                    next = last.position + 1
                    continue
                }
                if store.isClosed { return nil }
                await store.appended.wait(after: seen, atMost: EventSubscription.pollInterval)
            }
        }
    }
}

/// Wakes subscriptions, and anything else that follows a store's appends, when its writer commits
/// appends: a generation number, bumped after each such commit (a writer job's commit does not
/// move it) and when the store closes, and the tasks waiting for it to move. Holding it does not
/// hold the store open.
public final class AppendSignal: Sendable {
    /// The generation, the tasks waiting for it to move (by waiter number), and the waiters woken
    /// (by their timer or cancellation) before they began to wait.
    private struct State {
        var count: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var early: Set<UInt64> = []
        var nextWaiter: UInt64 = 0
    }
    private let state = Mutex(State())

    /// Bumped after every commit of appends, and when the store closes.
    public var generation: UInt64 { state.withLock { $0.count } }

    /// Wakes every waiter (after a commit, or when the store closes).
    func notify() {
        let woken = state.withLock { state in
            state.count += 1
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in woken { waiter.resume() }
    }

    /// Returns once the generation differs from `seen`, after `limit` at the latest, or on cancellation.
    public func wait(after seen: UInt64, atMost limit: Duration) async {
        let id = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        let timer = Task { [weak self] in
            try? await Task.sleep(for: limit)
            self?.wake(id)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                // Registered, or resumed at once: never both, never neither.
                let cancelled = Task.isCancelled
                let now = state.withLock { state in
                    if state.count != seen || cancelled || state.early.remove(id) != nil { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            wake(id)
        }
        timer.cancel()
        // A wake that came after the wait ended leaves nothing behind.
        state.withLock { _ = $0.early.remove(id) }
    }

    private func wake(_ id: UInt64) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiters.removeValue(forKey: id) else {
                state.early.insert(id)
                return nil
            }
            return waiter
        }
        waiter?.resume()
    }
}
