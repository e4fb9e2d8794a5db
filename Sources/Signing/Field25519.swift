/// An element of the field of integers modulo p = 2²⁵⁵ − 19, the field Ed25519's curve is over.
///
/// Five limbs of 51 bits (little-endian, value = Σ limbᵢ · 2⁵¹ⁱ). Every operation ends with a carry
/// pass, so limbs stay below 2⁵² and products fit in 128 bits; ``bytes`` gives the one canonical
/// encoding. Arithmetic runs in time independent of the values (no branches on them).
struct FieldElement: Equatable {
    var l0: UInt64
    var l1: UInt64
    var l2: UInt64
    var l3: UInt64
    var l4: UInt64

    private static let mask: UInt64 = (1 << 51) - 1

    static let zero = FieldElement(l0: 0, l1: 0, l2: 0, l3: 0, l4: 0)
    static let one = FieldElement(l0: 1, l1: 0, l2: 0, l3: 0, l4: 0)

    init(l0: UInt64, l1: UInt64, l2: UInt64, l3: UInt64, l4: UInt64) {
        (self.l0, self.l1, self.l2, self.l3, self.l4) = (l0, l1, l2, l3, l4)
    }

    /// A small constant.
    init(_ value: UInt64) { self.init(l0: value, l1: 0, l2: 0, l3: 0, l4: 0) }

    /// Reads 32 little-endian bytes, ignoring the top bit (bit 255), as RFC 8032 decoding does.
    init(bytes: [UInt8]) {
        precondition(bytes.count == 32, "a field element is 32 bytes")
        var words = [UInt64](repeating: 0, count: 4)
        for index in 0..<32 { words[index / 8] |= UInt64(bytes[index]) << UInt64(8 * (index % 8)) }
        let mask = FieldElement.mask
        self.init(
            l0: words[0] & mask, l1: (words[0] >> 51 | words[1] << 13) & mask,
            l2: (words[1] >> 38 | words[2] << 26) & mask, l3: (words[2] >> 25 | words[3] << 39) & mask,
            l4: (words[3] >> 12) & mask)
    }

    /// One carry pass: every limb below 2⁵¹ but the first, which takes 19 × the top carry.
    private mutating func carry() {
        let mask = FieldElement.mask
        l1 &+= l0 >> 51
        l0 &= mask
        l2 &+= l1 >> 51
        l1 &= mask
        l3 &+= l2 >> 51
        l2 &= mask
        l4 &+= l3 >> 51
        l3 &= mask
        l0 &+= (l4 >> 51) &* 19
        l4 &= mask
    }

    /// The canonical 32 little-endian bytes (the value reduced below p).
    var bytes: [UInt8] {
        var value = self
        value.carry()
        value.carry()
        // q = 1 exactly when value ≥ p: then adding 19 carries out of bit 255.
        var q = (value.l0 &+ 19) >> 51
        q = (value.l1 &+ q) >> 51
        q = (value.l2 &+ q) >> 51
        q = (value.l3 &+ q) >> 51
        q = (value.l4 &+ q) >> 51
        value.l0 &+= 19 &* q
        let mask = FieldElement.mask
        value.l1 &+= value.l0 >> 51
        value.l0 &= mask
        value.l2 &+= value.l1 >> 51
        value.l1 &= mask
        value.l3 &+= value.l2 >> 51
        value.l2 &= mask
        value.l4 &+= value.l3 >> 51
        value.l3 &= mask
        value.l4 &= mask
        let words = [
            value.l0 | value.l1 << 51, value.l1 >> 13 | value.l2 << 38, value.l2 >> 26 | value.l3 << 25,
            value.l3 >> 39 | value.l4 << 12,
        ]
        var out = [UInt8]()
        out.reserveCapacity(32)
        for word in words {
            for shift in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
        }
        return out
    }

    /// Whether the canonical value is odd: RFC 8032's "negative" x.
    var isNegative: Bool { bytes[0] & 1 == 1 }

    var isZero: Bool { bytes == FieldElement.zero.bytes }

    static func == (lhs: FieldElement, rhs: FieldElement) -> Bool { lhs.bytes == rhs.bytes }

    static func + (lhs: FieldElement, rhs: FieldElement) -> FieldElement {
        var sum = FieldElement(
            l0: lhs.l0 &+ rhs.l0, l1: lhs.l1 &+ rhs.l1, l2: lhs.l2 &+ rhs.l2, l3: lhs.l3 &+ rhs.l3,
            l4: lhs.l4 &+ rhs.l4)
        sum.carry()
        return sum
    }

    /// lhs + 2p − rhs: limbs never go below zero, since carried limbs are below 2p's.
    static func - (lhs: FieldElement, rhs: FieldElement) -> FieldElement {
        let low: UInt64 = 0xF_FFFF_FFFF_FFDA
        let high: UInt64 = 0xF_FFFF_FFFF_FFFE
        var difference = FieldElement(
            l0: lhs.l0 &+ low &- rhs.l0, l1: lhs.l1 &+ high &- rhs.l1, l2: lhs.l2 &+ high &- rhs.l2,
            l3: lhs.l3 &+ high &- rhs.l3, l4: lhs.l4 &+ high &- rhs.l4)
        difference.carry()
        return difference
    }

    static prefix func - (value: FieldElement) -> FieldElement { .zero - value }

    static func * (lhs: FieldElement, rhs: FieldElement) -> FieldElement {
        let (a0, a1, a2, a3, a4) = (UInt128(lhs.l0), UInt128(lhs.l1), UInt128(lhs.l2), UInt128(lhs.l3), UInt128(lhs.l4))
        let (b0, b1, b2, b3, b4) = (UInt128(rhs.l0), UInt128(rhs.l1), UInt128(rhs.l2), UInt128(rhs.l3), UInt128(rhs.l4))
        // 2²⁵⁵ ≡ 19, so a limb product past the top wraps round multiplied by 19.
        let (c1, c2, c3, c4) = (b1 * 19, b2 * 19, b3 * 19, b4 * 19)
        var r0 = a0 * b0 + a1 * c4 + a2 * c3 + a3 * c2 + a4 * c1
        var r1 = a0 * b1 + a1 * b0 + a2 * c4 + a3 * c3 + a4 * c2
        var r2 = a0 * b2 + a1 * b1 + a2 * b0 + a3 * c4 + a4 * c3
        var r3 = a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0 + a4 * c4
        var r4 = a0 * b4 + a1 * b3 + a2 * b2 + a3 * b1 + a4 * b0
        let mask = UInt128(FieldElement.mask)
        r1 += r0 >> 51
        r0 &= mask
        r2 += r1 >> 51
        r1 &= mask
        r3 += r2 >> 51
        r2 &= mask
        r4 += r3 >> 51
        r3 &= mask
        r0 += (r4 >> 51) * 19
        r4 &= mask
        r1 += r0 >> 51
        r0 &= mask
        return FieldElement(
            l0: UInt64(r0), l1: UInt64(r1), l2: UInt64(r2), l3: UInt64(r3), l4: UInt64(r4))
    }

    var squared: FieldElement { self * self }

    /// self raised to a power given as 32 little-endian bytes (square and multiply, every bit).
    func power(_ exponent: [UInt8]) -> FieldElement {
        var result = FieldElement.one
        for bit in stride(from: 255, through: 0, by: -1) {
            result = result.squared
            if (exponent[bit / 8] >> UInt8(bit % 8)) & 1 == 1 { result = result * self }
        }
        return result
    }

    /// p − 2 as an exponent: x^(p−2) = x⁻¹ (Fermat).
    private static let pMinus2: [UInt8] = [0xeb] + [UInt8](repeating: 0xff, count: 30) + [0x7f]
    /// (p − 5) / 8, the exponent of RFC 8032's square root.
    private static let pMinus5Over8: [UInt8] = [0xfd] + [UInt8](repeating: 0xff, count: 30) + [0x0f]
    /// (p − 1) / 4: 2 to this power is a square root of −1.
    private static let pMinus1Over4: [UInt8] = [0xfb] + [UInt8](repeating: 0xff, count: 30) + [0x1f]

    var inverse: FieldElement { power(FieldElement.pMinus2) }

    /// x^((p−5)/8), the core of the square root of a quotient (RFC 8032 §5.1.3).
    var powerPMinus5Over8: FieldElement { power(FieldElement.pMinus5Over8) }

    /// A square root of −1 modulo p.
    static let squareRootOfMinusOne = FieldElement(2).power(pMinus1Over4)

    /// Swaps `a` and `b` when `swap` is 1, leaves them when 0, without branching on it.
    static func conditionalSwap(_ a: inout FieldElement, _ b: inout FieldElement, _ swap: UInt64) {
        let mask = 0 &- swap
        func swapLimbs(_ x: inout UInt64, _ y: inout UInt64) {
            let t = mask & (x ^ y)
            x ^= t
            y ^= t
        }
        swapLimbs(&a.l0, &b.l0)
        swapLimbs(&a.l1, &b.l1)
        swapLimbs(&a.l2, &b.l2)
        swapLimbs(&a.l3, &b.l3)
        swapLimbs(&a.l4, &b.l4)
    }
}
