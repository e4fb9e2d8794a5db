import CampaignProjections
import EventStore
import Synchronization

/// When an engine brings its catch-up projections (`segments`, `audit`) to the head on its own,
/// rather than only when a query reads them or the engine opens.
public struct CatchUpSchedule: Sendable {
    /// How long appends must pause before the projections catch up: a burst of commands is applied
    /// in a few batches after it, not one batch a command.
    public var quiet: Duration
    /// How many events the projections may fall behind while appends never pause for ``quiet``:
    /// past it they catch up anyway, in writer jobs that take turns with the appends.
    public var maximumLag: UInt64
    /// How long ``CampaignEngine/close()`` spends catching up what is left, so a process that ends
    /// leaves its read models at the head (zero: it leaves them where they are; the next engine to
    /// open the directory catches up).
    public var atClose: Duration

    /// A schedule (defaults: after 50 ms without appends, or 10,000 events behind; up to 1 s at
    /// close).
    public init(quiet: Duration = .milliseconds(50), maximumLag: UInt64 = 10_000, atClose: Duration = .seconds(1)) {
        self.quiet = max(quiet, .milliseconds(1))
        self.maximumLag = max(1, maximumLag)
        self.atClose = max(atClose, .zero)
    }
}

/// The task that keeps an engine's catch-up projections near the head (see ``CatchUpSchedule``).
///
/// It sleeps until this engine's store commits appends, then looks every 50 ms (or every
/// ``CatchUpSchedule/quiet``, if shorter) for a pause of ``CatchUpSchedule/quiet`` since the last
/// append or a lag past ``CatchUpSchedule/maximumLag``, and then runs
/// ``ProjectionRunner/catchUpOnWriter(_:batchSize:)``, whose batches are jobs of the writer thread
/// that end early when appends wait. Appends made by
/// another process move the head without waking it; it notices them within a minute, and that
/// process's own engine catches up after them.
final class CatchUpKeeper: Sendable {
    private let task: Mutex<Task<Void, Never>?> = Mutex(nil)

    init(store: EventStore, projections: ProjectionRunner, schedule: CatchUpSchedule) {
        // The store and the runner are held only while they are used, never across a wait: an
        // engine dropped without `close()` still closes its store (the store's close wakes the
        // signal, and the task ends).
        let signal = store.appended
        let loop = Task.detached { [weak store, weak projections] in
            let tick = min(schedule.quiet, .milliseconds(50))
            func head() -> UInt64? { try? store?.head().position }
            // Where the projections stand, not the head: the task may start after appends the engine
            // made since it opened, and counting those as caught up would leave them until the next.
            var caught = (try? projections?.status().filter { $0.mode == .catchUp }.map(\.checkpoint).min()) ?? 0
            while !Task.isCancelled {
                let seen = signal.generation
                guard let now = head() else { return }
                if now <= caught {
                    await signal.wait(after: seen, atMost: .seconds(60))
                    continue
                }
                // Behind: look every `tick` for a pause of `quiet` since the last append, or the
                // lag limit, whichever comes first.
                var generation = signal.generation
                var lastAppend = ContinuousClock.now
                var reached = now
                while true {
                    do { try await Task.sleep(for: tick) } catch { return }
                    if signal.generation != generation {
                        generation = signal.generation
                        lastAppend = .now
                    }
                    guard let position = head() else { return }
                    reached = position
                    if reached - caught >= schedule.maximumLag || ContinuousClock.now - lastAppend >= schedule.quiet {
                        break
                    }
                }
                guard let runner = projections else { return }
                do {
                    try await runner.catchUpOnWriter()
                } catch EventStoreError.closed {
                    return
                } catch {
                    // A projection that fails here fails its queries too, which report it; this
                    // task tries again after the next appends rather than in a loop.
                }
                caught = reached
            }
        }
        task.withLock { $0 = loop }
    }

    /// Stops the task; a catch-up batch under way either commits or is dropped with its checkpoint.
    func stop() { task.withLock { $0?.cancel() } }
}
