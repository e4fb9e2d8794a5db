import Foundation

/// The JetStream API over a ``NATSConnection``: streams are made and read through requests to
/// `$JS.API.…`, and a publish to a stream's subject is acknowledged with the sequence it got.
public struct JetStream: Sendable {
    /// The connection requests go through.
    public let connection: NATSConnection

    /// JetStream over `connection`.
    public init(_ connection: NATSConnection) { self.connection = connection }

    /// What JetStream answered to a publish.
    public struct PublishAck: Sendable, Equatable {
        /// The stream that stored it.
        public var stream: String
        /// Its sequence in the stream.
        public var sequence: UInt64
        /// True when the stream had it already (same `Nats-Msg-Id` within the duplicate window).
        public var duplicate: Bool
    }

    /// A stored message read back by sequence.
    public struct StoredMessage: Sendable {
        /// The subject it was published to.
        public var subject: String
        /// Its sequence in the stream.
        public var sequence: UInt64
        /// The headers it was published with, by name (`Nats-Msg-Id`, for one).
        public var headers: [String: String]
        /// The body it was published with.
        public var payload: [UInt8]
    }

    /// Makes the stream `name` over `subjects` (file storage, `replicas` copies in a cluster, a
    /// duplicate window of `window` seconds), or leaves an existing one as it is when it takes
    /// every one of `subjects`.
    /// - Throws: ``NATSError/jetStream(code:description:)`` with 10058 (JetStream's "stream name
    ///   already in use") when a stream of that name exists whose subjects do not take all of
    ///   `subjects`: a publish to one of the others would find no stream.
    public func ensureStream(
        _ name: String, subjects: [String], replicas: Int = 1, duplicateWindow window: Double = 120
    ) async throws {
        let config: [String: Any] = [
            "name": name, "subjects": subjects, "storage": "file", "retention": "limits",
            "duplicate_window": Int64(window * 1e9), "num_replicas": replicas,
        ]
        let reply = try await connection.request(
            "$JS.API.STREAM.CREATE.\(name)", payload: Array(try JSONSerialization.data(withJSONObject: config)))
        do {
            _ = try Self.answer(reply)
        } catch let NATSError.jetStream(code, _) where code == Self.nameInUseCode {
            // It exists: fine when it takes the subjects asked for.
            let info = try Self.answer(
                try await connection.request("$JS.API.STREAM.INFO.\(name)", payload: []))
            let held = (info["config"] as? [String: Any])?["subjects"] as? [String] ?? []
            let missing = subjects.filter { subject in !held.contains { Self.filter($0, takes: subject) } }
            guard missing.isEmpty else {
                throw NATSError.jetStream(
                    code: Self.nameInUseCode,
                    description: "stream \(name) exists with subjects \(held.joined(separator: ", ")), which do not "
                        + "take \(missing.joined(separator: ", "))")
            }
        }
    }

    /// JetStream's error code for a stream made with a name another stream has.
    public static let nameInUseCode = 10_058

    /// Whether every subject `subject` matches (a subject or a filter with `*` and `>`) also matches
    /// the stream subject `filter`: `campaign.>` takes `campaign.>` and `campaign.acme.>`, `>` takes
    /// everything, `campaign.*` does not take `campaign.>`.
    public static func filter(_ filter: String, takes subject: String) -> Bool {
        let held = filter.split(separator: ".", omittingEmptySubsequences: false)
        let asked = subject.split(separator: ".", omittingEmptySubsequences: false)
        for (index, token) in held.enumerated() {
            if token == ">" { return index < asked.count }
            guard index < asked.count else { return false }
            let wanted = asked[index]
            if wanted == ">" { return false }
            if token == "*" || token == wanted { continue }
            return false
        }
        return held.count == asked.count
    }

    /// The number of messages and the last sequence of a stream.
    public func streamState(_ name: String) async throws -> (messages: UInt64, lastSequence: UInt64) {
        let reply = try await connection.request("$JS.API.STREAM.INFO.\(name)", payload: [])
        let body = try Self.answer(reply)
        let state = body["state"] as? [String: Any] ?? [:]
        return (Self.integer(state["messages"]), Self.integer(state["last_seq"]))
    }

    /// The last message stream `name` holds: nil when it holds none (or the last was deleted).
    public func lastMessage(_ name: String) async throws -> StoredMessage? {
        let last = try await streamState(name).lastSequence
        guard last > 0 else { return nil }
        do {
            return try await message(name, sequence: last)
        } catch let NATSError.jetStream(code, _) where code == Self.noMessageCode {
            return nil
        }
    }

    /// JetStream's error code for a message asked for by sequence that the stream does not hold.
    public static let noMessageCode = 10_037

    /// Reads the message at `sequence` of stream `name`.
    public func message(_ name: String, sequence: UInt64) async throws -> StoredMessage {
        let reply = try await connection.request(
            "$JS.API.STREAM.MSG.GET.\(name)", payload: Array(#"{"seq":\#(sequence)}"#.utf8))
        let body = try Self.answer(reply)
        guard let message = body["message"] as? [String: Any], let subject = message["subject"] as? String else {
            throw NATSError.jetStream(code: 0, description: "no message in the answer")
        }
        let payload = (message["data"] as? String).flatMap { Data(base64Encoded: $0) }.map { Array($0) } ?? []
        var headers = [String: String]()
        if let encoded = message["hdrs"] as? String, let block = Data(base64Encoded: encoded) {
            for line in String(decoding: block, as: UTF8.self).components(separatedBy: "\r\n").dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return StoredMessage(
            subject: subject, sequence: Self.integer(message["seq"]), headers: headers, payload: payload)
    }

    /// Publishes `payload` to `subject` with `Nats-Msg-Id: id` (JetStream drops a repeat within
    /// its duplicate window) and calls `onAck` with JetStream's acknowledgement or the failure.
    ///
    /// With `expectedLastId`, the message also carries `Nats-Expected-Last-Msg-Id`: the stream
    /// stores it only if the last message it stored has that id, and otherwise refuses it with
    /// ``wrongLastIdCode`` and the id it holds last (``lastId(inRefusal:)``). A repeat is still
    /// answered as a duplicate, whatever it expects (nats-server checks the id first).
    public func publish(
        _ subject: String, id: String, payload: [UInt8], expectedLastId: String? = nil,
        onAck: @escaping @Sendable (Result<PublishAck, NATSError>) -> Void
    ) throws {
        var headers = [("Nats-Msg-Id", id)]
        if let expectedLastId { headers.append(("Nats-Expected-Last-Msg-Id", expectedLastId)) }
        try connection.request(subject, headers: headers, payload: payload) { reply in
            onAck(
                reply.flatMap { message in
                    if let ack = Self.plainAck(message.payload) { return .success(ack) }
                    do {
                        let body = try Self.answer(message)
                        return .success(
                            PublishAck(
                                stream: body["stream"] as? String ?? "", sequence: Self.integer(body["seq"]),
                                duplicate: body["duplicate"] as? Bool ?? false))
                    } catch {
                        return .failure(error as? NATSError ?? .connection("\(error)"))
                    }
                })
        }
    }

    /// JetStream's error code for a publish whose `Nats-Expected-Last-Msg-Id` is not the id of the
    /// stream's last message.
    public static let wrongLastIdCode = 10_070

    /// The id of the stream's last message, as a refusal with ``wrongLastIdCode`` names it
    /// (`wrong last msg ID: <id>`; empty when the server does not know it, as after a restart once
    /// the last message is older than the duplicate window); nil for any other error.
    public static func lastId(inRefusal error: NATSError) -> String? {
        guard case let .jetStream(code, description) = error, code == wrongLastIdCode else { return nil }
        let marker = "wrong last msg ID:"
        guard let range = description.range(of: marker) else { return "" }
        return description[range.upperBound...].trimmingCharacters(in: .whitespaces)
    }

    /// A publish's acknowledgement read straight from its bytes when it is the flat object JetStream
    /// sends (`{"stream":"S","seq":N}`, perhaps with `"duplicate":true` or other members whose
    /// values are plain strings, numbers or booleans); nil for anything else (an error, an escape, a
    /// nested value), which ``answer(_:)`` reads instead. One of these arrives for every message
    /// the relay publishes.
    static func plainAck(_ bytes: [UInt8]) -> PublishAck? {
        var index = 0
        func skipSpace() {
            while index < bytes.count,
                bytes[index] == 0x20 || bytes[index] == 0x09 || bytes[index] == 0x0A
                    || bytes[index] == 0x0D
            {
                index += 1
            }
        }
        func take(_ byte: Character) -> Bool {
            guard index < bytes.count, bytes[index] == byte.asciiValue else { return false }
            index += 1
            return true
        }
        /// A string without escapes or control characters.
        func string() -> ArraySlice<UInt8>? {
            guard take("\"") else { return nil }
            let start = index
            while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                guard bytes[index] >= 0x20, bytes[index] != UInt8(ascii: "\\") else { return nil }
                index += 1
            }
            guard index < bytes.count else { return nil }
            index += 1
            return bytes[start..<(index - 1)]
        }
        var stream: String?
        var sequence: UInt64?
        var duplicate = false
        skipSpace()
        guard take("{") else { return nil }
        repeat {
            skipSpace()
            guard let key = string() else { return nil }
            skipSpace()
            guard take(":") else { return nil }
            skipSpace()
            guard index < bytes.count else { return nil }
            switch bytes[index] {
            case UInt8(ascii: "\""):
                guard let value = string() else { return nil }
                if key.elementsEqual("stream".utf8) { stream = String(decoding: value, as: UTF8.self) }
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                var value: UInt64 = 0
                while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
                    let (times, overflow) = value.multipliedReportingOverflow(by: 10)
                    let (sum, carry) = times.addingReportingOverflow(UInt64(bytes[index] - UInt8(ascii: "0")))
                    guard !overflow, !carry else { return nil }
                    value = sum
                    index += 1
                }
                // A fraction or an exponent is not a sequence.
                guard index < bytes.count,
                    ![UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(bytes[index])
                else { return nil }
                if key.elementsEqual("seq".utf8) { sequence = value }
            case UInt8(ascii: "t"), UInt8(ascii: "f"):
                let value = bytes[index] == UInt8(ascii: "t")
                let word = value ? "true" : "false"
                guard bytes[index...].starts(with: word.utf8) else { return nil }
                index += word.utf8.count
                if key.elementsEqual("duplicate".utf8) { duplicate = value }
            default:
                return nil
            }
            skipSpace()
        } while take(",")
        guard take("}") else { return nil }
        skipSpace()
        guard index == bytes.count, let stream, let sequence else { return nil }
        return PublishAck(stream: stream, sequence: sequence, duplicate: duplicate)
    }

    /// The JSON object of a JetStream answer, or its error.
    static func answer(_ message: NATSMessage) throws -> [String: Any] {
        guard let body = try? JSONSerialization.jsonObject(with: Data(message.payload)) as? [String: Any] else {
            throw NATSError.jetStream(code: 0, description: "not a JSON answer")
        }
        if let error = body["error"] as? [String: Any] {
            throw NATSError.jetStream(
                code: integer(error["err_code"]) == 0 ? Int(integer(error["code"])) : Int(integer(error["err_code"])),
                description: error["description"] as? String ?? "unknown")
        }
        return body
    }

    static func integer(_ value: Any?) -> UInt64 {
        (value as? NSNumber)?.uint64Value ?? 0
    }
}
