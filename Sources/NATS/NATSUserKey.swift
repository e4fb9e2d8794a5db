import Foundation
import Signing

/// A NATS user NKEY: an Ed25519 key whose seed is written `SU…` and whose public key `U…`
/// (NATS's encoding: a type prefix, the 32 key bytes and a CRC-16 checksum, in RFC 4648 base32
/// without padding). A server whose `authorization` lists the public key (`nkey: U…`) sends a
/// nonce in its INFO; the client proves it holds the seed by signing it.
///
/// The seed is the secret: it is kept in memory only, and ``description`` shows the public key.
public struct NATSUserKey: Sendable, Equatable, CustomStringConvertible, CustomReflectable {
    private let key: Ed25519PrivateKey
    /// The public key, `U` and 55 more base32 characters (what the server's configuration lists).
    public let publicKey: String

    /// Why a seed does not read.
    public enum SeedProblem: Error, Equatable, Sendable, CustomStringConvertible {
        /// Not 58 characters of base32 (`A`–`Z`, `2`–`7`).
        case notBase32
        /// The checksum does not match: a character was changed or lost.
        case checksum
        /// A seed, but of another kind of key (an operator's, an account's, a server's).
        case notAUserSeed
        /// No seed where one belongs (a credentials file without its seed block).
        case missing

        /// A one-line description.
        public var description: String {
            switch self {
            case .notBase32: "not 58 characters of base32 (A–Z, 2–7)"
            case .checksum: "its checksum does not match (a character changed or missing)"
            case .notAUserSeed: "not a user's seed (SU…)"
            case .missing: "missing (no -----BEGIN USER NKEY SEED----- block)"
            }
        }
    }

    /// The prefix of a seed (the top 5 bits of its first byte).
    private static let seedPrefix: UInt8 = 18 << 3

    /// The kinds of NATS keys this client writes, by their type prefix (the first byte of a decoded
    /// public key): what the first letter of a public key (`O`, `A`, `U`) and the second of a seed say.
    public enum Kind: UInt8, Sendable {
        /// An operator's key (`O…`), which signs accounts' JWTs.
        case `operator` = 112
        /// An account's key (`A…`), which signs its users' JWTs.
        case account = 0
        /// A user's key (`U…`).
        case user = 160
    }

    /// The text of an Ed25519 public key of `kind`: the type prefix, the 32 bytes and a CRC-16, in
    /// base32 (`O…`, `A…`, `U…`, 56 characters).
    public static func publicKeyText(_ publicKey: [UInt8], kind: Kind) -> String {
        checked([kind.rawValue] + publicKey)
    }

    /// The text of a 32-byte Ed25519 seed of `kind` (`SO…`, `SA…`, `SU…`, 58 characters): the seed
    /// prefix and the type prefix packed in two bytes, the seed, and a CRC-16, in base32.
    public static func seedText(_ seed: [UInt8], kind: Kind) -> String {
        checked([seedPrefix | kind.rawValue >> 5, (kind.rawValue & 31) << 3] + seed)
    }

    /// `bytes` and their CRC-16 (little-endian), in base32.
    private static func checked(_ bytes: [UInt8]) -> String {
        let checksum = crc16(bytes[...])
        return base32Encoded(bytes + [UInt8(checksum & 0xFF), UInt8(checksum >> 8)])
    }

    /// Reads a user seed (`SU…`, 58 characters; surrounding white space is ignored).
    public init(seed text: String) throws(SeedProblem) {
        guard let bytes = NATSUserKey.base32Decoded(text.trimmingCharacters(in: .whitespacesAndNewlines)),
            bytes.count == 36
        else { throw .notBase32 }
        let checksum = UInt16(bytes[34]) | UInt16(bytes[35]) << 8
        guard NATSUserKey.crc16(bytes[0..<34]) == checksum else { throw .checksum }
        // The first two bytes hold the seed prefix (5 bits) and the key's type prefix (8 bits).
        let kind = (bytes[0] & 0x07) << 5 | (bytes[1] & 0xF8) >> 3
        guard bytes[0] & 0xF8 == NATSUserKey.seedPrefix, kind == Kind.user.rawValue else { throw .notAUserSeed }
        // 32 bytes cannot be the wrong length.
        key = try! Ed25519PrivateKey(seed: Array(bytes[2..<34]))
        publicKey = NATSUserKey.publicKeyText(key.publicKey.bytes, kind: .user)
    }

    /// The signature of the server's `nonce` (its UTF-8 bytes), in base64url without padding: the
    /// `sig` member of `CONNECT`.
    public func signature(nonce: String) -> String { NATSUserKey.base64URL(key.signature(for: Array(nonce.utf8))) }

    /// `bytes` in base64url without padding (RFC 4648 §5), as NATS writes signatures and JWT parts.
    public static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// "nkey U…": the public key, never the seed.
    public var description: String { "nkey \(publicKey)" }

    /// A mirror of the public key alone, so `dump` and test failure messages never show the seed.
    public var customMirror: Mirror { Mirror(self, children: ["publicKey": publicKey]) }

    /// Two keys are equal when their public keys are.
    public static func == (lhs: NATSUserKey, rhs: NATSUserKey) -> Bool { lhs.publicKey == rhs.publicKey }

    // MARK: Encodings

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    /// RFC 4648 base32 without padding; nil for a character outside the alphabet or leftover bits
    /// that are not zero.
    static func base32Decoded(_ text: String) -> [UInt8]? {
        var bytes = [UInt8]()
        var buffer: UInt32 = 0
        var bits = 0
        for character in text.utf8 {
            guard let value = alphabet.firstIndex(of: character) else { return nil }
            buffer = buffer << 5 | UInt32(value)
            bits += 5
            if bits >= 8 {
                bits -= 8
                bytes.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
                buffer &= (1 << UInt32(bits)) - 1
            }
        }
        return buffer == 0 ? bytes : nil
    }

    /// RFC 4648 base32 without padding.
    static func base32Encoded(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        var buffer: UInt32 = 0
        var bits = 0
        for byte in bytes {
            buffer = buffer << 8 | UInt32(byte)
            bits += 8
            while bits >= 5 {
                bits -= 5
                out.append(alphabet[Int(buffer >> UInt32(bits) & 0x1F)])
            }
            buffer &= (1 << UInt32(bits)) - 1
        }
        if bits > 0 { out.append(alphabet[Int(buffer << UInt32(5 - bits) & 0x1F)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum NATS keys carry.
    static func crc16(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 { crc = crc & 0x8000 != 0 ? crc << 1 ^ 0x1021 : crc << 1 }
        }
        return crc
    }
}
