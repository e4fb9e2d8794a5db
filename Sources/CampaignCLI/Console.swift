import CampaignDomain
import Foundation
import Synchronization

/// Where a command writes. The real console writes to the process's standard streams; progress
/// and colour appear only when the stream is a terminal.
public protocol Console: Sendable {
    /// Writes a line to standard output.
    func out(_ line: String)
    /// Writes a line to standard error.
    func err(_ line: String)
    /// Writes whole lines, each ending in a newline, to standard output at once, escaped as
    /// ``out(_:)`` escapes a line: for output of many lines (an export), written a chunk at a time
    /// rather than a call a line.
    /// - Throws: ``OutputError`` when the output cannot take them (a closed pipe, a full disk): an
    ///   export must not then store a checkpoint past them.
    func out(encodedLines bytes: [UInt8]) throws
    /// Overwrites the current line of standard error (progress bars).
    func progress(_ line: String)
    /// Whether standard output is a terminal.
    var outputIsTerminal: Bool { get }
    /// Whether standard error is a terminal (progress is shown only then).
    var errorIsTerminal: Bool { get }
    /// Reads one line of at most `limit` bytes; a longer line is skipped without being kept in
    /// memory and reported by its length.
    func readLine(limit: Int) -> LineRead
}

/// One line read with a size limit.
public enum LineRead: Equatable, Sendable {
    /// A line's bytes (without its newline), not yet decoded: the JSON parser checks the UTF-8,
    /// so an invalid sequence is refused, never replaced with U+FFFD.
    case line([UInt8])
    /// A line longer than the limit, skipped; its length in bytes.
    case tooLong(Int)
    /// The end of the input.
    case end
}

/// Splits a byte stream into lines of bounded size, reading a chunk at a time. The reading
/// function and the bytes read are one value in a `Mutex`: a reader shared between tasks hands
/// each line to one of them.
public final class LineReader: Sendable {
    private struct State {
        let read: () -> Data
        var buffer = [UInt8]()
        /// Where the unread bytes of `buffer` begin: a line is taken by moving this past it, and
        /// the bytes before it are dropped only when the next chunk is appended, so a chunk of many
        /// lines is moved once, not once a line.
        var start = 0
        var exhausted = false
    }

    private let state: Mutex<State>

    /// Reads from `read`, which returns an empty `Data` at the end of the input.
    public init(read: sending @escaping () -> Data) { state = Mutex(State(read: read)) }

    /// The next line, or `.tooLong` (the line is consumed but not kept), or `.end`. Each byte is
    /// scanned for a newline once, so a long line costs linear time.
    public func next(limit: Int) -> LineRead {
        state.withLock { state in
            var skipped = 0
            var scanned = state.start
            while true {
                if let newline = Self.newline(in: state.buffer, from: scanned) {
                    let length = skipped + newline - state.start
                    let line = length > limit || skipped > 0 ? nil : Array(state.buffer[state.start..<newline])
                    state.start = newline + 1
                    return line.map(LineRead.line) ?? .tooLong(length)
                }
                scanned = state.buffer.count
                if state.buffer.count - state.start > limit {
                    skipped += state.buffer.count - state.start
                    state.buffer.removeAll(keepingCapacity: true)
                    (state.start, scanned) = (0, 0)
                }
                if state.exhausted {
                    guard state.buffer.count > state.start || skipped > 0 else { return .end }
                    let length = skipped + state.buffer.count - state.start
                    let line = length > limit || skipped > 0 ? nil : Array(state.buffer[state.start...])
                    state.buffer.removeAll()
                    state.start = 0
                    return line.map(LineRead.line) ?? .tooLong(length)
                }
                let chunk = state.read()
                if chunk.isEmpty {
                    state.exhausted = true
                } else {
                    state.buffer.removeSubrange(..<state.start)
                    (state.start, scanned) = (0, scanned - state.start)
                    state.buffer.append(contentsOf: chunk)
                }
            }
        }
    }

    /// The index of the first newline in `bytes` at or after `from`, found by `memchr`.
    private static func newline(in bytes: [UInt8], from: Int) -> Int? {
        bytes.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress, from < buffer.count,
                let found = memchr(base + from, Int32(UInt8(ascii: "\n")), buffer.count - from)
            else { return nil }
            return base.distance(to: found.assumingMemoryBound(to: UInt8.self))
        }
    }
}

/// Standard output refused what was written to it.
public struct OutputError: Error, CustomStringConvertible {
    /// Why, as the system said it.
    public var reason: String
    /// `standard output: <reason>`.
    public var description: String { "standard output: \(reason)" }
}

/// The process's standard streams.
public struct StandardConsole: Console {
    /// `read(2)` returns as soon as any bytes are there, so a host that writes one request and
    /// waits for its answer gets it (Foundation's `readData(ofLength:)` waits for the whole length).
    private let input = LineReader {
        var chunk = Data(count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { Foundation.read(STDIN_FILENO, $0.baseAddress, $0.count) }
            if count >= 0 {
                chunk.count = count
                return chunk
            }
            if errno != EINTR { return Data() }
        }
    }

    /// The process's standard input, output and error.
    public init() {}

    /// Reads a bounded line from standard input, a chunk at a time.
    public func readLine(limit: Int) -> LineRead { input.next(limit: limit) }

    /// Writes to standard output, unbuffered, so a pipe sees each line at once; stored text can
    /// never drive the terminal (``Format/printable(_:)``). Output that is refused (a closed pipe
    /// with SIGPIPE ignored) ends the process with status 1 and a line on standard error: a host
    /// that stopped reading `campaign apply`'s answers gets no further commands run for it.
    public func out(_ line: String) {
        do {
            try Self.write(Array((Format.printable(line) + "\n").utf8), to: STDOUT_FILENO)
        } catch {
            try? Self.write(Array("campaign: \(error); stopping\n".utf8), to: STDERR_FILENO)
            exit(1)
        }
    }
    /// Writes the lines with one `write(2)` (or as few as the output takes), escaped like
    /// ``out(_:)``.
    public func out(encodedLines bytes: [UInt8]) throws {
        try Self.write(Format.printable(lines: bytes), to: STDOUT_FILENO)
    }
    /// Writes to standard error, escaped like ``out(_:)`` (dropped if standard error is gone).
    public func err(_ line: String) { try? Self.write(Array((Format.printable(line) + "\n").utf8), to: STDERR_FILENO) }
    /// Overwrites the line on standard error.
    public func progress(_ line: String) {
        try? Self.write(Array(("\r\u{1B}[2K" + Format.printable(line)).utf8), to: STDERR_FILENO)
    }

    /// Writes all of `bytes` to `descriptor`, through interruptions and partial writes, waiting on
    /// a non-blocking one.
    /// - Throws: ``OutputError`` when the descriptor refuses them.
    private static func write(_ bytes: [UInt8], to descriptor: Int32) throws {
        try bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Foundation.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    if errno == EAGAIN || errno == EWOULDBLOCK {
                        var ready = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
                        _ = poll(&ready, 1, -1)
                        continue
                    }
                    throw OutputError(reason: String(cString: strerror(errno)))
                }
                offset += written
            }
        }
    }
    /// Whether standard output is a terminal (`isatty(1)`): bold headings only then.
    public var outputIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }
    /// Whether standard error is a terminal (`isatty(2)`): progress bars only then.
    public var errorIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }
}

extension Console {
    /// Writes each of the lines with ``out(_:)``: a console that keeps lines (a test's) sees them
    /// one by one.
    public func out(encodedLines bytes: [UInt8]) throws {
        for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast() {
            out(String(decoding: line, as: UTF8.self))
        }
    }
    /// Writes the CLI's own multi-line text (help, usage) to standard output a line at a time, so
    /// its line breaks stay line breaks while each line is still escaped like any other.
    public func out(lines text: String) {
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) { out(String(line)) }
    }
    /// Writes the CLI's own multi-line text to standard error a line at a time.
    public func err(lines text: String) {
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) { err(String(line)) }
    }
}

/// Text helpers for tables, numbers and progress bars.
public enum Format {
    /// The line with every control character (C0, DEL, C1) and every bidirectional control
    /// (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069) written as `\uXXXX`: data a tenant
    /// stored (a name, an actor) cannot move an auditor's cursor, recolour the screen or reverse
    /// text. In a JSON line those characters only occur inside strings, where `\uXXXX` is the same
    /// character, so machine output stays valid and means the same.
    public static func printable(_ line: String) -> String {
        // Most lines hold nothing to escape, which their bytes tell a word at a time.
        var line = line
        if line.withUTF8({ firstUnsafe(in: $0, newlines: false) }) == nil { return line }
        func isUnsafe(_ scalar: Unicode.Scalar) -> Bool {
            let value = scalar.value
            return value < 0x20 || (0x7F...0x9F).contains(value) || value == 0x061C || value == 0x200E
                || value == 0x200F
                || (0x202A...0x202E).contains(value) || (0x2066...0x2069).contains(value)
        }
        guard line.unicodeScalars.contains(where: isUnsafe) else { return line }
        var out = String.UnicodeScalarView()
        for scalar in line.unicodeScalars {
            if isUnsafe(scalar) {
                out.append(contentsOf: "\\u".unicodeScalars)
                out.append(contentsOf: String(format: "%04x", scalar.value).unicodeScalars)
            } else {
                out.append(scalar)
            }
        }
        return String(out)
    }

    /// ``printable(_:)`` of each line of `bytes` (UTF-8 lines, each ending in a newline), the
    /// newlines kept: the bytes themselves when no line has anything to escape, which is found by
    /// looking at eight bytes at a time.
    public static func printable(lines bytes: [UInt8]) -> [UInt8] {
        guard let first = firstUnsafe(in: bytes) else { return bytes }
        // Lines before the first one to escape are kept as they are.
        let start = bytes[..<first].lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0
        var out = Array(bytes[..<start])
        for line in bytes[start...].split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast() {
            out += printable(String(decoding: line, as: UTF8.self)).utf8
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }

    /// Where the first byte sequence ``printable(_:)`` would escape starts in `bytes` (newlines
    /// aside), or nil: a control byte, DEL, or the UTF-8 of a C1 control or a bidirectional one.
    static func firstUnsafe(in bytes: [UInt8]) -> Int? {
        bytes.withUnsafeBufferPointer { firstUnsafe(in: $0, newlines: true) }
    }

    /// ``firstUnsafe(in:)`` of a buffer; a newline is escaped too unless `newlines` allows it.
    static func firstUnsafe(in buffer: UnsafeBufferPointer<UInt8>, newlines: Bool) -> Int? {
        let count = buffer.count
        guard let base = buffer.baseAddress else { return nil }
        var index = 0
        while true {
            // Plain ASCII text (no byte below 0x20, DEL or above) is passed a word at a time.
            index = TextRules.printableASCIIEnd(buffer, from: index)
            guard index < count else { return nil }
            let byte = base[index]
            func next(_ offset: Int) -> UInt8 { index + offset < count ? base[index + offset] : 0 }
            switch byte {
            case UInt8(ascii: "\n") where newlines: break
            case 0..<0x20, 0x7F: return index
            case 0xC2 where (0x80...0x9F).contains(next(1)): return index  // C1 controls
            case 0xD8 where next(1) == 0x9C: return index  // U+061C
            case 0xE2:
                // Compared in place: an array literal here was made anew for every E2 byte (a
                // dash, a quotation mark, a symbol), a quarter of `replay --json`'s time on text
                // outside ASCII.
                let (second, third) = (next(1), next(2))
                if second == 0x80 && (third == 0x8E || third == 0x8F || (0xAA...0xAE).contains(third)) {
                    return index  // U+200E, U+200F, U+202A–U+202E
                }
                if second == 0x81 && (0xA6...0xA9).contains(third) { return index }  // U+2066–U+2069
                // A whole character is passed; a lead without its continuations only itself.
                index += (0x80...0xBF).contains(second) && (0x80...0xBF).contains(third) ? 3 : 1
                continue
            case 0xC3...0xD7, 0xD9...0xDF:
                // A two-byte character that is never escaped is passed whole.
                index += (0x80...0xBF).contains(next(1)) ? 2 : 1
                continue
            default: break
            }
            index += 1
        }
    }

    /// Left-aligned columns under a header, two spaces apart, aligned on a terminal: widths are
    /// counted in terminal columns (``columns(_:)``), so a cell of CJK text or emoji takes two a
    /// character and the next column still lines up.
    public static func table(_ header: [String], _ rows: [[String]]) -> [String] {
        let measured = ([header] + rows).map { $0.map(columns) }
        var widths = measured[0]
        for row in measured.dropFirst() {
            for (index, width) in row.enumerated() where index < widths.count {
                widths[index] = max(widths[index], width)
            }
        }
        // Padded with spaces as the widths are counted (not Foundation's `padding(toLength:)`,
        // which counts UTF-16 units and cut a cell holding an emoji in half, and was half of
        // `campaign replay`'s time).
        func line(_ cells: [String], _ cellWidths: [Int]) -> String {
            var text = ""
            for (index, cell) in cells.enumerated() {
                if index > 0 { text += "  " }
                text += cell
                if index < cells.count - 1, index < widths.count {
                    text += String(repeating: " ", count: max(0, widths[index] - cellWidths[index]))
                }
            }
            return text
        }
        return zip([header] + rows, measured).map(line)
    }

    /// The terminal columns `text` takes, as a terminal draws it: two for a character that is
    /// East Asian wide or fullwidth (CJK ideographs, kana, Hangul, fullwidth forms) or an emoji
    /// shown as one (emoji presentation, or an emoji with variation selector 16), one for any other
    /// character, a base letter and its combining marks being one character.
    public static func columns(_ text: String) -> Int {
        // Most cells are ASCII: a byte a column, no grapheme breaking.
        if text.utf8.allSatisfy({ $0 < 0x80 }) { return text.utf8.count }
        var total = 0
        for character in text {
            total += character.unicodeScalars.contains(where: isWide) ? 2 : 1
        }
        return total
    }

    /// Whether a scalar makes its character two columns wide (see ``columns(_:)``).
    private static func isWide(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if value < 0x1100 { return false }
        if scalar.properties.isEmojiPresentation || value == 0xFE0F { return true }
        return wideRanges.contains { $0.contains(value) }
    }

    /// The East Asian Wide and Fullwidth blocks (Unicode's EastAsianWidth.txt, by block).
    private static let wideRanges: [ClosedRange<UInt32>] = [
        0x1100...0x115F, 0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xA000...0xA4CF,
        0xA960...0xA97F, 0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE10...0xFE19, 0xFE30...0xFE6F, 0xFF00...0xFF60,
        0xFFE0...0xFFE6, 0x1B000...0x1B2FF, 0x20000...0x2FFFD, 0x30000...0x3FFFD,
    ]

    /// A whole number with thousands separated by commas: `1,234,567`.
    public static func count<T: BinaryInteger>(_ value: T) -> String {
        let digits = Array(String(value).reversed())
        var out = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && index % 3 == 0 && digit != "-" { out.append(",") }
            out.append(digit)
        }
        return String(out.reversed())
    }

    /// A byte count in binary units, one decimal: `12.3 MiB`.
    public static func bytes(_ value: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var size = Double(value)
        var unit = 0
        while size >= 1024 && unit < units.count - 1 {
            size /= 1024
            unit += 1
        }
        return unit == 0 ? "\(value) B" : String(format: "%.1f %@", size, units[unit])
    }

    /// `[########------------] 40%  1,234/3,085 events  510,000 ev/s  ETA 3s`
    public static func progressBar(done: UInt64, total: UInt64, rate: Double, width: Int = 24) -> String {
        let fraction = total == 0 ? 1 : min(1, Double(done) / Double(total))
        let filled = Int((fraction * Double(width)).rounded(.down))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let eta = rate > 0 && total > done ? "  ETA \(Int((Double(total - done) / rate).rounded(.up)))s" : ""
        return "[\(bar)] \(Int(fraction * 100))%  \(count(done))/\(count(total)) events  \(count(Int(rate))) ev/s\(eta)"
    }
}
