/* hooks.c: the libc and C++ allocation entry points this preload library replaces.
 *
 * A thin skin: each hook calls the real allocator, then tells the engine (_fil_track_*) what
 * happened; no table is touched here. The real functions are glibc's __libc_* entry points and
 * raw syscalls (prim.h), so resolving them never calls dlsym, which itself allocates.
 *
 * Reentrancy: the thread-local guard _fil_tl_guard is set while the engine runs. Any allocation
 * made meanwhile on the same thread (libc internals, pthread_setspecific, a signal handler that
 * interrupts the engine, a TLS destructor running during thread exit) sees the guard and goes
 * straight to the real allocator untracked, so nothing recurses and the tracking lock is never
 * taken twice by one thread. Until Python starts tracking (_fil_tracking == 0) every hook is a
 * plain pass-through: allocations made before the Python side is ready are not recorded.
 *
 * Ordering against other threads: a block is removed from the books BEFORE it is released
 * (free, realloc, munmap), and added AFTER it is obtained, so an address recycled by another
 * thread in between can never be confused with the old block.
 */
#include "fil_internal.h"
#include "oom.h"
#include "prim.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define FIL_EXPORT __attribute__((visibility("default")))

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

static inline int active(void) { return FIL_LIKELY(_fil_tl_guard == 0) && _fil_tracking; }

/* The full path behind tracked()'s quick one (quick: what it said; guard set, dropped here). */
static FIL_NOINLINE void *tracked_rest(void *p, size_t size, int quick) {
    _fil_track_alloc_after(p, size, quick);
    _fil_tl_guard--;
    return p;
}

static FIL_NOINLINE void *failed(size_t size) {
    if (active()) _fil_oom_on_failure(size);   /* out of memory: report and exit (oom.c) */
    return NULL;
}

static inline void *tracked(void *p, size_t size) {
    if (FIL_UNLIKELY(p == NULL)) return failed(size);
    if (active()) {
        _fil_tl_guard++;
        int quick = _fil_track_alloc_quick(p, size);
        if (FIL_UNLIKELY(quick != FIL_QUICK_DONE)) return tracked_rest(p, size, quick);
        _fil_tl_guard--;
    }
    return p;
}

/* ---- C ---- */

FIL_EXPORT void *malloc(size_t size) { return tracked(__libc_malloc(size), size); }

FIL_EXPORT void *calloc(size_t n, size_t size) {
    void *p = __libc_calloc(n, size);
    size_t total;
    if (!p && __builtin_mul_overflow(n, size, &total)) return p;   /* a bad request, not OOM */
    return tracked(p, n * size);   /* calloc checked the overflow before succeeding */
}

static FIL_NOINLINE void free_rest(void *p) {
    _fil_track_free(p);
    _fil_tl_guard--;
    __libc_free(p);
}

FIL_EXPORT void free(void *p) {
    if (p && active()) {
        _fil_tl_guard++;
        if (FIL_UNLIKELY(!_fil_track_free_quick(p))) return free_rest(p);
        _fil_tl_guard--;
    }
    __libc_free(p);
}

static void *realloc_tracked(void *old, size_t size) {
    if (!active()) return __libc_realloc(old, size);
    _fil_tl_guard++;
    uint64_t old_size = 0;
    callsite_t old_cs = 0;
    int had_old = old ? _fil_track_take(old, &old_size, &old_cs) : 0;
    void *p = __libc_realloc(old, size);
    _fil_track_realloc(old, p, size, had_old, old_size, old_cs);
    if (FIL_UNLIKELY(!p) && size != 0) _fil_oom_on_failure(size);
    _fil_tl_guard--;
    return p;
}

FIL_EXPORT void *realloc(void *old, size_t size) { return realloc_tracked(old, size); }

FIL_EXPORT void *reallocarray(void *old, size_t n, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc_tracked(old, total);
}

FIL_EXPORT int posix_memalign(void **out, size_t align, size_t size) {
    if (align < sizeof(void *) || (align & (align - 1)) != 0) return EINVAL;
    void *p = __libc_memalign(align, size);
    if (!p) {
        if (active()) _fil_oom_on_failure(size);
        return ENOMEM;
    }
    *out = tracked(p, size);
    return 0;
}

FIL_EXPORT void *aligned_alloc(size_t align, size_t size) {
    return tracked(__libc_memalign(align, size), size);
}

FIL_EXPORT void *memalign(size_t align, size_t size) {
    return tracked(__libc_memalign(align, size), size);
}

FIL_EXPORT void *valloc(size_t size) { return tracked(__libc_valloc(size), size); }

FIL_EXPORT void *pvalloc(size_t size) {
    size_t page = prim_page_size();
    return tracked(__libc_pvalloc(size), (size + page - 1) & ~(page - 1));
}

/* ---- anonymous mappings ---- */

static size_t page_round(size_t len) {
    size_t page = prim_page_size();
    return (len + page - 1) & ~(page - 1);
}

FIL_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    if (!active()) return prim_sys_mmap(addr, len, prot, flags, fd, off);
    _fil_tl_guard++;
    /* MAP_FIXED replaces whatever was mapped there, tracked or not. */
    if ((flags & MAP_FIXED) && addr) _fil_track_munmap(addr, page_round(len));
    void *p = prim_sys_mmap(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED && (flags & MAP_ANONYMOUS)) _fil_track_mmap(p, page_round(len));
    /* Out of memory; a PROT_NONE reservation failing is address-space probing, not memory. */
    if (FIL_UNLIKELY(p == MAP_FAILED) && errno == ENOMEM && (flags & MAP_ANONYMOUS) &&
        prot != PROT_NONE)
        _fil_oom_on_failure(len);
    _fil_tl_guard--;
    return p;
}

FIL_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
    __attribute__((alias("mmap")));

FIL_EXPORT int munmap(void *addr, size_t len) {
    if (active()) {
        _fil_tl_guard++;
        _fil_track_munmap(addr, page_round(len));
        _fil_tl_guard--;
    }
    return prim_sys_munmap(addr, len);
}

FIL_EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...) {
    void *new_addr = NULL;
    if (flags & MREMAP_FIXED) {
        __builtin_va_list ap;
        __builtin_va_start(ap, flags);
        new_addr = __builtin_va_arg(ap, void *);
        __builtin_va_end(ap);
    }
    if (!active()) return prim_sys_mremap(old, old_len, new_len, flags, new_addr);
    _fil_tl_guard++;
    /* Only a tracked (anonymous) mapping is tracked after the resize: a file-backed one that
       mremap grows (Python's mmap.resize) is still not allocated memory. */
    uint64_t was_tracked = _fil_track_munmap(old, page_round(old_len));
    void *p = prim_sys_mremap(old, old_len, new_len, flags, new_addr);
    if (was_tracked && p != MAP_FAILED) _fil_track_mmap(p, page_round(new_len));
    else if (was_tracked) _fil_track_mmap(old, page_round(old_len));   /* unchanged: back on the books */
    if (FIL_UNLIKELY(p == MAP_FAILED) && errno == ENOMEM && new_len > old_len)
        _fil_oom_on_failure(new_len);
    _fil_tl_guard--;
    return p;
}

/* ---- threads: a thread that has no Python stack is charged to the stack that created it ---- */

typedef struct start_record_s {
    struct start_record_s *next_free;
    void *(*fn)(void *);
    void *arg;
    callsite_t creator;
} start_record_t;

static start_record_t *free_records;   /* protected by the tracking lock */

static void *thread_trampoline(void *raw) {
    start_record_t *rec = raw;
    void *(*fn)(void *) = rec->fn;
    void *arg = rec->arg;
    _fil_tl_guard++;
    _fil_lock();
    fil_thread_t *ts = _fil_thread_get();
    if (ts) ts->inherited = rec->creator;
    rec->next_free = free_records;
    free_records = rec;
    _fil_unlock();
    _fil_tl_guard--;
    return fn(arg);
}

typedef int (*pthread_create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

FIL_EXPORT int pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                              void *(*fn)(void *), void *arg) {
    static pthread_create_fn real;
    if (!real) {
        _fil_tl_guard++;   /* dlsym may allocate */
        real = (pthread_create_fn)dlsym(RTLD_NEXT, "pthread_create");
        _fil_tl_guard--;
        if (!real) return EAGAIN;
    }
    if (!active()) return real(thread, attr, fn, arg);
    _fil_tl_guard++;
    callsite_t creator = _fil_current_callsite();
    _fil_lock();
    start_record_t *rec = free_records;
    if (rec) free_records = rec->next_free;
    else rec = _fil_arena_alloc(sizeof *rec);
    _fil_unlock();
    _fil_tl_guard--;
    if (!rec) return real(thread, attr, fn, arg);
    rec->fn = fn;
    rec->arg = arg;
    rec->creator = creator;
    int r = real(thread, attr, thread_trampoline, rec);
    if (r != 0) {
        _fil_lock();
        rec->next_free = free_records;
        free_records = rec;
        _fil_unlock();
    }
    return r;
}

/* ---- C++ operator new / delete ----
 * Implemented on the C allocator like any replacement operator new, so they are tracked once at
 * the requested size. Only on failure is libstdc++'s own operator called, for its semantics
 * (new_handler, std::bad_alloc): C cannot throw. The guard is released by a cleanup handler so
 * that an exception unwinding through this frame (built with -fexceptions) cannot leave it set.
 */

static void guard_release(int *unused) { (void)unused; _fil_tl_guard--; }

static void *cxx_symbol(const char *name) {
    void *f = dlsym(RTLD_NEXT, name);
    if (f) return f;
    /* Extensions load libstdc++ privately (RTLD_LOCAL), out of RTLD_NEXT's reach. */
    void *h = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_NOLOAD);
    return h ? dlsym(h, name) : NULL;
}

typedef void *(*new_fn)(size_t);
typedef void *(*new_aligned_fn)(size_t, size_t);

static void *cxx_new_failed(const char *name, size_t size) {
    int scope __attribute__((cleanup(guard_release))) = 0;
    _fil_tl_guard++;
    new_fn real = (new_fn)cxx_symbol(name);
    if (!real) abort();   /* no C++ runtime to report the failure: as an uncaught bad_alloc */
    return real(size);    /* untracked (guard set): mallocs inside it pass through */
}

static void *cxx_new_aligned_failed(const char *name, size_t size, size_t align) {
    int scope __attribute__((cleanup(guard_release))) = 0;
    _fil_tl_guard++;
    new_aligned_fn real = (new_aligned_fn)cxx_symbol(name);
    if (!real) abort();
    return real(size, align);
}

static void *cxx_new(size_t size, const char *name) {
    void *p = __libc_malloc(size ? size : 1);
    if (FIL_UNLIKELY(!p)) {
        if (active()) _fil_oom_on_failure(size);
        p = cxx_new_failed(name, size);
        if (!p) return NULL;
    }
    return tracked(p, size);
}

static void *cxx_new_aligned(size_t size, size_t align, const char *name) {
    void *p = __libc_memalign(align, size ? size : 1);
    if (FIL_UNLIKELY(!p)) {
        if (active()) _fil_oom_on_failure(size);
        p = cxx_new_aligned_failed(name, size, align);
        if (!p) return NULL;
    }
    return tracked(p, size);
}

static void cxx_delete(void *p) { free(p); }

FIL_EXPORT void *_Znwm(size_t n) { return cxx_new(n, "_Znwm"); }
FIL_EXPORT void *_Znam(size_t n) { return cxx_new(n, "_Znam"); }
FIL_EXPORT void *_ZnwmRKSt9nothrow_t(size_t n, const void *t) {
    (void)t;
    return cxx_new(n, "_ZnwmRKSt9nothrow_t");
}
FIL_EXPORT void *_ZnamRKSt9nothrow_t(size_t n, const void *t) {
    (void)t;
    return cxx_new(n, "_ZnamRKSt9nothrow_t");
}
FIL_EXPORT void *_ZnwmSt11align_val_t(size_t n, size_t a) {
    return cxx_new_aligned(n, a, "_ZnwmSt11align_val_t");
}
FIL_EXPORT void *_ZnamSt11align_val_t(size_t n, size_t a) {
    return cxx_new_aligned(n, a, "_ZnamSt11align_val_t");
}
FIL_EXPORT void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t a, const void *t) {
    (void)t;
    return cxx_new_aligned(n, a, "_ZnwmSt11align_val_tRKSt9nothrow_t");
}
FIL_EXPORT void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t a, const void *t) {
    (void)t;
    return cxx_new_aligned(n, a, "_ZnamSt11align_val_tRKSt9nothrow_t");
}

FIL_EXPORT void _ZdlPv(void *p) { cxx_delete(p); }
FIL_EXPORT void _ZdaPv(void *p) { cxx_delete(p); }
FIL_EXPORT void _ZdlPvm(void *p, size_t n) { (void)n; cxx_delete(p); }
FIL_EXPORT void _ZdaPvm(void *p, size_t n) { (void)n; cxx_delete(p); }
FIL_EXPORT void _ZdlPvRKSt9nothrow_t(void *p, const void *t) { (void)t; cxx_delete(p); }
FIL_EXPORT void _ZdaPvRKSt9nothrow_t(void *p, const void *t) { (void)t; cxx_delete(p); }
FIL_EXPORT void _ZdlPvSt11align_val_t(void *p, size_t a) { (void)a; cxx_delete(p); }
FIL_EXPORT void _ZdaPvSt11align_val_t(void *p, size_t a) { (void)a; cxx_delete(p); }
FIL_EXPORT void _ZdlPvmSt11align_val_t(void *p, size_t n, size_t a) {
    (void)n; (void)a;
    cxx_delete(p);
}
FIL_EXPORT void _ZdaPvmSt11align_val_t(void *p, size_t n, size_t a) {
    (void)n; (void)a;
    cxx_delete(p);
}
FIL_EXPORT void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t a, const void *t) {
    (void)a; (void)t;
    cxx_delete(p);
}
FIL_EXPORT void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t a, const void *t) {
    (void)a; (void)t;
    cxx_delete(p);
}

__attribute__((constructor)) static void hooks_init(void) {
    _fil_track_init_once();
    prim_restore_user_environment();
}
