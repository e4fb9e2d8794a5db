import CampaignDomain
import EventStore
import Foundation

extension AuditIndex: FoldedRebuild {
    /// A fold that keeps about 24 bytes an event and makes each of the event's two keys only as it
    /// is written (two million keys would not fit the rebuild's memory budget as bytes).
    public func makeFold() -> any RebuildFold { AuditFold() }
    /// True: the fold keeps about 24 bytes an event.
    public var foldIsLarge: Bool { true }
}

/// The audit index's rebuild: per event, its position, its time and which actor and tenant prefix
/// it names, by number. The keys' order follows from those alone: a family's prefixes are
/// ranked once by their bytes, and within one prefix the keys follow position (or time, then
/// position), because what follows a prefix is big-endian numbers.
final class AuditFold: RebuildFold {
    /// Thrown when a log holds more events than the fold numbers (2^32 − 1).
    struct TooManyEvents: Error {}

    /// Everything the fold keeps, as one value. `fold` changes it through one access an event:
    /// stored properties of this class, each changed apart, were each checked for exclusive access at
    /// run time, 7% of the rebuild's CPU.
    private var recorded = Recorded()

    /// Per event its position, time and prefix numbers, and the prefixes they number.
    private struct Recorded {
        var positions: [UInt64] = []
        var times: [UInt64] = []
        var actors = Prefixes()
        var tenants = Prefixes()
        var actorOf: [UInt32] = []
        var tenantOf: [UInt32] = []
        var scratch: [UInt8] = []
        /// Each family's last prefix, by the strings it was made from: consecutive events of one
        /// command share their tenant and actor (the log reader hands them the same strings, which
        /// compare at once).
        var lastActor: Last?
        var lastTenant: Last?

        /// Records one event: no key is made here.
        mutating func record(_ e: RecordedEvent) throws {
            guard positions.count < Int(UInt32.max) else { throw TooManyEvents() }
            positions.append(e.position)
            times.append(Key.milliseconds(e.occurredAt))
            actorOf.append(Self.number(&actors, .actor, e.tenant, e.actor, last: &lastActor, scratch: &scratch))
            tenantOf.append(Self.number(&tenants, .time, e.tenant, nil, last: &lastTenant, scratch: &scratch))
        }

        /// The number of a prefix: the last one's when made from the same strings.
        private static func number(
            _ prefixes: inout Prefixes, _ family: AuditIndex.Family, _ tenant: String, _ name: String?,
            last: inout Last?, scratch: inout [UInt8]
        ) -> UInt32 {
            if let last, last.tenant == tenant, last.name == name { return last.number }
            scratch.removeAll(keepingCapacity: true)
            AuditIndex.appendPrefix(family, tenant: tenant, name: name, to: &scratch)
            let number = prefixes.number(of: scratch)
            last = Last(tenant: tenant, name: name, number: number)
            return number
        }
    }

    /// A family's last prefix and the strings it was made from.
    private struct Last {
        var tenant: String
        var name: String?
        var number: UInt32
    }

    /// Records one event: no key is made here.
    func fold(_ event: ProjectedEvent) throws {
        try recorded.record(event.envelope)
    }

    /// The actor keys, then the time keys, each family in key order.
    func rows(_: PersonalDataReader) throws -> SortedRows {
        let all = recorded
        recorded = Recorded()
        let keys = Keys(
            positions: all.positions, times: all.times,
            families: [
                Self.family(.actor, all.actors, all.actorOf, all),
                Self.family(.time, all.tenants, all.tenantOf, all),
            ])
        return SortedRows(count: 2 * keys.positions.count) { rows, bytes, ends in
            keys.keys(rows, into: &bytes, ends: &ends)
        }
    }

    /// One family's keys in order: every event's index, sorted by its prefix's rank, then by
    /// position (the order events arrived in) or, for time keys, by time and then position.
    private static func family(
        _ kind: AuditIndex.Family, _ prefixes: Prefixes, _ prefixOf: [UInt32], _ all: Recorded
    ) -> Keys.Family {
        let (rank, prefixFree) = prefixes.ranks()
        var starts = [Int](repeating: 0, count: rank.count + 1)
        for number in prefixOf { starts[Int(rank[Int(number)]) + 1] += 1 }
        for index in rank.indices { starts[index + 1] += starts[index] }
        var order = [UInt32](repeating: 0, count: prefixOf.count)
        var next = starts
        for (index, number) in prefixOf.enumerated() {
            let at = Int(rank[Int(number)])
            order[next[at]] = UInt32(index)
            next[at] += 1
        }
        let times = all.times
        if kind == .time {
            for group in rank.indices where starts[group + 1] - starts[group] > 1 {
                let range = starts[group]..<starts[group + 1]
                let inOrder = zip(order[range], order[range].dropFirst()).allSatisfy {
                    times[Int($0)] <= times[Int($1)]
                }
                if !inOrder { order[range].sort { (times[Int($0)], $0) < (times[Int($1)], $1) } }
            }
        }
        var family = Keys.Family(kind: kind, prefixes: prefixes.frozen(), prefixOf: prefixOf, order: order)
        if !prefixFree {
            // A part holding a 0x00 byte makes one prefix begin another (`t‖a‖b‖` and `t‖a‖`): then
            // what follows a prefix takes part in the order, so whole keys are compared.
            let positions = all.positions
            let made = family
            func key(_ index: UInt32) -> [UInt8] {
                var key = [UInt8]()
                made.key(event: Int(index), positions: positions, times: times, into: &key)
                return key
            }
            family.order.sort { ByteOrder.precedes(key($0), key($1)) }
        }
        return family
    }

    /// Distinct key prefixes of one family, numbered in the order they first appear: packed back to
    /// back in one buffer and found through an open-addressing table of numbers, so a prefix costs
    /// its bytes and about 16 more (a host may name an actor a user, hundreds of thousands of them).
    struct Prefixes: Sendable {
        private var bytes: [UInt8] = []
        /// Where prefix `n` ends in `bytes`.
        private var ends: [Int] = []
        /// Prefix numbers plus one, by hash; 0 is an empty slot. Emptied by ``frozen()``.
        private var slots = [UInt32](repeating: 0, count: 64)
        /// Each prefix's hash, by number: growing the table re-reads no prefix, and a probe compares
        /// bytes only where the hashes agree. Emptied by ``frozen()``.
        private var hashes: [UInt32] = []

        /// How many there are.
        var count: Int { ends.count }

        /// Where prefix `number` lies in the buffer.
        private func range(_ number: Int) -> Range<Int> { (number == 0 ? 0 : ends[number - 1])..<ends[number] }

        private static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
            var hasher = Hasher()
            hasher.combine(bytes: bytes)
            return UInt32(truncatingIfNeeded: hasher.finalize())
        }

        /// The number of `prefix`, given a new one if it is new.
        mutating func number(of prefix: [UInt8]) -> UInt32 {
            if 2 * ends.count >= slots.count { grow() }
            let mask = slots.count - 1
            let hash = prefix.withUnsafeBytes(Self.hash)
            var slot = Int(hash) & mask
            while slots[slot] != 0 {
                let number = Int(slots[slot]) - 1
                if hashes[number] == hash, same(number, prefix) { return UInt32(number) }
                slot = (slot + 1) & mask
            }
            bytes.append(contentsOf: prefix)
            ends.append(bytes.count)
            hashes.append(hash)
            slots[slot] = UInt32(ends.count)
            return UInt32(ends.count - 1)
        }

        /// Whether prefix `number` is `prefix`.
        private func same(_ number: Int, _ prefix: [UInt8]) -> Bool {
            let range = range(number)
            guard range.count == prefix.count else { return false }
            guard !prefix.isEmpty else { return true }
            return bytes.withUnsafeBytes { stored in
                prefix.withUnsafeBytes {
                    memcmp(stored.baseAddress! + range.lowerBound, $0.baseAddress!, range.count) == 0
                }
            }
        }

        private mutating func grow() {
            slots = [UInt32](repeating: 0, count: 2 * slots.count)
            let mask = slots.count - 1
            for (number, hash) in hashes.enumerated() {
                var slot = Int(hash) & mask
                while slots[slot] != 0 { slot = (slot + 1) & mask }
                slots[slot] = UInt32(number + 1)
            }
        }

        /// The prefixes without the table that finds them (all a fold's rows need).
        func frozen() -> Prefixes {
            var copy = self
            copy.slots = []
            copy.hashes = []
            return copy
        }

        /// Appends prefix `number` to `key` (through a buffer pointer: a slice would retain the
        /// buffer for each of millions of keys).
        func append(_ number: Int, to key: inout [UInt8]) {
            let range = range(number)
            bytes.withUnsafeBufferPointer { key.append(contentsOf: UnsafeBufferPointer(rebasing: $0[range])) }
        }

        /// Calls `body` with the packed prefixes and where each ends, for a run of keys made
        /// without reaching the arrays once a key.
        func withStorage<R>(_ body: (_ bytes: UnsafeBufferPointer<UInt8>, _ ends: UnsafeBufferPointer<Int>) -> R) -> R {
            bytes.withUnsafeBufferPointer { bytes in ends.withUnsafeBufferPointer { body(bytes, $0) } }
        }

        /// Each number's rank in byte order, and whether no prefix begins another. In a sorted
        /// list a prefix that begins others is followed by them, so neighbours are enough to check.
        func ranks() -> (rank: [UInt32], prefixFree: Bool) {
            let sorted = bytes.withUnsafeBytes { buffer in
                ends.indices.sorted {
                    ByteOrder.precedes(
                        UnsafeRawBufferPointer(rebasing: buffer[range($0)]),
                        UnsafeRawBufferPointer(rebasing: buffer[range($1)]))
                }
            }
            var rank = [UInt32](repeating: 0, count: ends.count)
            for (at, number) in sorted.enumerated() { rank[number] = UInt32(at) }
            let prefixFree = zip(sorted, sorted.dropFirst()).allSatisfy {
                !bytes[range($1)].starts(with: bytes[range($0)])
            }
            return (rank, prefixFree)
        }
    }

    /// What makes every key of the rebuild from its row index.
    struct Keys: Sendable {
        /// One family's prefixes, which prefix each event names, and the events in key order.
        struct Family: Sendable {
            var kind: AuditIndex.Family
            var prefixes: Prefixes
            var prefixOf: [UInt32]
            var order: [UInt32]

            /// Appends the key of the event at `event` (its index in the fold).
            func key(event: Int, positions: [UInt64], times: [UInt64], into key: inout [UInt8]) {
                prefixes.append(Int(prefixOf[event]), to: &key)
                AuditIndex.appendSuffix(kind, time: times[event], position: positions[event], to: &key)
            }

            /// Appends the keys at `slots` of ``order`` back to back, each one's end after it.
            func appendKeys(
                _ slots: Range<Int>, positions: UnsafeBufferPointer<UInt64>, times: UnsafeBufferPointer<UInt64>,
                into bytes: inout [UInt8], ends: inout [Int]
            ) {
                prefixes.withStorage { prefixes, prefixEnds in
                    prefixOf.withUnsafeBufferPointer { prefixOf in
                        order.withUnsafeBufferPointer { order in
                            for slot in slots {
                                let event = Int(order[slot])
                                let number = Int(prefixOf[event])
                                let from = number == 0 ? 0 : prefixEnds[number - 1]
                                bytes.append(
                                    contentsOf: UnsafeBufferPointer(rebasing: prefixes[from..<prefixEnds[number]]))
                                AuditIndex.appendSuffix(
                                    kind, time: times[event], position: positions[event], to: &bytes)
                                ends.append(bytes.count)
                            }
                        }
                    }
                }
            }
        }

        let positions: [UInt64]
        let times: [UInt64]
        let families: [Family]

        /// Appends the keys of the rows in `rows` back to back, each one's end after it: the
        /// families follow each other, each `positions.count` rows. Each array is reached once a
        /// run, through a buffer pointer (reached once a key, their retains and releases were a
        /// third of making the keys).
        func keys(_ rows: Range<Int>, into bytes: inout [UInt8], ends: inout [Int]) {
            let events = positions.count
            positions.withUnsafeBufferPointer { positions in
                times.withUnsafeBufferPointer { times in
                    var row = rows.lowerBound
                    while row < rows.upperBound {
                        let family = row / events
                        let end = min(rows.upperBound, (family + 1) * events)
                        let first = family * events
                        families[family].appendKeys(
                            (row - first)..<(end - first), positions: positions, times: times, into: &bytes,
                            ends: &ends)
                        row = end
                    }
                }
            }
        }
    }
}
