import Foundation

/// What the contact aggregate decides (`contact.import` spans many contacts' streams; the engine
/// decides it contact by contact).
public enum ContactCommand: Sendable, Equatable {
    /// `contact.upsert`.
    case upsert(ContactInput)
    /// `contact.import`: up to ``maximumImportSize`` contacts.
    case `import`([ContactInput])
    /// `contact.erase`.
    case erase(contactId: String)

    /// The most contacts one import may carry.
    public static let maximumImportSize = 100_000

    /// The part of the wire name after `contact.`.
    public var verb: String {
        switch self {
        case .upsert: return "upsert"
        case .import: return "import"
        case .erase: return "erase"
        }
    }
}

/// What a tenant's contact schema decides.
public enum SchemaCommand: Sendable, Equatable {
    /// `field.define`: a new contact field (`values` for an enum).
    case defineField(name: String, type: String, values: [String]? = nil)
    /// `field.update`: the values of an enum field the tenant defined, keeping every value it has
    /// (contacts and segment rules may hold them), new ones added and the order as given.
    case updateField(name: String, values: [String])

    /// The part of the wire name after `field.`.
    public var verb: String {
        switch self {
        case .defineField: return "define"
        case .updateField: return "update"
        }
    }

    /// The field the command is about.
    public var name: String {
        switch self {
        case let .defineField(name, _, _), let .updateField(name, _): return name
        }
    }
}

/// A contact's attributes in an upsert or import.
public struct ContactInput: Sendable, Equatable {
    /// The contact's id (`ctc_…`).
    public var contactId: String
    /// Attribute values; null removes an attribute.
    public var attributes: JSONObject
    /// Why an item of an import could not be read (not an object, an id that is none, attributes
    /// that are not an object …), or nil: an import reports it at the item's index, as it reports an
    /// item its checks refuse, and goes on with the others.
    public var refusal: CampaignError?

    /// Creates an input; `refusal` for an import's item that could not be read.
    public init(contactId: String, attributes: JSONObject, refusal: CampaignError? = nil) {
        self.contactId = contactId
        self.attributes = attributes
        self.refusal = refusal
    }
}
