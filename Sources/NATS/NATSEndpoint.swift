import Foundation

/// A NATS server's address and how to authenticate to it, read from a URL:
/// `nats://HOST:PORT`, `nats://USER:PASSWORD@HOST:PORT` or `nats://TOKEN@HOST:PORT` (user, password
/// and token percent-decoded; an IPv6 host in brackets, `nats://[::1]:4222`; a path after the port
/// is ignored).
///
/// Its ``description`` never shows a password or a token, so an error message or a log line that
/// names the endpoint cannot leak one.
public struct NATSEndpoint: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    /// How the client proves who it is in its `CONNECT` (the server's `authorization` block).
    public enum Credentials: Sendable, Equatable {
        /// `user` and `pass`.
        case user(String, password: String)
        /// `auth_token`.
        case token(String)
        /// `nkey` (the public key) and `sig` (the server's nonce signed with the seed).
        case nkey(NATSUserKey)
        /// `jwt` (a user's JWT, issued by an account in operator mode) and `sig` (the nonce signed
        /// with the seed of the user the JWT names): what a `.creds` file holds.
        case userJWT(String, key: NATSUserKey)
    }

    /// The host name or address (an IPv6 address without its brackets).
    public var host: String
    /// The client port.
    public var port: UInt16
    /// What `CONNECT` sends to authenticate; nil: nothing.
    public var credentials: Credentials?

    /// The same as ``description``: a debugger's or `debugPrint`'s view shows no secret either.
    public var debugDescription: String { description }

    /// A mirror of ``description`` alone, so `dump` and test failure messages show no secret.
    public var customMirror: Mirror { Mirror(self, children: ["endpoint": description]) }

    /// An endpoint for `host` and `port`.
    public init(host: String, port: UInt16, credentials: Credentials? = nil) {
        self.host = host
        self.port = port
        self.credentials = credentials
    }

    /// Reads `url`; nil when it is not a `nats://` URL with a host and a port from 1 to 65535, or
    /// its user, password or token is empty or badly percent-encoded.
    public init?(url: String) {
        guard url.hasPrefix("nats://") else { return nil }
        let authority = url.dropFirst("nats://".count).prefix { $0 != "/" }
        var address = Substring(authority)
        var credentials: Credentials?
        if let at = authority.lastIndex(of: "@") {
            address = authority[authority.index(after: at)...]
            let userInfo = authority[..<at]
            if let colon = userInfo.firstIndex(of: ":") {
                guard let user = String(userInfo[..<colon]).removingPercentEncoding,
                    let password = String(userInfo[userInfo.index(after: colon)...]).removingPercentEncoding,
                    !user.isEmpty, !password.isEmpty
                else { return nil }
                credentials = .user(user, password: password)
            } else {
                guard let token = String(userInfo).removingPercentEncoding, !token.isEmpty else { return nil }
                credentials = .token(token)
            }
        }
        let host: Substring
        let portText: Substring
        if address.hasPrefix("[") {
            guard let close = address.firstIndex(of: "]"), address[address.index(after: close)...].hasPrefix(":")
            else { return nil }
            host = address[address.index(after: address.startIndex)..<close]
            portText = address[address.index(close, offsetBy: 2)...]
        } else {
            let parts = address.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2 else { return nil }
            host = parts[0]
            portText = parts[1]
        }
        guard !host.isEmpty, portText.allSatisfy({ $0.isASCII && $0.isNumber }), let port = UInt16(portText), port > 0
        else { return nil }
        self.init(host: String(host), port: port, credentials: credentials)
    }

    /// `nats://HOST:PORT`, with `USER:***@` or `***@` before the host when there are credentials:
    /// never the secret itself.
    public var description: String {
        let shownHost = host.contains(":") ? "[\(host)]" : host
        switch credentials {
        case nil: return "nats://\(shownHost):\(port)"
        case let .user(user, _): return "nats://\(user):***@\(shownHost):\(port)"
        case .token: return "nats://***@\(shownHost):\(port)"
        case let .nkey(key): return "nats://\(shownHost):\(port) (\(key))"
        case let .userJWT(_, key): return "nats://\(shownHost):\(port) (JWT of \(key))"
        }
    }

    /// The members of a `CONNECT` that authenticate: `"user":…,"pass":…`, `"auth_token":…`,
    /// `"nkey":…,"sig":…` or `"jwt":…,"sig":…` (the server's `nonce` signed) and a trailing comma,
    /// or nothing.
    func connectMembers(nonce: String?) -> String {
        switch credentials {
        case nil: return ""
        case let .user(user, password):
            return #""user":\#(Self.quoted(user)),"pass":\#(Self.quoted(password)),"#
        case let .token(token): return #""auth_token":\#(Self.quoted(token)),"#
        case let .nkey(key):
            return #""nkey":\#(Self.quoted(key.publicKey)),"sig":\#(Self.quoted(key.signature(nonce: nonce ?? ""))),"#
        case let .userJWT(jwt, key):
            return #""jwt":\#(Self.quoted(jwt)),"sig":\#(Self.quoted(key.signature(nonce: nonce ?? ""))),"#
        }
    }

    /// Reads a NATS credentials file (what `nsc` writes, `NAME.creds`): the user's JWT between
    /// `-----BEGIN NATS USER JWT-----` and the next line of dashes, and the user's seed between
    /// `-----BEGIN USER NKEY SEED-----` and the next; nil when `text` holds no such JWT block.
    /// - Throws: ``NATSUserKey/SeedProblem`` when the seed block is missing or does not read.
    public static func credentialsFile(_ text: String) throws(NATSUserKey.SeedProblem) -> Credentials? {
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        func block(_ name: String) -> String? {
            guard let start = lines.firstIndex(where: { $0.hasPrefix("-----BEGIN \(name)") }) else { return nil }
            return lines[(start + 1)...].first { !$0.isEmpty && !$0.hasPrefix("---") }
        }
        guard let jwt = block("NATS USER JWT") else { return nil }
        guard let seed = block("USER NKEY SEED") else { throw .missing }
        return .userJWT(jwt, key: try NATSUserKey(seed: seed))
    }

    /// `url` without the user information before an `@` in its authority (where a password or a
    /// token would be), for an error message about a URL that did not read.
    public static func withoutUserInfo(_ url: String) -> String {
        guard let scheme = url.range(of: "://") else { return url }
        let rest = url[scheme.upperBound...]
        let authority = rest.prefix { $0 != "/" }
        guard let at = authority.lastIndex(of: "@") else { return url }
        return String(url[..<scheme.upperBound]) + "***" + String(rest[at...])
    }

    /// `text` as a JSON string literal.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20:
                out +=
                    "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                    + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
