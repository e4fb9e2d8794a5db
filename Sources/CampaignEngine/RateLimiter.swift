internal import CSharedCounters
import CampaignDomain
import Foundation
import Hashing
import Synchronization

/// A per-tenant request budget over fixed windows (default 1000 requests per 60 s).
///
/// Windows are aligned to the clock (a 60 s window starts on each minute), so every process on a
/// store counts into the same window, in ``SharedRateWindows`` beside the store: two engines on one
/// directory share each tenant's budget. Where the file cannot be used (a read-only directory, a
/// file of another layout) or has no room for a tenant, the count lives in this process.
final class RateLimiter: Sendable {
    let limit: Int
    let window: TimeInterval
    private let shared: SharedRateWindows?
    /// The counts kept in this process when ``shared`` cannot take a tenant: window number and count.
    private let local = Mutex<[String: (window: UInt32, count: Int)]>([:])

    init(limit: Int, window: TimeInterval, shared: SharedRateWindows?) {
        self.limit = limit
        self.window = window
        self.shared = shared
    }

    /// Whether the counts are shared with the other processes on the store.
    var isShared: Bool { shared != nil }

    /// Takes one request from the tenant's budget, or throws `RATE_LIMIT_EXCEEDED` with the headers.
    func take(tenant: String, now: Date) throws(CampaignError) {
        let number = (now.timeIntervalSince1970 / window).rounded(.down)
        let start = Date(timeIntervalSince1970: number * window)
        let reset = start.addingTimeInterval(window)
        // Window numbers are the low 32 bits: they wrap (in 2106 at 1 s, sooner for shorter windows),
        // and the shared slots compare them as serial numbers, so a wrap is a step forward.
        let index = UInt32(truncatingIfNeeded: Int64(number))
        let granted: Bool
        switch shared?.take(tenant, window: index, of: window, limit: limit) {
        case .granted?: granted = true
        case .refused?: granted = false
        case .noRoom?, nil:
            granted = local.withLock { counts in
                var entry = counts[tenant] ?? (index, 0)
                if entry.window != index { entry = (index, 0) }
                guard entry.count < limit else { return false }
                entry.count += 1
                counts[tenant] = entry
                return true
            }
        }
        guard !granted else { return }
        let retryAfter = max(1, Int(reset.timeIntervalSince(now).rounded(.up)))
        throw CampaignError(
            .rateLimitExceeded, "tenant \(tenant) sent more than \(limit) requests in \(Int(window)) s",
            retryAfter: retryAfter, retryable: true,
            rateLimit: RateLimitState(limit: limit, remaining: 0, reset: reset, retryAfter: retryAfter))
    }
}

extension CampaignEngine {
    /// The files an engine keeps in its directory: LMDB's `data.mdb` and `lock.mdb`, and the shared
    /// rate-limit windows (`rate-windows`, which nothing needs after the processes end).
    public static let directoryFiles = ["data.mdb", "lock.mdb", SharedRateWindows.fileName]
}

/// Each tenant's current rate-limit window in a file beside the store (`rate-windows`), mapped by
/// every process that opens the store, so they count into one budget.
///
/// Layout (native-endian 64-bit words): word 0 the magic `CERW0001`, word 1 the number of slots,
/// six reserved words, then per slot two words: the budget's key (``key(_:length:)``, from SHA-256
/// of the tenant's name and the window's length; 0 is an empty slot) and its state, the window's
/// number in the high 32 bits and the requests it granted in the low 32. A tenant's slot is found
/// by linear probing from its key. Every change to a slot is one compare-and-swap of both its words
/// (`cmpxchg16b` on x86-64), so a count lands only in the slot its tenant holds, no lock is shared
/// between processes and a process killed at any moment leaves every slot whole. A slot is never
/// emptied: when a tenant finds no free slot among its probes, it takes one whose window is over.
/// Where none is, or the CPU has no such compare-and-swap, its count stays in its process. The file
/// holds no tenant's name, only its key, and nothing of it needs to survive a restart (a store
/// copied without it starts every budget afresh).
///
/// Invariant that makes `@unchecked Sendable` safe: the mapping is fixed from `init` to `deinit`,
/// and every access to its words is one of `CSharedCounters`' atomic operations.
final class SharedRateWindows: @unchecked Sendable {
    /// The file's name in the store's directory.
    static let fileName = "rate-windows"
    /// `CERW0001` read as a little-endian word.
    private static let magic = UInt64(littleEndian: 0x3130_3030_5752_4543)
    private static let headerWords = 8

    let slotCount: Int
    let probes: Int
    private let base: UnsafeMutablePointer<UInt64>
    private let length: Int

    /// Maps (creating it if needed) the file in `directory`; nil when it cannot be used there.
    init?(directory: String, slotCount: Int = 16_384, probes: Int = 64) {
        self.slotCount = max(1, slotCount)
        self.probes = min(max(1, probes), self.slotCount)
        length = (Self.headerWords + 2 * self.slotCount) * MemoryLayout<UInt64>.size
        // Without a lock-free double-width compare-and-swap no slot can change safely.
        guard csc_pairs_available() else { return nil }
        let descriptor = open(directory + "/" + Self.fileName, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { return nil }
        // Every process asks for the same size, and the bytes a file grows by read as zero: empty slots.
        if status.st_size < length {
            guard ftruncate(descriptor, off_t(length)) == 0 else { return nil }
        } else if status.st_size > length {
            return nil
        }
        let mapped = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, descriptor, 0)
        guard let mapped, mapped != MAP_FAILED else { return nil }
        base = mapped.bindMemory(to: UInt64.self, capacity: length / MemoryLayout<UInt64>.size)
        // The first process to map a new file writes its header; every other one checks it.
        _ = csc_replace_if(base, 0, Self.magic)
        _ = csc_replace_if(base + 1, 0, UInt64(self.slotCount))
        guard csc_load(base) == Self.magic, csc_load(base + 1) == UInt64(self.slotCount) else {
            munmap(mapped, length)
            return nil
        }
    }

    deinit { munmap(base, length) }

    /// What a take found.
    enum Outcome: Equatable {
        /// Granted: the window's count, this request included.
        case granted(count: Int)
        /// The tenant has spent its budget in this window.
        case refused
        /// No slot could take the tenant (each probed slot is another tenant's in this window or a
        /// later one, or the tenant's own slot is in a later window, by the clock of a process ahead
        /// of this one's): count it elsewhere.
        case noRoom
    }

    /// Takes one request from `tenant`'s budget of `limit` in window number `window` of windows
    /// `length` seconds long (processes configured with other lengths count in slots of their own,
    /// rather than resetting each other's windows).
    ///
    /// Every change writes a slot's two words in one atomic operation whose expected value includes
    /// the key, so a count only ever lands in the slot of the tenant that made it: a tenant taking
    /// over a slot whose window is over cannot receive a request its former holder was counting.
    func take(_ tenant: String, window: UInt32, of length: TimeInterval = 60, limit: Int) -> Outcome {
        let key = Self.key(tenant, length: length)
        let cap = UInt32(clamping: limit)
        guard cap > 0 else { return .refused }
        let start = Int(key % UInt64(slotCount))
        // A lost compare-and-swap means another process changed the slot: look again. Each loss is
        // another's progress, and the bound only keeps a pathological schedule from spinning.
        attempts: for _ in 0..<64 {
            var over: (slot: Int, held: Slot)?
            for probe in 0..<probes {
                let slot = (start + probe) % slotCount
                let held = load(slot)
                if held.key == key {
                    // A slot's window only moves forward: one later than this process's is another
                    // process's, whose clock is ahead (`apply --now` in the past beside a host on the
                    // system clock). Resetting it would reset that process's count at each of this
                    // one's requests, and each of its requests this one's: neither would limit.
                    if held.used != 0 && Self.isLater(held.window, than: window) { return .noRoom }
                    let count = held.window == window ? held.used : 0
                    guard count < cap else { return .refused }
                    if replace(slot, held, with: Slot(key: key, window: window, used: count + 1)) {
                        return .granted(count: Int(count + 1))
                    }
                    continue attempts
                }
                if held.key == 0 {
                    // Slots are never emptied, so the tenant's key is not among the later probes.
                    if replace(slot, held, with: Slot(key: key, window: window, used: 1)) { return .granted(count: 1) }
                    continue attempts
                }
                // Another tenant's slot whose window is over, or that has granted nothing (no window).
                if over == nil, held.used == 0 || Self.isLater(window, than: held.window) { over = (slot, held) }
            }
            guard let over else { return .noRoom }
            if replace(over.slot, over.held, with: Slot(key: key, window: window, used: 1)) {
                return .granted(count: 1)
            }
        }
        return .noRoom
    }

    /// One slot's two words: the budget's key, and its window's number and the requests it granted.
    private struct Slot {
        var key: UInt64
        var window: UInt32
        var used: UInt32

        var words: csc_words { csc_words(first: key, second: UInt64(window) << 32 | UInt64(used)) }
    }

    private func pair(_ slot: Int) -> UnsafeMutablePointer<UInt64> { base + Self.headerWords + 2 * slot }

    private func load(_ slot: Int) -> Slot {
        let words = csc_pair_load(pair(slot))
        return Slot(
            key: words.first, window: UInt32(truncatingIfNeeded: words.second >> 32),
            used: UInt32(truncatingIfNeeded: words.second))
    }

    private func replace(_ slot: Int, _ expected: Slot, with desired: Slot) -> Bool {
        csc_pair_replace_if(pair(slot), expected.words, desired.words)
    }

    /// Whether window number `a` comes after `b`, as serial numbers (RFC 1982): the one a step of less
    /// than 2^31 windows ahead of the other is the later, so a number that wrapped past 2^32 − 1 to a
    /// small one is later than the large ones before it.
    static func isLater(_ a: UInt32, than b: UInt32) -> Bool { Int32(bitPattern: a &- b) > 0 }

    /// The first eight bytes, big-endian, of SHA-256 of `campaign-rate-window`, a 0x00 byte, the
    /// tenant's name, a 0x00 byte and the window's length (the bits of the `Double`, little-endian):
    /// the same in every process, as Swift's `Hasher` is not, and no tenant can pick a name whose key
    /// is another tenant's (FNV-1a 64, the key until the forty-ninth session, let one be computed,
    /// and the two then spent one budget). 0, which marks an empty slot, becomes 1.
    static func key(_ tenant: String, length: TimeInterval) -> UInt64 {
        var bytes = Array("campaign-rate-window".utf8)
        bytes.append(0)
        bytes += tenant.utf8
        bytes.append(0)
        let bits = length.bitPattern
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
        let key = SHA256.hash(bytes).prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return key == 0 ? 1 : key
    }
}
