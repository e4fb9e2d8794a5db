import Hashing
import Signing
import Testing

/// RFC 8032 §7.1's test vectors for Ed25519: the public key derived from each secret, the signature of
/// each message, and that signature verifying; plus the rejections a verifier must make.
@Suite struct Ed25519Tests {
    struct Vector: Sendable, CustomTestStringConvertible {
        let name: String
        let secret: String
        let publicKey: String
        let message: String
        let signature: String
        var testDescription: String { name }
    }

    static let vectors = [
        Vector(
            name: "TEST 1", secret: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            publicKey: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", message: "",
            signature: "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
                + "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
        Vector(
            name: "TEST 2", secret: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            publicKey: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", message: "72",
            signature: "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
                + "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
        Vector(
            name: "TEST 3", secret: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            publicKey: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", message: "af82",
            signature: "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
                + "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
        Vector(
            name: "TEST SHA(abc)", secret: "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
            publicKey: "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
            message: "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                + "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            signature: "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
                + "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"),
    ]

    @Test(arguments: vectors) func signsAndVerifiesTheRFCVectors(_ vector: Vector) throws {
        let key = try Ed25519PrivateKey(seed: [UInt8](hex: vector.secret)!)
        #expect(key.publicKey.bytes.hexString == vector.publicKey)
        let message = [UInt8](hex: vector.message)!
        #expect(key.signature(for: message).hexString == vector.signature)
        let publicKey = try Ed25519PublicKey(bytes: [UInt8](hex: vector.publicKey)!)
        #expect(publicKey.isValidSignature([UInt8](hex: vector.signature)!, for: message))
    }

    @Test func rejectsATamperedSignatureOrMessage() throws {
        let vector = Ed25519Tests.vectors[2]
        let publicKey = try Ed25519PublicKey(bytes: [UInt8](hex: vector.publicKey)!)
        let message = [UInt8](hex: vector.message)!
        let signature = [UInt8](hex: vector.signature)!
        for index in [0, 31, 32, 63] {
            var tampered = signature
            tampered[index] ^= 0x01
            #expect(!publicKey.isValidSignature(tampered, for: message), "byte \(index) flipped")
        }
        #expect(!publicKey.isValidSignature(signature, for: message + [0]))
        #expect(!publicKey.isValidSignature(Array(signature.prefix(63)), for: message))
        let other = try Ed25519PublicKey(bytes: [UInt8](hex: Ed25519Tests.vectors[0].publicKey)!)
        #expect(!other.isValidSignature(signature, for: message))
    }

    /// S + L verifies the same equation but is not canonical: RFC 8032 requires rejecting it.
    @Test func rejectsANonCanonicalS() throws {
        let vector = Ed25519Tests.vectors[0]
        let publicKey = try Ed25519PublicKey(bytes: [UInt8](hex: vector.publicKey)!)
        var signature = [UInt8](hex: vector.signature)!
        let order = [UInt8](hex: "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")!
        var carry = 0
        for index in 0..<32 {
            let sum = Int(signature[32 + index]) + Int(order[index]) + carry
            signature[32 + index] = UInt8(sum & 0xff)
            carry = sum >> 8
        }
        #expect(carry == 0)
        #expect(!publicKey.isValidSignature(signature, for: []))
    }

    @Test func refusesKeysThatAreNotKeys() {
        #expect(throws: SigningError.wrongLength(what: "a seed", expected: 32, got: 31)) {
            try Ed25519PrivateKey(seed: [UInt8](repeating: 1, count: 31))
        }
        // y = 2 has no x on the curve.
        #expect(throws: SigningError.notAPoint) {
            try Ed25519PublicKey(bytes: [2] + [UInt8](repeating: 0, count: 31))
        }
        // y = p is not a canonical encoding.
        #expect(throws: SigningError.notAPoint) {
            try Ed25519PublicKey(bytes: [0xed] + [UInt8](repeating: 0xff, count: 30) + [0x7f])
        }
    }

    @Test func freshKeysSignAndVerify() throws {
        for round in 0..<8 {
            let key = Ed25519PrivateKey.generate()
            let message = Array("round \(round)".utf8)
            let signature = key.signature(for: message)
            #expect(key.publicKey.isValidSignature(signature, for: message))
            #expect(try Ed25519PrivateKey(seed: key.seed).publicKey == key.publicKey)
        }
    }
}

/// The C2SP signed-note forms, anchored on the example of Go's `golang.org/x/mod/sumdb/note`
/// documentation (another implementation), and the tlog-checkpoint body.
@Suite struct SignedNoteTests {
    static let signerKey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
    static let verifierKey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    static let text =
        "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
    static let note =
        text
        + "\n\u{2014} PeterNeumann "
        + "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"

    @Test func reproducesGosExampleNote() throws {
        let signer = try NoteKey(text: SignedNoteTests.signerKey)
        #expect(signer.verifierKey == SignedNoteTests.verifierKey)
        #expect(signer.signerKey == SignedNoteTests.signerKey)
        let note = try SignedNote(signing: SignedNoteTests.text, with: signer)
        #expect(note.serialized == SignedNoteTests.note)
        let verifier = try NoteKey(text: SignedNoteTests.verifierKey)
        #expect(try SignedNote(parsing: SignedNoteTests.note).isSigned(by: verifier))
    }

    @Test func catchesAnEditedTextOrAnotherKey() throws {
        let verifier = try NoteKey(text: SignedNoteTests.verifierKey)
        let edited = SignedNoteTests.note.replacingOccurrences(of: "cryptography", with: "cryptographY")
        #expect(try !SignedNote(parsing: edited).isSigned(by: verifier))
        let stranger = try NoteKey.generate(name: "PeterNeumann")
        #expect(try !SignedNote(parsing: SignedNoteTests.note).isSigned(by: try NoteKey(text: stranger.verifierKey)))
        #expect(throws: SigningError.self) {
            try NoteKey(text: "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
        }
        #expect(throws: SigningError.self) { try SignedNote(parsing: SignedNoteTests.text) }
    }

    @Test func checkpointBodyRoundTrips() throws {
        let root = SHA256.hash(Array("root".utf8))
        let checkpoint = TreeCheckpoint(origin: "campaign-engine/abc", size: 42, rootHash: root)
        #expect(checkpoint.text.split(separator: "\n").count == 3)
        #expect(try TreeCheckpoint(text: checkpoint.text) == checkpoint)
        #expect(throws: SigningError.self) { try TreeCheckpoint(text: "origin\n042\nAAAA\n") }
        let key = try NoteKey.generate(name: "ops")
        let note = try SignedNote(signing: checkpoint.text, with: key)
        let parsed = try SignedNote(parsing: note.serialized)
        #expect(parsed.isSigned(by: try NoteKey(text: key.verifierKey)))
        #expect(try TreeCheckpoint(text: parsed.text) == checkpoint)
    }
}
