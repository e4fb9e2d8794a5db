import CampaignDomain
import CampaignEngine
import Foundation
import TestSupport
import Testing

/// Every (campaign state × campaign command) pair, through the wire format, against a table
/// written out by hand from SPEC.md §6 (not derived from the code under test).
@Suite struct CampaignStateTableTests {
    static let states = ["draft", "scheduled", "active", "paused", "completed", "cancelled", "archived", "deleted"]
    static let commands = [
        "update", "attachSegment", "schedule", "unschedule", "activate", "pause", "resume", "complete", "cancel",
        "archive", "delete",
    ]

    /// `→state` for a success, else the error code.
    static let expected: [String: [String]] = [
        // Columns: update, attachSegment, schedule, unschedule, activate, pause, resume, complete, cancel,
        // archive, delete.
        "draft": [
            "→draft", "→draft", "→scheduled", "NOT_SCHEDULED", "NOT_SCHEDULED", "CONFLICT", "CONFLICT",
            "CONFLICT", "CONFLICT", "→archived", "→deleted",
        ],
        "scheduled": [
            "→scheduled", "→scheduled", "→scheduled", "→draft", "→active", "CONFLICT", "CONFLICT", "CONFLICT",
            "→cancelled", "CONFLICT", "CONFLICT",
        ],
        "active": [
            "ALREADY_ACTIVE", "ALREADY_ACTIVE", "ALREADY_ACTIVE", "ALREADY_ACTIVE", "ALREADY_ACTIVE", "→paused",
            "ALREADY_ACTIVE", "→completed", "→cancelled", "ALREADY_ACTIVE", "CONFLICT",
        ],
        "paused": [
            "→paused", "→paused", "→scheduled", "NOT_SCHEDULED", "NOT_SCHEDULED", "CONFLICT", "→active",
            "CONFLICT", "→cancelled", "CONFLICT", "CONFLICT",
        ],
        "completed": [
            "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT",
            "→archived", "CONFLICT",
        ],
        "cancelled": [
            "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT",
            "→archived", "CONFLICT",
        ],
        "archived": [
            "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT", "CONFLICT",
            "CONFLICT", "CONFLICT",
        ],
        "deleted": [
            "NOT_FOUND", "NOT_FOUND", "NOT_FOUND", "NOT_FOUND", "NOT_FOUND", "NOT_FOUND", "NOT_FOUND", "NOT_FOUND",
            "NOT_FOUND", "NOT_FOUND", "NOT_FOUND",
        ],
    ]

    /// The states each command is allowed from, per SPEC.md §6.
    static let allowed: [String: [String]] = [
        "update": ["draft", "scheduled", "paused"], "attachSegment": ["draft", "scheduled", "paused"],
        "schedule": ["draft", "scheduled", "paused"], "unschedule": ["scheduled"], "activate": ["scheduled"],
        "pause": ["active"], "resume": ["paused"], "complete": ["active"], "cancel": ["scheduled", "active", "paused"],
        "archive": ["draft", "completed", "cancelled"], "delete": ["draft"],
    ]

    static let codes: [String: (String, Int)] = [
        "CONFLICT": ("RESOURCE_CONFLICT", 409), "ALREADY_ACTIVE": ("CAMPAIGN_ALREADY_ACTIVE", 409),
        "NOT_SCHEDULED": ("CAMPAIGN_NOT_SCHEDULED", 409), "NOT_FOUND": ("RESOURCE_NOT_FOUND", 404),
    ]

    /// The commands that bring a new campaign (with a segment) to `state`.
    static func path(to state: String) -> [String] {
        switch state {
        case "draft": return []
        case "scheduled": return ["schedule"]
        case "active": return ["schedule", "activate"]
        case "paused": return ["schedule", "activate", "pause"]
        case "completed": return ["schedule", "activate", "complete"]
        case "cancelled": return ["schedule", "cancel"]
        case "archived": return ["archive"]
        default: return ["delete"]
        }
    }

    static func payload(_ command: String, _ id: String) -> String {
        switch command {
        case "update": return #"{"campaignId":"\#(id)","content":{"subject":"Hi","body":"Hello"}}"#
        case "attachSegment": return #"{"campaignId":"\#(id)","segmentId":"seg_2"}"#
        case "schedule": return #"{"campaignId":"\#(id)","sendAt":"2026-11-30T00:00:00Z"}"#
        default: return #"{"campaignId":"\#(id)"}"#
        }
    }

    @Test func everyStateAndCommandPairGivesTheSpecifiedOutcome() async throws {
        let t = try TestEngine()
        for segment in ["seg_1", "seg_2"] {
            let created = await t.command(
                "segment.create",
                #"{"segmentId":"\#(segment)","name":"\#(segment)","rules":{"all":[{"field":"age","#
                    + #""operator":"gte","value":18}]}}"#
            )
            #expect(created.status == 201)
        }
        var checked = 0
        for state in Self.states {
            for (column, command) in Self.commands.enumerated() {
                let id = "cmp_\(state)_\(command)"
                let create = await t.command(
                    "campaign.create",
                    #"{"campaignId":"\#(id)","name":"Campaign \#(id)","channel":"email","segmentId":"seg_1","#
                        + #""content":{"subject":"Draft","body":"Draft"}}"#)
                try #require(create.status == 201, "\(create)")
                for step in Self.path(to: state) {
                    let moved = await t.command("campaign.\(step)", Self.payload(step, id))
                    try #require(moved.status == 201, "setting up \(state) with \(step): \(moved)")
                }
                // A schedule under test asks another time than the setup's: the same one changes nothing.
                let payload =
                    command == "schedule"
                    ? #"{"campaignId":"\#(id)","sendAt":"2026-12-01T00:00:00Z"}"# : Self.payload(command, id)
                let response = await t.command("campaign.\(command)", payload)
                let outcome = Self.expected[state]![column]
                let label = "\(state) × \(command)"
                if outcome.hasPrefix("→") {
                    #expect(response.status == 201, "\(label): \(response)")
                    #expect(
                        response.data?["campaign"]?["status"]?.stringValue == String(outcome.dropFirst()), "\(label)")
                } else {
                    let (code, status) = Self.codes[outcome]!
                    #expect(response.code == code, "\(label): \(response)")
                    #expect(response.status == status, "\(label)")
                    if outcome != "NOT_FOUND" {
                        #expect(response["error"]?["currentState"]?.stringValue == state, "\(label)")
                        #expect(
                            response["error"]?["allowedStates"] == .array(Self.allowed[command]!.map(JSON.string)),
                            "\(label)")
                    }
                    let after = await t.query("campaign.get", #"{"campaignId":"\#(id)"}"#)
                    let stillThere = after.data?["status"]?.stringValue
                    #expect(
                        stillThere == (state == "deleted" ? nil : state),
                        "\(label): a refused command changed the state")
                }
                checked += 1
            }
        }
        #expect(checked == 88)
    }

    @Test func aDeletedCampaignIsGoneAndItsNameIsFree() async throws {
        let t = try TestEngine()
        _ = await t.command("campaign.create", #"{"campaignId":"cmp_a","name":"Launch","channel":"sms"}"#)
        #expect(await t.command("campaign.delete", #"{"campaignId":"cmp_a"}"#).status == 201)
        #expect(await t.query("campaign.get", #"{"campaignId":"cmp_a"}"#).code == "RESOURCE_NOT_FOUND")
        #expect(
            await t.command("campaign.create", #"{"campaignId":"cmp_b","name":"launch","channel":"sms"}"#).status == 201
        )
        #expect(
            await t.command("campaign.create", #"{"campaignId":"cmp_a","name":"Other","channel":"sms"}"#).code
                == "DUPLICATE_RESOURCE")
    }

    @Test func archivingFreesTheNameButNotBefore() async throws {
        let t = try TestEngine()
        _ = await t.command("campaign.create", #"{"campaignId":"cmp_a","name":"Black Friday","channel":"email"}"#)
        let clash = await t.command(
            "campaign.create", #"{"campaignId":"cmp_b","name":"  black   FRIDAY ","channel":"email"}"#)
        #expect(clash.code == "DUPLICATE_RESOURCE" && clash["error"]?["pointer"]?.stringValue == "/payload/name")
        #expect(await t.command("campaign.archive", #"{"campaignId":"cmp_a"}"#).status == 201)
        #expect(
            await t.command("campaign.create", #"{"campaignId":"cmp_b","name":"Black Friday","channel":"email"}"#)
                .status == 201)
    }

    @Test func renamingMovesTheReservation() async throws {
        let t = try TestEngine()
        _ = await t.command("campaign.create", #"{"campaignId":"cmp_a","name":"Alpha","channel":"email"}"#)
        _ = await t.command("campaign.create", #"{"campaignId":"cmp_b","name":"Beta","channel":"email"}"#)
        #expect(
            await t.command("campaign.update", #"{"campaignId":"cmp_b","name":"Alpha"}"#).code == "DUPLICATE_RESOURCE")
        #expect(await t.command("campaign.update", #"{"campaignId":"cmp_a","name":"Gamma"}"#).status == 201)
        #expect(await t.command("campaign.update", #"{"campaignId":"cmp_b","name":"Alpha"}"#).status == 201)
    }
}
