/* prim_linux.c: the Linux implementation of prim.h (raw syscalls, environ, clocks). */
#include "prim.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static _Atomic size_t pages_in_use;

size_t prim_page_size(void) { return 4096; }

static size_t round_pages(size_t n) { return (n + 4095) & ~(size_t)4095; }

void *prim_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

int prim_sys_munmap(void *addr, size_t len) { return (int)syscall(SYS_munmap, addr, len); }

void *prim_sys_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr) {
    return (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
}

void *prim_pages_alloc(size_t size) {
    size = round_pages(size);
    void *p = prim_sys_mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    atomic_fetch_add_explicit(&pages_in_use, size, memory_order_relaxed);
    return p;
}

void prim_pages_free(void *p, size_t size) {
    if (!p) return;
    size = round_pages(size);
    prim_sys_munmap(p, size);
    atomic_fetch_sub_explicit(&pages_in_use, size, memory_order_relaxed);
}

void *prim_pages_resize(void *p, size_t old_size, size_t new_size) {
    if (!p) return prim_pages_alloc(new_size);
    old_size = round_pages(old_size);
    new_size = round_pages(new_size);
    void *q = prim_sys_mremap(p, old_size, new_size, MREMAP_MAYMOVE, NULL);
    if (q == MAP_FAILED) return NULL;
    if (new_size > old_size)
        atomic_fetch_add_explicit(&pages_in_use, new_size - old_size, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(&pages_in_use, old_size - new_size, memory_order_relaxed);
    return q;
}

size_t prim_pages_in_use(void) { return atomic_load_explicit(&pages_in_use, memory_order_relaxed); }

void prim_write_stderr(const char *buf, size_t len) {
    while (len > 0) {
        ssize_t w = write(2, buf, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return;
        }
        buf += w;
        len -= (size_t)w;
    }
}

const char *prim_getenv(const char *name) {
    size_t n = strlen(name);
    if (!environ) return NULL;
    for (char **e = environ; *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}

uint64_t prim_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
