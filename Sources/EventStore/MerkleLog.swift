internal import CLMDB
import Hashing

/// The RFC 9162 Merkle tree over the log, kept in the append transaction (`tree`). Leaf i (position
/// i + 1) hashes the record's own chain hash: SHA-256(0x00 ‖ hash). Leaves have no entries of their
/// own: a node of level 1 stores its two leaves (64 bytes; its hash is SHA-256(0x01 ‖ them)), so the
/// tree keeps what the log held even when the log is rewritten. Every interior node is stored under
/// its creation order, a u64 big-endian key that only grows (so each put is an `MDB_APPEND`): node
/// (level l ≥ 1, index i) is made when leaf j = (i + 1)·2^l − 1 arrives, after the j − popcount(j)
/// interior nodes of the leaves before it, at order j − popcount(j) + l − 1. The tree's size, and an
/// odd size's last leaf, follow the last node's bytes (``Trailer``). A tree of n events holds
/// n − popcount(n) nodes; any subtree a proof needs is one read.
struct MerkleLog: Sendable {
    let nodes: MDB_dbi
    /// The log's records, where the leaves come from.
    let events: MDB_dbi

    private static let sizeKey: [UInt8] = [0]

    /// Where interior node (`level` ≥ 1, `index`) is stored.
    static func order(level: Int, index: UInt64) -> UInt64 {
        let lastLeaf = (index + 1) << UInt64(level) - 1
        return lastLeaf - UInt64(lastLeaf.nonzeroBitCount) + UInt64(level) - 1
    }

    /// The tree's trailer: its size, u64 big-endian, preceded for an odd size by its last leaf (which
    /// no level-1 node holds yet). It rides on the last node's value (after the node's own bytes), so
    /// each commit writes only the B-tree page its new nodes go to; a tree with no interior node yet
    /// (fewer than two events) keeps it under the key 0x00 instead.
    struct Trailer {
        var size: UInt64
        var lastLeaf: [UInt8]?

        var bytes: [UInt8] { (lastLeaf ?? []) + .bigEndian(size) }

        /// Reads the trailer at the end of `value`; nil when it has none.
        init?(endOf value: UnsafeRawBufferPointer) {
            guard value.count >= 8 else { return nil }
            size = value.bigEndianUInt64(at: value.count - 8)
            guard size & 1 == 1 else {
                lastLeaf = nil
                return
            }
            guard value.count >= 40 else { return nil }
            lastLeaf = Array(value[(value.count - 40)..<(value.count - 8)])
        }

        init(size: UInt64, lastLeaf: [UInt8]?) {
            self.size = size
            self.lastLeaf = lastLeaf
        }

    }

    /// Interior nodes a tree of `size` leaves has.
    static func interiorCount(_ size: UInt64) -> UInt64 { size - UInt64(size.nonzeroBitCount) }

    /// The stored trailer (size 0 when the tree is empty).
    func trailer(in txn: Txn) throws -> Trailer {
        try txn.withCursor(nodes) { cursor in
            guard let last = try cursor.last() else { return Trailer(size: 0, lastLeaf: nil) }
            guard let trailer = Trailer(endOf: last.value) else {
                throw EventStoreError.corruptRecord(position: 0, reason: "the tree's last entry has no size")
            }
            return trailer
        }
    }

    /// The leaves the stored tree covers.
    func size(in txn: Txn) throws -> UInt64 { try trailer(in: txn).size }

    /// Records the size reached (and an odd size's last leaf) on the last node, taking the trailer
    /// off the node that had it at `previousSize`; once per transaction that appends, after its nodes.
    func setSize(of frontier: MerkleFrontier, from previousSize: UInt64, in txn: Txn) throws {
        let trailer = Trailer(size: frontier.size, lastLeaf: frontier.size & 1 == 1 ? frontier.peaks.last : nil)
        let oldCount = MerkleLog.interiorCount(previousSize)
        let oldLength = previousSize & 1 == 1 ? 40 : 8
        let count = MerkleLog.interiorCount(frontier.size)
        if oldCount > 0, oldCount != count {
            let key = [UInt8].bigEndian(oldCount - 1)
            if let value = try txn.get(nodes, key) { try txn.put(nodes, key, Array(value.dropLast(oldLength))) }
        }
        guard count > 0 else {
            try txn.put(nodes, MerkleLog.sizeKey, trailer.bytes)
            return
        }
        // The first node takes the trailer over from the key that held it while there was none.
        if oldCount == 0 { _ = try txn.delete(nodes, MerkleLog.sizeKey) }
        let key = [UInt8].bigEndian(count - 1)
        guard var value = try txn.get(nodes, key) else {
            throw EventStoreError.corruptRecord(position: frontier.size, reason: "the tree's last node is missing")
        }
        if oldCount == count { value.removeLast(oldLength) }
        try txn.put(nodes, key, value + trailer.bytes)
    }

    /// The hash of the complete subtree (`level`, `index`) as the tree stored it; a leaf from its
    /// level-1 node, or from its record when it has no pair yet.
    func subtree(level: Int, index: UInt64, in txn: Txn) throws -> [UInt8] {
        if level == 0 {
            let pair = MerkleLog.order(level: 1, index: index >> 1)
            if let leaf = try txn.withValue(
                nodes, .bigEndian(pair),
                { value -> [UInt8]? in
                    guard value.count == 64 else { return nil }
                    let offset = Int(index & 1) * 32
                    return Array(value[offset..<offset + 32])
                }), let leaf
            {
                return leaf
            }
            // The last leaf of an odd size is kept in the trailer.
            let trailer = try trailer(in: txn)
            if trailer.size == index + 1, let leaf = trailer.lastLeaf { return leaf }
            guard let hash = try txn.withValue(events, .bigEndian(index + 1), RecordCodec.storedHash) else {
                throw EventStoreError.corruptRecord(position: index + 1, reason: "the tree's leaf has no record")
            }
            return MerkleTree.leafHash(hash)
        }
        let order = MerkleLog.order(level: level, index: index)
        // The last node carries the trailer after its own bytes.
        let stored = try txn.withValue(nodes, .bigEndian(order)) { value -> [UInt8]? in
            switch (level, value.count) {
            case (1, 64...): MerkleTree.nodeHash(Array(value[0..<32]), Array(value[32..<64]))
            case (2..., 32...): Array(value[0..<32])
            default: nil
            }
        }
        guard let stored, let hash = stored else {
            throw EventStoreError.corruptRecord(
                position: (index << UInt64(level)) + 1, reason: "tree node \(order) is missing or damaged")
        }
        return hash
    }

    /// The stored tree as a frontier (its peaks).
    func frontier(in txn: Txn) throws -> MerkleFrontier {
        let size = try size(in: txn)
        var peaks = [[UInt8]]()
        var covered: UInt64 = 0
        for level in stride(from: 63, through: 0, by: -1) where size >> UInt64(level) & 1 == 1 {
            peaks.append(try subtree(level: level, index: covered >> UInt64(level), in: txn))
            covered += 1 << UInt64(level)
        }
        return MerkleFrontier(size: size, peaks: peaks)
    }

    /// Adds the leaf of a record with chain hash `recordHash`, storing the interior nodes it makes.
    /// The caller records the size (``setSize(of:from:in:)``) once it has added its leaves.
    func append(recordHash: [UInt8], to frontier: inout MerkleFrontier, in txn: Txn) throws {
        let leaf = MerkleTree.leafHash(recordHash)
        // An odd size: the last peak is the leaf this one pairs with.
        let left = frontier.size & 1 == 1 ? frontier.peaks.last : nil
        let size = frontier.size
        try frontier.append(leafHash: leaf) { level, index, hash in
            let order = MerkleLog.order(level: level, index: index)
            let flags = UInt32(MDB_APPEND | MDB_NOOVERWRITE)
            let stored = try withUnsafeBytes(of: order.bigEndian) { key in
                guard level == 1, let left else {
                    return try hash.withUnsafeBytes { try txn.put(nodes, key, $0, flags: flags) }
                }
                // The pair of leaves, written into the node's place in its page.
                guard let space = try txn.reserve(nodes, key, count: 64, flags: flags) else { return false }
                left.withUnsafeBytes { space.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: 32) }
                leaf.withUnsafeBytes {
                    space.baseAddress!.advanced(by: 32).copyMemory(from: $0.baseAddress!, byteCount: 32)
                }
                return true
            }
            guard stored else {
                throw EventStoreError.corruptRecord(position: size + 1, reason: "tree node \(order) already stored")
            }
        }
    }

    /// Brings the tree up to `position` from the log's records (for a store made before the tree, or
    /// appended to by an older version), at most `limit` leaves; returns the frontier reached.
    func catchUp(
        _ frontier: inout MerkleFrontier, to position: UInt64, limit: UInt64 = .max, log: EventLog, in txn: Txn
    ) throws {
        guard frontier.size < position else { return }
        let start = frontier.size
        let end = min(position, frontier.size + limit)
        var hashes = [[UInt8]]()
        try txn.withCursor(log.events) { cursor in
            var entry = try cursor.seek(atLeast: .bigEndian(frontier.size + 1))
            while let current = entry, current.key.bigEndianUInt64() <= end {
                hashes.append(RecordCodec.storedHash(current.value))
                entry = try cursor.next()
            }
        }
        guard UInt64(hashes.count) == end - frontier.size else {
            throw EventStoreError.corruptRecord(position: frontier.size + 1, reason: "the log has a gap")
        }
        for hash in hashes { try append(recordHash: hash, to: &frontier, in: txn) }
        try setSize(of: frontier, from: start, in: txn)
    }

    /// MTH of the first `size` leaves, from stored nodes.
    func root(size: UInt64, in txn: Txn) throws -> [UInt8] {
        try MerkleTree.hash(of: 0..<size) { try subtree(level: $0, index: $1, in: txn) }
    }
}

/// What the stored tree says about a position or a past tree.
public struct TreeHead: Sendable, Equatable {
    /// How many events the tree covers: positions 1 through `size`.
    public var size: UInt64
    /// RFC 9162 root hash of those events.
    public var rootHash: [UInt8]

    /// A head covering the first `size` events, with `rootHash` their RFC 9162 tree hash.
    public init(size: UInt64, rootHash: [UInt8]) {
        self.size = size
        self.rootHash = rootHash
    }
}

/// How the log compares with a checkpoint (a tree size and root that were published).
public enum TreeComparison: Sendable, Equatable {
    /// The log extends the checkpoint; the proof goes from its size to the log's current size.
    case consistent(proof: [[UInt8]], head: TreeHead)
    /// The log is shorter than the checkpoint, its first `size` events unchanged.
    case truncated(to: UInt64)
    /// Event `position` is the first that differs from what the checkpoint covered; `logSize` is the
    /// log's size now (below the checkpoint's when it was also cut).
    case rewritten(from: UInt64, logSize: UInt64)
    /// The log differs from the checkpoint, and the stored tree no longer vouches for the original
    /// (it was rewritten too), so the first changed event is not known from the tree; `logSize` is
    /// the log's size now.
    case differs(logSize: UInt64)
}

extension EventStore {
    /// The tree's current size and root.
    public func treeHead() throws -> TreeHead {
        try environment.read { txn in
            let frontier = try requireTree(in: txn).frontier(in: txn)
            return TreeHead(size: frontier.size, rootHash: frontier.root)
        }
    }

    /// The root of the tree as it was at `size` events.
    /// - Throws: ``EventStoreError/invalidKey(_:)`` for a size beyond the tree.
    public func treeRoot(size: UInt64) throws -> [UInt8] {
        try environment.read { txn in
            let tree = try requireTree(in: txn)
            try checkSize(size, of: tree, in: txn)
            return try tree.root(size: size, in: txn)
        }
    }

    /// The leaf hash of the event at `position`: SHA-256(0x00 ‖ its record's hash).
    public func leafHash(position: UInt64) throws -> [UInt8] {
        try environment.read { txn in
            let tree = try requireTree(in: txn)
            try checkSize(position, of: tree, in: txn)
            guard position > 0 else { throw EventStoreError.invalidKey("positions start at 1") }
            return try tree.subtree(level: 0, index: position - 1, in: txn)
        }
    }

    /// The RFC 9162 inclusion proof of the event at `position` in the tree of `size` events.
    public func inclusionProof(position: UInt64, size: UInt64) throws -> [[UInt8]] {
        guard position >= 1, position <= size else {
            throw EventStoreError.invalidKey("position \(position) is not in a tree of \(size) events")
        }
        return try environment.read { txn in
            let tree = try requireTree(in: txn)
            try checkSize(size, of: tree, in: txn)
            return try MerkleTree.inclusionProof(index: position - 1, size: size) {
                try tree.subtree(level: $0, index: $1, in: txn)
            }
        }
    }

    /// The RFC 9162 consistency proof from the tree of `oldSize` events to that of `newSize`.
    public func consistencyProof(from oldSize: UInt64, to newSize: UInt64) throws -> [[UInt8]] {
        guard oldSize <= newSize else {
            throw EventStoreError.invalidKey("a tree of \(oldSize) cannot precede \(newSize)")
        }
        return try environment.read { txn in
            let tree = try requireTree(in: txn)
            try checkSize(newSize, of: tree, in: txn)
            return try MerkleTree.consistencyProof(from: oldSize, to: newSize) {
                try tree.subtree(level: $0, index: $1, in: txn)
            }
        }
    }

    /// Checks the stored tree against the log: every stored node must be the hash the log's records
    /// give (leaves from each record's hash), and the tree must cover the log. Returns the first
    /// position whose subtree does not match; nil when the tree is the log's.
    /// Reads the log and the tree a page at a time.
    public func verifyTree(pageSize: Int = 65_536) throws -> (position: UInt64, reason: String)? {
        // The tree is recomputed from the records as they come, in flat buffers (no array per hash),
        // and each node it makes is compared with the next stored node: nodes are stored in the order
        // they are made.
        var peaks = [UInt8]()  // 32 bytes a peak, largest first
        var size: UInt64 = 0
        var order: UInt64 = 0
        var leaf = [UInt8](repeating: 0, count: 32)
        var node = [UInt8](repeating: 0, count: 32)
        var scratch = [UInt8](repeating: 0, count: 32)
        var next: UInt64 = 1
        while true {
            let outcome: (position: UInt64, reason: String)?? = try environment.read { txn in
                let tree = try requireTree(in: txn)
                var count = 0
                let mismatch: (position: UInt64, reason: String)? = try txn.withCursor(log.events) { records in
                    try txn.withCursor(tree.nodes) { nodes in
                        var stored = try nodes.seek(atLeast: .bigEndian(order))
                        var entry = try records.seek(atLeast: .bigEndian(next))
                        while let current = entry, count < pageSize {
                            MerkleLog.hash(prefix: 0x00, RecordCodec.storedHashBytes(current.value), into: &leaf)
                            var index = size
                            var level = 0
                            leaf.withUnsafeBytes { source in node.withUnsafeMutableBytes { $0.copyMemory(from: source) }
                            }
                            while index & 1 == 1 {
                                let leftStart = peaks.count - 32
                                let left = peaks[leftStart...]
                                level += 1
                                let position = (index >> 1) << UInt64(level) + 1
                                guard let value = stored?.value, stored?.key.count == 8,
                                    stored?.key.bigEndianUInt64() == order
                                else { return (position, "the tree has no node \(order) (level \(level))") }
                                if level == 1 {
                                    guard value.count >= 64, value[0..<32].elementsEqual(left),
                                        value[32..<64].elementsEqual(leaf)
                                    else {
                                        let leftSame = value.count >= 32 && value[0..<32].elementsEqual(left)
                                        return (
                                            leftSame ? position + 1 : position,
                                            "its leaf in the tree is not its record's hash"
                                        )
                                    }
                                }
                                peaks.withUnsafeBytes { all in
                                    node.withUnsafeBytes { right in
                                        MerkleLog.hash(
                                            prefix: 0x01, UnsafeRawBufferPointer(rebasing: all[leftStart...]), right,
                                            into: &scratch)
                                    }
                                }
                                swap(&node, &scratch)
                                if level > 1, value.count < 32 || !value[0..<32].elementsEqual(node) {
                                    return (
                                        position,
                                        "the tree's node over positions \(position)–"
                                            + "\(position + (1 << UInt64(level)) - 1) does not match the log"
                                    )
                                }
                                peaks.removeLast(32)
                                order += 1
                                stored = try nodes.next()
                                index >>= 1
                            }
                            peaks += node
                            size += 1
                            count += 1
                            entry = try records.next()
                        }
                        return nil
                    }
                }
                next += UInt64(count)
                if let mismatch { return .some(mismatch) }
                guard count < pageSize else { return nil }
                let storedSize = try tree.size(in: txn)
                if storedSize != size {
                    return .some(
                        (min(storedSize, size) + 1, "the tree covers \(storedSize) events and the log holds \(size)"))
                }
                if size & 1 == 1, try tree.subtree(level: 0, index: size - 1, in: txn) != Array(peaks.suffix(32)) {
                    return .some((size, "its leaf in the tree is not its record's hash"))
                }
                return .some(nil)
            }
            if let outcome { return outcome }
        }
    }

    /// Compares the log with a published tree head (`size`, `root`), for `verify --checkpoint`.
    ///
    /// Leaves are recomputed from the log's records (run ``verifyChain(pageSize:workers:progress:)``
    /// first: it proves each stored record hash). When the log's first `size` events hash to `root`,
    /// the answer is the consistency proof to the current tree. When they do not, the stored tree is
    /// used as a witness of the original only if its own root at `size` is `root` (it then cannot
    /// have been altered without breaking SHA-256): walking down it to the leftmost subtree whose
    /// hash differs from the log's names the first changed event, or shows the log was only cut.
    public func compare(withCheckpointOfSize size: UInt64, root: [UInt8]) throws -> TreeComparison {
        try environment.read { txn in
            let tree = try requireTree(in: txn)
            let logSize = try log.head(in: txn).position
            let leaves = try leafHashes(upTo: min(size, logSize), in: txn)
            let logHash = { (range: Range<UInt64>) in
                MerkleTree.hash(of: range) { level, index in
                    MerkleEventTree.subtree(leaves, level: level, index: index)
                }
            }
            if logSize >= size, logHash(0..<size) == root {
                let head = TreeHead(size: logSize, rootHash: try tree.root(size: logSize, in: txn))
                let proof = try MerkleTree.consistencyProof(from: size, to: logSize) {
                    try tree.subtree(level: $0, index: $1, in: txn)
                }
                return .consistent(proof: proof, head: head)
            }
            // The stored tree is a witness only if it reproduces the checkpoint's root.
            guard try tree.size(in: txn) >= size, (try? tree.root(size: size, in: txn)) == root else {
                return .differs(logSize: logSize)
            }
            var range: Range<UInt64> = 0..<size
            var authentic = root
            while range.count > 1 {
                let k = MerkleTree.split(UInt64(range.count))
                let middle = range.lowerBound + k
                let left = try tree.root(range: range.lowerBound..<middle, in: txn)
                let right = try tree.root(range: middle..<range.upperBound, in: txn)
                guard MerkleTree.nodeHash(left, right) == authentic else { return .differs(logSize: logSize) }
                if middle <= logSize, logHash(range.lowerBound..<middle) == left {
                    range = middle..<range.upperBound
                    authentic = right
                } else {
                    range = range.lowerBound..<middle
                    authentic = left
                }
            }
            let first = range.lowerBound
            if first >= logSize { return .truncated(to: logSize) }
            return .rewritten(from: first + 1, logSize: logSize)
        }
    }

    /// The leaf hashes of positions 1…`count`, from the records.
    private func leafHashes(upTo count: UInt64, in txn: Txn) throws -> [[UInt8]] {
        var leaves = [[UInt8]]()
        leaves.reserveCapacity(Int(count))
        try txn.withCursor(log.events) { cursor in
            var entry = try cursor.first()
            while let current = entry, UInt64(leaves.count) < count {
                leaves.append(MerkleTree.leafHash(RecordCodec.storedHash(current.value)))
                entry = try cursor.next()
            }
        }
        return leaves
    }

    func requireTree(in txn: Txn) throws -> MerkleLog {
        guard let tree else {
            throw EventStoreError.cannotOpen(
                path: path, reason: "it has no tree yet: open it writable once to build it")
        }
        let size = try tree.size(in: txn)
        let head = try log.head(in: txn).position
        guard size >= head else {
            throw EventStoreError.cannotOpen(
                path: path, reason: "its tree covers \(size) of \(head) events: open it writable once to finish it")
        }
        return tree
    }

    private func checkSize(_ size: UInt64, of tree: MerkleLog, in txn: Txn) throws {
        let treeSize = try tree.size(in: txn)
        guard size <= treeSize else {
            throw EventStoreError.invalidKey("the tree holds \(treeSize) events, fewer than \(size)")
        }
    }
}

extension MerkleLog {
    /// MTH of any range of stored leaves.
    func root(range: Range<UInt64>, in txn: Txn) throws -> [UInt8] {
        try MerkleTree.hash(of: range) { try subtree(level: $0, index: $1, in: txn) }
    }
}

/// Subtree hashes over leaf hashes held in memory, for trees recomputed from the log: the root of a
/// frontier fed the subtree's leaves.
enum MerkleEventTree {
    static func subtree(_ leaves: [[UInt8]], level: Int, index: UInt64) -> [UInt8] {
        let lower = Int(index << UInt64(level))
        var frontier = MerkleFrontier()
        // The merges are not wanted here, so none is collected into an array of nodes.
        for leaf in leaves[lower..<lower + (1 << level)] { frontier.append(leafHash: leaf) { _, _, _ in } }
        return frontier.root
    }
}

/// A signed checkpoint kept in the store (`signed-checkpoints`): the tree size it covers and the
/// note's text as signed (C2SP signed-note). Kept so the change feed can carry it and an auditor
/// can narrow down a rewrite; its signature is what makes it worth anything, not where it is kept.
public struct StoredCheckpoint: Sendable, Equatable {
    /// The tree size the checkpoint covers.
    public var size: UInt64
    /// The signed note, serialised.
    public var note: String

    /// A checkpoint of `size` events.
    public init(size: UInt64, note: String) {
        self.size = size
        self.note = note
    }
}

extension EventStore {
    /// Keeps a signed checkpoint of `size` events (replacing one kept for that size), on the writer.
    public func keepCheckpoint(_ checkpoint: StoredCheckpoint) async throws {
        guard let table = signedCheckpoints else { throw EventStoreError.readOnly }
        _ = try await perform { writer in
            try writer.txn.put(table, .bigEndian(checkpoint.size), Array(checkpoint.note.utf8))
        }
    }

    /// Kept checkpoints with sizes from `size` on, smallest first, at most `limit`.
    public func keptCheckpoints(from size: UInt64 = 0, limit: Int = .max) throws -> [StoredCheckpoint] {
        guard let table = signedCheckpoints else { return [] }
        return try environment.read { txn in
            var out = [StoredCheckpoint]()
            try txn.withCursor(table) { cursor in
                var entry = try cursor.seek(atLeast: .bigEndian(size))
                while let current = entry, out.count < limit {
                    if current.key.count == 8 {
                        out.append(
                            StoredCheckpoint(
                                size: current.key.bigEndianUInt64(),
                                note: String(decoding: current.value, as: UTF8.self)))
                    }
                    entry = try cursor.next()
                }
            }
            return out
        }
    }

    /// Roots of the log's own records (recomputed, not read from the tree) at each of `sizes`, for
    /// comparing kept checkpoints with the log; sizes beyond the log are left out.
    public func logRoots(at sizes: Set<UInt64>) throws -> [UInt64: [UInt8]] {
        var roots = [UInt64: [UInt8]]()
        if sizes.contains(0) { roots[0] = MerkleTree.emptyRoot }
        guard let largest = sizes.max(), largest > 0 else { return roots }
        var frontier = MerkleFrontier()
        var next: UInt64 = 1
        while frontier.size < largest {
            let count = try environment.read { txn in
                var count = 0
                try txn.withCursor(log.events) { cursor in
                    var entry = try cursor.seek(atLeast: .bigEndian(next))
                    while let current = entry, count < 65_536, frontier.size < largest {
                        let leaf = MerkleTree.leafHash(RecordCodec.storedHash(current.value))
                        frontier.append(leafHash: leaf) { _, _, _ in }  // no merge is wanted, none collected
                        if sizes.contains(frontier.size) { roots[frontier.size] = frontier.root }
                        count += 1
                        entry = try cursor.next()
                    }
                }
                return count
            }
            if count == 0 { break }
            next += UInt64(count)
        }
        return roots
    }
}

extension MerkleLog {
    /// SHA-256(prefix ‖ parts…) into `digest` (32 bytes), without allocating.
    static func hash(prefix: UInt8, _ data: UnsafeRawBufferPointer, into digest: inout [UInt8]) {
        var hasher = SHA256()
        withUnsafeBytes(of: prefix) { hasher.update($0) }
        hasher.update(data)
        digest.withUnsafeMutableBytes { hasher.finalize(into: $0) }
    }

    /// SHA-256(prefix ‖ left ‖ right) into `digest` (32 bytes).
    static func hash(
        prefix: UInt8, _ left: UnsafeRawBufferPointer, _ right: UnsafeRawBufferPointer, into digest: inout [UInt8]
    ) {
        var hasher = SHA256()
        withUnsafeBytes(of: prefix) { hasher.update($0) }
        hasher.update(left)
        hasher.update(right)
        digest.withUnsafeMutableBytes { hasher.finalize(into: $0) }
    }
}
