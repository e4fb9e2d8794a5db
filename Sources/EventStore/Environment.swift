internal import CLMDB
import Foundation
import Synchronization

/// Options for opening a store directory.
public struct StoreOptions: Sendable {
    /// The map size to start with, in bytes. The map doubles by itself whenever LMDB reports
    /// `MDB_MAP_FULL`, so a small value only costs a few resizes.
    public var initialMapSize: Int
    /// The largest map the store will grow to; beyond it a write fails with ``EventStoreError/storageFull(message:)``.
    public var maximumMapSize: Int
    /// The most requests the group committer puts into one write transaction.
    public var maximumBatchSize: Int
    /// LMDB reader slots (concurrent read transactions across all processes).
    public var maximumReaders: Int
    /// Opens the environment with `MDB_RDONLY`: nothing is created or written, so a read-only
    /// tool works on a store it may not write (appends throw ``EventStoreError/readOnly``).
    public var readOnly = false
    /// Whether appends keep the Merkle tree (the default). Off only to measure what the tree costs:
    /// a store appended to without it gets its tree built up to date the next time it is opened
    /// with it.
    public var keepsMerkleTree = true
    /// How long the writer thread keeps watching for the next request after committing a
    /// transaction of one or two requests, before it sleeps (0: it sleeps at once). A client
    /// sending commands one after another finds the writer awake instead of waking it, which on a
    /// virtual machine costs 15–35 µs a wake-up (campaign-bench measures it: "a wake across cores");
    /// under concurrent load transactions hold more
    /// requests and the writer never watches. An idle store costs at most this much CPU once. A
    /// process allowed only one CPU never watches (the watch would hold the core the next request
    /// needs).
    public var writerWatch: Duration = .microseconds(250)

    /// Defaults suited to a host service: a 64 MiB starting map, growing up to 1 TiB.
    public init(
        initialMapSize: Int = 64 << 20,
        maximumMapSize: Int = 1 << 40,
        maximumBatchSize: Int = 4096,
        maximumReaders: Int = 512
    ) {
        self.initialMapSize = initialMapSize
        self.maximumMapSize = maximumMapSize
        self.maximumBatchSize = maximumBatchSize
        self.maximumReaders = maximumReaders
    }

    /// What is wrong with these options, or nil when a store can open with them (LMDB counts reader
    /// slots in 32 bits and needs at least one).
    public var problem: String? {
        guard (1...Int(Int32.max)).contains(maximumReaders) else {
            return "maximumReaders must be 1 to \(Int32.max), not \(maximumReaders)"
        }
        return nil
    }
}

/// The LMDB environment of one directory.
///
/// Invariant that makes `@unchecked Sendable` safe: the `MDB_env` pointer is set once in `init`
/// and cleared once in `close()` under `gate`'s exclusive lock; every transaction holds `gate`
/// shared for its whole life, and map resizes (which LMDB allows only with no transaction open in
/// the process) hold it exclusively. The idle readers (pointers, which a `Mutex` would have to take
/// as sent) are touched only under `poolLock`; the table handles and the set of open directories
/// are each in a `Mutex`.
final class Environment: @unchecked Sendable {
    let path: String
    private var env: OpaquePointer?
    private let gate = ReadWriteLock()
    /// Read transactions kept reset between reads (`mdb_txn_reset`) and renewed for the next one
    /// (`mdb_txn_renew`): a renew reuses the reader slot and the allocation that a begin makes
    /// afresh. Emptied (aborted) whenever `gate` is held for writing, before the map changes or the
    /// environment closes. Only touched under `poolLock`.
    private let poolLock = NSLock()
    private var idleReaders: [OpaquePointer] = []
    private static let idleReaderLimit = 16
    /// The named databases opened so far, by name.
    private let tables = Mutex<[String: MDB_dbi]>([:])
    private let maximumMapSize: Int
    private(set) var mapSize: Int

    /// The directories open in this process, by device and inode (``directoryIdentity(_:)``), so a
    /// path through a symbolic link or a bind mount is the directory it leads to.
    private static let openPaths = Mutex(Set<String>())
    /// This environment's entry in `openPaths`.
    private let identity: String

    let readOnly: Bool
    /// This environment's number in the process, which every ``Table`` it opens carries: a table
    /// handle of another store must not be read as one of this store's (its handle number may
    /// name a different table here).
    let serial = Environment.opened.add(1, ordering: .relaxed).newValue
    private static let opened = Atomic<UInt64>(0)

    init(path: String, options: StoreOptions) throws {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        let standardPath = url.path
        self.path = standardPath
        self.maximumMapSize = options.maximumMapSize
        self.readOnly = options.readOnly
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: standardPath, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw EventStoreError.cannotOpen(path: standardPath, reason: "it is a file, not a directory")
            }
            guard options.readOnly || FileManager.default.isWritableFile(atPath: standardPath) else {
                throw EventStoreError.cannotOpen(path: standardPath, reason: "the directory is not writable")
            }
        } else {
            guard !options.readOnly else {
                throw EventStoreError.cannotOpen(path: standardPath, reason: "no such directory")
            }
            do {
                try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
            } catch {
                throw EventStoreError.cannotOpen(
                    path: standardPath,
                    reason: "the directory cannot be created (\((error as NSError).localizedDescription))")
            }
        }

        if let problem = options.problem { throw EventStoreError.cannotOpen(path: standardPath, reason: problem) }
        let identity = Environment.directoryIdentity(standardPath)
        self.identity = identity
        let alreadyOpen = Environment.openPaths.withLock { !$0.insert(identity).inserted }
        if alreadyOpen { throw EventStoreError.alreadyOpen(path: standardPath) }
        var created: OpaquePointer?
        do {
            try LMDB.checkOpening(mdb_env_create(&created), "mdb_env_create")
            try LMDB.checkOpening(mdb_env_set_maxdbs(created, 256), "mdb_env_set_maxdbs")
            try LMDB.checkOpening(
                mdb_env_set_maxreaders(created, UInt32(options.maximumReaders)), "mdb_env_set_maxreaders")
            let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
            let initial = max(options.initialMapSize / pageSize, 16) * pageSize
            try LMDB.checkOpening(mdb_env_set_mapsize(created, initial), "mdb_env_set_mapsize")
            // MDB_NOTLS: read transactions are not tied to threads, because Swift tasks hop threads.
            let flags = UInt32(MDB_NOTLS) | (options.readOnly ? UInt32(MDB_RDONLY) : 0)
            try LMDB.checkOpening(mdb_env_open(created, standardPath, flags, 0o644), "mdb_env_open \(standardPath)")
            var info = MDB_envinfo()
            try LMDB.checkOpening(mdb_env_info(created, &info), "mdb_env_info")
            mapSize = info.me_mapsize
            try Environment.checkLength(created, lastPage: info.me_last_pgno, path: standardPath)
        } catch {
            if let created { mdb_env_close(created) }
            _ = Environment.openPaths.withLock { $0.remove(identity) }
            throw error
        }
        env = created
    }

    /// Throws `corrupted` when `data.mdb` ends before the last page its meta page names (a file cut
    /// short by an interrupted copy, say): LMDB maps the file, and reading a page past its end would
    /// stop the process with SIGBUS instead of an error. The file only grows while open (the size is
    /// read after the meta page), so another process's appends cannot make a whole file look short.
    static func checkLength(_ env: OpaquePointer?, lastPage: Int, path: String) throws {
        var stat = MDB_stat()
        try LMDB.checkOpening(mdb_env_stat(env, &stat), "mdb_env_stat")
        let needed = (lastPage + 1) * Int(stat.ms_psize)
        let file = path + "/data.mdb"
        guard let size = (try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? Int else { return }
        guard size >= needed else {
            throw EventStoreError.corrupted(
                message: "\(file) is \(size) bytes, but its last page ends at byte \(needed): the file was cut short")
        }
    }

    /// Closes the environment: waits for open transactions, then releases LMDB's handle.
    func close() {
        gate.withWriteLock {
            abortIdleReaders()
            if let env { mdb_env_close(env) }
            env = nil
        }
        _ = Environment.openPaths.withLock { $0.remove(identity) }
    }

    /// The directory at `path` as the file system knows it: its device and inode, whatever path
    /// leads there (LMDB must not open one environment twice in a process: closing either would
    /// drop the other's locks). The path itself when it cannot be read.
    static func directoryIdentity(_ path: String) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { return path }
        return "\(info.st_dev):\(info.st_ino)"
    }

    deinit {
        if env != nil { close() }
    }

    /// Opens (creating if needed) a named database and remembers its handle. In a read-only
    /// environment nothing is created: a table that does not exist yet is nil.
    func table(named name: String) throws -> MDB_dbi? {
        if let dbi = tables.withLock({ $0[name] }) { return dbi }
        let dbi: MDB_dbi?
        if readOnly {
            dbi = try openExistingTable(name)
        } else {
            // A handle opened in a write transaction becomes usable by all once that transaction commits.
            dbi = try write { txn in
                var dbi = MDB_dbi()
                try LMDB.check(mdb_dbi_open(txn.pointer, name, UInt32(MDB_CREATE), &dbi), "mdb_dbi_open \(name)")
                return dbi
            }
        }
        if let dbi { tables.withLock { $0[name] = dbi } }
        return dbi
    }

    /// Opens a named database that exists (creating nothing) and remembers its handle; nil when
    /// there is none, or when the name is a plain key of LMDB's main database rather than a table.
    func existingTable(named name: String) throws -> MDB_dbi? {
        if let dbi = tables.withLock({ $0[name] }) { return dbi }
        let dbi = try openExistingTable(name)
        if let dbi { tables.withLock { $0[name] = dbi } }
        return dbi
    }

    /// The tables opened so far, by name.
    var openTables: [(name: String, dbi: MDB_dbi)] {
        tables.withLock { $0.map { ($0.key, $0.value) } }.sorted { $0.name < $1.name }
    }

    /// Opens a table that must already exist, in a read transaction that is committed (not
    /// aborted), which is what keeps the handle open after it.
    private func openExistingTable(_ name: String) throws -> MDB_dbi? {
        try gate.withReadLock {
            guard let env else { throw EventStoreError.closed }
            var pointer: OpaquePointer?
            try LMDB.check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &pointer), "mdb_txn_begin(read)")
            var dbi = MDB_dbi()
            let code = mdb_dbi_open(pointer, name, 0, &dbi)
            // Incompatible: the name is a plain key of the main database (a marker), not a table.
            if code == MDB_NOTFOUND || code == MDB_INCOMPATIBLE {
                mdb_txn_abort(pointer)
                return nil
            }
            guard code == MDB_SUCCESS else {
                mdb_txn_abort(pointer)
                throw LMDB.error(code, "mdb_dbi_open \(name)")
            }
            try LMDB.check(mdb_txn_commit(pointer), "mdb_txn_commit(read)")
            return dbi
        }
    }

    /// Runs `body` in a read-only transaction, aborted when the body returns.
    func read<T>(_ body: (Txn) throws -> T) throws -> T {
        while true {
            let outcome: T? = try gate.withReadLock {
                guard let env else { throw EventStoreError.closed }
                var pointer = poolLock.withLock { idleReaders.popLast() }
                if let idle = pointer {
                    let code = mdb_txn_renew(idle)
                    if code != MDB_SUCCESS {
                        mdb_txn_abort(idle)
                        pointer = nil
                        if code == MDB_MAP_RESIZED { return nil }
                        try LMDB.check(code, "mdb_txn_renew")
                    }
                }
                if pointer == nil {
                    let code = mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &pointer)
                    if code == MDB_MAP_RESIZED { return nil }
                    try LMDB.check(code, "mdb_txn_begin(read)")
                }
                let txn = Txn(pointer!, writable: false)
                defer { release(txn.pointer) }
                return try body(txn)
            }
            if let outcome { return outcome }
            try adoptMapSizeOfOtherProcess()
        }
    }

    /// Runs `body` in a write transaction, committed when the body returns and aborted when it
    /// throws. When the map is full the transaction is aborted, the map grows, and `body` runs again,
    /// so `body` must be repeatable (it is: nothing it did survived the abort).
    func write<T>(_ body: (Txn) throws -> T) throws -> T {
        guard !readOnly else { throw EventStoreError.readOnly }
        while true {
            let attempt: WriteAttempt<T> = try gate.withReadLock {
                guard let env else { throw EventStoreError.closed }
                var pointer: OpaquePointer?
                let code = mdb_txn_begin(env, nil, 0, &pointer)
                if code == MDB_MAP_RESIZED { return .resized }
                try LMDB.check(code, "mdb_txn_begin(write)")
                let txn = Txn(pointer!, writable: true)
                let value: T
                do {
                    value = try body(txn)
                } catch is MapFullSignal {
                    mdb_txn_abort(txn.pointer)
                    return .mapFull
                } catch {
                    mdb_txn_abort(txn.pointer)
                    throw error
                }
                let commit = mdb_txn_commit(txn.pointer)
                if commit == MDB_MAP_FULL { return .mapFull }
                try LMDB.check(commit, "mdb_txn_commit")
                return .done(value)
            }
            switch attempt {
            case let .done(value): return value
            case .mapFull: try growMap()
            case .resized: try adoptMapSizeOfOtherProcess()
            }
        }
    }

    /// Doubles the map. LMDB requires that no transaction of this process is open, hence the
    /// exclusive gate.
    private func growMap() throws {
        try gate.withWriteLock {
            abortIdleReaders()
            guard let env else { throw EventStoreError.closed }
            var info = MDB_envinfo()
            try LMDB.check(mdb_env_info(env, &info), "mdb_env_info")
            guard info.me_mapsize < maximumMapSize else {
                throw EventStoreError.storageFull(message: "map size limit of \(maximumMapSize) bytes reached")
            }
            let grown = min(info.me_mapsize * 2, maximumMapSize)
            try LMDB.check(mdb_env_set_mapsize(env, grown), "mdb_env_set_mapsize(\(grown))")
            mapSize = grown
        }
    }

    /// Ends a read: reset and kept for the next read while the pool has room, aborted otherwise.
    private func release(_ reader: OpaquePointer) {
        mdb_txn_reset(reader)
        let kept = poolLock.withLock {
            guard idleReaders.count < Environment.idleReaderLimit else { return false }
            idleReaders.append(reader)
            return true
        }
        if !kept { mdb_txn_abort(reader) }
    }

    /// Aborts every idle read transaction (called with `gate` held for writing).
    private func abortIdleReaders() {
        let idle = poolLock.withLock {
            defer { idleReaders.removeAll() }
            return idleReaders
        }
        for reader in idle { mdb_txn_abort(reader) }
    }

    /// Another process grew the map: take its size (`mdb_env_set_mapsize(env, 0)`).
    private func adoptMapSizeOfOtherProcess() throws {
        try gate.withWriteLock {
            abortIdleReaders()
            guard let env else { throw EventStoreError.closed }
            try LMDB.check(mdb_env_set_mapsize(env, 0), "mdb_env_set_mapsize(0)")
            var info = MDB_envinfo()
            try LMDB.check(mdb_env_info(env, &info), "mdb_env_info")
            mapSize = info.me_mapsize
        }
    }

    /// Facts for `campaign stats`: map size, pages in use, page size.
    func usage() throws -> (mapSize: Int, usedBytes: Int, pageSize: Int) {
        try gate.withReadLock {
            guard let env else { throw EventStoreError.closed }
            var info = MDB_envinfo()
            var stat = MDB_stat()
            try LMDB.check(mdb_env_info(env, &info), "mdb_env_info")
            try LMDB.check(mdb_env_stat(env, &stat), "mdb_env_stat")
            let pageSize = Int(stat.ms_psize)
            return (info.me_mapsize, (info.me_last_pgno + 1) * pageSize, pageSize)
        }
    }

    /// Writes a compacted copy of the environment (free pages dropped) into `directory` as `data.mdb`.
    ///
    /// The copy is written to `data.mdb.partial`, flushed, and linked as `data.mdb` (never over an
    /// existing one), and the directory flushed after it: `data.mdb` is there only once it is whole
    /// and durable. A crash part-way leaves the partial file, which the next copy writes over.
    func copyCompacted(to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let partial = directory + "/" + EventStore.partialCopyName
        let fd = open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        try Environment.systemCall(fd >= 0, "open \(partial)")
        do {
            defer { Glibc.close(fd) }
            try gate.withReadLock {
                guard let env else { throw EventStoreError.closed }
                try LMDB.check(mdb_env_copyfd2(env, fd, UInt32(MDB_CP_COMPACT)), "mdb_env_copyfd2 \(partial)")
            }
            try Environment.systemCall(fsync(fd) == 0, "fsync \(partial)")
            try Environment.systemCall(link(partial, directory + "/data.mdb") == 0, "link \(directory)/data.mdb")
        } catch {
            unlink(partial)
            throw error
        }
        unlink(partial)
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try Environment.systemCall(directoryFD >= 0, "open \(directory)")
        defer { Glibc.close(directoryFD) }
        try Environment.systemCall(fsync(directoryFD) == 0, "fsync \(directory)")
    }

    /// Throws the system error in `errno`, classified like LMDB's, unless `succeeded`.
    private static func systemCall(_ succeeded: Bool, _ operation: @autoclosure () -> String) throws {
        guard !succeeded else { return }
        throw LMDB.error(errno, operation(), opening: true)
    }
}

/// How one try at a write transaction ended.
private enum WriteAttempt<T> {
    case done(T)
    case mapFull
    case resized
}

/// A pthread read-write lock: many transactions share it, a map resize takes it alone.
final class ReadWriteLock: @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)

    init() {
        lock.initialize(to: pthread_rwlock_t())
        precondition(pthread_rwlock_init(lock, nil) == 0, "pthread_rwlock_init failed")
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    func withReadLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    func withWriteLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
}
