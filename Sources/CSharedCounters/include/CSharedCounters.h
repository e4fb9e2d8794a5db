// Atomic operations on 64-bit words of memory that several processes map (a `MAP_SHARED` file),
// for the engine's shared rate-limit windows: Swift's `Synchronization.Atomic` lives only in a
// stored property of one process, so the words another process also changes are reached through
// these. The project's own code.
#ifndef CSHAREDCOUNTERS_H
#define CSHAREDCOUNTERS_H

#include <stdbool.h>
#include <stdint.h>

/// The word at `word`, with every write another process made before its own store of it visible.
static inline uint64_t csc_load(const uint64_t *word) {
    return __atomic_load_n(word, __ATOMIC_ACQUIRE);
}

/// Replaces the word at `word` with `desired` if it still holds `expected`; true when it did.
static inline bool csc_replace_if(uint64_t *word, uint64_t expected, uint64_t desired) {
    return __atomic_compare_exchange_n(word, &expected, desired, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

#endif
