import CampaignDomain
import Foundation

/// The wire form of commands (SPEC.md §4): a name and a JSON payload, decoded strictly into a
/// typed ``Command`` and encoded back to canonical JSON.
///
/// A create that names no id gets one here, while decoding: a command never carries a missing id,
/// so every handler knows its stream before it loads anything.
public enum CommandWire {
    /// Every command name, for errors and help.
    public static let names: [String] =
        ["campaign.create", "campaign.update", "campaign.attachSegment", "campaign.schedule"]
        + CampaignTransition.allCases.map { "campaign.\($0.rawValue)" } + [
            "segment.create", "segment.update", "segment.archive", "field.define", "field.update",
            "contact.upsert", "contact.import", "contact.erase",
            "social.connect", "social.refresh", "social.disconnect",
            "post.create", "post.update", "post.schedule", "post.unschedule", "post.cancel", "post.publish",
            "experiment.create", "experiment.update", "experiment.start", "experiment.stop",
            "experiment.recordExposure", "experiment.recordConversion", "experiment.declareWinner", "system.tick",
        ]

    /// Decodes a command's payload strictly, assigning ids a create leaves out.
    /// - Parameters:
    ///   - name: the `command` member.
    ///   - payload: the `payload` member.
    ///   - pointer: where the payload sits in the request (`/payload`).
    public static func decode(
        name: String, payload: JSON, at pointer: String = "/payload"
    ) throws(CampaignError) -> Command {
        var random = SystemRandomNumberGenerator()
        func reader(_ allowed: [String]) throws(CampaignError) -> FieldReader {
            try FieldReader(payload, at: pointer, allowed: allowed)
        }
        func newId(_ r: FieldReader, _ key: String, _ prefix: String) throws(CampaignError) -> String {
            try r.optionalId(key, prefix: prefix) ?? Identifier.make(prefix: prefix, using: &random)
        }
        // Split at the first dot by bytes (`prefix(while:)` on characters breaks graphemes).
        let dot = name.utf8.firstIndex(of: UInt8(ascii: ".")) ?? name.endIndex
        let family = name[..<dot]
        let verb = dot == name.endIndex ? "" : String(name[name.utf8.index(after: dot)...])
        switch family {
        case "campaign": return .campaign(try decodeCampaign(verb, reader, newId))
        case "segment":
            switch verb {
            case "create":
                let r = try reader(["segmentId", "name", "rules"])
                return .segment(
                    .create(
                        segmentId: try newId(r, "segmentId", "seg"), name: try r.string("name"),
                        rules: try r.required("rules")))
            case "update":
                let r = try reader(["segmentId", "name", "rules"])
                try r.refuseNull("name", "rules")
                return .segment(
                    .update(
                        segmentId: try r.id("segmentId", prefix: "seg"), name: try r.optionalString("name"),
                        rules: r.optional("rules")))
            case "archive":
                return .segment(.archive(segmentId: try reader(["segmentId"]).id("segmentId", prefix: "seg")))
            default: break
            }
        case "field" where verb == "define":
            let r = try reader(["name", "type", "values"])
            return .schema(
                .defineField(name: try r.string("name"), type: try r.string("type"), values: try strings(r, "values")))
        case "field" where verb == "update":
            let r = try reader(["name", "values"])
            let name = try r.string("name")
            _ = try r.array("values")  // required (MISSING_FIELD): the values are all an update changes
            return .schema(.updateField(name: name, values: try strings(r, "values") ?? []))
        case "contact": if let command = try decodeContact(verb, payload, at: pointer) { return .contact(command) }
        case "social": if let command = try decodeSocial(verb, reader, newId) { return .social(command) }
        case "post": if let command = try decodePost(verb, reader, newId) { return .post(command) }
        case "experiment": if let command = try decodeExperiment(verb, reader, newId) { return .experiment(command) }
        case "system" where verb == "tick":
            return .tick(now: try reader(["now"]).optionalTimestamp("now"))
        default: break
        }
        throw CampaignError(.invalidFormat, "unknown command \"\(name)\"", param: "command", pointer: "/command")
    }

    private typealias Reader = ([String]) throws(CampaignError) -> FieldReader
    private typealias NewId = (FieldReader, String, String) throws(CampaignError) -> String

    private static func decodeCampaign(
        _ verb: String, _ reader: Reader, _ newId: NewId
    ) throws(CampaignError) -> CampaignCommand {
        switch verb {
        case "create":
            let r = try reader(["campaignId", "name", "channel", "segmentId", "content", "sendAt"])
            return .create(
                campaignId: try newId(r, "campaignId", "cmp"), name: try r.string("name"),
                channel: try r.string("channel"), segmentId: try r.optionalId("segmentId", prefix: "seg"),
                content: try content(r), sendAt: try r.optionalTimestamp("sendAt"))
        case "update":
            let r = try reader(["campaignId", "name", "channel", "content"])
            try r.refuseNull("name", "channel", "content")
            return .update(
                campaignId: try r.id("campaignId", prefix: "cmp"), name: try r.optionalString("name"),
                channel: try r.optionalString("channel"), content: try content(r))
        case "attachSegment":
            let r = try reader(["campaignId", "segmentId"])
            return .attachSegment(
                campaignId: try r.id("campaignId", prefix: "cmp"), segmentId: try r.id("segmentId", prefix: "seg"))
        case "schedule":
            let r = try reader(["campaignId", "sendAt"])
            return .schedule(campaignId: try r.id("campaignId", prefix: "cmp"), sendAt: try r.timestamp("sendAt"))
        default:
            guard let transition = CampaignTransition(rawValue: verb) else {
                throw CampaignError(
                    .invalidFormat, "unknown command \"campaign.\(verb)\"", param: "command", pointer: "/command")
            }
            return .transition(transition, campaignId: try reader(["campaignId"]).id("campaignId", prefix: "cmp"))
        }
    }

    private static func decodeContact(
        _ verb: String, _ payload: JSON, at pointer: String
    ) throws(CampaignError) -> ContactCommand? {
        switch verb {
        case "upsert":
            return .upsert(try contactInput(payload, at: pointer))
        case "import":
            let r = try FieldReader(payload, at: pointer, allowed: ["contacts"])
            let items = try r.array("contacts")
            try checkImportSize(items.count, at: r.pointer("contacts"))
            var contacts = [ContactInput]()
            contacts.reserveCapacity(items.count)
            // An item that cannot be read is reported at its index, like one the checks refuse.
            for (index, item) in items.enumerated() {
                do {
                    contacts.append(try contactInput(item, at: FieldReader.pointer(r.pointer("contacts"), index)))
                } catch {
                    contacts.append(
                        ContactInput(contactId: item["contactId"]?.stringValue ?? "", attributes: [:], refusal: error))
                }
            }
            return .import(contacts)
        case "erase":
            let r = try FieldReader(payload, at: pointer, allowed: ["contactId"])
            return .erase(contactId: try r.id("contactId", prefix: "ctc"))
        default:
            return nil
        }
    }

    private static func decodeSocial(
        _ verb: String, _ reader: Reader, _ newId: NewId
    ) throws(CampaignError) -> SocialCommand? {
        switch verb {
        case "connect":
            let r = try reader(["connectionId", "platform", "accountId", "credentialRef", "expiresAt", "textLimit"])
            return .connect(
                connectionId: try newId(r, "connectionId", "con"), platform: try r.string("platform"),
                accountId: try r.string("accountId"), credentialRef: try r.string("credentialRef"),
                expiresAt: try r.timestamp("expiresAt"), textLimit: try r.optionalInteger("textLimit", in: 1...100_000))
        case "refresh":
            let r = try reader(["connectionId", "credentialRef", "expiresAt", "textLimit"])
            try r.refuseNull("credentialRef")
            return .refresh(
                connectionId: try r.id("connectionId", prefix: "con"),
                credentialRef: try r.optionalString("credentialRef"), expiresAt: try r.timestamp("expiresAt"),
                textLimit: try r.integerUpdate("textLimit", in: 1...100_000))
        case "disconnect":
            return .disconnect(connectionId: try reader(["connectionId"]).id("connectionId", prefix: "con"))
        default:
            return nil
        }
    }

    private static func decodePost(
        _ verb: String, _ reader: Reader, _ newId: NewId
    ) throws(CampaignError) -> PostCommand? {
        switch verb {
        case "create":
            let r = try reader(["postId", "connectionIds", "text", "media", "link", "campaignId"])
            let connectionIds = try targets(r.array("connectionIds"), at: r.pointer("connectionIds"))
            return .create(
                postId: try newId(r, "postId", "pst"), connectionIds: connectionIds,
                text: try r.optionalString("text") ?? "", media: try media(r) ?? [], link: try r.optionalString("link"),
                campaignId: try r.optionalId("campaignId", prefix: "cmp"))
        case "update":
            let r = try reader(["postId", "text", "media", "link", "connectionIds"])
            try r.refuseNull("text", "media", "connectionIds")
            let postId = try r.id("postId", prefix: "pst")
            let connectionIds = try r.optionalArray("connectionIds").map { (items) throws(CampaignError) in
                try targets(items, at: r.pointer("connectionIds"))
            }
            return .update(
                postId: postId, text: try r.optionalString("text"), media: try media(r),
                link: try r.stringUpdate("link"), connectionIds: connectionIds)
        case "schedule":
            let r = try reader(["postId", "publishAt"])
            return .schedule(postId: try r.id("postId", prefix: "pst"), publishAt: try r.timestamp("publishAt"))
        case "unschedule":
            return .unschedule(postId: try reader(["postId"]).id("postId", prefix: "pst"))
        case "cancel":
            return .cancel(postId: try reader(["postId"]).id("postId", prefix: "pst"))
        case "publish":
            return .publish(postId: try reader(["postId"]).id("postId", prefix: "pst"))
        default:
            return nil
        }
    }

    private static func decodeExperiment(
        _ verb: String, _ reader: Reader, _ newId: NewId
    ) throws(CampaignError) -> ExperimentCommand? {
        switch verb {
        case "create":
            let r = try reader(["experimentId", "campaignId", "name", "variants"])
            return .create(
                experimentId: try newId(r, "experimentId", "exp"), campaignId: try r.id("campaignId", prefix: "cmp"),
                name: try r.string("name"), variants: try variants(r.array("variants"), at: r.pointer("variants")))
        case "update":
            let r = try reader(["experimentId", "name", "variants"])
            try r.refuseNull("name", "variants")
            return .update(
                experimentId: try r.id("experimentId", prefix: "exp"), name: try r.optionalString("name"),
                variants: try r.optionalArray("variants").map { (items) throws(CampaignError) in
                    try variants(items, at: r.pointer("variants"))
                })
        case "start":
            return .start(experimentId: try reader(["experimentId"]).id("experimentId", prefix: "exp"))
        case "stop":
            return .stop(experimentId: try reader(["experimentId"]).id("experimentId", prefix: "exp"))
        case "recordExposure", "recordConversion":
            let r = try reader(["experimentId", "contactId"])
            let experimentId = try r.id("experimentId", prefix: "exp")
            let contactId = try r.id("contactId", prefix: "ctc")
            return verb == "recordExposure"
                ? .recordExposure(experimentId: experimentId, contactId: contactId)
                : .recordConversion(experimentId: experimentId, contactId: contactId)
        case "declareWinner":
            let r = try reader(["experimentId", "variant", "force"])
            return .declareWinner(
                experimentId: try r.id("experimentId", prefix: "exp"), variant: try r.string("variant"),
                force: try r.optionalBool("force") ?? false)
        default:
            return nil
        }
    }

    /// `VALIDATION_ERROR` at `pointer` (the import's `contacts`) for an import of more than
    /// ``ContactCommand/maximumImportSize`` contacts.
    static func checkImportSize(_ count: Int, at pointer: String) throws(CampaignError) {
        guard count <= ContactCommand.maximumImportSize else {
            throw CampaignError.validation([
                FieldProblem(
                    field: "contacts", pointer: pointer,
                    message: "an import holds at most \(ContactCommand.maximumImportSize) contacts, this one \(count)")
            ])
        }
    }

    /// A post's targets, each checked by ``checkTarget(_:at:)`` at its index under `pointer`.
    private static func targets(_ items: [JSON], at pointer: String) throws(CampaignError) -> [String] {
        var connectionIds = [String]()
        for (index, item) in items.enumerated() {
            let id = item.stringValue ?? ""
            try checkTarget(id, at: FieldReader.pointer(pointer, index))
            connectionIds.append(id)
        }
        return connectionIds
    }

    /// `INVALID_FORMAT` at `pointer` (an item of a post's `connectionIds`) unless `id` is a connection's id.
    static func checkTarget(_ id: String, at pointer: String) throws(CampaignError) {
        guard Identifier.isValid(id, prefix: "con") else {
            throw CampaignError(
                .invalidFormat, "connectionIds must hold ids like con_…", param: "connectionIds",
                pointer: pointer)
        }
    }

    private static func content(_ r: FieldReader) throws(CampaignError) -> Content? {
        guard let json = r.optional("content") else { return nil }
        let c = try FieldReader(json, at: r.pointer("content"), allowed: ["subject", "body"])
        return Content(subject: try c.optionalString("subject"), body: try c.string("body"))
    }

    private static func strings(_ r: FieldReader, _ key: String) throws(CampaignError) -> [String]? {
        guard let items = try r.optionalArray(key) else { return nil }
        var values = [String]()
        for (index, item) in items.enumerated() {
            guard let text = item.stringValue else {
                throw CampaignError(
                    .invalidFormat, "\(key) must be strings", param: key,
                    pointer: FieldReader.pointer(r.pointer(key), index))
            }
            values.append(text)
        }
        return values
    }

    private static func media(_ r: FieldReader) throws(CampaignError) -> [Media]? {
        guard let items = try r.optionalArray("media") else { return nil }
        var media = [Media]()
        for (index, item) in items.enumerated() {
            let m = try FieldReader(item, at: FieldReader.pointer(r.pointer("media"), index), allowed: ["kind", "url"])
            media.append(Media(kind: try m.string("kind"), url: try m.string("url")))
        }
        return media
    }

    private static func variants(_ items: [JSON], at pointer: String) throws(CampaignError) -> [Variant] {
        var variants = [Variant]()
        for (index, item) in items.enumerated() {
            let v = try FieldReader(
                item, at: FieldReader.pointer(pointer, index), allowed: ["key", "weight", "content"])
            let weight = try v.required("weight")
            guard let number = weight.numberValue else { throw v.wrongType("weight", "a number", weight) }
            // Any number decodes; its range is a validation rule, reported with the other problems.
            let whole = number.rounded() == number && abs(number) <= 1e9 ? Int(number) : Variant.invalidWeight
            variants.append(Variant(key: try v.string("key"), weight: whole, content: try content(v)))
        }
        return variants
    }

    private static func contactInput(_ json: JSON, at pointer: String) throws(CampaignError) -> ContactInput {
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

extension Command {
    /// The payload as canonical JSON: what ``CommandWire/decode(name:payload:at:)`` reads back
    /// into an equal command. A request built in Swift is fingerprinted for idempotency from it.
    public var payload: JSON {
        func object(_ members: [String: JSON?]) -> JSON { .object(JSONObject(members.compactMapValues { $0 })) }
        func date(_ value: Date?) -> JSON? { value.map { .string(Timestamp.format($0)) } }
        func string(_ value: String?) -> JSON? { value.map(JSON.string) }
        func contact(_ input: ContactInput) -> JSON {
            .object(["contactId": .string(input.contactId), "attributes": .object(input.attributes)])
        }
        switch self {
        case let .campaign(command):
            switch command {
            case let .create(id, name, channel, segmentId, content, sendAt):
                return object([
                    "campaignId": .string(id), "name": .string(name), "channel": .string(channel),
                    "segmentId": string(segmentId), "content": content?.json, "sendAt": date(sendAt),
                ])
            case let .update(id, name, channel, content):
                return object([
                    "campaignId": .string(id), "name": string(name), "channel": string(channel),
                    "content": content?.json,
                ])
            case let .attachSegment(id, segmentId):
                return object(["campaignId": .string(id), "segmentId": .string(segmentId)])
            case let .schedule(id, sendAt):
                return object(["campaignId": .string(id), "sendAt": date(sendAt)])
            case let .transition(_, id):
                return object(["campaignId": .string(id)])
            }
        case let .segment(command):
            switch command {
            case let .create(id, name, rules):
                return object(["segmentId": .string(id), "name": .string(name), "rules": rules])
            case let .update(id, name, rules):
                return object(["segmentId": .string(id), "name": string(name), "rules": rules])
            case let .archive(id):
                return object(["segmentId": .string(id)])
            }
        case let .schema(.defineField(name, type, values)):
            return object([
                "name": .string(name), "type": .string(type), "values": values.map { .array($0.map(JSON.string)) },
            ])
        case let .schema(.updateField(name, values)):
            return object(["name": .string(name), "values": .array(values.map(JSON.string))])
        case let .contact(command):
            switch command {
            case let .upsert(input): return contact(input)
            case let .import(inputs): return .object(["contacts": .array(inputs.map(contact))])
            case let .erase(id): return object(["contactId": .string(id)])
            }
        case let .social(command):
            switch command {
            case let .connect(id, platform, accountId, credentialRef, expiresAt, textLimit):
                return object([
                    "connectionId": .string(id), "platform": .string(platform), "accountId": .string(accountId),
                    "credentialRef": .string(credentialRef), "expiresAt": date(expiresAt),
                    "textLimit": textLimit.map { .number(Double($0)) },
                ])
            case let .refresh(id, credentialRef, expiresAt, textLimit):
                return object([
                    "connectionId": .string(id), "credentialRef": string(credentialRef), "expiresAt": date(expiresAt),
                    "textLimit": textLimit.map { $0.value.map { .number(Double($0)) } ?? .null },
                ])
            case let .disconnect(id):
                return object(["connectionId": .string(id)])
            }
        case let .post(command):
            switch command {
            case let .create(id, connectionIds, text, media, link, campaignId):
                return object([
                    "postId": .string(id), "connectionIds": .array(connectionIds.map(JSON.string)),
                    "text": .string(text), "media": .array(media.map(\.json)), "link": string(link),
                    "campaignId": string(campaignId),
                ])
            case let .update(id, text, media, link, connectionIds):
                return object([
                    "postId": .string(id), "text": string(text), "media": media.map { .array($0.map(\.json)) },
                    "link": link.map { $0.value.map(JSON.string) ?? .null },
                    "connectionIds": connectionIds.map { .array($0.map(JSON.string)) },
                ])
            case let .schedule(id, publishAt):
                return object(["postId": .string(id), "publishAt": date(publishAt)])
            case let .unschedule(id), let .cancel(id), let .publish(id):
                return object(["postId": .string(id)])
            }
        case let .experiment(command):
            switch command {
            case let .create(id, campaignId, name, variants):
                return object([
                    "experimentId": .string(id), "campaignId": .string(campaignId), "name": .string(name),
                    "variants": .array(variants.map(\.json)),
                ])
            case let .update(id, name, variants):
                return object([
                    "experimentId": .string(id), "name": string(name),
                    "variants": variants.map { .array($0.map(\.json)) },
                ])
            case let .start(id), let .stop(id):
                return object(["experimentId": .string(id)])
            case let .recordExposure(id, contactId), let .recordConversion(id, contactId):
                return object(["experimentId": .string(id), "contactId": .string(contactId)])
            case let .declareWinner(id, variant, force):
                return object(["experimentId": .string(id), "variant": .string(variant), "force": .bool(force)])
            }
        case let .tick(now):
            return object(["now": date(now)])
        }
    }
}
