import CampaignDomain
import CampaignEngine
import EventStore
import Foundation
import Hashing
import Signing
import TestSupport
import Testing

let pythonLMDBAvailable = pythonCanImport("lmdb")

/// Signed checkpoints, proofs and the audits of `campaign verify`, end to end through the CLI, with
/// the stores tampered the way an insider with write access would (Fixtures/tamper_log.py).
@Suite struct AuditTests {
    /// A demo store, the operator's keys (files) and a checkpoint of it (file).
    struct Audited {
        let directory: TemporaryDirectory
        let keys: TemporaryDirectory
        var data: String { directory.path }
        var signer: String { keys.path + "/ops.key" }
        var verifier: String { keys.path + "/ops.key.pub" }
        var checkpoint: String { keys.path + "/checkpoint.txt" }
    }

    /// One tenant's demo: 951 events.
    func audited() async throws -> Audited {
        let setup = Audited(directory: TemporaryDirectory(), keys: TemporaryDirectory())
        let demo = try await campaign(["demo", "--data", setup.data, "--tenants", "1", "--contacts", "400"])
        try #require(demo.status == 0, "\(demo.err)")
        let keygen = try await campaign(["keygen", "--name", "ops.example", "--out", setup.signer])
        try #require(keygen.status == 0, "\(keygen.err)")
        let attributes = try FileManager.default.attributesOfItem(atPath: setup.signer)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let checkpoint = try await campaign(["checkpoint", "--data", setup.data, "--key", setup.signer])
        try #require(checkpoint.status == 0, "\(checkpoint.err)")
        try checkpoint.out.write(toFile: setup.checkpoint, atomically: false, encoding: .utf8)
        return setup
    }

    func verify(_ setup: Audited) async throws -> (status: Int32, report: JSON) {
        let run = try await campaign([
            "verify", "--data", setup.data, "--checkpoint", setup.checkpoint, "--key", setup.verifier, "--json",
        ])
        return (run.status, try JSON.parse(run.out))
    }

    static func tamper(_ setup: Audited, _ arguments: [String]) async throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/tamper_log.py").path
        let run = try await runPythonScript(script, [setup.data] + arguments)
        try #require(run.status == 0, "\(run.output)")
    }

    @Test func aCheckpointIsSignedByTheOperatorAndTheGrownLogProvesItExtendsIt() async throws {
        let setup = try await audited()
        let text = try String(contentsOfFile: setup.checkpoint, encoding: .utf8)
        let note = try SignedNote(parsing: text)
        let body = try TreeCheckpoint(text: note.text)
        let key = try NoteKey(text: try String(contentsOfFile: setup.verifier, encoding: .utf8))
        #expect(note.isSigned(by: key))
        #expect(!text.contains("PRIVATE"), "the checkpoint carries no secret")
        #expect(body.origin.hasPrefix("campaign-engine/"))
        // The store keeps the checkpoint, never the key.
        let store = try EventStore(path: setup.data, options: readOnly())
        #expect(try store.keptCheckpoints().map(\.size) == [body.size])
        #expect(try store.treeHead() == TreeHead(size: body.size, rootHash: body.rootHash))
        store.close()
        let secret = try String(contentsOfFile: setup.signer, encoding: .utf8)
        // PRIVATE+KEY+<name>+<key id>+<base64(0x01 ‖ seed)>: base64 may itself hold a "+".
        let encoded = try #require(
            secret.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "+", maxSplits: 4).last)
        let signer = try #require(Data(base64Encoded: String(encoded)))
        try #require(signer.count == 33)
        let file = try Data(contentsOf: URL(fileURLWithPath: setup.data + "/data.mdb"))
        #expect(file.range(of: signer.dropFirst()) == nil, "the seed is not stored")
        #expect(file.range(of: Data(encoded.utf8)) == nil, "nor its text")

        let more = try await campaign(["demo", "--data", setup.data, "--tenants", "1", "--contacts", "400"])
        try #require(more.status == 0)
        let (status, report) = try await verify(setup)
        #expect(status == 0)
        #expect(report["checkpoint"]?["consistent"] == .bool(true))
        #expect(report["tree"]?["intact"] == .bool(true))
        #expect((report["checkpoint"]?["logSize"]?.integerValue ?? 0) > Int(body.size))

        // A checkpoint of another store is refused, not taken for a cut or a rewrite.
        let other = try await audited()
        let foreign = try await campaign([
            "verify", "--data", setup.data, "--checkpoint", other.checkpoint, "--key", other.verifier, "--json",
        ])
        #expect(foreign.status == 1)
        #expect(try JSON.parse(foreign.out)["checkpoint"]?["otherStore"] != nil)

        // A checkpoint signed by another key is refused.
        let stranger = try NoteKey.generate(name: "ops.example")
        let forged = try SignedNote(signing: body.text, with: stranger).serialized
        try forged.write(toFile: setup.checkpoint, atomically: false, encoding: .utf8)
        let refused = try await verify(setup)
        #expect(refused.status == 1 && refused.report["checkpoint"]?["signature"] == .bool(false))
    }

    @Test(.enabled(if: pythonLMDBAvailable, "python3 with the lmdb module (pip install lmdb) is not installed"))
    func theIndependentPythonVerifierChecksTheSignatureAndBothProofs() async throws {
        let setup = try await audited()
        let more = try await campaign(["demo", "--data", setup.data, "--tenants", "1", "--contacts", "400"])
        try #require(more.status == 0)
        let prove = try await campaign([
            "prove", "17", "--data", setup.data, "--checkpoint", setup.checkpoint, "--json",
        ])
        let proof = try JSON.parse(prove.out)
        #expect(prove.status == 0 && proof["verified"] == .bool(true))
        try prove.out.write(toFile: setup.keys.path + "/prove.json", atomically: false, encoding: .utf8)
        let verify = try await campaign([
            "verify", "--data", setup.data, "--checkpoint", setup.checkpoint, "--key", setup.verifier, "--json",
        ])
        #expect(verify.status == 0)
        try verify.out.write(toFile: setup.keys.path + "/verify.json", atomically: false, encoding: .utf8)
        let python = try await runPythonTool(
            "verify_tree.py",
            [
                setup.data, "--key", setup.verifier, "--checkpoint", setup.checkpoint, "--inclusion",
                setup.keys.path + "/prove.json", "--consistency", setup.keys.path + "/verify.json",
            ])
        #expect(python.status == 0, "\(python.output)")
        #expect(python.output.contains("checkpoint signature: ok"))
        #expect(python.output.contains("inclusion of position 17: ok"))
        #expect(python.output.contains("consistency"))
        // A proof for another position does not pass for this one.
        let other = try await campaign([
            "prove", "18", "--data", setup.data, "--checkpoint", setup.checkpoint, "--json",
        ])
        let swapped = other.out.replacingOccurrences(of: "\"position\":18", with: "\"position\":17")
        try swapped.write(toFile: setup.keys.path + "/prove.json", atomically: false, encoding: .utf8)
        let rejected = try await runPythonTool(
            "verify_tree.py",
            [
                setup.data, "--key", setup.verifier, "--checkpoint", setup.checkpoint, "--inclusion",
                setup.keys.path + "/prove.json",
            ])
        #expect(rejected.status == 1 && rejected.output.contains("inclusion of position 17: FAILED"))
    }

    @Test(.enabled(if: pythonLMDBAvailable, "python3 with the lmdb module (pip install lmdb) is not installed"))
    func aTruncatedLogIsCaughtWithItsLength() async throws {
        let setup = try await audited()
        try await AuditTests.tamper(setup, ["truncate", "600"])
        let (status, report) = try await verify(setup)
        #expect(status == 1)
        #expect(report["checkpoint"]?["truncatedTo"]?.integerValue == 600)
        #expect(report["checkpoint"]?["rewrittenFrom"] == nil)

        // Cut the tree as well: the length is still known, the checkpoints kept vouch for the rest.
        let second = try await audited()
        try await AuditTests.tamper(second, ["truncate", "600", "--tree"])
        let (status2, report2) = try await verify(second)
        #expect(status2 == 1 && report2["checkpoint"]?["truncatedTo"]?.integerValue == 600)
        #expect(report2["tree"]?["intact"] == .bool(true), "the insider kept the tree consistent with the cut log")
        // No proof against the checkpoint can be made from the cut log: prove says so (it answered
        // INTERNAL_ERROR, "invalid key").
        let prove = try await campaign(["prove", "17", "--data", second.data, "--checkpoint", second.checkpoint])
        #expect(
            prove.status == 1 && prove.err.contains("RESOURCE_CONFLICT: TRUNCATED: the log holds 600 events"),
            "\(prove.err)")
    }

    @Test(.enabled(if: pythonLMDBAvailable, "python3 with the lmdb module (pip install lmdb) is not installed"))
    func aLogRewrittenAndReHashedIsCaughtAtThePositionRewritten() async throws {
        let setup = try await audited()
        try await AuditTests.tamper(setup, ["rewrite", "777"])
        let chain = try await campaign(["verify", "--data", setup.data, "--json"])
        let plain = try JSON.parse(chain.out)
        #expect(plain["intact"] == .bool(true), "the chain was re-hashed, so it verifies on its own")
        #expect(plain["tree"]?["firstBadPosition"]?.integerValue == 777)
        let (status, report) = try await verify(setup)
        #expect(status == 1)
        #expect(report["checkpoint"]?["rewrittenFrom"]?.integerValue == 777, "\(report)")
    }

    /// The insider also rebuilds the tree: only signed checkpoints remember the original; those kept
    /// in the store bound the position.
    @Test(.enabled(if: pythonLMDBAvailable, "python3 with the lmdb module (pip install lmdb) is not installed"))
    func aRewriteThatRebuildsTheTreeIsBoundedByTheKeptCheckpoints() async throws {
        let setup = try await audited()
        let first = try TreeCheckpoint(
            text: try SignedNote(parsing: String(contentsOfFile: setup.checkpoint, encoding: .utf8)).text)
        let more = try await campaign(["demo", "--data", setup.data, "--tenants", "1", "--contacts", "400"])
        try #require(more.status == 0)
        let later = try await campaign(["checkpoint", "--data", setup.data, "--key", setup.signer])
        try #require(later.status == 0)
        let second = try TreeCheckpoint(text: try SignedNote(parsing: later.out).text)
        try later.out.write(toFile: setup.checkpoint, atomically: false, encoding: .utf8)
        let position = first.size + 25
        try await AuditTests.tamper(setup, ["rewrite", String(position), "--tree"])
        let plain = try JSON.parse(try await campaign(["verify", "--data", setup.data, "--json"]).out)
        #expect(plain["intact"] == .bool(true) && plain["tree"]?["intact"] == .bool(true))
        let (status, report) = try await verify(setup)
        #expect(status == 1)
        #expect(report["checkpoint"]?["matchesThrough"]?.integerValue == Int(first.size))
        #expect(report["checkpoint"]?["rewrittenBy"]?.integerValue == Int(second.size))
    }

    @Test(.enabled(if: pythonLMDBAvailable, "python3 with the lmdb module (pip install lmdb) is not installed"))
    func anEditedContactValueIsCaughtByItsCommitment() async throws {
        let setup = try await audited()
        let clean = try JSON.parse(try await campaign(["verify", "--data", setup.data, "--contacts", "--json"]).out)
        #expect(clean["contacts"]?["mismatched"] == .array([]))
        let live = clean["contacts"]?["live"]?.integerValue ?? 0
        #expect(live + (clean["contacts"]?["erased"]?.integerValue ?? 0) == 400 && live > 390)
        try await AuditTests.tamper(setup, ["contact", "0"])
        let run = try await campaign(["verify", "--data", setup.data, "--contacts", "--json"])
        #expect(run.status == 1)
        let mismatched = try JSON.parse(run.out)["contacts"]?["mismatched"]?.arrayValue ?? []
        #expect(mismatched.count == 1)
        #expect(mismatched.first?["problem"]?.stringValue?.contains("do not match the commitment") == true)
    }

    @Test(.enabled(if: pythonLMDBAvailable, "python3 with the lmdb module (pip install lmdb) is not installed"))
    func valuesKeptForAContactTheLogHasNoEventsOfAreCaught() async throws {
        let setup = try await audited()
        try await AuditTests.tamper(setup, ["orphan", "3"])
        let run = try await campaign(["verify", "--data", setup.data, "--contacts", "--json"])
        #expect(run.status == 1)
        let contacts = try JSON.parse(run.out)["contacts"]
        #expect(contacts?["orphaned"]?.integerValue == 2)
        let problems = contacts?["mismatched"]?.arrayValue ?? []
        #expect(problems.count == 2)
        let ids = problems.compactMap { $0["contactId"]?.stringValue }
        let tenants = problems.compactMap { $0["tenant"]?.stringValue }
        #expect(ids.contains("ctc_never_created"))
        #expect(tenants.contains("another-tenant"))
        #expect(problems.allSatisfy { $0["problem"]?.stringValue?.contains("no events of") == true })
        let text = try await campaign(["verify", "--data", setup.data, "--contacts"])
        #expect(
            text.out.contains("contacts MISMATCHED: 0 of") && text.out.contains("2 rows of values without a contact"))
    }

    @Test(.enabled(if: pythonLMDBAvailable, "python3 with the lmdb module (pip install lmdb) is not installed"))
    func aDeletedStreamLinkIsCaughtAndVerifyRecordMakesTheIndexAgain() async throws {
        let setup = try await audited()
        let clean = try JSON.parse(try await campaign(["verify", "--data", setup.data, "--json"]).out)
        #expect(clean["streamIndex"]?["intact"] == .bool(true))
        try await AuditTests.tamper(setup, ["unlink", "500"])
        let run = try await campaign(["verify", "--data", setup.data, "--json"])
        #expect(run.status == 1)
        let report = try JSON.parse(run.out)
        #expect(report["intact"] == .bool(true))
        #expect(report["streamIndex"]?["problem"] == .string("position 500 has no link"))
        let text = try await campaign(["verify", "--data", setup.data])
        #expect(text.out.contains("stream index DAMAGED: position 500 has no link"))
        let record = try await campaign(["verify", "--data", setup.data, "--record", "--json"])
        #expect(record.status == 0, "\(record.out)")
        #expect(try JSON.parse(record.out)["streamIndex"]?["rebuilt"] == .bool(true))
        let after = try await campaign(["verify", "--data", setup.data, "--json"])
        #expect(after.status == 0)
        #expect(try JSON.parse(after.out)["streamIndex"]?["intact"] == .bool(true))
    }

    /// Paths and origins an operator mistypes are usage errors (they were INTERNAL_ERROR, or, for an
    /// origin with a newline, a kept checkpoint whose body no longer read as one); a configuration an
    /// engine cannot run with stops it from opening instead of failing in the background or trapping.
    @Test func mistypedOperatorInputAndUnusableConfigurationsAreRefusedUpFront() async throws {
        let directory = TemporaryDirectory()
        let keys = TemporaryDirectory()
        let created = try await campaign(
            ["apply", "--data", directory.path],
            input: #"{"requestId":"r","principal":\#(admin()),"command":"campaign.create","#
                + #""payload":{"name":"Spring","channel":"sms"}}"# + "\n")
        try #require(created.status == 0)
        let missing = try await campaign(["keygen", "--name", "ops", "--out", keys.path + "/none/ops.key"])
        #expect(missing.status == 64 && missing.err.contains("there is no directory \(keys.path)/none"))
        let signer = keys.path + "/ops.key"
        try #require(try await campaign(["keygen", "--name", "ops", "--out", signer]).status == 0)
        // A one-character name in the working directory (Foundation's path methods trap on it).
        let short = try await campaign(["keygen", "--name", "ops", "--out", "k"], in: keys.path)
        #expect(short.status == 0, "\(short.err)")
        #expect(FileManager.default.fileExists(atPath: keys.path + "/k.pub"))
        for origin in ["", "example.com/log\n1"] {
            let run = try await campaign(["checkpoint", "--data", directory.path, "--key", signer, "--origin", origin])
            #expect(run.status == 64 && run.err.contains("--origin: a checkpoint's origin is one line"))
        }
        let signed = try await campaign([
            "checkpoint", "--data", directory.path, "--key", signer, "--origin", "example.com/log",
        ])
        #expect(signed.status == 0 && signed.out.hasPrefix("example.com/log\n1\n"))
        let file = keys.path + "/a-file"
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        let compact = try await campaign(["compact", "--data", directory.path, "--to", file])
        #expect(compact.status == 64 && compact.err.contains("is a file, not a directory"))
        let tick = try await campaign(["apply", "--data", directory.path, "--operator-tenant", "Ops Team"])
        #expect(tick.status == 64 && tick.err.contains("--operator-tenant takes a tenant"))

        let key = try NoteKey.generate(name: "ops")
        let verifier = try NoteKey(text: key.verifierKey)
        // Each would have signed nothing unseen, 429'd every request, trapped, or been refused by LMDB.
        let unusable: [(String, (inout EngineConfiguration) -> Void)] = [
            ("checkpoints: a signer key", { $0.checkpoints = CheckpointSchedule(key: verifier) }),
            ("checkpoints: a checkpoint's origin", { $0.checkpoints = CheckpointSchedule(key: key, origin: "a\nb") }),
            ("rateLimit must be at least 1", { $0.rateLimit = 0 }),
            ("rateLimitWindow must be a positive", { $0.rateLimitWindow = 0 }),
            ("rateLimitWindow must be a positive", { $0.rateLimitWindow = .nan }),
            ("maximumRetries must be at least 1", { $0.maximumRetries = -1 }),
            ("importSlice must be at least 1 contact", { $0.importSlice = 0 }),
            ("jsonLimits.maximumBytes must be at least 1024", { $0.jsonLimits.maximumBytes = 100 }),
            ("jsonLimits.maximumDepth must be at least 3", { $0.jsonLimits.maximumDepth = 0 }),
            ("storeOptions: maximumReaders must be 1", { $0.storeOptions.maximumReaders = -1 }),
            ("operatorTenant \"Ops Team\" is no tenant", { $0.operatorTenant = "Ops Team" }),
            ("idempotencyRetention must be at least 60 seconds", { $0.idempotencyRetention = 0 }),
            ("idempotencyRetention must be at least 60 seconds", { $0.idempotencyRetention = .infinity }),
            ("publishTimeout must be a positive number of seconds", { $0.publishTimeout = 0 }),
            ("publishTimeout must be a positive number of seconds", { $0.publishTimeout = .infinity }),
        ]
        for (message, change) in unusable {
            var configuration = EngineConfiguration()
            change(&configuration)
            let engineDirectory = TemporaryDirectory()
            #expect {
                _ = try CampaignEngine(directory: engineDirectory.path, configuration: configuration)
            } throws: { error in
                let error = error as? CampaignError
                return error?.code == .validationError && error?.message.contains(message) == true
            }
            // Nothing was created: the check comes before the store opens.
            #expect(!FileManager.default.fileExists(atPath: engineDirectory.path + "/data.mdb"))
        }
        // The smallest limits the check takes still let a request through.
        var smallest = EngineConfiguration()
        smallest.jsonLimits = .smallestUsable
        let small = try TestEngine(configuration: smallest)
        let accepted = await small.command("campaign.create", #"{"name":"Small","channel":"sms"}"#)
        #expect(accepted.status == 201, "\(accepted)")
        var readers = StoreOptions()
        readers.maximumReaders = 0
        let unopened = TemporaryDirectory()
        #expect(throws: EventStoreError.self) { _ = try EventStore(path: unopened.path, options: readers) }
        let store = try EventStore(path: directory.path)
        defer { store.close() }
        await #expect {
            _ = try await Audit.checkpoint(store, key: key, origin: "")
        } throws: { ($0 as? CampaignError)?.code == .validationError }
    }

    @Test func theEngineSignsCheckpointsOnItsScheduleAndExportCarriesThem() async throws {
        var configuration = EngineConfiguration()
        let key = try NoteKey.generate(name: "ops.example")
        configuration.checkpoints = CheckpointSchedule(key: key, events: 5, interval: 0.2)
        let test = try TestEngine(configuration: configuration)
        let engine = test.engine
        let directory = test.directory
        for n in 0..<12 {
            let response = await test.command(
                "campaign.create", #"{"name":"C \#(n)","channel":"email"}"#, requestId: "r\(n)")
            #expect(response.status == 201, "\(response)")
        }
        var kept = [StoredCheckpoint]()
        // Up to 30 s for the schedule's 0.2 s: a bound on a hang, generous for a loaded machine.
        for _ in 0..<600 where kept.isEmpty || kept.last!.size < 12 {
            try await Task.sleep(for: .milliseconds(50))
            kept = try engine.eventStore.keptCheckpoints()
        }
        engine.close()
        let last = try #require(kept.last)
        #expect(last.size == 12)
        let note = try SignedNote(parsing: last.note)
        #expect(note.isSigned(by: try NoteKey(text: key.verifierKey)))
        let export = try await campaign(["export", "--data", directory.path])
        let lines = try export.lines.map { try JSON.parse($0) }
        let at = try #require(lines.firstIndex { $0["type"]?.stringValue == "audit.checkpoint" })
        #expect(lines[at - 1]["sequence"]?.stringValue == CampaignEngine.sequence(kept[0].size))
        #expect(lines[at]["data"]?.stringValue == kept[0].note)
        #expect(lines.filter { $0["type"]?.stringValue == "audit.checkpoint" }.count == kept.count)
    }

    func readOnly() -> StoreOptions {
        var options = StoreOptions()
        options.readOnly = true
        return options
    }
}
