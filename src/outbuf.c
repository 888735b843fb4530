/* outbuf: buffered, allocation-free output onto a file descriptor (see outbuf.h). */
#include "outbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

void outbuf_init(outbuf_t *ob, int fd, char *buf, size_t cap) {
    ob->fd = fd;
    ob->err = fd < 0 ? EBADF : 0;
    ob->buf = buf;
    ob->cap = cap;
    ob->len = 0;
}

static void write_all(outbuf_t *ob, const char *p, size_t n) {
    while (n > 0 && ob->err == 0) {
        ssize_t w = write(ob->fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            ob->err = errno;
            return;
        }
        if (w == 0) { ob->err = EIO; return; }
        p += w;
        n -= (size_t)w;
    }
}

int outbuf_flush(outbuf_t *ob) {
    if (ob->len > 0) {
        write_all(ob, ob->buf, ob->len);
        ob->len = 0;
    }
    if (ob->err) { errno = ob->err; return -1; }
    return 0;
}

void outbuf_write(outbuf_t *ob, const void *data, size_t n) {
    if (ob->err) return;
    const char *p = data;
    if (ob->len + n > ob->cap) {
        outbuf_flush(ob);
        if (n >= ob->cap) { write_all(ob, p, n); return; }
    }
    memcpy(ob->buf + ob->len, p, n);
    ob->len += n;
}

void outbuf_puts(outbuf_t *ob, const char *s) { outbuf_write(ob, s, strlen(s)); }

void outbuf_putc(outbuf_t *ob, char c) {
    if (ob->len < ob->cap && !ob->err) ob->buf[ob->len++] = c;
    else outbuf_write(ob, &c, 1);
}

size_t fmt_u64(char *dst, uint64_t v) {
    char tmp[24];
    size_t n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    for (size_t i = 0; i < n; i++) dst[i] = tmp[n - 1 - i];
    dst[n] = '\0';
    return n;
}

void outbuf_u64(outbuf_t *ob, uint64_t v) {
    char tmp[24];
    outbuf_write(ob, tmp, fmt_u64(tmp, v));
}

void outbuf_i64(outbuf_t *ob, int64_t v) {
    if (v < 0) { outbuf_putc(ob, '-'); outbuf_u64(ob, (uint64_t)0 - (uint64_t)v); }
    else outbuf_u64(ob, (uint64_t)v);
}

void outbuf_fixed(outbuf_t *ob, double v, int decimals) {
    static const uint64_t scale[] = {1, 10, 100, 1000, 10000, 100000, 1000000};
    if (decimals < 0) decimals = 0;
    if (decimals > 6) decimals = 6;
    if (v != v) { outbuf_puts(ob, "0"); return; }      /* NaN: never produced by valid input */
    if (v < 0) { outbuf_putc(ob, '-'); v = -v; }
    if (v > 1e18) v = 1e18;
    uint64_t scaled = (uint64_t)(v * (double)scale[decimals] + 0.5);
    outbuf_u64(ob, scaled / scale[decimals]);
    if (decimals > 0) {
        char frac[8];
        uint64_t f = scaled % scale[decimals];
        for (int i = decimals - 1; i >= 0; i--) { frac[i] = (char)('0' + f % 10); f /= 10; }
        outbuf_putc(ob, '.');
        outbuf_write(ob, frac, (size_t)decimals);
    }
}

int outbuf_open_file(const char *path) {
    int fd;
    do {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    } while (fd < 0 && errno == EINTR);
    return fd;
}
