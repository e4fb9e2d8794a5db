import CampaignDomain
import CampaignEngine
import EventStore
import Foundation
import Hashing

/// `campaign replay`: the auditor's view of the log.
enum ReplayCommand {
    static let help = """
        usage: campaign replay [--data DIR] [--tenant T] [--stream ID] [--actor A] [--type TYPE]
                               [--from TIME|POSITION] [--to TIME|POSITION] [--limit N] [--json]
               campaign replay --as-of TIME|POSITION --stream ID [--tenant T] [--json]

        Lists events in log order with who (actor), when, what (type, stream@version) and the
        correlation (requestId) and causation ids. --stream takes a resource id with --tenant
        (cmp_1) or a stream id (acme:cmp_1); --type ends with * to match a prefix (campaign.*).
        --json prints one JSON object per event. The log is read a page at a time, so memory stays
        bounded whatever its size. --as-of prints the aggregate's state at that time or position
        (--stream acme:schema: the tenant's contact fields as they were then).
        A filter that can match nothing (a tenant, stream, actor or type no event can have) is a
        usage error, not an empty list.
        """

    struct Filter {
        var tenant: String?
        var stream: String?
        var actor: String?
        var type: String?
        var from: CLI.Bound?
        var to: CLI.Bound?

        func admits(_ event: RecordedEvent) -> Bool {
            if let tenant, event.tenant != tenant { return false }
            if let stream, event.streamId != stream { return false }
            if let actor, event.actor != actor { return false }
            if let type {
                if type.hasSuffix("*") {
                    if !event.type.hasPrefix(type.dropLast()) { return false }
                } else if event.type != type {
                    return false
                }
            }
            switch from {
            case let .position(p)?: if event.position < p { return false }
            case let .time(t)?: if event.occurredAt < t { return false }
            case nil: break
            }
            switch to {
            case let .position(p)?: if event.position > p { return false }
            case let .time(t)?: if event.occurredAt > t { return false }
            case nil: break
            }
            return true
        }

        /// The stream `--stream` names: a stream id (`acme:cmp_1`), or a resource id with `--tenant`.
        /// One no tenant's log can hold (`acme:`, `Acme:cmp_1`, `acme:bad id`) would match nothing,
        /// so it is a usage error.
        static func streamId(_ options: [String: String]) throws(Arguments.UsageError) -> String? {
            let tenant = try tenant(options)
            guard let given = options["stream"] else { return nil }
            var stream = given
            if !given.contains(":") {
                guard let tenant else {
                    throw CLI.usage("--stream \(given) needs --tenant (or give the stream id tenant:\(given))")
                }
                stream = tenant + ":" + given
            }
            if let problem = CampaignEngine.streamProblem(stream) { throw CLI.usage("--stream \(stream): \(problem)") }
            return stream
        }

        /// The `--tenant` given, if any: one no principal can have matches nothing, so it is a usage error.
        static func tenant(_ options: [String: String]) throws(Arguments.UsageError) -> String? {
            guard let tenant = options["tenant"] else { return nil }
            guard Principal.isValidTenant(tenant) else {
                throw CLI.usage("--tenant \"\(tenant)\" is no tenant: \(Principal.tenantRule)")
            }
            return tenant
        }

        /// The filter and the `--limit` (unlimited when absent) of replay's options, which export shares.
        static func parse(_ options: [String: String]) throws(Arguments.UsageError) -> (Filter, Int) {
            if let type = options["type"], !EventTypes.canMatch(type) {
                let families = Set(EventTypes.all.map { $0.prefix { $0 != "." } + ".*" }).sorted()
                throw CLI.usage(
                    "--type \(type) matches no event type the engine writes: give a type such as campaign.created "
                        + "or a prefix ending in * (\(families.joined(separator: ", ")))")
            }
            if let actor = options["actor"], !Principal.isValidSubject(actor) {
                throw CLI.usage("--actor \"\(actor)\" is no subject: \(Principal.subjectRule)")
            }
            var filter = Filter(
                tenant: try tenant(options), stream: try streamId(options), actor: options["actor"],
                type: options["type"])
            filter.from = try options["from"].map { text throws(Arguments.UsageError) in
                try CLI.Bound.parse(text, option: "from")
            }
            filter.to = try options["to"].map { text throws(Arguments.UsageError) in
                try CLI.Bound.parse(text, option: "to")
            }
            // Bounds of one kind in the wrong order match nothing: say so rather than print "0 events".
            let reversed: Bool =
                switch (filter.from, filter.to) {
                case let (.position(from)?, .position(to)?): from > to
                case let (.time(from)?, .time(to)?): from > to
                default: false
                }
            if reversed { throw CLI.usage("--from \(options["from"]!) is after --to \(options["to"]!)") }
            let limit =
                try options["limit"].map { text throws(Arguments.UsageError) -> Int in
                    guard let value = Int(text), value > 0 else {
                        throw CLI.usage("--limit takes a positive whole number")
                    }
                    return value
                } ?? Int.max
            return (filter, limit)
        }

        /// How far past a time `--to` an event must be before a following export stops: event times are
        /// when each command was decided, and commands decided at once commit in either order, so a
        /// later position may carry a time a few milliseconds earlier (a clock stepped back, or another
        /// process's clock, can make that more).
        static let timeSettle: TimeInterval = 60

        /// Past this event nothing later can match. A position bound ends at the first event past it
        /// (positions only grow). A time bound never ends a read of the log up to its head (`settle`
        /// infinite, replay and export without `--follow`): an event at a later position may still be
        /// earlier than `--to` (``timeSettle``); a follow ends at the first event `settle` seconds past it.
        func isPastEnd(_ event: RecordedEvent, settle: TimeInterval = .infinity) -> Bool {
            switch to {
            case let .position(p)?: return event.position > p
            case let .time(t)?: return event.occurredAt.timeIntervalSince(t) > settle
            case nil: return false
            }
        }
    }

    /// Says why a stream had no state at a point: its first event is later. A stream with no events at all is
    /// `RESOURCE_NOT_FOUND`.
    static func sayWhyAbsent(
        _ stream: String, asOf: String, at point: PointInTime, in store: EventStore, json: Bool, console: any Console
    ) throws {
        guard let first = try store.readStream(stream, limit: 1, hashes: false).first else {
            throw CampaignError(.resourceNotFound, "\(stream) has no events in this log")
        }
        if json {
            console.out("null")
        } else if point.includes(first) {
            // Every aggregate's fold keeps a state once its first event made one (a deletion is a status).
            console.out("\(stream) did not exist as of \(asOf)")
        } else {
            let place = "position \(first.position) (\(Timestamp.format(first.occurredAt)))"
            console.out("\(stream) did not exist yet as of \(asOf): its first event is at \(place)")
        }
    }

    static func run(_ arguments: Arguments, console: any Console) async throws -> CLI.Exit {
        guard arguments.positionals.isEmpty else { throw CLI.usage("replay takes options only") }
        let options = arguments.options
        let stream = try Filter.streamId(options)
        let json = arguments.flags.contains("json")
        if let asOf = options["as-of"] {
            guard let stream else { throw CLI.usage("--as-of needs --stream") }
            let bound = try CLI.Bound.parse(asOf, option: "as-of")
            let store = try CLI.openStore(arguments)
            defer { store.close() }
            let parts = stream.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw CLI.usage("--stream must be tenant:id for --as-of") }
            let point: PointInTime =
                switch bound {
                case let .time(t): .time(t)
                case let .position(p): .position(p)
                }
            guard let state = try CampaignEngine.state(in: store, tenant: parts[0], id: parts[1], asOf: point) else {
                try sayWhyAbsent(stream, asOf: asOf, at: point, in: store, json: json, console: console)
                return .ok
            }
            if json {
                console.out(state.text)
            } else {
                console.out("\(stream) as of \(asOf):")
                for (key, value) in (state.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
                    console.out(
                        "  \(key.padding(toLength: 12, withPad: " ", startingAt: 0)) \(value.stringValue ?? value.text)"
                    )
                }
            }
            return .ok
        }

        let (filter, limit) = try Filter.parse(options)

        let store = try CLI.openStore(arguments)
        defer { store.close() }
        var shown = 0
        let header = ["POSITION", "OCCURRED AT", "TENANT", "ACTOR", "STREAM@VERSION", "TYPE", "REQUEST", "CAUSATION"]
        var pending = [[String]]()
        // Lines are written a chunk at a time: JSON lines 64 KiB at a time, table rows 1,000 at a time.
        var lines = [UInt8]()
        func flush() throws {
            if !pending.isEmpty {
                for line in Format.table(header, pending).dropFirst(shown == pending.count ? 0 : 1) {
                    lines += line.utf8
                    lines.append(UInt8(ascii: "\n"))
                }
                pending.removeAll()
            }
            guard !lines.isEmpty else { return }
            try console.out(encodedLines: lines)
            lines.removeAll(keepingCapacity: true)
        }
        let visit: (RecordedEvent) throws -> Bool = { event in
            if filter.isPastEnd(event) { return false }
            guard filter.admits(event) else { return true }
            shown += 1
            if json {
                CampaignEngine.appendAuditJSON(event, to: &lines)
                lines.append(UInt8(ascii: "\n"))
                if lines.count >= 1 << 16 { try flush() }
            } else {
                pending.append([
                    "\(event.position)", Timestamp.format(event.occurredAt), event.tenant, event.actor,
                    "\(event.streamId)@\(event.streamVersion)", event.type, event.requestId, event.causationId,
                ])
                if pending.count == 1_000 { try flush() }
            }
            return shown < limit
        }
        do {
            if let stream {
                try store.forEachEvent(inStream: stream) { try visit($0) }
            } else {
                var start: UInt64 = 1
                if case let .position(p)? = filter.from { start = p }
                try store.forEachEvent(from: start) { try visit($0) }
            }
        } catch {
            // What was read before the failure is shown, as it would have been a line at a time.
            try? flush()
            throw error
        }
        try flush()
        if !json {
            if shown == 0 { console.out(Format.table(header, []).joined()) }
            console.out("\(Format.count(shown)) event\(shown == 1 ? "" : "s")")
        }
        return .ok
    }
}
