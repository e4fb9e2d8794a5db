import EventStore
import Testing

@Suite struct DurationHistogramTests {
    @Test func aDurationCountsInTheFirstBucketWhoseBoundItDoesNotExceed() {
        var histogram = DurationHistogram(bounds: [0.001, 0.01, 0.1])
        histogram.record(seconds: 0.001)  // on a bound: that bucket
        histogram.record(.microseconds(1_500))
        histogram.record(.milliseconds(10))
        histogram.record(seconds: 0.5)  // past every bound
        histogram.record(seconds: -1)  // a clock step back counts as zero
        #expect(histogram.counts == [2, 2, 0, 1])
        #expect(histogram.cumulativeCounts == [2, 4, 4, 5])
        #expect(histogram.count == 5)
        #expect(abs(histogram.sum - 0.5125) < 1e-12)
    }

    @Test func aQuantileIsBoundedByItsBucket() {
        var histogram = DurationHistogram(bounds: [0.001, 0.01, 0.1])
        #expect(histogram.quantileBound(0.5) == nil)
        for _ in 0..<90 { histogram.record(seconds: 0.0005) }
        for _ in 0..<9 { histogram.record(seconds: 0.05) }
        histogram.record(seconds: 3)
        #expect(histogram.quantileBound(0.5) == 0.001)
        #expect(histogram.quantileBound(0.9) == 0.001)
        #expect(histogram.quantileBound(0.95) == 0.1)
        #expect(histogram.quantileBound(1) == .infinity)
    }

    @Test func boundsAreSortedAndCleaned() {
        let histogram = DurationHistogram(bounds: [0.1, 0.001, 0.1, -1, .infinity, .nan])
        #expect(histogram.bounds == [0.001, 0.1])
        #expect(histogram.counts == [0, 0, 0])
    }
}
