import Foundation

/// Campaign channels.
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
    /// The subject line (email).
    public var subject: String?
    /// The body.
    public var body: String

    /// Creates content.
    public init(subject: String? = nil, body: String) {
        self.subject = subject
        self.body = body
    }

    var json: JSON {
        var members: [String: JSON] = ["body": .string(body)]
        if let subject { members["subject"] = .string(subject) }
        return .object(members)
    }

    init?(json: JSON?) {
        guard let json, let body = json["body"]?.stringValue else { return nil }
        self.init(subject: json["subject"]?.stringValue, body: body)
    }

    static func decode(_ json: JSON, at pointer: String) throws(CampaignError) -> Content {
        let reader = try FieldReader(json, at: pointer, allowed: ["subject", "body"])
        return Content(subject: try reader.optionalString("subject"), body: try reader.string("body"))
    }
}

/// Lifecycle commands on a campaign that carry only its id.
public enum CampaignTransition: String, Sendable, CaseIterable {
    /// scheduled → draft.
    case unschedule
    /// scheduled → active.
    case activate
    /// active → paused.
    case pause
    /// paused → active.
    case resume
    /// active → completed.
    case complete
    /// scheduled, active, paused → cancelled.
    case cancel
    /// draft, completed, cancelled → archived.
    case archive
    /// draft → stream closed.
    case delete
}

/// A contact's attributes in an upsert or import.
public struct ContactInput: Sendable, Equatable {
    /// The contact's id (`ctc_…`).
    public var contactId: String
    /// Attribute values; null removes an attribute.
    public var attributes: [String: JSON]

    /// Creates an input.
    public init(contactId: String, attributes: [String: JSON]) {
        self.contactId = contactId
        self.attributes = attributes
    }
}

/// Every command the engine accepts (SPEC.md §4), decoded and type-checked.
public enum Command: Sendable, Equatable {
    /// `campaign.create`.
    case campaignCreate(
        campaignId: String?, name: String, channel: String, segmentId: String?, content: Content?, sendAt: Date?)
    /// `campaign.update`.
    case campaignUpdate(campaignId: String, name: String?, channel: String?, content: Content?)
    /// `campaign.attachSegment`.
    case campaignAttachSegment(campaignId: String, segmentId: String)
    /// `campaign.schedule`.
    case campaignSchedule(campaignId: String, sendAt: Date)
    /// `campaign.unschedule`, `activate`, `pause`, `resume`, `complete`, `cancel`, `archive`, `delete`.
    case campaignTransition(CampaignTransition, campaignId: String)
    /// `segment.create`.
    case segmentCreate(segmentId: String?, name: String, rules: JSON)
    /// `segment.update`.
    case segmentUpdate(segmentId: String, name: String?, rules: JSON?)
    /// `segment.archive`.
    case segmentArchive(segmentId: String)
    /// `field.define`.
    case fieldDefine(name: String, type: String, values: [String]?)
    /// `contact.upsert`.
    case contactUpsert(ContactInput)
    /// `contact.import`.
    case contactImport([ContactInput])
    /// `contact.erase`.
    case contactErase(contactId: String)
    /// `social.connect`.
    case socialConnect(
        connectionId: String?, platform: String, accountId: String, credentialRef: String, expiresAt: Date)
    /// `social.refresh`.
    case socialRefresh(connectionId: String, credentialRef: String?, expiresAt: Date)
    /// `social.disconnect`.
    case socialDisconnect(connectionId: String)
    /// `post.create`.
    case postCreate(
        postId: String?, connectionIds: [String], text: String, media: [Media], link: String?, campaignId: String?)
    /// `post.update`.
    case postUpdate(postId: String, text: String?, media: [Media]?, link: String?)
    /// `post.schedule`.
    case postSchedule(postId: String, publishAt: Date)
    /// `post.cancel`.
    case postCancel(postId: String)
    /// `post.publish`.
    case postPublish(postId: String)
    /// `experiment.create`.
    case experimentCreate(experimentId: String?, campaignId: String, name: String, variants: [Variant])
    /// `experiment.update`.
    case experimentUpdate(experimentId: String, name: String?, variants: [Variant]?)
    /// `experiment.start`.
    case experimentStart(experimentId: String)
    /// `experiment.stop`.
    case experimentStop(experimentId: String)
    /// `experiment.recordExposure`.
    case experimentRecordExposure(experimentId: String, contactId: String)
    /// `experiment.recordConversion`.
    case experimentRecordConversion(experimentId: String, contactId: String)
    /// `experiment.declareWinner`.
    case experimentDeclareWinner(experimentId: String, variant: String, force: Bool)
    /// `system.tick`: run due work at the engine clock, after moving a manual clock forward to
    /// `now` when given (only the operator may move it; see the engine's tick).
    case systemTick(now: Date?)

    /// Whether a request may set `expectedVersion` for this command: not for commands that span
    /// many streams (an import), commute without a version check (exposures, conversions), or
    /// touch no stream of their own (the tick).
    public var acceptsExpectedVersion: Bool {
        switch self {
        case .contactImport, .experimentRecordExposure, .experimentRecordConversion, .systemTick: return false
        default: return true
        }
    }

    /// The most contacts one import may carry.
    public static let maximumImportSize = 100_000

    /// Every command name, for errors and help.
    public static let names: [String] =
        [
            "campaign.create", "campaign.update", "campaign.attachSegment", "campaign.schedule",
        ] + CampaignTransition.allCases.map { "campaign.\($0.rawValue)" } + [
            "segment.create", "segment.update", "segment.archive", "field.define",
            "contact.upsert", "contact.import", "contact.erase",
            "social.connect", "social.refresh", "social.disconnect",
            "post.create", "post.update", "post.schedule", "post.cancel", "post.publish",
            "experiment.create", "experiment.update", "experiment.start", "experiment.stop",
            "experiment.recordExposure", "experiment.recordConversion", "experiment.declareWinner", "system.tick",
        ]

    /// The wire name.
    public var name: String {
        switch self {
        case .campaignCreate: return "campaign.create"
        case .campaignUpdate: return "campaign.update"
        case .campaignAttachSegment: return "campaign.attachSegment"
        case .campaignSchedule: return "campaign.schedule"
        case let .campaignTransition(transition, _): return "campaign.\(transition.rawValue)"
        case .segmentCreate: return "segment.create"
        case .segmentUpdate: return "segment.update"
        case .segmentArchive: return "segment.archive"
        case .fieldDefine: return "field.define"
        case .contactUpsert: return "contact.upsert"
        case .contactImport: return "contact.import"
        case .contactErase: return "contact.erase"
        case .socialConnect: return "social.connect"
        case .socialRefresh: return "social.refresh"
        case .socialDisconnect: return "social.disconnect"
        case .postCreate: return "post.create"
        case .postUpdate: return "post.update"
        case .postSchedule: return "post.schedule"
        case .postCancel: return "post.cancel"
        case .postPublish: return "post.publish"
        case .experimentCreate: return "experiment.create"
        case .experimentUpdate: return "experiment.update"
        case .experimentStart: return "experiment.start"
        case .experimentStop: return "experiment.stop"
        case .experimentRecordExposure: return "experiment.recordExposure"
        case .experimentRecordConversion: return "experiment.recordConversion"
        case .experimentDeclareWinner: return "experiment.declareWinner"
        case .systemTick: return "system.tick"
        }
    }

    /// The scope and role the command needs.
    public var permission: Permission {
        switch self {
        case .campaignCreate, .campaignUpdate, .campaignAttachSegment, .campaignSchedule, .campaignTransition:
            return Permission(scope: "campaigns:write", minimumRole: .editor)
        case .segmentCreate, .segmentUpdate, .segmentArchive:
            return Permission(scope: "segments:write", minimumRole: .editor)
        case .fieldDefine:
            return Permission(scope: "contacts:write", minimumRole: .admin)
        case .contactUpsert, .contactImport:
            return Permission(scope: "contacts:write", minimumRole: .editor)
        case .contactErase:
            return Permission(scope: "contacts:write", minimumRole: .admin)
        case .socialConnect, .socialRefresh, .socialDisconnect, .postCreate, .postUpdate, .postSchedule, .postCancel,
            .postPublish:
            return Permission(scope: "social:write", minimumRole: .editor)
        case .experimentCreate, .experimentUpdate, .experimentStart, .experimentStop, .experimentRecordExposure,
            .experimentRecordConversion, .experimentDeclareWinner:
            return Permission(scope: "experiments:write", minimumRole: .editor)
        case .systemTick:
            return Permission(scope: "campaigns:write", minimumRole: .admin)
        }
    }

    /// Decodes a command's payload strictly.
    /// - Parameters:
    ///   - name: the `command` member.
    ///   - payload: the `payload` member.
    ///   - pointer: where the payload sits in the request (`/payload`).
    public static func decode(
        name: String, payload: JSON, at pointer: String = "/payload"
    ) throws(CampaignError) -> Command {
        func reader(_ allowed: Set<String>) throws(CampaignError) -> FieldReader {
            try FieldReader(payload, at: pointer, allowed: allowed)
        }
        switch name {
        case "campaign.create":
            let r = try reader(["campaignId", "name", "channel", "segmentId", "content", "sendAt"])
            return .campaignCreate(
                campaignId: try r.optionalId("campaignId", prefix: "cmp"), name: try r.string("name"),
                channel: try r.string("channel"), segmentId: try r.optionalId("segmentId", prefix: "seg"),
                content: try r.optional("content").map { (json) throws(CampaignError) in
                    try Content.decode(json, at: r.pointer("content"))
                },
                sendAt: try r.optionalTimestamp("sendAt"))
        case "campaign.update":
            let r = try reader(["campaignId", "name", "channel", "content"])
            return .campaignUpdate(
                campaignId: try r.id("campaignId", prefix: "cmp"), name: try r.optionalString("name"),
                channel: try r.optionalString("channel"),
                content: try r.optional("content").map { (json) throws(CampaignError) in
                    try Content.decode(json, at: r.pointer("content"))
                })
        case "campaign.attachSegment":
            let r = try reader(["campaignId", "segmentId"])
            return .campaignAttachSegment(
                campaignId: try r.id("campaignId", prefix: "cmp"), segmentId: try r.id("segmentId", prefix: "seg"))
        case "campaign.schedule":
            let r = try reader(["campaignId", "sendAt"])
            return .campaignSchedule(
                campaignId: try r.id("campaignId", prefix: "cmp"), sendAt: try r.timestamp("sendAt"))
        case "segment.create":
            let r = try reader(["segmentId", "name", "rules"])
            return .segmentCreate(
                segmentId: try r.optionalId("segmentId", prefix: "seg"), name: try r.string("name"),
                rules: try r.required("rules"))
        case "segment.update":
            let r = try reader(["segmentId", "name", "rules"])
            return .segmentUpdate(
                segmentId: try r.id("segmentId", prefix: "seg"), name: try r.optionalString("name"),
                rules: r.optional("rules"))
        case "segment.archive":
            return .segmentArchive(segmentId: try reader(["segmentId"]).id("segmentId", prefix: "seg"))
        case "field.define":
            let r = try reader(["name", "type", "values"])
            var values: [String]?
            if let items = try r.optionalArray("values") {
                values = []
                for (index, item) in items.enumerated() {
                    guard let text = item.stringValue else {
                        throw CampaignError(
                            .invalidFormat, "values must be strings", param: "values",
                            pointer: FieldReader.pointer(r.pointer("values"), index))
                    }
                    values?.append(text)
                }
            }
            return .fieldDefine(name: try r.string("name"), type: try r.string("type"), values: values)
        case "contact.upsert":
            return .contactUpsert(try decodeContact(payload, at: pointer))
        case "contact.import":
            let r = try reader(["contacts"])
            let items = try r.array("contacts")
            guard items.count <= maximumImportSize else {
                throw CampaignError.validation([
                    FieldProblem(
                        field: "contacts", pointer: r.pointer("contacts"),
                        message: "an import holds at most \(maximumImportSize) contacts, this one \(items.count)")
                ])
            }
            var contacts = [ContactInput]()
            contacts.reserveCapacity(items.count)
            for (index, item) in items.enumerated() {
                contacts.append(try decodeContact(item, at: FieldReader.pointer(r.pointer("contacts"), index)))
            }
            return .contactImport(contacts)
        case "contact.erase":
            return .contactErase(contactId: try reader(["contactId"]).id("contactId", prefix: "ctc"))
        case "social.connect":
            let r = try reader(["connectionId", "platform", "accountId", "credentialRef", "expiresAt"])
            return .socialConnect(
                connectionId: try r.optionalId("connectionId", prefix: "con"), platform: try r.string("platform"),
                accountId: try r.string("accountId"), credentialRef: try r.string("credentialRef"),
                expiresAt: try r.timestamp("expiresAt"))
        case "social.refresh":
            let r = try reader(["connectionId", "credentialRef", "expiresAt"])
            return .socialRefresh(
                connectionId: try r.id("connectionId", prefix: "con"),
                credentialRef: try r.optionalString("credentialRef"),
                expiresAt: try r.timestamp("expiresAt"))
        case "social.disconnect":
            return .socialDisconnect(connectionId: try reader(["connectionId"]).id("connectionId", prefix: "con"))
        case "post.create":
            let r = try reader(["postId", "connectionIds", "text", "media", "link", "campaignId"])
            var connectionIds = [String]()
            for (index, item) in try r.array("connectionIds").enumerated() {
                guard let id = item.stringValue, Identifier.isValid(id, prefix: "con") else {
                    throw CampaignError(
                        .invalidFormat, "connectionIds must hold ids like con_…", param: "connectionIds",
                        pointer: FieldReader.pointer(r.pointer("connectionIds"), index))
                }
                connectionIds.append(id)
            }
            return .postCreate(
                postId: try r.optionalId("postId", prefix: "pst"), connectionIds: connectionIds,
                text: try r.optionalString("text") ?? "",
                media: try decodeMedia(r) ?? [], link: try r.optionalString("link"),
                campaignId: try r.optionalId("campaignId", prefix: "cmp"))
        case "post.update":
            let r = try reader(["postId", "text", "media", "link"])
            return .postUpdate(
                postId: try r.id("postId", prefix: "pst"), text: try r.optionalString("text"),
                media: try decodeMedia(r),
                link: try r.optionalString("link"))
        case "post.schedule":
            let r = try reader(["postId", "publishAt"])
            return .postSchedule(postId: try r.id("postId", prefix: "pst"), publishAt: try r.timestamp("publishAt"))
        case "post.cancel":
            return .postCancel(postId: try reader(["postId"]).id("postId", prefix: "pst"))
        case "post.publish":
            return .postPublish(postId: try reader(["postId"]).id("postId", prefix: "pst"))
        case "experiment.create":
            let r = try reader(["experimentId", "campaignId", "name", "variants"])
            return .experimentCreate(
                experimentId: try r.optionalId("experimentId", prefix: "exp"),
                campaignId: try r.id("campaignId", prefix: "cmp"),
                name: try r.string("name"), variants: try decodeVariants(r.array("variants"), at: r.pointer("variants"))
            )
        case "experiment.update":
            let r = try reader(["experimentId", "name", "variants"])
            return .experimentUpdate(
                experimentId: try r.id("experimentId", prefix: "exp"), name: try r.optionalString("name"),
                variants: try r.optionalArray("variants").map { (items) throws(CampaignError) in
                    try decodeVariants(items, at: r.pointer("variants"))
                })
        case "experiment.start":
            return .experimentStart(experimentId: try reader(["experimentId"]).id("experimentId", prefix: "exp"))
        case "experiment.stop":
            return .experimentStop(experimentId: try reader(["experimentId"]).id("experimentId", prefix: "exp"))
        case "experiment.recordExposure", "experiment.recordConversion":
            let r = try reader(["experimentId", "contactId"])
            let experimentId = try r.id("experimentId", prefix: "exp")
            let contactId = try r.id("contactId", prefix: "ctc")
            return name == "experiment.recordExposure"
                ? .experimentRecordExposure(experimentId: experimentId, contactId: contactId)
                : .experimentRecordConversion(experimentId: experimentId, contactId: contactId)
        case "experiment.declareWinner":
            let r = try reader(["experimentId", "variant", "force"])
            return .experimentDeclareWinner(
                experimentId: try r.id("experimentId", prefix: "exp"), variant: try r.string("variant"),
                force: try r.optionalBool("force") ?? false)
        case "system.tick":
            return .systemTick(now: try reader(["now"]).optionalTimestamp("now"))
        default:
            if name.hasPrefix("campaign."),
                let transition = CampaignTransition(rawValue: String(name.dropFirst("campaign.".count)))
            {
                return .campaignTransition(
                    transition, campaignId: try reader(["campaignId"]).id("campaignId", prefix: "cmp"))
            }
            throw CampaignError(.invalidFormat, "unknown command \"\(name)\"", param: "command", pointer: "/command")
        }
    }

    private static func decodeMedia(_ r: FieldReader) throws(CampaignError) -> [Media]? {
        guard let items = try r.optionalArray("media") else { return nil }
        var media = [Media]()
        for (index, item) in items.enumerated() {
            let m = try FieldReader(item, at: FieldReader.pointer(r.pointer("media"), index), allowed: ["kind", "url"])
            media.append(Media(kind: try m.string("kind"), url: try m.string("url")))
        }
        return media
    }

    private static func decodeVariants(_ items: [JSON], at pointer: String) throws(CampaignError) -> [Variant] {
        var variants = [Variant]()
        for (index, item) in items.enumerated() {
            let v = try FieldReader(
                item, at: FieldReader.pointer(pointer, index), allowed: ["key", "weight", "content"])
            let weight = try v.required("weight")
            guard let number = weight.numberValue else { throw v.wrongType("weight", "a number", weight) }
            // Any number decodes; its range is a validation rule, reported with the other problems.
            let whole = number.rounded() == number && abs(number) <= 1e9 ? Int(number) : Variant.invalidWeight
            variants.append(
                Variant(
                    key: try v.string("key"), weight: whole,
                    content: try v.optional("content").map { (json) throws(CampaignError) in
                        try Content.decode(json, at: v.pointer("content"))
                    }))
        }
        return variants
    }

    private static func decodeContact(_ json: JSON, at pointer: String) throws(CampaignError) -> ContactInput {
        let r = try FieldReader(json, at: pointer, allowed: ["contactId", "attributes"])
        let contactId = try r.id("contactId", prefix: "ctc")
        let attributes = try r.required("attributes")
        guard let members = attributes.objectValue else {
            throw CampaignError(
                .invalidFormat, "attributes must be an object, not \(attributes.typeName)",
                param: "attributes", pointer: r.pointer("attributes"))
        }
        return ContactInput(contactId: contactId, attributes: members)
    }
}
