import Hashing
import Testing

/// The tree hashing and proofs of RFC 9162, against a tree built naively here from the RFC's recursive
/// definitions, for every tree size 1–300.
@Suite struct MerkleTreeTests {
    static let leaves: [[UInt8]] = (0..<300).map { MerkleTree.leafHash(Array("leaf \($0)".utf8)) }

    /// MTH(D[lower..<upper]) straight from RFC 9162 §2.1.1, for every range (computed once).
    static let naiveHashes: [[[UInt8]]] = {
        // naiveHashes[lower][count]
        var table = [[[UInt8]]](repeating: [], count: 301)
        for lower in stride(from: 300, through: 0, by: -1) {
            var row: [[UInt8]] = [SHA256.hash([UInt8]())]
            for count in stride(from: 1, through: 300 - lower, by: 1) {
                if count == 1 {
                    row.append(leaves[lower])
                    continue
                }
                var k = 1
                while k * 2 < count { k *= 2 }
                row.append(MerkleTree.nodeHash(row[k], table[lower + k][count - k]))
            }
            table[lower] = row
        }
        return table
    }()

    static func naiveHash(_ range: Range<Int>) -> [UInt8] { naiveHashes[range.lowerBound][range.count] }

    /// PATH(m, D[range]) of §2.1.3.1, deepest first.
    static func naivePath(_ m: Int, _ range: Range<Int>) -> [[UInt8]] {
        guard range.count > 1 else { return [] }
        var k = 1
        while k * 2 < range.count { k *= 2 }
        let middle = range.lowerBound + k
        if m < k { return naivePath(m, range.lowerBound..<middle) + [naiveHash(middle..<range.upperBound)] }
        return naivePath(m - k, middle..<range.upperBound) + [naiveHash(range.lowerBound..<middle)]
    }

    /// SUBPROOF(m, D[range], b) of §2.1.4.1.
    static func naiveSubproof(_ m: Int, _ range: Range<Int>, _ complete: Bool) -> [[UInt8]] {
        if m == range.count { return complete ? [] : [naiveHash(range)] }
        var k = 1
        while k * 2 < range.count { k *= 2 }
        let middle = range.lowerBound + k
        if m <= k {
            return naiveSubproof(m, range.lowerBound..<middle, complete) + [naiveHash(middle..<range.upperBound)]
        }
        return naiveSubproof(m - k, middle..<range.upperBound, false) + [naiveHash(range.lowerBound..<middle)]
    }

    /// A frontier fed every leaf, with every node it made kept (as a store keeps them).
    static func grownTree() -> (frontiers: [MerkleFrontier], nodes: [String: [UInt8]]) {
        var frontier = MerkleFrontier()
        var frontiers = [frontier]
        var nodes = [String: [UInt8]]()
        for leaf in leaves {
            for node in frontier.append(leafHash: leaf) {
                #expect(nodes["\(node.level)/\(node.index)"] == nil)
                nodes["\(node.level)/\(node.index)"] = node.hash
            }
            frontiers.append(frontier)
            // n leaves make 2n − popcount(n) nodes.
            #expect(nodes.count == 2 * Int(frontier.size) - frontier.size.nonzeroBitCount)
        }
        return (frontiers, nodes)
    }

    @Test func rootsMatchTheDefinitionForEverySize() {
        let (frontiers, nodes) = MerkleTreeTests.grownTree()
        #expect(frontiers[0].root == SHA256.hash([UInt8]()))
        let subtree = { (level: Int, index: UInt64) in nodes["\(level)/\(index)"]! }
        for size in 1...300 {
            let expected = MerkleTreeTests.naiveHash(0..<size)
            #expect(frontiers[size].root == expected, "size \(size)")
            #expect(MerkleTree.hash(of: 0..<UInt64(size), subtree: subtree) == expected, "size \(size)")
        }
    }

    @Test func inclusionProofsForEverySizeAndLeaf() {
        let (_, nodes) = MerkleTreeTests.grownTree()
        let subtree = { (level: Int, index: UInt64) in nodes["\(level)/\(index)"]! }
        for size in 1...300 {
            let root = MerkleTreeTests.naiveHash(0..<size)
            for index in 0..<size {
                let proof = MerkleTree.inclusionProof(index: UInt64(index), size: UInt64(size), subtree: subtree)
                #expect(proof == MerkleTreeTests.naivePath(index, 0..<size), "leaf \(index) of \(size)")
                let leaf = MerkleTreeTests.leaves[index]
                #expect(
                    MerkleTree.verifyInclusion(
                        index: UInt64(index), size: UInt64(size), leafHash: leaf, proof: proof, root: root))
                // The wrong leaf, position or size does not verify.
                #expect(
                    !MerkleTree.verifyInclusion(
                        index: UInt64(index), size: UInt64(size), leafHash: MerkleTreeTests.leaves[(index + 1) % 300],
                        proof: proof, root: root))
                if size > 1 {
                    #expect(
                        !MerkleTree.verifyInclusion(
                            index: UInt64((index + 1) % size), size: UInt64(size), leafHash: leaf, proof: proof,
                            root: root))
                }
            }
        }
    }

    @Test func consistencyProofsForEveryPairOfSizes() {
        let (_, nodes) = MerkleTreeTests.grownTree()
        let subtree = { (level: Int, index: UInt64) in nodes["\(level)/\(index)"]! }
        let roots = (0...300).map { MerkleTreeTests.naiveHash(0..<$0) }
        for newSize in 1...300 {
            // Every old size for the small trees; a spread of them for the larger ones.
            let oldSizes =
                newSize <= 64 ? Array(1...newSize) : [1, 2, 3, newSize / 3, newSize / 2, newSize - 1, newSize]
            for oldSize in oldSizes {
                let proof = MerkleTree.consistencyProof(from: UInt64(oldSize), to: UInt64(newSize), subtree: subtree)
                let expected = oldSize == newSize ? [] : MerkleTreeTests.naiveSubproof(oldSize, 0..<newSize, true)
                #expect(proof == expected, "\(oldSize) → \(newSize)")
                #expect(
                    MerkleTree.verifyConsistency(
                        oldSize: UInt64(oldSize), newSize: UInt64(newSize), oldRoot: roots[oldSize],
                        newRoot: roots[newSize], proof: proof), "\(oldSize) → \(newSize)")
                if oldSize < newSize {
                    // Another old root, or a new root that does not extend it, fails.
                    #expect(
                        !MerkleTree.verifyConsistency(
                            oldSize: UInt64(oldSize), newSize: UInt64(newSize), oldRoot: roots[oldSize - 1],
                            newRoot: roots[newSize], proof: proof))
                    #expect(
                        !MerkleTree.verifyConsistency(
                            oldSize: UInt64(oldSize), newSize: UInt64(newSize), oldRoot: roots[oldSize],
                            newRoot: MerkleTree.leafHash([1]), proof: proof))
                }
            }
        }
    }
}
