import Foundation

/// Where the engine gets the time. Inject a ``ManualClock`` for tests and for `campaign apply --now`.
public protocol EngineClock: Sendable {
    /// The current time.
    func now() -> Date
}

/// The system's wall clock.
public struct SystemClock: EngineClock {
    /// The system's wall clock.
    public init() {}

    /// The wall clock's time now (`Date()`).
    public func now() -> Date { Date() }
}

/// A clock that stands still until moved; `system.tick` moves it.
///
/// Invariant that makes `@unchecked Sendable` safe: `current` is read and written only under `lock`.
public final class ManualClock: EngineClock, @unchecked Sendable {
    private let lock = NSLock()
    private var current: Date

    /// Creates a clock at `start`.
    public init(_ start: Date) { current = start }

    /// The time it was last set or moved to.
    public func now() -> Date { lock.withLock { current } }

    /// Sets the time (it may move backwards only if the caller wants it to; the engine's tick
    /// uses ``moveForward(to:)``).
    public func set(_ date: Date) { lock.withLock { current = date } }

    /// Moves the time to `date` unless that is earlier than now; returns the time before.
    /// - Returns: nil, with the clock unchanged, when `date` is earlier.
    public func moveForward(to date: Date) -> Date? {
        lock.withLock {
            guard date >= current else { return nil }
            defer { current = date }
            return current
        }
    }

    /// Moves the time forward by `seconds`.
    public func advance(by seconds: TimeInterval) { lock.withLock { current += seconds } }
}
