/// What each channel's messages carry, checked wherever content meets a channel: a campaign's
/// `create` and `update` (the content against the channel it will have), and an experiment's
/// variants (each variant's content against its campaign's channel, at `create`, `update` and
/// `start`).
///
/// | channel | subject | body |
/// |---|---|---|
/// | email | required (the subject line) | the common limits |
/// | sms | none | at most 1,600 UTF-16 code units (carriers' concatenated maximum) |
/// | push | optional (the title) | title and body together at most 3,500 bytes of UTF-8 (APNs and FCM carry 4 KiB) |
/// | whatsapp | none | at most 4,096 characters (WhatsApp's text message limit) |
/// | social | optional | the common limits (a post is checked against each platform it targets) |
///
/// The common limits (``Content/problems(at:field:)``) hold on every channel.
extension Channel {
    /// The most UTF-16 code units an SMS body may hold.
    public static let smsBodyLimit = 1_600
    /// The most bytes of UTF-8 a push notification's title and body may hold together.
    public static let pushTextLimit = 3_500
    /// The most characters a WhatsApp body may hold.
    public static let whatsAppBodyLimit = 4_096

    /// What keeps `content` from being sent on this channel, each problem pointing below `pointer`
    /// and naming a field below `field`; empty when it fits. Checks only what the channel adds to
    /// ``Content/problems(at:field:)``.
    public func problems(with content: Content, at pointer: String, field: String = "content") -> [FieldProblem] {
        func problem(_ member: String, _ message: String) -> FieldProblem {
            FieldProblem(field: field + "." + member, pointer: pointer + "/" + member, message: message)
        }
        var problems = [FieldProblem]()
        switch self {
        case .email:
            if content.subject.map(TextRules.showsNothing) ?? true {
                problems.append(problem("subject", "an email needs a subject"))
            }
        case .sms, .whatsapp:
            if content.subject != nil {
                problems.append(problem("subject", "\(self == .sms ? "an SMS" : "a WhatsApp message") has no subject"))
            }
            if self == .sms, case let units = content.body.utf16.count, units > Self.smsBodyLimit {
                problems.append(
                    problem("body", "an SMS body must be at most \(Self.smsBodyLimit) UTF-16 code units, not \(units)"))
            }
            // Only a body of more than 4,096 UTF-16 code units can have more than 4,096 characters.
            if self == .whatsapp, content.body.utf16.count > Self.whatsAppBodyLimit,
                case let characters = content.body.count, characters > Self.whatsAppBodyLimit
            {
                problems.append(
                    problem(
                        "body",
                        "a WhatsApp body must be at most \(Self.whatsAppBodyLimit) characters, not \(characters)"))
            }
        case .push:
            let bytes = content.body.utf8.count + (content.subject?.utf8.count ?? 0)
            if bytes > Self.pushTextLimit {
                problems.append(
                    problem(
                        "body",
                        "a push notification's title and body must be at most \(Self.pushTextLimit) bytes of "
                            + "UTF-8 together, not \(bytes)"))
            }
        case .social:
            break
        }
        return problems
    }
}
