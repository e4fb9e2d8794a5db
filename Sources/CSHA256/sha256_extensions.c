// SHA-256 (FIPS 180-4) block compression on the x86 SHA extensions.
//
// The SHA-NI instructions keep the eight working variables in two registers, ABEF and CDGH (the
// order `sha256rnds2` expects); each `sha256rnds2` does two rounds, taking two message-plus-
// constant words from the low half of its third operand. The message schedule is extended four
// words at a time with `sha256msg1` (the σ0 term), an add of W[t-7], and `sha256msg2` (the σ1 term).
#include "CSHA256.h"

/// FIPS 180-4's round constants: the first 32 bits of the fractional parts of the cube roots of
/// the first 64 primes. The Swift rounds read them here too (csha256_round_constants).
static const uint32_t round_constants[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

const uint32_t *csha256_round_constants(void) { return round_constants; }

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>

int csha256_has_extensions(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const int ssse3 = (ecx >> 9) & 1, sse41 = (ecx >> 19) & 1;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    const int sha = (ebx >> 29) & 1;
    return ssse3 && sse41 && sha;
}


#define CSHA256_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/// Four rounds: adds the constants to the four schedule words and runs two `sha256rnds2`.
CSHA256_TARGET static inline void four_rounds(__m128i *abef, __m128i *cdgh, __m128i words, int group) {
    const __m128i k = _mm_loadu_si128((const __m128i *)&round_constants[group * 4]);
    __m128i message = _mm_add_epi32(words, k);
    *cdgh = _mm_sha256rnds2_epu32(*cdgh, *abef, message);
    message = _mm_shuffle_epi32(message, 0x0E);  // the upper two words, for the next two rounds
    *abef = _mm_sha256rnds2_epu32(*abef, *cdgh, message);
}

/// The next four schedule words W[t…t+3] from the previous sixteen (in four registers, oldest first).
CSHA256_TARGET static inline __m128i next_words(__m128i w0, __m128i w1, __m128i w2, __m128i w3) {
    __m128i sum = _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4));
    return _mm_sha256msg2_epu32(sum, w3);
}

CSHA256_TARGET void csha256_compress_extensions(uint32_t state[8], const uint8_t *blocks, size_t count) {
    // Big-endian message words to the lane order the instructions use.
    const __m128i byte_swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    // H0…H3 = DCBA and H4…H7 = HGFE in lane order; rearranged to ABEF and CDGH.
    __m128i dcba = _mm_loadu_si128((const __m128i *)&state[0]);
    __m128i hgfe = _mm_loadu_si128((const __m128i *)&state[4]);
    __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
    __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
    __m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
    __m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);

    for (size_t block = 0; block < count; block++, blocks += 64) {
        const __m128i abef_before = abef, cdgh_before = cdgh;
        __m128i w[4];
        for (int i = 0; i < 4; i++) {
            w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(blocks + 16 * i)), byte_swap);
            four_rounds(&abef, &cdgh, w[i], i);
        }
        for (int group = 4; group < 16; group++) {
            // w holds W[t-16…t-1] as a ring: the oldest group is at group % 4.
            const __m128i next = next_words(
                w[group & 3], w[(group + 1) & 3], w[(group + 2) & 3], w[(group + 3) & 3]);
            w[group & 3] = next;
            four_rounds(&abef, &cdgh, next, group);
        }
        abef = _mm_add_epi32(abef, abef_before);
        cdgh = _mm_add_epi32(cdgh, cdgh_before);
    }

    // Back from ABEF and CDGH to H0…H7.
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    dcba = _mm_blend_epi16(feba, dchg, 0xF0);
    hgfe = _mm_alignr_epi8(dchg, feba, 8);
    _mm_storeu_si128((__m128i *)&state[0], dcba);
    _mm_storeu_si128((__m128i *)&state[4], hgfe);
}

#else

int csha256_has_extensions(void) { return 0; }

void csha256_compress_extensions(uint32_t state[8], const uint8_t *blocks, size_t count) {
    (void)state;
    (void)blocks;
    (void)count;
}

#endif
