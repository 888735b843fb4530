/* test_callsite.c: unit tests of call-stack interning (src/callsite.c).
 *
 * Identical stacks must be the same id and different stacks different ids, whatever the string
 * pointers; walking parent links must give back the frames that were interned. A randomized run
 * interns random stacks over a small alphabet of files, functions and lines (so that prefixes are
 * shared heavily, as in real programs) and checks both properties against a model that keeps
 * every stack as a string. The interpreter-key cache is tested for hits, misses on each key part
 * and the fingerprint, overwrite and growth. The CALLSITE_MAX overflow (16 million nodes, about
 * half a GiB) runs only when FIL_TEST_SLOW=1.
 */
#include "fil_internal.h"
#include "rng.h"
#include "testhelper.h"

#include <stdlib.h>
#include <string.h>

static callsite_t child(callsite_t parent, const char *file, const char *name, uint32_t line) {
    return _fil_callsite_child(parent, file, strlen(file), name, strlen(name), line);
}

static int frame_is(callsite_t cs, const char *file, const char *name, uint32_t line) {
    size_t flen, nlen;
    const char *f = _fil_callsite_file(cs, &flen);
    const char *n = _fil_callsite_name(cs, &nlen);
    return flen == strlen(file) && memcmp(f, file, flen) == 0 && nlen == strlen(name) &&
           memcmp(n, name, nlen) == 0 && _fil_callsite_line(cs) == line;
}

static void test_fixed(void) {
    _fil_callsite_reset_all();
    CHECK_EQ_U(_fil_callsite_init(), 0);
    CHECK_EQ_U(_fil_callsite_init(), 0);   /* twice is harmless */
    uint32_t base = _fil_callsite_count();
    CHECK_EQ_U(base, 2);                    /* the root and the truncation marker */
    CHECK(frame_is(CALLSITE_NO_PYTHON, "", "[No Python stack]", 0));
    callsite_t trunc = _fil_callsite_truncated_root();
    CHECK(trunc != CALLSITE_NO_PYTHON && trunc != CALLSITE_MAX);
    CHECK_EQ_U(_fil_callsite_parent(trunc), CALLSITE_NO_PYTHON);
    CHECK(frame_is(trunc, "", "[stack truncated]", 0));

    callsite_t a = child(0, "a.py", "main", 3);
    callsite_t b = child(a, "a.py", "f", 10);
    CHECK(a != CALLSITE_MAX && b != CALLSITE_MAX && a != b && a != 0);
    CHECK_EQ_U(_fil_callsite_parent(b), a);
    CHECK_EQ_U(_fil_callsite_parent(a), 0);
    CHECK(frame_is(b, "a.py", "f", 10));

    /* Same frames, strings at other addresses: the same ids, no new node. */
    char file[] = "a.py", name[] = "f";
    uint32_t before = _fil_callsite_count();
    CHECK_EQ_U(_fil_callsite_child(a, file, 4, name, 1, 10), b);
    CHECK_EQ_U(child(0, "a.py", "main", 3), a);
    CHECK_EQ_U(_fil_callsite_count(), before);

    /* Each part of a frame matters: line, parent, function, file, and the split between
       file and name ("a.py"+"f" vs "a.p"+"yf"). */
    callsite_t line2 = child(a, "a.py", "f", 11);
    callsite_t parent2 = child(0, "a.py", "f", 10);
    callsite_t func2 = child(a, "a.py", "g", 10);
    callsite_t file2 = child(a, "b.py", "f", 10);
    callsite_t split2 = child(a, "a.p", "yf", 10);
    callsite_t ids[] = {b, line2, parent2, func2, file2, split2};
    int distinct = 1;
    for (size_t i = 0; i < 6; i++)
        for (size_t j = i + 1; j < 6; j++)
            if (ids[i] == ids[j]) distinct = 0;
    CHECK(distinct);
    CHECK_EQ_U(_fil_callsite_count(), before + 5);

    /* Names with any bytes (NUL, non-UTF-8) are kept exactly. */
    static const char odd[] = {'x', 0, '\xff', '<', ';'};
    callsite_t o = _fil_callsite_child(a, odd, sizeof odd, "", 0, 0);
    size_t len;
    const char *got = _fil_callsite_file(o, &len);
    CHECK(len == sizeof odd && memcmp(got, odd, len) == 0);
    CHECK_EQ_U(_fil_callsite_child(a, odd, sizeof odd, "", 0, 0), o);

    /* Ids beyond the interned count (the overflow node) read as the overflow marker. */
    got = _fil_callsite_name(CALLSITE_MAX, &len);
    CHECK(len == strlen("[too many call stacks]") && memcmp(got, "[too many call stacks]", len) == 0);
    CHECK_EQ_U(_fil_callsite_parent(CALLSITE_MAX), 0);
    _fil_callsite_file(CALLSITE_MAX, &len);
    CHECK_EQ_U(len, 0);

    /* Reset forgets everything; interning starts again from the root. */
    _fil_callsite_reset_all();
    CHECK_EQ_U(_fil_callsite_count(), 0);
    callsite_t again = child(0, "z.py", "main", 1);   /* initializes lazily */
    CHECK_EQ_U(_fil_callsite_count(), 3);
    CHECK(frame_is(again, "z.py", "main", 1));
}

static void test_cache(void) {
    _fil_callsite_reset_all();
    CHECK_EQ_U(_fil_callsite_init(), 0);
    int code1, code2;   /* stand-ins for code objects: only their addresses matter */
    callsite_t node = 77;
    CHECK_EQ_U(_fil_callsite_cache_get(0, &code1, 4, 0x11, &node), 0);   /* empty */
    _fil_callsite_cache_put(0, &code1, 4, 0x11, 5);
    CHECK_EQ_U(_fil_callsite_cache_get(0, &code1, 4, 0x11, &node), 1);
    CHECK_EQ_U(node, 5);
    /* A miss on each part of the key, and on the fingerprint (a reused code address). */
    CHECK_EQ_U(_fil_callsite_cache_get(1, &code1, 4, 0x11, &node), 0);
    CHECK_EQ_U(_fil_callsite_cache_get(0, &code2, 4, 0x11, &node), 0);
    CHECK_EQ_U(_fil_callsite_cache_get(0, &code1, 6, 0x11, &node), 0);
    CHECK_EQ_U(_fil_callsite_cache_get(0, &code1, 4, 0x12, &node), 0);
    /* A put for the same position with a new fingerprint replaces the entry. */
    _fil_callsite_cache_put(0, &code1, 4, 0x12, 6);
    CHECK_EQ_U(_fil_callsite_cache_get(0, &code1, 4, 0x12, &node), 1);
    CHECK_EQ_U(node, 6);
    CHECK_EQ_U(_fil_callsite_cache_get(0, &code1, 4, 0x11, &node), 0);

    /* Growth keeps every entry. */
    static char codes[3000];
    for (uint32_t i = 0; i < 3000; i++)
        for (int32_t lasti = 0; lasti < 10; lasti++)
            _fil_callsite_cache_put(i % 7, &codes[i], lasti * 2, i ^ 0x5a, i * 10 + (uint32_t)lasti);
    size_t hits = 0;
    for (uint32_t i = 0; i < 3000; i++)
        for (int32_t lasti = 0; lasti < 10; lasti++)
            if (_fil_callsite_cache_get(i % 7, &codes[i], lasti * 2, i ^ 0x5a, &node) &&
                node == i * 10 + (uint32_t)lasti)
                hits++;
    CHECK_EQ_U(hits, 30000);

    _fil_callsite_reset_all();
    CHECK_EQ_U(_fil_callsite_cache_get(0, &code1, 4, 0x12, &node), 0);
}

/* ---- randomized, against a model of stacks as strings ---- */

#define NSTACKS 20000
#define MAXDEPTH 12

static const char *files[] = {"main.py", "lib/io.py", "numpy/core.py", "a.py", "b.py"};
static const char *names[] = {"<module>", "load", "f", "g", "__init__", "<lambda>", "run"};

typedef struct {
    int depth;
    uint8_t file[MAXDEPTH], name[MAXDEPTH];
    uint32_t line[MAXDEPTH];
} stack_t_;

static int stack_equal(const stack_t_ *a, const stack_t_ *b) {
    if (a->depth != b->depth) return 0;
    for (int i = 0; i < a->depth; i++)
        if (a->file[i] != b->file[i] || a->name[i] != b->name[i] || a->line[i] != b->line[i])
            return 0;
    return 1;
}

static stack_t_ stacks[NSTACKS];
static callsite_t ids[NSTACKS];
static int first_with_id[1 << 20];   /* id -> index of the first stack interned to it, + 1 */

static void test_random(uint64_t seed) {
    rng_t r = {seed};
    _fil_callsite_reset_all();
    memset(first_with_id, 0, sizeof first_with_id);
    size_t bad_walk = 0, bad_same = 0, bad_distinct = 0, exact_copies = 0;
    for (size_t s = 0; s < NSTACKS; s++) {
        stack_t_ *st = &stacks[s];
        /* Half the stacks extend or copy an earlier one, so equal stacks and shared prefixes
           are common. */
        int exact = 0, copied = 0;
        size_t src = 0;
        if (s > 0 && rng_below(&r, 2) == 0) {
            src = rng_below(&r, s);
            *st = stacks[src];
            copied = 1;
            exact = rng_below(&r, 3) == 0;
            if (!exact && st->depth < MAXDEPTH && rng_below(&r, 2) == 0) st->depth++;
        } else {
            st->depth = (int)rng_range(&r, 1, MAXDEPTH);
        }
        for (int i = 0; i < st->depth && !exact; i++) {
            if (copied && i < st->depth - 1) continue;   /* kept prefix; the leaf changes */
            st->file[i] = (uint8_t)rng_below(&r, 5);
            st->name[i] = (uint8_t)rng_below(&r, 7);
            st->line[i] = (uint32_t)rng_range(&r, 1, 4);
        }
        callsite_t cs = CALLSITE_NO_PYTHON;
        for (int i = 0; i < st->depth; i++)
            cs = child(cs, files[st->file[i]], names[st->name[i]], st->line[i]);
        ids[s] = cs;
        if (exact) {
            exact_copies++;
            if (ids[src] != cs) bad_same++;
        }
        if (cs >= (1u << 20)) { bad_distinct++; continue; }

        /* Walking up gives back the frames, leaf first, ending at the root. */
        callsite_t w = cs;
        for (int i = st->depth - 1; i >= 0; i--) {
            if (!frame_is(w, files[st->file[i]], names[st->name[i]], st->line[i])) bad_walk++;
            w = _fil_callsite_parent(w);
        }
        if (w != CALLSITE_NO_PYTHON) bad_walk++;

        /* Same id exactly when the same stack. */
        if (first_with_id[cs]) {
            if (!stack_equal(&stacks[first_with_id[cs] - 1], st)) bad_distinct++;
        } else {
            first_with_id[cs] = (int)s + 1;
        }
    }
    /* Equal stacks interned at different times got the same id (exact copies are checked as
       they are made; these are the equal stacks that arose by chance). */
    size_t equal_pairs = 0;
    for (size_t i = 0; i < NSTACKS; i += 7)
        for (size_t j = i + 1; j < NSTACKS && j < i + 400; j++)
            if (stack_equal(&stacks[i], &stacks[j])) {
                equal_pairs++;
                if (ids[i] != ids[j]) bad_same++;
            }
    (void)equal_pairs;
    CHECK(exact_copies > NSTACKS / 10);
    CHECK_EQ_U(bad_walk, 0);
    CHECK_EQ_U(bad_same, 0);
    CHECK_EQ_U(bad_distinct, 0);
    /* Sharing worked: far fewer nodes than frames interned. */
    CHECK(_fil_callsite_count() < NSTACKS * MAXDEPTH / 2);
}

/* Fill the trie to CALLSITE_MAX nodes: the next new stack is the overflow id, known ones keep
   their ids. */
static void test_overflow(void) {
    _fil_callsite_reset_all();
    callsite_t first = child(0, "f.py", "f", 1);
    uint32_t line = 2;
    callsite_t last = first;
    while (_fil_callsite_count() < CALLSITE_MAX) last = child(first, "f.py", "f", line++);
    CHECK(last != CALLSITE_MAX);
    CHECK_EQ_U(child(first, "f.py", "f", line++), CALLSITE_MAX);
    CHECK_EQ_U(child(first, "f.py", "f", line++), CALLSITE_MAX);
    CHECK_EQ_U(child(first, "f.py", "f", line - 3), last);   /* known stacks still found */
    CHECK_EQ_U(child(0, "f.py", "f", 1), first);
    CHECK_EQ_U(_fil_callsite_count(), CALLSITE_MAX);
}

int main(void) {
    test_fixed();
    test_cache();
    uint64_t seed = test_seed("test_callsite", 0xCA11);
    for (int i = 0; i < 3; i++) test_random(seed + (uint64_t)i);
    const char *slow = getenv("FIL_TEST_SLOW");
    if (slow && strcmp(slow, "1") == 0) test_overflow();
    else printf("test_callsite: CALLSITE_MAX overflow skipped (FIL_TEST_SLOW=1 runs it)\n");
    return test_report("test_callsite");
}
