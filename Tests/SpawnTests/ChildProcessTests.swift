import Foundation
import Spawn
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

struct ChildProcessTests {
    /// Runs `script` with `/bin/sh -c`, its standard output collected.
    func shell(_ script: String, input: ChildProcess.Input = .null) throws -> ChildProcess {
        try ChildProcess("/bin/sh", ["-c", script], input: input, output: .collect, error: .collect)
    }

    @Test func anExitStatusAndASignalAreToldApart() async throws {
        #expect(try shell("exit 3").waitUntilExit() == .exited(3))
        #expect(try shell("exit 0").waitUntilExit() == .exited(0))
        #expect(try shell("kill -9 $$").waitUntilExit() == .signalled(SIGKILL))
        let sleeper = try ChildProcess("/bin/sleep", ["30"])
        #expect(sleeper.isRunning && sleeper.termination == nil)
        sleeper.terminate()
        #expect(await sleeper.waitForExit() == .signalled(SIGTERM))
        #expect(!sleeper.isRunning && sleeper.termination == .signalled(SIGTERM))
        #expect(sleeper.waitUntilExit().status == SIGTERM)
        // Reaped: a signal now goes nowhere (the pid may be another process's by now).
        sleeper.send(SIGKILL)
        #expect(sleeper.termination == .signalled(SIGTERM))
    }

    @Test func outputAndErrorAreCollectedApartAndInLines() throws {
        let child = try shell("printf 'one\\ntwo\\nthree'; echo oops >&2")
        #expect(child.waitUntilExit() == .exited(0))
        #expect(child.lines == ["one", "two"], "a line without its newline is not complete")
        #expect(String(decoding: child.output, as: UTF8.self) == "one\ntwo\nthree")
        #expect(String(decoding: child.errorOutput, as: UTF8.self) == "oops\n")
    }

    @Test func bytesGivenForInputArriveWholeWhateverTheirLength() throws {
        // A megabyte: far more than a pipe holds, so the writer and the reader must overlap.
        let bytes = (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
        let child = try ChildProcess("/bin/cat", [], input: .bytes(bytes), output: .collect)
        #expect(child.waitUntilExit() == .exited(0))
        #expect(child.output == bytes)
    }

    @Test func aChildThatStopsReadingCostsThisProcessNoSIGPIPE() async throws {
        let unread = [UInt8](repeating: 0x61, count: 1_000_000)
        #expect(try ChildProcess("/bin/true", [], input: .bytes(unread)).waitUntilExit() == .exited(0))
        let piped = try ChildProcess("/bin/true", [], input: .pipe)
        #expect(await piped.waitForExit() == .exited(0))
        #expect(!piped.write(unread), "a write to a child that has gone says so")
        piped.closeInput()
        #expect(!piped.write([0x0A]), "a write after closeInput says so")
    }

    @Test func aPipedInputIsAnsweredLineByLineWhileStillOpen() async throws {
        let child = try ChildProcess("/bin/cat", [], input: .pipe, output: .collect)
        for (count, word) in ["alpha", "beta"].enumerated() {
            #expect(child.write(Array("\(word)\n".utf8)))
            try await waitUntil("cat echoed \(word)") { child.lines.count == count + 1 }
            #expect(child.lines.last == word)
        }
        #expect(child.isRunning)
        child.closeInput()
        #expect(await child.waitForExit() == .exited(0))
    }

    @Test func environmentAndDirectoryAreTheChildsOwn() throws {
        let directory = TemporaryDirectory()
        let child = try ChildProcess(
            "/bin/sh", ["-c", "echo \"$GREETING\"; echo \"${HOME-unset}\"; pwd"], environment: ["GREETING": "hello"],
            directory: directory.path, output: .collect)
        #expect(child.waitUntilExit() == .exited(0))
        let real = URL(fileURLWithPath: directory.path).resolvingSymlinksInPath().path
        #expect(child.lines == ["hello", "unset", real])
    }

    @Test func theChildHoldsNoDescriptorOfThisProcessButItsThree() throws {
        // Opened without O_CLOEXEC, as a library might: it must not reach the child.
        let leaked = open("/dev/null", O_RDONLY)
        defer { close(leaked) }
        #expect(leaked > 2)
        let child = try shell("ls /proc/self/fd", input: .null)
        #expect(child.waitUntilExit() == .exited(0))
        // `ls` itself holds one more: the directory it lists.
        let descriptors = child.lines.compactMap(Int32.init)
        #expect(descriptors.filter { $0 > 2 }.count == 1 && !descriptors.contains(leaked), "\(descriptors)")
    }

    @Test func aSignalThisProcessBlocksOrIgnoresIsTheChildsAgain() throws {
        // A host may ignore SIGPIPE and block signals on its threads; a child must not inherit
        // either (a `yes | head` in it would otherwise never end by SIGPIPE).
        let previous = signal(SIGPIPE, SIG_IGN)
        defer { signal(SIGPIPE, previous) }
        var blocked = sigset_t()
        sigemptyset(&blocked)
        sigaddset(&blocked, SIGUSR1)
        var mask = sigset_t()
        pthread_sigmask(SIG_BLOCK, &blocked, &mask)
        defer { pthread_sigmask(SIG_SETMASK, &mask, nil) }
        let child = try ChildProcess("/bin/grep", ["-E", "^Sig(Blk|Ign)", "/proc/self/status"], output: .collect)
        #expect(child.waitUntilExit() == .exited(0))
        let bits = Dictionary(
            uniqueKeysWithValues: child.lines.map { line in
                let parts = line.split(separator: ":")
                return (String(parts[0]), UInt64(parts[1].trimmingCharacters(in: .whitespaces), radix: 16) ?? .max)
            })
        #expect(bits["SigBlk"] == 0, "\(child.lines)")
        #expect((bits["SigIgn"] ?? .max) & (1 << (UInt64(SIGPIPE) - 1)) == 0, "\(child.lines)")
    }

    /// A signal this process gets while a child forwards it goes to the child (here SIGUSR2, which
    /// this process ignores and `sleep` dies of); one child at a time forwards; once it ended, the
    /// handler there was before is back.
    @Test func signalsArePassedOnToAForwardingChildUntilItEnds() async throws {
        func handler(_ signalNumber: Int32) -> Int {
            let current = signal(signalNumber, SIG_IGN)
            signal(signalNumber, current)
            return unsafeBitCast(current, to: Int.self)
        }
        let previous = signal(SIGUSR2, SIG_IGN)
        defer { signal(SIGUSR2, previous) }
        let ignoring = handler(SIGUSR2)
        let sleeper = try ChildProcess("/bin/sleep", ["30"], forwarding: [SIGUSR2])
        #expect(handler(SIGUSR2) != ignoring)
        #expect {
            try ChildProcess("/bin/sleep", ["30"], forwarding: [SIGUSR1])
        } throws: { error in
            (error as? ChildProcess.SpawnError)?.code == EBUSY
                && "\(error)".contains("another child is passing this process's signals on")
        }
        kill(getpid(), SIGUSR2)
        #expect(await sleeper.waitForExit() == .signalled(SIGUSR2))
        #expect(handler(SIGUSR2) == ignoring)
        // The forwarding is free again.
        let next = try ChildProcess("/bin/true", [], forwarding: [SIGUSR2])
        #expect(await next.waitForExit() == .exited(0))
    }

    @Test func aProgramThatDoesNotExistIsAnErrorNotAChild() {
        #expect {
            try ChildProcess("/nonexistent/program", [])
        } throws: { error in
            (error as? ChildProcess.SpawnError)?.code == ENOENT
        }
    }

    @Test func aProgramThatDoesNotExistIsAnErrorAlsoForAChildThatEndsWithThisProcess() {
        #expect {
            try ChildProcess("/nonexistent/program", [], endsWithThisProcess: true)
        } throws: { error in
            (error as? ChildProcess.SpawnError)?.code == ENOENT
        }
    }

    @Test func aChildThatEndsWithThisProcessIsKilledWhenThisProcessIsKilled() async throws {
        /// Whether `pid` runs: its `/proc` entry exists and is not a zombie (one nobody reaps here).
        func runs(_ pid: pid_t) -> Bool {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let state = stat.split(separator: ")").last?.split(separator: " ").first
            else { return false }
            return state != "Z" && state != "X"
        }
        // The harness starts `sleep` as this process would start `nats-server`, then is killed.
        let holder = try startProduct("campaign-harness", ["hold-child", "/bin/sleep", "300"])
        let deadline = ContinuousClock.now + .seconds(30)
        while holder.lines.isEmpty, holder.isRunning, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let words = try #require(holder.lines.first).split(separator: " ")
        let child = try #require(words.count == 2 && words[0] == "child" ? pid_t(words[1]) : nil)
        #expect(runs(child))
        // It is `sleep` itself, not a wrapper waiting for it.
        let command = try String(contentsOfFile: "/proc/\(child)/comm", encoding: .utf8)
        #expect(command == "sleep\n")
        holder.send(SIGKILL)
        #expect(await holder.waitForExit() == .signalled(SIGKILL))
        while runs(child), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(!runs(child))
        if runs(child) { kill(child, SIGKILL) }
    }

    @Test func aFinishedChildLeavesNoDescriptorOrThreadBehind() async throws {
        /// The names of this process's threads.
        func threadNames() -> [String] {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
            return tasks.compactMap {
                try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8)
                    .trimmingCharacters(in: .newlines)
            }
        }
        func descriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0 }
        // The threads are there while a child runs, under the names the check below looks for.
        let running = try ChildProcess("/bin/cat", [], input: .pipe, output: .collect, error: .collect)
        try await waitUntil("the running child's threads named") {
            Set(threadNames()).isSuperset(of: ["reap", "out", "err"].map { "\($0) \(running.pid)" })
        }
        running.closeInput()
        await running.waitForExit()
        let before = descriptors()
        var pids: Set = [String(running.pid)]
        for index in 0..<100 {
            let child = try ChildProcess(
                "/bin/cat", [], input: index % 2 == 0 ? .bytes(Array("\(index)\n".utf8)) : .pipe,
                output: .collect, error: .collect)
            pids.insert(String(child.pid))
            if index % 2 == 1 {
                child.write(Array("\(index)\n".utf8))
                child.closeInput()
            }
            #expect(await child.waitForExit() == .exited(0))
            #expect(child.lines == ["\(index)"])
        }
        // Each child had three threads and four descriptors of this process; none may stay.
        try await waitUntil("the children's threads ended") {
            !threadNames().contains { pids.contains(String($0.split(separator: " ").last ?? "")) }
        }
        // Other tests run at once and hold descriptors for a moment: a leak here would be 200 or more.
        try await waitUntil("the descriptors closed") { descriptors() < before + 50 }
    }

    @Test func manyWaitersAllHearTheEnd() async throws {
        let child = try ChildProcess("/bin/sleep", ["0.2"])
        async let first = child.waitForExit()
        async let second = child.waitForExit()
        let third = try await blocking { child.waitUntilExit() }
        #expect(await [first, second, third] == Array(repeating: .exited(0), count: 3))
    }
}
