import CLMDB
import CampaignCLI
import Foundation

/// The physical limit: plain LMDB, no engine, the same disk and value sizes. Only the benchmark
/// and `EventStore` call `mdb_*`.
final class RawLMDB {
    private var env: OpaquePointer?
    private var log = MDB_dbi()
    private var heads = MDB_dbi()
    private var links = MDB_dbi()
    private var marks = MDB_dbi()

    init(path: String) throws {
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try check(mdb_env_create(&env))
        try check(mdb_env_set_maxdbs(env, 8))
        try check(mdb_env_set_mapsize(env, 16 << 30))
        try check(mdb_env_open(env, path, UInt32(MDB_NOTLS), 0o644))
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, 0, &txn))
        try check(mdb_dbi_open(txn, "log", UInt32(MDB_CREATE), &log))
        try check(mdb_dbi_open(txn, "heads", UInt32(MDB_CREATE), &heads))
        try check(mdb_dbi_open(txn, "links", UInt32(MDB_CREATE), &links))
        try check(mdb_dbi_open(txn, "marks", UInt32(MDB_CREATE), &marks))
        try check(mdb_txn_commit(txn))
    }

    deinit { mdb_env_close(env) }

    struct Failure: Error { let code: Int32 }

    private func check(_ code: Int32) throws { if code != 0 { throw Failure(code: code) } }

    private var position: UInt64 = 0
    private var streamHeads = [(version: UInt64, position: UInt64)](repeating: (0, 0), count: 1_000)

    /// Stores `value` under `key` in `dbi`.
    private func put(
        _ txn: OpaquePointer?, _ dbi: MDB_dbi, _ key: [UInt8], _ value: [UInt8], _ flags: Int32 = 0
    )
        throws
    {
        var key = key
        var value = value
        try key.withUnsafeMutableBytes { keyBytes in
            try value.withUnsafeMutableBytes { valueBytes in
                var k = MDB_val(mv_size: keyBytes.count, mv_data: keyBytes.baseAddress)
                var v = MDB_val(mv_size: valueBytes.count, mv_data: valueBytes.baseAddress)
                try check(mdb_put(txn, dbi, &k, &v, UInt32(flags)))
            }
        }
    }

    /// Appends `count` values of `valueSize` bytes in transactions of `batch`, each committed
    /// durably; with `indexed`, also the stream index EventStore writes, over 1,000 random streams:
    /// the stream's head (stream → version ‖ position), a link (position → the stream's position
    /// before) appended, and a mark (stream ‖ 0 ‖ version → position) every 64th version. Returns
    /// the seconds taken.
    func append(count: Int, batch: Int, valueSize: Int, indexed: Bool) throws -> Double {
        var value = [UInt8](repeating: 0x61, count: valueSize)
        var generator = SeededRandom(seed: UInt64(batch))
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
                    let before = streamHeads[stream]
                    let version = before.version + 1
                    let streamKey = Array("tenant:cmp_\(stream)".utf8)
                    try put(txn, links, .bigEndian(position), .bigEndian(before.position), MDB_APPEND)
                    if version % 64 == 0 {
                        try put(txn, marks, streamKey + [0] + .bigEndian(version), .bigEndian(position))
                    }
                    try put(txn, heads, streamKey, .bigEndian(version) + .bigEndian(position))
                    streamHeads[stream] = (version, position)
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

extension Array where Element == UInt8 {
    /// An integer's big-endian bytes, so LMDB's byte order is numeric order.
    static func bigEndian(_ value: UInt64) -> [UInt8] { Swift.withUnsafeBytes(of: value.bigEndian) { Array($0) } }
}
