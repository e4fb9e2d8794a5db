import Foundation

/// One async lock per key: commands on the same aggregate in this process take turns instead of
/// racing to the append and retrying, while commands on different aggregates run (and are
/// group-committed) together. Across processes the expected-version check still decides.
///
/// Invariant that makes `@unchecked Sendable` safe: `queues` is touched only under `lock`; a key
/// is present while held, with the continuations waiting for it in order.
final class KeyedLock: @unchecked Sendable {
    private let lock = NSLock()
    private var queues: [String: [CheckedContinuation<Void, Never>]] = [:]

    /// Waits until `key` is free, then holds it. A free key is taken without suspending the task
    /// (a suspension costs a hop through the executor on every command).
    func acquire(_ key: String) async {
        let taken: Bool = lock.withLock {
            guard queues[key] == nil else { return false }
            queues[key] = []
            return true
        }
        if taken { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            lock.lock()
            if queues[key] == nil {
                queues[key] = []
                lock.unlock()
                continuation.resume()
            } else {
                queues[key]!.append(continuation)
                lock.unlock()
            }
        }
    }

    /// Hands `key` to the next waiter, or frees it.
    func release(_ key: String) {
        lock.lock()
        guard var waiting = queues[key], !waiting.isEmpty else {
            queues[key] = nil
            lock.unlock()
            return
        }
        let next = waiting.removeFirst()
        queues[key] = waiting
        lock.unlock()
        next.resume()
    }
}
