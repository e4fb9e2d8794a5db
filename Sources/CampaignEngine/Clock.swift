import Foundation
import Synchronization

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
public final class ManualClock: EngineClock, Sendable {
    private let current: Mutex<Date>

    /// Creates a clock at `start`.
    public init(_ start: Date) { current = Mutex(start) }

    /// The time it was last set or moved to.
    public func now() -> Date { current.withLock { $0 } }

    /// Sets the time (it may move backwards only if the caller wants it to; the engine's tick
    /// uses ``moveForward(to:)``).
    public func set(_ date: Date) { current.withLock { $0 = date } }

    /// Moves the time to `date` unless that is earlier than now; returns the time before.
    /// - Returns: nil, with the clock unchanged, when `date` is earlier.
    public func moveForward(to date: Date) -> Date? {
        current.withLock { current in
            guard date >= current else { return nil }
            defer { current = date }
            return current
        }
    }

    /// Moves the time forward by `seconds`.
    public func advance(by seconds: TimeInterval) { current.withLock { $0 += seconds } }
}
