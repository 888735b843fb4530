/* test_prof_write.c: unit tests of the collapsed-stacks writer (src/prof_write.c).
 *
 * The writer skips clean stretches of names eight bytes at a time, and keeps the frames a line
 * shares with the previous one instead of writing them again. So what it writes is checked
 * against the obvious writer: every line formatted on its own, frame by frame, with the
 * byte-by-byte rule (';', '\n', '\r' become '_'). For names holding those bytes at every offset
 * around the 8-byte steps, several in a row, at both ends, and none, and the bytes next to
 * those values, or equal to them plus 0x80, which must pass unchanged; and for trees of deep
 * stacks, including lines longer than the writer's line buffer.
 */
#include "fil_internal.h"
#include "rng.h"
#include "testhelper.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The reference: one frame as the format says it is written. */
static size_t put_escaped(char *dst, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = (s[i] == ';' || s[i] == '\n' || s[i] == '\r') ? '_' : s[i];
    return n;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[8 << 20];
    *len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return buf;
}

#define NCASES 400

static void write_masked_and_compare(const uint64_t *bytes, uint64_t mask, uint32_t ncallsites,
                                     const char *expected, size_t elen) {
    char path[] = "/tmp/test_prof_write_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_EQ_U(_fil_prof_write(path, bytes, mask, ncallsites), 0);
    size_t len = 0;
    const char *got = read_all(path, &len);
    unlink(path);
    CHECK(got != NULL);
    CHECK_EQ_U(len, elen);
    CHECK(got && len == elen && memcmp(got, expected, elen) == 0);
}

/* Write a .prof of bytes[0, ncallsites) and check it is exactly expected[0, elen); then the same
   from the live counts' form, every entry carrying the dirty mark (peak.c), which must neither
   show in a count nor make an empty callsite appear. */
static void write_and_compare(const uint64_t *bytes, uint32_t ncallsites, const char *expected,
                              size_t elen) {
    write_masked_and_compare(bytes, ~(uint64_t)0, ncallsites, expected, elen);
    uint64_t *marked = malloc((ncallsites ? ncallsites : 1) * sizeof *marked);
    CHECK(marked != NULL);
    if (!marked) return;
    for (uint32_t cs = 0; cs < ncallsites; cs++) marked[cs] = bytes[cs] | PEAK_DIRTY;
    write_masked_and_compare(marked, PEAK_BYTES, ncallsites, expected, elen);
    free(marked);
}

static void test_escaping(void) {
    static const char specials[] = {';', '\n', '\r'};
    static const char neighbours[] = {':', '<', '\t', '\v', '\x0c', '\x0e', '\x8a', '\x8d', '\xbb', '_'};
    static char names[NCASES][64], files[NCASES][64];
    static uint64_t bytes[1 << 12];
    static char expected[1 << 20];
    rng_t rng = {test_seed("test_prof_write", 42)};

    _fil_callsite_reset_all();
    CHECK_EQ_U(_fil_callsite_init(), 0);
    memset(bytes, 0, sizeof bytes);
    size_t elen = 0;
    for (int k = 0; k < NCASES; k++) {
        /* Names of 0..40 bytes: clean filler, neighbours of the special bytes, and up to three
           specials at chosen offsets (every offset 0..39 is covered by the first cases). */
        size_t n = k < 40 ? 40 : rng_below(&rng, 41);
        for (size_t i = 0; i < n; i++)
            names[k][i] = rng_below(&rng, 4) ? (char)('a' + rng_below(&rng, 26))
                                             : neighbours[rng_below(&rng, sizeof neighbours)];
        if (k < 40 && n > 0) names[k][k % n] = specials[k % 3];
        else
            for (int j = (int)rng_below(&rng, 4); j > 0 && n > 0; j--)
                names[k][rng_below(&rng, n)] = specials[rng_below(&rng, 3)];
        size_t fn = 1 + rng_below(&rng, 30);
        for (size_t i = 0; i < fn; i++) files[k][i] = (char)('a' + rng_below(&rng, 26));
        if (rng_below(&rng, 3) == 0) files[k][rng_below(&rng, fn)] = specials[rng_below(&rng, 3)];

        callsite_t cs = _fil_callsite_child(CALLSITE_NO_PYTHON, files[k], fn, names[k], n, (uint32_t)k + 1);
        CHECK(cs != CALLSITE_MAX && cs < sizeof bytes / sizeof bytes[0]);
        if (bytes[cs]) continue;   /* the same frame drawn twice: written once */
        bytes[cs] = (uint64_t)k + 1;
    }
    /* Expected output: one line per callsite with bytes, in id order. */
    for (callsite_t cs = 0; cs < _fil_callsite_count(); cs++) {
        if (!bytes[cs]) continue;
        size_t fl, nl;
        const char *f = _fil_callsite_file(cs, &fl);
        const char *nm = _fil_callsite_name(cs, &nl);
        elen += put_escaped(expected + elen, f, fl);
        elen += (size_t)sprintf(expected + elen, ":%u (", _fil_callsite_line(cs));
        elen += put_escaped(expected + elen, nm, nl);
        elen += (size_t)sprintf(expected + elen, ") %llu\n", (unsigned long long)bytes[cs]);
    }
    write_and_compare(bytes, _fil_callsite_count(), expected, elen);
}

/* The reference for a whole file: each callsite with bytes, in id order, written from its
   root by walking parent links, every frame formatted on its own. */
static size_t reference_file(char *out, const uint64_t *bytes, uint32_t ncallsites) {
    size_t len = 0;
    for (callsite_t cs = 0; cs < ncallsites; cs++) {
        if (!bytes[cs]) continue;
        if (cs == CALLSITE_NO_PYTHON) {
            len += (size_t)sprintf(out + len, "[No Python stack] %llu\n", (unsigned long long)bytes[cs]);
            continue;
        }
        callsite_t chain[FIL_MAX_FRAMES + 4];
        size_t depth = 0;
        for (callsite_t c = cs; c != CALLSITE_NO_PYTHON && depth < FIL_MAX_FRAMES + 4; c = _fil_callsite_parent(c))
            chain[depth++] = c;
        while (depth > 0) {
            callsite_t c = chain[--depth];
            size_t fl, nl;
            const char *f = _fil_callsite_file(c, &fl);
            const char *nm = _fil_callsite_name(c, &nl);
            if (fl == 0) {
                len += put_escaped(out + len, nm, nl);
            } else {
                len += put_escaped(out + len, f, fl);
                len += (size_t)sprintf(out + len, ":%u (", _fil_callsite_line(c));
                len += put_escaped(out + len, nm, nl);
                out[len++] = ')';
            }
            out[len++] = depth ? ';' : ' ';
        }
        len += (size_t)sprintf(out + len, "%llu\n", (unsigned long long)bytes[cs]);
    }
    return len;
}

static void check_file(const uint64_t *bytes, uint32_t ncallsites) {
    static char expected[8 << 20];
    size_t elen = reference_file(expected, bytes, ncallsites);
    write_and_compare(bytes, ncallsites, expected, elen);
}

/* Deep stacks sharing prefixes as a program's do (each callsite's parent is an earlier one),
   some with bytes and some not, so a line shares all, part or none of the previous line; the
   truncation marker as a root; and lines longer than the line buffer (64 KiB), which spill,
   next to lines sharing their frames. */
static void test_stacks(void) {
    static uint64_t bytes[20000];
    static const char *const files[] = {"/app/main.py", "/usr/lib/python3.11/json/decoder.py",
                                        "x;y.py", "<frozen importlib._bootstrap>", ""};
    static const char *const names[] = {"<module>", "f", "Klass.method", "a\nb", "[marker]"};
    rng_t rng = {test_seed("test_prof_write", 7)};
    _fil_callsite_reset_all();
    CHECK_EQ_U(_fil_callsite_init(), 0);
    memset(bytes, 0, sizeof bytes);
    callsite_t nodes[4000];
    uint32_t n = 0;
    nodes[n++] = CALLSITE_NO_PYTHON;
    nodes[n++] = _fil_callsite_truncated_root();
    while (n < 4000) {
        callsite_t parent = nodes[rng_below(&rng, 4) ? n - 1 - rng_below(&rng, n < 8 ? n : 8) : rng_below(&rng, n)];
        const char *f = files[rng_below(&rng, 5)], *nm = names[rng_below(&rng, 5)];
        callsite_t c = _fil_callsite_child(parent, f, strlen(f), nm, strlen(nm),
                                           (uint32_t)rng_below(&rng, 3000));
        CHECK(c != CALLSITE_MAX);
        if (c == CALLSITE_MAX) return;
        nodes[n++] = c;
    }
    for (uint32_t cs = 0; cs < _fil_callsite_count() && cs < 20000; cs++)
        if (rng_below(&rng, 3)) bytes[cs] = rng_below(&rng, 1u << 30) + 1;
    check_file(bytes, _fil_callsite_count() < 20000 ? _fil_callsite_count() : 20000);

    /* Long lines: 120 frames of 1000-byte names (120 KB a line), then lines sharing them. */
    static char big[1001];
    memset(big, 'n', 1000);
    callsite_t c = CALLSITE_NO_PYTHON;
    uint32_t first = _fil_callsite_count();
    for (uint32_t k = 0; k < 120; k++) {
        big[k % 1000] = (char)('a' + k % 26);
        c = _fil_callsite_child(c, "long.py", 7, big, 1000, k + 1);
        CHECK(c != CALLSITE_MAX);
    }
    callsite_t sib = _fil_callsite_child(_fil_callsite_parent(c), "long.py", 7, "sib", 3, 9);
    callsite_t deeper = _fil_callsite_child(c, "short.py", 8, "g", 1, 2);
    CHECK(sib != CALLSITE_MAX && deeper != CALLSITE_MAX && deeper < 20000);
    memset(bytes, 0, sizeof bytes);
    bytes[first + 5] = 1;
    bytes[c] = 2;
    bytes[sib] = 3;
    bytes[deeper] = 4;
    check_file(bytes, deeper + 1);
}

int main(void) {
    test_escaping();
    test_stacks();
    return test_report("test_prof_write");
}
