import Foundation

/// The statistics experiments need, written here (no package may be added) and tested against
/// values computed independently with SciPy.
public enum Statistics {
    /// The 97.5th percentile of the standard normal distribution (two-sided 95%).
    public static let z975 = 1.959963984540054

    /// P(Z > z) for a standard normal Z.
    public static func normalUpperTail(_ z: Double) -> Double {
        0.5 * erfc(z / 2.0.squareRoot())
    }

    /// A two-proportion z-test with the pooled standard error.
    /// - Returns: z (positive when the treatment converts better) and the two-sided p-value;
    ///   nil when either group is empty or the pooled rate is 0 or 1 (no variance to test).
    public static func twoProportionZTest(
        controlConversions c1: Int, controlExposures n1: Int, treatmentConversions c2: Int, treatmentExposures n2: Int
    ) -> (z: Double, pValue: Double)? {
        guard n1 > 0, n2 > 0 else { return nil }
        let p1 = Double(c1) / Double(n1)
        let p2 = Double(c2) / Double(n2)
        let pooled = Double(c1 + c2) / Double(n1 + n2)
        let variance = pooled * (1 - pooled) * (1 / Double(n1) + 1 / Double(n2))
        guard variance > 0 else { return nil }
        let z = (p2 - p1) / variance.squareRoot()
        return (z, 2 * normalUpperTail(abs(z)))
    }

    /// The 95% Wald interval of the difference of two rates (treatment − control), unpooled.
    public static func differenceInterval(
        controlConversions c1: Int, controlExposures n1: Int, treatmentConversions c2: Int, treatmentExposures n2: Int
    ) -> (low: Double, high: Double)? {
        guard n1 > 0, n2 > 0 else { return nil }
        let p1 = Double(c1) / Double(n1)
        let p2 = Double(c2) / Double(n2)
        let se = (p1 * (1 - p1) / Double(n1) + p2 * (1 - p2) / Double(n2)).squareRoot()
        return (p2 - p1 - z975 * se, p2 - p1 + z975 * se)
    }

    /// The 95% Wilson score interval of one rate.
    public static func wilsonInterval(conversions c: Int, exposures n: Int) -> (low: Double, high: Double)? {
        guard n > 0 else { return nil }
        let p = Double(c) / Double(n)
        let nd = Double(n)
        let z2 = z975 * z975
        let denominator = 1 + z2 / nd
        let centre = (p + z2 / (2 * nd)) / denominator
        let half = z975 * (p * (1 - p) / nd + z2 / (4 * nd * nd)).squareRoot() / denominator
        // At 0 or n conversions the bound is exactly 0 or 1; the formula leaves rounding noise there.
        return (c == 0 ? 0 : max(0, centre - half), c == n ? 1 : min(1, centre + half))
    }

    /// Pearson's χ² goodness-of-fit test of observed counts against expected weights (the
    /// sample-ratio-mismatch check). Returns χ² and its p-value with k − 1 degrees of freedom.
    public static func chiSquareGoodnessOfFit(
        observed: [Int], weights: [Double]
    ) -> (chiSquare: Double, pValue: Double)? {
        let total = Double(observed.reduce(0, +))
        let weightSum = weights.reduce(0, +)
        guard observed.count == weights.count, observed.count >= 2, total > 0, weightSum > 0 else { return nil }
        var chiSquare = 0.0
        for (count, weight) in zip(observed, weights) {
            let expected = total * weight / weightSum
            guard expected > 0 else { return nil }
            chiSquare += (Double(count) - expected) * (Double(count) - expected) / expected
        }
        return (chiSquare, chiSquareUpperTail(chiSquare, degreesOfFreedom: observed.count - 1))
    }

    /// P(X > x) for X ~ χ²(k): the regularised upper incomplete gamma Q(k/2, x/2).
    public static func chiSquareUpperTail(_ x: Double, degreesOfFreedom k: Int) -> Double {
        guard x > 0 else { return 1 }
        return regularizedUpperGamma(Double(k) / 2, x / 2)
    }

    /// Q(a, x), by the series for x < a + 1 and Lentz's continued fraction otherwise.
    static func regularizedUpperGamma(_ a: Double, _ x: Double) -> Double {
        let logPrefix = a * log(x) - x - lgamma(a)
        if x < a + 1 {
            var term = 1 / a
            var sum = term
            var n = a
            for _ in 0..<1_000 {
                n += 1
                term *= x / n
                sum += term
                if abs(term) < abs(sum) * 1e-15 { break }
            }
            return max(0, 1 - sum * exp(logPrefix))
        }
        let tiny = 1e-300
        var b = x + 1 - a
        var c = 1 / tiny
        var d = 1 / b
        var h = d
        for i in 1...1_000 {
            let an = -Double(i) * (Double(i) - a)
            b += 2
            d = an * d + b
            if abs(d) < tiny { d = tiny }
            c = b + an / c
            if abs(c) < tiny { c = tiny }
            d = 1 / d
            let delta = d * c
            h *= delta
            if abs(delta - 1) < 1e-15 { break }
        }
        return min(1, exp(logPrefix) * h)
    }
}
