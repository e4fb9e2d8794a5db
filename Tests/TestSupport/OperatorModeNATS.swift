import Foundation
import NATS
import Signing

/// A real `nats-server` in operator mode, set up as `nsc` would: an operator signs a system account
/// and an application account with JetStream, the account signs a user, and ``creds`` is that
/// user's credentials file (JWT and seed), what a client of the application account holds.
public final class OperatorModeNATS: Sendable {
    // Sendable as checked: every stored property is a constant of a Sendable type.
    /// The running server (no listener without operator-mode credentials).
    public let server: LocalNATSServer
    /// The user's `.creds` file text.
    public let creds: String
    /// The user's JWT alone.
    public let userJWT: String
    /// The user's public key (`U…`).
    public let userPublicKey: String
    private let directory: TemporaryDirectory
    /// The application account's key, which signs its users' JWTs.
    private let accountKey: Ed25519PrivateKey
    /// The application account's public key (`A…`), the issuer of its users' JWTs.
    private let account: String

    /// Makes fresh keys and JWTs and starts the server.
    public init() throws {
        let operatorKey = Ed25519PrivateKey.generate()
        let systemKey = Ed25519PrivateKey.generate()
        let accountKey = Ed25519PrivateKey.generate()
        self.accountKey = accountKey
        let userKey = Ed25519PrivateKey.generate()
        let op = NATSUserKey.publicKeyText(operatorKey.publicKey.bytes, kind: .operator)
        let system = NATSUserKey.publicKeyText(systemKey.publicKey.bytes, kind: .account)
        let account = NATSUserKey.publicKeyText(accountKey.publicKey.bytes, kind: .account)
        self.account = account
        userPublicKey = NATSUserKey.publicKeyText(userKey.publicKey.bytes, kind: .user)
        let now = Int(Date().timeIntervalSince1970)
        let unlimited = #""subs":-1,"data":-1,"payload":-1,"imports":-1,"exports":-1,"wildcards":true,"conn":-1,"#
        let operatorJWT = Self.jwt(
            #"{"jti":"OPERATOR","iat":\#(now),"iss":"\#(op)","name":"op","sub":"\#(op)","#
                + #""nats":{"type":"operator","version":2}}"#, signedBy: operatorKey)
        // JetStream needs a system account to start in operator mode.
        let systemJWT = Self.jwt(
            #"{"jti":"SYSTEM","iat":\#(now),"iss":"\#(op)","name":"SYS","sub":"\#(system)","#
                + #""nats":{"limits":{\#(unlimited)"leaf":-1},"type":"account","version":2}}"#, signedBy: operatorKey)
        let accountJWT = Self.jwt(
            #"{"jti":"ACCOUNT","iat":\#(now),"iss":"\#(op)","name":"app","sub":"\#(account)","#
                + #""nats":{"limits":{\#(unlimited)"leaf":-1,"mem_storage":-1,"disk_storage":-1,"streams":-1,"#
                + #""consumer":-1},"default_permissions":{"pub":{},"sub":{}},"type":"account","version":2}}"#,
            signedBy: operatorKey)
        userJWT = Self.userJWT(userPublicKey, issuer: account, signedBy: accountKey, expires: nil)
        directory = TemporaryDirectory()
        let configuration = directory.path + "/operator.conf"
        try """
        operator: "\(operatorJWT)"
        system_account: \(system)
        resolver: MEMORY
        resolver_preload: { \(system): "\(systemJWT)", \(account): "\(accountJWT)" }
        """.write(toFile: configuration, atomically: false, encoding: .utf8)
        creds = Self.creds(userJWT, seed: userKey.seed)
        server = try LocalNATSServer(arguments: ["-c", configuration])
    }

    /// Starts the server again on its port, with its configuration and its JetStream store, once
    /// ``server`` was stopped; the caller stops the one returned.
    public func restart() throws -> LocalNATSServer {
        try LocalNATSServer(
            port: server.port, storeDirectory: server.storePath, arguments: ["-c", directory.path + "/operator.conf"])
    }

    /// The `.creds` file text of a new user of the application account whose JWT expires at
    /// `expires` (nil: never), as `nsc add user --expiry` writes it.
    public func newUserCreds(expires: Date?) -> String {
        let key = Ed25519PrivateKey.generate()
        let user = NATSUserKey.publicKeyText(key.publicKey.bytes, kind: .user)
        return Self.creds(Self.userJWT(user, issuer: account, signedBy: accountKey, expires: expires), seed: key.seed)
    }

    /// A user's JWT, issued and signed by its account, with an `exp` claim when it expires.
    static func userJWT(_ user: String, issuer: String, signedBy key: Ed25519PrivateKey, expires: Date?) -> String {
        let now = Int(Date().timeIntervalSince1970)
        let exp = expires.map { #""exp":\#(Int($0.timeIntervalSince1970)),"# } ?? ""
        return jwt(
            #"{"jti":"USER\#(user.suffix(8))","iat":\#(now),\#(exp)"iss":"\#(issuer)","name":"relay","#
                + #""sub":"\#(user)","nats":{"pub":{},"sub":{},"subs":-1,"data":-1,"payload":-1,"type":"user","#
                + #""version":2}}"#,
            signedBy: key)
    }

    /// A `.creds` file as `nsc` writes it: the JWT and the user's seed, each between its markers.
    static func creds(_ jwt: String, seed: [UInt8]) -> String {
        """
        -----BEGIN NATS USER JWT-----
        \(jwt)
        ------END NATS USER JWT------

        ************************* IMPORTANT *************************
        NKEY Seed printed below can be used to sign and prove identity.
        NKEYs are sensitive and should be treated as secrets.

        -----BEGIN USER NKEY SEED-----
        \(NATSUserKey.seedText(seed, kind: .user))
        ------END USER NKEY SEED------

        *************************************************************

        """
    }

    /// A JWT as NATS's `jwt` library writes it: header and claims in base64url without padding,
    /// signed by the issuer's Ed25519 key.
    static func jwt(_ claims: String, signedBy issuer: Ed25519PrivateKey) -> String {
        let header = NATSUserKey.base64URL(Array(#"{"typ":"JWT","alg":"ed25519-nkey"}"#.utf8))
        let signed = header + "." + NATSUserKey.base64URL(Array(claims.utf8))
        return signed + "." + NATSUserKey.base64URL(issuer.signature(for: Array(signed.utf8)))
    }
}
