/* outbuf: a buffered writer onto a file descriptor that never allocates.
 *
 * Reports are written at exit and from the out-of-memory path, where malloc may fail or be
 * tracked; so output goes through a caller-provided buffer and write(2), never stdio.
 * Errors are sticky: after the first failed write every call is a no-op and outbuf_close()
 * returns -1 with errno from that failure, so a caller checks once at the end.
 */
#ifndef FIL_OUTBUF_H
#define FIL_OUTBUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct outbuf_s {
    int fd;
    int err;          /* errno of the first failure, 0 if none */
    char *buf;        /* caller-owned storage */
    size_t cap, len;
} outbuf_t;

/* Write through fd using buf[0..cap) as staging; buf stays owned by the caller. */
void outbuf_init(outbuf_t *ob, int fd, char *buf, size_t cap);
void outbuf_write(outbuf_t *ob, const void *data, size_t n);
void outbuf_puts(outbuf_t *ob, const char *s);
void outbuf_putc(outbuf_t *ob, char c);
void outbuf_u64(outbuf_t *ob, uint64_t v);                 /* decimal */
void outbuf_i64(outbuf_t *ob, int64_t v);
/* Fixed-point decimal with `decimals` digits after the point (0..6), rounded half up. */
void outbuf_fixed(outbuf_t *ob, double v, int decimals);
/* Flush what is staged. Returns 0, or -1 with errno set if any write so far failed. */
int outbuf_flush(outbuf_t *ob);

/* Format v as decimal into dst (at least 21 bytes); returns the length. No allocation. */
size_t fmt_u64(char *dst, uint64_t v);

/* Create path exclusively-or-truncating with mode 0644; returns fd or -1. */
int outbuf_open_file(const char *path);

#endif
