/// Durations counted in fixed buckets, with their sum: how long the writer's transactions took, or
/// an engine's requests, in the shape a Prometheus histogram exposes (`_bucket`, `_sum`, `_count`).
///
/// A value, not a lock: the writer keeps its histograms under the lock it already takes after each
/// transaction, and a reader gets a copy.
public struct DurationHistogram: Sendable, Equatable {
    /// The default buckets' upper bounds in seconds: 100 µs (a command answered from memory) to 10 s
    /// (a flush on a disk that has stalled).
    public static let standardBounds: [Double] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10,
    ]

    /// The buckets' upper bounds in seconds, ascending.
    public let bounds: [Double]
    /// Per bucket, the durations counted in it: `counts[i]` those longer than `bounds[i - 1]` and
    /// at most `bounds[i]`; the last entry (one more than `bounds`) those longer than every bound.
    public private(set) var counts: [UInt64]
    /// The durations' sum in seconds.
    public private(set) var sum: Double = 0

    /// An empty histogram with the given bucket bounds (seconds; sorted, duplicates dropped).
    public init(bounds: [Double] = DurationHistogram.standardBounds) {
        self.bounds = Array(Set(bounds.filter { $0.isFinite && $0 > 0 })).sorted()
        counts = Array(repeating: 0, count: self.bounds.count + 1)
    }

    /// How many durations it has counted.
    public var count: UInt64 { counts.reduce(0, +) }

    /// Per bound, the durations at most that long, then all of them: Prometheus's `le` buckets,
    /// the last being `+Inf`.
    public var cumulativeCounts: [UInt64] {
        var total: UInt64 = 0
        return counts.map {
            total += $0
            return total
        }
    }

    /// Counts one duration.
    public mutating func record(_ duration: Duration) { record(seconds: Self.seconds(duration)) }

    /// `duration` in seconds, as the histograms count it.
    public static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// Counts one duration given in seconds (a negative one counts as zero).
    public mutating func record(seconds: Double) {
        let seconds = max(0, seconds)
        // Few buckets: a scan is as quick as a binary search and plainer.
        let bucket = bounds.firstIndex { seconds <= $0 } ?? bounds.count
        counts[bucket] += 1
        sum += seconds
    }

    /// The upper bound of the bucket that holds the `q`-quantile (`q` in 0...1), an upper estimate
    /// of it: nil when nothing was counted, infinity when it lies past every bound.
    public func quantileBound(_ q: Double) -> Double? {
        let total = count
        guard total > 0 else { return nil }
        let rank = max(1, UInt64((min(max(q, 0), 1) * Double(total)).rounded(.up)))
        guard let bucket = cumulativeCounts.firstIndex(where: { $0 >= rank }) else { return .infinity }
        return bucket < bounds.count ? bounds[bucket] : .infinity
    }
}
