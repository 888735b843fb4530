/* Unit tests for track.c's rules about what a realloc or an empty block does to the books:
 * which callsite a block ends up charged to, whether a stack is taken for it (the stack
 * provider is called), and the live total, for every outcome the hooks report. */
#include "fil_internal.h"
#include "stack_provider.h"
#include "testhelper.h"

#include <stdatomic.h>
#include <stdlib.h>

static callsite_t next_cs;
static int stacks_taken;
static callsite_t provider(fil_thread_t *ts) {
    (void)ts;
    stacks_taken++;
    return next_cs;
}

static uint64_t live_now(void) {
    uint64_t live, peak;
    _fil_track_stats(&live, &peak);
    return live;
}

/* What the books hold for p, taken and put back unchanged: 1 with its size and callsite, or 0. */
static int lookup(void *p, uint64_t *size, callsite_t *cs) {
    int found = _fil_track_take(p, size, cs);
    if (found) _fil_track_put(p, *size, *cs);
    return found;
}

/* p is on the books at this size and callsite (a macro: failures name the caller's line). */
#define CHECK_BLOCK(p, want_size, want_cs) do { \
    uint64_t size_; \
    callsite_t cs_; \
    CHECK(lookup((p), &size_, &cs_)); \
    CHECK_EQ_U(size_, (want_size)); \
    CHECK_EQ_U(cs_, (want_cs)); \
} while (0)
#define CHECK_UNKNOWN(p) do { uint64_t size_; callsite_t cs_; CHECK(!lookup((p), &size_, &cs_)); } while (0)

/* realloc(old, size) that returned p, as a hook reports it. */
static void realloc_outcome(void *old, void *p, size_t size) {
    uint64_t old_size = 0;
    callsite_t old_cs = 0;
    int found = old ? _fil_track_take(old, &old_size, &old_cs) : 0;
    _fil_track_realloc(old, p, size, found, old_size, old_cs);
}

static void test_empty_blocks(void) {
    char *a = malloc(64), *b = malloc(64);
    uint64_t base = live_now();

    /* A block of no bytes is not recorded, and costs no stack. */
    next_cs = 4;
    stacks_taken = 0;
    _fil_track_alloc(a, 0);
    CHECK_EQ_U(stacks_taken, 0);
    CHECK_UNKNOWN(a);
    CHECK_EQ_U(live_now(), base);
    _fil_track_free(a);   /* a free of it finds nothing */
    CHECK_EQ_U(live_now(), base);

    /* Python's list emptying: realloc to 0 bytes (moved, still a valid pointer) drops the block;
       growing it again later is a new block charged to the caller then. */
    next_cs = 5;
    _fil_track_alloc(a, 32);
    CHECK_EQ_U(live_now() - base, 32);
    stacks_taken = 0;
    realloc_outcome(a, b, 0);
    CHECK_EQ_U(stacks_taken, 0);
    CHECK_UNKNOWN(a);
    CHECK_UNKNOWN(b);
    CHECK_EQ_U(live_now(), base);
    next_cs = 6;
    realloc_outcome(b, a, 48);
    CHECK_EQ_U(stacks_taken, 1);
    CHECK_BLOCK(a, 48, 6);
    CHECK_EQ_U(live_now() - base, 48);

    /* glibc's realloc(p, 0) frees p and returns NULL: gone from the books. */
    realloc_outcome(a, NULL, 0);
    CHECK_UNKNOWN(a);
    CHECK_EQ_U(live_now(), base);
    free(a);
    free(b);
}

static void test_resize_outcomes(void) {
    char *a = malloc(64), *b = malloc(64);
    uint64_t base = live_now();

    next_cs = 7;
    _fil_track_alloc(a, 40);

    /* In place at the same size: stays with the code that allocated it, no stack taken. */
    next_cs = 8;
    stacks_taken = 0;
    realloc_outcome(a, a, 40);
    CHECK_EQ_U(stacks_taken, 0);
    CHECK_BLOCK(a, 40, 7);
    CHECK_EQ_U(live_now() - base, 40);

    /* In place but smaller or bigger: charged to the caller at its new size. */
    realloc_outcome(a, a, 24);
    CHECK_EQ_U(stacks_taken, 1);
    CHECK_BLOCK(a, 24, 8);
    next_cs = 9;
    realloc_outcome(a, a, 56);
    CHECK_BLOCK(a, 56, 9);
    CHECK_EQ_U(live_now() - base, 56);

    /* Moved at the same size: a new block, charged to the caller. */
    next_cs = 10;
    realloc_outcome(a, b, 56);
    CHECK_UNKNOWN(a);
    CHECK_BLOCK(b, 56, 10);
    CHECK_EQ_U(live_now() - base, 56);

    /* Failed: the old block lives on as it was. */
    next_cs = 11;
    stacks_taken = 0;
    realloc_outcome(b, NULL, 1u << 30);
    CHECK_EQ_U(stacks_taken, 0);
    CHECK_BLOCK(b, 56, 10);

    /* realloc(NULL, n) is a malloc; realloc of a block never seen is a new block too. */
    realloc_outcome(NULL, a, 12);
    CHECK_BLOCK(a, 12, 11);
    _fil_track_free(a);
    _fil_track_free(b);
    char *c = malloc(16);
    realloc_outcome(c, c, 16);   /* same size in place, but unknown: charged to the caller */
    CHECK_BLOCK(c, 16, 11);
    _fil_track_free(c);
    CHECK_EQ_U(live_now(), base);
    free(a);
    free(b);
    free(c);
}

/* The hooks' quick paths (track.c): each either does exactly what the full path would, or
   returns 0 having changed nothing. */
static callsite_t quick_cs;
static callsite_t quick_provider(fil_thread_t *ts) { (void)ts; return quick_cs; }

static void test_quick_paths(void) {
    /* Blocks in a region with a side table: an arena, as pymalloc's. */
    char *arena = _fil_small_arena_map(1u << 20);
    CHECK(arena != NULL);
    if (!arena) return;
    char *a = arena + 64, *b = arena + 128;
    test_set_quick_stack_provider(quick_provider);
    next_cs = 7;
    _fil_track_alloc(arena, 16);   /* the callsites' peak slots exist, the region is cached */
    _fil_track_free(arena);
    uint64_t base = live_now();

    /* Without the bias: nothing changes. */
    quick_cs = FIL_STACK_UNKNOWN;
    stacks_taken = 0;
    CHECK_EQ_U(_fil_track_alloc_quick(a, 40), FIL_QUICK_NO);
    CHECK_UNKNOWN(a);
    CHECK_EQ_U(live_now(), base);
    _fil_track_alloc(a, 40);
    CHECK_BLOCK(a, 40, 7);

    /* The bias: this thread alone takes the lock until it is granted (lock.c). */
    _fil_lock_enable_bias();
    for (int i = 0; i < (1 << 21) && _fil_lock_bias_possible(); i++) {
        _fil_lock();
        _fil_unlock();
        if (atomic_load(&_fil_lock_bias_for) == _fil_tl_thread) break;
    }
    int biased = atomic_load(&_fil_lock_bias_for) == _fil_tl_thread;
    CHECK_EQ_U(biased, _fil_lock_bias_possible());
    if (!biased) {   /* ThreadSanitizer's build: the quick paths must decline */
        quick_cs = 7;
        CHECK_EQ_U(_fil_track_alloc_quick(b, 24), FIL_QUICK_NO);
        CHECK(_fil_track_free_quick(a) == 0);
        CHECK_BLOCK(a, 40, 7);
        _fil_track_free(a);
        CHECK_EQ_U(live_now(), base);
        _fil_small_arena_unmap(arena, 1u << 20);
        return;
    }
    /* With the bias, an unknown stack declines with the lock held, and the full path goes on
       from there: the full stack is taken, the block recorded once, the lock left. */
    stacks_taken = 0;
    int r = _fil_track_alloc_quick(b, 24);
    CHECK_EQ_U(r, FIL_QUICK_HELD);
    _fil_track_alloc_after(b, 24, r);
    CHECK_EQ_U(stacks_taken, 1);
    CHECK_BLOCK(b, 24, 7);
    CHECK_EQ_U(live_now(), base + 64);
    _fil_track_free(b);
    /* A known one: recorded as the full path would, without taking the full stack. */
    quick_cs = 9;
    stacks_taken = 0;
    CHECK_EQ_U(_fil_track_alloc_quick(b, 24), FIL_QUICK_DONE);
    CHECK_EQ_U(stacks_taken, 0);
    CHECK_BLOCK(b, 24, 9);
    CHECK_EQ_U(live_now(), base + 64);
    /* An empty block, one too big for a side entry: declined, and the full path's rules hold
       (the first is not recorded, the second is, in the allocation table). */
    r = _fil_track_alloc_quick(b + 16, 0);
    CHECK_EQ_U(r, FIL_QUICK_HELD);
    _fil_track_alloc_after(b + 16, 0, r);
    CHECK_UNKNOWN(b + 16);
    r = _fil_track_alloc_quick(b + 16, SMALL_MAX_SIZE + 1);
    CHECK_EQ_U(r, FIL_QUICK_HELD);
    _fil_track_alloc_after(b + 16, SMALL_MAX_SIZE + 1, r);
    CHECK_BLOCK(b + 16, SMALL_MAX_SIZE + 1, 7);
    CHECK_EQ_U(_fil_track_free_quick(b + 16), 0);   /* not in a side entry: the full free's */
    _fil_track_free(b + 16);
    CHECK_UNKNOWN(b + 16);
    CHECK_BLOCK(b, 24, 9);
    CHECK_EQ_U(live_now(), base + 64);
    /* Frees give back the block's size and take it off the books; an unknown block: 0. */
    CHECK_EQ_U(_fil_track_free_quick(a), 40);
    CHECK_UNKNOWN(a);
    CHECK_EQ_U(_fil_track_free_quick(a), 0);
    CHECK_EQ_U(_fil_track_free_quick(b), 24);
    CHECK_EQ_U(live_now(), base);
    /* At a peak a free declines (the full path settles the peak first), and the peak report
       then holds the block. */
    _fil_track_reset();
    r = _fil_track_alloc_quick(a, 40);   /* a new peak, either way */
    if (r != FIL_QUICK_DONE) _fil_track_alloc_after(a, 40, r);
    CHECK_EQ_U(_fil_track_free_quick(a), 0);
    CHECK_BLOCK(a, 40, 9);
    _fil_track_free(a);
    uint64_t live, peak;
    _fil_track_stats(&live, &peak);
    CHECK_EQ_U(live, 0);
    CHECK_EQ_U(peak, 40);
    test_set_quick_stack_provider(NULL);
    _fil_small_arena_unmap(arena, 1u << 20);
}

/* The first touch of each side-table page is the write that records a block. A read first would
   map the kernel's shared zero page, and the write after it would fault again to replace it,
   interrupting every CPU that runs one of the process's threads to flush its TLB (numpy's BLAS
   pool is such threads). One block per 16 KiB of arena, each in a side page of its own, must
   cost one fault each. */
static void test_side_pages_written_first(void) {
    const size_t arena_size = 1u << 20, stretch = 16u << 10;   /* one side page's worth */
    char *arena = _fil_small_arena_map(arena_size);
    CHECK(arena != NULL);
    if (!arena) return;
    next_cs = 5;
    _fil_track_alloc(arena, 16);   /* the region cached, the callsite's counters there */
    size_t pages = arena_size / stretch - 1;
    long before = test_minor_faults();
    for (size_t i = 1; i <= pages; i++) _fil_track_alloc(arena + i * stretch, 32);
    long faults = test_minor_faults() - before;
    /* Where the claim is a read and a write (fil_small_claim), two faults a page. */
    if (TEST_FAULTS_COUNTED)
        CHECK(faults >= 0 && faults <= (1 + !FIL_SMALL_CLAIM_WRITES) * (long)pages + 2);
    for (size_t i = 1; i <= pages; i++) CHECK_BLOCK(arena + i * stretch, 32, 5);
    before = test_minor_faults();
    for (size_t i = 0; i <= pages; i++) _fil_track_free(arena + i * stretch);
    if (TEST_FAULTS_COUNTED)   /* the frees read pages already there */
        CHECK_EQ_U(test_minor_faults() - before, 0);
    _fil_small_arena_unmap(arena, arena_size);
}

int main(void) {
    test_set_stack_provider(provider);
    _fil_track_reset();
    _fil_tracking = 1;
    test_empty_blocks();
    test_resize_outcomes();
    test_quick_paths();
    test_side_pages_written_first();
    return test_report("test_track");
}
