import Foundation
import Synchronization

/// One async lock per key: commands on the same aggregate in this process take turns instead of
/// racing to the append and retrying, while commands on different aggregates run (and are
/// group-committed) together. Across processes the expected-version check still decides.
final class KeyedLock: Sendable {
    /// The keys held, each with the continuations waiting for it in order.
    private let queues = Mutex<[String: [CheckedContinuation<Void, Never>]]>([:])

    /// Waits until `key` is free, then holds it. A free key is taken without suspending the task
    /// (a suspension costs a hop through the executor on every command).
    func acquire(_ key: String) async {
        let taken: Bool = queues.withLock { queues in
            guard queues[key] == nil else { return false }
            queues[key] = []
            return true
        }
        if taken { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let free = queues.withLock { queues in
                guard queues[key] == nil else {
                    queues[key]!.append(continuation)
                    return false
                }
                queues[key] = []
                return true
            }
            if free { continuation.resume() }
        }
    }

    /// Hands `key` to the next waiter, or frees it.
    func release(_ key: String) {
        let next = queues.withLock { queues -> CheckedContinuation<Void, Never>? in
            guard var waiting = queues[key], !waiting.isEmpty else {
                queues[key] = nil
                return nil
            }
            let next = waiting.removeFirst()
            queues[key] = waiting
            return next
        }
        next?.resume()
    }
}
