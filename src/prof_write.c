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

/* Whether the 8 bytes of w hold a ';', '\n' or '\r'. A byte is found zero in w ^ pattern by
   (x - 0x01..) & ~x & 0x80..: exact as to whether any byte is zero, which is all we ask. */
static inline int word_has_special(uint64_t w) {
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t a = w ^ (ones * ';'), b = w ^ (ones * '\n'), c = w ^ (ones * '\r');
    return (((a - ones) & ~a) | ((b - ones) & ~b) | ((c - ones) & ~c)) & highs ? 1 : 0;
}

/* Names are written once per frame of every stack (megabytes for a big program) and almost
   never hold a byte to replace: skip clean runs eight bytes at a time, then copy in one go. */
static void put_name(outbuf_t *ob, const char *s, size_t n) {
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
                outbuf_write(ob, s + start, i - start);
                outbuf_putc(ob, '_');
                start = i + 1;
            }
        }
        if (i >= n) break;
    }
    outbuf_write(ob, s + start, n - start);
}

static void put_frame(outbuf_t *ob, callsite_t cs) {
    size_t n;
    const char *file = _fil_callsite_file(cs, &n);
    if (n == 0) {   /* a synthetic frame: "[stack truncated]" */
        const char *name = _fil_callsite_name(cs, &n);
        put_name(ob, name, n);
        return;
    }
    put_name(ob, file, n);
    outbuf_putc(ob, ':');
    outbuf_u64(ob, _fil_callsite_line(cs));
    outbuf_puts(ob, " (");
    const char *name = _fil_callsite_name(cs, &n);
    put_name(ob, name, n);
    outbuf_putc(ob, ')');
}

int _fil_prof_write(const char *path, const uint64_t *bytes, uint32_t ncallsites) {
    int fd = outbuf_open_file(path);
    if (fd < 0) return -1;
    outbuf_t ob;
    outbuf_init(&ob, fd, buffer, sizeof buffer);
    callsite_t chain[FIL_MAX_FRAMES + 4];
    for (callsite_t cs = 0; cs < ncallsites; cs++) {
        if (bytes[cs] == 0) continue;
        if (cs == CALLSITE_NO_PYTHON) {
            outbuf_puts(&ob, "[No Python stack] ");
        } else {
            size_t depth = 0;
            for (callsite_t c = cs; c != CALLSITE_NO_PYTHON && depth < FIL_MAX_FRAMES + 4;
                 c = _fil_callsite_parent(c))
                chain[depth++] = c;
            while (depth > 0) {
                put_frame(&ob, chain[--depth]);
                outbuf_putc(&ob, depth ? ';' : ' ');
            }
        }
        outbuf_u64(&ob, bytes[cs]);
        outbuf_putc(&ob, '\n');
    }
    int r = outbuf_flush(&ob);
    int saved = errno;
    if (close(fd) < 0 && r == 0) { r = -1; saved = errno; }
    errno = saved;
    return r;
}
