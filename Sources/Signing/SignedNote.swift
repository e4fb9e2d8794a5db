import Foundation
import Hashing

/// An Ed25519 key in the text forms of C2SP's signed-note specification (the forms of Go's
/// `golang.org/x/mod/sumdb/note`): a name, a 4-byte key id, and the key.
///
/// - Verifier key (public): `<name>+<key id, 8 hex digits>+<base64(0x01 ‖ public key)>`
/// - Signer key (secret): `PRIVATE+KEY+<name>+<key id>+<base64(0x01 ‖ seed)>`
///
/// The key id is the first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key), 0x01 being the
/// signature type of Ed25519.
public struct NoteKey: Sendable {
    /// The key's name: no spaces, no `+`, not empty (for example a host name).
    public let name: String
    /// The Ed25519 public key that checks the key's signatures (derived from ``privateKey`` for a signer key).
    public let publicKey: Ed25519PublicKey
    /// The private key, when this is a signer key.
    public let privateKey: Ed25519PrivateKey?

    /// A signer key with a fresh random seed.
    public static func generate(name: String) throws -> NoteKey {
        try NoteKey(name: name, privateKey: .generate())
    }

    /// A signer key for an existing private key.
    public init(name: String, privateKey: Ed25519PrivateKey) throws {
        try NoteKey.check(name: name)
        self.name = name
        self.privateKey = privateKey
        publicKey = privateKey.publicKey
    }

    /// A verifier key: `name` and `publicKey`, which check signatures but cannot make them. Throws for a bad name.
    public init(name: String, publicKey: Ed25519PublicKey) throws {
        try NoteKey.check(name: name)
        self.name = name
        self.publicKey = publicKey
        privateKey = nil
    }

    /// Reads either text form (surrounding white space ignored).
    /// - Throws: ``SigningError/malformed(_:)`` when it is neither, or its key id does not match.
    public init(text: String) throws {
        var body = Substring(text.trimmingCharacters(in: .whitespacesAndNewlines))
        let secret = body.hasPrefix("PRIVATE+KEY+")
        if secret { body = body.dropFirst("PRIVATE+KEY+".count) }
        // The base64 key may itself hold '+', so only the first two separate fields.
        let fields = body.split(separator: "+", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        guard fields.count == 3, let id = [UInt8](hex: fields[1]), id.count == 4,
            let key = Data(base64Encoded: fields[2]).map(Array.init), key.count == 33, key[0] == 0x01
        else {
            throw SigningError.malformed(
                "not a note key: expected name+keyid+base64 (or PRIVATE+KEY+name+keyid+base64) with an Ed25519 key")
        }
        if secret {
            try self.init(name: fields[0], privateKey: Ed25519PrivateKey(seed: Array(key[1...])))
        } else {
            try self.init(name: fields[0], publicKey: Ed25519PublicKey(bytes: Array(key[1...])))
        }
        guard self.id == id else { throw SigningError.malformed("the key id \(fields[1]) does not match the key") }
    }

    /// The 4-byte key id: the first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key).
    public var id: [UInt8] {
        Array(SHA256.hash(Array(name.utf8) + [0x0a, 0x01] + publicKey.bytes).prefix(4))
    }

    /// The verifier key text (safe to publish).
    public var verifierKey: String {
        "\(name)+\(id.hexString)+\(Data([0x01] + publicKey.bytes).base64EncodedString())"
    }

    /// The signer key text, or nil for a verifier key. A secret: write it only to a file the operator names.
    public var signerKey: String? {
        privateKey.map { "PRIVATE+KEY+\(name)+\(id.hexString)+\(Data([0x01] + $0.seed).base64EncodedString())" }
    }

    private static func check(name: String) throws {
        guard !name.isEmpty, !name.contains(where: { $0 == "+" || $0.isWhitespace }) else {
            throw SigningError.malformed("a key name must be non-empty, without spaces or '+'")
        }
    }
}

/// A signed note (C2SP signed-note): a UTF-8 text ending in a newline, a blank line, then one line per
/// signature, `— <key name> <base64(key id ‖ signature)>` (the dash is U+2014). The signature is over
/// the text, its final newline included.
public struct SignedNote: Sendable, Equatable {
    /// The signed text, ending in a newline.
    public let text: String
    /// The signatures: key name, key id and the signature bytes.
    public let signatures: [Signature]

    /// One signature line of a note: `— <key name> <base64(key id ‖ signature)>`.
    public struct Signature: Sendable, Equatable {
        /// The signer's key name.
        public let keyName: String
        /// The signer's 4-byte key id.
        public let keyId: [UInt8]
        /// The 64-byte Ed25519 signature.
        public let bytes: [UInt8]
    }

    /// Signs `text` (which must end in a newline and hold no blank line) with `key`.
    /// - Throws: ``SigningError/malformed(_:)`` for such a text or a verifier-only key.
    public init(signing text: String, with key: NoteKey) throws {
        guard let privateKey = key.privateKey else { throw SigningError.malformed("a verifier key cannot sign") }
        try SignedNote.check(text: text)
        self.text = text
        signatures = [Signature(keyName: key.name, keyId: key.id, bytes: privateKey.signature(for: Array(text.utf8)))]
    }

    /// Parses a note in its serialised form.
    /// - Throws: ``SigningError/malformed(_:)`` when it does not follow the format.
    public init(parsing serialized: String) throws {
        guard let split = serialized.range(of: "\n\n", options: .backwards) else {
            throw SigningError.malformed("a signed note has a blank line before its signatures")
        }
        text = String(serialized[..<split.lowerBound]) + "\n"
        try SignedNote.check(text: text)
        var parsed = [Signature]()
        for line in serialized[split.upperBound...].split(separator: "\n", omittingEmptySubsequences: false) {
            if line.isEmpty { continue }
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count == 3, fields[0] == "\u{2014}",
                let blob = Data(base64Encoded: String(fields[2])).map(Array.init), blob.count == 68
            else { throw SigningError.malformed("a signature line is '— <name> <base64 of key id and signature>'") }
            parsed.append(Signature(keyName: String(fields[1]), keyId: Array(blob[0..<4]), bytes: Array(blob[4...])))
        }
        guard !parsed.isEmpty else { throw SigningError.malformed("the note has no signature") }
        signatures = parsed
    }

    /// The note as text: the signed text, a blank line, the signature lines.
    public var serialized: String {
        text + "\n"
            + signatures.map { "\u{2014} \($0.keyName) \(Data($0.keyId + $0.bytes).base64EncodedString())\n" }.joined()
    }

    /// Whether a signature by `key` (same name and key id) is on the note and verifies.
    public func isSigned(by key: NoteKey) -> Bool {
        signatures.contains { signature in
            signature.keyName == key.name && signature.keyId == key.id
                && key.publicKey.isValidSignature(signature.bytes, for: Array(text.utf8))
        }
    }

    private static func check(text: String) throws {
        guard text.hasSuffix("\n"), !text.contains("\n\n"), !text.hasPrefix("\n") else {
            throw SigningError.malformed("a note's text ends in a newline and has no blank line")
        }
    }
}

/// A transparency-log checkpoint (C2SP tlog-checkpoint): the body of a signed note with the log's
/// origin, its tree size in decimal and its RFC 9162 root hash in base64, one a line, then optional
/// extension lines.
public struct TreeCheckpoint: Sendable, Equatable {
    /// The log's name (unique per log; this engine uses `campaign-engine/<store id>` unless told).
    public var origin: String
    /// The number of events the tree covers.
    public var size: UInt64
    /// The Merkle tree hash of those events.
    public var rootHash: [UInt8]
    /// Extension lines (none by default).
    public var extensions: [String]

    /// A checkpoint body saying the log named `origin` has `size` events whose Merkle tree hash is `rootHash`.
    public init(origin: String, size: UInt64, rootHash: [UInt8], extensions: [String] = []) {
        self.origin = origin
        self.size = size
        self.rootHash = rootHash
        self.extensions = extensions
    }

    /// What is wrong with an origin line, or nil when it is one: it is not empty and holds no newline
    /// (the body is read a line at a time, so a newline would make the size line of its second part).
    public static func originProblem(_ origin: String) -> String? {
        origin.isEmpty || origin.contains("\n") ? "a checkpoint's origin is one line of text, not empty" : nil
    }

    /// Reads the body of a note.
    /// - Throws: ``SigningError/malformed(_:)`` when it is not a checkpoint.
    public init(text: String) throws {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        guard lines.count >= 3, !lines[0].isEmpty, let size = UInt64(lines[1]), String(size) == lines[1],
            let root = Data(base64Encoded: lines[2]).map(Array.init), root.count == 32
        else {
            throw SigningError.malformed("a checkpoint is origin, tree size and base64 root hash, one a line")
        }
        self.init(origin: lines[0], size: size, rootHash: root, extensions: Array(lines[3...]))
    }

    /// The body: origin, size, root, extensions, each ending in a newline.
    public var text: String {
        ([origin, String(size), Data(rootHash).base64EncodedString()] + extensions).map { $0 + "\n" }.joined()
    }
}

extension [UInt8] {
    /// Bytes from hexadecimal text (two digits a byte, either case); nil when it is not hex.
    public init?(hex: String) {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(digits.count / 2)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = Self.nibble(digits[index]), let low = Self.nibble(digits[index + 1]) else { return nil }
            out.append(high << 4 | low)
        }
        self = out
    }

    private static func nibble(_ digit: UInt8) -> UInt8? {
        switch digit {
        case 0x30...0x39: digit - 0x30
        case 0x61...0x66: digit - 0x61 + 10
        case 0x41...0x46: digit - 0x41 + 10
        default: nil
        }
    }
}
