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
    /// Reads one line from standard input, or nil at the end.
    func readLine() -> String?
}

/// The process's standard streams.
public struct StandardConsole: Console {
    /// Creates the console.
    public init() {}

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
    /// `Swift.readLine()`.
    public func readLine() -> String? { Swift.readLine(strippingNewline: true) }
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
