import Foundation

/// What the social-connection aggregate decides.
public enum SocialCommand: Sendable, Equatable {
    /// `social.connect`: `credentialRef` names a secret in the host's vault, never the secret;
    /// `textLimit`, the account's own text limit where its platform lets accounts differ (nil: the
    /// platform's, ``PlatformRules/accountTextLimits``).
    case connect(
        connectionId: String, platform: String, accountId: String, credentialRef: String, expiresAt: Date,
        textLimit: Int? = nil)
    /// `social.refresh`: a new expiry, and perhaps a new reference or a new own text limit
    /// (``FieldUpdate/remove``: back to the platform's).
    case refresh(
        connectionId: String, credentialRef: String? = nil, expiresAt: Date, textLimit: FieldUpdate<Int>? = nil)
    /// `social.disconnect`.
    case disconnect(connectionId: String)

    /// The connection the command is about.
    public var connectionId: String {
        switch self {
        case let .connect(id, _, _, _, _, _), let .refresh(id, _, _, _), let .disconnect(id): return id
        }
    }

    /// The part of the wire name after `social.`.
    public var verb: String {
        switch self {
        case .connect: return "connect"
        case .refresh: return "refresh"
        case .disconnect: return "disconnect"
        }
    }
}
