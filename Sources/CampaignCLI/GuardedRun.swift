import CampaignDomain
import Foundation
import Spawn

/// Runs the commands that check a store which may be damaged (`campaign verify`, `campaign projections
/// verify`) in a child process.
///
/// LMDB checks page numbers but not the layout inside a page: a page whose header or node offsets
/// were overwritten (a disk fault, or bytes changed by hand) makes a cursor read wild memory, and
/// the process stops with SIGSEGV before any error can be returned. The auditor's tool must still
/// answer, so the command runs again in a child sharing this process's standard input, output and
/// error; when the child stops on such a signal, the parent says that the file is damaged beyond
/// what LMDB checks and exits 1.
///
/// The parent passes SIGTERM, SIGINT and SIGHUP on to the child and, when the child ends on one of
/// them, ends on it too: `kill` of the command stops the check, and its caller sees the signal.
/// (SIGKILL cannot be passed on: a child whose parent was killed finishes its read-only check.)
enum GuardedRun {
    /// Set in the child's environment: the child runs the command itself.
    static let childVariable = "CAMPAIGN_GUARDED_CHILD"

    /// Whether this process runs the command itself: it is the child already, or its console is
    /// not the process's own (a caller of ``CLI/run(_:console:)`` capturing the output in process).
    static func runsHere(_ console: any Console) -> Bool {
        !(console is StandardConsole) || ProcessInfo.processInfo.environment[childVariable] != nil
    }

    /// The signals the parent passes on to the child.
    static let forwarded: [Int32] = [SIGTERM, SIGINT, SIGHUP]

    /// Runs this executable again with the same arguments, and waits for it.
    static func runChild() async throws -> ChildProcess.Termination {
        var environment = ProcessInfo.processInfo.environment
        environment[childVariable] = "1"
        // The parent reports a crash in one line; the runtime's backtrace would only bury it.
        environment["SWIFT_BACKTRACE"] = "enable=no"
        let child = try ChildProcess(
            URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path,
            Array(CommandLine.arguments.dropFirst()), environment: environment, input: .inherit,
            forwarding: forwarded)
        return await child.waitForExit()
    }

    /// Runs `command` (`verify`, `projections verify`) again in a child and answers as it did; when
    /// the child crashed, says the store is damaged beyond what LMDB checks (a line on standard error,
    /// or with `json` an object with `intact: false` on standard output) and fails. Nil when no child
    /// could be started (this process ignores SIGCHLD, say): a line on standard error says the check
    /// runs unguarded, and the caller runs it here.
    static func inChild(_ command: String, json: Bool, console: any Console) async -> CLI.Exit? {
        let termination: ChildProcess.Termination
        do {
            termination = try await runChild()
        } catch {
            console.err(
                "campaign \(command): \(error); checking in this process instead, where a page damaged beyond "
                    + "what LMDB checks would stop it without an answer")
            return nil
        }
        switch termination {
        case let .exited(status):
            return CLI.Exit(rawValue: status) ?? .failure
        case let .signalled(signal) where forwarded.contains(signal):
            // Stopped from outside: end the same way, so a shell or supervisor sees the signal.
            ChildProcess.endThisProcess(on: signal)
            return .failure
        case let .signalled(signal):
            guard let name = crashes[signal] else { return .failure }
            let problem =
                "reading the store stopped the check with \(name): a page of data.mdb is damaged beyond what "
                + "LMDB checks, so no position can be named; restore the directory from a backup"
            if json {
                console.out(JSON.object(["intact": .bool(false), "problem": .string(problem)]).text)
            } else {
                console.err("campaign \(command): \(problem)")
            }
            return .failure
        }
    }

    /// The signals that mean the reading itself crashed (rather than the child being interrupted
    /// or killed from outside), with their names.
    static let crashes: [Int32: String] = [
        SIGSEGV: "SIGSEGV", SIGBUS: "SIGBUS", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP", SIGABRT: "SIGABRT",
        SIGFPE: "SIGFPE",
    ]
}
