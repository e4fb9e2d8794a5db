import Foundation

/// Roles, ordered: viewer < editor < admin.
public enum Role: String, Sendable, Comparable, CaseIterable {
    /// Reads only.
    case viewer
    /// Reads and writes.
    case editor
    /// Also runs admin commands (`field.define`, `field.update`, `contact.erase`).
    case admin

    private var rank: Int {
        switch self {
        case .viewer: return 0
        case .editor: return 1
        case .admin: return 2
        }
    }

    /// Whether `lhs` ranks below `rhs`.
    public static func < (lhs: Role, rhs: Role) -> Bool { lhs.rank < rhs.rank }
}

/// Who sends a request: a subject of a tenant, with a role, scopes and a token expiry. The host
/// authenticates; the engine authorises. No token is ever part of a principal.
public struct Principal: Sendable, Equatable {
    /// The tenant whose data the principal may touch.
    public var tenant: String
    /// The user or service id.
    public var subject: String
    /// The role, viewer < editor < admin: each command needs at least its permission's ``Permission/minimumRole``.
    public var role: Role
    /// Granted scopes, such as `campaigns:write`.
    public var scopes: Set<String>
    /// When the host's token for this principal expires.
    public var expiresAt: Date

    /// A principal of `tenant` acting as `subject` with `role` and `scopes`, until `expiresAt` (`TOKEN_EXPIRED` after).
    public init(tenant: String, subject: String, role: Role, scopes: Set<String>, expiresAt: Date) {
        self.tenant = tenant
        self.subject = subject
        self.role = role
        self.scopes = scopes
        self.expiresAt = expiresAt
    }

    /// Every scope of SPEC.md §6.
    public static let allScopes: Set<String> = [
        "campaigns:read", "campaigns:write", "segments:read", "segments:write", "contacts:read", "contacts:write",
        "social:read", "social:write", "experiments:read", "experiments:write", "audit:read",
    ]

    /// The rule ``isValidTenant(_:)`` checks, as error messages state it.
    public static let tenantRule = "1–64 of a-z, 0-9, _ and -, starting with a letter or digit"

    /// Tenant ids: 1–64 of `[a-z0-9_-]`, starting with a letter or digit.
    public static func isValidTenant(_ tenant: String) -> Bool {
        let utf8 = Array(tenant.utf8)
        guard (1...64).contains(utf8.count), let first = utf8.first,
            (97...122).contains(first) || (48...57).contains(first)
        else { return false }
        return utf8.allSatisfy { (97...122).contains($0) || (48...57).contains($0) || $0 == 95 || $0 == 45 }
    }

    /// The rule ``isValidSubject(_:)`` checks, as error messages state it.
    public static let subjectRule = "1–128 printable ASCII characters without spaces"

    /// Subjects: 1–128 printable ASCII characters without spaces.
    public static func isValidSubject(_ subject: String) -> Bool {
        let utf8 = Array(subject.utf8)
        return (1...128).contains(utf8.count) && utf8.allSatisfy { (33...126).contains($0) }
    }
}

/// What a command or query needs: a scope, a minimum role, and for a request that reads what
/// another family's scope guards, that scope too.
public struct Permission: Sendable, Equatable {
    /// The scope that must be granted: the family's (`segments:write` for `segment.create`).
    public var scope: String
    /// The lowest role allowed.
    public var minimumRole: Role
    /// A second scope that must be granted, checked after ``scope``: a segment's rules are matched
    /// against contacts' values, and its members can be listed, so writing rules reads those values
    /// (`contacts:read`), as `segment.preview` does. Nil for most requests.
    public var reads: String?

    /// A permission that needs `scope` (and `reads`, when given) granted and a role of at least
    /// `minimumRole`.
    public init(scope: String, minimumRole: Role, reads: String? = nil) {
        self.scope = scope
        self.minimumRole = minimumRole
        self.reads = reads
    }
}

/// Authorisation, in the order of SPEC.md §5: principal present and known, token not expired,
/// role high enough, scope granted.
public enum Authorizer {
    /// Throws the first rule the principal breaks.
    /// - Parameter isKnownSubject: the host's directory of subjects, when it has one.
    public static func authorize(
        _ principal: Principal?, for permission: Permission, now: Date,
        isKnownSubject: (String, String) -> Bool = { _, _ in true }
    ) throws(CampaignError) -> Principal {
        guard let principal else { throw CampaignError(.unauthorized, "a principal is required") }
        // A malformed tenant or subject is named, so a host sees which of its values is wrong (the
        // rules are public); a well-formed subject the host's directory rejects is only "unknown".
        guard Principal.isValidTenant(principal.tenant) else {
            throw CampaignError(
                .unauthorized, "tenant must be \(Principal.tenantRule)",
                pointer: "/principal/tenant")
        }
        guard Principal.isValidSubject(principal.subject) else {
            throw CampaignError(
                .unauthorized, "subject must be \(Principal.subjectRule)",
                pointer: "/principal/subject")
        }
        guard isKnownSubject(principal.tenant, principal.subject) else {
            throw CampaignError(.unauthorized, "unknown subject")
        }
        guard principal.expiresAt > now else {
            throw CampaignError(.tokenExpired, "the token expired at \(Timestamp.format(principal.expiresAt))")
        }
        guard principal.role >= permission.minimumRole else {
            throw CampaignError(
                .forbidden,
                "role \(principal.role.rawValue) may not do this; \(permission.minimumRole.rawValue) or "
                    + "higher is required"
            )
        }
        guard principal.scopes.contains(permission.scope) else {
            throw CampaignError(.invalidScope, "scope \(permission.scope) is required", param: permission.scope)
        }
        if let reads = permission.reads, !principal.scopes.contains(reads) {
            throw CampaignError(
                .invalidScope, "scope \(reads) is required as well: the request reads what that scope guards",
                param: reads)
        }
        return principal
    }
}
