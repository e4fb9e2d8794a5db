import Foundation

extension Command {
    /// The payload as canonical JSON: what `decode(name:payload:)` reads back into an equal command.
    /// Idempotency fingerprints hash it, so a retry that differs in any field is told apart.
    public var payload: JSON {
        func object(_ members: [String: JSON?]) -> JSON { .object(members.compactMapValues { $0 }) }
        func date(_ value: Date?) -> JSON? { value.map { .string(Timestamp.format($0)) } }
        func contact(_ input: ContactInput) -> JSON {
            .object(["contactId": .string(input.contactId), "attributes": .object(input.attributes)])
        }
        switch self {
        case let .campaignCreate(id, name, channel, segmentId, content, sendAt):
            return object([
                "campaignId": id.map(JSON.string), "name": .string(name), "channel": .string(channel),
                "segmentId": segmentId.map(JSON.string), "content": content?.json, "sendAt": date(sendAt),
            ])
        case let .campaignUpdate(id, name, channel, content):
            return object([
                "campaignId": .string(id), "name": name.map(JSON.string), "channel": channel.map(JSON.string),
                "content": content?.json,
            ])
        case let .campaignAttachSegment(id, segmentId):
            return object(["campaignId": .string(id), "segmentId": .string(segmentId)])
        case let .campaignSchedule(id, sendAt):
            return object(["campaignId": .string(id), "sendAt": date(sendAt)])
        case let .campaignTransition(_, id):
            return object(["campaignId": .string(id)])
        case let .segmentCreate(id, name, rules):
            return object(["segmentId": id.map(JSON.string), "name": .string(name), "rules": rules])
        case let .segmentUpdate(id, name, rules):
            return object(["segmentId": .string(id), "name": name.map(JSON.string), "rules": rules])
        case let .segmentArchive(id):
            return object(["segmentId": .string(id)])
        case let .fieldDefine(name, type, values):
            return object([
                "name": .string(name), "type": .string(type), "values": values.map { .array($0.map(JSON.string)) },
            ])
        case let .contactUpsert(input):
            return contact(input)
        case let .contactImport(inputs):
            return .object(["contacts": .array(inputs.map(contact))])
        case let .contactErase(id):
            return object(["contactId": .string(id)])
        case let .socialConnect(id, platform, accountId, credentialRef, expiresAt):
            return object([
                "connectionId": id.map(JSON.string), "platform": .string(platform), "accountId": .string(accountId),
                "credentialRef": .string(credentialRef), "expiresAt": date(expiresAt),
            ])
        case let .socialRefresh(id, credentialRef, expiresAt):
            return object([
                "connectionId": .string(id), "credentialRef": credentialRef.map(JSON.string),
                "expiresAt": date(expiresAt),
            ])
        case let .socialDisconnect(id):
            return object(["connectionId": .string(id)])
        case let .postCreate(id, connectionIds, text, media, link, campaignId):
            return object([
                "postId": id.map(JSON.string), "connectionIds": .array(connectionIds.map(JSON.string)),
                "text": .string(text),
                "media": .array(media.map(\.json)), "link": link.map(JSON.string),
                "campaignId": campaignId.map(JSON.string),
            ])
        case let .postUpdate(id, text, media, link):
            return object([
                "postId": .string(id), "text": text.map(JSON.string), "media": media.map { .array($0.map(\.json)) },
                "link": link.map(JSON.string),
            ])
        case let .postSchedule(id, publishAt):
            return object(["postId": .string(id), "publishAt": date(publishAt)])
        case let .postCancel(id), let .postPublish(id):
            return object(["postId": .string(id)])
        case let .experimentCreate(id, campaignId, name, variants):
            return object([
                "experimentId": id.map(JSON.string), "campaignId": .string(campaignId), "name": .string(name),
                "variants": .array(variants.map(\.json)),
            ])
        case let .experimentUpdate(id, name, variants):
            return object([
                "experimentId": .string(id), "name": name.map(JSON.string),
                "variants": variants.map { .array($0.map(\.json)) },
            ])
        case let .experimentStart(id), let .experimentStop(id):
            return object(["experimentId": .string(id)])
        case let .experimentRecordExposure(id, contactId), let .experimentRecordConversion(id, contactId):
            return object(["experimentId": .string(id), "contactId": .string(contactId)])
        case let .experimentDeclareWinner(id, variant, force):
            return object(["experimentId": .string(id), "variant": .string(variant), "force": .bool(force)])
        case let .systemTick(now):
            return object(["now": date(now)])
        }
    }
}
