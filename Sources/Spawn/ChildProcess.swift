import CSpawn
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A child process started with `posix_spawn` and reaped with `waitpid`, on threads of its own.
///
/// `Foundation.Process` watches its children through a libdispatch source, and on this toolchain
/// that source now and then crashes the parent (SIGSEGV in `_dispatch_event_loop_drain`): a test
/// run, or `campaign verify`'s guarded child, failed for no fault of its own. Here no dispatch
/// source is involved: one thread blocks in `waitid` for the child, one per collected stream
/// blocks in `read`, and one writes the bytes given for standard input. They are named after the
/// child's pid (`reap 4242`, `out 4242`, `err 4242`, `in 4242`) and end with it.
///
/// The child gets standard input, output and error as asked and no other descriptor of this
/// process. Its signal mask is empty and SIGPIPE has its default action, whatever this process set.
///
/// A child started `forwarding` signals gets each of them this process receives until it ends
/// (the handlers are installed before it starts and put back when it has ended), so a wrapper
/// that runs its work in a child stops with it on `kill`, as a shell's job does.
public final class ChildProcess: Sendable {
    // Sendable as checked: `pid` and `inputDescriptor` are constants, and everything that changes
    // is in `state`, a `Mutex`.

    /// What the child reads on standard input.
    public enum Input: Sendable {
        /// This process's standard input.
        case inherit
        /// `/dev/null`: end of file at once.
        case null
        /// These bytes, then end of file (written by a thread of their own, so any length is fine).
        case bytes([UInt8])
        /// A pipe the caller writes with ``write(_:)`` and ends with ``closeInput()``.
        case pipe
    }

    /// Where the child's standard output or standard error goes.
    public enum Output: Sendable {
        /// This process's own.
        case inherit
        /// `/dev/null`.
        case null
        /// Collected here as it comes: ``output`` and ``lines`` for standard output, ``errorOutput``
        /// for standard error.
        case collect
    }

    /// How a child ended.
    public enum Termination: Sendable, Equatable, CustomStringConvertible {
        /// It exited with this status.
        case exited(Int32)
        /// A signal with this number ended it.
        case signalled(Int32)

        /// The exit status, or the signal's number (what `Foundation.Process.terminationStatus` gives).
        public var status: Int32 {
            switch self {
            case let .exited(status), let .signalled(status): status
            }
        }

        /// "exit status N" or "signal N".
        public var description: String {
            switch self {
            case let .exited(status): "exit status \(status)"
            case let .signalled(signal): "signal \(signal)"
            }
        }
    }

    /// Thrown when the child could not be started.
    public struct SpawnError: Error, CustomStringConvertible {
        /// The program that did not start.
        public let executable: String
        /// The `errno` value `posix_spawn` or the call before it returned.
        public let code: Int32

        /// "cannot start PATH: REASON".
        public var description: String {
            let reason =
                switch code {
                case ECHILD:
                    "this process ignores SIGCHLD (SIG_IGN or SA_NOCLDWAIT), so the kernel would reap the child "
                        + "and its exit status would be lost"
                case EBUSY: "another child is passing this process's signals on already"
                default: String(cString: strerror(code))
                }
            return "cannot start \(executable): \(reason)"
        }
    }

    /// The child's process id.
    public let pid: pid_t

    private let state = Mutex(State())
    private let inputDescriptor: Int32?
    /// Whether this process's signals are passed on to the child until it ends.
    private let forwards: Bool

    private enum Waiter {
        case task(CheckedContinuation<Termination, Never>)
        case thread(DispatchSemaphore)
    }

    private struct State {
        var output = [UInt8]()
        var pending = [UInt8]()
        var lines = [String]()
        var errorOutput = [UInt8]()
        /// Set once `waitpid` reaped the child (so its pid may be reused: no signal is sent after).
        var reaped: Termination?
        /// Set once the child was reaped and every collected stream reached end of file.
        var termination: Termination?
        /// Who waits for the end: a task (``waitForExit()``) or a blocked thread (``waitUntilExit()``).
        var waiters = [Waiter]()
        var inputOpen = true
    }

    /// Starts `executable` (a path; no `PATH` search) with `arguments`.
    /// - Parameters:
    ///   - environment: the child's whole environment; this process's when nil.
    ///   - directory: where the child starts; this process's working directory when nil.
    ///   - inheritsSIGPIPE: the child keeps this process's SIGPIPE disposition (an ignored one stays
    ///     ignored across `exec`) instead of the default: for a child that stands in for this process.
    ///   - signals: signals this process passes on to the child until it ends (one child at a time
    ///     forwards; ``SpawnError`` with `EBUSY` while another does). A signal that comes after the
    ///     child ended gets this process's own handling back, so it is not lost.
    ///   - endsWithThisProcess: the kernel kills the child (SIGKILL) when this process ends, however it
    ///     ends, for a server this process starts and would otherwise leave running after a SIGKILL or a
    ///     crash. The child is started through util-linux's `setpriv --pdeathsig KILL`, which sets
    ///     `PR_SET_PDEATHSIG` and then runs `executable` in its place (same pid); where `setpriv` is not
    ///     installed the child is started as is. Not for a program that starts its server as a daemon
    ///     (it leaves the process that would be killed).
    /// - Throws: ``SpawnError``; with `ECHILD` when this process ignores SIGCHLD, since the child's
    ///   exit status could not be read.
    public init(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
        directory: String? = nil, input: Input = .null, output: Output = .inherit, error: Output = .inherit,
        inheritsSIGPIPE: Bool = false, forwarding signals: [Int32] = [], endsWithThisProcess: Bool = false
    ) throws {
        guard cspawn_children_are_reaped_by_kernel() == 0 else {
            throw SpawnError(executable: executable, code: ECHILD)
        }
        let wrapped = endsWithThisProcess && access(ChildProcess.setpriv, X_OK) == 0
        // Through `setpriv` a missing program would be a child that exits at once: refuse it here, as
        // `posix_spawn` would.
        let resolved = executable.hasPrefix("/") ? executable : "\(directory ?? ".")/\(executable)"
        if wrapped, access(resolved, X_OK) != 0 { throw SpawnError(executable: executable, code: errno) }
        // What the child's three descriptors become, made into `posix_spawn` file actions by the
        // thread that starts it.
        var actions = [SpawnAction]()
        // The parent's ends of the pipes, and the child's ends (closed here once the child has them).
        var childEnds = [Int32]()
        defer { for descriptor in childEnds { close(descriptor) } }
        var parentEnds = [Int32]()
        func makePipe() throws -> (read: Int32, write: Int32) {
            var ends: [Int32] = [-1, -1]
            guard cspawn_pipe_closing_on_exec(&ends) == 0 else {
                let code = errno
                for descriptor in parentEnds { close(descriptor) }
                throw SpawnError(executable: executable, code: code)
            }
            return (ends[0], ends[1])
        }

        var inputEnd: Int32?
        var bytesToWrite: [UInt8]?
        switch input {
        case .inherit: break
        case .null: actions.append(.open(0, "/dev/null", O_RDONLY))
        case .bytes, .pipe:
            let ends = try makePipe()
            childEnds.append(ends.read)
            parentEnds.append(ends.write)
            actions.append(.duplicate(ends.read, 0))
            inputEnd = ends.write
            if case let .bytes(bytes) = input { bytesToWrite = bytes }
        }
        var collected = [(descriptor: Int32, isError: Bool)]()
        for (target, choice) in [(Int32(1), output), (Int32(2), error)] {
            switch choice {
            case .inherit: break
            case .null: actions.append(.open(target, "/dev/null", O_WRONLY))
            case .collect:
                let ends = try makePipe()
                childEnds.append(ends.write)
                parentEnds.append(ends.read)
                actions.append(.duplicate(ends.write, target))
                collected.append((ends.read, target == 2))
            }
        }
        let plan = SpawnPlan(
            executable: wrapped ? ChildProcess.setpriv : executable,
            arguments: wrapped ? ["--pdeathsig", "KILL", "--", executable] + arguments : arguments,
            environment: environment, directory: directory,
            actions: actions, inheritsSIGPIPE: inheritsSIGPIPE)

        forwards = !signals.isEmpty
        if forwards {
            let code = signals.withUnsafeBufferPointer { cspawn_forward_begin($0.baseAddress, Int32($0.count)) }
            guard code == 0 else {
                for descriptor in parentEnds { close(descriptor) }
                throw SpawnError(executable: executable, code: code)
            }
        }
        // The child is started by the thread that will reap it, which lives as long as the child: a
        // child that asks to die with its parent (``endWithParent(_:)``) is tied to the thread that
        // started it, and a thread of Swift's pool may end while the child still runs.
        let launch = Launch()
        ChildProcess.onThread("reap") {
            let (code, pid) = plan.spawn()
            launch.started(code: code, pid: pid)
            guard code == 0 else { return }
            _ = cspawn_name_this_thread("reap \(pid)")
            let (process, readers) = launch.waitForProcess()
            process.reap(after: readers)
        }
        let (started, pid) = launch.waitUntilStarted()
        guard started == 0 else {
            if forwards { cspawn_forward_end() }
            for descriptor in parentEnds { close(descriptor) }
            throw SpawnError(executable: executable, code: started)
        }
        if forwards { cspawn_forward_to(pid) }
        self.pid = pid
        inputDescriptor = bytesToWrite == nil ? inputEnd : nil

        let readers = collected.map { stream in
            ChildProcess.onThread("\(stream.isError ? "err" : "out") \(pid)") { [self] in
                self.collect(stream.descriptor, isError: stream.isError)
            }
        }
        if let bytesToWrite, let inputEnd {
            ChildProcess.onThread("in \(pid)") {
                _ = ChildProcess.writeIgnoringSIGPIPE(inputEnd, bytesToWrite)
                close(inputEnd)
            }
        }
        launch.hand(self, readers)
    }

    deinit {
        if let inputDescriptor, state.withLock({ $0.inputOpen }) { close(inputDescriptor) }
    }

    // MARK: Reading what it printed

    /// Everything collected from standard output so far (empty unless it was ``Output/collect``).
    public var output: [UInt8] { state.withLock { $0.output } }

    /// The complete lines (without their `\n`) collected from standard output so far.
    public var lines: [String] { state.withLock { $0.lines } }

    /// Everything collected from standard error so far (empty unless it was ``Output/collect``).
    public var errorOutput: [UInt8] { state.withLock { $0.errorOutput } }

    // MARK: Writing to it

    /// Writes `bytes` to the child's standard input (``Input/pipe`` only); false once the child
    /// closed its end (no SIGPIPE reaches this process) or the input was closed.
    @discardableResult
    public func write(_ bytes: [UInt8]) -> Bool {
        guard let inputDescriptor, state.withLock({ $0.inputOpen }) else { return false }
        return ChildProcess.writeIgnoringSIGPIPE(inputDescriptor, bytes)
    }

    /// Ends the child's standard input (``Input/pipe``): it reads end of file.
    public func closeInput() {
        guard let inputDescriptor else { return }
        let wasOpen = state.withLock { state in
            defer { state.inputOpen = false }
            return state.inputOpen
        }
        if wasOpen { close(inputDescriptor) }
    }

    // MARK: Its end

    /// Whether the child has not ended yet (or its collected output has not reached end of file).
    public var isRunning: Bool { state.withLock { $0.termination == nil } }

    /// How the child ended, once it has (and its collected output is complete); nil before.
    public var termination: Termination? { state.withLock { $0.termination } }

    /// Sends `signal` to the child, unless it has already been reaped (its pid may belong to
    /// another process by then).
    public func send(_ signal: Int32) {
        state.withLock {
            if $0.reaped == nil { _ = kill(pid, signal) }
        }
    }

    /// Sends SIGTERM.
    public func terminate() { send(SIGTERM) }

    /// util-linux's `setpriv`, which starts a child that ends with this process (Debian: essential).
    public static let setpriv = "/usr/bin/setpriv"

    /// Called early by a child that stands in for its parent: the kernel kills it (SIGKILL) when
    /// the parent's thread that started it ends, which is when the parent ends (a ``ChildProcess``
    /// is started by the thread that reaps it). False when `parent` has ended already, or the kernel
    /// refused: the caller should then stop, as nobody waits for its work.
    public static func endWithParent(_ parent: pid_t) -> Bool { cspawn_end_with_parent(parent) == 0 }

    /// Ends this process on `signal`, as a child ended on it: its default action restored, then
    /// raised with it unblocked on the calling thread (a thread of Swift's pool blocks most signals).
    /// Returns only for a signal whose default action is not to end the process.
    public static func endThisProcess(on signal: Int32) {
        Glibc.signal(signal, SIG_DFL)
        cspawn_raise_unblocked(signal)
    }

    /// Blocks the calling thread until the child has ended and its collected output is complete.
    @discardableResult
    public func waitUntilExit() -> Termination {
        let woken = DispatchSemaphore(value: 0)
        let ended = state.withLock {
            if $0.termination == nil { $0.waiters.append(.thread(woken)) }
            return $0.termination
        }
        if let ended { return ended }
        woken.wait()
        return state.withLock { $0.termination! }
    }

    /// Suspends until the child has ended and its collected output is complete, without blocking
    /// a thread of the cooperative pool.
    @discardableResult
    public func waitForExit() async -> Termination {
        await withCheckedContinuation { continuation in
            let ended = state.withLock {
                if $0.termination == nil { $0.waiters.append(.task(continuation)) }
                return $0.termination
            }
            if let ended { continuation.resume(returning: ended) }
        }
    }

    // MARK: The threads

    /// Starts `body` on a thread of its own named `name` (what `top -H` and `/proc/…/task/…/comm`
    /// show: at most 15 bytes); the returned semaphore is signalled when it returns.
    @discardableResult
    private static func onThread(_ name: String, _ body: @escaping @Sendable () -> Void) -> DispatchSemaphore {
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            _ = cspawn_name_this_thread(String(decoding: name.utf8.prefix(15), as: UTF8.self))
            body()
            done.signal()
        }
        thread.stackSize = 256 * 1024
        thread.start()
        return done
    }

    /// Reads `descriptor` to end of file into the collected output, then closes it.
    private func collect(_ descriptor: Int32, isError: Bool) {
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return }
            let chunk = buffer[0..<count]
            state.withLock { state in
                if isError {
                    state.errorOutput += chunk
                    return
                }
                state.output += chunk
                state.pending += chunk
                guard chunk.contains(UInt8(ascii: "\n")) else { return }
                var start = state.pending.startIndex
                while let newline = state.pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                    state.lines.append(String(decoding: state.pending[start..<newline], as: UTF8.self))
                    start = newline + 1
                }
                state.pending.removeSubrange(..<start)
            }
        }
    }

    /// Waits for the child to exit without reaping it, stops forwarding signals to it, reaps it under
    /// the lock (so neither ``send(_:)`` nor a forwarded signal reaches a reused pid), waits for the
    /// readers, then records the end and wakes waiters.
    fileprivate func reap(after readers: [DispatchSemaphore]) {
        var information = siginfo_t()
        while waitid(P_PID, id_t(pid), &information, WEXITED | WNOWAIT) == -1 && errno == EINTR {}
        if forwards { cspawn_forward_end() }
        let ended: Termination = state.withLock {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
            // WIFEXITED / WEXITSTATUS / WTERMSIG by hand: Swift does not import the macros.
            let termination: Termination =
                status & 0x7F == 0 ? .exited((status >> 8) & 0xFF) : .signalled(status & 0x7F)
            $0.reaped = termination
            return termination
        }
        for reader in readers { reader.wait() }
        let waiters = state.withLock { state in
            state.termination = ended
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters {
            switch waiter {
            case let .task(continuation): continuation.resume(returning: ended)
            case let .thread(semaphore): semaphore.signal()
            }
        }
    }

    /// Writes all of `bytes` to `descriptor` with SIGPIPE blocked on this thread (and a SIGPIPE
    /// this write raised taken back), so a reader that went away is a false return, not the end
    /// of this process.
    private static func writeIgnoringSIGPIPE(_ descriptor: Int32, _ bytes: [UInt8]) -> Bool {
        var pipeSignal = sigset_t()
        sigemptyset(&pipeSignal)
        sigaddset(&pipeSignal, SIGPIPE)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &pipeSignal, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        var pendingBefore = sigset_t()
        sigpending(&pendingBefore)
        let wasPending = sigismember(&pendingBefore, SIGPIPE) == 1
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes {
                Glibc.write(descriptor, $0.baseAddress! + written, $0.count - written)
            }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                if errno == EPIPE && !wasPending {
                    var now = timespec()
                    _ = sigtimedwait(&pipeSignal, nil, &now)
                }
                return false
            }
            written += count
        }
        return true
    }
}

/// One thing `posix_spawn` does to the child's descriptors.
private enum SpawnAction: Sendable {
    /// Opens `path` with `flags` as descriptor `target`.
    case open(Int32, String, Int32)
    /// Makes descriptor `target` a copy of `source` (`duplicate(source, target)`).
    case duplicate(Int32, Int32)
}

/// Everything `posix_spawn` needs, as values a thread can be handed.
private struct SpawnPlan: Sendable {
    let executable: String
    let arguments: [String]
    let environment: [String: String]?
    let directory: String?
    let actions: [SpawnAction]
    let inheritsSIGPIPE: Bool

    /// Starts the child from the calling thread: `posix_spawn`'s result and the child's pid.
    func spawn() -> (code: Int32, pid: pid_t) {
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        if !inheritsSIGPIPE { sigaddset(&defaults, SIGPIPE) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        for action in actions {
            switch action {
            case let .open(target, path, flags): posix_spawn_file_actions_addopen(&fileActions, target, path, flags, 0)
            case let .duplicate(source, target): posix_spawn_file_actions_adddup2(&fileActions, source, target)
            }
        }
        cspawn_add_close_from(&fileActions, 3)
        if let directory { cspawn_add_change_directory(&fileActions, directory) }

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let environmentStrings = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { for pointer in environmentStrings ?? [] { free(pointer) } }
        var pid: pid_t = 0
        let code = argv.withUnsafeBufferPointer { arguments in
            if let environmentStrings {
                environmentStrings.withUnsafeBufferPointer {
                    posix_spawn(&pid, executable, &fileActions, &attributes, arguments.baseAddress!, $0.baseAddress!)
                }
            } else {
                posix_spawn(&pid, executable, &fileActions, &attributes, arguments.baseAddress!, environ)
            }
        }
        return (code, pid)
    }
}

/// The hand-over between ``ChildProcess/init`` and the thread that starts and reaps the child: the
/// thread says how the start went, then waits for the finished ``ChildProcess`` to reap it with.
private final class Launch: Sendable {
    private let state = Mutex<(code: Int32, pid: pid_t, process: ChildProcess?, readers: [DispatchSemaphore])>(
        (0, 0, nil, []))
    private let startedSignal = DispatchSemaphore(value: 0)
    private let handedSignal = DispatchSemaphore(value: 0)

    func started(code: Int32, pid: pid_t) {
        state.withLock {
            $0.code = code
            $0.pid = pid
        }
        startedSignal.signal()
    }

    func waitUntilStarted() -> (code: Int32, pid: pid_t) {
        startedSignal.wait()
        return state.withLock { ($0.code, $0.pid) }
    }

    func hand(_ process: ChildProcess, _ readers: [DispatchSemaphore]) {
        state.withLock {
            $0.process = process
            $0.readers = readers
        }
        handedSignal.signal()
    }

    func waitForProcess() -> (ChildProcess, [DispatchSemaphore]) {
        handedSignal.wait()
        return state.withLock { ($0.process!, $0.readers) }
    }
}
