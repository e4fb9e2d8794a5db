import CampaignDomain
import Foundation
import Testing

/// An event enum with a stored form: what `decide` returns is read back through it.
protocol StoredEvent: Equatable {
    init?(_ record: EventRecord)
    var domainEvent: DomainEvent { get }
}

extension CampaignEvent: StoredEvent {}
extension PostEvent: StoredEvent {}
extension ExperimentEvent: StoredEvent {}
extension SocialEvent: StoredEvent {}

/// What a command decided: its events, or the error it was refused with.
enum Then<Event: Equatable>: Equatable {
    case events([Event])
    case error(ErrorCode)
}

/// An aggregate as given events → when command → then events or error, with no store
/// (Commanded's `aggregate_case`): `decide` and `evolve` are pure, so the test needs neither a
/// store nor an engine.
struct AggregateCase<A: Aggregate> where A.Event: StoredEvent {
    /// What the aggregate may know beyond its state.
    var context: DecisionContext

    /// The state the events fold to, each at the context's time.
    func given(_ events: [A.Event]) -> A.State? {
        var state: A.State?
        for (index, event) in events.enumerated() {
            state = A.evolve(state, event, at: context.now, version: UInt64(index + 1))
        }
        return state
    }

    /// The events `command` decides on that state, read back from their stored form, or its error code.
    func when(_ command: A.Command, given events: [A.Event]) -> Then<A.Event> {
        do {
            let decision = try A.decide(command, state: given(events), context: context)
            return .events(
                decision.events.compactMap { event in
                    let payload = (try? JSON.parse(event.payload.bytes)) ?? .null
                    let record = EventRecord(type: event.type, payload: payload, occurredAt: context.now, version: 0)
                    let typed = A.Event(record)
                    if typed == nil { Issue.record("\(event.type) does not read back as \(A.Event.self)") }
                    return typed
                })
        } catch {
            return .error(error.code)
        }
    }
}
