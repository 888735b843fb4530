/* Unit tests for small_map.c (side tables of pymalloc-style arenas and of heap regions) and for
 * the engine's use of them in track.c: small blocks are recorded in a side table, inside an
 * arena or in a heap region adopted for them, others (and blocks whose size or callsite do not
 * fit an entry) in the allocation table, and both give the same answers to free, take and the
 * live/peak totals. */
#include "fil_internal.h"
#include "oom.h"
#include "prim.h"
#include "stack_provider.h"
#include "testhelper.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MIB ((size_t)1 << 20)

static callsite_t next_cs;
static callsite_t provider(fil_thread_t *ts) { (void)ts; return next_cs; }

static uint64_t live_now(void) {
    uint64_t live, peak;
    _fil_track_stats(&live, &peak);
    return live;
}

static void test_lookup(void) {
    size_t before = _fil_small_bytes();
    char *a = _fil_small_arena_map(MIB);
    CHECK(a != NULL);
    if (!a) return;
    CHECK(((uintptr_t)a & (MIB - 1)) == 0);            /* region-aligned */
    CHECK_EQ_U(_fil_small_bytes() - before, MIB / 4);  /* 4 bytes per 16 */
    a[0] = 1; a[MIB - 1] = 2;                          /* the whole arena is usable */
    uint32_t *e0 = _fil_small_entry((uintptr_t)a);
    CHECK(e0 != NULL && *e0 == 0);
    CHECK(_fil_small_entry((uintptr_t)a + 16) == e0 + 1);
    CHECK(_fil_small_entry((uintptr_t)a + MIB - 16) == e0 + MIB / 16 - 1);
    CHECK(_fil_small_entry((uintptr_t)a + 8) == NULL);    /* not a block start */
    CHECK(_fil_small_entry((uintptr_t)a + MIB) == NULL);  /* the side table itself */
    CHECK(_fil_small_entry((uintptr_t)a - 16) == NULL);
    void *m = malloc(64);
    CHECK(_fil_small_entry((uintptr_t)m) == NULL);
    free(m);
    CHECK(_fil_small_entry((uintptr_t)1 << 50) == NULL);

    /* A smaller arena: its side table starts where it ends. */
    char *b = _fil_small_arena_map(256 << 10);
    CHECK(b != NULL);
    if (b) {
        CHECK(_fil_small_entry((uintptr_t)b + (256 << 10) - 16) != NULL);
        CHECK(_fil_small_entry((uintptr_t)b + (256 << 10)) == NULL);
        CHECK_EQ_U(_fil_small_arena_unmap(b, 256 << 10), 1);
    }
    CHECK(_fil_small_arena_map(MIB + 4096) == NULL);   /* too big for a region */
    CHECK(_fil_small_arena_map(1000) == NULL);         /* not whole pages */

    /* Unmapping: only our arenas, and their entries are gone. */
    char other[64];
    CHECK_EQ_U(_fil_small_arena_unmap(other, sizeof other), 0);
    CHECK_EQ_U(_fil_small_arena_unmap(a, MIB), 1);
    CHECK(_fil_small_entry((uintptr_t)a) == NULL);
    CHECK_EQ_U(_fil_small_bytes(), before);
}

static void test_engine(void) {
    test_set_stack_provider(provider);
    _fil_track_reset();
    _fil_tracking = 1;
    char *a = _fil_small_arena_map(MIB);
    CHECK(a != NULL);
    if (!a) return;
    uint64_t base = live_now();

    /* An ordinary block: in the side table. */
    next_cs = 5;
    _fil_track_alloc(a + 48, 28);
    CHECK_EQ_U(live_now() - base, 28);
    uint32_t *e = _fil_small_entry((uintptr_t)a + 48);
    CHECK(e && *e != 0);
    uint64_t size; callsite_t cs;
    CHECK(_fil_track_take(a + 48, &size, &cs) == 1);
    CHECK_EQ_U(size, 28); CHECK_EQ_U(cs, 5);
    CHECK_EQ_U(live_now(), base);
    CHECK(_fil_track_take(a + 48, &size, &cs) == 0);
    _fil_track_put(a + 48, 28, 5);
    CHECK_EQ_U(live_now() - base, 28);
    _fil_track_free(a + 48);
    CHECK_EQ_U(live_now(), base);
    CHECK(*e == 0);

    /* Size 0 at callsite 0 (put back by a failed realloc, say) is still a tracked block, not an
       empty entry. */
    _fil_track_put(a + 64, 0, 0);
    CHECK(_fil_track_take(a + 64, &size, &cs) == 1);
    CHECK_EQ_U(size, 0); CHECK_EQ_U(cs, 0);

    /* The largest size and callsite an entry holds, and one past each: the latter spill to the
       allocation table and come back just the same. */
    next_cs = SMALL_MAX_CALLSITE;
    _fil_track_alloc(a + 96, SMALL_MAX_SIZE);
    CHECK(*_fil_small_entry((uintptr_t)a + 96) != 0);
    next_cs = 7;
    _fil_track_alloc(a + 4096, SMALL_MAX_SIZE + 1);
    CHECK(*_fil_small_entry((uintptr_t)a + 4096) == 0);
    next_cs = SMALL_MAX_CALLSITE + 1;
    _fil_track_alloc(a + 8192, 100);
    CHECK(*_fil_small_entry((uintptr_t)a + 8192) == 0);
    CHECK_EQ_U(live_now() - base, SMALL_MAX_SIZE + SMALL_MAX_SIZE + 1 + 100);
    CHECK(_fil_track_take(a + 96, &size, &cs) == 1);
    CHECK_EQ_U(size, SMALL_MAX_SIZE); CHECK_EQ_U(cs, SMALL_MAX_CALLSITE);
    CHECK(_fil_track_take(a + 4096, &size, &cs) == 1);
    CHECK_EQ_U(size, SMALL_MAX_SIZE + 1); CHECK_EQ_U(cs, 7);
    _fil_track_free(a + 8192);
    CHECK_EQ_U(live_now(), base);

    /* A block recorded twice without a free in between counts once, in either table. */
    next_cs = 3;
    _fil_track_alloc(a + 160, 40);
    _fil_track_alloc(a + 160, 24);
    CHECK_EQ_U(live_now() - base, 24);
    _fil_track_alloc(a + 160, 2000);   /* now too big for the entry: moves to the hash table */
    CHECK_EQ_U(live_now() - base, 2000);
    CHECK(*_fil_small_entry((uintptr_t)a + 160) == 0);
    _fil_track_free(a + 160);
    CHECK_EQ_U(live_now(), base);

    /* The peak sees side-table blocks like any other. */
    uint64_t live0, peak0, live1, peak1;
    _fil_track_stats(&live0, &peak0);
    for (int i = 0; i < 1000; i++) _fil_track_alloc(a + 16 * (i + 100), 16);
    for (int i = 0; i < 1000; i++) _fil_track_free(a + 16 * (i + 100));
    _fil_track_stats(&live1, &peak1);
    CHECK_EQ_U(live1, live0);
    CHECK(peak1 >= live0 + 16000);

    /* Reset forgets side-table blocks: a later free of one changes nothing. */
    _fil_track_alloc(a + 320, 50);
    _fil_track_reset();
    CHECK(*_fil_small_entry((uintptr_t)a + 320) == 0);
    _fil_track_free(a + 320);
    CHECK_EQ_U(live_now(), 0);

    _fil_tracking = 0;
    CHECK_EQ_U(_fil_small_arena_unmap(a, MIB), 1);
}

/* A MiB-aligned stretch of memory standing for malloc's heap. */
static char *heap_region(void **raw) {
    *raw = mmap(NULL, 3 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (*raw == MAP_FAILED) return NULL;
    return (char *)(((uintptr_t)*raw + MIB - 1) & ~(uintptr_t)(MIB - 1));
}

static void test_heap_regions(void) {
    test_set_stack_provider(provider);
    _fil_track_reset();
    _fil_tracking = 1;
    void *raw;
    char *h = heap_region(&raw);
    CHECK(h != NULL);
    if (!h) return;
    uint64_t size; callsite_t cs;
    CHECK(_fil_small_entry((uintptr_t)h + 64) == NULL);   /* not adopted yet */

    /* A big block and a small one: the allocation table, while the region has no side table. */
    next_cs = 9;
    _fil_track_alloc(h + 4096, 5000);
    next_cs = 4;
    _fil_track_alloc(h + 64, 32);
    CHECK(_fil_small_entry((uintptr_t)h + 64) == NULL);
    CHECK_EQ_U(live_now(), 5032);

    /* Small blocks close together: once SMALL_ADOPT_MIN of them were tracked (here in three
       16 KiB stretches, well under one per SMALL_ADOPT_PER_PAGE blocks), the next one adopts
       the region. */
    next_cs = 2;
    char *dense = h + 65536;
    size_t before = _fil_small_bytes();
    unsigned n = 0;
    while (n < 2 * SMALL_ADOPT_MIN && !_fil_small_entry((uintptr_t)h + 96)) {
        _fil_track_alloc(dense + 32 * n, 17);
        n++;
    }
    CHECK_EQ_U(n + 1, SMALL_ADOPT_MIN);   /* h + 64 was the first; the last one adopted */
    CHECK(*_fil_small_entry((uintptr_t)dense + 32 * (n - 1)) == fil_small_pack(2, 17));
    CHECK(*_fil_small_entry((uintptr_t)dense) == 0);   /* tracked before: allocation table */
    CHECK_EQ_U(_fil_small_bytes() - before, MIB / 4);
    next_cs = 5;
    _fil_track_alloc(h + 128, 40);
    uint32_t *e = _fil_small_entry((uintptr_t)h + 128);
    CHECK(e != NULL && *e == fil_small_pack(5, 40));
    CHECK(_fil_small_entry((uintptr_t)h) == e - 8);
    CHECK(_fil_small_entry((uintptr_t)h + MIB - 16) == e - 8 + MIB / 16 - 1);
    CHECK(_fil_small_entry((uintptr_t)h + MIB) == NULL);   /* the next region: not adopted */
    CHECK(_fil_small_entry((uintptr_t)h + 72) == NULL);    /* not 16-aligned */
    CHECK_EQ_U(live_now(), 5032 + (uint64_t)n * 17 + 40);

    /* Blocks tracked before the adoption are still found when freed, big and small. */
    CHECK(_fil_track_take(h + 4096, &size, &cs) == 1);
    CHECK_EQ_U(size, 5000); CHECK_EQ_U(cs, 9);
    CHECK(_fil_track_take(h + 64, &size, &cs) == 1);
    CHECK_EQ_U(size, 32); CHECK_EQ_U(cs, 4);
    for (unsigned i = 0; i < n; i++) _fil_track_free(dense + 32 * i);
    CHECK_EQ_U(live_now(), 40);
    /* A free of something never tracked changes nothing, in the side table or out of it. */
    CHECK(_fil_track_take(h + 160, &size, &cs) == 0);
    CHECK(_fil_track_take(h + 8192, &size, &cs) == 0);

    /* After the adoption: small blocks go to the side table, big and unaligned ones to the
       allocation table, and all come back. */
    next_cs = 6;
    _fil_track_alloc(h + 8192, 3000);
    _fil_track_alloc(h + 200, 24);   /* 8 past a granule */
    _fil_track_alloc(h + 224, 24);
    CHECK(*_fil_small_entry((uintptr_t)h + 8192) == 0);
    CHECK(*_fil_small_entry((uintptr_t)h + 224) == fil_small_pack(6, 24));
    CHECK_EQ_U(live_now(), 3088);
    CHECK(_fil_track_take(h + 8192, &size, &cs) == 1);
    CHECK_EQ_U(size, 3000); CHECK_EQ_U(cs, 6);
    CHECK(_fil_track_take(h + 200, &size, &cs) == 1);
    CHECK_EQ_U(size, 24);
    CHECK(_fil_track_take(h + 224, &size, &cs) == 1);
    CHECK(_fil_track_take(h + 128, &size, &cs) == 1);
    CHECK_EQ_U(size, 40); CHECK_EQ_U(cs, 5);
    CHECK_EQ_U(live_now(), 0);

    /* A second region with small blocks one per 256 bytes, in all its 64 stretches: too sparse
       for a side table; the peak sees them all the same. */
    next_cs = 2;
    for (int i = 0; i < 4096; i++) _fil_track_alloc(h + MIB + 256 * i, 17);
    CHECK(_fil_small_entry((uintptr_t)h + MIB) == NULL);
    CHECK_EQ_U(live_now(), 4096 * 17);
    for (int i = 0; i < 4096; i++) _fil_track_free(h + MIB + 256 * i);
    uint64_t live, peak;
    _fil_track_stats(&live, &peak);
    CHECK_EQ_U(live, 0);
    CHECK(peak >= 4096 * 17);

    /* Inside an arena's region but past its end: not adoptable. */
    char *b = _fil_small_arena_map(256 << 10);
    CHECK(b != NULL);
    if (b) {
        CHECK(_fil_small_adopt((uintptr_t)b + (512 << 10)) == NULL);
        CHECK_EQ_U(_fil_small_arena_unmap(b, 256 << 10), 1);
    }

    /* Reset empties heap side tables too, and the per-region counts. */
    _fil_track_alloc(h + 64, 48);
    _fil_track_alloc(h + 8192, 3000);
    CHECK(*_fil_small_entry((uintptr_t)h + 64) != 0);
    CHECK(_fil_small_spilled((uintptr_t)h + 64));
    _fil_track_reset();
    CHECK(*_fil_small_entry((uintptr_t)h + 64) == 0);
    CHECK(!_fil_small_spilled((uintptr_t)h + 64));
    _fil_track_free(h + 64);
    CHECK_EQ_U(live_now(), 0);
    _fil_tracking = 0;
    munmap(raw, 3 * MIB);
}

/* The own-memory figure counts a side table by the pages its entries touched, not by its
   mapped size: an arena adds next to nothing until blocks are recorded, then a page per 4 KiB
   of entries, and the same again once reset gives the pages back. */
static void test_own_bytes_are_resident(void) {
    test_set_stack_provider(provider);
    _fil_track_reset();
    _fil_tracking = 1;
    next_cs = 3;
    char *warm = _fil_small_arena_map(MIB);   /* its leaf made: later arenas may share it */
    char *a = _fil_small_arena_map(MIB);
    CHECK(warm != NULL && a != NULL);
    if (!warm || !a) return;
    _fil_track_alloc(warm + 64, 32);   /* the peak arrays grown for callsite 3 */
    uint64_t before = _fil_track_own_bytes();
    char *b = _fil_small_arena_map(MIB);
    CHECK(b != NULL);
    /* Page by page, also where the system backs anonymous memory with huge pages unasked. */
    madvise(a, MIB + MIB / 4, MADV_NOHUGEPAGE);
    if (b) madvise(b, MIB + MIB / 4, MADV_NOHUGEPAGE);
    uint64_t mapped = _fil_track_own_bytes();
    /* The new arena's 256 KiB side table is mapped, not touched (a leaf page at most). */
    CHECK(mapped - before <= 4096);
    /* Blocks 64 KiB apart: their entries lie 16 KiB apart, a side-table page each. */
    for (int k = 0; k < 16; k++) _fil_track_alloc(a + (size_t)k * (64 << 10), 32);
    uint64_t touched = _fil_track_own_bytes();
    CHECK_EQ_U(touched - mapped, 16 * 4096);
    _fil_track_reset();   /* side tables given back to the kernel */
    CHECK(_fil_track_own_bytes() <= mapped);
    _fil_tracking = 0;
    if (b) CHECK_EQ_U(_fil_small_arena_unmap(b, MIB), 1);
    CHECK_EQ_U(_fil_small_arena_unmap(a, MIB), 1);
    CHECK_EQ_U(_fil_small_arena_unmap(warm, MIB), 1);

    /* The out-of-memory report's reserve (tens of MiB, untouched until memory runs low) is
       mapped at the first start, and counts for what is resident of it. */
    setenv("FIL_DISABLE_OOM_DETECTION", "1", 1);
    size_t pages0 = prim_pages_in_use();
    uint64_t own0 = _fil_track_own_bytes();
    _fil_oom_start();
    CHECK(prim_pages_in_use() - pages0 >= 16 * MIB);
    CHECK(_fil_track_own_bytes() - own0 < 64 << 10);
    unsetenv("FIL_DISABLE_OOM_DETECTION");
}

int main(void) {
    test_lookup();
    test_engine();
    test_heap_regions();
    test_own_bytes_are_resident();
    return test_report("test_small_map");
}
