/* test_prof_write.c: unit tests of the collapsed-stacks writer (src/prof_write.c).
 *
 * The writer skips clean stretches of names eight bytes at a time, so what it writes is checked
 * against the obvious byte-by-byte rule (';', '\n', '\r' become '_') for names holding those
 * bytes at every offset around the 8-byte steps, several in a row, at both ends, and none;
 * and for the bytes next to those values, or equal to them plus 0x80, which must pass unchanged.
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
    static char buf[1 << 20];
    *len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return buf;
}

#define NCASES 400

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
    char path[] = "/tmp/test_prof_write_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_EQ_U(_fil_prof_write(path, bytes, _fil_callsite_count()), 0);
    size_t len = 0;
    const char *got = read_all(path, &len);
    unlink(path);
    CHECK(got != NULL);
    CHECK_EQ_U(len, elen);
    CHECK(got && len == elen && memcmp(got, expected, elen) == 0);
}

int main(void) {
    test_escaping();
    return test_report("test_prof_write");
}
