import Foundation

/// The result of walking the hash chain.
public struct ChainReport: Sendable, Equatable {
    /// Records checked, including a bad one.
    public var eventsChecked: UInt64
    /// The last position of the log.
    public var headPosition: UInt64
    /// The hash stored in the last record (32 zero bytes for an empty log).
    public var headHash: [UInt8]
    /// The first position whose record is missing, damaged or does not chain; nil when all is well.
    public var firstBadPosition: UInt64?
    /// Why that position is bad.
    public var problem: String?

    /// Whether every record checked out.
    public var isIntact: Bool { firstBadPosition == nil }
}

extension EventStore {
    /// Walks the whole log in position order and checks, for each record, that its key is the next
    /// dense position, that its stored position matches, that its previous hash is the hash of the
    /// record before (32 zero bytes for position 1), and that its hash is SHA-256 of that previous
    /// hash and its canonical bytes. Reports the first bad record.
    ///
    /// Every record stores its previous hash, so records are hashed independently: each page of
    /// `pageSize` records (read in a read transaction of its own, so memory is bounded and writers
    /// are not held back) is split across `workers` threads, each checking its share in order and
    /// stopping at its first bad record; the first bad position is the lowest any of them found,
    /// the same one a check in sequence finds. A record's link is checked against the hash the
    /// record before it stores, which is itself checked.
    ///
    /// On a writable store the outcome is recorded: a broken chain refuses appends from then on
    /// (``writesRefused``, kept across restarts), and an intact one lifts an earlier refusal.
    /// - Parameters:
    ///   - workers: threads that hash at once (default: one per core; 1 checks in sequence).
    ///   - progress: called after each page with the records checked so far.
    public func verifyChain(
        pageSize: Int = 8_192, workers: Int = ProcessInfo.processInfo.activeProcessorCount,
        progress: ((UInt64) -> Void)? = nil
    ) throws -> ChainReport {
        var expectedPosition: UInt64 = 1
        var previousHash = RecordCodec.zeroHash
        var checked: UInt64 = 0
        var failure: (position: UInt64, reason: String)?
        var finished = false
        while !finished && failure == nil {
            try environment.read { txn in
                var records = [UnsafeRawBufferPointer]()
                records.reserveCapacity(min(pageSize, 65_536))
                var missing: (position: UInt64, reason: String)?
                try txn.withCursor(log.events) { cursor in
                    var entry = try cursor.seek(atLeast: .bigEndian(expectedPosition))
                    while let current = entry, records.count < pageSize {
                        let position = current.key.count == 8 ? current.key.bigEndianUInt64() : 0
                        let expected = expectedPosition + UInt64(records.count)
                        guard position == expected else {
                            missing = (expected, "record missing (next key is \(position))")
                            return
                        }
                        records.append(current.value)
                        entry = try cursor.next()
                    }
                    if entry == nil { finished = true }
                }
                let bad = previousHash.withUnsafeBytes { first in
                    ChainPage(records: records, firstPosition: expectedPosition, previousHash: first)
                        .firstProblem(workers: max(1, workers))
                }
                if let bad {
                    failure = bad
                    checked += bad.position - expectedPosition + 1
                    return
                }
                if let missing {
                    failure = missing
                    checked += UInt64(records.count) + 1
                    return
                }
                checked += UInt64(records.count)
                expectedPosition += UInt64(records.count)
                if let last = records.last { previousHash = Array(RecordCodec.storedHashBytes(last)) }
            }
            progress?(checked)
        }
        let head = try head()
        guard let failure else {
            acceptWrites()
            return ChainReport(eventsChecked: checked, headPosition: head.position, headHash: head.hash)
        }
        refuseWrites("the hash chain is broken at position \(failure.position): \(failure.reason)")
        return ChainReport(
            eventsChecked: checked, headPosition: head.position, headHash: head.hash,
            firstBadPosition: failure.position, problem: failure.reason)
    }
}

/// One page of records read in one transaction (views of LMDB's map, valid while it lasts), with
/// the position of the first and the hash the record before it stores.
struct ChainPage: @unchecked Sendable {
    // `@unchecked`: the views point into the read transaction's snapshot of the map, which no
    // one writes while it is open; workers only read them, and each writes its own result slot.
    let records: [UnsafeRawBufferPointer]
    let firstPosition: UInt64
    let previousHash: UnsafeRawBufferPointer

    /// The first bad record of the page and why, or nil.
    func firstProblem(workers: Int) -> (position: UInt64, reason: String)? {
        // Below a few hundred records, handing work to threads costs more than it saves.
        let shares = records.count < 512 ? 1 : min(workers, records.count / 256)
        if shares <= 1 { return check(0..<records.count) }
        let results = Slots(count: shares)
        defer { results.free() }
        let page = self
        DispatchQueue.concurrentPerform(iterations: shares) { share in
            let range = (records.count * share / shares)..<(records.count * (share + 1) / shares)
            results.slots[share] = page.check(range)
        }
        return results.slots.compactMap { $0 }.min { $0.position < $1.position }
    }

    /// Checks `range` in order and returns its first bad record.
    func check(_ range: Range<Int>) -> (position: UInt64, reason: String)? {
        for index in range {
            let record = records[index]
            let expectedPrevious =
                index == 0 ? previousHash : linkOf(records[index - 1])
            let position = firstPosition + UInt64(index)
            guard let expectedPrevious else {
                // The record before is too short to hold a hash: it was reported bad first.
                return (position - 1, "record too short")
            }
            if let reason = RecordCodec.check(record, position: position, expectedPrevious: expectedPrevious) {
                return (position, reason)
            }
        }
        return nil
    }

    private func linkOf(_ record: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        record.count >= RecordCodec.hashSize ? RecordCodec.storedHashBytes(record) : nil
    }
}

/// One result slot per worker.
///
/// Invariant that makes `@unchecked Sendable` safe: worker `i` writes only `slots[i]`, and the
/// slots are read only after every worker has finished.
private struct Slots: @unchecked Sendable {
    let slots: UnsafeMutableBufferPointer<(position: UInt64, reason: String)?>

    init(count: Int) {
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil)
    }

    func free() {
        slots.deinitialize()
        slots.deallocate()
    }
}
