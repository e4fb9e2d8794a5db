import CampaignDomain

/// The aggregates commands are routed to, with the names their ids and states have on the wire.
enum AggregateKind: String, Sendable {
    case campaign, segment, schema, contact, connection, post, experiment

    /// The payload member holding the id (`campaignId`, …).
    var idField: String {
        switch self {
        case .schema: return "name"
        case .connection: return "connectionId"
        default: return rawValue + "Id"
        }
    }
}

/// Where a command goes and what it expects of its stream: one entry per command in
/// ``Command/route`` (the route table, in the manner of Commanded's `identify`/`dispatch` router).
struct Route: Sendable, Equatable {
    /// What a command expects of its aggregate's stream.
    enum Expectation: Sendable, Equatable {
        /// The stream must not exist: a version clash is `DUPLICATE_RESOURCE`.
        case new
        /// The stream must exist (the aggregate answers `RESOURCE_NOT_FOUND` otherwise).
        case existing
        /// Either (an upsert, a schema that grows).
        case any
        /// The events commute with others on the stream (exposures, conversions): appended without
        /// a version check, not serialised per aggregate, and no `expectedVersion` accepted.
        case commutes
    }

    /// The aggregate that decides the command.
    var aggregate: AggregateKind
    /// The id of its stream within the tenant.
    var id: String
    /// What the command expects of the stream.
    var expects: Expectation

    init(_ aggregate: AggregateKind, _ id: String, _ expects: Expectation) {
        self.aggregate = aggregate
        self.id = id
        self.expects = expects
    }

    /// The stream: the tenant's, so another tenant's id is simply absent.
    func streamId(tenant: String) -> String { CampaignEngine.streamId(tenant, id) }

    /// Where the id sits in the request.
    var idPointer: String { "/payload/" + aggregate.idField }
}

extension Command {
    /// The route table. Nil for the commands that span many streams or none, which have their own
    /// handlers: an import (one stream per contact) and the tick.
    var route: Route? {
        switch self {
        case let .campaign(command):
            switch command {
            case .create: return Route(.campaign, command.campaignId, .new)
            case .update, .attachSegment, .schedule, .transition: return Route(.campaign, command.campaignId, .existing)
            }
        case let .segment(command):
            switch command {
            case .create: return Route(.segment, command.segmentId, .new)
            case .update, .archive: return Route(.segment, command.segmentId, .existing)
            }
        case .schema: return Route(.schema, "schema", .any)
        case let .contact(command):
            switch command {
            case let .upsert(input): return Route(.contact, input.contactId, .any)
            case let .erase(contactId): return Route(.contact, contactId, .existing)
            case .import: return nil
            }
        case let .social(command):
            switch command {
            case .connect: return Route(.connection, command.connectionId, .new)
            case .refresh, .disconnect: return Route(.connection, command.connectionId, .existing)
            }
        case let .post(command):
            switch command {
            case .create: return Route(.post, command.postId, .new)
            case .update, .schedule, .unschedule, .cancel, .publish: return Route(.post, command.postId, .existing)
            }
        case let .experiment(command):
            switch command {
            case .create: return Route(.experiment, command.experimentId, .new)
            case .update, .start, .stop, .declareWinner: return Route(.experiment, command.experimentId, .existing)
            case .recordExposure, .recordConversion: return Route(.experiment, command.experimentId, .commutes)
            }
        case .tick: return nil
        }
    }
}
