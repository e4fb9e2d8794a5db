import CampaignEngine
import Foundation
import Synchronization

/// `campaign apply --metrics FILE`: the engine's metrics (``EngineMetrics/prometheusText(prefix:)``)
/// written to FILE at an interval and once more as the run ends, so a host that drives `apply` as a
/// co-process, and cannot call ``CampaignEngine/metrics()``, still exports them: node_exporter's
/// textfile collector reads `*.prom` files from a directory, and a sidecar may serve the file.
///
/// Each write is whole: the text goes to a temporary file beside FILE, which is then renamed over
/// it, so a reader never sees half a file. A write that fails during the run (a full disk) is tried
/// again at the next interval; only the first, before any request is read, ends the run.
final class MetricsFile: Sendable {
    let path: String
    private let engine: CampaignEngine
    private let task = Mutex<Task<Void, Never>?>(nil)
    /// Held for each write, and true once ``stop()`` made the last one: the interval's write and
    /// the last may overlap, both go through the same temporary file, and no write may start after
    /// the last (the process may end in the middle of it and leave the temporary file).
    private let writing = Mutex(false)

    /// Writes FILE once (throwing a usage error when it cannot be written there), then every `every`.
    init(path: String, engine: CampaignEngine, every: Duration) throws {
        self.path = path
        self.engine = engine
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

    /// Throws a usage error unless the folder `path` names holds FILE's place: checked before the
    /// engine opens, so a mistyped path creates no store.
    static func checkDirectory(of path: String) throws {
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
        let text = try engine.metrics().prometheusText()
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
