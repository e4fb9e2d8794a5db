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
            return object(["campaignId": id.map(JSON.string), "name": .string(name), "channel": .string(channel),
                           "segmentId": segmentId.map(JSON.string), "content": content?.json, "sendAt": date(sendAt)])
        case let .campaignUpdate(id, name, channel, content):
            return object(["campaignId": .string(id), "name": name.map(JSON.string), "channel": channel.map(JSON.string), "content": content?.json])
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
            return object(["name": .string(name), "type": .string(type), "values": values.map { .array($0.map(JSON.string)) }])
        case let .contactUpsert(input):
            return contact(input)
        case let .contactImport(inputs):
            return .object(["contacts": .array(inputs.map(contact))])
        case let .contactErase(id):
            return object(["contactId": .string(id)])
        case let .systemTick(now):
            return object(["now": date(now)])
        }
    }
}
