/* test_range_table.c: unit tests of the anonymous-mapping table (src/range_table.c).
 *
 * Fixed cases for each way an unmap can cut a range (whole, left end, right end, middle, across
 * several ranges), then a randomized run against a byte-level model: an array saying, for every
 * byte of a small address window, which callsite owns it (or none). Random adds (which replace
 * any overlap, as MAP_FIXED does) and removes (partial unmaps included) are applied to both;
 * after each operation the bytes reported through the removal callback must equal, per callsite,
 * what the model lost, and the table must be sorted, disjoint, non-empty ranges covering exactly
 * the model's owned bytes with the right callsites.
 */
#include "fil_internal.h"
#include "rng.h"
#include "testhelper.h"

#include <string.h>

#define NCS 8   /* callsites used by the random test: 1..NCS-1 (0 is a callsite too) */

typedef struct {
    uint64_t by_cs[NCS];
    uint64_t calls;
} removed_t;

static void on_removed(void *ctx, callsite_t cs, uint64_t bytes) {
    removed_t *r = ctx;
    if (cs < NCS) r->by_cs[cs] += bytes;
    r->calls++;
}

static uint64_t removed_sum(const removed_t *r) {
    uint64_t s = 0;
    for (int i = 0; i < NCS; i++) s += r->by_cs[i];
    return s;
}

static int table_is_valid(const range_table_t *t) {
    for (size_t i = 0; i < t->count; i++) {
        if (t->ranges[i].len == 0) return 0;
        if (i > 0 && t->ranges[i - 1].start + t->ranges[i - 1].len > t->ranges[i].start) return 0;
    }
    return 1;
}

static void test_fixed(void) {
    range_table_t t = {0};
    removed_t rm = {0};

    CHECK_EQ_U(_fil_range_remove(&t, 0x1000, 0x1000, on_removed, &rm), 0);   /* empty table */
    CHECK_EQ_U(rm.calls, 0);

    /* [0x10000, 0x20000) cs 1 */
    CHECK_EQ_U(_fil_range_add(&t, 0x10000, 0x10000, 1, on_removed, &rm), 0);
    CHECK_EQ_U(t.count, 1);
    CHECK_EQ_U(rm.calls, 0);

    /* Middle: splits in two. */
    CHECK_EQ_U(_fil_range_remove(&t, 0x14000, 0x2000, on_removed, &rm), 0);
    CHECK_EQ_U(rm.by_cs[1], 0x2000);
    CHECK_EQ_U(t.count, 2);
    CHECK_EQ_U(t.ranges[0].start, 0x10000);
    CHECK_EQ_U(t.ranges[0].len, 0x4000);
    CHECK_EQ_U(t.ranges[1].start, 0x16000);
    CHECK_EQ_U(t.ranges[1].len, 0xA000);
    CHECK_EQ_U(t.ranges[1].cs, 1);

    /* Left end of the first, right end of the second. */
    memset(&rm, 0, sizeof rm);
    CHECK_EQ_U(_fil_range_remove(&t, 0xF000, 0x2000, on_removed, &rm), 0);
    CHECK_EQ_U(rm.by_cs[1], 0x1000);
    CHECK_EQ_U(t.ranges[0].start, 0x11000);
    CHECK_EQ_U(_fil_range_remove(&t, 0x1F000, 0x5000, on_removed, &rm), 0);
    CHECK_EQ_U(rm.by_cs[1], 0x2000);
    CHECK_EQ_U(t.ranges[1].start + t.ranges[1].len, 0x1F000);

    /* An unmap of a gap removes nothing. */
    memset(&rm, 0, sizeof rm);
    CHECK_EQ_U(_fil_range_remove(&t, 0x14000, 0x2000, on_removed, &rm), 0);
    CHECK_EQ_U(rm.calls, 0);
    CHECK_EQ_U(t.count, 2);

    /* MAP_FIXED-style add over both ranges and the gap: the overlap is charged back per range. */
    memset(&rm, 0, sizeof rm);
    CHECK_EQ_U(_fil_range_add(&t, 0x12000, 0x6000, 2, on_removed, &rm), 0);
    CHECK_EQ_U(rm.by_cs[1], 0x2000 + 0x2000);   /* [0x12000,0x14000) and [0x16000,0x18000) */
    CHECK_EQ_U(rm.calls, 2);
    CHECK_EQ_U(t.count, 3);
    CHECK(table_is_valid(&t));
    CHECK_EQ_U(t.ranges[1].start, 0x12000);
    CHECK_EQ_U(t.ranges[1].cs, 2);

    /* One unmap across all three. */
    memset(&rm, 0, sizeof rm);
    CHECK_EQ_U(_fil_range_remove(&t, 0, 0x100000, on_removed, &rm), 0);
    CHECK_EQ_U(rm.by_cs[1], 0x1000 + 0x7000);
    CHECK_EQ_U(rm.by_cs[2], 0x6000);
    CHECK_EQ_U(t.count, 0);

    /* Zero lengths are no-ops. */
    CHECK_EQ_U(_fil_range_add(&t, 0x1000, 0, 1, on_removed, &rm), 0);
    CHECK_EQ_U(t.count, 0);

    /* Many ranges: growth of the array keeps them sorted and whole. */
    for (uintptr_t i = 0; i < 5000; i++) {
        uintptr_t at = 0x100000 + ((i * 7919) % 5000) * 0x3000;   /* scrambled order */
        _fil_range_add(&t, at, 0x2000, (callsite_t)(i % 5), on_removed, &rm);
    }
    CHECK_EQ_U(t.count, 5000);
    CHECK(table_is_valid(&t));
    memset(&rm, 0, sizeof rm);
    _fil_range_remove(&t, 0x100000, 5000 * 0x3000, on_removed, &rm);
    CHECK_EQ_U(removed_sum(&rm), 5000 * 0x2000);
    CHECK_EQ_U(t.count, 0);

    _fil_range_add(&t, 0x1000, 0x1000, 1, on_removed, &rm);
    _fil_range_clear(&t);
    CHECK_EQ_U(t.count, 0);
}

/* ---- randomized, against a byte-level model ---- */

#define WINDOW 3000             /* bytes of address space modelled */
#define BASE ((uintptr_t)0x7f0000001000u)

static uint8_t owner[WINDOW];   /* callsite + 1, or 0 when unmapped */

static int model_matches(const range_table_t *t) {
    if (!table_is_valid(t)) return 0;
    uint8_t seen[WINDOW];
    memset(seen, 0, sizeof seen);
    for (size_t i = 0; i < t->count; i++) {
        const range_t *r = &t->ranges[i];
        if (r->start < BASE || r->start + r->len > BASE + WINDOW) return 0;
        for (uint64_t b = 0; b < r->len; b++) seen[r->start - BASE + b] = (uint8_t)(r->cs + 1);
    }
    return memcmp(seen, owner, WINDOW) == 0;
}

static void test_random(uint64_t seed) {
    rng_t r = {seed};
    range_table_t t = {0};
    memset(owner, 0, sizeof owner);
    size_t bad_removed = 0, bad_state = 0, bad_return = 0;
    for (int step = 0; step < 40000; step++) {
        /* Mostly small ranges so that many coexist; sometimes large ones that cut many. */
        uint64_t len = rng_below(&r, 10) == 0 ? rng_range(&r, 1, WINDOW) : rng_range(&r, 1, 64);
        uint64_t off = rng_below(&r, WINDOW - len + 1);
        removed_t rm = {0};
        uint64_t expect[NCS] = {0};
        for (uint64_t b = off; b < off + len; b++)
            if (owner[b]) expect[owner[b] - 1]++;
        /* More adds than removes while the window is sparse keeps it about half full. */
        int add = rng_below(&r, 100) < 55;
        int res;
        if (add) {
            callsite_t cs = (callsite_t)rng_below(&r, NCS);
            res = _fil_range_add(&t, BASE + off, len, cs, on_removed, &rm);
            memset(&owner[off], cs + 1, len);
        } else {
            res = _fil_range_remove(&t, BASE + off, len, on_removed, &rm);
            memset(&owner[off], 0, len);
        }
        if (res != 0) bad_return++;
        if (memcmp(rm.by_cs, expect, sizeof expect) != 0) bad_removed++;
        if (!model_matches(&t)) {
            if (!bad_state)
                fprintf(stderr, "range_table: state differs from the model at step %d\n", step);
            bad_state++;
        }
    }
    CHECK_EQ_U(bad_return, 0);
    CHECK_EQ_U(bad_removed, 0);
    CHECK_EQ_U(bad_state, 0);
}

int main(void) {
    test_fixed();
    uint64_t seed = test_seed("test_range_table", 0x4A9E);
    for (int i = 0; i < 3; i++) test_random(seed + (uint64_t)i);
    return test_report("test_range_table");
}
