import CampaignCLI
import Foundation

/// Feeds `campaign apply` request lines from memory and counts the answers that created something,
/// so the benchmark runs the CLI's own loop without a pipe or a child process.
///
/// Invariant that makes `@unchecked Sendable` safe: `next` and `answered` are touched only under `lock`.
final class PipedConsole: Console, @unchecked Sendable {
    private let lock = NSLock()
    private let lines: [[UInt8]]
    private var next = 0
    private var answered = 0

    init(_ lines: [[UInt8]]) { self.lines = lines }

    /// Answers with status 201.
    var created: Int { lock.withLock { answered } }

    func out(_ line: String) {
        if line.contains(#""status":201"#) { lock.withLock { answered += 1 } }
    }
    func err(_ line: String) {}
    func progress(_ line: String) {}
    var outputIsTerminal: Bool { false }
    var errorIsTerminal: Bool { false }

    func readLine(limit: Int) -> LineRead {
        lock.withLock {
            guard next < lines.count else { return .end }
            defer { next += 1 }
            return .line(lines[next])
        }
    }
}

/// Counts the lines `campaign export` writes, escaping them as the real console does before it
/// writes them, so the benchmark times the CLI's own loop and escaping without a pipe.
///
/// Invariant that makes `@unchecked Sendable` safe: `written` is touched only under `lock`.
final class CountingConsole: Console, @unchecked Sendable {
    private let lock = NSLock()
    private var written = 0

    /// Lines written so far.
    var lines: Int { lock.withLock { written } }

    func out(_ line: String) { lock.withLock { written += 1 } }
    func out(encodedLines bytes: [UInt8]) throws {
        let printable = Format.printable(lines: bytes)
        let count = printable.reduce(0) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
        lock.withLock { written += count }
    }
    func err(_ line: String) {}
    func progress(_ line: String) {}
    var outputIsTerminal: Bool { false }
    var errorIsTerminal: Bool { false }
    func readLine(limit: Int) -> LineRead { .end }
}
