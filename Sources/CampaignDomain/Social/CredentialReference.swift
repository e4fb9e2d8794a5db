import Foundation

/// The rule for `credentialRef`: a *reference* to where the host keeps a secret, never the secret.
///
/// Accepted, 1–512 printable ASCII characters without spaces, in one of two shapes:
/// - a URI or URN with a scheme (`[a-z][a-z0-9+.-]*:`), with or without `//`:
///   `vault://secret/data/social/x`, `vault:secret/social/x`,
///   `arn:aws:secretsmanager:eu-west-1:123456789012:secret:social/x-AbCdEf`,
///   `gcpsm://projects/acme/secrets/x/versions/3`, `k8s://marketing/social-tokens/x`,
///   `env://X_TOKEN`, `op://Marketing/X/credential`;
/// - a resource path of at least two `/`-separated segments of `[A-Za-z0-9._@=+-]`:
///   `projects/acme/secrets/x-token/versions/latest`, `namespaces/marketing/secrets/x`.
///
/// Refused, because each is a way to carry the secret itself:
/// - user information in an authority (`https://user:s3cret@vault.example/x`, `vault://tok@host/x`);
/// - a query or a fragment (`…?token=…`, `…#…`);
/// - a segment shaped like a token: a well-known token prefix (`ghp_`, `github_pat_`, `glpat-`,
///   `xoxb-`, `sk_live_`, `sk-`, `AKIA…`, `ya29.`, `AIza`, a JWT's `eyJ…`), or a run of 24 or more
///   letters and digits that mixes upper case, lower case and digits (a random string, not a name);
/// - a scheme-less value that reads as random (a base64 key with `/` in it: 32+ characters mixing
///   cases and digits, ≥ 4.5 bits of entropy a character);
/// - anything else: spaces, control characters, non-ASCII, a bare word.
public enum CredentialReference {
    /// Why `value` is not an acceptable reference, or nil when it is.
    public static func problem(_ value: String) -> String? {
        let bytes = Array(value.utf8)
        guard (1...512).contains(bytes.count) else { return "credentialRef must be 1–512 characters" }
        guard bytes.allSatisfy({ (33...126).contains($0) }) else {
            return "credentialRef must be printable ASCII without spaces"
        }
        if value.contains("?") || value.contains("#") {
            return "credentialRef must not carry a query or a fragment (a secret could ride in it)"
        }
        let body: Substring
        if let scheme = scheme(of: value) {
            var rest = value.dropFirst(scheme.count + 1)
            if rest.hasPrefix("//") {
                rest = rest.dropFirst(2)
                let authority = rest.prefix { $0 != "/" }
                if authority.contains("@") {
                    return
                        "credentialRef must not hold user information (user:password@); name where the secret is kept"
                }
            }
            guard !rest.isEmpty else { return "credentialRef needs something after its scheme" }
            body = rest
        } else {
            let segments = value.split(separator: "/", omittingEmptySubsequences: false)
            let pathCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@=+-")
            guard segments.count >= 2, segments.allSatisfy({ !$0.isEmpty && $0.allSatisfy(pathCharacters.contains) })
            else {
                return
                    "credentialRef must be a reference such as vault://path/to/secret or "
                    + "projects/p/secrets/s, never a token"
            }
            if looksRandom(value) {
                return
                    "credentialRef looks like a secret (a random string), not a path; store the secret "
                    + "elsewhere and reference it"
            }
            body = value[...]
        }
        if let token = body.split(whereSeparator: { "/:=,;@".contains($0) }).first(where: isTokenShaped) {
            return
                "credentialRef holds a token-shaped segment (\(token.prefix(4))…); store the secret "
                + "elsewhere and reference it"
        }
        return nil
    }

    /// The scheme of a URI-shaped value (`vault`, `arn`), or nil.
    static func scheme(of value: String) -> Substring? {
        guard let colon = value.firstIndex(of: ":") else { return nil }
        let scheme = value[..<colon]
        guard let first = scheme.unicodeScalars.first, ("a"..."z").contains(first), scheme.count <= 32,
            scheme.unicodeScalars.allSatisfy({
                ("a"..."z").contains($0) || ("0"..."9").contains($0) || "+-.".unicodeScalars.contains($0)
            })
        else { return nil }
        return scheme
    }

    /// A scheme-less value that reads as random: 32 or more characters besides `/`, mixing upper
    /// case, lower case and digits, with at least 4.5 bits of entropy a character (a base64 key
    /// such as an AWS secret access key; resource paths made of words stay well below).
    static func looksRandom(_ value: String) -> Bool {
        let characters = value.filter { $0 != "/" }
        guard characters.count >= 32, characters.contains(where: \.isUppercase),
            characters.contains(where: \.isLowercase),
            characters.contains(where: \.isNumber)
        else { return false }
        var counts = [Character: Int]()
        for character in characters { counts[character, default: 0] += 1 }
        let total = Double(characters.count)
        let entropy = counts.values.reduce(0.0) { sum, count in
            let p = Double(count) / total
            return sum - p * log2(p)
        }
        return entropy >= 4.5
    }

    static let tokenPrefixes = [
        "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xoxb-", "xoxp-", "xoxa-",
        "xoxs-", "sk_live_", "sk_test_", "rk_live_", "sk-", "ya29.", "AIza", "eyJ",
    ]

    /// Whether a segment looks like a credential rather than a name.
    static func isTokenShaped(_ segment: Substring) -> Bool {
        if tokenPrefixes.contains(where: { segment.hasPrefix($0) && segment.count >= $0.count + 8 }) { return true }
        if segment.count == 20, segment.hasPrefix("AKIA") || segment.hasPrefix("ASIA"),
            segment.allSatisfy({ $0.isUppercase || $0.isNumber })
        {
            return true
        }
        // The longest run of letters and digits, mixing all three classes: random, not a word.
        for run in segment.split(whereSeparator: { !($0.isLetter || $0.isNumber) }) where run.count >= 24 {
            if run.contains(where: \.isUppercase), run.contains(where: \.isLowercase), run.contains(where: \.isNumber) {
                return true
            }
        }
        return false
    }
}
