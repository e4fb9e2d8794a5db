import Foundation

/// The order LMDB gives keys, and the engine gives an object's members when it writes them: bytes
/// compared unsigned, a prefix first. Compared with `memcmp`, not a byte at a time.
public enum ByteOrder {
    /// Whether `a` sorts before `b`.
    public static func precedes(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        compare(a, b) < 0
    }

    /// Negative when `a` sorts before `b`, zero when they are equal, positive when after: one
    /// comparison where asking ``precedes(_:_:)-(UnsafeRawBufferPointer,_)`` and `==` takes two.
    public static func compare(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Int {
        let common = min(a.count, b.count)
        let order = common == 0 ? 0 : Int(memcmp(a.baseAddress!, b.baseAddress!, common))
        return order != 0 ? order : a.count - b.count
    }

    /// ``compare(_:_:)-(UnsafeRawBufferPointer,_)`` of two arrays.
    public static func compare(_ a: [UInt8], _ b: [UInt8]) -> Int {
        a.withUnsafeBytes { x in b.withUnsafeBytes { y in compare(x, y) } }
    }

    /// Whether `a` sorts before `b`.
    public static func precedes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBytes { x in b.withUnsafeBytes { y in precedes(x, y) } }
    }

    /// Whether `a`'s UTF-8 bytes sort before `b`'s.
    public static func precedes(_ a: String, _ b: String) -> Bool {
        var a = a
        var b = b
        return a.withUTF8 { x in b.withUTF8 { y in precedes(UnsafeRawBufferPointer(x), UnsafeRawBufferPointer(y)) } }
    }
}
