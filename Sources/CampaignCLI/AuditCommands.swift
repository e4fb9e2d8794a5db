import CampaignDomain
import CampaignEngine
import EventStore
import Foundation
import Hashing
import Signing

/// `campaign keygen`: the operator's Ed25519 key pair for signing checkpoints.
enum KeygenCommand {
    static let help = """
        usage: campaign keygen --name NAME --out FILE

        Makes an Ed25519 key pair in the C2SP signed-note forms. The signer key (a secret) goes to
        FILE, readable by its owner only; the verifier key goes to FILE.pub and to standard output.
        Keep FILE out of the engine directory: the store never holds a private key. NAME names the
        signer in each signature line (for example your host name); it has no spaces or '+'.
        An existing FILE is never overwritten.
        """

    static func run(_ arguments: Arguments, console: any Console) async throws -> CLI.Exit {
        guard arguments.positionals.isEmpty else { throw CLI.usage("keygen takes options only") }
        guard let name = arguments.options["name"] else { throw CLI.usage("keygen needs --name NAME") }
        guard let path = arguments.options["out"] else { throw CLI.usage("keygen needs --out FILE") }
        let key: NoteKey
        do {
            key = try NoteKey.generate(name: name)
        } catch {
            throw CLI.usage("\(error)")
        }
        for file in [path, path + ".pub"] where FileManager.default.fileExists(atPath: file) {
            throw CampaignError(.duplicateResource, "\(file) exists; keygen never overwrites a key")
        }
        // The secret is written by a file created with owner-only permissions from the start.
        _ = try CLI.folder(of: path, option: "out")
        guard
            FileManager.default.createFile(
                atPath: path, contents: Data((key.signerKey! + "\n").utf8), attributes: [.posixPermissions: 0o600])
        else { throw CLI.usage("--out \(path): the file cannot be created there") }
        try Data((key.verifierKey + "\n").utf8).write(to: URL(fileURLWithPath: path + ".pub"))
        console.out(key.verifierKey)
        return .ok
    }
}

/// Reads a key given as a file (or as the key text itself).
func readNoteKey(_ given: String, option: String) throws -> NoteKey {
    let text =
        FileManager.default.fileExists(atPath: given)
        ? String(decoding: try Data(contentsOf: URL(fileURLWithPath: given)), as: UTF8.self) : given
    do {
        return try NoteKey(text: text)
    } catch {
        throw CLI.usage("--\(option) \(given): \(error)")
    }
}

/// Reads a signed checkpoint from a file.
func readCheckpoint(_ path: String) throws -> (note: SignedNote, body: TreeCheckpoint) {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw CampaignError(.resourceNotFound, "no checkpoint file \(path)")
    }
    do {
        let note = try SignedNote(parsing: String(decoding: data, as: UTF8.self))
        return (note, try TreeCheckpoint(text: note.text))
    } catch {
        throw CampaignError(.invalidFormat, "\(path) is not a signed checkpoint: \(error)")
    }
}

/// This store's default origin when `checkpoint` has a default origin of another store (a custom
/// `--origin` cannot be told apart, and is let through).
func otherStore(_ checkpoint: TreeCheckpoint, _ store: EventStore) throws -> String? {
    let this = Audit.defaultOrigin(storeId: try store.storeId())
    let prefix = Audit.defaultOrigin(storeId: "")
    return checkpoint.origin.hasPrefix(prefix) && checkpoint.origin != this ? this : nil
}

/// `campaign checkpoint`: sign the tree as it is now.
enum CheckpointCommand {
    static let help = """
        usage: campaign checkpoint [--data DIR] --key FILE [--origin ORIGIN] [--list] [--json]

        Signs the log's Merkle tree as it is now with the operator's signer key (campaign keygen)
        and prints the checkpoint in the C2SP tlog-checkpoint form: the origin (default
        campaign-engine/<store id>), the tree size, the base64 root hash, a blank line and the
        signature line. The checkpoint is also kept in the store (so the change feed carries it);
        the key is only read. Save the output somewhere the store's administrators cannot write:
        campaign verify --checkpoint FILE proves the log still extends it.
        With --list, prints the sizes of the checkpoints kept in the store instead (no key needed).
        """

    static func run(_ arguments: Arguments, console: any Console) async throws -> CLI.Exit {
        guard arguments.positionals.isEmpty else { throw CLI.usage("checkpoint takes options only") }
        if arguments.flags.contains("list") {
            let store = try CLI.openStore(arguments)
            defer { store.close() }
            let kept = try store.keptCheckpoints()
            if arguments.flags.contains("json") {
                console.out(
                    JSON.array(kept.map { .object(["size": .number(Double($0.size)), "note": .string($0.note)]) }).text)
            } else {
                for checkpoint in kept { console.out("\(checkpoint.size)") }
            }
            return .ok
        }
        guard let keyPath = arguments.options["key"] else { throw CLI.usage("checkpoint needs --key FILE") }
        let key = try readNoteKey(keyPath, option: "key")
        guard key.privateKey != nil else {
            throw CLI.usage("--key must be a signer key (PRIVATE+KEY+…), not \(keyPath)")
        }
        if let origin = arguments.options["origin"], let problem = TreeCheckpoint.originProblem(origin) {
            throw CLI.usage("--origin: \(problem)")
        }
        let store = try CLI.openStore(arguments, readOnly: false)
        defer { store.close() }
        let note = try await Audit.checkpoint(store, key: key, origin: arguments.options["origin"])
        if arguments.flags.contains("json") {
            console.out(JSON.object(["note": .string(note.serialized)]).text)
        } else {
            for line in note.serialized.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
                console.out(String(line))
            }
        }
        return .ok
    }
}

/// `campaign prove`: an inclusion proof for one event.
enum ProveCommand {
    static let help = """
        usage: campaign prove POSITION [--data DIR] [--checkpoint FILE] [--json]

        Prints the RFC 9162 inclusion proof of the event at POSITION: its record hash, its leaf
        hash SHA-256(0x00 ‖ record hash), the tree size and root the proof is against, and the
        proof's hashes, bottom up. Against the checkpoint in FILE when given (its size and root;
        exit 1 when the log no longer matches it), else against the tree as it is now. The proof
        is checked before it is printed.
        """

    static func run(_ arguments: Arguments, console: any Console) async throws -> CLI.Exit {
        guard arguments.positionals.count == 1, let position = UInt64(arguments.positionals[0]), position > 0 else {
            throw CLI.usage("prove takes one position (a whole number from 1)")
        }
        let store = try CLI.openStore(arguments)
        defer { store.close() }
        var size: UInt64
        var root: [UInt8]
        if let path = arguments.options["checkpoint"] {
            let body = try readCheckpoint(path).body
            if let this = try otherStore(body, store) {
                throw CampaignError(
                    .validationError, "\(path) is of another store (origin \(body.origin); this is \(this))")
            }
            (size, root) = (body.size, body.rootHash)
            // No proof against a checkpoint can be made from a log shorter than it.
            let held = try store.treeHead().size
            guard held >= size else {
                throw CampaignError(
                    .resourceConflict,
                    "TRUNCATED: the log holds \(held) events, fewer than the \(size) the checkpoint in \(path) covers; "
                        + "campaign verify --checkpoint \(path) --key VERIFIER_KEY says what is left")
            }
        } else {
            let head = try store.treeHead()
            (size, root) = (head.size, head.rootHash)
        }
        guard position <= size else {
            throw CampaignError(.resourceNotFound, "position \(position) is not in the tree of \(size) events")
        }
        guard let event = try store.readAll(from: position, limit: 1).first, event.position == position else {
            throw CampaignError(.resourceNotFound, "no event at position \(position)")
        }
        let leaf = MerkleTree.leafHash(event.hash)
        let proof = try store.inclusionProof(position: position, size: size)
        let verified = MerkleTree.verifyInclusion(
            index: position - 1, size: size, leafHash: leaf, proof: proof, root: root)
        if arguments.flags.contains("json") {
            console.out(
                JSON.object([
                    "position": .number(Double(position)), "treeSize": .number(Double(size)),
                    "recordHash": .string(event.hash.hexString), "leafHash": .string(leaf.hexString),
                    "rootHash": .string(root.hexString), "proof": .array(proof.map { .string($0.hexString) }),
                    "verified": .bool(verified),
                ]).text)
        } else {
            console.out("position:    \(position)")
            console.out("tree size:   \(size)")
            console.out("record hash: \(event.hash.hexString)")
            console.out("leaf hash:   \(leaf.hexString)")
            console.out("root hash:   \(root.hexString)")
            console.out("proof (\(proof.count) hashes, bottom up):")
            for hash in proof { console.out("  \(hash.hexString)") }
            console.out(
                verified ? "verified: the event is in the tree" : "NOT VERIFIED: the log does not match this root")
        }
        return verified ? .ok : .failure
    }
}

/// The tree and checkpoint parts of `campaign verify`.
enum TreeAudit {
    /// Checks the stored tree against the log; prints a line and returns whether it matches.
    static func verifyTree(_ store: EventStore, console: any Console, json: inout JSONObject) throws -> Bool {
        let problem: (position: UInt64, reason: String)?
        do {
            problem = try store.verifyTree()
        } catch let EventStoreError.cannotOpen(_, reason) {
            json["tree"] = .string("absent")
            console.out("tree: not checked: \(reason)")
            return true
        }
        if let problem {
            json["tree"] = .object([
                "intact": .bool(false), "firstBadPosition": .number(Double(problem.position)),
                "problem": .string(problem.reason),
            ])
            console.out("tree BROKEN at position \(problem.position): \(problem.reason)")
            return false
        }
        let head = try store.treeHead()
        json["tree"] = .object([
            "intact": .bool(true), "size": .number(Double(head.size)), "rootHash": .string(head.rootHash.hexString),
        ])
        console.out("tree intact: \(Format.count(head.size)) leaves, root \(head.rootHash.hexString)")
        return true
    }

    /// `--checkpoint FILE --key KEY`: the log against a signed checkpoint.
    static func verifyCheckpoint(
        _ store: EventStore, path: String, key: NoteKey, console: any Console, json: inout JSONObject
    ) throws -> Bool {
        let (note, body) = try readCheckpoint(path)
        guard note.isSigned(by: key) else {
            json["checkpoint"] = .object(["signature": .bool(false)])
            console.out("checkpoint REJECTED: it carries no valid signature by \(key.name)+\(key.id.hexString)")
            return false
        }
        var report: JSONObject = [
            "signature": .bool(true), "origin": .string(body.origin), "size": .number(Double(body.size)),
        ]
        defer { json["checkpoint"] = .object(report) }
        if let other = try otherStore(body, store) {
            report["otherStore"] = .string(other)
            console.out("checkpoint REJECTED: it is of another store (origin \(body.origin); this one is \(other))")
            return false
        }
        switch try store.compare(withCheckpointOfSize: body.size, root: body.rootHash) {
        case let .consistent(proof, head):
            let proven = MerkleTree.verifyConsistency(
                oldSize: body.size, newSize: head.size, oldRoot: body.rootHash, newRoot: head.rootHash, proof: proof)
            report["consistent"] = .bool(proven)
            report["logSize"] = .number(Double(head.size))
            report["proof"] = .array(proof.map { .string($0.hexString) })
            if proven {
                console.out(
                    "checkpoint consistent: the log of \(Format.count(head.size)) events extends the signed tree of "
                        + "\(Format.count(body.size)) (consistency proof of \(proof.count) hashes verified)")
            } else {
                console.out("checkpoint INCONSISTENT: the stored tree's consistency proof does not verify")
            }
            return proven
        case let .truncated(size):
            report["consistent"] = .bool(false)
            report["truncatedTo"] = .number(Double(size))
            console.out(
                "TRUNCATED to \(Format.count(size)) events: the signed checkpoint covers \(Format.count(body.size)); "
                    + "the events up to \(Format.count(size)) are unchanged")
            return false
        case let .rewritten(position, logSize):
            report["consistent"] = .bool(false)
            report["rewrittenFrom"] = .number(Double(position))
            if logSize < body.size { report["truncatedTo"] = .number(Double(logSize)) }
            console.out(
                "REWRITTEN from position \(position): the event there is not the one the checkpoint signed"
                    + (logSize < body.size ? "; the log was also cut to \(Format.count(logSize)) events" : ""))
            return false
        case let .differs(logSize):
            report["consistent"] = .bool(false)
            let limit = min(logSize, body.size)
            let (matching, mismatch) = try narrow(store, key: key, limit: limit)
            var parts = [String]()
            if logSize < body.size {
                report["truncatedTo"] = .number(Double(logSize))
                parts.append(
                    "TRUNCATED to \(Format.count(logSize)) events: the signed checkpoint covers "
                        + Format.count(body.size))
            } else {
                parts.append(
                    "REWRITTEN: the log's first \(Format.count(body.size)) events do not hash to the signed root")
            }
            parts.append(
                "the store's tree was changed too, so the events are checked only against the signed checkpoints "
                    + "kept in the store")
            report["matchesThrough"] = .number(Double(matching))
            if let mismatch {
                report["rewrittenBy"] = .number(Double(mismatch))
                parts.append("REWRITTEN: the first changed event is in positions \(matching + 1)–\(mismatch)")
            } else if logSize >= body.size {
                report["rewrittenBy"] = .number(Double(body.size))
                parts.append("the first changed event is in positions \(matching + 1)–\(body.size)")
            } else if matching > 0 {
                parts.append("the first \(Format.count(matching)) events match the one of that size")
            } else {
                parts.append("none covers fewer events, so the first \(Format.count(logSize)) are not proven")
            }
            console.out(parts.joined(separator: "; "))
            return false
        }
    }

    /// Where the log first differs by the kept checkpoints signed by `key` (sizes up to `limit`): the
    /// largest size whose root the log still gives, and the smallest whose root it does not (if any).
    private static func narrow(_ store: EventStore, key: NoteKey, limit: UInt64) throws -> (UInt64, UInt64?) {
        var signed = [UInt64: [UInt8]]()
        for kept in try store.keptCheckpoints() where kept.size <= limit {
            guard let note = try? SignedNote(parsing: kept.note), note.isSigned(by: key),
                let body = try? TreeCheckpoint(text: note.text), body.size == kept.size
            else { continue }
            signed[body.size] = body.rootHash
        }
        let roots = try store.logRoots(at: Set(signed.keys))
        var matching: UInt64 = 0
        for size in signed.keys.sorted() {
            guard roots[size] == signed[size] else { return (matching, size) }
            matching = size
        }
        return (matching, nil)
    }
}
