import Foundation

/// Resource ids: a type prefix, `_`, then 1–64 of `[A-Za-z0-9_-]`.
public enum Identifier {
    /// Whether `id` is well-formed for `prefix`.
    public static func isValid(_ id: String, prefix: String) -> Bool {
        // Read in place (each request checks several ids): no array or joined string is made.
        let utf8 = id.utf8
        let head = prefix.utf8.count + 1
        guard utf8.count > head, utf8.count <= head + 64, utf8.starts(with: prefix.utf8),
            utf8.dropFirst(head - 1).first == UInt8(ascii: "_")
        else { return false }
        return utf8.dropFirst(head).allSatisfy { byte in
            (48...57).contains(byte) || (65...90).contains(byte) || (97...122).contains(byte)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
    }

    /// A fresh id: the prefix and 16 base-32 characters (80 random bits).
    public static func make(prefix: String, using random: inout some RandomNumberGenerator) -> String {
        let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz")
        var out = prefix + "_"
        for _ in 0..<16 { out.append(alphabet[Int(random.next() % 32)]) }
        return out
    }
}

/// ISO 8601 timestamps without Foundation's formatters (which are slow to create and not Sendable).
public enum Timestamp {
    /// What a text is read as: a moment the engine acts at, or a date a contact holds.
    public enum Form: Sendable {
        /// A moment: a send or publish time, an expiry, a clock. Years 1970–9999, a time of day.
        case moment
        /// A contact's date value, or a segment rule's (a birthday, a customer since 1962): a
        /// bare date `YYYY-MM-DD` (midnight UTC) is one too. Years 0001–9999.
        case dateValue
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, or a bare date `YYYY-MM-DD` (midnight UTC)
    /// as a ``Form/dateValue``. A fraction of 1–9 digits is cut to the millisecond; the years
    /// allowed are the form's.
    public static func parse(_ text: String, as form: Form = .moment) -> Date? {
        let b = Array(text.utf8)
        func number(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= b.count else { return nil }
            var value = 0
            for i in from..<(from + count) {
                guard (48...57).contains(b[i]) else { return nil }
                value = value * 10 + Int(b[i] - 48)
            }
            return value
        }
        guard b.count >= 10, let year = number(0, 4), b[4] == UInt8(ascii: "-"), let month = number(5, 2),
            b[7] == UInt8(ascii: "-"), let day = number(8, 2), (form == .moment ? 1970 : 1) <= year,
            (1...12).contains(month),
            (1...daysInMonth(year, month)).contains(day)
        else { return nil }
        let days = daysFromCivil(year, month, day)
        if b.count == 10 { return form == .dateValue ? Date(timeIntervalSince1970: Double(days) * 86_400) : nil }
        guard b.count >= 20, b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t"), let hour = number(11, 2),
            b[13] == UInt8(ascii: ":"), let minute = number(14, 2), b[16] == UInt8(ascii: ":"),
            let second = number(17, 2),
            hour < 24, minute < 60, second < 60
        else { return nil }
        var index = 19
        // Milliseconds, the precision every time is stored and answered in: digits past the third
        // are cut, as ``format(_:)`` cuts, so a time is compared (with now, say) as it is kept.
        var millis = 0
        if b[index] == UInt8(ascii: ".") {
            index += 1
            let start = index
            while index < b.count, (48...57).contains(b[index]) {
                if index - start < 3 { millis += Int(b[index] - 48) * [100, 10, 1][index - start] }
                index += 1
            }
            guard index > start, index - start <= 9 else { return nil }
        }
        guard index < b.count else { return nil }
        var offsetSeconds = 0
        if b[index] == UInt8(ascii: "Z") || b[index] == UInt8(ascii: "z") {
            index += 1
        } else if b[index] == UInt8(ascii: "+") || b[index] == UInt8(ascii: "-") {
            guard let oh = number(index + 1, 2), b.count > index + 3, b[index + 3] == UInt8(ascii: ":"),
                let om = number(index + 4, 2), oh < 24, om < 60
            else { return nil }
            offsetSeconds = (oh * 3600 + om * 60) * (b[index] == UInt8(ascii: "+") ? 1 : -1)
            index += 6
        } else {
            return nil
        }
        guard index == b.count else { return nil }
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
        return Date(timeIntervalSince1970: Double(seconds * 1_000 + millis) / 1_000)
    }

    /// `YYYY-MM-DDTHH:MM:SS[.mmm]Z` in UTC; milliseconds only when not zero. Written digit by
    /// digit: `String(format:)` is slow enough to dominate projection rebuilds.
    public static func format(_ date: Date) -> String {
        var bytes = [UInt8]()
        bytes.reserveCapacity(24)
        append(date, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends ``format(_:)``'s text to `bytes` (ASCII, nothing a JSON string must escape).
    public static func append(_ date: Date, to bytes: inout [UInt8]) {
        // Cut to the millisecond, except that a value within a microsecond (or a few units of
        // its last place, far from 1970) of a whole millisecond is that millisecond: a date made
        // from N milliseconds (as stored) is a hair below N as a double about one time in
        // twenty-five, and cut straight it printed N − 1.
        let scaled = date.timeIntervalSince1970 * 1_000
        let nearest = scaled.rounded()
        let totalMillis = Int64(abs(scaled - nearest) <= max(0.001, 8 * scaled.ulp) ? nearest : scaled.rounded(.down))
        let millis = Int(((totalMillis % 1000) + 1000) % 1000)
        let totalSeconds = (totalMillis - Int64(millis)) / 1000
        let days = Int(totalSeconds >= 0 ? totalSeconds / 86_400 : (totalSeconds - 86_399) / 86_400)
        let secondOfDay = Int(totalSeconds - Int64(days) * 86_400)
        let (year, month, day) = civilFromDays(days)
        // The last `width` decimal digits of `value` (0 when negative), each by a constant divisor,
        // which compiles to a multiplication: a divisor held in a variable divided, twenty times a
        // timestamp, for most of a campaign answer's encoding.
        func digit(_ value: Int) { bytes.append(UInt8(48 + value % 10)) }
        func two(_ value: Int) {
            digit(max(0, value) / 10)
            digit(max(0, value))
        }
        digit(max(0, year) / 1000)
        digit(max(0, year) / 100)
        two(year)
        bytes.append(45)
        two(month)
        bytes.append(45)
        two(day)
        bytes.append(84)
        two(secondOfDay / 3600)
        bytes.append(58)
        two(secondOfDay / 60 % 60)
        bytes.append(58)
        two(secondOfDay % 60)
        if millis != 0 {
            bytes.append(46)
            digit(millis / 100)
            two(millis)
        }
        bytes.append(90)
    }

    static func isLeap(_ year: Int) -> Bool { (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 }

    static func daysInMonth(_ year: Int, _ month: Int) -> Int {
        [31, isLeap(year) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    }

    /// Days since 1970-01-01 (Howard Hinnant's algorithm).
    static func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civilFromDays(_ days: Int) -> (Int, Int, Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}

/// RFC 6901 JSON Pointers, as errors name the field they are about.
public enum JSONPointer {
    /// `base` extended by one reference token, escaped per RFC 6901.
    public static func appending(_ base: String, _ token: String) -> String {
        // Most tokens need no escaping; Foundation's string replacement is slow enough to show in profiles.
        guard token.utf8.contains(where: { $0 == UInt8(ascii: "~") || $0 == UInt8(ascii: "/") }) else {
            return base + "/" + token
        }
        return base + "/" + token.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1")
    }

    /// `base` extended by an array index.
    public static func appending(_ base: String, _ index: Int) -> String { base + "/" + String(index) }
}

extension Identifier {
    /// A fresh id from the system's random source, for a host building a create command.
    public static func make(prefix: String) -> String {
        var random = SystemRandomNumberGenerator()
        return make(prefix: prefix, using: &random)
    }
}
