import Hashing
import Testing

/// Known answers from NIST's "SHA-256 examples" (FIPS 180-4 example values) and the long-message
/// test from the NIST SHA-2 validation suite.
@Suite struct SHA256Tests {
    @Test func emptyMessageMatchesNIST() {
        #expect(
            SHA256.hash([UInt8]()).hexString
                == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func oneBlockMessageMatchesNIST() {
        #expect(
            SHA256.hash(Array("abc".utf8)).hexString
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func twoBlockMessageMatchesNIST() {
        let message = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        #expect(
            SHA256.hash(Array(message.utf8)).hexString
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test func fourHundredFortyEightBitMessageMatchesNIST() {
        let message =
            "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmno"
            + "pqrsmnopqrstnopqrstu"
        #expect(
            SHA256.hash(Array(message.utf8)).hexString
                == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
    }

    @Test func millionAsMatchesNIST() {
        var hasher = SHA256()
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 { hasher.update(chunk) }
        #expect(
            hasher.finalize().hexString
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func feedingInOddPiecesGivesTheSameDigestAsOneCall() {
        let message = (0..<1_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let whole = SHA256.hash(message)
        for pieceSize in [1, 3, 55, 56, 63, 64, 65, 127, 999] {
            var hasher = SHA256()
            var index = 0
            while index < message.count {
                let end = min(index + pieceSize, message.count)
                hasher.update(Array(message[index..<end]))
                index = end
            }
            #expect(hasher.finalize() == whole, "piece size \(pieceSize)")
        }
    }

    @Test func paddingBoundariesAreHandled() {
        // 55, 56 and 64 bytes sit on either side of the length field's boundary.
        #expect(
            SHA256.hash([UInt8](repeating: 0x61, count: 55)).hexString
                == "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318")
        #expect(
            SHA256.hash([UInt8](repeating: 0x61, count: 56)).hexString
                == "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a")
        #expect(
            SHA256.hash([UInt8](repeating: 0x61, count: 64)).hexString
                == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb")
    }
}
