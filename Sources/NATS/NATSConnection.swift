import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Why a NATS operation failed.
public enum NATSError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The URL is not a `nats://` URL ``NATSEndpoint`` reads (kept without its user information).
    case badURL(String)
    /// The server could not be reached, or the connection broke.
    case connection(String)
    /// The server sent `-ERR`.
    case server(String)
    /// The server refused to let this client in: it asks for credentials and none were given, or
    /// it refused the ones given (`-ERR 'Authorization Violation'`); or it does not let this user
    /// publish or subscribe to a subject it needs (`-ERR 'Permissions Violation …'`). Retrying will
    /// not help.
    case authorization(String)
    /// The server requires what this client does not do (TLS). Retrying will not help.
    case unsupported(String)
    /// No reply came in time.
    case timeout
    /// A request went to a subject nobody answers (status 503).
    case noResponders(String)
    /// JetStream answered with an error.
    case jetStream(code: Int, description: String)

    /// Whether the server refused this client's credentials, or asked for some it lacked.
    public var isAuthorization: Bool {
        if case .authorization = self { true } else { false }
    }

    /// Whether trying again cannot help: ``authorization(_:)`` or ``unsupported(_:)``.
    public var isPermanent: Bool {
        switch self {
        case .authorization, .unsupported: true
        default: false
        }
    }

    /// A one-line description.
    public var description: String {
        switch self {
        case let .badURL(url): "not a nats://[USER:PASSWORD@]HOST:PORT URL: \(url)"
        case let .connection(reason): "NATS connection: \(reason)"
        case let .server(reason): "NATS server error: \(reason)"
        case let .authorization(reason): "NATS authorization: \(reason)"
        case let .unsupported(reason): "NATS: \(reason)"
        case .timeout: "NATS: no reply in time"
        case let .noResponders(subject): "NATS: no responders on \(subject) (is JetStream enabled?)"
        case let .jetStream(code, description): "JetStream error \(code): \(description)"
        }
    }
}

/// A message received from the server.
public struct NATSMessage: Sendable {
    /// The subject it was published to.
    public var subject: String
    /// Where to reply, if anywhere.
    public var replyTo: String?
    /// Headers (`HMSG`), by name; a status line such as `NATS/1.0 503` gives ``status``.
    public var headers: [String: String]
    /// The status code of a header block's first line (503: no responders), if any.
    public var status: Int?
    /// The message's body, as sent (NATS does not interpret it).
    public var payload: [UInt8]
}

/// A client of the NATS text protocol (INFO, CONNECT, PUB/HPUB, SUB, MSG/HMSG, PING/PONG,
/// +OK/-ERR), written for this project: one TCP connection, a reader thread that answers the
/// server's pings and hands messages on, and request/reply through one wildcard inbox.
///
/// Frames go out in order through one buffer: a publish appends its frame and, when no flush is
/// queued, queues one, so frames made while the socket is busy leave together in one `send` (the
/// relay's 256 publishes in flight were one system call, and one wake-up of the server, each).
///
/// Sendable as checked: what changes is in three `Mutex`es: `outgoing` (the frames not yet sent),
/// `sending` (held while a run of frames is sent and while the descriptor is closed) and `state`
/// (the requests under way and the failure). Nested, `sending` is taken first.
public final class NATSConnection: Sendable {
    private let fd: Int32
    /// Frames not yet handed to the socket, in order, and whether a flush is queued for them.
    private struct Outgoing {
        var frames: [UInt8] = []
        var flushQueued = false
    }
    private let outgoing = Mutex(Outgoing())
    /// Held while a run of frames is sent, so runs leave in the order they were taken; true once
    /// the descriptor is closed.
    private let sending = Mutex(false)
    /// Where queued flushes run, one at a time.
    private let flusher = DispatchQueue(label: "NATS flush")
    /// How many bytes may wait for a flush before a publish sends them itself (and so waits for
    /// the socket): a publisher faster than the connection is held back here.
    static let maximumQueuedBytes = 1 << 20
    /// The requests under way, by reply subject; the error that ended the connection and who is
    /// told of it; the last reply subject's number.
    private struct State {
        var pending: [String: @Sendable (Result<NATSMessage, NATSError>) -> Void] = [:]
        var failure: NATSError?
        var failureHandler: (@Sendable (NATSError) -> Void)?
        var nextReply: UInt64 = 0
    }
    private let state = Mutex(State())
    private let inbox: String
    private let pong = DispatchSemaphore(value: 0)

    /// Connects to `url` (see ``NATSEndpoint``), exchanges INFO and CONNECT, and waits for the
    /// server's PONG.
    /// - Throws: ``NATSError``; ``NATSError/badURL(_:)`` (without the URL's user information) when
    ///   `url` is not one ``NATSEndpoint`` reads.
    public convenience init(url: String, name: String = "campaign-engine", timeout: Double = 5) throws {
        guard let endpoint = NATSEndpoint(url: url) else { throw NATSError.badURL(NATSEndpoint.withoutUserInfo(url)) }
        try self.init(endpoint: endpoint, name: name, timeout: timeout)
    }

    /// Connects to `endpoint`, authenticating with its credentials, exchanges INFO and CONNECT, and
    /// waits for the server's PONG.
    /// - Throws: ``NATSError``: ``NATSError/authorization(_:)`` when the server asks for credentials
    ///   that `endpoint` lacks or refuses the ones it has; ``NATSError/unsupported(_:)`` when it
    ///   requires TLS, which this client does not speak.
    public init(endpoint: NATSEndpoint, name: String = "campaign-engine", timeout: Double = 5) throws {
        fd = try NATSConnection.connect(host: endpoint.host, port: endpoint.port, timeout: timeout)
        var random = SystemRandomNumberGenerator()
        inbox = "_INBOX." + String(UInt64.random(in: 0...UInt64.max, using: &random), radix: 36)
        let stream = LineReader(fd: fd)
        guard let info = try? stream.line(), info.hasPrefix("INFO ") else {
            Glibc.close(fd)
            throw NATSError.connection("the server did not introduce itself")
        }
        let introduction = NATSConnection.object(info: info)
        if let refusal = NATSConnection.refusal(introduction, endpoint: endpoint) {
            Glibc.close(fd)
            throw refusal
        }
        let authentication = endpoint.connectMembers(nonce: introduction?["nonce"] as? String)
        let connect =
            #"{"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1,"lang":"swift","#
            + #""version":"1",\#(authentication)"name":\#(NATSEndpoint.quoted(name))}"#
        do {
            try write(Array("CONNECT \(connect)\r\nSUB \(inbox).* 1\r\nPING\r\n".utf8))
        } catch {
            Glibc.close(fd)
            throw error
        }
        // The reader holds the connection until the socket ends (close() shuts it down), then
        // closes the descriptor.
        let reader = Thread { [self] in
            self.read(stream)
            self.sending.withLock { closed in
                closed = true
                Glibc.close(self.fd)
            }
        }
        reader.name = "NATS reader"
        reader.start()
        guard pong.wait(timeout: .now() + timeout) == .success else {
            close()
            throw failureOr(.timeout)
        }
        if let failure = error {
            close()
            throw failure
        }
    }

    /// Closes the connection after sending the frames already published; requests under way fail.
    public func close() {
        try? flush()
        fail(.connection("closed"))
        sending.withLock { closed in
            if !closed { shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    /// Called once, when the connection ends (the server went away, `-ERR`, or ``close()``); at
    /// once when it has already ended.
    public var onFailure: (@Sendable (NATSError) -> Void)? {
        get { state.withLock { $0.failureHandler } }
        set {
            let ended = state.withLock { state -> NATSError? in
                state.failureHandler = newValue
                return state.failure
            }
            if let ended { newValue?(ended) }
        }
    }

    /// The error that ended the connection, if it has ended.
    public var error: NATSError? { state.withLock { $0.failure } }

    /// Publishes `payload` to `subject`, with headers when given (`HPUB`).
    public func publish(
        _ subject: String, headers: [(String, String)] = [], payload: [UInt8], replyTo: String? = nil
    ) throws {
        if let failure = error { throw failure }
        let crlf: [UInt8] = [13, 10]
        var headerBlock = [UInt8]()
        if !headers.isEmpty {
            headerBlock += "NATS/1.0".utf8
            headerBlock += crlf
            for (name, value) in headers {
                headerBlock += name.utf8
                headerBlock += ": ".utf8
                headerBlock += value.utf8
                headerBlock += crlf
            }
            headerBlock += crlf
        }
        // The frame is made as bytes in one buffer (PUB subject [reply] size, or HPUB with the
        // header block's size and the total), then sent with one call.
        var frame = [UInt8]()
        frame.reserveCapacity(subject.utf8.count + (replyTo?.utf8.count ?? 0) + headerBlock.count + payload.count + 48)
        frame += (headers.isEmpty ? "PUB " : "HPUB ").utf8
        frame += subject.utf8
        if let replyTo {
            frame.append(UInt8(ascii: " "))
            frame += replyTo.utf8
        }
        if !headers.isEmpty {
            frame.append(UInt8(ascii: " "))
            frame += String(headerBlock.count).utf8
        }
        frame.append(UInt8(ascii: " "))
        frame += String(headerBlock.count + payload.count).utf8
        frame += crlf
        frame += headerBlock
        frame += payload
        frame += crlf
        try write(frame)
    }

    /// Publishes a request and calls `onReply` with the first reply (or the connection's failure).
    public func request(
        _ subject: String, headers: [(String, String)] = [], payload: [UInt8],
        onReply: @escaping @Sendable (Result<NATSMessage, NATSError>) -> Void
    ) throws {
        let (replyTo, failure) = state.withLock { state -> (String, NATSError?) in
            state.nextReply += 1
            let replyTo = "\(inbox).\(state.nextReply)"
            if state.failure == nil { state.pending[replyTo] = onReply }
            return (replyTo, state.failure)
        }
        if let failure { throw failure }
        do {
            try publish(subject, headers: headers, payload: payload, replyTo: replyTo)
        } catch {
            _ = state.withLock { $0.pending.removeValue(forKey: replyTo) }
            throw error
        }
    }

    /// Publishes a request and waits for its reply, at most `timeout` seconds.
    public func request(
        _ subject: String, headers: [(String, String)] = [], payload: [UInt8], timeout: Double = 5
    ) async throws -> NATSMessage {
        let reply = Reply()
        try request(subject, headers: headers, payload: payload) { reply.finish($0) }
        let timer = Task {
            try await Task.sleep(for: .seconds(timeout))
            reply.finish(.failure(.timeout))
        }
        defer { timer.cancel() }
        return try await reply.value.get()
    }

    // MARK: Reading

    private func read(_ stream: LineReader) {
        do {
            while true {
                let line = try stream.line()
                if line == "PING" {
                    try write(Array("PONG\r\n".utf8))
                } else if line == "PONG" {
                    pong.signal()
                } else if line.hasPrefix("MSG ") || line.hasPrefix("HMSG ") {
                    try deliver(line, stream)
                } else if line.hasPrefix("-ERR") {
                    let reason = String(line.dropFirst(4)).trimmingCharacters(in: .whitespaces)
                    // The server's words for refused credentials (it closes the connection after), and
                    // for a subject this user may not publish or subscribe to: neither passes with time.
                    let lowered = reason.lowercased()
                    if lowered.contains("authorization violation") {
                        fail(.authorization("the server refused the credentials (\(reason))"))
                    } else if lowered.contains("permissions violation") {
                        fail(.authorization("the server does not let this user do that (\(reason))"))
                    } else {
                        fail(.server(reason))
                    }
                    pong.signal()
                    return
                }
                // INFO updates and +OK need no answer.
            }
        } catch {
            fail((error as? NATSError) ?? .connection("\(error)"))
            pong.signal()
        }
    }

    private func deliver(_ line: String, _ stream: LineReader) throws {
        // Split as bytes, and only the subject and reply made strings: an acknowledgement a
        // publish, read on this one thread.
        let fields = line.utf8.split(separator: UInt8(ascii: " "))
        let hasHeaders = fields[0].elementsEqual("HMSG".utf8)
        // MSG subject sid [reply] size | HMSG subject sid [reply] headerSize totalSize
        let sizes = hasHeaders ? 2 : 1
        guard fields.count == 3 + sizes || fields.count == 4 + sizes,
            let total = Self.decimal(fields[fields.count - 1]),
            let headerSize = hasHeaders ? Self.decimal(fields[fields.count - 2]) : 0, headerSize <= total
        else { throw NATSError.connection("malformed message line: \(line)") }
        let replyTo = fields.count == 4 + sizes ? String(Substring(fields[3])) : nil
        let body = try stream.bytes(total + 2)
        var message = NATSMessage(
            subject: String(Substring(fields[1])), replyTo: replyTo, headers: [:], status: nil,
            payload: Array(body[headerSize..<total]))
        if hasHeaders {
            let block = String(decoding: body[0..<headerSize], as: UTF8.self)
            var lines = block.components(separatedBy: "\r\n")
            let first = lines.removeFirst().split(separator: " ")
            if first.count > 1 { message.status = Int(first[1]) }
            for header in lines where !header.isEmpty {
                guard let colon = header.firstIndex(of: ":") else { continue }
                message.headers[String(header[..<colon])] = header[header.index(after: colon)...]
                    .trimmingCharacters(in: .whitespaces)
            }
        }
        let handler = state.withLock { $0.pending.removeValue(forKey: message.subject) }
        if message.status == 503 {
            handler?(.failure(.noResponders(message.subject)))
        } else {
            handler?(.success(message))
        }
    }

    /// A size field of a message line: decimal digits only (at most 12 of them), else nil.
    static func decimal(_ digits: Substring.UTF8View) -> Int? {
        guard !digits.isEmpty, digits.count <= 12 else { return nil }
        var value = 0
        for digit in digits {
            guard (48...57).contains(digit) else { return nil }
            value = value * 10 + Int(digit - 48)
        }
        return value
    }

    // MARK: Plumbing

    private func fail(_ error: NATSError) {
        let (handlers, onEnd) = state.withLock { state in
            let first = state.failure == nil
            if first { state.failure = error }
            defer { state.pending.removeAll() }
            return (Array(state.pending.values), first ? state.failureHandler : nil)
        }
        for handler in handlers { handler(.failure(error)) }
        onEnd?(error)
    }

    private func failureOr(_ error: NATSError) -> NATSError { self.error ?? error }

    /// Queues `bytes` (whole frames) to be sent after what is queued; a flush is queued when none
    /// is, and past ``maximumQueuedBytes`` the caller sends them itself. A failure to send ends the
    /// connection (``onFailure``, and every request under way fails).
    private func write(_ bytes: [UInt8]) throws {
        if let failure = error { throw failure }
        let (queue, full) = outgoing.withLock { outgoing -> (Bool, Bool) in
            outgoing.frames += bytes
            defer { outgoing.flushQueued = true }
            return (!outgoing.flushQueued, outgoing.frames.count >= Self.maximumQueuedBytes)
        }
        if full {
            try flush()
        } else if queue {
            flusher.async { [self] in try? flush() }
        }
    }

    /// Sends every frame queued so far, in order. A failure ends the connection, after the lock
    /// is let go (a failure handler may close the connection, which flushes).
    private func flush() throws {
        let failed = sending.withLock { closed -> NATSError? in
            let frames = outgoing.withLock { outgoing -> [UInt8] in
                outgoing.flushQueued = false
                defer { outgoing.frames = [] }
                return outgoing.frames
            }
            guard !frames.isEmpty else { return nil }
            guard !closed else { return error ?? .connection("closed") }
            var offset = 0
            while offset < frames.count {
                let written = frames.withUnsafeBytes {
                    send(fd, $0.baseAddress! + offset, frames.count - offset, Int32(MSG_NOSIGNAL))
                }
                if written < 0 {
                    if errno == EINTR { continue }
                    return .connection(String(cString: strerror(errno)))
                }
                offset += written
            }
            return nil
        }
        if let failed {
            fail(failed)
            throw failed
        }
    }

    /// The JSON object of an `INFO` line, or nil when it holds none.
    static func object(info: String) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(info.utf8.dropFirst("INFO ".count)))) as? [String: Any]
    }

    /// Why the server's `INFO` object rules out this connection before `CONNECT`: it requires TLS,
    /// or credentials `endpoint` does not have, or sends no nonce for its NKEY to sign; nil when
    /// it does not.
    static func refusal(_ object: [String: Any]?, endpoint: NATSEndpoint) -> NATSError? {
        if object?["tls_required"] as? Bool == true {
            return .unsupported(
                "\(endpoint) requires TLS, which this client does not speak; relay through a listener without TLS")
        }
        if object?["auth_required"] as? Bool == true, endpoint.credentials == nil {
            return .authorization(
                "\(endpoint) requires credentials: give nats://USER:PASSWORD@HOST:PORT or nats://TOKEN@HOST:PORT")
        }
        switch endpoint.credentials {
        case .nkey, .userJWT:
            if object?["nonce"] as? String == nil {
                return .authorization("\(endpoint) sent no nonce to sign: it does not take NKEYs or JWTs")
            }
        default: break
        }
        return nil
    }

    private static func connect(host: String, port: UInt16, timeout: Double) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else {
            throw NATSError.connection("cannot resolve \(host)")
        }
        defer { freeaddrinfo(list) }
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        var reason = "no address"
        while let address = candidate {
            let fd = socket(address.pointee.ai_family, address.pointee.ai_socktype, address.pointee.ai_protocol)
            if fd >= 0 {
                var wait = timeval(tv_sec: Int(timeout), tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
                var on: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
                if Glibc.connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0 { return fd }
                reason = String(cString: strerror(errno))
                Glibc.close(fd)
            }
            candidate = address.pointee.ai_next
        }
        throw NATSError.connection("cannot connect to \(host):\(port): \(reason)")
    }
}

/// Reads CRLF-terminated lines and exact byte runs from a socket, buffered.
///
/// Invariant that makes `@unchecked Sendable` safe: only the connection's reader thread uses it once
/// the handshake (on the connecting thread) is done.
final class LineReader: @unchecked Sendable {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var start = 0

    init(fd: Int32) { self.fd = fd }

    private func fill() throws {
        if start > 65_536 {
            buffer.removeFirst(start)
            start = 0
        }
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
        if count < 0, errno == EINTR { return }
        guard count > 0 else {
            throw NATSError.connection(count == 0 ? "the server closed the connection" : "read failed")
        }
        buffer += chunk[0..<count]
    }

    func line() throws -> String {
        while true {
            if let end = buffer[start...].firstIndex(of: 10) {
                var last = end
                if last > start, buffer[last - 1] == 13 { last -= 1 }
                defer { start = end + 1 }
                return String(decoding: buffer[start..<last], as: UTF8.self)
            }
            try fill()
        }
    }

    func bytes(_ count: Int) throws -> [UInt8] {
        while buffer.count - start < count { try fill() }
        defer { start += count }
        return Array(buffer[start..<(start + count)])
    }
}

/// A reply some task waits for, finished once.
final class Reply: Sendable {
    /// The reply once it came, and the task waiting for it until then.
    private struct State {
        var result: Result<NATSMessage, NATSError>?
        var waiter: CheckedContinuation<Result<NATSMessage, NATSError>, Never>?
    }
    private let state = Mutex(State())

    func finish(_ value: Result<NATSMessage, NATSError>) {
        let resume = state.withLock { state -> CheckedContinuation<Result<NATSMessage, NATSError>, Never>? in
            guard state.result == nil else { return nil }
            state.result = value
            defer { state.waiter = nil }
            return state.waiter
        }
        resume?.resume(returning: value)
    }

    var value: Result<NATSMessage, NATSError> {
        get async {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Result<NATSMessage, NATSError>? in
                    if let result = state.result { return result }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }
}
