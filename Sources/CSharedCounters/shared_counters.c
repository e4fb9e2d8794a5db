// Double-width compare-and-swap on two adjacent words several processes map. A compiler asked for a
// 16-byte atomic it cannot inline calls libatomic, whose locks live in one process and so guard
// nothing between processes: each path here is one the compiler inlines (on x86-64 one
// `lock cmpxchg16b` an operation, as `objdump -d` of the build shows), and on other CPUs the
// operation reports itself unavailable.
#include "CSharedCounters.h"

#include <string.h>

typedef unsigned __int128 csc_pair;

// Through memory, so `first` stays at the lower address whatever the byte order.
static inline csc_pair csc_pack(csc_words words) {
    csc_pair value;
    memcpy(&value, &words, sizeof value);
    return value;
}

static inline csc_words csc_unpack(csc_pair value) {
    csc_words words;
    memcpy(&words, &value, sizeof words);
    return words;
}

#if defined(__x86_64__)
#include <cpuid.h>

bool csc_pairs_available(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
    return (ecx >> 13) & 1;  // CMPXCHG16B
}

#define CSC_PAIR_TARGET __attribute__((target("cx16")))
#elif defined(__aarch64__)
bool csc_pairs_available(void) { return true; }  // LDAXP/STLXP, or CASP with LSE

#define CSC_PAIR_TARGET
#endif

#if defined(CSC_PAIR_TARGET)
// Clang warns that 16 bytes exceed the lock-free size of the file's default target; the target
// attribute (cx16) makes the operations one `lock cmpxchg16b` each.
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Watomic-alignment"

CSC_PAIR_TARGET csc_words csc_pair_load(uint64_t *pair) {
    return csc_unpack(__atomic_load_n((csc_pair *)pair, __ATOMIC_ACQUIRE));
}

CSC_PAIR_TARGET bool csc_pair_replace_if(uint64_t *pair, csc_words expected, csc_words desired) {
    csc_pair want = csc_pack(expected);
    return __atomic_compare_exchange_n((csc_pair *)pair, &want, csc_pack(desired), false, __ATOMIC_ACQ_REL,
                                       __ATOMIC_ACQUIRE);
}

#pragma clang diagnostic pop
#else
bool csc_pairs_available(void) { return false; }

csc_words csc_pair_load(uint64_t *pair) {
    (void)pair;
    return (csc_words){0, 0};
}

bool csc_pair_replace_if(uint64_t *pair, csc_words expected, csc_words desired) {
    (void)pair, (void)expected, (void)desired;
    return false;
}
#endif
