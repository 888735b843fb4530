/* Unit tests for track.c's rules about what a realloc or an empty block does to the books:
 * which callsite a block ends up charged to, whether a stack is taken for it (the stack
 * provider is called), and the live total, for every outcome the hooks report. */
#include "fil_internal.h"
#include "testhelper.h"

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

int main(void) {
    _fil_set_stack_provider(provider);
    _fil_track_reset();
    _fil_tracking = 1;
    test_empty_blocks();
    test_resize_outcomes();
    return test_report("test_track");
}
