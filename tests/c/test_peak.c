/* test_peak.c: unit tests of the peak snapshot (src/peak.c).
 *
 * The reference is the brute force that peak.c exists to avoid: replay the same allocation and
 * free events on a plain per-callsite array and copy the whole array each time the total exceeds
 * the previous maximum. After settling, peak.c's snap[] must equal that copy exactly, whatever
 * the pattern: random events, thousands of "grow, free a little, grow again" peaks, ties (an
 * equal total later is not a new peak), growth of the arrays in the middle of a run, and reset.
 */
#include "fil_internal.h"
#include "rng.h"
#include "testhelper.h"

#include <string.h>

#define MAXCS 8192   /* above the first capacity (4096), so the arrays grow mid-run */

/* The brute-force model. */
static uint64_t ref_live[MAXCS], ref_snap[MAXCS];
static uint64_t ref_total, ref_peak;
static uint64_t ref_new_peaks;      /* how many times the maximum moved */
static uint32_t ref_ncs = MAXCS;   /* callsites in use: the copy at a peak need not go further */

static void ref_reset(void) {
    memset(ref_live, 0, sizeof ref_live);
    memset(ref_snap, 0, sizeof ref_snap);
    ref_total = ref_peak = 0;
}

static void both_add(peak_t *p, callsite_t cs, uint64_t bytes) {
    _fil_peak_add(p, cs, bytes);
    ref_live[cs] += bytes;
    ref_total += bytes;
    if (ref_total > ref_peak) {
        ref_peak = ref_total;
        ref_new_peaks++;
        memcpy(ref_snap, ref_live, ref_ncs * sizeof *ref_live);
    }
}

static void both_sub(peak_t *p, callsite_t cs, uint64_t bytes) {
    _fil_peak_sub(p, cs, bytes);
    ref_live[cs] -= bytes;
    ref_total -= bytes;
}

/* Settle, then compare everything; returns the number of differing callsites (0 is right). */
static size_t compare(peak_t *p, uint32_t ncs) {
    _fil_peak_settle(p);
    size_t diff = 0;
    if (p->live_total != ref_total || p->peak_total != ref_peak) diff++;
    for (uint32_t cs = 0; cs < ncs; cs++)
        if (fil_peak_live(p, cs) != ref_live[cs] || p->snap[cs] != ref_snap[cs]) diff++;
    return diff;
}

static void test_fixed(void) {
    peak_t p = {0};
    ref_reset();
    CHECK_EQ_U(_fil_peak_reserve(&p, 10), 0);
    CHECK(p.capacity >= 10);

    both_add(&p, 1, 100);            /* peak 100: {1:100} */
    both_sub(&p, 1, 100);
    both_add(&p, 2, 100);            /* a tie is not a new peak: the report keeps {1:100} */
    CHECK_EQ_U(compare(&p, 10), 0);
    CHECK_EQ_U(p.snap[1], 100);
    CHECK_EQ_U(p.snap[2], 0);

    both_add(&p, 2, 1);              /* 101: now {2:101} */
    CHECK_EQ_U(compare(&p, 10), 0);
    CHECK_EQ_U(p.snap[1], 0);
    CHECK_EQ_U(p.snap[2], 101);

    /* Settling twice, or when not at a peak, changes nothing. */
    both_sub(&p, 2, 50);
    CHECK_EQ_U(compare(&p, 10), 0);
    CHECK_EQ_U(compare(&p, 10), 0);
    CHECK_EQ_U(p.snap[2], 101);

    /* A sub of zero bytes neither settles nor changes anything. */
    both_add(&p, 3, 60);             /* 111: new peak, not settled */
    both_sub(&p, 3, 0);
    CHECK_EQ_U(compare(&p, 10), 0);
    CHECK_EQ_U(p.snap[3], 60);

    /* Growth keeps live, snap and the dirty list: make state dirty, grow, then check. */
    both_sub(&p, 3, 60);
    both_add(&p, 4, 7);
    uint32_t old_cap = p.capacity;
    CHECK_EQ_U(_fil_peak_reserve(&p, old_cap + 1), 0);
    CHECK(p.capacity > old_cap);
    CHECK_EQ_U(fil_peak_live(&p, old_cap), 0);   /* new slots start empty */
    both_add(&p, old_cap, 200);        /* the new callsite makes the peak */
    CHECK_EQ_U(compare(&p, old_cap + 1), 0);
    CHECK_EQ_U(p.snap[old_cap], 200);

    /* Clear: nothing live, no peak; the empty state counts as the peak until something grows. */
    _fil_peak_clear(&p);
    ref_reset();
    CHECK_EQ_U(compare(&p, p.capacity), 0);
    both_add(&p, 5, 10);
    both_sub(&p, 5, 4);
    CHECK_EQ_U(compare(&p, p.capacity), 0);
    CHECK_EQ_U(p.snap[5], 10);
    CHECK_EQ_U(p.peak_total, 10);
}

/* Thousands of peaks: each round allocates at several callsites, frees a little, and ends a
   little higher than the last, so every round makes a new peak that a free then settles. */
static void test_sawtooth(void) {
    peak_t p = {0};
    ref_reset();
    CHECK_EQ_U(_fil_peak_reserve(&p, 1000), 0);
    rng_t r = {7};
    size_t diff = 0;
    for (int round = 0; round < 5000; round++) {
        callsite_t a = (callsite_t)rng_below(&r, 1000), b = (callsite_t)rng_below(&r, 1000);
        both_add(&p, a, 1000);
        both_add(&p, b, 500);
        both_sub(&p, a, 900);        /* frees a little: the peak must be settled here */
        if (round % 500 == 0) diff += compare(&p, 1000);
    }
    CHECK_EQ_U(diff, 0);
    CHECK_EQ_U(compare(&p, 1000), 0);
    CHECK_EQ_U(p.peak_total, 4999 * 600 + 1500);
    /* The dirty list never holds a callsite twice, so it stays within the callsite count. */
    CHECK(p.dirty_count <= p.capacity);
}

/* Random allocation and free events over many callsites, compared at random moments (which is
   what writing a report at an arbitrary time does), with occasional resets. */
static void test_random(uint64_t seed) {
    rng_t r = {seed};
    peak_t p = {0};
    ref_reset();
    ref_new_peaks = 0;
    uint32_t ncs = 64;
    ref_ncs = ncs;
    CHECK_EQ_U(_fil_peak_reserve(&p, ncs), 0);

    /* Live allocations, so frees free something that exists. */
    enum { MAXLIVE = 4096 };
    static struct { callsite_t cs; uint64_t bytes; } live[MAXLIVE];
    size_t nlive = 0;
    size_t diff = 0, compares = 0;
    for (int step = 0; step < 400000; step++) {
        uint64_t roll = rng_below(&r, 1000);
        if (roll < 2 && ncs < MAXCS) {
            /* New callsites appear as a program runs: grow the arrays mid-run. */
            ncs = ncs * 2 < MAXCS ? ncs * 2 : MAXCS;
            if (_fil_peak_reserve(&p, ncs) != 0) diff++;
            ref_ncs = ncs;
        } else if (roll < 3) {
            _fil_peak_clear(&p);
            ref_reset();
            nlive = 0;
        } else if (roll < 13) {
            diff += compare(&p, ncs);
            compares++;
        } else {
            /* Allocation-heavy and free-heavy stretches alternate, as in real programs. */
            int grow_phase = (step / 5000) % 2 == 0;
            int alloc = nlive == 0 || (nlive < MAXLIVE && rng_below(&r, 100) < (grow_phase ? 60 : 40));
            if (alloc) {
                callsite_t cs = (callsite_t)rng_below(&r, ncs);
                uint64_t bytes = rng_below(&r, 20) == 0 ? rng_range(&r, 1, 1 << 20) : rng_range(&r, 0, 512);
                both_add(&p, cs, bytes);
                live[nlive].cs = cs;
                live[nlive].bytes = bytes;
                nlive++;
            } else {
                size_t i = rng_below(&r, nlive);
                both_sub(&p, live[i].cs, live[i].bytes);
                live[i] = live[--nlive];
            }
        }
    }
    while (nlive) {
        nlive--;
        both_sub(&p, live[nlive].cs, live[nlive].bytes);
    }
    diff += compare(&p, ncs);
    CHECK(compares > 1000);
    CHECK(ref_new_peaks > 1000);   /* the run did exercise many peaks */
    CHECK_EQ_U(diff, 0);
    CHECK_EQ_U(p.live_total, 0);
    ref_ncs = MAXCS;
}

/* A callsite's counters are read before they are written; when the arrays grow, the new part is
   faulted in writable at once, so the first use of a new callsite does not fault (twice: a read
   maps the shared zero page, the write replaces it). */
static void test_growth_faults_in_new_counters(void) {
    peak_t p = {0};
    CHECK_EQ_U(_fil_peak_reserve(&p, 1), 0);
    uint32_t first = p.capacity;
    CHECK_EQ_U(_fil_peak_reserve(&p, first * 4), 0);
    long before = test_minor_faults();
    for (uint32_t cs = first; cs < p.capacity; cs += 512) _fil_peak_add(&p, cs, 1);
    if (TEST_FAULTS_COUNTED) CHECK_EQ_U(test_minor_faults() - before, 0);
    for (uint32_t cs = first; cs < p.capacity; cs += 512) _fil_peak_sub(&p, cs, 1);
    CHECK_EQ_U(p.live_total, 0);
}

int main(void) {
    test_fixed();
    test_growth_faults_in_new_counters();
    test_sawtooth();
    uint64_t seed = test_seed("test_peak", 0x9EA4);
    for (int i = 0; i < 3; i++) test_random(seed + (uint64_t)i);
    return test_report("test_peak");
}
