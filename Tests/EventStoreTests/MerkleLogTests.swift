import EventStore
import Foundation
import Hashing
import TestSupport
import Testing

/// The Merkle tree the store keeps in its append transactions, against one computed here from the
/// records' hashes.
@Suite struct MerkleLogTests {
    /// RFC 9162's MTH of the leaves, straight from the definition.
    static func naiveRoot(_ leaves: ArraySlice<[UInt8]>) -> [UInt8] {
        if leaves.isEmpty { return SHA256.hash([UInt8]()) }
        if leaves.count == 1 { return leaves.first! }
        var k = 1
        while k * 2 < leaves.count { k *= 2 }
        let middle = leaves.startIndex + k
        return MerkleTree.nodeHash(naiveRoot(leaves[..<middle]), naiveRoot(leaves[middle...]))
    }

    /// Requests of 1 to 7 events over several streams, some in one request, so trees of every shape
    /// are committed by group commit.
    static func fill(_ store: EventStore, requests: Int) async throws {
        for n in 0..<requests {
            let events = (0..<(n % 7 + 1)).map { event(payload: "{\"n\":\(n),\"i\":\($0)}", request: "r\(n)") }
            _ = try await store.append(appendRequest("s\(n % 5)", events: events))
        }
    }

    @Test func theTreeIsTheLogsAndItsProofsVerify() async throws {
        let directory = TemporaryDirectory()
        let store = try EventStore(path: directory.path)
        defer { store.close() }
        try await MerkleLogTests.fill(store, requests: 40)
        let leaves = try store.readAll(limit: 10_000).map { MerkleTree.leafHash($0.hash) }
        let head = try store.treeHead()
        #expect(head.size == UInt64(leaves.count) && leaves.count > 100)
        #expect(head.rootHash == MerkleLogTests.naiveRoot(leaves[...]))
        for size in 1...leaves.count {
            let root = try store.treeRoot(size: UInt64(size))
            #expect(root == MerkleLogTests.naiveRoot(leaves[..<size]), "size \(size)")
            let proof = try store.consistencyProof(from: UInt64(size), to: head.size)
            #expect(
                MerkleTree.verifyConsistency(
                    oldSize: UInt64(size), newSize: head.size, oldRoot: root, newRoot: head.rootHash, proof: proof))
        }
        for position in 1...UInt64(leaves.count) {
            #expect(try store.leafHash(position: position) == leaves[Int(position) - 1])
            let proof = try store.inclusionProof(position: position, size: head.size)
            #expect(
                MerkleTree.verifyInclusion(
                    index: position - 1, size: head.size, leafHash: leaves[Int(position) - 1], proof: proof,
                    root: head.rootHash))
        }
        #expect(try store.verifyTree() == nil)
        #expect(throws: EventStoreError.self) { try store.inclusionProof(position: head.size + 1, size: head.size + 1) }
    }

    /// A store appended to without the tree (as one made before trees was) gets it on the next open.
    @Test func aStoreWithoutItsTreeGetsItBuiltOnOpen() async throws {
        let directory = TemporaryDirectory()
        var options = StoreOptions()
        options.keepsMerkleTree = false
        do {
            let store = try EventStore(path: directory.path, options: options)
            try await MerkleLogTests.fill(store, requests: 12)
            #expect(throws: EventStoreError.self) { try store.treeHead() }
            store.close()
        }
        let store = try EventStore(path: directory.path)
        defer { store.close() }
        let leaves = try store.readAll().map { MerkleTree.leafHash($0.hash) }
        #expect(try store.treeHead().rootHash == MerkleLogTests.naiveRoot(leaves[...]))
        try await MerkleLogTests.fill(store, requests: 3)
        let more = try store.readAll().map { MerkleTree.leafHash($0.hash) }
        #expect(
            try store.treeHead() == TreeHead(size: UInt64(more.count), rootHash: MerkleLogTests.naiveRoot(more[...])))
        #expect(try store.verifyTree() == nil)
    }

    @Test func aComparisonWithACheckpointIsConsistentWhileTheLogOnlyGrows() async throws {
        let directory = TemporaryDirectory()
        let store = try EventStore(path: directory.path)
        defer { store.close() }
        try await MerkleLogTests.fill(store, requests: 10)
        let signed = try store.treeHead()
        try await MerkleLogTests.fill(store, requests: 10)
        let now = try store.treeHead()
        guard
            case let .consistent(proof, head) = try store.compare(
                withCheckpointOfSize: signed.size, root: signed.rootHash)
        else {
            Issue.record("a grown log is consistent with its earlier tree")
            return
        }
        #expect(head == now)
        #expect(
            MerkleTree.verifyConsistency(
                oldSize: signed.size, newSize: now.size, oldRoot: signed.rootHash, newRoot: now.rootHash, proof: proof))
        // A root the log never had: the stored tree does not reproduce it, so it cannot say where.
        #expect(
            try store.compare(withCheckpointOfSize: signed.size, root: SHA256.hash([1])) == .differs(logSize: now.size))
    }
}
