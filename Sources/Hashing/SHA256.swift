import CSHA256

/// SHA-256 (FIPS 180-4), written for this project because it may take no package dependency.
///
/// Use ``SHA256/hash(_:)`` for one buffer, or feed pieces with ``update(_:)`` and finish with
/// ``finalize()``. The value type is cheap to copy (no heap storage), so a prefix can be hashed once
/// and reused. Blocks are compressed with the CPU's SHA extensions when it has them (the C target
/// `CSHA256`, chosen once by CPUID) and by the portable Swift rounds otherwise.
public struct SHA256: Sendable {
    /// The length of a digest in bytes.
    public static let digestByteCount = 32

    /// How blocks are compressed.
    public enum Implementation: Sendable, Equatable, CaseIterable {
        /// The portable Swift rounds: every CPU.
        case portable
        /// The x86 SHA extensions (SHA-NI), where ``SHA256/available`` lists them.
        case shaExtensions
    }

    /// The implementations this CPU runs, the portable one first.
    public static let available: [Implementation] =
        csha256_has_extensions() != 0 ? [.portable, .shaExtensions] : [.portable]

    /// The implementation hashers use unless told otherwise: the SHA extensions when present.
    public static let fastest: Implementation = available.last!

    private var state: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) = (
        0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19
    )
    /// Bytes not yet compressed (fewer than 64), at the front of `pending`.
    private var pending: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    private var pendingCount = 0
    private var totalByteCount: UInt64 = 0
    private let implementation: Implementation

    /// Creates a hasher in its initial state, compressing with `implementation` (the fastest this
    /// CPU has, unless told; an implementation the CPU lacks falls back to the portable one).
    public init(using implementation: Implementation = SHA256.fastest) {
        self.implementation = SHA256.available.contains(implementation) ? implementation : .portable
    }

    /// Hashes `bytes` in one call.
    public static func hash(_ bytes: some Sequence<UInt8>) -> [UInt8] {
        var hasher = SHA256()
        if let done: Void = bytes.withContiguousStorageIfAvailable({ hasher.update(UnsafeRawBufferPointer($0)) }) {
            _ = done
        } else {
            hasher.update(Array(bytes))
        }
        return hasher.finalize()
    }

    /// Hashes the bytes of a raw buffer in one call.
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(bytes)
        return hasher.finalize()
    }

    /// Adds `bytes` to the message.
    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Adds the bytes of a raw buffer to the message.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var base = bytes.baseAddress, bytes.count > 0 else { return }
        var remaining = bytes.count
        totalByteCount &+= UInt64(remaining)
        if pendingCount > 0 {
            let take = min(64 - pendingCount, remaining)
            let offset = pendingCount
            withUnsafeMutableBytes(of: &pending) {
                $0.baseAddress!.advanced(by: offset).copyMemory(from: base, byteCount: take)
            }
            pendingCount += take
            base += take
            remaining -= take
            guard pendingCount == 64 else { return }
            var block = pending
            withUnsafeBytes(of: &block) { compress($0.baseAddress!, blocks: 1) }
            pendingCount = 0
        }
        if remaining >= 64 {
            compress(base, blocks: remaining / 64)
            base += remaining & ~63
            remaining &= 63
        }
        if remaining > 0 {
            withUnsafeMutableBytes(of: &pending) { $0.baseAddress!.copyMemory(from: base, byteCount: remaining) }
            pendingCount = remaining
        }
    }

    /// Pads the message and returns its 32-byte digest. The hasher should not be used afterwards.
    public mutating func finalize() -> [UInt8] {
        // Made on the stack, then copied: `Array(unsafeUninitializedCapacity:)` looks the array
        // type's metadata up at run time on every call (about 50 ns, as long as hashing a block).
        var digest: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &digest) { buffer in
            finalize(into: buffer)
            return Array(buffer.bindMemory(to: UInt8.self))
        }
    }

    /// Pads the message and writes its 32-byte digest to the front of `digest` (which must hold
    /// 32 bytes), without allocating. The hasher should not be used afterwards.
    public mutating func finalize(into digest: UnsafeMutableRawBufferPointer) {
        precondition(digest.count >= 32, "a SHA-256 digest takes 32 bytes")
        let bitLength = totalByteCount &* 8
        let count = pendingCount
        let blocks = count < 56 ? 1 : 2
        var tail: (SIMD64<UInt8>, SIMD64<UInt8>) = (.zero, .zero)
        withUnsafeMutableBytes(of: &tail) { buffer in
            withUnsafeBytes(of: pending) { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: count) }
            buffer[count] = 0x80
            let end = blocks * 64
            for index in 0..<8 { buffer[end - 1 - index] = UInt8(truncatingIfNeeded: bitLength >> UInt64(index * 8)) }
        }
        withUnsafeBytes(of: &tail) { compress($0.baseAddress!, blocks: blocks) }
        withUnsafeBytes(of: state) { words in
            for index in 0..<8 {
                let word = words.load(fromByteOffset: index * 4, as: UInt32.self)
                digest.storeBytes(of: word.bigEndian, toByteOffset: index * 4, as: UInt32.self)
            }
        }
    }

    /// Compresses `blocks` consecutive 64-byte blocks starting at `base`.
    private mutating func compress(_ base: UnsafeRawPointer, blocks: Int) {
        if implementation == .shaExtensions {
            withUnsafeMutableBytes(of: &state) { words in
                csha256_compress_extensions(
                    words.baseAddress!.assumingMemoryBound(to: UInt32.self), base.assumingMemoryBound(to: UInt8.self),
                    blocks)
            }
            return
        }
        for block in 0..<blocks { compress(base + block * 64) }
    }

    @inline(__always)
    private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 &- n)) }

    /// Processes one 64-byte block starting at `block` with the portable rounds. The message
    /// schedule is kept in a 16-word ring and extended inside the rounds. About 190 ns a block on
    /// this project's 2-core machine, against about 30 ns with the SHA extensions.
    private mutating func compress(_ block: UnsafeRawPointer) {
        let k = SHA256.constants
        var (a, b, c, d, e, f, g, h) = state
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 16) { w in
            for i in 0..<16 { w[i] = UInt32(bigEndian: block.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)) }
            for i in 0..<64 {
                let word: UInt32
                if i < 16 {
                    word = w[i]
                } else {
                    let x = w[(i - 15) & 15]
                    let y = w[(i - 2) & 15]
                    let s0 = Self.rotr(x, 7) ^ Self.rotr(x, 18) ^ (x >> 3)
                    let s1 = Self.rotr(y, 17) ^ Self.rotr(y, 19) ^ (y >> 10)
                    word = w[i & 15] &+ s0 &+ w[(i - 7) & 15] &+ s1
                    w[i & 15] = word
                }
                let s1 = Self.rotr(e, 6) ^ Self.rotr(e, 11) ^ Self.rotr(e, 25)
                let t1 = h &+ s1 &+ ((e & f) ^ (~e & g)) &+ k[i] &+ word
                let t2 = (Self.rotr(a, 2) ^ Self.rotr(a, 13) ^ Self.rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
                h = g
                g = f
                f = e
                e = d &+ t1
                d = c
                c = b
                b = a
                a = t1 &+ t2
            }
        }
        state.0 &+= a
        state.1 &+= b
        state.2 &+= c
        state.3 &+= d
        state.4 &+= e
        state.5 &+= f
        state.6 &+= g
        state.7 &+= h
    }

    /// The round constants, from `CSHA256` (one table for both implementations; read-only, so
    /// sharing it between threads is safe).
    nonisolated(unsafe) private static let constants: UnsafePointer<UInt32> = csha256_round_constants()
}

/// Hex rendering of digests and other byte strings.
extension Sequence<UInt8> {
    /// The bytes as lower-case hexadecimal, two characters a byte.
    ///
    /// Written into the string's own storage from contiguous bytes (an array, a slice), where
    /// appending to an array a digit at a time through the generic iterator, then copying it into
    /// a string, was 4% of a contact import's CPU (two hex strings a contact).
    public var hexString: String {
        withContiguousStorageIfAvailable(Hex.string) ?? Array(self).withUnsafeBufferPointer(Hex.string)
    }
}

/// Lower-case hexadecimal of bytes, as a string (`hexString`) or appended to
/// bytes being written (``append(_:to:)``).
public enum Hex {
    /// Appends `bytes` as lower-case hexadecimal, two digits a byte, to `out`.
    public static func append(_ bytes: [UInt8], to out: inout [UInt8]) {
        out.reserveCapacity(out.count + 2 * bytes.count)
        for byte in bytes {
            out.append(digit(byte >> 4))
            out.append(digit(byte & 0x0F))
        }
    }

    /// `bytes` as lower-case hexadecimal, two characters a byte.
    static func string(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
        String(unsafeUninitializedCapacity: bytes.count * 2) { out in
            for (index, byte) in bytes.enumerated() {
                out[2 * index] = digit(byte >> 4)
                out[2 * index + 1] = digit(byte & 0x0F)
            }
            return bytes.count * 2
        }
    }

    /// The ASCII digit of a value 0–15: `0`–`9`, then `a`–`f`.
    @inline(__always) static func digit(_ value: UInt8) -> UInt8 { value < 10 ? 0x30 + value : 0x57 + value }
}

/// HMAC-SHA-256 (RFC 2104), for values the engine must authenticate (list cursors).
public enum HMACSHA256 {
    /// The 32-byte tag of `message` under `key`.
    public static func authenticate(_ message: [UInt8], key: [UInt8]) -> [UInt8] {
        var block = key.count > 64 ? SHA256.hash(key) : key
        block += [UInt8](repeating: 0, count: 64 - block.count)
        var inner = SHA256()
        inner.update(block.map { $0 ^ 0x36 })
        inner.update(message)
        var outer = SHA256()
        outer.update(block.map { $0 ^ 0x5c })
        outer.update(inner.finalize())
        return outer.finalize()
    }
}
