import CampaignDomain
import CampaignEngine
import EventStore
import Foundation
import Spawn
import TestSupport
import Testing

@testable import CampaignCLI
@testable import CampaignProjections

/// The result of running the built `campaign` binary.
struct Run {
    var status: Int32
    var out: String
    var err: String
    var lines: [String] {
        out.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.isEmpty }
    }
}

/// Runs `campaign` with `arguments`, feeding `input` on stdin, in `directory` (else this process's).
func campaign(_ arguments: [String], input: String = "", in directory: String? = nil) async throws -> Run {
    try await campaign(arguments, bytes: Array(input.utf8), in: directory)
}

/// Runs `campaign` with `arguments`, feeding raw bytes (which need not be UTF-8) on stdin, in
/// `directory` (else this process's).
func campaign(_ arguments: [String], bytes input: [UInt8], in directory: String? = nil) async throws -> Run {
    let child = try ChildProcess(
        product("campaign"), arguments, directory: directory, input: .bytes(input), output: .collect, error: .collect)
    return Run(
        status: await child.waitForExit().status, out: String(decoding: child.output, as: UTF8.self),
        err: String(decoding: child.errorOutput, as: UTF8.self))
}

func fixture(_ name: String) throws -> String {
    try String(
        contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "Fixtures/\(name)"), encoding: .utf8)
}

/// The bytes of a `data.mdb`, read as LMDB lays out its 4 KiB pages.
struct StoreFile {
    var bytes: [UInt8]
    /// The little-endian 16-bit value at `offset`.
    func u16(_ offset: Int) -> Int { Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 }
}

/// Rewrites `directory`'s `data.mdb`, handing `damage` each ordinary leaf page that holds a node (its
/// start in the file; `damage` says whether it changed it); returns how many it changed. A page's
/// header: pgno (8), pad (2), flags (2), lower (2), upper (2), then the node offsets. Pages 0 and 1
/// are the meta pages; P_LEAF is 0x02, P_LEAF2 (fixed-size duplicates) 0x20.
func damageLeafPages(in directory: String, _ damage: (inout StoreFile, Int) -> Bool) throws -> Int {
    let url = URL(fileURLWithPath: directory + "/data.mdb")
    var file = StoreFile(bytes: [UInt8](try Data(contentsOf: url)))
    var changed = 0
    for page in 2..<(file.bytes.count / 4_096) {
        let start = page * 4_096
        let flags = file.u16(start + 10)
        guard flags & 0x02 != 0, flags & 0x20 == 0, file.u16(start + 12) > 16 else { continue }
        if damage(&file, start) { changed += 1 }
    }
    try Data(file.bytes).write(to: url)
    return changed
}

/// A store holding the scripted session of Fixtures/apply-session.jsonl.
func sessionStore() async throws -> TemporaryDirectory {
    let directory = TemporaryDirectory()
    let run = try await campaign(
        ["apply", "--data", directory.path, "--now", "2026-11-30T12:00:00Z"],
        input: try fixture("apply-session.jsonl"))
    try #require(run.status == 0, "\(run.err)")
    return directory
}

@Suite(.serialized) struct CLITests {
    @Test func applyAnswersAScriptedSessionLineForLine() async throws {
        let directory = TemporaryDirectory()
        let run = try await campaign(
            ["apply", "--data", directory.path, "--now", "2026-11-30T12:00:00Z"],
            input: try fixture("apply-session.jsonl"))
        #expect(run.status == 0)
        let expected = try fixture("apply-session.expected").split(separator: "\n").map(String.init)
        #expect(run.lines.count == expected.count)
        for (got, want) in zip(run.lines, expected) { #expect(got == want) }
        let codes = run.lines.compactMap { (try? JSON.parse($0))?["error"]?["code"]?.stringValue }
        #expect(
            codes == [
                "RESOURCE_CONFLICT", "INVALID_SCHEDULE", "INVALID_FORMAT", "CAMPAIGN_ALREADY_ACTIVE",
                "DUPLICATE_RESOURCE", "INVALID_FIELD",
            ])
    }

    /// Two processes updating one campaign at once, each with eight requests in flight: every
    /// update lands, none is refused for the other's writes. Within a process commands on one
    /// aggregate take turns; across processes the loser of each race decides again on the new
    /// version, and with sixteen tries about one update in a thousand used to run out of them.
    @Test func twoProcessesUpdatingOneCampaignAllLand() async throws {
        let directory = TemporaryDirectory()
        let principal = principal(tenant: "acme", subject: "u_1", role: "editor")
        let created = try await campaign(
            ["apply", "--data", directory.path],
            input: #"{"requestId":"c","principal":\#(principal),"command":"campaign.create","#
                + #""payload":{"campaignId":"cmp_1","name":"Shared","channel":"email"}}"# + "\n")
        try #require(created.status == 0 && created.out.contains(#""status":201"#), "\(created.out)")
        func updates(_ tag: String) -> String {
            (0..<400).map {
                #"{"requestId":"\#(tag)\#($0)","principal":\#(principal),"command":"campaign.update","#
                    + #""payload":{"campaignId":"cmp_1","content":{"subject":"S","body":"\#(tag) \#($0)"}}}"# + "\n"
            }.joined()
        }
        let arguments = ["apply", "--data", directory.path, "--concurrency", "8"]
        async let first = campaign(arguments, input: updates("a"))
        async let second = campaign(arguments, input: updates("b"))
        for run in try await [first, second] {
            #expect(run.status == 0)
            let refused = run.lines.filter { !$0.contains(#""status":201"#) }
            #expect(run.lines.count == 400 && refused.isEmpty, "\(refused.prefix(3))")
        }
        let state = try await campaign(
            ["apply", "--data", directory.path],
            input: #"{"requestId":"g","principal":\#(principal),"query":"campaign.get","#
                + #""params":{"campaignId":"cmp_1"}}"# + "\n")
        #expect(try JSON.parse(state.out)["data"]?["version"] == .number(801))
        #expect(try await campaign(["verify", "--data", directory.path]).status == 0)
    }

    /// An import written in slices and killed (SIGKILL) after its first slice committed answered
    /// nothing; sent again with the same key, it finds the written contacts unchanged and writes the
    /// rest: every contact once, no event twice, the chain intact.
    @Test func anImportKilledBetweenItsSlicesIsCompletedBySendingItAgain() async throws {
        let directory = TemporaryDirectory()
        let count = 12_000
        let contacts = (0..<count).map { #"{"contactId":"ctc_\#($0)","attributes":{"age":\#($0 % 90)}}"# }
        let line =
            #"{"requestId":"imp","idempotencyKey":"imp","principal":\#(admin()),"command":"contact.import","#
            + #""payload":{"contacts":[\#(contacts.joined(separator: ","))]}}"# + "\n"
        let child = try ChildProcess(
            product("campaign"), ["apply", "--data", directory.path], input: .bytes(Array(line.utf8)),
            output: .collect, error: .collect)
        // Kill it once the first slice (5,000 contacts) is in the log and before the last.
        var head: UInt64 = 0
        while child.isRunning {
            if FileManager.default.fileExists(atPath: directory.path + "/data.mdb") {
                let store = try EventStore(path: directory.path)
                head = try store.head().position
                store.close()
                if head >= 5_000 { break }
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        child.send(SIGKILL)
        _ = await child.waitForExit()
        try #require(head >= 5_000 && head < UInt64(count), "killed at \(head)")
        #expect(child.output.isEmpty, "nothing was answered")

        let again = try await campaign(["apply", "--data", directory.path], input: line)
        let answer = try JSON.parse(again.out)
        #expect(answer["status"] == .number(201))
        let results = answer["data"]?["results"]?.arrayValue ?? []
        #expect(results.count == count)
        let unchanged = results.count { $0["status"] == .number(200) }
        #expect(unchanged >= 5_000 && unchanged % 5_000 == 0, "whole slices came back unchanged: \(unchanged)")
        #expect(answer["data"]?["events"]?.arrayValue?.count == count - unchanged)
        let store = try EventStore(path: directory.path)
        #expect(try store.head().position == UInt64(count))
        #expect(try (0..<count).allSatisfy { try store.streamVersion("acme:ctc_\($0)") == 1 })
        store.close()
        #expect(try await campaign(["verify", "--data", directory.path]).status == 0)
    }

    @Test func theDemosExperimentDrawsASplitTheSampleRatioCheckPassesWhateverTheRunTag() {
        var moved = 0
        for n in 0..<400 {
            let tag = "t\(n)"
            let id = Demo.experimentId(tag: tag, contacts: 400)
            // The erased contact is not exposed: 399 are.
            let emoji = (0..<400).count {
                $0 != Demo.erasedContact
                    && Experiment.assign(experimentId: id, contactId: "ctc_\(tag)_\($0)", variants: Demo.splitVariants)
                        == "emoji"
            }
            let fit = Statistics.chiSquareGoodnessOfFit(observed: [399 - emoji, emoji], weights: [50, 50])
            #expect((fit?.pValue ?? 0) >= 0.05, "\(id): \(emoji) of 399 emoji")
            if id != "exp_\(tag)_subject" { moved += 1 }
        }
        // About one tag in twenty draws a lopsided first split and moves on to the next candidate.
        #expect(moved > 0)
    }

    @Test func demoRunsOnAnEmptyDirectoryAndAgainOnTheSameStore() async throws {
        let directory = TemporaryDirectory()
        let path = directory.path + "/data"
        let first = try await campaign(["demo", "--data", path, "--contacts", "400"])
        #expect(first.status == 0, "\(first.err)")
        #expect(first.out.contains("Dashboard (from the read models)") && first.out.contains("chain verified"))
        #expect(first.out.contains("winner declared: emoji"))
        #expect(!first.out.contains("UNEXPECTED") && !first.out.contains("  ! "), "\(first.out)")
        #expect(first.lines.filter { $0.hasSuffix("[ok]") }.count == 26)
        for tenant in ["acme", "globex", "initech"] { #expect(first.out.contains("\n\(tenant)\n")) }
        // The engine's metrics: every answer counted, the refusals by code, the group commits timed.
        let metricsLine = try #require(first.lines.first { $0.hasPrefix("metrics: ") })
        let answers = Int(metricsLine.dropFirst(9).prefix { $0 != " " }.filter(\.isNumber)) ?? 0
        #expect(answers >= 600 && metricsLine.contains(" refused (") && metricsLine.contains("group commits (p99 ≤ "))
        #expect(metricsLine.contains("; 6 ticks ("), "\(metricsLine)")
        // A demo on a nearly full disk says so; otherwise it is healthy.
        let healthLine = try #require(first.lines.first { $0.hasPrefix("health: ") })
        #expect(healthLine == "health: ok" || healthLine.hasPrefix("health: degraded (disk-space: "), "\(healthLine)")
        let second = try await campaign(["demo", "--data", path, "--contacts", "400", "--json"])
        #expect(second.status == 0)
        let summary = try JSON.parse(second.out)
        #expect(summary["chainIntact"] == .bool(true))
        #expect((summary["metrics"]?["answers"]?.integerValue ?? 0) >= 600)
        #expect((summary["metrics"]?["refused"]?["CONTENT_REJECTED"]?.integerValue ?? 0) >= 3)
        #expect(summary["metrics"]?["lag"]?.objectValue?.count == 6)
        #expect(summary["metrics"]?["ticks"]?["completed"]?.integerValue == 6)
        #expect((summary["metrics"]?["ticks"]?["activated"]?.integerValue ?? 0) >= 3)
        #expect(["ok", "degraded"].contains(summary["health"]?["status"]?.stringValue ?? "-"))
        let firstEvents = try #require(
            first.lines.last { $0.hasPrefix("store: ") }.flatMap {
                Int($0.dropFirst(7).prefix { $0 != " " }.filter(\.isNumber))
            })
        #expect((summary["events"]?.integerValue ?? 0) > firstEvents)
        let fresh = try await campaign(["demo", "--data", path, "--contacts", "400", "--fresh", "--json"])
        #expect((try JSON.parse(fresh.out))["events"]?.integerValue ?? 0 < summary["events"]?.integerValue ?? 0)
        // Every type the demo writes is one `replay --type` knows.
        let replay = try await campaign(["replay", "--data", path, "--json"])
        let types = Set(replay.lines.compactMap { (try? JSON.parse($0))?["type"]?.stringValue })
        #expect(types.count > 20 && types.isSubset(of: EventTypes.all), "\(types.subtracting(EventTypes.all))")
    }

    /// `demo --fresh` deletes a store, never a directory that holds anything else: `--data .
    /// --fresh` in a project's folder deleted the folder.
    @Test func demoFreshDeletesOnlyAStore() async throws {
        let directory = TemporaryDirectory()
        let notes = directory.path + "/notes.txt"
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: notes))
        let refused = try await campaign(["demo", "--data", directory.path, "--fresh"])
        #expect(refused.status == 64 && refused.err.contains("holds other files too (notes.txt)"), "\(refused.err)")
        #expect(FileManager.default.fileExists(atPath: notes))
        let empty = try await campaign(["demo", "--data", ".", "--fresh", "--json"], in: directory.path)
        #expect(empty.status == 64 && FileManager.default.fileExists(atPath: notes))
    }

    @Test func replayFiltersByTenantStreamActorTypeAndRange() async throws {
        let directory = try await sessionStore()
        func positions(_ arguments: [String]) async throws -> [Int] {
            let run = try await campaign(["replay", "--data", directory.path, "--json"] + arguments)
            #expect(run.status == 0, "\(run.err)")
            return run.lines.compactMap { (try? JSON.parse($0))?["position"]?.integerValue }
        }
        #expect(try await positions([]) == [1, 2, 3, 4, 5])
        #expect(try await positions(["--tenant", "acme", "--type", "campaign.*"]) == [2, 3, 4, 5])
        #expect(try await positions(["--stream", "cmp_1", "--tenant", "acme"]) == [2, 3, 4, 5])
        #expect(try await positions(["--stream", "acme:seg_1"]) == [1])
        #expect(try await positions(["--actor", "scheduler"]) == [4])
        #expect(try await positions(["--type", "campaign.paused"]) == [5])
        #expect(try await positions(["--from", "3", "--to", "4"]) == [3, 4])
        #expect(try await positions(["--from", "2026-12-01T00:00:00Z"]) == [4, 5])
        #expect(try await positions(["--tenant", "globex"]) == [])
        let table = try await campaign(["replay", "--data", directory.path, "--actor", "scheduler"])
        #expect(table.lines.first?.hasPrefix("POSITION") == true)
        #expect(
            table.lines.contains {
                $0.contains("acme:cmp_1@3") && $0.contains("campaign.activated") && $0.contains("r7#campaign.activate")
            })
        #expect(table.lines.last == "1 event")
    }

    @Test func replayAsOfPrintsTheAggregateThen() async throws {
        let directory = try await sessionStore()
        let atPosition = try await campaign([
            "replay", "--data", directory.path, "--as-of", "3", "--stream", "acme:cmp_1", "--json",
        ])
        let scheduled = try JSON.parse(atPosition.out)
        #expect(scheduled["status"]?.stringValue == "scheduled" && scheduled["version"]?.integerValue == 2)
        let atTime = try await campaign([
            "replay", "--data", directory.path, "--as-of", "2026-12-01T09:00:00Z", "--stream", "cmp_1", "--tenant",
            "acme", "--json",
        ])
        #expect((try JSON.parse(atTime.out))["status"]?.stringValue == "paused")
        let before = try await campaign(["replay", "--data", directory.path, "--as-of", "1", "--stream", "acme:cmp_1"])
        #expect(
            before.status == 0 && before.out.contains("did not exist yet as of 1: its first event is at position 2"))
        let text = try await campaign(["replay", "--data", directory.path, "--as-of", "4", "--stream", "acme:cmp_1"])
        #expect(text.lines.contains { $0.contains("status") && $0.contains("active") })
    }

    @Test func replayAsOfRefusesAStreamTheLogNeverHad() async throws {
        let directory = try await sessionStore()
        let absent = try await campaign([
            "replay", "--data", directory.path, "--as-of", "4", "--stream", "acme:cmp_9", "--json",
        ])
        #expect(absent.status == 1)
        #expect((try JSON.parse(absent.out))["error"]?["code"]?.stringValue == "RESOURCE_NOT_FOUND")
        let text = try await campaign(["replay", "--data", directory.path, "--as-of", "4", "--stream", "beta:cmp_1"])
        #expect(text.status == 1 && text.err.contains("RESOURCE_NOT_FOUND: beta:cmp_1 has no events in this log"))
        let noKind = try await campaign(["replay", "--data", directory.path, "--as-of", "4", "--stream", "acme:xyz_1"])
        #expect(noKind.status == 64 && noKind.err.contains("--stream acme:xyz_1: \"xyz_1\" names no stream"))
        let notYet = try await campaign([
            "replay", "--data", directory.path, "--as-of", "1", "--stream", "acme:cmp_1", "--json",
        ])
        #expect(notYet.status == 0 && notYet.out == "null\n")
    }

    @Test func boundsInTheWrongOrderAreAUsageError() async throws {
        let directory = try await sessionStore()
        for (from, to) in [("5", "2"), ("2026-12-02T00:00:00Z", "2026-12-01T00:00:00Z")] {
            for command in ["replay", "export"] {
                let run = try await campaign([command, "--data", directory.path, "--from", from, "--to", to])
                #expect(run.status == 64 && run.err.contains("--from \(from) is after --to \(to)"))
            }
        }
        let one = try await campaign(["replay", "--data", directory.path, "--from", "3", "--to", "3"])
        #expect(one.status == 0 && one.lines.last == "1 event")
    }

    @Test func aTenantNoPrincipalCanHaveIsAUsageErrorNotAnEmptyList() async throws {
        let directory = try await sessionStore()
        for tenant in ["A B", "Acme", ""] {
            for command in [["replay"], ["export"], ["replay", "--as-of", "1", "--stream", "cmp_1"]] {
                let run = try await campaign(command + ["--data", directory.path, "--tenant", tenant])
                #expect(run.status == 64 && run.err.contains("--tenant \"\(tenant)\" is no tenant"))
            }
        }
        let acme = try await campaign(["replay", "--data", directory.path, "--tenant", "acme"])
        #expect(acme.status == 0 && acme.lines.last == "5 events")
    }

    /// A stream or an actor no log can hold (an empty id, a tenant in capitals, a space), or a type
    /// no event has (a typo), is a usage error, not an empty list; a stream with no events yet is an
    /// empty list.
    @Test func aStreamActorOrTypeNoLogCanHoldIsAUsageError() async throws {
        let directory = try await sessionStore()
        for (stream, problem) in [
            ("acme:", "\"\" names no stream"), ("Acme:cmp_1", "\"Acme\" is no tenant"),
            ("acme:bad id", "\"bad id\" names no stream"), ("acme:cmp_1:x", "\"cmp_1:x\" names no stream"),
        ] {
            for command in ["replay", "export"] {
                let run = try await campaign([command, "--data", directory.path, "--stream", stream])
                #expect(run.status == 64 && run.err.contains("--stream \(stream): \(problem)"), "\(run.err)")
            }
        }
        let actor = try await campaign(["replay", "--data", directory.path, "--actor", ""])
        #expect(actor.status == 64 && actor.err.contains("--actor \"\" is no subject"))
        for type in ["campaign.creatd", "campaign.", "nothing*"] {
            for command in ["replay", "export"] {
                let run = try await campaign([command, "--data", directory.path, "--type", type])
                #expect(run.status == 64 && run.err.contains("--type \(type) matches no event type"), "\(run.err)")
            }
        }
        for stream in ["acme:cmp_none", "acme:schema", "acme:segment-memberships"] {
            let run = try await campaign(["replay", "--data", directory.path, "--stream", stream])
            #expect(run.status == 0 && run.lines.last == "0 events", "\(stream)")
        }
    }

    @Test func verifyPassesACleanStoreAndNamesTheFirstBadPositionOfATamperedOne() async throws {
        let directory = try await sessionStore()
        let clean = try await campaign(["verify", "--data", directory.path])
        #expect(clean.status == 0 && clean.out.contains("chain intact: 5 events checked"))
        let root = clean.lines.first { $0.hasPrefix("tree intact") }?.split(separator: " ").last.map(String.init)
        #expect(root?.count == 64)
        #expect(clean.lines.last == "stream index intact")
        // "Spring launch" is in the log only in the campaign.created event at position 2.
        try flipEveryCopy(of: "Spring launch", in: directory.path, mask: 0x20)
        let broken = try await campaign(["verify", "--data", directory.path, "--json"])
        #expect(broken.status == 1)
        let report = try JSON.parse(broken.out)
        #expect(report["intact"] == .bool(false) && report["firstBadPosition"]?.integerValue == 2)
    }

    /// Pages whose insides LMDB does not check (here every leaf's first node claims 4 GiB of data)
    /// crash whatever reads them: verify reads in a child and says the file is damaged, exit 1.
    @Test func verifyAnswersForAStoreWhosePagesCrashTheReader() async throws {
        let directory = try await sessionStore()
        let leaves = try damageLeafPages(in: directory.path) { page, start in
            // The first node's data size (lo, hi) becomes 0xFFFF_FFFF.
            let node = start + page.u16(start + 16)
            for offset in 0..<4 { page.bytes[node + offset] = 0xFF }
            return true
        }
        #expect(leaves > 0)
        let text = try await campaign(["verify", "--data", directory.path])
        #expect(text.status == 1 && text.err.contains("damaged beyond what LMDB checks"), "\(text)")
        let json = try await campaign(["verify", "--data", directory.path, "--json"])
        #expect(json.status == 1)
        #expect(try JSON.parse(json.out)["intact"] == .bool(false))
        let projections = try await campaign(["projections", "verify", "--data", directory.path])
        #expect(projections.status == 1 && projections.err.contains("campaign projections verify: reading the store"))
    }

    @Test func projectionsRebuildAndVerifyAndAVerifyNamesATamperedRow() async throws {
        let directory = try await sessionStore()
        let status = try await campaign(["projections", "status", "--data", directory.path, "--json"])
        #expect(status.status == 0 && status.lines.count == 6)
        let rebuild = try await campaign(["projections", "rebuild", "--data", directory.path])
        #expect(
            rebuild.status == 0 && rebuild.lines.count == 1
                && rebuild.out.hasPrefix(
                    "rebuilt campaign-board, schedule-index, publishing-queue, experiment-results, segments, audit: ")
        )
        #expect(rebuild.err.isEmpty, "no progress bar when stderr is not a terminal")
        let oneLane = try await campaign(["projections", "rebuild", "--lanes", "1", "--data", directory.path])
        #expect(oneLane.status == 0 && oneLane.lines.count == 1)
        let one = try await campaign(["projections", "rebuild", "campaign-board", "--data", directory.path])
        #expect(one.lines.count == 1 && one.out.hasPrefix("rebuilt campaign-board: 5 events"))
        let verify = try await campaign(["projections", "verify", "--data", directory.path])
        #expect(verify.status == 0 && verify.lines.allSatisfy { $0.contains(": ok (") })

        do {
            let store = try EventStore(path: directory.path)
            let table = try store.table(named: "p:campaign-board:a")
            let slotB = try store.table(named: "p:campaign-board:b")
            try store.write { txn in
                // The live slot alternates with each rebuild; damage the row in whichever holds it.
                let key = Array("r".utf8) + [0] + Array("acme".utf8) + [0] + Array("cmp_1".utf8)
                for slot in [table, slotB] where try txn.value(forKey: key, in: slot) != nil {
                    try txn.put(Array(#"{"campaignId":"cmp_1","status":"draft"}"#.utf8), forKey: key, in: slot)
                }
            }
            store.close()
        }
        let differs = try await campaign(["projections", "verify", "campaign-board", "--data", directory.path])
        #expect(differs.status == 1)
        #expect(differs.lines.first == "campaign-board: DIFFERS in 1 of 3 entries")
        #expect(
            differs.lines.dropFirst().first?.hasPrefix(
                "  r/acme/cmp_1: live {\"campaignId\":\"cmp_1\",\"status\":\"draft\"} ≠ rebuilt") == true)
    }

    /// An unfinished rebuild reads the same whether another process runs it or it was interrupted:
    /// the status says what it means and how to finish it, and says nothing when none is unfinished.
    @Test func projectionsStatusExplainsAnUnfinishedRebuild() {
        func status(_ name: String, rebuild: UInt64?) -> ProjectionStatus {
            ProjectionStatus(
                name: name, mode: .catchUp, version: 3, builtVersion: 3, checkpoint: 1_898, head: 1_898,
                rebuildCheckpoint: rebuild)
        }
        let console = ThreadNotingConsole([])
        _ = ProjectionsCommand.status(
            [status("audit", rebuild: nil), status("segments", rebuild: 40_000)], json: false, console: console)
        #expect(console.output.count == 4, "\(console.output)")
        #expect(console.output[2].hasPrefix("segments") && console.output[2].hasSuffix("at 40,000"))
        #expect(
            console.output.last
                == "REBUILD: begun and not finished (running in another process, or interrupted); the live table "
                + "serves queries meanwhile. `campaign projections rebuild segments` finishes it.")
        let settled = ThreadNotingConsole([])
        _ = ProjectionsCommand.status([status("audit", rebuild: nil)], json: false, console: settled)
        #expect(settled.output.count == 2 && settled.output.allSatisfy { !$0.hasPrefix("REBUILD:") })
    }

    @Test func statsReportsCountsAndSizes() async throws {
        let directory = try await sessionStore()
        let run = try await campaign(["stats", "--data", directory.path, "--json"])
        let stats = try JSON.parse(run.out)
        #expect(
            stats["events"]?.integerValue == 5 && stats["streams"]?.integerValue == 2
                && stats["tenants"]?.integerValue == 1)
        #expect(stats["eventsByType"]?["campaign.created"]?.integerValue == 1)
        #expect(
            (stats["usedBytes"]?.integerValue ?? 0) > 0
                && (stats["mapBytes"]?.integerValue ?? 0) >= (stats["usedBytes"]?.integerValue ?? 0))
        // Every table of the file, the read models' included (a tool's store opens only the log's).
        let tables = try #require(stats["tables"]?.objectValue)
        #expect(tables["events"]?["entries"]?.integerValue == 5)
        #expect(tables["p:campaign-board:a"]?["entries"]?.integerValue ?? 0 > 0)
        #expect(tables["streams"] == nil, "a marker key of the main database is no table")
        let text = try await campaign(["stats", "--data", directory.path])
        #expect(text.lines.contains { $0.hasPrefix("events:   5   streams: 2   tenants: 1 (acme)") })
        #expect(text.lines.contains { $0.hasPrefix("TABLE ") } && text.lines.contains { $0.hasPrefix("events ") })
    }

    @Test(arguments: [
        [], ["frobnicate"], ["apply", "extra"], ["replay", "--bogus"], ["replay", "--stream", "cmp_1"],
        ["verify", "--data"],
        ["projections"], ["projections", "frob"], ["demo", "--tenants", "9"], ["apply", "--now", "tomorrow"],
        ["compact"],
        ["replay", "--from", "yesterday"], ["stats", "--json=1"], ["demo", "--contacts", "200"],
        ["projections", "rebuild", "--lanes", "0"],
    ])
    func usageErrorsExit64WithOneClearLine(_ arguments: [String]) async throws {
        let run = try await campaign(arguments)
        #expect(run.status == 64, "\(arguments): \(run.err)")
        #expect(run.out.isEmpty)
        if !arguments.isEmpty { #expect(run.err.split(separator: "\n").count == 1 && run.err.hasPrefix("campaign")) }
    }

    @Test(arguments: ["demo", "apply", "replay", "verify", "projections", "stats", "compact"])
    func everyCommandHasHelp(_ command: String) async throws {
        let run = try await campaign([command, "--help"])
        #expect(run.status == 0 && run.out.hasPrefix("usage: campaign \(command)"))
    }

    @Test func aMissingStoreIsAFailureNotAnEmptyStore() async throws {
        let directory = TemporaryDirectory()
        let run = try await campaign(["verify", "--data", directory.path + "/nope"])
        #expect(run.status == 1 && run.err.contains("no store at"))
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/nope"))
    }

    @Test func compactWritesACopyThatVerifies() async throws {
        let directory = try await sessionStore()
        let copy = TemporaryDirectory()
        let run = try await campaign(["compact", "--data", directory.path, "--to", copy.path + "/copy"])
        #expect(run.status == 0, "\(run.err)")
        let verify = try await campaign(["verify", "--data", copy.path + "/copy"])
        #expect(verify.status == 0 && verify.out.contains("5 events checked"))
    }
}

@Suite struct LineReaderTests {
    /// Feeds `chunks` one read at a time.
    func reader(_ chunks: [String]) -> LineReader {
        let queue = Locked(chunks.map { Data($0.utf8) })
        return LineReader { queue.pop() ?? Data() }
    }

    @Test func linesAreSplitAcrossChunksAndTheLastNeedsNoNewline() {
        let lines = reader(["ab", "c\nde", "f\n\ng", "h"])
        #expect(lines.next(limit: 10) == .line(Array("abc".utf8)))
        #expect(lines.next(limit: 10) == .line(Array("def".utf8)))
        #expect(lines.next(limit: 10) == .line(Array("".utf8)))
        #expect(lines.next(limit: 10) == .line(Array("gh".utf8)))
        #expect(lines.next(limit: 10) == .end)
    }

    @Test func anOverlongLineIsReportedByItsLengthAndTheNextLineStillReads() {
        let lines = reader(["0123456789", "0123456789", "01\nok\n", "0123456789abc"])
        #expect(lines.next(limit: 8) == .tooLong(22))
        #expect(lines.next(limit: 8) == .line(Array("ok".utf8)))
        #expect(lines.next(limit: 8) == .tooLong(13))
        #expect(lines.next(limit: 8) == .end)
    }

    /// Lines of every length around the limit, cut into chunks anywhere (several lines to a chunk,
    /// or a line over several): each comes out whole, or as too long by its length, in order.
    @Test func randomLinesInRandomChunksComeOutAsWritten() {
        var random = SeededRandom(seed: 41)
        for round in 0..<300 {
            let limit = Int.random(in: 1...12, using: &random)
            let lines = (0..<Int.random(in: 0...12, using: &random)).map { index in
                String(
                    repeating: Character(UnicodeScalar(UInt8(97 + index % 26))),
                    count: Int.random(in: 0...16, using: &random))
            }
            let endsWithNewline = Bool.random(using: &random)
            var text = Array(lines.joined(separator: "\n").utf8)
            if endsWithNewline && !lines.isEmpty { text.append(UInt8(ascii: "\n")) }
            var chunks = [String]()
            var rest = text[...]
            while !rest.isEmpty {
                let size = Int.random(in: 1...20, using: &random)
                chunks.append(String(decoding: rest.prefix(size), as: UTF8.self))
                rest = rest.dropFirst(size)
            }
            let reader = reader(chunks)
            // A last line with no newline that is empty is no line at all.
            let expected = lines.enumerated().compactMap { index, line -> LineRead? in
                if index == lines.count - 1 && !endsWithNewline && line.isEmpty { return nil }
                return line.utf8.count > limit ? .tooLong(line.utf8.count) : .line(Array(line.utf8))
            }
            for (index, line) in expected.enumerated() {
                #expect(reader.next(limit: limit) == line, "round \(round), line \(index): \(lines) in \(chunks)")
            }
            #expect(reader.next(limit: limit) == .end, "round \(round)")
        }
    }
}

/// A value shared between closures. Invariant that makes `@unchecked Sendable` safe: `items` is
/// touched only under `lock`.
final class Locked: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Data]
    init(_ items: [Data]) { self.items = items }
    func pop() -> Data? { lock.withLock { items.isEmpty ? nil : items.removeFirst() } }
}

/// A console that hands out scripted lines and notes the name of each thread that reads one.
///
/// Invariant that makes `@unchecked Sendable` safe: every stored property is touched only under `lock`.
final class ThreadNotingConsole: Console, @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [[UInt8]]
    private var readers: [String] = []
    private var written: [String] = []

    init(_ lines: [String]) { self.lines = lines.map { Array($0.utf8) } }

    /// The names of the threads that read, one per read (the last read finds the end).
    var readingThreads: [String] { lock.withLock { readers } }
    /// The lines written to standard output.
    var output: [String] { lock.withLock { written } }

    func out(_ line: String) { lock.withLock { written.append(line) } }
    func err(_ line: String) {}
    func progress(_ line: String) {}
    var outputIsTerminal: Bool { false }
    var errorIsTerminal: Bool { false }

    func readLine(limit: Int) -> LineRead {
        // Linux's name of the calling thread (a cooperative pool thread's is `…root.default-qos`).
        let thread = ((try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "")
            .trimmingCharacters(in: .newlines)
        return lock.withLock {
            readers.append(thread)
            return lines.isEmpty ? .end : .line(lines.removeFirst())
        }
    }
}

@Suite struct ApplyInputThreadTests {
    /// A read of standard input blocks until the co-process writes: it runs on a thread of its own,
    /// never on one of the cooperative pool's (two on this machine), in both modes.
    @Test(arguments: [1, 8])
    func applyReadsItsInputOffTheCooperativePool(concurrency: Int) async throws {
        let directory = TemporaryDirectory()
        let lines = (0..<20).map {
            #"{"requestId":"r\#($0)","principal":\#(admin()),"query":"campaign.list","params":{}}"#
        }
        let console = ThreadNotingConsole(lines)
        let status = await CLI.run(
            ["apply", "--data", directory.path, "--concurrency", String(concurrency)], console: console)
        #expect(status == 0)
        #expect(console.output.count == 20 && console.output.allSatisfy { $0.contains(#""status":200"#) })
        #expect(console.readingThreads.count == 21)
        #expect(Set(console.readingThreads) == ["campaign apply"], "\(Set(console.readingThreads))")
    }
}

@Suite(.serialized) struct ApplyLimitTests {
    @Test func aLineOverTheLimitIsRefusedAndTheRunGoesOn() async throws {
        let directory = TemporaryDirectory()
        let huge =
            #"{"requestId":"big","command":"campaign.create","payload":{"name":""#
            + String(repeating: "x", count: 64 << 20) + #""}}"#
        let next = #"{"requestId":"after","principal":\#(admin()),"query":"campaign.list","params":{}}"#
        let run = try await campaign(["apply", "--data", directory.path], input: huge + "\n" + next + "\n")
        #expect(run.status == 0)
        #expect(run.lines.count == 2)
        let refused = try JSON.parse(run.lines[0])
        #expect(
            refused.code == "INVALID_FORMAT"
                && refused["error"]?["message"]?.stringValue?.contains("longer than the 67108864-byte limit") == true)
        #expect(try JSON.parse(run.lines[1])["requestId"]?.stringValue == "after")
    }
}

@Suite struct ArgumentAndFormatTests {
    @Test func optionsFlagsAndPositionalsParse() throws {
        let parsed = try Arguments.parse(
            ["rebuild", "--data", "/d", "audit", "--json", "--batch=50"], options: ["data", "batch"], flags: ["json"])
        #expect(parsed.positionals == ["rebuild", "audit"])
        #expect(parsed.options == ["data": "/d", "batch": "50"])
        #expect(parsed.flags == ["json"])
    }

    @Test(arguments: [
        (["--nope"], "unknown option --nope"), (["--data"], "--data needs a value"),
        (["--data", "--json"], "--data needs a value"),
        (["--json=1"], "--json takes no value"), (["--data", "a", "--data", "b"], "--data is given twice"),
        (["-x"], "unknown option -x"),
    ])
    func badCommandLinesSayWhatIsWrong(_ words: [String], _ message: String) {
        #expect { try Arguments.parse(words, options: ["data"], flags: ["json"]) } throws: { error in
            (error as? Arguments.UsageError)?.message == message
        }
    }

    @Test func progressBarsShowFractionRateAndETA() {
        #expect(
            Format.progressBar(done: 250, total: 1_000, rate: 125, width: 8)
                == "[##------] 25%  250/1,000 events  125 ev/s  ETA 6s")
        #expect(
            Format.progressBar(done: 1_000, total: 1_000, rate: 2_000_000, width: 4)
                == "[####] 100%  1,000/1,000 events  2,000,000 ev/s")
        #expect(Format.progressBar(done: 0, total: 0, rate: 0, width: 2) == "[##] 100%  0/0 events  0 ev/s")
    }

    /// ``Format/printable(_:)`` as its summary states it, a scalar at a time: the reference its byte
    /// checks are compared with.
    private func printableByScalars(_ line: String) -> String {
        var out = ""
        for scalar in line.unicodeScalars {
            let value = scalar.value
            let unsafe =
                value < 0x20 || (0x7F...0x9F).contains(value) || [0x061C, 0x200E, 0x200F].contains(value)
                || (0x202A...0x202E).contains(value) || (0x2066...0x2069).contains(value)
            out += unsafe ? "\\u" + String(format: "%04x", value) : String(scalar)
        }
        return out
    }

    /// An export writes its lines a chunk at a time: each line must come out as ``Format/printable(_:)``
    /// makes it a line at a time, whatever it holds and wherever it falls in a word of eight bytes.
    @Test func linesWrittenAtOnceAreEscapedAsEachLineAlone() {
        let unsafe = [
            "\u{0}", "\u{7}", "\u{1B}", "\u{7F}", "\u{80}", "\u{85}", "\u{9F}", "\u{61C}", "\u{200E}", "\u{200F}",
            "\u{202A}",
            "\u{202E}", "\u{2066}", "\u{2069}",
        ]
        // Neighbours of the unsafe ones in UTF-8 (same lead bytes), left alone.
        let safe = [
            "a", "\"", "\u{A0}", "\u{A3}", "\u{E9}", "\u{61B}", "\u{61D}", "\u{200D}", "\u{2010}", "\u{2029}",
            "\u{202F}",
            "\u{2065}", "\u{206A}", "\u{20AC}", "\u{1F600}", "0123456789", "\u{2013}", "\u{2615}", "\u{5D0}",
            "\u{6F0}", "\u{7FF}",
        ]
        var random = SeededRandom(seed: 13)
        for round in 0..<400 {
            let lineCount = Int.random(in: 1...4, using: &random)
            var lines = [String]()
            for _ in 0..<lineCount {
                var line = ""
                for _ in 0..<Int.random(in: 0...30, using: &random) {
                    let pool = Int.random(in: 0..<10, using: &random) == 0 ? unsafe : safe
                    line += pool[Int.random(in: 0..<pool.count, using: &random)]
                }
                lines.append(line)
            }
            let joined = Array(lines.map { $0 + "\n" }.joined().utf8)
            let expected = Array(lines.map { printableByScalars($0) + "\n" }.joined().utf8)
            #expect(Format.printable(lines: joined) == expected, "round \(round): \(lines)")
            // A line with its newline escaped, through the one-line form's byte check.
            let one = lines.joined(separator: "\n")
            #expect(Format.printable(one) == printableByScalars(one), "round \(round): \(lines)")
        }
        let plain = Array("{\"a\":\"b\"}\n{\"c\":1}\n".utf8)
        #expect(Format.printable(lines: plain) == plain && Format.firstUnsafe(in: plain) == nil)
        #expect(Format.firstUnsafe(in: Array("0123456789abcdef\u{202E}".utf8)) == 16)
    }

    @Test func tablesNumbersAndSizesFormat() {
        #expect(Format.table(["A", "BB"], [["xyz", "1"], ["q", "22"]]) == ["A    BB", "xyz  1", "q    22"])
        // Columns are as wide as their widest cell on a terminal: an emoji or a CJK character takes
        // two columns, a letter with a combining accent one; a cell of emoji is never cut.
        #expect(
            Format.table(
                ["A", "B"],
                [
                    ["\u{1F600}\u{1F600}\u{1F600}", "x"], ["abcde", "y"], ["e\u{301}", "z"], ["日本", "w"],
                    ["\u{2764}\u{FE0F}", "v"],
                ])
                == [
                    "A       B", "\u{1F600}\u{1F600}\u{1F600}  x", "abcde   y", "e\u{301}       z", "日本    w",
                    "\u{2764}\u{FE0F}      v",
                ])
        #expect(Format.columns("Caf\u{E9} \u{65E5}\u{672C}\u{8A9E} \u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}") == 14)
        #expect(Format.columns("ＡＢ") == 4 && Format.columns("\u{2764}") == 1 && Format.columns("") == 0)
        #expect(Format.count(1_234_567) == "1,234,567" && Format.count(-1_234) == "-1,234" && Format.count(12) == "12")
        #expect(Format.bytes(512) == "512 B" && Format.bytes(3 << 20) == "3.0 MiB")
    }
}
