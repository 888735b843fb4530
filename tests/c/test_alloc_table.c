/* test_alloc_table.c: unit tests of the live-allocation table (src/alloc_table.c).
 *
 * Fixed cases first (replace, remove of absent keys, the extremes of size and callsite), then a
 * randomized run against the simplest possible model, an array of (ptr, size, callsite). The
 * random run keeps the table near its 75% growth threshold, where probe runs are long and wrap
 * around the end of the slot array, which is where backward-shift deletion can go wrong. After
 * every phase the table is checked whole: each model entry found with its value, no extra key,
 * and the count right.
 */
#include "fil_internal.h"
#include "rng.h"
#include "testhelper.h"

#include <string.h>

/* Look ptr up without a lookup function: remove it and put it back. 1 if present. */
static int lookup(alloc_table_t *t, uintptr_t ptr, uint64_t *size, callsite_t *cs) {
    if (!_fil_alloc_table_remove(t, ptr, size, cs)) return 0;
    uint64_t s2;
    callsite_t c2;
    int r = _fil_alloc_table_insert(t, ptr, *size, *cs, &s2, &c2);
    if (r != 0) return -1;   /* reinsertion must find it absent */
    return 1;
}

static void test_fixed(void) {
    alloc_table_t t = {0};
    uint64_t size;
    callsite_t cs;

    CHECK_EQ_U(_fil_alloc_table_remove(&t, 0x1000, &size, &cs), 0);   /* empty, never grown */
    CHECK_EQ_U(_fil_alloc_table_insert(&t, 0x1000, 10, 3, &size, &cs), 0);
    CHECK_EQ_U(t.count, 1);
    CHECK(t.capacity >= 4 && (t.capacity & (t.capacity - 1)) == 0);

    /* Insert of a present key replaces and reports the old entry. */
    CHECK_EQ_U(_fil_alloc_table_insert(&t, 0x1000, 20, 4, &size, &cs), 1);
    CHECK_EQ_U(size, 10);
    CHECK_EQ_U(cs, 3);
    CHECK_EQ_U(t.count, 1);

    CHECK_EQ_U(_fil_alloc_table_remove(&t, 0x2000, &size, &cs), 0);   /* absent */
    CHECK_EQ_U(_fil_alloc_table_remove(&t, 0x1000, &size, &cs), 1);
    CHECK_EQ_U(size, 20);
    CHECK_EQ_U(cs, 4);
    CHECK_EQ_U(t.count, 0);
    CHECK_EQ_U(_fil_alloc_table_remove(&t, 0x1000, &size, &cs), 0);   /* removed twice */

    /* The largest size and callsite fit without bleeding into each other. */
    uint64_t big = ALLOC_TABLE_MAX_SIZE - 1;
    CHECK_EQ_U(_fil_alloc_table_insert(&t, 0x3000, big, CALLSITE_MAX, &size, &cs), 0);
    CHECK_EQ_U(_fil_alloc_table_insert(&t, 0x4000, 0, 0, &size, &cs), 0);
    CHECK_EQ_U(_fil_alloc_table_insert(&t, UINTPTR_MAX - 15, 1, 1, &size, &cs), 0);
    CHECK_EQ_U(lookup(&t, 0x3000, &size, &cs), 1);
    CHECK_EQ_U(size, big);
    CHECK_EQ_U(cs, CALLSITE_MAX);
    CHECK_EQ_U(lookup(&t, 0x4000, &size, &cs), 1);
    CHECK_EQ_U(size, 0);
    CHECK_EQ_U(cs, 0);
    CHECK_EQ_U(lookup(&t, UINTPTR_MAX - 15, &size, &cs), 1);
    CHECK_EQ_U(size, 1);

    _fil_alloc_table_clear(&t);
    CHECK_EQ_U(t.count, 0);
    CHECK_EQ_U(_fil_alloc_table_remove(&t, 0x3000, &size, &cs), 0);
    CHECK(_fil_alloc_table_bytes(&t) == t.capacity * sizeof(alloc_slot_t));
}

/* Growth keeps every entry: insert far more than the first capacity, in address order as a
   bump allocator would hand them out. */
static void test_growth(void) {
    alloc_table_t t = {0};
    uint64_t size;
    callsite_t cs;
    const size_t n = 100000;
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        if (_fil_alloc_table_insert(&t, 0x10000 + 16 * i, i, (callsite_t)(i & CALLSITE_MAX),
                                    &size, &cs) != 0)
            ok = 0;
    CHECK(ok);
    CHECK_EQ_U(t.count, n);
    CHECK(t.count * 4 <= t.capacity * 3);
    size_t found = 0;
    for (size_t i = 0; i < n; i++)
        if (lookup(&t, 0x10000 + 16 * i, &size, &cs) == 1 && size == i) found++;
    CHECK_EQ_U(found, n);
    /* Dense addresses must not form long runs of occupied slots: a removal scans its run to
       the end, so runs of thousands (what plain Fibonacci hashing of 16-byte-aligned keys
       produced) make every free slow. */
    size_t run = 0, longest = 0;
    for (size_t i = 0; i < t.capacity; i++) {
        run = t.slots[i].key ? run + 1 : 0;
        if (run > longest) longest = run;
    }
    CHECK(longest < 64);
    for (size_t i = 0; i < n; i += 2) _fil_alloc_table_remove(&t, 0x10000 + 16 * i, &size, &cs);
    CHECK_EQ_U(t.count, n / 2);
    found = 0;
    for (size_t i = 1; i < n; i += 2)
        if (lookup(&t, 0x10000 + 16 * i, &size, &cs) == 1 && size == i) found++;
    CHECK_EQ_U(found, n / 2);
}

/* ---- randomized, against a model ---- */

/* The model: for each candidate address, whether it is live and with what. */
typedef struct {
    int live;
    uint64_t size;
    callsite_t cs;
} model_entry_t;

#define POOL 12000   /* candidate addresses; the model holds a subset of them */

static uintptr_t pool[POOL];
static model_entry_t model[POOL];
static size_t model_count;

static void model_check(alloc_table_t *t, const char *when) {
    size_t bad = 0;
    CHECK_EQ_U(t->count, model_count);
    for (size_t k = 0; k < POOL; k++) {
        if (!model[k].live) continue;
        uint64_t size;
        callsite_t cs;
        if (lookup(t, pool[k], &size, &cs) != 1 || size != model[k].size || cs != model[k].cs)
            bad++;
    }
    /* No key in the table that the model lacks. */
    size_t keys = 0;
    for (size_t i = 0; i < t->capacity; i++)
        if (t->slots[i].key) keys++;
    CHECK_EQ_U(keys, model_count);
    if (bad) fprintf(stderr, "alloc_table: %zu entries wrong %s\n", bad, when);
    CHECK_EQ_U(bad, 0);
}

static void test_random(uint64_t seed) {
    rng_t r = {seed};
    alloc_table_t t = {0};
    /* Addresses: runs of 16-byte neighbours (malloc's pattern), page-aligned ones, and scattered
       ones, so probe runs form both from hash clustering and from similar keys. */
    for (size_t i = 0; i < POOL; i++) {
        switch (i % 3) {
        case 0: pool[i] = 0x7f0000000000u + 16 * i; break;
        case 1: pool[i] = 0x550000000000u + 4096 * i; break;
        default: pool[i] = (uintptr_t)(rng_next(&r) | 16) & ~(uintptr_t)15; break;
        }
    }
    memset(model, 0, sizeof model);
    model_count = 0;

    size_t mismatches = 0;
    /* Each phase hovers around a target count (inserting more often below it, removing more
       often above), with targets at the growth thresholds (3072 = 75% of 4096, 6144 = 75% of
       8192), so the table churns while nearly full, then drains or grows to the next one. */
    static const size_t targets[] = {3000, 3072, 1500, 3071, 6144, 6100, 200, 6143, 9000, 0, 4000};
    for (size_t ph = 0; ph < sizeof targets / sizeof *targets; ph++) {
        size_t target = targets[ph];
        for (int step = 0; step < 60000; step++) {
            size_t k = rng_below(&r, POOL);
            int want_insert = model_count < target ? rng_below(&r, 4) != 0 : rng_below(&r, 4) == 0;
            uint64_t size = rng_below(&r, 8) == 0 ? rng_below(&r, ALLOC_TABLE_MAX_SIZE)
                                                  : rng_range(&r, 1, 4096);
            callsite_t cs = (callsite_t)rng_below(&r, (uint64_t)CALLSITE_MAX + 1);
            uint64_t old_size = 0;
            callsite_t old_cs = 0;
            model_entry_t *m = &model[k];
            if (want_insert) {
                int res = _fil_alloc_table_insert(&t, pool[k], size, cs, &old_size, &old_cs);
                if (m->live ? (res != 1 || old_size != m->size || old_cs != m->cs) : res != 0)
                    mismatches++;
                if (!m->live) model_count++;
                *m = (model_entry_t){1, size, cs};
            } else {
                int res = _fil_alloc_table_remove(&t, pool[k], &old_size, &old_cs);
                if (m->live ? (res != 1 || old_size != m->size || old_cs != m->cs) : res != 0)
                    mismatches++;
                if (m->live) model_count--;
                m->live = 0;
            }
            if (t.count != model_count) mismatches++;
        }
        char when[64];
        snprintf(when, sizeof when, "after phase %zu (target %zu)", ph, target);
        model_check(&t, when);
    }
    CHECK_EQ_U(mismatches, 0);

    /* Clear forgets everything, and the table works afterwards. */
    _fil_alloc_table_clear(&t);
    memset(model, 0, sizeof model);
    model_count = 0;
    model_check(&t, "after clear");
    uint64_t s;
    callsite_t c;
    CHECK_EQ_U(_fil_alloc_table_insert(&t, pool[0], 5, 6, &s, &c), 0);
}

/* The rehash into a bigger table reads each slot before it writes it: the new slots are faulted
   in writable at once, one fault a page, not two (a read maps the shared zero page, the write
   then replaces it, which in a threaded process interrupts the other CPUs to flush their TLBs). */
static void test_growth_faults_in_slots(void) {
    alloc_table_t t = {0};
    uint64_t size;
    callsite_t cs;
    uintptr_t key = 0x100000;
    while (t.capacity < 32768 || (t.count + 1) * 4 <= t.capacity * 3)   /* up to the growth */
        _fil_alloc_table_insert(&t, key += 16, 1, 1, &size, &cs);
    long before = test_minor_faults();
    _fil_alloc_table_insert(&t, key += 16, 1, 1, &size, &cs);   /* grows: 1 MiB of slots */
    long faults = test_minor_faults() - before;
    CHECK_EQ_U(t.capacity, 65536);
    long pages = (long)(t.capacity * sizeof(alloc_slot_t) / 4096);
    if (TEST_FAULTS_COUNTED) CHECK(faults >= 0 && faults <= pages + 8);
    _fil_alloc_table_clear(&t);
}

int main(void) {
    test_fixed();
    test_growth_faults_in_slots();
    test_growth();
    uint64_t seed = test_seed("test_alloc_table", 0xA110C);
    for (int i = 0; i < 4; i++) test_random(seed + (uint64_t)i);
    return test_report("test_alloc_table");
}
