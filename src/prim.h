/* prim.h: every operating-system primitive the core uses, with its contract.
 *
 * prim_linux.c is the only file that implements these and the only place for Linux-specific
 * code (raw syscalls, /proc, cgroups). A macOS port is one new prim_darwin.c.
 *
 * None of these functions allocate through malloc, so all are safe inside the allocator hooks.
 */
#ifndef FIL_PRIM_H
#define FIL_PRIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Fresh zeroed pages for the profiler's own memory, rounded up to the page size; never tracked.
   Returns NULL on failure (errno set). */
void *prim_pages_alloc(size_t size);
void prim_pages_free(void *p, size_t size);
/* Grow or shrink a region from prim_pages_alloc, moving it if needed; NULL on failure
   (the old region is then untouched). */
void *prim_pages_resize(void *p, size_t old_size, size_t new_size);
/* Bytes currently held through prim_pages_* (the profiler's own memory). */
size_t prim_pages_in_use(void);

/* The kernel's mmap/munmap/mremap, bypassing any interposed symbol. Return conventions as
   the libc functions (MAP_FAILED / -1 with errno). */
void *prim_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int prim_sys_munmap(void *addr, size_t len);
void *prim_sys_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr);

/* Write all of buf to stderr (fd 2), retrying on EINTR; errors are ignored. */
void prim_write_stderr(const char *buf, size_t len);

/* getenv without locking or allocation: scans environ. NULL if unset. */
const char *prim_getenv(const char *name);

/* Monotonic time in nanoseconds. */
uint64_t prim_now_ns(void);

size_t prim_page_size(void);

#endif
