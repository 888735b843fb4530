/* track.c: the tracking engine behind the hooks.
 *
 * The hooks (hooks.c, pyalloc.c) call _fil_track_* with the reentrancy guard set; this file
 * owns the tables and the one lock that orders every change to them. A single lock is what
 * makes the peak exact: live_total is the sum over one total order of events, so the
 * high-water mark is the real maximum, not an estimate from per-thread counters.
 *
 * Lock ownership (the tracking lock, lock.c) covers: `heap`, `maps`, `peak`, the callsite
 * tables (callsite.c), the arena (arena.c) and `free_threads`. The guard and `_fil_tl_thread` are
 * per-thread. `_fil_tracking` is read without the lock: a hook that races with start/stop
 * either records an allocation or not, and a free of an unrecorded pointer is a no-op.
 *
 * The hot path makes no calls. The hooks try _fil_track_alloc_quick and _fil_track_free_quick
 * first: the lock's biased half, the stack provider's quick answer, one side entry and the peak
 * counters, all inlined into the hook (always_inline; link-time optimization carries them across
 * files). Either does the whole job or leaves the books as they were, and the hook then calls a
 * function out of line that takes the full path: _fil_track_alloc, _fil_track_free,
 * _fil_track_take (also inline there), with every rarer case out of line in turn (add_slow,
 * remove_slow, the spinlock). An allocation declined after the lock was taken (a new stack,
 * mostly) goes on under that lock (_fil_track_alloc_after). So the common case pays for no
 * register saves it does not need: in a pandas job, tens of millions of objects made and freed.
 */
#include "fil_internal.h"
#include "oom.h"
#include "prim.h"

#include <pthread.h>
#include <string.h>

__thread int _fil_tl_guard __attribute__((tls_model("initial-exec")));
__thread fil_thread_t *_fil_tl_thread __attribute__((tls_model("initial-exec")));
volatile int _fil_tracking;

static alloc_table_t heap;
static range_table_t maps;
static peak_t peak;
static fil_thread_t *free_threads;
static pthread_key_t thread_key;
static int thread_key_ready;

void _fil_warn_once(const char *msg) {
    static const char *seen[16];
    static int nseen;
    for (int i = 0; i < nseen; i++)
        if (seen[i] == msg) return;
    if (nseen < 16) seen[nseen++] = msg;
    prim_write_stderr("=fil-profile= warning: ", 23);
    prim_write_stderr(msg, strlen(msg));
    prim_write_stderr("\n", 1);
}

/* Thread exit: hand the state back for reuse. A TLS destructor running after this one may
   allocate again; it then gets a fresh state and registers the destructor again. */
static void thread_state_release(void *arg) {
    fil_thread_t *t = arg;
    _fil_tl_guard++;
    _fil_lock();
    t->next_free = free_threads;
    free_threads = t;
    _fil_unlock();
    _fil_tl_thread = NULL;
    _fil_tl_guard--;
}

/* Caller holds the lock. NULL only if the OS refuses memory. */
fil_thread_t *_fil_thread_get(void) {
    fil_thread_t *t = _fil_tl_thread;
    if (FIL_LIKELY(t != NULL)) return t;
    if (free_threads) {
        t = free_threads;
        free_threads = t->next_free;
    } else {
        t = _fil_arena_alloc(sizeof(fil_thread_t));
        if (!t) return NULL;
    }
    t->next_free = NULL;
    t->self = (unsigned long)pthread_self();
    t->released = NULL;
    t->released_epoch = 0;
    t->memo_epoch = 0;
    t->inherited = CALLSITE_NO_PYTHON;
    t->cache_depth = 0;
    t->cache_rising = 0;
    t->cache_base = CALLSITE_NO_PYTHON;
    t->mark_depth = -1;
    t->fallback_parent = CALLSITE_NO_PYTHON;
    t->fallback_node = CALLSITE_NO_PYTHON;
    _fil_tl_thread = t;
    if (!thread_key_ready) {
        if (pthread_key_create(&thread_key, thread_state_release) == 0) thread_key_ready = 1;
    }
    if (thread_key_ready) pthread_setspecific(thread_key, t);
    return t;
}

/* me: the caller's _fil_tl_thread, NULL on its first allocation. */
static inline callsite_t current_callsite_locked(fil_thread_t *me) {
    fil_thread_t *ts = FIL_LIKELY(me != NULL) ? me : _fil_thread_get();
    return FIL_LIKELY(ts != NULL) ? _fil_stack_of(ts) : CALLSITE_NO_PYTHON;
}

callsite_t _fil_current_callsite(void) {
    _fil_lock();
    callsite_t cs = current_callsite_locked(_fil_tl_thread);
    _fil_unlock();
    return cs;
}

static FIL_NOINLINE int grow_peak_slots(callsite_t cs) {
    if (_fil_peak_reserve(&peak, cs + 1) < 0) {
        _fil_warn_once("out of memory for the profiler's tables; some allocations are not tracked");
        return -1;
    }
    return 0;
}

static inline int ensure_peak_slot(callsite_t cs) {
    return FIL_LIKELY(cs < peak.capacity) ? 0 : grow_peak_slots(cs);
}

/* ctx, when not NULL, is a uint64_t that counts the bytes removed. */
static void on_range_removed(void *ctx, callsite_t cs, uint64_t bytes) {
    if (ctx) *(uint64_t *)ctx += bytes;
    _fil_peak_sub(&peak, cs, bytes);
}

/* Every case but the common one (below): a block too big or a callsite too high for a side
   entry, a region without a side table, a stale entry, the peak arrays to grow. */
static FIL_NOINLINE void add_slow(void *p, size_t size, callsite_t cs) {
    if (ensure_peak_slot(cs) < 0) return;
    uint32_t *e = _fil_small_entry((uintptr_t)p);
    int fits = size <= SMALL_MAX_SIZE && cs <= SMALL_MAX_CALLSITE;
    if (!e && fits) e = _fil_small_adopt((uintptr_t)p);   /* a heap region grown dense */
    if (e && fits) {
        uint32_t old = *e;
        *e = fil_small_pack(cs, size);
        /* Present already: its free went by unseen (e.g. from a signal handler inside a hook). */
        if (old) _fil_peak_sub(&peak, fil_small_cs(old), fil_small_size(old));
        _fil_peak_add(&peak, cs, size);
        return;
    }
    if (FIL_UNLIKELY(size >= ALLOC_TABLE_MAX_SIZE)) {
        _fil_warn_once("an allocation of 1 TiB or more is not tracked");
        return;
    }
    uint64_t old_size;
    callsite_t old_cs;
    int r = _fil_alloc_table_insert(&heap, (uintptr_t)p, size, cs, &old_size, &old_cs);
    if (r < 0) {
        _fil_warn_once("out of memory for the profiler's tables; some allocations are not tracked");
        return;
    }
    if (r == 0) _fil_small_spill((uintptr_t)p, +1);
    if (e && *e) {   /* a stale side entry for the same block */
        _fil_peak_sub(&peak, fil_small_cs(*e), fil_small_size(*e));
        *e = 0;
    }
    if (r == 1) _fil_peak_sub(&peak, old_cs, old_size);
    _fil_peak_add(&peak, cs, size);
}

/* The common case, recorded in side entry e (NULL: none) if it fits there: 1 if done. */
static inline int add_to_entry(uint32_t *e, size_t size, callsite_t cs) {
    if (FIL_LIKELY(e != NULL) && FIL_LIKELY(size <= SMALL_MAX_SIZE) &&
        FIL_LIKELY(cs < peak.capacity) && cs <= SMALL_MAX_CALLSITE &&
        FIL_LIKELY(fil_small_claim(e, fil_small_pack(cs, size)) == 0)) {
        _fil_peak_add(&peak, cs, size);
        return 1;
    }
    return 0;
}

/* The common case inline: a small block with an empty side entry. */
static inline void add_locked(void *p, size_t size, callsite_t cs) {
    if (!add_to_entry(_fil_small_entry((uintptr_t)p), size, cs)) add_slow(p, size, cs);
}

static FIL_NOINLINE int remove_slow(void *p, uint32_t *e, uint64_t *size, callsite_t *cs) {
    if (e && !_fil_small_spilled((uintptr_t)p)) return 0;
    if (!_fil_alloc_table_remove(&heap, (uintptr_t)p, size, cs)) return 0;
    _fil_small_spill((uintptr_t)p, -1);
    _fil_peak_sub(&peak, *cs, *size);
    return 1;
}

/* Forget p; 1 and what it was if it was tracked. */
static inline int remove_locked(void *p, uint64_t *size, callsite_t *cs) {
    uint32_t *e = _fil_small_entry((uintptr_t)p);
    uint32_t v;
    if (FIL_LIKELY(e != NULL) && FIL_LIKELY((v = *e) != 0)) {
        *e = 0;
        uint32_t sz = fil_small_size(v);
        callsite_t c = fil_small_cs(v);
        *size = sz;
        *cs = c;
        _fil_peak_sub(&peak, c, sz);
        return 1;
    }
    return remove_slow(p, e, size, cs);
}

/* _fil_track_alloc from the point where the lock is held (fast: as fil_lock_enter said). */
static FIL_ALWAYS_INLINE void alloc_held(fil_thread_t *me, int fast, void *p, size_t size) {
    /* A block of no bytes changes no total and no callsite's share: not recorded, and no stack
       taken (Python's lists give their storage back this way each time they empty). A later
       realloc or free of it finds nothing, as for any block never seen. */
    if (FIL_UNLIKELY(size == 0)) {
        fil_lock_leave(me, fast);
        return;
    }
    add_locked(p, size, current_callsite_locked(me));
    /* oom.c's early check: one subtraction and compare here, the /proc reads only rarely. */
    int oom_due = (_fil_oom_countdown -= (int64_t)size) < 0;
    fil_lock_leave(me, fast);
    if (FIL_UNLIKELY(oom_due)) _fil_oom_poll();
}

FIL_ALWAYS_INLINE void _fil_track_alloc(void *p, size_t size) {
    if (FIL_UNLIKELY(size == 0)) return;   /* alloc_held's rule, before taking the lock */
    fil_thread_t *me = _fil_tl_thread;
    alloc_held(me, fil_lock_enter(me), p, size);
}

FIL_ALWAYS_INLINE int _fil_track_take(void *p, uint64_t *size, callsite_t *cs) {
    fil_thread_t *me = _fil_tl_thread;
    int fast = fil_lock_enter(me);
    int found = remove_locked(p, size, cs);
    fil_lock_leave(me, fast);
    return found;
}

FIL_ALWAYS_INLINE void _fil_track_free(void *p) {
    uint64_t size;
    callsite_t cs;
    _fil_track_take(p, &size, &cs);
}

/* The quick paths (fil_internal.h): the biased lock, a stack the cache answers at a glance, a
   side entry in a cached region, no new peak to settle on a free, and no out-of-memory check
   due. Anything else is left to the full path, before the books are changed. */
FIL_ALWAYS_INLINE int _fil_track_alloc_quick(void *p, size_t size) {
    fil_thread_t *me = _fil_tl_thread;
    if (FIL_UNLIKELY(!fil_lock_try_biased(me))) return FIL_QUICK_NO;
    callsite_t cs = _fil_stack_quick(me);   /* FIL_STACK_UNKNOWN fits no side entry */
    if (FIL_LIKELY(size != 0) && FIL_LIKELY(_fil_oom_countdown >= (int64_t)size) &&
        FIL_LIKELY(add_to_entry(fil_small_entry_cached((uintptr_t)p), size, cs))) {
        _fil_oom_countdown -= (int64_t)size;
        fil_lock_leave(me, 1);
        return FIL_QUICK_DONE;
    }
    /* A new stack, mostly (Python code allocates at a new instruction each time): the full
       path goes on under the lock already held rather than leave and take it again. */
    return FIL_QUICK_HELD;
}

void _fil_track_alloc_after(void *p, size_t size, int quick) {
    if (quick == FIL_QUICK_HELD) alloc_held(_fil_tl_thread, 1, p, size);
    else if (quick == FIL_QUICK_NO) _fil_track_alloc(p, size);
}

FIL_ALWAYS_INLINE uint32_t _fil_track_free_quick(void *p) {
    fil_thread_t *me = _fil_tl_thread;
    if (FIL_UNLIKELY(!fil_lock_try_biased(me))) return 0;
    uint32_t *e = fil_small_entry_cached((uintptr_t)p);
    uint32_t v = FIL_LIKELY(e != NULL) && FIL_LIKELY(!peak.at_peak) ? *e : 0;
    uint32_t size = fil_small_size(v);
    if (FIL_LIKELY(v != 0)) {
        *e = 0;
        fil_peak_sub_settled(&peak, fil_small_cs(v), size);   /* no peak to settle: ruled out */
    }
    fil_lock_leave(me, 1);
    return size;
}

FIL_ALWAYS_INLINE void _fil_track_put(void *p, uint64_t size, callsite_t cs) {
    fil_thread_t *me = _fil_tl_thread;
    int fast = fil_lock_enter(me);
    add_locked(p, size, cs);
    fil_lock_leave(me, fast);
}

FIL_ALWAYS_INLINE void _fil_track_realloc(void *old, void *p, size_t size, int found,
                                          uint64_t old_size, callsite_t old_cs) {
    if (!p) {
        /* Failed, old lives on; or glibc's realloc(old, 0), which freed it. */
        if (found && size != 0) _fil_track_put(old, old_size, old_cs);
        return;
    }
    /* Resized in place to the size it had (a list shrinking by one item within its
       over-allocation, say): nothing was allocated, so it stays with the code that allocated it
       and no stack is taken. Any other outcome is charged to the caller, as a new block. */
    if (p == old && found && size == old_size) {
        _fil_track_put(p, old_size, old_cs);
        return;
    }
    _fil_track_alloc(p, size);
}

void _fil_track_mmap(void *p, size_t len) {
    _fil_lock();
    callsite_t cs = current_callsite_locked(_fil_tl_thread);
    if (ensure_peak_slot(cs) == 0) {
        if (_fil_range_add(&maps, (uintptr_t)p, len, cs, on_range_removed, NULL) == 0)
            _fil_peak_add(&peak, cs, len);
        else
            _fil_warn_once("out of memory for the profiler's tables; a mapping is not tracked");
    }
    int oom_due = (_fil_oom_countdown -= (int64_t)len) < 0;
    _fil_unlock();
    if (FIL_UNLIKELY(oom_due)) _fil_oom_poll();
}

uint64_t _fil_track_munmap(void *p, size_t len) {
    uint64_t removed = 0;
    _fil_lock();
    _fil_range_remove(&maps, (uintptr_t)p, len, on_range_removed, &removed);
    _fil_unlock();
    return removed;
}

void _fil_track_add_failed(uint64_t bytes) {
    _fil_lock();
    callsite_t cs = current_callsite_locked(_fil_tl_thread);
    callsite_t leaf = _fil_callsite_marker(cs, "[failed allocation]");
    if (leaf == CALLSITE_MAX) leaf = cs;   /* no memory for one more node: the line itself */
    if (ensure_peak_slot(leaf) == 0) _fil_peak_add(&peak, leaf, bytes);
    _fil_unlock();
}

void _fil_track_reset(void) {
    _fil_lock();
    _fil_alloc_table_clear(&heap);
    _fil_small_clear();
    _fil_range_clear(&maps);
    _fil_peak_clear(&peak);
    _fil_unlock();
}

void _fil_track_stats(uint64_t *live, uint64_t *peak_bytes) {
    _fil_lock();
    *live = peak.live_total;
    *peak_bytes = peak.peak_total;
    _fil_unlock();
}

uint64_t _fil_track_own_bytes(void) {
    _fil_lock();
    size_t leaves, sides, reserve;
    size_t small = _fil_small_resident(&leaves, &sides);
    size_t oom = _fil_oom_reserve_resident(&reserve);
    uint64_t own = prim_pages_in_use() - leaves - reserve + small + oom;
    _fil_unlock();
    return own;
}

int _fil_track_dump(const char *path, int current, uint64_t *total) {
    _fil_lock();
    _fil_peak_settle(&peak);
    /* Every slot: the overflow callsite (CALLSITE_MAX) lies beyond the interned count. */
    uint32_t n = peak.capacity;
    *total = current ? peak.live_total : peak.peak_total;
    int r = current ? _fil_prof_write(path, peak.live, PEAK_BYTES, n)
                    : _fil_prof_write(path, peak.snap, ~(uint64_t)0, n);
    _fil_unlock();
    return r;
}

/* fork(): the child gets one thread; a lock held by another thread at fork time would never be
   released, so the lock is taken around fork. The child does not record: its report would be
   mistaken for the parent's, and following children is not a feature yet. */
static void atfork_prepare(void) { _fil_tl_guard++; _fil_lock(); }
static void atfork_parent(void) { _fil_unlock(); _fil_tl_guard--; }
static void atfork_child(void) {
    _fil_lock_after_fork_child();
    _fil_tracking = 0;
    _fil_tl_guard--;
}

void _fil_track_init_once(void) {
    static int done;
    if (done) return;
    done = 1;
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}
