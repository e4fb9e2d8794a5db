internal import CLMDB
import Foundation

/// Everything the event store can throw.
///
/// Storage failures keep LMDB's return code and its `mdb_strerror` text; the other cases are the
/// store's own rules (expected versions, unique values, idempotency keys).
public enum EventStoreError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The stream's current version is not the one the append expected.
    /// `current` is 0 when the stream does not exist.
    case wrongExpectedVersion(streamId: String, expected: ExpectedVersion, current: UInt64)
    /// A unique value (for example a campaign name in a tenant) is already held by another owner.
    case uniqueValueTaken(key: String, owner: String)
    /// An idempotency key was used before with a request whose fingerprint differs.
    case idempotencyKeyReused(key: String)
    /// A stream id or unique key cannot be stored (empty, too long, or contains a NUL byte).
    case invalidKey(String)
    /// The disk (or the filesystem quota) is full. The transaction was rolled back.
    case storageFull(message: String)
    /// A stored record could not be decoded; the log at `position` is damaged.
    case corruptRecord(position: UInt64, reason: String)
    /// The directory is already open in this process: LMDB allows one environment per file per
    /// process, because closing a second handle would drop the first one's POSIX locks.
    case alreadyOpen(path: String)
    /// The store was closed.
    case closed
    /// Any other LMDB or system failure, with LMDB's code and message.
    case storage(code: Int32, message: String, operation: String)

    /// A human-readable one-line description.
    public var description: String {
        switch self {
        case let .wrongExpectedVersion(stream, expected, current):
            return "stream \(stream): expected version \(expected), current version \(current)"
        case let .uniqueValueTaken(key, owner): return "unique value \(key) is held by \(owner)"
        case let .idempotencyKeyReused(key): return "idempotency key \(key) was used with a different request"
        case let .invalidKey(reason): return "invalid key: \(reason)"
        case let .storageFull(message): return "storage full: \(message)"
        case let .corruptRecord(position, reason): return "corrupt record at position \(position): \(reason)"
        case let .alreadyOpen(path): return "\(path) is already open in this process"
        case .closed: return "the event store is closed"
        case let .storage(code, message, operation): return "\(operation) failed (\(code)): \(message)"
        }
    }

    /// Whether retrying the same operation later may succeed (disk space freed, storage back).
    public var isStorageUnavailable: Bool {
        switch self {
        case .storageFull, .storage, .closed: return true
        default: return false
        }
    }
}

/// The one place LMDB return codes are checked (like swift-nio's `syscall(where:)`).
enum LMDB {
    /// Throws for any non-zero return code, keeping the code and LMDB's message.
    @inline(__always)
    static func check(_ code: Int32, _ operation: @autoclosure () -> String) throws {
        guard code != MDB_SUCCESS else { return }
        throw error(code, operation())
    }

    static func error(_ code: Int32, _ operation: String) -> EventStoreError {
        let message = String(cString: mdb_strerror(code))
        if code == ENOSPC || code == EDQUOT {
            return .storageFull(message: "\(operation): \(message)")
        }
        return .storage(code: code, message: message, operation: operation)
    }

    static var mapFull: Int32 { MDB_MAP_FULL }
    static var mapResized: Int32 { MDB_MAP_RESIZED }
}

/// Internal signal that a write transaction ran out of map space and must be retried after growth.
struct MapFullSignal: Error {}
