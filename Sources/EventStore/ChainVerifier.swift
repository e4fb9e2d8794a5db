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
    /// hash and its canonical bytes. Stops at the first bad record.
    ///
    /// Pages of `pageSize` records are read in separate read transactions, so memory is bounded
    /// and writers are not held back.
    ///
    /// On a writable store the outcome is recorded: a broken chain refuses appends from then on
    /// (``writesRefused``, kept across restarts), and an intact one lifts an earlier refusal.
    /// - Parameter progress: called after each page with the records checked so far.
    public func verifyChain(pageSize: Int = 8_192, progress: ((UInt64) -> Void)? = nil) throws -> ChainReport {
        var expectedPosition: UInt64 = 1
        var previousHash = RecordCodec.zeroHash
        var checked: UInt64 = 0
        var failure: EventStoreError?
        var finished = false
        while !finished && failure == nil {
            try environment.read { txn in
                try txn.withCursor(log.events) { cursor in
                    var entry = try cursor.seek(atLeast: .bigEndian(expectedPosition))
                    var inPage = 0
                    while let current = entry, inPage < pageSize {
                        let position = current.key.count == 8 ? current.key.bigEndianUInt64() : 0
                        checked += 1
                        guard position == expectedPosition else {
                            failure = .corruptRecord(
                                position: expectedPosition, reason: "record missing (next key is \(position))")
                            return
                        }
                        switch RecordCodec.verify(current.value, position: position, expectedPrevious: previousHash) {
                        case let .success(hash): previousHash = hash
                        case let .failure(error):
                            failure = error
                            return
                        }
                        expectedPosition += 1
                        inPage += 1
                        entry = try cursor.next()
                    }
                    if entry == nil { finished = true }
                }
            }
            progress?(checked)
        }
        let head = try head()
        guard let failure, case let .corruptRecord(position, reason) = failure else {
            acceptWrites()
            return ChainReport(eventsChecked: checked, headPosition: head.position, headHash: head.hash)
        }
        refuseWrites("the hash chain is broken at position \(position): \(reason)")
        return ChainReport(
            eventsChecked: checked, headPosition: head.position, headHash: head.hash,
            firstBadPosition: position, problem: reason)
    }
}
