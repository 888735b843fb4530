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
   Returns NULL on failure (errno set). Regions of 4 MiB and more ask for transparent huge pages
   (PRIM_PAGES_HUGE): the default suits the allocation table, read at random addresses. */
void *prim_pages_alloc(size_t size);

/* How a region from prim_pages_alloc_with is backed; or'ed together, 0 for neither.
   PRIM_PAGES_HUGE: transparent huge pages where the system grants them on request, for regions
   of 4 MiB and more. Fewer TLB misses for a big table read at random addresses; but each fault
   clears 2 MiB, and can wait for the kernel to compact memory: not for sequential scratch.
   PRIM_PAGES_POPULATE: every page faulted in, writable, before returning (best effort: the
   kernel does not fail the call if it cannot). For memory that must be there later whatever
   the pressure then, or that is about to be written all over anyway (a rehash): the kernel
   fills it in one call instead of one fault per page, and a page never maps the shared zero
   page first, whose replacement on the first write interrupts every CPU running the process
   to flush its TLB. */
#define PRIM_PAGES_HUGE 1u
#define PRIM_PAGES_POPULATE 2u
/* A hash table's new slots, about to be written all over by the rehash, which reads each slot
   before writing it: populated, and huge pages from 4 MiB on, as any table read at random. */
#define PRIM_PAGES_REHASH (PRIM_PAGES_HUGE | PRIM_PAGES_POPULATE)
void *prim_pages_alloc_with(size_t size, unsigned flags);
/* Fault in a region from prim_pages_alloc_with, as PRIM_PAGES_POPULATE would have, later: best
   effort, contents unchanged, safe while other threads use the region. */
void prim_pages_populate(void *p, size_t size);
void prim_pages_free(void *p, size_t size);
/* Grow or shrink a region from prim_pages_alloc, moving it if needed; NULL on failure
   (the old region is then untouched). */
void *prim_pages_resize(void *p, size_t old_size, size_t new_size);
/* Give back the pages of [p, p+size) (page-aligned, private anonymous memory); they read as
   zeros afterwards. */
void prim_pages_zero(void *p, size_t size);
/* Bytes currently held through prim_pages_* (the profiler's own memory), as mapped. */
size_t prim_pages_in_use(void);
/* How many bytes of [p, p+size) (p page-aligned) have memory behind them now, rather than
   being mapped but never touched; size itself when the system cannot tell. */
size_t prim_resident_bytes(const void *p, size_t size);

/* The kernel's mmap/munmap/mremap, bypassing any interposed symbol. Return conventions as
   the libc functions (MAP_FAILED / -1 with errno). */
void *prim_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int prim_sys_munmap(void *addr, size_t len);
void *prim_sys_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr);

/* Write all of buf to stderr (fd 2), retrying on EINTR; errors are ignored. */
void prim_write_stderr(const char *buf, size_t len);

/* getenv without locking or allocation: scans environ. NULL if unset. */
const char *prim_getenv(const char *name);

/* Called once when the library is loaded: if the launcher injected it (LD_PRELOAD on Linux) and
   saved the user's own value in _FIL_SAVED_LD_PRELOAD ("unset" or "set:VALUE", see
   filprofiler/_env.py), put the user's value back, so that the program and its subprocesses see
   the environment they would have without the profiler. Runs before main(). */
void prim_restore_user_environment(void);

/* Monotonic time in nanoseconds. */
uint64_t prim_now_ns(void);

size_t prim_page_size(void);

/* Asymmetric memory barrier (lock.c). prim_membarrier_init() registers the process and returns
   0 when prim_membarrier() is available; prim_membarrier() then makes every running thread of
   the process execute a full memory barrier before it returns. */
int prim_membarrier_init(void);
void prim_membarrier(void);

/* ---- memory figures, for oom.c's early out-of-memory detection ----
 * Each figure is how many more bytes the process may use before one limit is reached.
 * PRIM_NO_LIMIT in `limit` (and then in `available`) means there is no such limit or it could
 * not be read. None of these allocate; they read /proc and cgroup files into stack buffers
 * (about 10 KiB of stack). */
#define PRIM_NO_LIMIT UINT64_MAX
typedef struct {
    uint64_t available;   /* bytes, 0 when the limit is already exceeded */
    uint64_t limit;       /* bytes */
} prim_mem_figure_t;
typedef struct {
    prim_mem_figure_t system;         /* /proc/meminfo MemAvailable, of MemTotal */
    prim_mem_figure_t cgroup;         /* tightest memory cgroup (v1 or v2, the process's own or an
                                         ancestor's): limit minus usage, where inactive file cache
                                         (reclaimable) does not count as usage */
    prim_mem_figure_t address_space;  /* RLIMIT_AS (ulimit -v) minus the current virtual size */
} prim_memory_t;
void prim_memory_read(prim_memory_t *m);

/* Pure parsers behind prim_memory_read, exposed for unit tests. Each takes buf[0..len), not
   necessarily NUL-terminated, and returns 0 on success or -1 when the field is absent/garbled. */
/* The number after `key` at the start of a line ("MemAvailable:" in meminfo, "inactive_file"
   in memory.stat); whitespace in between is skipped; a " kB" suffix is NOT applied. */
int prim_parse_keyed_u64(const char *buf, size_t len, const char *key, uint64_t *out);
/* A cgroup limit file: a decimal number, or "max" (v2) -> PRIM_NO_LIMIT; v1's "unlimited"
   (a number at or above 2^62) -> PRIM_NO_LIMIT too. */
int prim_parse_cgroup_limit(const char *buf, size_t len, uint64_t *out);
/* The first decimal number in buf (the virtual size in pages in /proc/self/statm). */
int prim_parse_first_u64(const char *buf, size_t len, uint64_t *out);
/* From /proc/self/cgroup, the path of the process's memory cgroup: for v2 the "0::PATH" line,
   for v1 the line whose controller list contains "memory". NUL-terminated into out. */
int prim_parse_cgroup_path(const char *buf, size_t len, int v2, char *out, size_t outsz);
/* One /proc/self/mountinfo line: when it is a cgroup mount of the wanted kind (v2: fstype
   cgroup2; v1: fstype cgroup with "memory" among its super options), its root and mount point
   (octal escapes like \040 decoded) NUL-terminated into root/mnt, and 0; else -1. */
int prim_parse_cgroup_mount(const char *line, size_t len, int v2, char *root, size_t rootsz,
                            char *mnt, size_t mntsz);

#endif
