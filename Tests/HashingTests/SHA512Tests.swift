import Hashing
import Testing

/// Known answers from NIST's "SHA-512 examples" (FIPS 180-4 example values) and the long-message test,
/// plus messages on either side of the 112-byte padding boundary.
@Suite struct SHA512Tests {
    static let vectors: [(message: [UInt8], digest: String)] = [
        (
            [],
            "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
                + "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        ),
        (
            Array("abc".utf8),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                + "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        ),
        (
            Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8),
            "204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c335"
                + "96fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445"
        ),
        (
            Array(
                ("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmno"
                    + "pqrsmnopqrstnopqrstu").utf8),
            "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
                + "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909"
        ),
        (
            [UInt8](repeating: 0x61, count: 111),
            "fa9121c7b32b9e01733d034cfc78cbf67f926c7ed83e82200ef86818196921760"
                + "b4beff48404df811b953828274461673c68d04e297b0eb7b2b4d60fc6b566a2"
        ),
        (
            [UInt8](repeating: 0x61, count: 112),
            "c01d080efd492776a1c43bd23dd99d0a2e626d481e16782e75d54c2503b5dc32"
                + "bd05f0f1ba33e568b88fd2d970929b719ecbb152f58f130a407c8830604b70ca"
        ),
        (
            [UInt8](repeating: 0x61, count: 128),
            "b73d1929aa615934e61a871596b3f3b33359f42b8175602e89f7e06e5f658a24"
                + "3667807ed300314b95cacdd579f3e33abdfbe351909519a846d465c59582f321"
        ),
    ]

    @Test func knownAnswers() {
        for (message, digest) in SHA512Tests.vectors {
            #expect(SHA512.hash(message).hexString == digest, "\(message.count) bytes")
        }
    }

    /// One million 'a's, fed in uneven pieces so the buffering between updates is exercised too.
    @Test func millionAsInPieces() {
        var hasher = SHA512()
        var fed = 0
        var piece = 1
        while fed < 1_000_000 {
            let count = min(piece, 1_000_000 - fed)
            hasher.update([UInt8](repeating: 0x61, count: count))
            fed += count
            piece = piece % 300 + 7
        }
        #expect(
            hasher.finalize().hexString
                == "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"
                + "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b")
    }
}
