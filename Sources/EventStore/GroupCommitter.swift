import Foundation
import Synchronization

/// The single writer of a store: concurrent append requests queue here and a dedicated thread
/// commits as many as are waiting in one LMDB write transaction (one fsync), then answers each.
///
/// A dedicated thread, not a task, because the commit blocks on the disk flush and must begin and
/// end on one thread (LMDB's writer mutex belongs to the thread that took it).
///
/// After a transaction of one or two requests (a client sending one command after another) the
/// writer watches for the next request for a moment before it sleeps, so that request finds it
/// awake: waking a sleeping thread costs a cross-core interrupt, 15–35 µs on a virtual machine.
///
/// Invariant that makes `@unchecked Sendable` safe: `pending`, `pendingWrites`, `jobsWent`,
/// `stopped`, `inFlight` and the counters are read and written only with `condition` locked;
/// `submissions` is atomic.
final class GroupCommitter: @unchecked Sendable {
    struct Job {
        let request: AppendRequest
        let complete: @Sendable (Result<AppendOutcome, Error>) -> Void
    }

    private let condition = NSCondition()
    private var pending: [Job] = []
    /// Other writes (snapshots, projection batches), each run in a transaction of its own on the
    /// writer thread, taking turns with batches of appends.
    private var pendingWrites: [@Sendable () -> Void] = []
    /// Whether the writer's last turn ran jobs (the next turn goes to appends if any wait).
    private var jobsWent = false
    private var stopped = false
    private var finished = false
    private var inFlight = 0
    private var transactions: UInt64 = 0
    private var requests: UInt64 = 0
    /// Watches that ran to their end with nothing submitted (the writer then sleeps).
    private var watchesRunOut: UInt64 = 0
    /// How long each batch of appends took, from its transaction's begin to its commit's return
    /// (the flush included), and each other write job.
    private var durations = (appends: DurationHistogram(), jobs: DurationHistogram())
    /// When the writer began the batch of appends or the job it is on, nil while it waits for work:
    /// a flush that hangs never completes a histogram's sample, but shows here.
    private var busySince: ContinuousClock.Instant?
    private let maximumBatchSize: Int
    /// How long the writer watches for a request after a small transaction (see ``watchForWork()``):
    /// zero when the writer may run on one core only.
    let watch: Duration
    /// Bumped by every submission and by ``stop()``: what the watching writer reads, without the lock.
    private let submissions = Atomic<UInt64>(0)
    private let commit: ([Job]) -> [Result<AppendOutcome, Error>]
    private let commitAlone: (Job) -> Result<AppendOutcome, Error>
    /// The writer thread, once it runs (set once, before any job; read under `condition`).
    private var writer: pthread_t?

    /// - Parameters:
    ///   - commit: commits a batch in one transaction, or throws if the transaction as a whole failed.
    ///   - commitAlone: commits one request in a transaction of its own.
    init(
        maximumBatchSize: Int,
        watch: Duration = .zero,
        commit: @escaping ([Job]) throws -> [Result<AppendOutcome, Error>],
        commitAlone: @escaping (Job) -> Result<AppendOutcome, Error>
    ) {
        self.maximumBatchSize = max(1, maximumBatchSize)
        // On one core a watching writer would hold the core the next request needs to be made.
        self.watch = Self.usableCores > 1 ? watch : .zero
        self.commitAlone = commitAlone
        self.commit = { jobs in
            do { return try commit(jobs) } catch {
                // A failure after some writes (an inline projection threw, or the disk failed)
                // poisons the whole transaction. Retry each request alone so that only the one at
                // fault fails; a storage failure simply fails each of them again.
                if jobs.count == 1 { return [.failure(error)] }
                return jobs.map(commitAlone)
            }
        }
        let thread = Thread { [unowned self] in self.run() }
        thread.name = "EventStore.GroupCommitter"
        thread.start()
    }

    func submit(_ job: Job) {
        condition.lock()
        defer { condition.unlock() }
        guard !stopped else {
            job.complete(.failure(EventStoreError.closed))
            return
        }
        pending.append(job)
        submissions.add(1, ordering: .releasing)
        condition.signal()
    }

    /// Queues `work` to run on the writer thread; false, without running it, once stopped.
    func submitWrite(_ work: @escaping @Sendable () -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !stopped else { return false }
        pendingWrites.append(work)
        submissions.add(1, ordering: .releasing)
        condition.signal()
        return true
    }

    /// Stops taking requests, commits what is queued, and waits for the thread to end. On the
    /// writer thread itself (a store whose last reference a finished job held, released there) it
    /// commits what is queued on this thread and returns, and the thread ends when its turn does:
    /// waiting for itself would never end.
    func stop() {
        if isWriterThread {
            stopOnWriter()
            return
        }
        condition.lock()
        stopped = true
        submissions.add(1, ordering: .releasing)
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }

    /// ``stop()`` on the writer thread: marks the committer stopped and runs what is queued now.
    private func stopOnWriter() {
        let (jobs, writes) = condition.withLock {
            stopped = true
            submissions.add(1, ordering: .releasing)
            defer {
                pending.removeAll()
                pendingWrites.removeAll()
            }
            return (pending, pendingWrites)
        }
        for write in writes { write() }
        var rest = jobs[...]
        while !rest.isEmpty {
            let batch = Array(rest.prefix(maximumBatchSize))
            rest = rest.dropFirst(batch.count)
            for (job, result) in zip(batch, commit(batch)) { job.complete(result) }
        }
    }

    /// Requests waiting for the writer, and requests in the transaction being committed.
    var load: (queued: Int, inFlight: Int) {
        condition.withLock { (pending.count, inFlight) }
    }

    /// Write transactions committed (or attempted) by the writer, and requests answered.
    var counters: (transactions: UInt64, requests: UInt64, watchesRunOut: UInt64) {
        condition.withLock { (transactions, requests, watchesRunOut) }
    }

    /// How long the batches of appends and the other write jobs have taken, and how long the writer
    /// has been on the one it is on now (zero while it waits for work).
    var timings: (appends: DurationHistogram, jobs: DurationHistogram, busy: Duration) {
        condition.withLock { (durations.appends, durations.jobs, busySince.map { .now - $0 } ?? .zero) }
    }

    /// Whether the caller is the writer thread (a job must not wait for another job).
    var isWriterThread: Bool {
        condition.withLock { writer.map { pthread_equal($0, pthread_self()) != 0 } ?? false }
    }

    /// Runs `work` on the writer thread between batches of appends and waits for its result,
    /// for callers that cannot await; on the writer thread itself it simply runs.
    func runOnWriter<T>(_ work: @escaping @Sendable () throws -> T) throws -> T {
        if isWriterThread { return try work() }
        let outcome = Outcome<T>()
        let queued = submitWrite { outcome.finish(Result { try work() }) }
        guard queued else { throw EventStoreError.closed }
        return try outcome.wait().get()
    }

    /// How many cores the writer thread may run on: ``EventStore/allowedCores`` of the thread
    /// creating it, whose affinity the writer inherits (Foundation counts the machine's cores).
    static var usableCores: Int {
        let cores = EventStore.allowedCores.count
        return cores > 0 ? cores : ProcessInfo.processInfo.activeProcessorCount
    }

    /// The CPUs the `Cpus_allowed` line of a `/proc/…/status` text allows, ascending (a hexadecimal
    /// mask in comma-separated words of 32 bits, the most significant first), or nil without such
    /// a line or with an empty mask.
    static func allowedCores(inStatus status: String) -> [Int]? {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed:") }) else {
            return nil
        }
        let digits = line.dropFirst("Cpus_allowed:".count).filter(\.isHexDigit).reversed()
        let cores = digits.enumerated().flatMap { place, digit in
            (0..<4).filter { (digit.hexDigitValue ?? 0) & (1 << $0) != 0 }.map { 4 * place + $0 }
        }
        return cores.isEmpty ? nil : cores
    }

    /// Waits, awake, up to ``watch`` for a submission, returning at once if one is queued.
    ///
    /// A submission that arrives before the check below is seen in the queue, one after it in the
    /// counter; either way the writer takes it without being woken.
    private func watchForWork() {
        let seen = submissions.load(ordering: .acquiring)
        let idle = condition.withLock { pending.isEmpty && pendingWrites.isEmpty && !stopped }
        guard idle else { return }
        let deadline = ContinuousClock.now.advanced(by: watch)
        while submissions.load(ordering: .acquiring) == seen {
            for _ in 0..<64 where submissions.load(ordering: .relaxed) != seen { return }
            if ContinuousClock.now >= deadline {
                condition.withLock { watchesRunOut += 1 }
                return
            }
        }
    }

    private func run() {
        condition.withLock { writer = pthread_self() }
        /// Requests in the last transaction: after one or two, the writer watches before sleeping.
        var lastBatch = 0
        while true {
            if (1...2).contains(lastBatch) && watch > .zero { watchForWork() }
            lastBatch = 0
            condition.lock()
            while pending.isEmpty && pendingWrites.isEmpty && !stopped { condition.wait() }
            if pending.isEmpty && pendingWrites.isEmpty && stopped {
                finished = true
                condition.broadcast()
                condition.unlock()
                return
            }
            // Writer jobs and append batches take turns when both wait, so a stream of jobs (a
            // rebuild's batches, each submitted as the last one ends) never holds appends back by
            // more than one job, and a stream of appends never starves the jobs.
            if !pendingWrites.isEmpty && (pending.isEmpty || !jobsWent) {
                let writes = pendingWrites
                pendingWrites.removeAll()
                jobsWent = true
                condition.unlock()
                for write in writes {
                    let started = ContinuousClock.now
                    condition.withLock { busySince = started }
                    write()
                    let took = ContinuousClock.now - started
                    condition.withLock {
                        durations.jobs.record(took)
                        busySince = nil
                    }
                }
                continue
            }
            jobsWent = false
            let batch = Array(pending.prefix(maximumBatchSize))
            pending.removeFirst(batch.count)
            inFlight = batch.count
            let started = ContinuousClock.now
            busySince = started
            condition.unlock()

            let results = commit(batch)
            let took = ContinuousClock.now - started
            lastBatch = batch.count

            condition.lock()
            inFlight = 0
            transactions += 1
            requests += UInt64(batch.count)
            durations.appends.record(took)
            busySince = nil
            condition.unlock()
            for (job, result) in zip(batch, results) { job.complete(result) }
        }
    }
}

/// A one-shot result handed from the writer thread to a caller blocked on it.
///
/// Invariant that makes `@unchecked Sendable` safe: `result` is written once, under `condition`,
/// and read only after that, under it.
final class Outcome<T>: @unchecked Sendable {
    private let condition = NSCondition()
    private var result: Result<T, Error>?

    func finish(_ value: Result<T, Error>) {
        condition.withLock {
            result = value
            condition.broadcast()
        }
    }

    func wait() -> Result<T, Error> {
        condition.withLock {
            while result == nil { condition.wait() }
            return result!
        }
    }
}
