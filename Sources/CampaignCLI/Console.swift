import Foundation

/// Where a command writes. The real console writes to the process's standard streams; progress
/// and colour appear only when the stream is a terminal.
public protocol Console: Sendable {
    /// Writes a line to standard output.
    func out(_ line: String)
    /// Writes a line to standard error.
    func err(_ line: String)
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
    /// A line (without its newline).
    case line(String)
    /// A line longer than the limit, skipped; its length in bytes.
    case tooLong(Int)
    /// The end of the input.
    case end
}

/// Splits a byte stream into lines of bounded size, reading a chunk at a time.
///
/// Invariant that makes `@unchecked Sendable` safe: the buffer is touched only under `lock`.
public final class LineReader: @unchecked Sendable {
    private let lock = NSLock()
    private let read: () -> Data
    private var buffer = [UInt8]()
    private var exhausted = false

    /// Reads from `read`, which returns an empty `Data` at the end of the input.
    public init(read: @escaping () -> Data) { self.read = read }

    /// The next line, or `.tooLong` (the line is consumed but not kept), or `.end`. Each byte is
    /// scanned for a newline once, so a long line costs linear time.
    public func next(limit: Int) -> LineRead {
        lock.withLock {
            var skipped = 0
            var scanned = 0
            while true {
                if let newline = buffer[scanned...].firstIndex(of: UInt8(ascii: "\n")) {
                    let length = skipped + newline
                    let line = length > limit || skipped > 0 ? nil : String(decoding: buffer[..<newline], as: UTF8.self)
                    buffer.removeSubrange(...newline)
                    return line.map(LineRead.line) ?? .tooLong(length)
                }
                scanned = buffer.count
                if buffer.count > limit {
                    skipped += buffer.count
                    buffer.removeAll(keepingCapacity: true)
                    scanned = 0
                }
                if exhausted {
                    guard !buffer.isEmpty || skipped > 0 else { return .end }
                    let length = skipped + buffer.count
                    let line = length > limit || skipped > 0 ? nil : String(decoding: buffer, as: UTF8.self)
                    buffer.removeAll()
                    return line.map(LineRead.line) ?? .tooLong(length)
                }
                let chunk = read()
                if chunk.isEmpty { exhausted = true } else { buffer.append(contentsOf: chunk) }
            }
        }
    }
}

/// The process's standard streams.
public struct StandardConsole: Console {
    private let input = LineReader { FileHandle.standardInput.readData(ofLength: 1 << 16) }

    /// Creates the console.
    public init() {}

    /// Reads a bounded line from standard input, a chunk at a time.
    public func readLine(limit: Int) -> LineRead { input.next(limit: limit) }

    /// Writes to standard output, unbuffered, so a pipe sees each line at once.
    public func out(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
    /// Writes to standard error.
    public func err(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
    /// Overwrites the line on standard error.
    public func progress(_ line: String) { FileHandle.standardError.write(Data(("\r\u{1B}[2K" + line).utf8)) }
    /// `isatty(1)`.
    public var outputIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }
    /// `isatty(2)`.
    public var errorIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }
}

/// Text helpers for tables, numbers and progress bars.
public enum Format {
    /// Left-aligned columns under a header, two spaces apart.
    public static func table(_ header: [String], _ rows: [[String]]) -> [String] {
        var widths = header.map(\.count)
        for row in rows { for (index, cell) in row.enumerated() where index < widths.count { widths[index] = max(widths[index], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        return [line(header)] + rows.map(line)
    }

    /// `1,234,567`.
    public static func count<T: BinaryInteger>(_ value: T) -> String {
        let digits = Array(String(value).reversed())
        var out = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && index % 3 == 0 && digit != "-" { out.append(",") }
            out.append(digit)
        }
        return String(out.reversed())
    }

    /// `12.3 MiB`.
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
