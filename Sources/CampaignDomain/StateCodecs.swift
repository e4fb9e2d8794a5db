import Foundation

/// Full-fidelity JSON forms of every aggregate state, for snapshots and projection rows:
/// `init?(snapshot:)` reads back exactly what `snapshot` wrote, and returns nil for anything else.

private func date(_ json: JSON?) -> Date? { json?.stringValue.flatMap { Timestamp.parse($0) } }
private func string(_ date: Date?) -> JSON { date.map { .string(Timestamp.format($0)) } ?? .null }
private func storedVersion(_ json: JSON) -> UInt64? { json["version"]?.integerValue.map(UInt64.init) }

extension CampaignState {
    /// The state as snapshots store it: its read model, which holds every field; ``init(snapshot:)`` reads it back.
    public var snapshot: JSON { json }

    /// Reads back ``snapshot``.
    public init?(snapshot json: JSON) {
        guard let id = json["campaignId"]?.stringValue,
            let status = json["status"]?.stringValue.flatMap(CampaignStatus.init(rawValue:)),
            let created = date(json["createdAt"]), let updated = date(json["updatedAt"]),
            let version = storedVersion(json)
        else { return nil }
        self.init(
            id: id, name: json["name"]?.stringValue ?? "", channel: json["channel"]?.stringValue ?? "",
            segmentId: json["segmentId"]?.stringValue, content: Content(json: json["content"]),
            sendAt: date(json["sendAt"]),
            status: status, createdAt: created, updatedAt: updated, version: version)
    }
}

extension SegmentState {
    /// The state as snapshots store it: its read model, which holds every field; ``init(snapshot:)`` reads it back.
    public var snapshot: JSON { json }

    /// Reads back ``snapshot``.
    public init?(snapshot json: JSON) {
        guard let id = json["segmentId"]?.stringValue,
            let status = json["status"]?.stringValue.flatMap(SegmentStatus.init(rawValue:)),
            let created = date(json["createdAt"]), let updated = date(json["updatedAt"]),
            let version = storedVersion(json)
        else { return nil }
        self.init(
            id: id, name: json["name"]?.stringValue ?? "", rules: json["rules"] ?? .null, status: status,
            createdAt: created, updatedAt: updated, version: version)
    }
}

extension ContactState {
    /// The state as JSON (a commitment and field names; never values).
    public var snapshot: JSON {
        .object([
            "contactId": .string(id), "status": .string(status.rawValue), "commitment": .string(commitment),
            "fields": .array(fields.map(JSON.string)), "updatedAt": string(updatedAt),
            "version": .number(Double(version)),
        ])
    }

    /// Reads back ``snapshot``.
    public init?(snapshot json: JSON) {
        guard let id = json["contactId"]?.stringValue,
            let status = json["status"]?.stringValue.flatMap(ContactStatus.init(rawValue:)),
            let updated = date(json["updatedAt"]), let version = storedVersion(json)
        else { return nil }
        self.init(
            id: id, status: status, commitment: json["commitment"]?.stringValue ?? "",
            fields: (json["fields"]?.arrayValue ?? []).compactMap(\.stringValue), updatedAt: updated, version: version)
    }
}

extension ConnectionState {
    /// The state as snapshots store it: every field, where the read model has the status at a time instead.
    public var snapshot: JSON {
        var members: JSONObject = [
            "connectionId": .string(id), "platform": .string(platform), "accountId": .string(accountId),
            "credentialRef": .string(credentialRef), "expiresAt": string(expiresAt),
            "disconnected": .bool(disconnected),
            "version": .number(Double(version)),
        ]
        if let textLimit { members["textLimit"] = .number(Double(textLimit)) }
        return .object(members)
    }

    /// Reads back ``snapshot``.
    public init?(snapshot json: JSON) {
        guard let id = json["connectionId"]?.stringValue, let expires = date(json["expiresAt"]),
            let version = storedVersion(json)
        else { return nil }
        self.init(
            id: id, platform: json["platform"]?.stringValue ?? "", accountId: json["accountId"]?.stringValue ?? "",
            credentialRef: json["credentialRef"]?.stringValue ?? "", expiresAt: expires,
            disconnected: json["disconnected"]?.boolValue ?? false, version: version,
            textLimit: json["textLimit"]?.integerValue)
    }
}

extension PostTarget {
    var snapshot: JSON {
        var members: JSONObject = [
            "connectionId": .string(connectionId), "status": .string(status), "attempts": .number(Double(attempts)),
            "transientFailures": .number(Double(transientFailures)), "rateLimits": .number(Double(rateLimits)),
        ]
        if let retryAt { members["retryAt"] = string(retryAt) }
        if let retryReason { members["retryReason"] = .string(retryReason) }
        if let attemptStartedAt { members["attemptStartedAt"] = string(attemptStartedAt) }
        if let platformPostId { members["platformPostId"] = .string(platformPostId) }
        if let url { members["url"] = .string(url) }
        if let failureCode { members["code"] = .string(failureCode) }
        if let message { members["message"] = .string(message) }
        return .object(members)
    }

    init?(snapshot json: JSON) {
        guard let id = json["connectionId"]?.stringValue, let status = json["status"]?.stringValue else { return nil }
        self.init(
            connectionId: id, status: status, attempts: json["attempts"]?.integerValue ?? 0,
            transientFailures: json["transientFailures"]?.integerValue ?? 0,
            rateLimits: json["rateLimits"]?.integerValue ?? 0,
            retryAt: date(json["retryAt"]), retryReason: json["retryReason"]?.stringValue,
            attemptStartedAt: date(json["attemptStartedAt"]),
            platformPostId: json["platformPostId"]?.stringValue, url: json["url"]?.stringValue,
            failureCode: json["code"]?.stringValue, message: json["message"]?.stringValue)
    }
}

extension PostState {
    /// The state as JSON, with every target's retry bookkeeping.
    public var snapshot: JSON {
        guard case var .object(members) = json else { return json }
        members["targets"] = .array(targets.map(\.snapshot))
        return .object(members)
    }

    /// Reads back ``snapshot``.
    public init?(snapshot json: JSON) {
        guard let id = json["postId"]?.stringValue,
            let status = json["status"]?.stringValue.flatMap(PostStatus.init(rawValue:)),
            let created = date(json["createdAt"]), let updated = date(json["updatedAt"]),
            let version = storedVersion(json)
        else { return nil }
        self.init(
            id: id, targets: (json["targets"]?.arrayValue ?? []).compactMap(PostTarget.init(snapshot:)),
            text: json["text"]?.stringValue ?? "",
            media: (json["media"]?.arrayValue ?? []).compactMap(Media.init(json:)), link: json["link"]?.stringValue,
            campaignId: json["campaignId"]?.stringValue, status: status, publishAt: date(json["publishAt"]),
            createdAt: created, updatedAt: updated, version: version)
    }
}

extension ExperimentState {
    /// The state as snapshots store it: its read model, which holds every field; ``init(snapshot:)`` reads it back.
    public var snapshot: JSON { json }

    /// Reads back ``snapshot``.
    public init?(snapshot json: JSON) { self.init(json: json) }
}

extension ContactSchema {
    /// The schema as snapshots store it: `{"fields": {name: {name, type, values?}}}`, the fields the
    /// tenant defined (the built-in ones are every schema's); ``init(snapshot:)`` reads it back.
    public var snapshot: JSON {
        var defined = JSONObject()
        for name in definedNames {
            defined[name] = definition(of: name).map(JSON.object) ?? .null
        }
        return .object(["fields": .object(defined)])
    }

    /// Reads back ``snapshot``.
    public init?(snapshot json: JSON) {
        guard let defined = json["fields"]?.objectValue else { return nil }
        self.init()
        for (name, definition) in defined {
            guard ContactSchema.isValidFieldName(name), ContactSchema.builtIn[name] == nil,
                let type = definition["type"]?.stringValue.flatMap({
                    FieldType(name: $0, values: definition["values"]?.arrayValue?.compactMap(\.stringValue))
                })
            else { return nil }
            define(name, type)
        }
    }
}
