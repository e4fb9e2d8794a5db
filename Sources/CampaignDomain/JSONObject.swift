import Foundation

/// The members of a JSON object, kept in the order they are written in: sorted by their keys'
/// UTF-8 bytes, each key once.
///
/// Keys are told apart by their bytes, as RFC 8259 §8.3 advises for interoperable names: `é` and
/// `e` with a combining accent are two keys. Keeping the members sorted, instead of in a hashed
/// `Dictionary`, means writing an object never sorts it, and making or reading one never hashes a
/// key. Objects here are small (a request, an event, a state), so a lookup scans them; a large one
/// (an import's values) is searched by halves.
public struct JSONObject: Sendable, Equatable, RandomAccessCollection, ExpressibleByDictionaryLiteral {
    /// A member: its key and value.
    public typealias Element = (key: String, value: JSON)

    /// Sorted by key bytes, keys unique.
    private var members: [Element]

    /// An object with no members, `{}`.
    public init() { members = [] }

    /// An object of these members, which must have unique keys (as a dictionary literal must).
    public init(dictionaryLiteral elements: (String, JSON)...) {
        self.init(uniqueKeysWithValues: elements)
    }

    /// An object of these members, which must have unique keys; a repeated key is a programming
    /// error, as it is for `Dictionary(uniqueKeysWithValues:)`. Members given in key order (as the
    /// engine writes its answers) are kept as given, in the one array made here.
    public init(uniqueKeysWithValues elements: some Sequence<(String, JSON)>) {
        var members = [Element]()
        members.reserveCapacity(elements.underestimatedCount)
        for (key, value) in elements { members.append((key, value)) }
        switch JSONObject.sorted(members) {
        case let .success(sorted): self.members = sorted
        case let .failure(repeated): preconditionFailure("an object's keys must be unique: \(repeated.key) repeats")
        }
    }

    /// A key's second appearance: where it is among the members given.
    struct Repeat: Error {
        var index: Int
        var key: String
    }

    /// `members` (in the order given) sorted by key bytes, or the first repeated key in that order.
    /// Members already in order (most literals, and whatever was written canonically) cost one
    /// comparison each; up to 32 are each inserted where they go from the end, and more are sorted
    /// as a whole.
    static func sorted(_ members: [Element]) -> Result<[Element], Repeat> {
        if isSorted(members) { return .success(members) }
        if members.count <= 32 {
            // Inserted in the order given: the first equal key met is the first repeat.
            var sorted = [Element]()
            sorted.reserveCapacity(members.count)
            for (index, member) in members.enumerated() {
                var place = sorted.count
                sorted.append(member)
                while place > 0 {
                    let order = compare(sorted[place - 1].key, member.key)
                    if order == 0 { return .failure(Repeat(index: index, key: member.key)) }
                    if order < 0 { break }
                    sorted.swapAt(place - 1, place)
                    place -= 1
                }
            }
            return .success(sorted)
        }
        // Sorted by key, then by place given: a repeat follows its first appearance.
        let order = members.indices.sorted { a, b in
            let order = compare(members[a].key, members[b].key)
            return order != 0 ? order < 0 : a < b
        }
        var first: Int?
        for (previous, next) in zip(order, order.dropFirst())
        where compare(members[previous].key, members[next].key) == 0 {
            first = Swift.min(first ?? next, next)
        }
        if let first { return .failure(Repeat(index: first, key: members[first].key)) }
        return .success(order.map { members[$0] })
    }

    /// The object of a dictionary's members.
    public init(_ dictionary: [String: JSON]) {
        self.init(uniqueKeysWithValues: dictionary.lazy.map { ($0.key, $0.value) })
    }

    /// An object of members already sorted by key bytes, keys unique (the parser checks both).
    init(sortedUnique members: [Element]) { self.members = members }

    /// Whether the members are in strictly ascending key order.
    private static func isSorted(_ members: [Element]) -> Bool {
        for index in members.indices.dropFirst() where compare(members[index - 1].key, members[index].key) >= 0 {
            return false
        }
        return true
    }

    /// The first member's position, 0 (members are kept in key order).
    public var startIndex: Int { 0 }
    /// Past the last position.
    public var endIndex: Int { members.count }

    /// The member at `position`, in key order.
    public subscript(position: Int) -> Element { members[position] }

    /// The value of `key`, or nil; setting nil removes the member.
    public subscript(key: String) -> JSON? {
        get { index(forKey: key).map { members[$0].value } }
        set {
            if let newValue { updateValue(newValue, forKey: key) } else { removeValue(forKey: key) }
        }
    }

    /// The keys in byte order of their UTF-8, as the canonical bytes write them.
    public var keys: [String] { members.map(\.key) }

    /// The values, in key order.
    public var values: [JSON] { members.map(\.value) }

    /// The position of `key`, or nil.
    public func index(forKey key: String) -> Int? {
        if members.count <= 8 {
            // A lookup needs no order: keys of another length are passed over unread.
            var key = key
            return key.withUTF8 { wanted in
                members.indices.first { JSONObject.same(members[$0].key, UnsafeRawBufferPointer(wanted)) }
            }
        }
        switch position(of: key) {
        case let .found(index): return index
        case .insert: return nil
        }
    }

    /// Sets `key` to `value`, returning the value it replaced.
    @discardableResult
    public mutating func updateValue(_ value: JSON, forKey key: String) -> JSON? {
        switch position(of: key) {
        case let .found(index):
            let old = members[index].value
            members[index].value = value
            return old
        case let .insert(index):
            members.insert((key, value), at: index)
            return nil
        }
    }

    /// Removes `key`'s member, returning its value.
    @discardableResult
    public mutating func removeValue(forKey key: String) -> JSON? {
        guard let index = index(forKey: key) else { return nil }
        return members.remove(at: index).value
    }

    /// The members that pass `isIncluded`.
    public func filter(_ isIncluded: (Element) throws -> Bool) rethrows -> JSONObject {
        JSONObject(sortedUnique: try members.filter(isIncluded))
    }

    /// The same keys with transformed values.
    public func mapValues(_ transform: (JSON) throws -> JSON) rethrows -> JSONObject {
        JSONObject(sortedUnique: try members.map { ($0.key, try transform($0.value)) })
    }

    /// The values `transform` makes something of, by key.
    public func compactMapValues<T>(_ transform: (JSON) throws -> T?) rethrows -> [String: T] {
        var result = [String: T](minimumCapacity: members.count)
        for (key, value) in members { result[key] = try transform(value) }
        return result
    }

    /// This object with `other`'s members added; where both have a key, `combine` picks the value.
    /// One pass over both, as both are in key order.
    public func merging(
        _ other: JSONObject, uniquingKeysWith combine: (JSON, JSON) throws -> JSON
    ) rethrows
        -> JSONObject
    {
        var merged = [Element]()
        merged.reserveCapacity(members.count + other.members.count)
        var mine = members[...]
        var theirs = other.members[...]
        while let first = mine.first, let second = theirs.first {
            let order = JSONObject.compare(first.key, second.key)
            if order < 0 {
                merged.append(first)
                mine = mine.dropFirst()
            } else if order > 0 {
                merged.append(second)
                theirs = theirs.dropFirst()
            } else {
                merged.append((first.key, try combine(first.value, second.value)))
                mine = mine.dropFirst()
                theirs = theirs.dropFirst()
            }
        }
        merged += mine
        merged += theirs
        return JSONObject(sortedUnique: merged)
    }

    /// Two objects are equal when they have the same keys with equal values.
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        lhs.members.count == rhs.members.count
            && zip(lhs.members, rhs.members).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    private enum Position {
        case found(Int)
        case insert(Int)
    }

    /// Where `key` is, or where it would go, found by halving.
    private func position(of key: String) -> Position {
        var key = key
        return key.withUTF8 { wanted in
            let wanted = UnsafeRawBufferPointer(wanted)
            var low = 0
            var high = members.count
            while low < high {
                let middle = (low + high) / 2
                switch JSONObject.compare(members[middle].key, wanted) {
                case 0: return .found(middle)
                case 1: high = middle
                default: low = middle + 1
                }
            }
            return .insert(low)
        }
    }

    /// Whether `key`'s bytes are `other`.
    static func same(_ key: String, _ other: UnsafeRawBufferPointer) -> Bool {
        guard key.utf8.count == other.count else { return false }
        return compare(key, other) == 0
    }

    /// -1, 0 or 1 as `key`'s bytes sort before, equal or after `other`'s.
    static func compare(_ key: String, _ other: String) -> Int {
        var other = other
        return other.withUTF8 { compare(key, UnsafeRawBufferPointer($0)) }
    }

    /// -1, 0 or 1 as `key`'s bytes sort before, equal or after `other`.
    static func compare(_ key: String, _ other: UnsafeRawBufferPointer) -> Int {
        var key = key
        return key.withUTF8 { bytes in
            let bytes = UnsafeRawBufferPointer(bytes)
            if bytes.count == other.count,
                bytes.isEmpty || memcmp(bytes.baseAddress!, other.baseAddress!, bytes.count) == 0
            {
                return 0
            }
            return ByteOrder.precedes(bytes, other) ? -1 : 1
        }
    }
}
