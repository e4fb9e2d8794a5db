import Hashing

/// Why a key could not be read.
public enum SigningError: Error, Equatable, CustomStringConvertible {
    /// A seed, public key or signature of the wrong length.
    case wrongLength(what: String, expected: Int, got: Int)
    /// Bytes that are not a point of the curve.
    case notAPoint
    /// A key or note text that does not follow its format.
    case malformed(String)

    /// What went wrong, in a sentence.
    public var description: String {
        switch self {
        case let .wrongLength(what, expected, got): "\(what) must be \(expected) bytes, not \(got)"
        case .notAPoint: "the public key is not a point of the Ed25519 curve"
        case let .malformed(reason): reason
        }
    }
}

/// An Ed25519 private key (RFC 8032 §5.1.5): a 32-byte seed, from which the signing scalar, the
/// nonce prefix and the public key are derived once.
///
/// The project's own implementation (no package may be added), tested against RFC 8032's vectors.
/// The scalar multiplication is a Montgomery-style ladder with branch-free swaps, so its sequence of
/// operations does not depend on the key.
public struct Ed25519PrivateKey: Sendable {
    /// The 32-byte seed: the secret itself. Keep it out of the store and out of logs.
    public let seed: [UInt8]
    /// The matching public key.
    public let publicKey: Ed25519PublicKey
    private let scalar: [UInt8]
    private let prefix: [UInt8]

    /// Derives the key from a 32-byte seed.
    /// - Throws: ``SigningError/wrongLength(what:expected:got:)`` for a seed that is not 32 bytes.
    public init(seed: [UInt8]) throws {
        guard seed.count == 32 else { throw SigningError.wrongLength(what: "a seed", expected: 32, got: seed.count) }
        let digest = SHA512.hash(seed)
        var scalar = Array(digest[0..<32])
        scalar[0] &= 248
        scalar[31] &= 127
        scalar[31] |= 64
        self.seed = seed
        self.scalar = scalar
        prefix = Array(digest[32..<64])
        publicKey = Ed25519PublicKey(trusted: EdwardsPoint.base.multiplied(by: scalar).encoded)
    }

    /// A fresh key from the system's random number generator.
    public static func generate() -> Ed25519PrivateKey {
        var random = SystemRandomNumberGenerator()
        // A 32-byte seed cannot fail.
        return try! Ed25519PrivateKey(seed: (0..<32).map { _ in UInt8.random(in: 0...255, using: &random) })
    }

    /// The 64-byte signature R ‖ S of `message` (RFC 8032 §5.1.6; deterministic).
    public func signature(for message: [UInt8]) -> [UInt8] {
        let r = Scalar.reduced(SHA512.hash(prefix + message))
        let encodedR = EdwardsPoint.base.multiplied(by: r).encoded
        let k = Scalar.reduced(SHA512.hash(encodedR + publicKey.bytes + message))
        return encodedR + Scalar.multiplyAdd(k, scalar, r)
    }
}

/// An Ed25519 public key: 32 bytes, the encoding of a point of the curve.
public struct Ed25519PublicKey: Sendable, Equatable {
    /// The 32-byte encoding of the point (RFC 8032 §5.1.2): y, little-endian, with the sign of x in the top bit.
    public let bytes: [UInt8]
    private let point: EdwardsPoint

    /// Reads an encoded public key.
    /// - Throws: ``SigningError/wrongLength(what:expected:got:)`` or ``SigningError/notAPoint``.
    public init(bytes: [UInt8]) throws {
        guard bytes.count == 32 else {
            throw SigningError.wrongLength(what: "a public key", expected: 32, got: bytes.count)
        }
        guard let point = EdwardsPoint(encoded: bytes) else { throw SigningError.notAPoint }
        self.bytes = bytes
        self.point = point
    }

    fileprivate init(trusted bytes: [UInt8]) {
        self.bytes = bytes
        point = EdwardsPoint(encoded: bytes)!
    }

    /// Whether `signature` is this key's signature of `message` (RFC 8032 §5.1.7): S must be below the
    /// group order L, and [S]B − [k]A must encode to R, with k = SHA-512(R ‖ A ‖ message) mod L.
    public func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        guard signature.count == 64 else { return false }
        let encodedR = Array(signature[0..<32])
        let s = Array(signature[32..<64])
        guard Scalar.isCanonical(s) else { return false }
        let k = Scalar.reduced(SHA512.hash(encodedR + bytes + message))
        let check = EdwardsPoint.base.multiplied(by: s) + point.negated.multiplied(by: k)
        return check.encoded == encodedR
    }

    /// Public keys are equal when their encodings are.
    public static func == (lhs: Ed25519PublicKey, rhs: Ed25519PublicKey) -> Bool { lhs.bytes == rhs.bytes }
}

/// A point of edwards25519, −x² + y² = 1 + d·x²·y², in extended coordinates (X : Y : Z : T) with
/// x = X/Z, y = Y/Z and x·y = T/Z (RFC 8032 §5.1.4).
struct EdwardsPoint {
    var x: FieldElement
    var y: FieldElement
    var z: FieldElement
    var t: FieldElement

    /// d = −121665 / 121666.
    static let d = -FieldElement(121_665) * FieldElement(121_666).inverse
    static let twiceD = d + d

    static let identity = EdwardsPoint(x: .zero, y: .one, z: .one, t: .zero)

    /// The base point B: y = 4/5 and x even.
    static let base: EdwardsPoint = {
        let y = FieldElement(4) * FieldElement(5).inverse
        return EdwardsPoint(encoded: y.bytes)!
    }()

    init(x: FieldElement, y: FieldElement, z: FieldElement, t: FieldElement) {
        (self.x, self.y, self.z, self.t) = (x, y, z, t)
    }

    /// Decodes 32 bytes (RFC 8032 §5.1.3); nil when they are not a point or not canonical.
    init?(encoded: [UInt8]) {
        guard encoded.count == 32 else { return nil }
        let sign = encoded[31] >> 7
        let y = FieldElement(bytes: encoded)
        var unsigned = encoded
        unsigned[31] &= 0x7f
        guard y.bytes == unsigned else { return nil }  // y ≥ p
        let ySquared = y.squared
        let u = ySquared - .one
        let v = EdwardsPoint.d * ySquared + .one
        let v3 = v.squared * v
        var x = u * v3 * (u * v3 * v3 * v).powerPMinus5Over8
        let vxx = v * x.squared
        if vxx == u {
            // x is a root.
        } else if vxx == -u {
            x = x * FieldElement.squareRootOfMinusOne
        } else {
            return nil
        }
        if x.isZero && sign == 1 { return nil }
        if (x.isNegative ? 1 : 0) != sign { x = -x }
        self.init(x: x, y: y, z: .one, t: x * y)
    }

    /// The 32-byte encoding: y, with x's low bit in the top bit.
    var encoded: [UInt8] {
        let inverse = z.inverse
        let affineX = x * inverse
        var out = (y * inverse).bytes
        if affineX.isNegative { out[31] |= 0x80 }
        return out
    }

    var negated: EdwardsPoint { EdwardsPoint(x: -x, y: y, z: z, t: -t) }

    /// The unified addition of RFC 8032 §5.1.4 (also correct for doubling).
    static func + (p: EdwardsPoint, q: EdwardsPoint) -> EdwardsPoint {
        let a = (p.y - p.x) * (q.y - q.x)
        let b = (p.y + p.x) * (q.y + q.x)
        let c = p.t * twiceD * q.t
        let d = (p.z + p.z) * q.z
        let e = b - a
        let f = d - c
        let g = d + c
        let h = b + a
        return EdwardsPoint(x: e * f, y: g * h, z: f * g, t: e * h)
    }

    /// [scalar]·self for a 32-byte little-endian scalar, by a ladder over all 256 bits that swaps
    /// its two registers without branching on the scalar's bits.
    func multiplied(by scalar: [UInt8]) -> EdwardsPoint {
        var low = EdwardsPoint.identity
        var high = self
        for bit in stride(from: 255, through: 0, by: -1) {
            let swap = UInt64((scalar[bit / 8] >> UInt8(bit % 8)) & 1)
            EdwardsPoint.conditionalSwap(&low, &high, swap)
            high = low + high
            low = low + low
            EdwardsPoint.conditionalSwap(&low, &high, swap)
        }
        return low
    }

    private static func conditionalSwap(_ a: inout EdwardsPoint, _ b: inout EdwardsPoint, _ swap: UInt64) {
        FieldElement.conditionalSwap(&a.x, &b.x, swap)
        FieldElement.conditionalSwap(&a.y, &b.y, swap)
        FieldElement.conditionalSwap(&a.z, &b.z, swap)
        FieldElement.conditionalSwap(&a.t, &b.t, swap)
    }
}

/// Arithmetic modulo the group order L = 2²⁵² + 27742317777372353535851937790883648493, on
/// little-endian byte strings. Only a few of these run per signature, so it is plain and short.
enum Scalar {
    /// L, little-endian, in 32-bit limbs.
    private static let order: [UInt32] = [
        0x5cf5_d3ed, 0x5812_631a, 0xa2f7_9cd6, 0x14de_f9de, 0, 0, 0, 0x1000_0000,
    ]

    /// Whether 32 bytes are a scalar below L (the only S a signature may carry).
    static func isCanonical(_ bytes: [UInt8]) -> Bool {
        let limbs = words(bytes)
        for index in stride(from: 7, through: 0, by: -1) where limbs[index] != order[index] {
            return limbs[index] < order[index]
        }
        return false
    }

    /// Any little-endian number of up to 64 bytes, reduced modulo L, as 32 bytes.
    static func reduced(_ bytes: [UInt8]) -> [UInt8] {
        // Long division a bit at a time: remainder = 2·remainder + bit, less L when it reaches L.
        var remainder = [UInt32](repeating: 0, count: 9)
        for bit in stride(from: bytes.count * 8 - 1, through: 0, by: -1) {
            var carry = UInt32((bytes[bit / 8] >> UInt8(bit % 8)) & 1)
            for index in 0..<9 {
                let shifted = remainder[index] << 1 | carry
                carry = remainder[index] >> 31
                remainder[index] = shifted
            }
            subtractOrderIfReached(&remainder)
        }
        var out = [UInt8]()
        out.reserveCapacity(32)
        for limb in remainder.prefix(8) {
            for shift in stride(from: 0, to: 32, by: 8) { out.append(UInt8(truncatingIfNeeded: limb >> UInt32(shift))) }
        }
        return out
    }

    /// (a·b + c) mod L.
    static func multiplyAdd(_ a: [UInt8], _ b: [UInt8], _ c: [UInt8]) -> [UInt8] {
        let (x, y, z) = (words(a), words(b), words(c))
        var product = [UInt64](repeating: 0, count: 17)
        for i in 0..<8 {
            var carry: UInt64 = 0
            for j in 0..<8 {
                let sum = product[i + j] + UInt64(x[i]) * UInt64(y[j]) + carry
                product[i + j] = sum & 0xffff_ffff
                carry = sum >> 32
            }
            product[i + 8] += carry
        }
        var carry: UInt64 = 0
        for index in 0..<17 {
            let sum = product[index] + (index < 8 ? UInt64(z[index]) : 0) + carry
            product[index] = sum & 0xffff_ffff
            carry = sum >> 32
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(68)
        for limb in product {
            for shift in stride(from: 0, to: 32, by: 8) {
                bytes.append(UInt8(truncatingIfNeeded: limb >> UInt64(shift)))
            }
        }
        return reduced(bytes)
    }

    private static func words(_ bytes: [UInt8]) -> [UInt32] {
        (0..<8).map { index in
            (0..<4).reduce(UInt32(0)) { word, byte in word | UInt32(bytes[index * 4 + byte]) << UInt32(8 * byte) }
        }
    }

    private static func subtractOrderIfReached(_ value: inout [UInt32]) {
        var reached = value[8] > 0
        if !reached {
            reached = true
            for index in stride(from: 7, through: 0, by: -1) where value[index] != order[index] {
                reached = value[index] > order[index]
                break
            }
        }
        guard reached else { return }
        var borrow: Int64 = 0
        for index in 0..<9 {
            let limb = index < 8 ? Int64(order[index]) : 0
            var difference = Int64(value[index]) - limb - borrow
            borrow = difference < 0 ? 1 : 0
            if difference < 0 { difference += 1 << 32 }
            value[index] = UInt32(difference)
        }
    }
}
