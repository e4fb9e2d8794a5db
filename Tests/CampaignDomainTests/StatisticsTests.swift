import CampaignDomain
import Foundation
import Testing

/// Reference values computed independently with SciPy 1.17 (`scipy.stats.norm`, `scipy.stats.chi2`).
@Suite struct StatisticsTests {
    func close(_ a: Double, _ b: Double, _ tolerance: Double = 1e-9) -> Bool {
        abs(a - b) <= tolerance * max(1, abs(b))
    }

    @Test(arguments: [
        (200, 1000, 250, 1000, 2.677397763008329, 0.007419649261025687),
        (30, 150, 45, 150, 2.0, 0.04550026389635843),
        (1000, 10000, 1100, 10000, 2.3066347738170103, 0.021075189273797826),
    ])
    func twoProportionZTestMatchesSciPy(_ c1: Int, _ n1: Int, _ c2: Int, _ n2: Int, _ z: Double, _ p: Double) throws {
        let result = try #require(
            Statistics.twoProportionZTest(
                controlConversions: c1, controlExposures: n1, treatmentConversions: c2, treatmentExposures: n2))
        #expect(close(result.z, z) && close(result.pValue, p), "\(result)")
    }

    @Test func aZTestWithoutVarianceHasNoAnswer() {
        #expect(
            Statistics.twoProportionZTest(
                controlConversions: 0, controlExposures: 100, treatmentConversions: 0, treatmentExposures: 100) == nil)
        #expect(
            Statistics.twoProportionZTest(
                controlConversions: 0, controlExposures: 0, treatmentConversions: 1, treatmentExposures: 10) == nil)
    }

    @Test(arguments: [
        ([5000, 5000], [0.5, 0.5], 0.0, 1.0),
        ([5100, 4900], [0.5, 0.5], 4.0, 0.04550026389635857),
        ([5200, 4800], [0.5, 0.5], 16.0, 6.334248366623988e-05),
        ([3000, 3100, 3900], [0.3, 0.3, 0.4], 5.833333333333334, 0.05411376622282158),
        ([821, 1179], [0.5, 0.5], 64.082, 1.1934697143986005e-15),
    ])
    func sampleRatioMismatchMatchesSciPy(
        _ observed: [Int], _ weights: [Double], _ chiSquare: Double, _ p: Double
    ) throws {
        let result = try #require(Statistics.chiSquareGoodnessOfFit(observed: observed, weights: weights))
        #expect(close(result.chiSquare, chiSquare))
        #expect(close(result.pValue, p, 1e-7), "\(result.pValue) vs \(p)")
    }

    @Test(arguments: [
        (3.841458820694124, 1, 0.05), (5.991464547107979, 2, 0.05), (10.0, 3, 0.01856613546304325),
        (0.5, 4, 0.9735009788392561), (40.0, 5, 1.493367900050393e-07),
    ])
    func chiSquareTailMatchesSciPy(_ x: Double, _ k: Int, _ p: Double) {
        #expect(close(Statistics.chiSquareUpperTail(x, degreesOfFreedom: k), p, 1e-7))
    }

    @Test func intervalsMatchSciPy() throws {
        let difference = try #require(
            Statistics.differenceInterval(
                controlConversions: 200, controlExposures: 1000, treatmentConversions: 250, treatmentExposures: 1000))
        #expect(close(difference.low, 0.01346362168753984) && close(difference.high, 0.08653637831246014))
        let wilson = try #require(Statistics.wilsonInterval(conversions: 200, exposures: 1000))
        #expect(close(wilson.low, 0.17637709044319852) && close(wilson.high, 0.22591896464813463))
        let edge = try #require(Statistics.wilsonInterval(conversions: 0, exposures: 150))
        #expect(edge.low == 0 && close(edge.high, 0.0249702443680766))
    }
}
