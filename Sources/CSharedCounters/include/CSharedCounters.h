// Atomic operations on memory that several processes map (a `MAP_SHARED` file), for the engine's
// shared rate-limit windows: Swift's `Synchronization.Atomic` lives only in a stored property of one
// process, so the words another process also changes are reached through these. The project's own
// code.
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

/// Whether this CPU changes two adjacent words in one atomic operation without a lock
/// (`cmpxchg16b` on x86-64, checked by CPUID; always on AArch64): without it, `csc_pair_load` and
/// `csc_pair_replace_if` must not be called, and the engine counts each process's requests alone.
bool csc_pairs_available(void);

/// Two adjacent words: `first` at the lower address.
typedef struct {
    uint64_t first;
    uint64_t second;
} csc_words;

/// The two words at `pair` (16-byte aligned), read in one atomic operation.
csc_words csc_pair_load(uint64_t *pair);

/// Replaces both words at `pair` (16-byte aligned) with `desired` if they still hold `expected`, in
/// one atomic operation; true when it did.
bool csc_pair_replace_if(uint64_t *pair, csc_words expected, csc_words desired);

#endif
