import Foundation
import Spawn
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `campaign verify` and `projections verify` run their check in a child (``GuardedRun``): the child
/// stops with its parent, and a parent that cannot start one still answers.
@Suite(.serialized) struct GuardedRunTests {
    /// The pids of the processes whose parent is `parent` (from `/proc/PID/stat`: the fourth field,
    /// after the command name in parentheses).
    static func children(of parent: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry),
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return nil }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && pid_t(fields[1]) == parent ? pid : nil
        }
    }

    /// The signals pending for the whole process `pid` (`ShdPnd` in `/proc/PID/status`), or nil
    /// once it is gone.
    static func pendingSignals(of pid: pid_t) -> UInt64? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("ShdPnd:") })
        else { return nil }
        return UInt64(line.dropFirst("ShdPnd:".count).trimmingCharacters(in: .whitespaces), radix: 16)
    }

    /// The state letter of process `pid` (`R`, `S`, `T` for stopped, `Z`…), or nil once it is gone.
    static func state(of pid: pid_t) -> String? { stateLetter(in: "/proc/\(pid)/stat") }

    /// The state letter in a `stat` file of `/proc` (the field after the command name in
    /// parentheses), or nil when the file is gone.
    static func stateLetter(in path: String) -> String? {
        guard let stat = try? String(contentsOfFile: path, encoding: .utf8), let close = stat.lastIndex(of: ")")
        else { return nil }
        return stat[stat.index(after: close)...].split(separator: " ").first.map(String.init)
    }

    /// The state letters of every thread of process `pid` (from `/proc/PID/task/TID/stat`); empty
    /// once it is gone.
    static func threadStates(of pid: pid_t) -> [String] {
        let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return threads.compactMap { stateLetter(in: "/proc/\(pid)/task/\($0)/stat") }
    }

    /// Whether every thread of process `pid` is stopped (state `T`). The main thread alone is not
    /// enough: a thread that entered `exit_group` as SIGSTOP came ends the process with its status
    /// all the same, waking the stopped main thread to die, and a signal sent to it then is dropped.
    static func isStopped(_ pid: pid_t) -> Bool {
        let states = threadStates(of: pid)
        return !states.isEmpty && states.allSatisfy { $0 == "T" }
    }

    /// Polls `condition` every millisecond for up to ten seconds.
    static func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<10_000 {
            if condition() { return true }
            usleep(1_000)
        }
        return false
    }

    /// The commands that read the whole log or every page answer a store whose pages crash any
    /// reader with one line and exit 1, as verify does, where they stopped on SIGBUS with a backtrace.
    @Test func commandsThatReadEveryPageSayTheStoreIsDamagedInsteadOfCrashing() async throws {
        let directory = try await sessionStore()
        // In every leaf page whose first key is 8 bytes (the log's positions, among others), every
        // node offset points 65,520 bytes on: past the end of the file for the last pages, where a
        // read of the mapped file is SIGBUS. LMDB checks none of it.
        let damaged = try damageLeafPages(in: directory.path) { page, start in
            let lower = page.u16(start + 12)
            guard page.u16(start + page.u16(start + 16) + 6) == 8 else { return false }
            for offset in stride(from: start + 16, to: start + lower, by: 2) {
                page.bytes[offset] = 0xF0
                page.bytes[offset + 1] = 0xFF
            }
            return true
        }
        try #require(damaged > 0)
        let copy = directory.path + "/copy"
        for command in [["replay"], ["stats"], ["export"], ["prove", "1"], ["compact", "--to", copy], ["verify"]] {
            let run = try await campaign(command + ["--data", directory.path])
            #expect(run.status == 1, "\(command): \(run)")
            #expect(
                run.err.hasPrefix("campaign \(command[0]): reading the store stopped ")
                    && run.err.contains("damaged beyond what LMDB checks") && !run.err.contains("Fatal error")
                    && !run.err.contains("Backtrace"), "\(command): \(run.err)")
        }
    }

    /// The guarded child of `parent`, caught and stopped (SIGSTOP) once it reads the store (it has
    /// `data.mdb` open, so it is past `exec` and past tying itself to its parent); nil when it ended
    /// before it could be caught (the parent is then waited for).
    static func stoppedGuardedChild(of parent: ChildProcess) async -> pid_t? {
        var child: pid_t?
        _ = eventually {
            child = children(of: parent.pid).first { pid in
                let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
                return descriptors.contains {
                    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)"))?
                        .hasSuffix("/data.mdb") == true
                }
            }
            return child != nil || !parent.isRunning
        }
        // Caught only if every thread stops, and stays stopped a moment later: one caught as it was
        // ending exits all the same.
        guard let child, kill(child, SIGSTOP) == 0,
            eventually({ isStopped(child) || [nil, "Z", "X"].contains(state(of: child)) }), isStopped(child),
            usleep(20_000) == 0, isStopped(child)
        else {
            if let child { kill(child, SIGCONT) }
            _ = await parent.waitForExit()
            return nil
        }
        return child
    }

    /// A `campaign` command (`arguments`, on a new empty store) running with its guarded child
    /// caught and stopped; tried up to 20 times, since a child can end before it is caught.
    static func caughtGuardedChild(_ arguments: [String]) async throws -> (ChildProcess, pid_t) {
        let directory = try await emptyStore()
        for _ in 0..<20 {
            let parent = try ChildProcess(
                product("campaign"), arguments + ["--data", directory.path], output: .null, error: .null)
            if let child = await stoppedGuardedChild(of: parent) { return (parent, child) }
        }
        throw CaughtNoChild()
    }

    /// Thrown when the guarded child ended before it could be caught, each time.
    struct CaughtNoChild: Error {}

    /// A store with nothing in it (made by `campaign apply` given no request).
    static func emptyStore() async throws -> TemporaryDirectory {
        let directory = TemporaryDirectory()
        let seed = try ChildProcess(
            product("campaign"), ["apply", "--data", directory.path], input: .bytes([]), output: .null, error: .null)
        try #require(await seed.waitForExit() == .exited(0))
        return directory
    }

    /// A guarded child dies with its parent even when the parent is killed with SIGKILL, which
    /// cannot be passed on: stopped, it would otherwise wait there for ever.
    @Test func aGuardedChildDiesWithItsParentKilledBySIGKILL() async throws {
        let (parent, child) = try await Self.caughtGuardedChild(["stats"])
        parent.send(SIGKILL)
        #expect(await parent.waitForExit() == .signalled(SIGKILL))
        let died = Self.eventually { [nil, "Z", "X"].contains(Self.state(of: child)) }
        if !died { kill(child, SIGKILL) }
        #expect(died, "the child of a parent killed with SIGKILL is still there")
    }

    /// SIGTERM to `campaign verify` reaches the child doing the check, and the parent then ends on
    /// SIGTERM too. The child is caught and stopped (SIGSTOP) as soon as it appears, so the SIGTERM
    /// the parent passes on waits, pending, where this test can see it; without forwarding the
    /// parent would end at once and the child would go on checking. A child caught as it was
    /// finishing its (empty) check can still exit 0, and the parent then rightly exits 0 as well
    /// (seen once in a dozen full runs under load): that round is tried again, up to five times.
    @Test func aTerminatedVerifyStopsItsChildAndEndsOnTheSameSignal() async throws {
        var ended: ChildProcess.Termination?
        for _ in 0..<5 where ended == nil || ended == .exited(0) {
            let (parent, child) = try await Self.caughtGuardedChild(["verify"])
            parent.send(SIGTERM)
            let passedOn = Self.eventually { (Self.pendingSignals(of: child) ?? 0) & (1 << (SIGTERM - 1)) != 0 }
            kill(child, SIGCONT)
            #expect(passedOn, "the parent did not pass SIGTERM on to its child")
            ended = await parent.waitForExit()
            #expect(Self.eventually { Self.pendingSignals(of: child) == nil })
        }
        #expect(ended == .signalled(SIGTERM), "\(String(describing: ended))")
    }

    /// `campaign compact` killed part-way through its copy leaves no `data.mdb` that a reader could
    /// take for a whole store, and a second run into the same directory writes the copy. The copy
    /// goes into a pipe of one page in place of its partial file, which this test does not read:
    /// once anything has arrived the copier can have written at most that page of a copy several
    /// pages long, and it is killed (its parent with SIGKILL, the guarded child with it).
    @Test func aCompactKilledPartWayLeavesNoCopyAndCanBeRunAgain() async throws {
        let directory = try await sessionStore()
        let whole = TemporaryDirectory()
        #expect(try await campaign(["compact", "--data", directory.path, "--to", whole.path]).status == 0)
        let wholeSize = try #require(
            try FileManager.default.attributesOfItem(atPath: whole.path + "/data.mdb")[.size] as? Int)
        let target = TemporaryDirectory()
        let partial = target.path + "/data.mdb.partial"
        try #require(mkfifo(partial, 0o600) == 0)
        let reader = open(partial, O_RDONLY | O_NONBLOCK)
        try #require(reader >= 0)
        defer { Glibc.close(reader) }
        let setPipeSize: Int32 = 1031  // F_SETPIPE_SZ
        let pipeSize = Int(fcntl(reader, setPipeSize, Int32(getpagesize())))
        try #require(pipeSize > 0 && pipeSize < wholeSize, "pipe of \(pipeSize) bytes, copy of \(wholeSize)")
        let parent = try ChildProcess(
            product("campaign"), ["compact", "--data", directory.path, "--to", target.path], output: .null,
            error: .null)
        var ready = pollfd(fd: reader, events: Int16(POLLIN), revents: 0)
        let started = Self.eventually { poll(&ready, 1, 0) == 1 }
        parent.send(SIGKILL)
        #expect(await parent.waitForExit() == .signalled(SIGKILL))
        try #require(started, "the copy never began")
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var received = 0
        // Read to end of file: every process that had the pipe open for writing is gone.
        #expect(
            Self.eventually {
                let count = read(reader, &buffer, buffer.count)
                if count > 0 { received += count }
                return count == 0
            })
        #expect(received > 0 && received <= pipeSize)
        #expect(!FileManager.default.fileExists(atPath: target.path + "/data.mdb"))

        // What a copy cut short leaves on a disk is a file of some of the pages.
        try FileManager.default.removeItem(atPath: partial)
        try Data(buffer.prefix(received)).write(to: URL(fileURLWithPath: partial))
        let again = try await campaign(["compact", "--data", directory.path, "--to", target.path])
        #expect(again.status == 0 && again.out.contains("compacted copy written"), "\(again)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: target.path) == ["data.mdb"])
        let verify = try await campaign(["verify", "--data", target.path])
        #expect(verify.status == 0 && verify.out.contains("5 events checked"), "\(verify)")
    }

    /// A process that ignores SIGCHLD (inherited through `exec` from a shell's `trap '' CHLD`) could
    /// not read its child's exit status: verify says so and checks in its own process.
    @Test func aVerifyThatCannotWaitForAChildChecksInItsOwnProcess() async throws {
        let directory = try await Self.emptyStore()
        let verify = try ChildProcess(
            "/bin/bash",
            ["-c", #"trap '' CHLD; exec "$0" verify --data "$1" --json"#, product("campaign"), directory.path],
            output: .collect, error: .collect)
        #expect(await verify.waitForExit() == .exited(0))
        let error = String(decoding: verify.errorOutput, as: UTF8.self)
        #expect(error.contains("ignores SIGCHLD") && error.contains("running in this process instead"), "\(error)")
        #expect(String(decoding: verify.output, as: UTF8.self).contains(#""intact":true"#))
    }
}
