// SHA-256 block compression with the x86 SHA extensions (SHA-NI), for the Swift `Hashing` target.
// The project's own code: no library is linked; the instructions are chosen at run time.
#ifndef CSHA256_H
#define CSHA256_H

#include <stddef.h>
#include <stdint.h>

/// SHA-256's 64 round constants (FIPS 180-4), shared with the portable Swift rounds.
const uint32_t *csha256_round_constants(void);

/// 1 when this CPU has the SHA extensions with SSSE3 and SSE4.1 (what the fast path uses), else 0.
int csha256_has_extensions(void);

/// Compresses `count` 64-byte blocks at `blocks` into `state` (the eight working words H0…H7, in
/// order) with the SHA extensions. Call it only when csha256_has_extensions() returned 1.
void csha256_compress_extensions(uint32_t state[8], const uint8_t *blocks, size_t count);

#endif
