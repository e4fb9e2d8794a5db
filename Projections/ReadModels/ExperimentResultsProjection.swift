import CampaignDomain
import Foundation
import Hashing

/// Experiment results: each experiment's definition and counts, and which variant each exposed
/// contact saw (and whether it converted), so exposures and conversions count once.
///
/// Keys: `e‖tenant‖experimentId` → the experiment's state; `n‖tenant‖status` → how many of the
/// tenant's experiments have that status (u64, absent at 0); `x‖tenant‖experimentId‖contactId` →
/// the variant key, followed by `\n1` once converted.
public struct ExperimentResultsProjection: Projection {
    /// Creates the projection.
    public init() {}
    /// `experiment-results`, the name its tables and `campaign projections` use.
    public var name: String { "experiment-results" }
    /// 3: the running experiments are indexed by campaign (2 counted the experiments by status, 1 was
    /// without the counts; a change rebuilds it).
    public var version: Int { 3 }
    /// Inline: "counted once" is checked against it inside the write transaction.
    public var mode: ProjectionMode { .inline }

    /// The key of an experiment's state.
    public static func row(_ tenant: String, _ id: String) -> [UInt8] { Key.make(["e", tenant, id]) }
    /// The key of the count of a tenant's experiments with `status`.
    public static func count(_ tenant: String, _ status: ExperimentStatus) -> [UInt8] {
        Key.make(["n", tenant, status.rawValue])
    }
    /// The key marking experiment `id` as running on `campaignId`.
    public static func running(_ tenant: String, _ campaignId: String, _ id: String) -> [UInt8] {
        Key.make(["r", tenant, campaignId, id])
    }
    /// The experiments running on a campaign, in id order.
    public static func running(_ reader: ProjectionReader, tenant: String, campaignId: String) throws -> [String] {
        try reader.names(under: ["r", tenant, campaignId])
    }
    /// The key of a contact's exposure.
    public static func contact(_ tenant: String, _ id: String, _ contactId: String) -> [UInt8] {
        Key.make(["x", tenant, id, contactId])
    }

    /// An experiment's state.
    public static func experiment(_ reader: ProjectionReader, tenant: String, id: String) throws -> ExperimentState? {
        try reader.json(row(tenant, id)).flatMap(ExperimentState.init(snapshot:))
    }

    /// The variant a contact was exposed to, and whether it converted.
    public static func exposure(
        _ reader: ProjectionReader, tenant: String, id: String, contactId: String
    ) throws -> (variant: String, converted: Bool)? {
        guard let bytes = try reader.get(contact(tenant, id, contactId)) else { return nil }
        let parts = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        return (String(parts.first ?? ""), parts.count > 1)
    }

    /// Every experiment event type.
    public var eventTypes: Set<String>? { Set(ExperimentEvent.Kind.allCases.map(\.rawValue)) }

    /// Folds an experiment event.
    public func apply(_ event: ProjectedEvent, to table: ProjectionTable) throws {
        guard let kind = ExperimentEvent.Kind(rawValue: event.envelope.type),
            let id = event.payload["experimentId"]?.stringValue
        else { return }
        let tenant = event.envelope.tenant
        let row = Self.row(tenant, id)
        // The state as this transaction last wrote it, kept decoded for its later events: a group
        // commit of exposures to one experiment parsed the row once an exposure, on the writer
        // thread. The row, not the command's folded state, is the truth here: exposures commute,
        // so a command may have folded a state that missed another's exposure.
        let memoKey = "experiment\u{0}\(tenant)\u{0}\(id)"
        var before = table.memo[memoKey] as? ExperimentState
        if before == nil { before = try table.json(row).flatMap(ExperimentState.init(snapshot:)) }
        if let after = Experiment.evolve(before, event.record) {
            try table.put(row, json: after.snapshot)
            table.memo[memoKey] = after
            if before?.status != after.status {
                if let before { try table.add(-1, to: Self.count(tenant, before.status)) }
                try table.add(1, to: Self.count(tenant, after.status))
                if let before, before.status == .running {
                    try table.delete(Self.running(tenant, before.campaignId, id))
                }
                if after.status == .running { try table.put(Self.running(tenant, after.campaignId, id)) }
            }
        } else if let before {
            table.memo[memoKey] = before
        }
        if let contactId = event.payload["contactId"]?.stringValue, let variant = event.payload["variant"]?.stringValue
        {
            let converted = kind == .converted
            try table.put(Self.contact(tenant, id, contactId), Array((converted ? variant + "\n1" : variant).utf8))
        }
    }
}

extension ExperimentResultsProjection: FoldedRebuild {
    /// Keeps each experiment's state decoded while it folds, and encodes it once at the end.
    public func makeFold() -> any RebuildFold { Fold() }
    /// 2: exposures and conversions are the most frequent events of a running experiment, and each
    /// is a payload read and a row kept (on the demo-shaped log the fold costs about twice any other
    /// small fold).
    public var foldWeight: Int { 2 }

    /// The rebuild's fold: the same `evolve` and the same exposure rows as ``apply(_:to:)``, but an
    /// experiment's state stays a value between events, evolved where it is kept, instead of being
    /// parsed from its row and encoded back on every exposure (a state reads back exactly as it was
    /// written, so the rows are the same).
    final class Fold: RebuildFold {
        private var states: [ByteKey: ExperimentState] = [:]
        /// Each exposure or conversion row's key and value as they came, packed (two arrays a row
        /// and an array of arrays sorted were a third of the fold), a later row for a key winning.
        private var keys = PackedKeys(reservingCapacity: 0)
        private var values = PackedKeys(reservingCapacity: 0)

        /// Folds an experiment event.
        func fold(_ event: ProjectedEvent) throws {
            guard let kind = ExperimentEvent.Kind(rawValue: event.envelope.type),
                let id = event.payload["experimentId"]?.stringValue
            else { return }
            let tenant = event.envelope.tenant
            Experiment.evolve(&states[ByteKey(ExperimentResultsProjection.row(tenant, id))], event.record)
            if let contactId = event.payload["contactId"]?.stringValue,
                let variant = event.payload["variant"]?.stringValue
            {
                keys.append(ExperimentResultsProjection.contact(tenant, id, contactId))
                values.append((kind == .converted ? variant + "\n1" : variant).utf8)
            }
        }

        /// Every experiment's state, encoded once, then the counts by status, then the running
        /// experiments by campaign, then every exposure, in key order: a state's key (`e‖…`) sorts
        /// before every count's (`n‖…`), those before every running mark's (`r‖…`), and those before
        /// every exposure's (`x‖…`).
        func rows(_: PersonalDataReader) throws -> SortedRows {
            var entries = states.map { (key: $0.key.bytes, value: $0.value.snapshot.bytes) }
            var counts = [ByteKey: UInt64]()
            var running = [[UInt8]]()
            for (key, state) in states {
                // A state's key is `e` 0 tenant 0 id, and a tenant holds no 0 byte.
                let tenant = String(decoding: key.bytes.split(separator: 0, maxSplits: 2)[1], as: UTF8.self)
                counts[ByteKey(ExperimentResultsProjection.count(tenant, state.status)), default: 0] += 1
                if state.status == .running {
                    running.append(ExperimentResultsProjection.running(tenant, state.campaignId, state.id))
                }
            }
            states = [:]
            entries.sort { ByteOrder.precedes($0.key, $1.key) }
            entries += counts.map { (key: $0.key.bytes, value: Key.u64($0.value)) }.sorted {
                ByteOrder.precedes($0.key, $1.key)
            }
            entries += running.sorted(by: ByteOrder.precedes).map { (key: $0, value: []) }
            // In key order, a key's rows in the order they came: the last of each is kept.
            let order = keys.sortedIndices()
            var rows = SortedRows()
            for entry in entries { rows.append(key: entry.key, value: entry.value) }
            for (at, index) in order.enumerated() where at + 1 == order.count || !keys.same(order[at + 1], index) {
                rows.append(key: { keys.appendKey(index, to: &$0) }, value: { values.appendKey(index, to: &$0) })
            }
            keys = PackedKeys(reservingCapacity: 0)
            values = PackedKeys(reservingCapacity: 0)
            return rows
        }
    }
}
