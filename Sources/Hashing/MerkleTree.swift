/// The Merkle tree hashing of RFC 9162 §2.1 (Certificate Transparency 2.0), and its proofs.
///
/// A leaf hashes as SHA-256(0x00 ‖ data), an interior node as SHA-256(0x01 ‖ left ‖ right). The tree of
/// n leaves splits at k, the largest power of two below n: its hash is node(MTH(first k), MTH(rest)).
/// Every left subtree in that recursion is complete, so a tree is a few complete subtrees ("peaks"),
/// largest first, and can be kept with those alone (``MerkleFrontier``).
public enum MerkleTree {
    /// SHA-256(0x00 ‖ data): the hash of a leaf.
    public static func leafHash(_ data: [UInt8]) -> [UInt8] {
        var hasher = SHA256()
        withUnsafeBytes(of: UInt8(0x00)) { hasher.update($0) }
        hasher.update(data)
        return hasher.finalize()
    }

    /// SHA-256(0x01 ‖ left ‖ right): the hash of an interior node.
    public static func nodeHash(_ left: [UInt8], _ right: [UInt8]) -> [UInt8] {
        var hasher = SHA256()
        withUnsafeBytes(of: UInt8(0x01)) { hasher.update($0) }
        hasher.update(left)
        hasher.update(right)
        return hasher.finalize()
    }

    /// The hash of the empty tree: SHA-256 of nothing.
    public static let emptyRoot = SHA256.hash([UInt8]())

    /// The largest power of two strictly below `n` (n ≥ 2).
    public static func split(_ n: UInt64) -> UInt64 { 1 << (63 - UInt64((n - 1).leadingZeroBitCount)) }

    /// MTH(D[lower..<upper]) from the hashes of complete, aligned subtrees: `subtree(level, index)`
    /// is the hash of leaves index·2^level ..< (index+1)·2^level. Asks for O(log n) subtrees.
    public static func hash(
        of range: Range<UInt64>, subtree: (_ level: Int, _ index: UInt64) throws -> [UInt8]
    ) rethrows -> [UInt8] {
        let count = range.count
        if count == 0 { return emptyRoot }
        let n = UInt64(count)
        if n & (n - 1) == 0, range.lowerBound % n == 0 {
            let level = n.trailingZeroBitCount
            return try subtree(level, range.lowerBound >> UInt64(level))
        }
        let k = split(n)
        let middle = range.lowerBound + k
        return nodeHash(
            try hash(of: range.lowerBound..<middle, subtree: subtree),
            try hash(of: middle..<range.upperBound, subtree: subtree))
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162 §2.1.3.1), bottom up.
    public static func inclusionProof(
        index: UInt64, size: UInt64, subtree: (_ level: Int, _ index: UInt64) throws -> [UInt8]
    ) rethrows -> [[UInt8]] {
        precondition(index < size, "the leaf is outside the tree")
        var path = [[UInt8]]()
        var range = 0..<size
        // Walk down from the root, recording the sibling at each split; the proof is bottom up.
        while range.count > 1 {
            let k = split(UInt64(range.count))
            let middle = range.lowerBound + k
            if index < middle {
                path.append(try hash(of: middle..<range.upperBound, subtree: subtree))
                range = range.lowerBound..<middle
            } else {
                path.append(try hash(of: range.lowerBound..<middle, subtree: subtree))
                range = middle..<range.upperBound
            }
        }
        return path.reversed()
    }

    /// The consistency proof from the tree of `oldSize` leaves to the tree of `newSize`
    /// (RFC 9162 §2.1.4.1), bottom up. Empty when the sizes are equal or the old tree is empty.
    public static func consistencyProof(
        from oldSize: UInt64, to newSize: UInt64, subtree: (_ level: Int, _ index: UInt64) throws -> [UInt8]
    ) rethrows -> [[UInt8]] {
        precondition(oldSize <= newSize, "a tree only grows")
        guard oldSize > 0, oldSize < newSize else { return [] }
        var path = [[UInt8]]()
        var range = 0..<newSize
        var m = oldSize
        var complete = true
        while m != UInt64(range.count) {
            let k = split(UInt64(range.count))
            let middle = range.lowerBound + k
            if m <= k {
                path.append(try hash(of: middle..<range.upperBound, subtree: subtree))
                range = range.lowerBound..<middle
            } else {
                path.append(try hash(of: range.lowerBound..<middle, subtree: subtree))
                range = middle..<range.upperBound
                m -= k
                complete = false
            }
        }
        if !complete { path.append(try hash(of: range, subtree: subtree)) }
        return path.reversed()
    }

    /// Whether `proof` shows the leaf with `leafHash` at `index` in a tree of `size` leaves with root
    /// `root` (RFC 9162 §2.1.3.2).
    public static func verifyInclusion(
        index: UInt64, size: UInt64, leafHash: [UInt8], proof: [[UInt8]], root: [UInt8]
    ) -> Bool {
        guard index < size else { return false }
        var fn = index
        var sn = size - 1
        var r = leafHash
        for p in proof {
            guard sn != 0 else { return false }
            if fn & 1 == 1 || fn == sn {
                r = nodeHash(p, r)
                skipRightEdge(&fn, &sn)
            } else {
                r = nodeHash(r, p)
            }
            fn >>= 1
            sn >>= 1
        }
        return sn == 0 && r == root
    }

    /// RFC 9162's "if LSB(fn) is not set, right-shift fn and sn equally until either LSB(fn) is set or
    /// fn is 0": past levels where the path's node is the last of its row and has no sibling.
    private static func skipRightEdge(_ fn: inout UInt64, _ sn: inout UInt64) {
        while fn & 1 == 0 && fn != 0 {
            fn >>= 1
            sn >>= 1
        }
    }

    /// Whether `proof` shows that the tree of `oldSize` leaves with root `oldRoot` is a prefix of the
    /// tree of `newSize` leaves with root `newRoot` (RFC 9162 §2.1.4.2).
    public static func verifyConsistency(
        oldSize: UInt64, newSize: UInt64, oldRoot: [UInt8], newRoot: [UInt8], proof: [[UInt8]]
    ) -> Bool {
        guard oldSize <= newSize else { return false }
        if oldSize == newSize { return proof.isEmpty && oldRoot == newRoot }
        if oldSize == 0 { return proof.isEmpty }
        var path = proof
        if oldSize & (oldSize - 1) == 0 { path.insert(oldRoot, at: 0) }
        guard !path.isEmpty else { return false }
        var fn = oldSize - 1
        var sn = newSize - 1
        while fn & 1 == 1 {
            fn >>= 1
            sn >>= 1
        }
        var fr = path[0]
        var sr = path[0]
        for c in path.dropFirst() {
            guard sn != 0 else { return false }
            if fn & 1 == 1 || fn == sn {
                fr = nodeHash(c, fr)
                sr = nodeHash(c, sr)
                skipRightEdge(&fn, &sn)
            } else {
                sr = nodeHash(sr, c)
            }
            fn >>= 1
            sn >>= 1
        }
        return fr == oldRoot && sr == newRoot && sn == 0
    }
}

/// A tree kept by its peaks: the hashes of the complete subtrees that make up `size` leaves, largest
/// first (one per set bit of `size`). Appending a leaf merges equal peaks; each merge makes a node that
/// a store may keep for proofs.
public struct MerkleFrontier: Sendable, Equatable {
    /// How many leaves the tree has; it has one peak per set bit of it.
    public private(set) var size: UInt64
    /// The peaks' hashes, largest subtree first.
    public private(set) var peaks: [[UInt8]]

    /// A tree with the given peaks.
    public init(size: UInt64 = 0, peaks: [[UInt8]] = []) {
        precondition(peaks.count == size.nonzeroBitCount, "a tree of n leaves has popcount(n) peaks")
        self.size = size
        self.peaks = peaks
    }

    /// A node the tree gained: level 0 is a leaf; `index` counts subtrees of that level from the left.
    public struct Node: Sendable, Equatable {
        /// 0 for a leaf, 1 for a node over two leaves, and so on.
        public var level: Int
        /// The subtree's position among those of its level.
        public var index: UInt64
        /// The node's RFC 9162 hash: a leaf's SHA-256(0x00 ‖ data), a node's SHA-256(0x01 ‖ left ‖ right).
        public var hash: [UInt8]
    }

    /// Adds a leaf (its leaf hash) and returns the nodes made: the leaf itself, then each merge,
    /// lowest first.
    @discardableResult
    public mutating func append(leafHash: [UInt8]) -> [Node] {
        var made = [Node(level: 0, index: size, hash: leafHash)]
        append(leafHash: leafHash) { made.append(Node(level: $0, index: $1, hash: $2)) }
        return made
    }

    /// Adds a leaf (its leaf hash), handing each merge to `merged` as it is made (its level, from 1,
    /// its index and its hash), lowest first, without collecting them. When `merged` throws, the
    /// frontier is left part-way and must be dropped.
    public mutating func append(
        leafHash: [UInt8], merged: (_ level: Int, _ index: UInt64, _ hash: [UInt8]) throws -> Void
    ) rethrows {
        var hash = leafHash
        var level = 0
        var index = size
        while index & 1 == 1 {
            hash = MerkleTree.nodeHash(peaks.removeLast(), hash)
            level += 1
            index >>= 1
            try merged(level, index, hash)
        }
        peaks.append(hash)
        size += 1
    }

    /// The tree hash of the leaves so far (the empty tree's hash when there are none).
    public var root: [UInt8] {
        guard var hash = peaks.last else { return MerkleTree.emptyRoot }
        for peak in peaks.dropLast().reversed() { hash = MerkleTree.nodeHash(peak, hash) }
        return hash
    }
}
