import Foundation

/// The channels a campaign sends on; the raw values are the wire's `channel` strings.
public enum Channel: String, Sendable, CaseIterable {
    /// Email.
    case email
    /// SMS.
    case sms
    /// Mobile push.
    case push
    /// WhatsApp.
    case whatsapp
    /// Social networks.
    case social
}

/// A message's content: an optional subject and a body.
public struct Content: Sendable, Equatable {
    /// The subject line (email): at most 998 characters, one line (no control character).
    public var subject: String?
    /// The body, 1–100,000 characters, showing at least one (``TextRules/showsNothing(_:)``), with no
    /// control character but tab and line breaks; the engine stores it as given (it renders nothing).
    public var body: String

    /// Content with a `body` and, for email, a `subject` (checked when a command carrying it is decided).
    public init(subject: String? = nil, body: String) {
        self.subject = subject
        self.body = body
    }

    /// What is wrong with the content, each problem pointing below `pointer` (`/content` on a
    /// campaign, `/variants/N/content` on an experiment's variant) and naming a field below `field`;
    /// when it passes the checks every channel makes, also what keeps it from `channel`
    /// (``Channel/problems(with:at:field:)``).
    public func problems(at pointer: String, field: String = "content", on channel: Channel? = nil) -> [FieldProblem] {
        var problems = [FieldProblem]()
        // Counting characters walks grapheme clusters; only a body of more than 100,000 bytes can
        // have more than 100,000 of them.
        if TextRules.showsNothing(body) || (body.utf8.count > 100_000 && body.count > 100_000) {
            problems.append(
                FieldProblem(
                    field: field + ".body", pointer: pointer + "/body", message: "body must be 1–100000 characters"))
        } else if let message = TextRules.controlCharacterMessage(body, field: "body", multiline: true) {
            problems.append(FieldProblem(field: field + ".body", pointer: pointer + "/body", message: message))
        }
        if let subject {
            let message =
                subject.count > 998
                ? "subject must be at most 998 characters"
                : TextRules.controlCharacterMessage(subject, field: "subject", multiline: false)
            if let message {
                problems.append(
                    FieldProblem(field: field + ".subject", pointer: pointer + "/subject", message: message))
            }
        }
        if problems.isEmpty, let channel { problems = channel.problems(with: self, at: pointer, field: field) }
        return problems
    }

    /// The content as stored and answered: `{"body", "subject"?}`.
    public var json: JSON {
        var members: JSONObject = ["body": .string(body)]
        if let subject { members["subject"] = .string(subject) }
        return .object(members)
    }

    /// Appends the canonical bytes of ``json`` to `out`, written from the fields without making
    /// the value.
    public func writeJSON(into out: inout [UInt8]) {
        out.append(contentsOf: #"{"body":"#.utf8)
        JSON.appendString(body, to: &out)
        if let subject {
            out.append(contentsOf: #","subject":"#.utf8)
            JSON.appendString(subject, to: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    init?(json: JSON?) {
        guard let json, let body = json["body"]?.stringValue else { return nil }
        self.init(subject: json["subject"]?.stringValue, body: body)
    }
}

/// Every command the engine accepts (SPEC.md §4), typed: one case per aggregate, each holding
/// that aggregate's own command enum. The engine's route table says, once per command, which
/// stream it decides on and what it expects of it.
public enum Command: Sendable, Equatable {
    /// `campaign.*`.
    case campaign(CampaignCommand)
    /// `segment.*`.
    case segment(SegmentCommand)
    /// `field.define`, `field.update`.
    case schema(SchemaCommand)
    /// `contact.*`.
    case contact(ContactCommand)
    /// `social.*`.
    case social(SocialCommand)
    /// `post.*`.
    case post(PostCommand)
    /// `experiment.*`.
    case experiment(ExperimentCommand)
    /// `system.tick`: run due work at the engine clock, after moving a manual clock forward to
    /// `now` when given (only the operator may move it; see the engine's tick).
    case tick(now: Date?)

    /// The wire name, such as `campaign.schedule`.
    public var name: String {
        switch self {
        case let .campaign(command): return "campaign." + command.verb
        case let .segment(command): return "segment." + command.verb
        case let .schema(command): return "field." + command.verb
        case let .contact(command): return "contact." + command.verb
        case let .social(command): return "social." + command.verb
        case let .post(command): return "post." + command.verb
        case let .experiment(command): return "experiment." + command.verb
        case .tick: return "system.tick"
        }
    }

    /// The scope and role the command needs.
    public var permission: Permission {
        switch self {
        case .campaign: return Permission(scope: "campaigns:write", minimumRole: .editor)
        // Rules are matched against contacts' values and the members listed: writing them reads
        // those values (a rule `email starts_with "a"` and its members would tell, contact by
        // contact, what `contacts:read` guards), as `segment.preview` does.
        case .segment(.create), .segment(.update(_, _, .some)):
            return Permission(scope: "segments:write", minimumRole: .editor, reads: "contacts:read")
        case .segment: return Permission(scope: "segments:write", minimumRole: .editor)
        case .schema, .contact(.erase): return Permission(scope: "contacts:write", minimumRole: .admin)
        case .contact: return Permission(scope: "contacts:write", minimumRole: .editor)
        case .social, .post: return Permission(scope: "social:write", minimumRole: .editor)
        case .experiment: return Permission(scope: "experiments:write", minimumRole: .editor)
        case .tick: return Permission(scope: "campaigns:write", minimumRole: .admin)
        }
    }
}
