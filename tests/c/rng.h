/* rng.h: the deterministic random numbers the randomized C tests and the stress program share.
 *
 * splitmix64: tiny, fast, good enough to drive a test, and the same sequence on every machine,
 * so a failing seed can be replayed. test_seed() takes FIL_TEST_SEED from the environment when
 * set, and prints the seed in use so any failure message can be reproduced.
 */
#ifndef FIL_TEST_RNG_H
#define FIL_TEST_RNG_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct { uint64_t s; } rng_t;

static inline uint64_t rng_next(rng_t *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n); n > 0. The modulo bias is irrelevant for tests. */
static inline uint64_t rng_below(rng_t *r, uint64_t n) { return rng_next(r) % n; }

/* Uniform in [lo, hi]. */
static inline uint64_t rng_range(rng_t *r, uint64_t lo, uint64_t hi) {
    return lo + rng_below(r, hi - lo + 1);
}

static inline uint64_t test_seed(const char *name, uint64_t fallback) {
    const char *e = getenv("FIL_TEST_SEED");
    uint64_t seed = e ? strtoull(e, NULL, 0) : fallback;
    printf("%s: seed %llu (set FIL_TEST_SEED to replay)\n", name, (unsigned long long)seed);
    return seed;
}
#endif
