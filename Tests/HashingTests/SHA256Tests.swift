import Foundation
import Hashing
import Testing

/// Known answers from NIST's "SHA-256 examples" (FIPS 180-4 example values) and the long-message
/// test from the NIST SHA-2 validation suite, each checked with every implementation this CPU runs
/// (the portable Swift rounds, and the SHA extensions where present).
@Suite struct SHA256Tests {
    static let vectors: [(message: [UInt8], digest: String)] = [
        ([], "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        (Array("abc".utf8), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (
            Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        ),
        (
            Array(
                ("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmno"
                    + "pqrsmnopqrstnopqrstu").utf8),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"
        ),
        // 55, 56 and 64 bytes sit on either side of the length field's boundary.
        (
            [UInt8](repeating: 0x61, count: 55), "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"
        ),
        (
            [UInt8](repeating: 0x61, count: 56), "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"
        ),
        (
            [UInt8](repeating: 0x61, count: 64), "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"
        ),
    ]

    static func digest(_ message: [UInt8], _ implementation: SHA256.Implementation) -> [UInt8] {
        var hasher = SHA256(using: implementation)
        hasher.update(message)
        return hasher.finalize()
    }

    @Test(arguments: SHA256.available)
    func nistExamplesMatch(_ implementation: SHA256.Implementation) {
        for (message, digest) in Self.vectors {
            #expect(Self.digest(message, implementation).hexString == digest, "\(message.count) bytes")
        }
    }

    @Test(arguments: SHA256.available)
    func millionAsMatchesNIST(_ implementation: SHA256.Implementation) {
        var hasher = SHA256(using: implementation)
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 { hasher.update(chunk) }
        #expect(
            hasher.finalize().hexString
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Hex of every byte value, of arrays and slices of every length to 40 (as a string and
    /// appended to bytes), and of a sequence with no contiguous storage, against `%02x` a byte.
    @Test func hexIsTwoLowerCaseDigitsAByte() {
        func reference(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
        let all = (0...255).map { UInt8($0) }
        #expect(all.hexString == reference(all))
        #expect(all.lazy.map { $0 }.hexString == reference(all))
        var generator = SystemRandomNumberGenerator()
        for length in 0...40 {
            let bytes = (0..<length + 3).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(Array(bytes[..<length]).hexString == reference(Array(bytes[..<length])))
            #expect(bytes[3...].hexString == reference(Array(bytes[3...])))
            var appended = Array("x".utf8)
            Hex.append(Array(bytes[..<length]), to: &appended)
            #expect(appended == Array(("x" + reference(Array(bytes[..<length]))).utf8))
        }
    }

    @Test func theSHAExtensionsAreUsedWhereTheCPUHasThem() throws {
        // The kernel's own view of the CPU, independent of the CPUID check in CSHA256.
        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        let flags = cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ") ?? []
        let hasExtensions = ["sha_ni", "ssse3", "sse4_1"].allSatisfy { flags.contains(Substring($0)) }
        #expect(SHA256.available == (hasExtensions ? [.portable, .shaExtensions] : [.portable]))
        #expect(SHA256.fastest == (hasExtensions ? .shaExtensions : .portable))
    }

    @Test func theImplementationsAgreeOnRandomInputsOfEveryLengthUpTo1024() {
        var generator = SystemRandomNumberGenerator()
        for length in 0...1024 {
            let message = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let portable = Self.digest(message, .portable)
            for implementation in SHA256.available {
                #expect(Self.digest(message, implementation) == portable, "\(implementation), \(length) bytes")
            }
            #expect(SHA256.hash(message) == portable)
        }
    }

    @Test(arguments: SHA256.available)
    func feedingInOddPiecesGivesTheSameDigestAsOneCall(_ implementation: SHA256.Implementation) {
        let message = (0..<1_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let whole = Self.digest(message, implementation)
        for pieceSize in [1, 3, 55, 56, 63, 64, 65, 127, 999] {
            var hasher = SHA256(using: implementation)
            var index = 0
            while index < message.count {
                let end = min(index + pieceSize, message.count)
                hasher.update(Array(message[index..<end]))
                index = end
            }
            #expect(hasher.finalize() == whole, "piece size \(pieceSize)")
        }
    }

    @Test func aDigestCanBeWrittenInPlace() {
        var hasher = SHA256()
        hasher.update(Array("abc".utf8))
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBytes { hasher.finalize(into: $0) }
        #expect(out.hexString == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
