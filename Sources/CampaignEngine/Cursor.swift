import CampaignDomain
import Foundation
import Hashing

/// List cursors: opaque, and bound to the tenant, the query and its filters.
///
/// A cursor is base64url of `0x01 ‖ tag (16 bytes) ‖ ciphertext`. The plaintext is the position
/// in the list (the read model key after the list's own prefix); the tag is HMAC-SHA-256 of the
/// context (tenant, query, filters) and the plaintext under a key derived from a per-store secret
/// kept in LMDB (never in the log); the ciphertext is the plaintext XOR a keystream of
/// HMAC-SHA-256(encryption key, tag ‖ counter). So a cursor reveals nothing, and one that was
/// forged, altered, truncated, or issued for another tenant, query or filter is refused with
/// `INVALID_FORMAT` (`param: cursor`) instead of reading as an empty page.
struct CursorCodec: Sendable {
    private let macKey: [UInt8]
    private let encryptionKey: [UInt8]
    private static let version: UInt8 = 1
    private static let tagSize = 16

    init(secret: [UInt8]) {
        macKey = HMACSHA256.authenticate(Array("campaign-cursor-mac".utf8), key: secret)
        encryptionKey = HMACSHA256.authenticate(Array("campaign-cursor-encryption".utf8), key: secret)
    }

    /// The context a cursor is bound to: the tenant, the query and each filter, NUL-separated.
    static func context(_ tenant: String, _ query: String, _ filters: [String?]) -> [UInt8] {
        Array(([tenant, query] + filters.map { $0 ?? "-" }).joined(separator: "\u{0}").utf8)
    }

    func encode(_ position: [UInt8], context: [UInt8]) -> String {
        let tag = Array(HMACSHA256.authenticate(context + [0] + position, key: macKey).prefix(CursorCodec.tagSize))
        let sealed = [CursorCodec.version] + tag + xor(position, tag: tag)
        return Data(sealed).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(
                of: "=", with: "")
    }

    func decode(_ cursor: String, context: [UInt8]) throws(CampaignError) -> [UInt8] {
        var base64 = cursor.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard cursor.utf8.count <= 2_048, let data = Data(base64Encoded: base64), data.count > 1 + CursorCodec.tagSize,
            data.first == CursorCodec.version
        else { throw CursorCodec.invalid }
        let bytes = Array(data)
        let tag = Array(bytes[1...CursorCodec.tagSize])
        let position = xor(Array(bytes[(1 + CursorCodec.tagSize)...]), tag: tag)
        let expected = HMACSHA256.authenticate(context + [0] + position, key: macKey).prefix(CursorCodec.tagSize)
        // Constant time: every byte is compared whatever the first difference.
        guard zip(expected, tag).reduce(UInt8(0), { $0 | ($1.0 ^ $1.1) }) == 0 else { throw CursorCodec.invalid }
        return position
    }

    private func xor(_ bytes: [UInt8], tag: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        var counter: UInt32 = 0
        while out.count < bytes.count {
            let block = HMACSHA256.authenticate(
                tag + withUnsafeBytes(of: counter.bigEndian, Array.init), key: encryptionKey)
            for byte in block where out.count < bytes.count { out.append(bytes[out.count] ^ byte) }
            counter += 1
        }
        return out
    }

    static let invalid = CampaignError(
        .invalidFormat, "cursor is not one this engine issued for this list and these filters", param: "cursor",
        pointer: "/params/cursor")
}
