/* prim_linux.c: the Linux implementation of prim.h (raw syscalls, environ, clocks, and the
 * memory figures read from /proc and cgroup files). */
#include "prim.h"

#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
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

/* The allocation table is read at random addresses, one per tracked allocation or free; with
   millions of live allocations it spans tens of MiB and each access would also miss the TLB.
   Transparent huge pages (where the system allows them on request) cover it with a few dozen
   TLB entries. */
#define HUGE_PAGE_WORTHWHILE (4u << 20)

static void advise_huge(void *p, size_t size) {
#ifdef MADV_HUGEPAGE
    if (size >= HUGE_PAGE_WORTHWHILE) syscall(SYS_madvise, p, size, MADV_HUGEPAGE);
#else
    (void)p; (void)size;
#endif
}

/* Fault in p[0..size) for writing after the fact: MADV_POPULATE_WRITE (Linux 5.14) in one call,
   or, where the kernel does not know it (EINVAL), one write per page: an atomic or of zero,
   which leaves the contents as they are even if another thread is writing them. Any other
   failure (no memory now) is left alone: best effort, as MAP_POPULATE. */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
static void populate(void *p, size_t size) {
    int saved = errno;
    if (syscall(SYS_madvise, p, size, MADV_POPULATE_WRITE) != 0 && errno == EINVAL)
        for (size_t off = 0; off < size; off += 4096)
            __atomic_fetch_or((char *)p + off, 0, __ATOMIC_RELAXED);
    errno = saved;
}

void prim_pages_populate(void *p, size_t size) { populate(p, round_pages(size)); }

void *prim_pages_alloc_with(size_t size, unsigned flags) {
    size = round_pages(size);
    int mflags = MAP_PRIVATE | MAP_ANONYMOUS;
    /* Huge pages are advised after mmap, so populating must wait for the advice (MAP_POPULATE
       would fill the region with small pages first). */
    int populate_later = (flags & PRIM_PAGES_POPULATE) && (flags & PRIM_PAGES_HUGE) &&
                         size >= HUGE_PAGE_WORTHWHILE;
    if ((flags & PRIM_PAGES_POPULATE) && !populate_later) mflags |= MAP_POPULATE;
    void *p = prim_sys_mmap(NULL, size, PROT_READ | PROT_WRITE, mflags, -1, 0);
    if (p == MAP_FAILED) return NULL;
    if (flags & PRIM_PAGES_HUGE) advise_huge(p, size);
    if (populate_later) populate(p, size);
    atomic_fetch_add_explicit(&pages_in_use, size, memory_order_relaxed);
    return p;
}

void *prim_pages_alloc(size_t size) { return prim_pages_alloc_with(size, PRIM_PAGES_HUGE); }

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
    advise_huge(q, new_size);
    if (new_size > old_size)
        atomic_fetch_add_explicit(&pages_in_use, new_size - old_size, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(&pages_in_use, old_size - new_size, memory_order_relaxed);
    return q;
}

void prim_pages_zero(void *p, size_t size) {
    if (syscall(SYS_madvise, p, round_pages(size), MADV_DONTNEED) != 0) memset(p, 0, size);
}

size_t prim_resident_bytes(const void *p, size_t size) {
    enum { CHUNK = 4096 };   /* pages asked about per call: 16 MiB, a 4 KiB vector */
    unsigned char vec[CHUNK];
    size_t pages = round_pages(size) / 4096, resident = 0;
    for (size_t done = 0; done < pages; done += CHUNK) {
        size_t n = pages - done < CHUNK ? pages - done : CHUNK;
        int saved = errno;
        long r = syscall(SYS_mincore, (const char *)p + done * 4096, n * 4096, vec);
        errno = saved;
        if (r != 0) return size;
        for (size_t i = 0; i < n; i++) resident += vec[i] & 1;
    }
    resident *= 4096;
    return resident < size ? resident : size;
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

int prim_membarrier_init(void) {
    static int state;   /* 0 unknown, 1 available, -1 not */
    if (state == 0) {
        /* MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED (16); Linux 4.14+. */
        state = syscall(SYS_membarrier, 16, 0, 0) == 0 ? 1 : -1;
    }
    return state == 1 ? 0 : -1;
}

void prim_membarrier(void) {
    /* MEMBARRIER_CMD_PRIVATE_EXPEDITED (8) */
    syscall(SYS_membarrier, 8, 0, 0);
}

void prim_restore_user_environment(void) {
    const char *saved = prim_getenv("_FIL_SAVED_LD_PRELOAD");
    if (!saved) return;
    /* setenv/unsetenv allocate: the hooks pass those through, tracking has not started. */
    if (strncmp(saved, "set:", 4) == 0) setenv("LD_PRELOAD", saved + 4, 1);
    else unsetenv("LD_PRELOAD");
    unsetenv("_FIL_SAVED_LD_PRELOAD");
}

uint64_t prim_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- memory figures ----
 * Read from files into stack buffers with open/read (no stdio, no malloc), so that oom.c can
 * call this from inside an allocator hook. The parsers work on a buffer for unit tests. */

static int is_space(char c) { return c == ' ' || c == '\t'; }

static int parse_u64_at(const char *p, const char *end, uint64_t *out) {
    if (p >= end || *p < '0' || *p > '9') return -1;
    uint64_t v = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return 0;
}

int prim_parse_keyed_u64(const char *buf, size_t len, const char *key, uint64_t *out) {
    size_t klen = strlen(key);
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        /* The key must be followed by a separator: "inactive_file" is not "inactive_file_x". */
        if ((size_t)(eol - p) > klen && memcmp(p, key, klen) == 0 && is_space(p[klen])) {
            const char *q = p + klen;
            while (q < eol && is_space(*q)) q++;
            return parse_u64_at(q, eol, out);
        }
        p = nl ? nl + 1 : end;
    }
    return -1;
}

int prim_parse_first_u64(const char *buf, size_t len, uint64_t *out) {
    const char *p = buf, *end = buf + len;
    while (p < end && (is_space(*p) || *p == '\n')) p++;
    return parse_u64_at(p, end, out);
}

int prim_parse_cgroup_limit(const char *buf, size_t len, uint64_t *out) {
    while (len > 0 && (buf[len - 1] == '\n' || is_space(buf[len - 1]))) len--;
    if (len == 3 && memcmp(buf, "max", 3) == 0) {
        *out = PRIM_NO_LIMIT;
        return 0;
    }
    uint64_t v;
    if (parse_u64_at(buf, buf + len, &v) < 0) return -1;
    /* v1 writes "no limit" as the largest page-aligned counter value, about 2^63. */
    *out = v >= ((uint64_t)1 << 62) ? PRIM_NO_LIMIT : v;
    return 0;
}

/* Copy s[0..n) into out as a NUL-terminated string; -1 if it does not fit. */
static int copy_str(char *out, size_t outsz, const char *s, size_t n) {
    if (n + 1 > outsz) return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

int prim_parse_cgroup_path(const char *buf, size_t len, int v2, char *out, size_t outsz) {
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        /* "ID:CONTROLLERS:PATH"; PATH may itself contain ':' */
        const char *c1 = memchr(p, ':', (size_t)(eol - p));
        const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(eol - c1 - 1)) : NULL;
        if (c2) {
            const char *ctl = c1 + 1;
            size_t ctl_len = (size_t)(c2 - ctl);
            int match = 0;
            if (v2) {
                match = ctl_len == 0 && c1 - p == 1 && *p == '0';
            } else {
                for (const char *t = ctl; t < c2;) {
                    const char *comma = memchr(t, ',', (size_t)(c2 - t));
                    const char *te = comma ? comma : c2;
                    if (te - t == 6 && memcmp(t, "memory", 6) == 0) match = 1;
                    t = comma ? comma + 1 : c2;
                }
            }
            if (match) return copy_str(out, outsz, c2 + 1, (size_t)(eol - c2 - 1));
        }
        p = nl ? nl + 1 : end;
    }
    return -1;
}

/* Copy one mountinfo field, decoding the kernel's \ooo escapes (space, tab, newline, \). */
static int copy_unescaped(char *out, size_t outsz, const char *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\\' && i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3' &&
            s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
            c = (char)((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
        }
        if (o + 1 >= outsz) return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

int prim_parse_cgroup_mount(const char *line, size_t len, int v2, char *root, size_t rootsz,
                            char *mnt, size_t mntsz) {
    /* "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS" */
    const char *f[64];
    size_t flen[64];
    int nf = 0;
    const char *p = line, *end = line + len;
    while (p < end && nf < 64) {
        while (p < end && (is_space(*p) || *p == '\n')) p++;
        if (p >= end) break;
        const char *s = p;
        while (p < end && !is_space(*p) && *p != '\n') p++;
        f[nf] = s;
        flen[nf++] = (size_t)(p - s);
    }
    int dash = -1;
    for (int i = 6; i < nf; i++)
        if (flen[i] == 1 && f[i][0] == '-') { dash = i; break; }
    if (dash < 0 || dash + 1 >= nf) return -1;
    const char *fs = f[dash + 1];
    size_t fs_len = flen[dash + 1];
    if (v2) {
        if (fs_len != 7 || memcmp(fs, "cgroup2", 7) != 0) return -1;
    } else {
        if (fs_len != 6 || memcmp(fs, "cgroup", 6) != 0 || dash + 3 >= nf) return -1;
        const char *o = f[dash + 3], *oe = o + flen[dash + 3];
        int has_memory = 0;
        for (const char *t = o; t < oe;) {
            const char *comma = memchr(t, ',', (size_t)(oe - t));
            const char *te = comma ? comma : oe;
            if (te - t == 6 && memcmp(t, "memory", 6) == 0) has_memory = 1;
            t = comma ? comma + 1 : oe;
        }
        if (!has_memory) return -1;
    }
    if (copy_unescaped(root, rootsz, f[3], flen[3]) < 0) return -1;
    return copy_unescaped(mnt, mntsz, f[4], flen[4]);
}

/* Read a whole small file into buf (NUL-terminated); its length, or -1. */
static ssize_t read_small_file(const char *path, char *buf, size_t size) {
    int fd;
    do fd = open(path, O_RDONLY | O_CLOEXEC); while (fd < 0 && errno == EINTR);
    if (fd < 0) return -1;
    size_t n = 0;
    while (n + 1 < size) {
        ssize_t r = read(fd, buf + n, size - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    return (ssize_t)n;
}

#define CG_PATH_MAX 1024
#define CG_READ_MAX 4096

/* The directory of the process's memory cgroup, found from /proc/self/cgroup (the path inside
   the hierarchy) and /proc/self/mountinfo (where that hierarchy, or the part of it visible in
   this mount namespace, is mounted). *mnt_len is the length of the mount point prefix, the
   highest directory worth looking at. 0 or -1. */
static int cgroup_dir(int v2, char *dir, size_t dirsz, size_t *mnt_len, char *buf) {
    char path[CG_PATH_MAX], root[CG_PATH_MAX], mnt[CG_PATH_MAX];
    ssize_t n = read_small_file("/proc/self/cgroup", buf, CG_READ_MAX);
    if (n <= 0 || prim_parse_cgroup_path(buf, (size_t)n, v2, path, sizeof path) < 0) return -1;
    int fd;
    do fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC); while (fd < 0 && errno == EINTR);
    if (fd < 0) return -1;
    /* Stream line by line: mountinfo can be long. A line longer than the buffer is skipped. */
    size_t have = 0;
    int found = 0, eof = 0, skipping = 0;
    while (!found && !(eof && have == 0)) {
        if (!eof && have < CG_READ_MAX) {
            ssize_t r = read(fd, buf + have, CG_READ_MAX - have);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) eof = 1;
            else have += (size_t)r;
        }
        char *nl = memchr(buf, '\n', have);
        size_t line_len = nl ? (size_t)(nl - buf) : have;
        if (!nl && !eof && have < CG_READ_MAX) continue;
        if (!nl && !eof) {   /* a line longer than the buffer: drop what we have */
            skipping = 1;
            have = 0;
            continue;
        }
        if (!skipping &&
            prim_parse_cgroup_mount(buf, line_len, v2, root, sizeof root, mnt, sizeof mnt) == 0)
            found = 1;
        skipping = 0;
        size_t used = nl ? line_len + 1 : have;
        memmove(buf, buf + used, have - used);
        have -= used;
    }
    close(fd);
    if (!found) return -1;
    /* PATH is relative to the hierarchy's root, the mount shows ROOT: strip it. When PATH is
       not below ROOT (a cgroup namespace's view), the mount point itself is the best guess. */
    size_t rl = strlen(root);
    const char *rest = "";
    if (strcmp(root, "/") == 0) rest = path;
    else if (strncmp(path, root, rl) == 0 && (path[rl] == '/' || path[rl] == '\0')) rest = path + rl;
    size_t ml = strlen(mnt), pl = strlen(rest);
    while (pl > 0 && rest[pl - 1] == '/') pl--;
    if (ml + pl + 1 > dirsz) return -1;
    memcpy(dir, mnt, ml);
    memcpy(dir + ml, rest, pl);
    dir[ml + pl] = '\0';
    *mnt_len = ml;
    return 0;
}

static int read_u64_file(char *path, size_t base, const char *name, char *buf, int limit,
                         uint64_t *out) {
    size_t nl = strlen(name);
    if (base + 1 + nl + 1 > CG_PATH_MAX) return -1;
    path[base] = '/';
    memcpy(path + base + 1, name, nl + 1);
    ssize_t n = read_small_file(path, buf, CG_READ_MAX);
    path[base] = '\0';
    if (n <= 0) return -1;
    return limit ? prim_parse_cgroup_limit(buf, (size_t)n, out)
                 : prim_parse_first_u64(buf, (size_t)n, out);
}

/* Walk from the process's cgroup up to the mount point: a limit set on any ancestor applies. */
static void cgroup_figure(int v2, prim_mem_figure_t *fig, char *buf) {
    char dir[CG_PATH_MAX];
    size_t top;
    if (cgroup_dir(v2, dir, sizeof dir, &top, buf) < 0) return;
    const char *limit_name = v2 ? "memory.max" : "memory.limit_in_bytes";
    const char *usage_name = v2 ? "memory.current" : "memory.usage_in_bytes";
    const char *cache_key = v2 ? "inactive_file" : "total_inactive_file";
    size_t len = strlen(dir);
    for (int level = 0; level < 64; level++) {
        uint64_t limit, usage, cache = 0;
        if (read_u64_file(dir, len, limit_name, buf, 1, &limit) == 0 && limit != PRIM_NO_LIMIT &&
            read_u64_file(dir, len, usage_name, buf, 0, &usage) == 0) {
            dir[len] = '/';
            memcpy(dir + len + 1, "memory.stat", 12);
            ssize_t n = len + 13 <= sizeof dir ? read_small_file(dir, buf, CG_READ_MAX) : -1;
            dir[len] = '\0';
            if (n > 0) prim_parse_keyed_u64(buf, (size_t)n, cache_key, &cache);
            uint64_t used = usage > cache ? usage - cache : 0;
            uint64_t avail = limit > used ? limit - used : 0;
            if (avail < fig->available) {
                fig->available = avail;
                fig->limit = limit;
            }
        }
        if (len <= top) break;
        while (len > top && dir[len - 1] != '/') len--;   /* up one level */
        if (len > top) len--;
        dir[len] = '\0';
    }
}

void prim_memory_read(prim_memory_t *m) {
    char buf[CG_READ_MAX];
    m->system = m->cgroup = m->address_space = (prim_mem_figure_t){PRIM_NO_LIMIT, PRIM_NO_LIMIT};
    ssize_t n = read_small_file("/proc/meminfo", buf, sizeof buf);
    uint64_t avail_kb, total_kb;
    if (n > 0 && prim_parse_keyed_u64(buf, (size_t)n, "MemAvailable:", &avail_kb) == 0 &&
        prim_parse_keyed_u64(buf, (size_t)n, "MemTotal:", &total_kb) == 0) {
        m->system.available = avail_kb * 1024;
        m->system.limit = total_kb * 1024;
    }
    cgroup_figure(1, &m->cgroup, buf);
    cgroup_figure(0, &m->cgroup, buf);
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        uint64_t pages;
        n = read_small_file("/proc/self/statm", buf, sizeof buf);
        if (n > 0 && prim_parse_first_u64(buf, (size_t)n, &pages) == 0) {
            uint64_t vsize = pages * (uint64_t)sysconf(_SC_PAGESIZE);
            m->address_space.limit = rl.rlim_cur;
            m->address_space.available = rl.rlim_cur > vsize ? rl.rlim_cur - vsize : 0;
        }
    }
}
