/* prof_write.c: writes the collapsed-stacks file (peak-memory.prof, out-of-memory.prof).
 *
 * The format is the one flamegraph.pl, inferno and speedscope read, and other tools parse it, so
 * it is kept exactly: one line per call stack, frames from the root separated by ';', each frame
 * `FILE:LINE (FUNCTION)`, one space, the bytes. Memory with no Python stack is the single line
 * `[No Python stack] BYTES`. A ';' or line break inside a name would break the format, so those
 * bytes are written as '_' (the only change ever made to program-derived text here).
 *
 * Runs under the tracking lock and on the out-of-memory path: no malloc, a static buffer.
 */
#include "fil_internal.h"
#include "outbuf.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static char buffer[1 << 16];

/* The line being written. Lines are written in callsite order, in which a stack usually
 * starts with most of the previous line's frames (a callsite's parent has a smaller id): the
 * frames it shares with the previous line are kept in place, and only the others formatted.
 * A line longer than the buffer spills into the file's buffer as it goes, and the next line
 * then starts from scratch. */
static char line_buf[1 << 16];
typedef struct {
    outbuf_t *ob;          /* where full lines (and spills) go */
    size_t len;            /* bytes of line_buf in use */
    int spilled;           /* part of this line went out already: line_buf is not the line */
    uint32_t depth;        /* frames of the line in line_buf, for the next one to share */
    callsite_t frames[FIL_MAX_FRAMES + 4];   /* root first */
    size_t text_end[FIL_MAX_FRAMES + 4];     /* offset after frame k's text (before ';' or ' ') */
} line_t;
static line_t line;

static void line_put(line_t *l, const char *s, size_t n) {
    if (n > sizeof line_buf - l->len) {
        outbuf_write(l->ob, line_buf, l->len);
        l->len = 0;
        l->spilled = 1;
        if (n > sizeof line_buf) {
            outbuf_write(l->ob, s, n);
            return;
        }
    }
    memcpy(line_buf + l->len, s, n);
    l->len += n;
}

static void line_putc(line_t *l, char c) { line_put(l, &c, 1); }

/* Whether the 8 bytes of w hold a ';', '\n' or '\r'. A byte is found zero in w ^ pattern by
   (x - 0x01..) & ~x & 0x80..: exact as to whether any byte is zero, which is all we ask. */
static inline int word_has_special(uint64_t w) {
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t a = w ^ (ones * ';'), b = w ^ (ones * '\n'), c = w ^ (ones * '\r');
    return (((a - ones) & ~a) | ((b - ones) & ~b) | ((c - ones) & ~c)) & highs ? 1 : 0;
}

/* Names are written once per frame of every stack (megabytes for a big program) and almost
   never hold a byte to replace: skip clean runs eight bytes at a time, then copy in one go. */
static void put_name(line_t *l, const char *s, size_t n) {
    size_t start = 0, i = 0;
    for (;;) {
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (word_has_special(w)) break;
            i += 8;
        }
        size_t stop = i + 8 <= n ? i + 8 : n;
        for (; i < stop; i++) {
            char c = s[i];
            if (c == ';' || c == '\n' || c == '\r') {
                line_put(l, s + start, i - start);
                line_putc(l, '_');
                start = i + 1;
            }
        }
        if (i >= n) break;
    }
    line_put(l, s + start, n - start);
}

static void put_frame(line_t *l, callsite_t cs) {
    size_t n;
    const char *file = _fil_callsite_file(cs, &n);
    if (n == 0) {   /* a synthetic frame: "[stack truncated]" */
        const char *name = _fil_callsite_name(cs, &n);
        put_name(l, name, n);
        return;
    }
    put_name(l, file, n);
    char num[24];
    num[0] = ':';
    size_t k = 1 + fmt_u64(num + 1, _fil_callsite_line(cs));
    num[k++] = ' ';
    num[k++] = '(';
    line_put(l, num, k);
    const char *name = _fil_callsite_name(cs, &n);
    put_name(l, name, n);
    line_putc(l, ')');
}

/* One line: chain[0..depth) (root first) and the bytes. */
static void put_stack(line_t *l, const callsite_t *chain, uint32_t depth, uint64_t bytes) {
    uint32_t k = 0;
    if (!l->spilled)
        while (k < depth && k < l->depth && chain[k] == l->frames[k]) k++;
    l->spilled = 0;
    l->len = k ? l->text_end[k - 1] : 0;
    for (uint32_t j = k; j < depth; j++) {
        if (j > 0) line_putc(l, ';');
        put_frame(l, chain[j]);
        l->frames[j] = chain[j];
        l->text_end[j] = l->len;
    }
    l->depth = depth;
    char num[24];
    num[0] = ' ';
    size_t n = 1 + fmt_u64(num + 1, bytes);
    num[n++] = '\n';
    line_put(l, num, n);
    outbuf_write(l->ob, line_buf, l->len);
}

int _fil_prof_write(const char *path, const uint64_t *bytes, uint64_t mask, uint32_t ncallsites) {
    int fd = outbuf_open_file(path);
    if (fd < 0) return -1;
    outbuf_t ob;
    outbuf_init(&ob, fd, buffer, sizeof buffer);
    line.ob = &ob;
    line.len = 0;
    line.spilled = 1;   /* nothing to share with yet */
    line.depth = 0;
    callsite_t chain[FIL_MAX_FRAMES + 4];
    for (callsite_t cs = 0; cs < ncallsites; cs++) {
        uint64_t b = bytes[cs] & mask;
        if (b == 0) continue;
        if (cs == CALLSITE_NO_PYTHON) {
            outbuf_puts(&ob, "[No Python stack] ");
            outbuf_u64(&ob, b);
            outbuf_putc(&ob, '\n');
            continue;
        }
        uint32_t depth = 0;
        for (callsite_t c = cs; c != CALLSITE_NO_PYTHON && depth < FIL_MAX_FRAMES + 4;
             c = _fil_callsite_parent(c))
            depth++;
        uint32_t k = depth;
        for (callsite_t c = cs; k > 0; c = _fil_callsite_parent(c)) chain[--k] = c;
        put_stack(&line, chain, depth, b);
    }
    int r = outbuf_flush(&ob);
    int saved = errno;
    if (close(fd) < 0 && r == 0) { r = -1; saved = errno; }
    errno = saved;
    return r;
}
