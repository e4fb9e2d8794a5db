import CampaignDomain

/// The checks of form that the wire decoder makes while it reads a request, made again for a
/// request built in Swift, which no decoder read: its typed values say what kind each field is but
/// not that an id is one. Without them a `contact.upsert` of `ContactInput(contactId: "schema", …)`
/// would append to the tenant's field definitions, a page of `limit: 0` would list everything,
/// an idempotency key too long for an LMDB key would fail as `INTERNAL_ERROR`, and a rule tree
/// nested deeper than a thread's stack can encode would crash the process. Each check throws the
/// error the decoder throws for the same payload: the same code, message and pointer, except for
/// nesting, which the parser finds at a byte and a typed value has none: its error names the value.
extension EngineRequest {
    /// Throws what decoding this request from the wire would have refused, in the decoder's order:
    /// the nesting of its JSON values (which the parser meets before anything is decoded), the request
    /// id, the idempotency key and expected version, the principal's scopes, then the command's or
    /// query's fields (`limits`: the engine's, whose nesting depth the JSON values a request carries
    /// must keep).
    func checkForm(limits: JSONLimits) throws(CampaignError) {
        try checkNesting(limits.maximumDepth)
        try WireFormat.check(requestId: requestId)
        if let idempotencyKey { try WireFormat.check(idempotencyKey: idempotencyKey) }
        if let expectedVersion, expectedVersion > UInt64(WireFormat.expectedVersions.upperBound) {
            throw CampaignError(
                .invalidFormat,
                "expectedVersion must be between 0 and \(WireFormat.expectedVersions.upperBound)",
                param: "expectedVersion", pointer: "/expectedVersion")
        }
        // A principal's scopes are a set here: the first unknown one in byte order is named.
        for scope in principal?.scopes.sorted() ?? [] { try WireFormat.check(scope: scope, at: "/principal/scopes") }
        switch body {
        case let .command(command): try command.checkForm()
        case let .query(query):
            if idempotencyKey != nil || expectedVersion != nil {
                let field = idempotencyKey != nil ? "idempotencyKey" : "expectedVersion"
                throw CampaignError(
                    .invalidField, "\(field) applies to commands only", param: field, pointer: "/\(field)")
            }
            try query.checkForm()
        }
    }

    /// `INVALID_FORMAT` for a JSON value of the request (rules, contact attributes) that nests
    /// deeper than `levels` counted from the request's document, as the parser counts them.
    func checkNesting(_ levels: Int) throws(CampaignError) {
        // `outer`: the levels around the value in a wire request (the document, the payload …).
        func check(_ value: JSON, outer: Int, at pointer: @autoclosure () -> String) throws(CampaignError) {
            guard value.nests(deeperThan: levels - outer) else { return }
            throw CampaignError(
                .invalidFormat, "\(pointer()) nests deeper than the \(levels) levels a request may have",
                pointer: pointer())
        }
        switch body {
        case let .command(.segment(.create(_, _, rules))), let .command(.segment(.update(_, _, rules?))):
            try check(rules, outer: 2, at: "/payload/rules")
        case let .command(.contact(.upsert(input))):
            for (key, value) in input.attributes {
                try check(value, outer: 3, at: JSONPointer.appending("/payload/attributes", key))
            }
        case let .command(.contact(.import(inputs))):
            for (index, input) in inputs.enumerated() {
                for (key, value) in input.attributes {
                    try check(value, outer: 5, at: JSONPointer.appending("/payload/contacts/\(index)/attributes", key))
                }
            }
        case let .query(.segmentPreview(rules, _)):
            try check(rules, outer: 2, at: "/params/rules")
        default:
            break
        }
    }
}

extension Command {
    /// Throws what ``CommandWire/decode(name:payload:at:)`` refuses in this command's payload: an id
    /// that is not of its kind (its stream's, then the others it names), an import over its size.
    func checkForm() throws(CampaignError) {
        func id(_ value: String, _ key: String, _ prefix: String) throws(CampaignError) {
            try FieldReader.check(id: value, key: key, prefix: prefix, at: "/payload/" + key)
        }
        func targets(_ connectionIds: [String]) throws(CampaignError) {
            for (index, connectionId) in connectionIds.enumerated() {
                try CommandWire.checkTarget(connectionId, at: "/payload/connectionIds/\(index)")
            }
        }
        // A created post's targets are read before its id.
        if case let .post(.create(_, connectionIds, _, _, _, _)) = self { try targets(connectionIds) }
        if let route, let prefix = route.aggregate.idPrefix {
            try id(route.id, route.aggregate.idField, prefix)
        }
        switch self {
        case let .campaign(.create(_, _, _, segmentId?, _, _)), let .campaign(.attachSegment(_, segmentId)):
            try id(segmentId, "segmentId", "seg")
        case let .contact(.import(inputs)):
            // Each item's id is checked by the import, which reports a bad one at its index.
            try CommandWire.checkImportSize(inputs.count, at: "/payload/contacts")
        case let .post(.update(_, _, _, _, connectionIds?)):
            try targets(connectionIds)
        case let .post(.create(_, _, _, _, _, campaignId?)):
            try id(campaignId, "campaignId", "cmp")
        case let .experiment(.create(_, campaignId, _, _)):
            try id(campaignId, "campaignId", "cmp")
        case let .experiment(.recordExposure(_, contactId)), let .experiment(.recordConversion(_, contactId)):
            try id(contactId, "contactId", "ctc")
        default:
            break
        }
    }
}

extension AggregateKind {
    /// The prefix of the aggregate's ids; nil for the schema, whose one stream the engine names.
    var idPrefix: String? {
        switch self {
        case .campaign: return "cmp"
        case .segment: return "seg"
        case .schema: return nil
        case .contact: return "ctc"
        case .connection: return "con"
        case .post: return "pst"
        case .experiment: return "exp"
        }
    }
}

extension Query {
    /// Throws what ``Query/decode(name:params:at:)`` refuses in these params: an id that is not of
    /// its kind, a page or preview limit out of range, an `audit.history` filter no log can match.
    func checkForm() throws(CampaignError) {
        func id(_ value: String?, _ key: String, _ prefix: String) throws(CampaignError) {
            guard let value else { return }
            try FieldReader.check(id: value, key: key, prefix: prefix, at: "/params/" + key)
        }
        func limit(_ page: Page) throws(CampaignError) {
            try FieldReader.check(page.limit, key: "limit", in: Query.pageLimits, at: "/params/limit")
        }
        switch self {
        case let .campaignGet(campaignId): try id(campaignId, "campaignId", "cmp")
        case let .segmentGet(segmentId): try id(segmentId, "segmentId", "seg")
        case let .postGet(postId): try id(postId, "postId", "pst")
        case let .connectionGet(connectionId): try id(connectionId, "connectionId", "con")
        case let .contactGet(contactId): try id(contactId, "contactId", "ctc")
        case let .experimentGet(experimentId), let .experimentResults(experimentId):
            try id(experimentId, "experimentId", "exp")
        case let .contactList(segmentId, page):
            try id(segmentId, "segmentId", "seg")
            try limit(page)
        case let .segmentMembers(segmentId, page):
            try id(segmentId, "segmentId", "seg")
            try limit(page)
        case let .campaignList(_, _, _, segmentId, page):
            try limit(page)
            try id(segmentId, "segmentId", "seg")
        case let .postList(_, _, _, campaignId, connectionId, page):
            try limit(page)
            try id(campaignId, "campaignId", "cmp")
            try id(connectionId, "connectionId", "con")
        case let .experimentList(_, campaignId, page):
            try id(campaignId, "campaignId", "cmp")
            try limit(page)
        case let .segmentList(_, page), let .connectionList(_, _, page):
            try limit(page)
        case .fieldList:
            break
        case let .segmentPreview(_, count):
            try FieldReader.check(count, key: "limit", in: Query.previewLimits, at: "/params/limit")
        case let .auditHistory(streamId, actor, _, _, page):
            try Query.checkHistoryFilters(streamId: streamId, actor: actor, at: "/params")
            try limit(page)
        case let .systemHealth(interval?):
            try FieldReader.check(
                interval, key: "maximumTickInterval", in: Query.tickIntervals, at: "/params/maximumTickInterval")
        case .systemHealth(nil):
            break
        }
    }
}
