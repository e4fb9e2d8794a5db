import CampaignEngine
import Foundation
import Synchronization

/// `--metrics FILE`: metrics in Prometheus's text format written to FILE at an interval and once
/// more as the run ends. `campaign apply` writes the engine's
/// (``EngineMetrics/prometheusText(prefix:constantLabels:)``), so a host that drives it as a
/// co-process, and cannot call ``CampaignEngine/metrics()``, still exports them; the relay
/// (`export --to nats://… --follow`) writes its own (``RelayMetrics``). node_exporter's textfile
/// collector reads `*.prom` files from a directory, and a sidecar may serve the file.
///
/// Each write is whole: the text goes to a temporary file beside FILE, which is then renamed over
/// it, so a reader never sees half a file. A write that fails during the run (a full disk) is tried
/// again at the next interval; only the first, before any request is read, ends the run.
final class MetricsFile: Sendable {
    let path: String
    private let text: @Sendable () throws -> String
    private let task = Mutex<Task<Void, Never>?>(nil)
    /// Held for each write, and true once ``stop()`` made the last one: the interval's write and
    /// the last may overlap, both go through the same temporary file, and no write may start after
    /// the last (the process may end in the middle of it and leave the temporary file).
    private let writing = Mutex(false)

    /// Writes FILE once (throwing a usage error when it cannot be written there), then every `every`,
    /// each time with what `text` returns then.
    init(path: String, every: Duration, text: @escaping @Sendable () throws -> String) throws {
        self.path = path
        self.text = text
        do {
            try write()
        } catch {
            throw CLI.usage("--metrics \(path): \(error)")
        }
        let loop = Task.detached { [weak self] in
            while !Task.isCancelled {
                do { try await Task.sleep(for: every) } catch { return }
                try? self?.write()
            }
        }
        task.withLock { $0 = loop }
    }

    /// What `--metrics` and the options beside it ask for.
    struct Options {
        /// FILE.
        var path: String
        /// How often it is written.
        var every: Duration
        /// `--metrics-label NAME=VALUE`: a label every sample carries, so the files of several
        /// processes collected from one directory keep their series apart.
        var labels: [String: String]
    }

    /// `--metrics FILE`, `--metrics-every SECONDS` (1–3600, default 10) and `--metrics-label
    /// NAME=VALUE`, checked before any store opens, so a mistyped path creates none; nil without
    /// `--metrics`.
    static func options(_ arguments: Arguments) throws -> Options? {
        var labels: [String: String] = [:]
        if let given = arguments.options["metrics-label"] {
            guard arguments.options["metrics"] != nil else {
                throw CLI.usage("--metrics-label goes with --metrics FILE")
            }
            guard let equals = given.firstIndex(of: "=") else {
                throw CLI.usage("--metrics-label takes NAME=VALUE")
            }
            let name = String(given[..<equals])
            let value = String(given[given.index(after: equals)...])
            if let problem = PrometheusText.constantLabelProblem(name) {
                throw CLI.usage("--metrics-label \(name): \(problem)")
            }
            guard !value.isEmpty, value.utf8.count <= 128 else {
                throw CLI.usage("--metrics-label takes a value of 1 to 128 bytes")
            }
            labels[name] = value
        }
        var every = Duration.seconds(10)
        if let given = arguments.options["metrics-every"] {
            guard arguments.options["metrics"] != nil else {
                throw CLI.usage("--metrics-every goes with --metrics FILE")
            }
            guard let value = Int(given), (1...3600).contains(value) else {
                throw CLI.usage("--metrics-every takes a whole number of seconds from 1 to 3600")
            }
            every = .seconds(value)
        }
        guard let path = arguments.options["metrics"] else { return nil }
        try checkDirectory(of: path)
        return Options(path: path, every: every, labels: labels)
    }

    /// Throws a usage error unless the folder `path` names holds FILE's place.
    private static func checkDirectory(of path: String) throws {
        var isDirectory: ObjCBool = false
        guard !path.isEmpty, !path.hasSuffix("/"),
            !(FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue)
        else { throw CLI.usage("--metrics takes a file to write, not a directory: \(path)") }
        _ = try CLI.folder(of: path, option: "metrics")
    }

    /// A write that could not be made, and why.
    struct WriteError: Error, CustomStringConvertible {
        let description: String
    }

    /// Writes the metrics as they are now.
    func write() throws {
        try writing.withLock { stopped in
            guard !stopped else { return }
            try writeNow()
        }
    }

    private func writeNow() throws {
        let text = try self.text()
        // Beside FILE, so the rename stays within one file system; named for this process, so two
        // runs given one FILE never write into each other's temporary file.
        let temporary = path + ".\(getpid()).tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8)) else {
            throw WriteError(description: "cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw WriteError(description: "cannot rename \(temporary) to \(path): \(reason)")
        }
    }

    /// Stops the interval's writes and writes the metrics once more, as the run leaves them; no
    /// write starts after it returns.
    func stop() {
        task.withLock { $0?.cancel() }
        writing.withLock { stopped in
            guard !stopped else { return }
            try? writeNow()
            stopped = true
        }
    }
}
