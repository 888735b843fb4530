/* Unit tests for the profiler's page allocator (prim_linux.c): zeroed memory, the accounting of
 * prim_pages_in_use, PRIM_PAGES_POPULATE leaving every page resident before first use, and
 * prim_pages_populate doing the same later without changing what is written there. */
#include "prim.h"
#include "testhelper.h"

#include <string.h>
#include <sys/mman.h>

#define MIB ((size_t)1 << 20)

/* Pages of p[0..size) that are resident now (mincore), without touching them. */
static size_t resident_pages(void *p, size_t size) {
    static unsigned char vec[(64 << 20) / 4096];
    size_t pages = (size + 4095) / 4096;
    if (pages > sizeof vec || mincore(p, size, vec) != 0) return (size_t)-1;
    size_t n = 0;
    for (size_t i = 0; i < pages; i++) n += vec[i] & 1;
    return n;
}

static int all_zero(const unsigned char *p, size_t size) {
    for (size_t i = 0; i < size; i += 512)
        if (p[i]) return 0;
    return p[size - 1] == 0;
}

static void test_populate(unsigned flags, size_t size) {
    size_t before = prim_pages_in_use();
    unsigned char *p = prim_pages_alloc_with(size, flags);
    CHECK(p != NULL);
    if (!p) return;
    CHECK_EQ_U(prim_pages_in_use() - before, size);
    if (flags & PRIM_PAGES_POPULATE) CHECK_EQ_U(resident_pages(p, size), size / 4096);
    CHECK(all_zero(p, size));
    memset(p, 0x5a, size);   /* writable all over */
    prim_pages_free(p, size);
    CHECK_EQ_U(prim_pages_in_use(), before);
}

static void test_lazy_by_default(void) {
    /* Without PRIM_PAGES_POPULATE nothing is faulted in until used: a table that may stay
       mostly empty costs only the pages it touches. */
    unsigned char *p = prim_pages_alloc_with(8 * MIB, 0);
    CHECK(p != NULL);
    if (!p) return;
    CHECK(resident_pages(p, 8 * MIB) < 8 * MIB / 4096 / 2);
    prim_pages_free(p, 8 * MIB);
}

static void test_populate_later(void) {
    size_t size = 20 * MIB + 4096;
    unsigned char *p = prim_pages_alloc_with(size, 0);
    CHECK(p != NULL);
    if (!p) return;
    memset(p + 5 * MIB, 0x77, 4096 + 10);   /* already written: must stay as it is */
    CHECK(resident_pages(p, size) < size / 4096 / 2);
    prim_pages_populate(p, size);
    CHECK_EQ_U(resident_pages(p, size), size / 4096);
    CHECK(p[5 * MIB] == 0x77 && p[5 * MIB + 4096 + 9] == 0x77 && p[5 * MIB + 4096 + 10] == 0);
    CHECK(all_zero(p, 5 * MIB) && all_zero(p + 6 * MIB, size - 6 * MIB));
    prim_pages_free(p, size);
}

/* prim_resident_bytes counts what was touched, across its 16 MiB chunks, and agrees with
   mincore read directly. */
static void test_resident_bytes(void) {
    size_t size = 20 * MIB;
    unsigned char *p = prim_pages_alloc_with(size, 0);
    CHECK(p != NULL);
    if (!p) return;
    madvise(p, size, MADV_NOHUGEPAGE);   /* page by page, whatever the system default */
    CHECK_EQ_U(prim_resident_bytes(p, size), 0);
    size_t pages[] = {0, 5, 4095, 4096, 5000, size / 4096 - 1};
    for (size_t i = 0; i < sizeof pages / sizeof *pages; i++) p[pages[i] * 4096 + 7] = 1;
    CHECK_EQ_U(prim_resident_bytes(p, size), 6 * 4096);
    CHECK_EQ_U(prim_resident_bytes(p, size), resident_pages(p, size) * 4096);
    CHECK_EQ_U(prim_resident_bytes(p + 4096, 4095 * 4096), 2 * 4096);   /* pages 5 and 4095 */
    CHECK_EQ_U(prim_resident_bytes(p, 100), 100);   /* never more than asked about */
    prim_pages_free(p, size);
}

int main(void) {
    test_resident_bytes();
    test_populate(0, 64 * 1024);
    test_populate(PRIM_PAGES_POPULATE, 64 * 1024 + 4096);
    test_populate(PRIM_PAGES_POPULATE, 20 * MIB);
    test_populate(PRIM_PAGES_HUGE, 8 * MIB);
    test_populate(PRIM_PAGES_HUGE | PRIM_PAGES_POPULATE, 8 * MIB);   /* advised, then populated */
    test_populate(PRIM_PAGES_HUGE | PRIM_PAGES_POPULATE, MIB);       /* under 4 MiB: small pages */
    test_lazy_by_default();
    test_populate_later();
    /* prim_pages_alloc keeps its default: huge pages from 4 MiB, nothing populated. */
    unsigned char *p = prim_pages_alloc(8 * MIB);
    CHECK(p != NULL);
    if (p) {
        CHECK(resident_pages(p, 8 * MIB) < 8 * MIB / 4096 / 2);
        prim_pages_free(p, 8 * MIB);
    }
    return test_report("test_prim_pages");
}
