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
    /// LMDB found its file damaged (`MDB_CORRUPTED`, `MDB_PAGE_NOTFOUND`, `MDB_INVALID`,
    /// `MDB_PANIC`, `MDB_VERSION_MISMATCH`). Not retryable: the store refuses appends from then on.
    case corrupted(message: String)
    /// The store refuses appends: its hash chain did not verify (on open, the head record; or a
    /// full `verifyChain`), or LMDB reported damage. Lifted only by a `verifyChain` that passes.
    case writesRefused(reason: String)
    /// The store was opened read-only.
    case readOnly
    /// A ``Table`` cannot be used in this transaction: it belongs to another store, or was opened
    /// after the transaction began.
    case tableUnavailable(name: String, reason: String)
    /// The directory cannot be used as a store (it is a file, or may not be created or written).
    case cannotOpen(path: String, reason: String)
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
        case let .corrupted(message): return "the store is damaged: \(message)"
        case let .writesRefused(reason): return "the store refuses writes: \(reason)"
        case .readOnly: return "the store is open read-only"
        case let .tableUnavailable(name, reason): return "table \(name) cannot be used here: \(reason)"
        case let .cannotOpen(path, reason): return "cannot open a store at \(path): \(reason)"
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

/// The one place LMDB return codes are classified (like swift-nio's `syscall(where:)`):
/// - full (`ENOSPC`, `EDQUOT`) → ``EventStoreError/storageFull(message:)``, retryable;
/// - damage (`MDB_CORRUPTED`, `MDB_PAGE_NOTFOUND`, `MDB_INVALID`, `MDB_PANIC`,
///   `MDB_VERSION_MISMATCH`) → ``EventStoreError/corrupted(message:)``, not retryable;
/// - misuse by this code (`MDB_BAD_TXN`, `MDB_BAD_VALSIZE`, `MDB_BAD_DBI`, `MDB_INCOMPATIBLE`, and
///   `EINVAL` outside of opening) → a trap: a bug must not be reported as trouble to retry;
/// - anything else (`EIO`, `EACCES`, `ENOMEM`, `MDB_READERS_FULL`, `MDB_TXN_FULL`, …) →
///   ``EventStoreError/storage(code:message:operation:)``, storage unavailable, retryable.
enum LMDB {
    /// Throws for any non-zero return code, classified.
    @inline(__always)
    static func check(_ code: Int32, _ operation: @autoclosure () -> String) throws {
        guard code != MDB_SUCCESS else { return }
        throw error(code, operation())
    }

    /// Like ``check(_:_:)`` while opening an environment, where `EINVAL` means a bad path or file,
    /// not a bug.
    static func checkOpening(_ code: Int32, _ operation: @autoclosure () -> String) throws {
        guard code != MDB_SUCCESS else { return }
        throw error(code, operation(), opening: true)
    }

    static func error(_ code: Int32, _ operation: String, opening: Bool = false) -> EventStoreError {
        let message = String(cString: mdb_strerror(code))
        switch code {
        case ENOSPC, EDQUOT:
            return .storageFull(message: "\(operation): \(message)")
        case MDB_CORRUPTED, MDB_PAGE_NOTFOUND, MDB_INVALID, MDB_PANIC, MDB_VERSION_MISMATCH:
            return .corrupted(message: "\(operation): \(message)")
        case MDB_BAD_TXN, MDB_BAD_VALSIZE, MDB_BAD_DBI, MDB_INCOMPATIBLE:
            preconditionFailure("LMDB misuse in \(operation): \(message) (\(code))")
        case EINVAL where !opening:
            preconditionFailure("LMDB misuse in \(operation): \(message) (\(code))")
        default:
            return .storage(code: code, message: message, operation: operation)
        }
    }

    static var mapFull: Int32 { MDB_MAP_FULL }
    static var mapResized: Int32 { MDB_MAP_RESIZED }
}

/// Internal signal that a write transaction ran out of map space and must be retried after growth.
struct MapFullSignal: Error {}
