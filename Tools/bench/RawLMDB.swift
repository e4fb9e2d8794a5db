import CLMDB
import Foundation

/// The physical limit: plain LMDB, no engine, the same disk and value sizes. Only the benchmark
/// and `EventStore` call `mdb_*`.
final class RawLMDB {
    private var env: OpaquePointer?
    private var log = MDB_dbi()
    private var index = MDB_dbi()

    init(path: String) throws {
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try check(mdb_env_create(&env))
        try check(mdb_env_set_maxdbs(env, 4))
        try check(mdb_env_set_mapsize(env, 16 << 30))
        try check(mdb_env_open(env, path, UInt32(MDB_NOTLS), 0o644))
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, 0, &txn))
        try check(mdb_dbi_open(txn, "log", UInt32(MDB_CREATE), &log))
        try check(mdb_dbi_open(txn, "index", UInt32(MDB_CREATE), &index))
        try check(mdb_txn_commit(txn))
    }

    deinit { mdb_env_close(env) }

    struct Failure: Error { let code: Int32 }

    private func check(_ code: Int32) throws { if code != 0 { throw Failure(code: code) } }

    private var position: UInt64 = 0
    private var versions = [UInt64](repeating: 0, count: 1_000)

    /// Appends `count` values of `valueSize` bytes in transactions of `batch`, each committed
    /// durably; with `indexed`, also a stream-index entry (stream ‖ 0 ‖ version → position) over
    /// 1,000 random streams, the layout EventStore uses. Returns the seconds taken.
    func append(count: Int, batch: Int, valueSize: Int, indexed: Bool) throws -> Double {
        var value = [UInt8](repeating: 0x61, count: valueSize)
        var generator = SystemRandomNumberGenerator()
        let started = DispatchTime.now().uptimeNanoseconds
        var written = 0
        while written < count {
            var txn: OpaquePointer?
            try check(mdb_txn_begin(env, nil, 0, &txn))
            for _ in 0..<min(batch, count - written) {
                position += 1
                var key = position.bigEndian
                try withUnsafeMutableBytes(of: &key) { keyBytes in
                    try value.withUnsafeMutableBytes { valueBytes in
                        var k = MDB_val(mv_size: 8, mv_data: keyBytes.baseAddress)
                        var v = MDB_val(mv_size: valueBytes.count, mv_data: valueBytes.baseAddress)
                        try check(mdb_put(txn, log, &k, &v, UInt32(MDB_APPEND)))
                    }
                }
                if indexed {
                    let stream = Int(generator.next() % 1_000)
                    versions[stream] += 1
                    var indexKey = Array("tenant:cmp_\(stream)".utf8) + [0]
                    withUnsafeBytes(of: versions[stream].bigEndian) { indexKey.append(contentsOf: $0) }
                    var target = position.bigEndian
                    try indexKey.withUnsafeMutableBytes { keyBytes in
                        try withUnsafeMutableBytes(of: &target) { valueBytes in
                            var k = MDB_val(mv_size: keyBytes.count, mv_data: keyBytes.baseAddress)
                            var v = MDB_val(mv_size: 8, mv_data: valueBytes.baseAddress)
                            try check(mdb_put(txn, index, &k, &v, UInt32(MDB_NOOVERWRITE)))
                        }
                    }
                }
                written += 1
            }
            try check(mdb_txn_commit(txn))
        }
        return Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
    }

    /// The latency of one durable transaction holding one value, in milliseconds, `samples` times.
    func singleTransactionLatencies(samples: Int, valueSize: Int) throws -> [Double] {
        try (0..<samples).map { _ in
            let started = DispatchTime.now().uptimeNanoseconds
            _ = try append(count: 1, batch: 1, valueSize: valueSize, indexed: false)
            return Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6
        }
    }

    /// Reads every value with a cursor; returns values per second.
    func scan() throws -> Double {
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn))
        defer { mdb_txn_abort(txn) }
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, log, &cursor))
        defer { mdb_cursor_close(cursor) }
        var k = MDB_val()
        var v = MDB_val()
        var count = 0
        var checksum = 0
        let started = DispatchTime.now().uptimeNanoseconds
        var code = mdb_cursor_get(cursor, &k, &v, MDB_FIRST)
        while code == 0 {
            count += 1
            checksum &+= v.mv_size
            code = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
        }
        precondition(checksum > 0 || count == 0)
        return Double(count) / (Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9)
    }
}
