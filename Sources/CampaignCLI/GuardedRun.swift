import CampaignDomain
import Foundation
import Spawn

/// Runs the commands that read a store which may be damaged in a child process: `verify` and
/// `projections verify` (the auditor's and operator's checks), and the commands that read the whole
/// log or every page (`replay`, `stats`, `prove`, `compact`, and `export`, the relay included).
///
/// LMDB checks page numbers but not the layout inside a page: a page whose header or node offsets
/// were overwritten (a disk fault, or bytes changed by hand) makes a cursor read wild memory, and
/// the process stops with SIGSEGV before any error can be returned. The command must still answer,
/// so it runs again in a child sharing this process's standard input, output and error; when the
/// child stops on such a signal, the parent says that the file is damaged beyond what LMDB checks
/// and exits 1.
///
/// The parent passes SIGTERM, SIGINT and SIGHUP on to the child; when the child ends on a signal
/// that is not a crash (one of those, or SIGPIPE from a reader that went away), the parent ends on
/// it too, so a shell or supervisor sees what it would without the guard. SIGKILL cannot be passed
/// on: the child asks the kernel to kill it when its parent ends (``tieToParent()``). `apply` and
/// `demo`, which a host or a terminal drives, and the commands that write run in their own process.
enum GuardedRun {
    /// Set in the child's environment: the child runs the command itself.
    static let childVariable = "CAMPAIGN_GUARDED_CHILD"

    /// Whether this process runs the command itself: it is the child already, or its console is
    /// not the process's own (a caller of ``CLI/run(_:console:)`` capturing the output in process).
    static func runsHere(_ console: any Console) -> Bool {
        !(console is StandardConsole) || ProcessInfo.processInfo.environment[childVariable] != nil
    }

    /// In the child: ties its life to the parent's (named by ``childVariable``), so a parent killed
    /// with SIGKILL takes the child with it; false when the parent has already gone.
    static func tieToParent() -> Bool {
        guard let value = ProcessInfo.processInfo.environment[childVariable], let parent = pid_t(value) else {
            return true
        }
        return ChildProcess.endWithParent(parent)
    }

    /// Whether `command` with `arguments` runs in a guarded child.
    static func guards(_ command: String, _ arguments: Arguments) -> Bool {
        switch command {
        case "verify", "replay", "stats", "prove", "compact": true
        case "projections": arguments.positionals.first == "verify"
        case "export": true
        default: false
        }
    }

    /// The signals the parent passes on to the child.
    static let forwarded: [Int32] = [SIGTERM, SIGINT, SIGHUP]

    /// Runs this executable again with the same arguments, and waits for it.
    static func runChild() async throws -> ChildProcess.Termination {
        var environment = ProcessInfo.processInfo.environment
        environment[childVariable] = String(getpid())
        // The parent reports a crash in one line; the runtime's backtrace would only bury it.
        environment["SWIFT_BACKTRACE"] = "enable=no"
        let child = try ChildProcess(
            URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path,
            Array(CommandLine.arguments.dropFirst()), environment: environment, input: .inherit,
            inheritsSIGPIPE: true, forwarding: forwarded)
        return await child.waitForExit()
    }

    /// Runs `command` (its words, `projections verify` say) again in a child and answers as it did.
    /// When the child crashed, says the store is damaged beyond what LMDB checks (a line on standard
    /// error; for a check with `json`, an object with `intact: false` on standard output) and fails.
    /// Nil when no child could be started (this process ignores SIGCHLD, say): a line on standard
    /// error says the command runs unguarded, and the caller runs it here.
    static func inChild(_ command: String, json: Bool, console: any Console) async -> CLI.Exit? {
        let termination: ChildProcess.Termination
        do {
            termination = try await runChild()
        } catch {
            console.err(
                "campaign \(command): \(error); running in this process instead, where a page damaged beyond "
                    + "what LMDB checks would stop it without an answer")
            return nil
        }
        switch termination {
        case let .exited(status):
            return CLI.Exit(rawValue: status) ?? .failure
        case let .signalled(signal):
            guard let name = crashes[signal] else {
                // Stopped from outside: end the same way, so a shell or supervisor sees the signal.
                ChildProcess.endThisProcess(on: signal)
                return .failure
            }
            let isCheck = command.hasSuffix("verify")
            let problem =
                "reading the store stopped \(isCheck ? "the check" : "it") with \(name): a page of data.mdb is "
                + "damaged beyond what LMDB checks, so no position can be named; restore the directory from a backup"
            if json && isCheck {
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
