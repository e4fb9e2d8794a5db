import Hashing
import Testing

/// `ByteKey` as a dictionary key: equal exactly when the bytes are, whatever their length.
@Suite struct ByteKeyTests {
    @Test func keysAreEqualExactlyWhenTheirBytesAre() {
        let samples: [[UInt8]] = [[], [0], [0, 0], [1], [0, 1], [1, 0], Array("tenant\u{0}cmp_1".utf8)]
        for a in samples {
            for b in samples {
                #expect((ByteKey(a) == ByteKey(b)) == (a == b))
                if a == b { #expect(ByteKey(a).hashValue == ByteKey(b).hashValue) }
            }
        }
    }

    @Test func aDictionaryFindsEveryKeyAndNoPrefixOrExtension() {
        // Keys of every length from 0 to 300 (SipHash takes in 8 bytes at a time, so the lengths
        // cross its block edges), each a prefix of the next: a lookup must tell them all apart.
        let longest = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        var table = [ByteKey: Int]()
        for length in 0...longest.count { table[ByteKey(Array(longest.prefix(length)))] = length }
        #expect(table.count == longest.count + 1)
        for length in 0...longest.count {
            #expect(table[ByteKey(Array(longest.prefix(length)))] == length)
        }
        #expect(table[ByteKey(longest + [0])] == nil)
        var changed = longest
        changed[150] ^= 1
        #expect(table[ByteKey(changed)] == nil)
    }
}
