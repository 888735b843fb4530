/* fil_internal.h: declarations shared between the core's files, grouped by the file that
 * defines them. Nothing here is exported from the shared library (hidden visibility). */
#ifndef FIL_INTERNAL_H
#define FIL_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FIL_ALWAYS_INLINE inline __attribute__((always_inline))
#define FIL_LIKELY(x) __builtin_expect(!!(x), 1)
#define FIL_NOINLINE __attribute__((noinline))
#define FIL_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Callsite ids: an interned call stack (a node of the stack trie). */
typedef uint32_t callsite_t;
#define CALLSITE_NO_PYTHON 0u  /* the root: "[No Python stack]" */
#define CALLSITE_MAX ((1u << 24) - 1)  /* ids are packed into 24 bits in the allocation table */

/* ---- arena.c: the profiler's own permanent small allocations (never freed) ---- */
/* Zeroed, 16-byte aligned memory from page-backed chunks; NULL when the OS refuses.
   Caller holds the tracking lock (or is single-threaded, as in unit tests). */
void *_fil_arena_alloc(size_t size);

/* ---- alloc_table.c: live heap allocations, pointer -> (size, callsite) ---- */
/* Open addressing with linear probing and backward-shift deletion: 16 bytes per slot, at most
   75% full, so 16-43 bytes per live allocation. Sizes are below 2^40 (larger ones go to the
   range table). Protected by the tracking lock. */
typedef struct {
    uintptr_t key;      /* the allocation's address; 0 = empty slot */
    uint64_t val;       /* size << 24 | callsite */
} alloc_slot_t;
typedef struct {
    alloc_slot_t *slots;
    size_t capacity;    /* power of two, or 0 before the first insert */
    size_t count;
    int log2_capacity;
} alloc_table_t;
#define ALLOC_TABLE_MAX_SIZE ((uint64_t)1 << 40)
/* Insert ptr (nonzero). If ptr is present its old entry is replaced and returned through
   old_size/old_cs with result 1; 0 when new; -1 when memory for the table could not be had. */
int _fil_alloc_table_insert(alloc_table_t *t, uintptr_t ptr, uint64_t size, callsite_t cs,
                            uint64_t *old_size, callsite_t *old_cs);
/* Remove ptr; returns 1 and its size/callsite if it was present, 0 if not. */
int _fil_alloc_table_remove(alloc_table_t *t, uintptr_t ptr, uint64_t *size, callsite_t *cs);
void _fil_alloc_table_clear(alloc_table_t *t);
size_t _fil_alloc_table_bytes(const alloc_table_t *t);

/* ---- small_map.c: small blocks, one 32-bit entry per 16 bytes of pymalloc arena or heap region ---- */
/* An entry is (callsite + 1) << SMALL_SIZE_BITS | size; 0 = empty. Bigger sizes or callsites
   go to the allocation table. Protected by the tracking lock (the arena calls take it). */
#define SMALL_SIZE_BITS 10
#define SMALL_MAX_SIZE ((1u << SMALL_SIZE_BITS) - 1)
#define SMALL_MAX_CALLSITE ((1u << (32 - SMALL_SIZE_BITS)) - 2)
static inline uint32_t fil_small_pack(callsite_t cs, uint64_t size) {
    return ((cs + 1) << SMALL_SIZE_BITS) | (uint32_t)size;
}
/* Claim an empty entry: store v if *e is 0, and return what *e held (0: claimed). The first
   touch of a side-table page is usually this, and it must be a write: a read maps the kernel's
   shared zero page, and the write that follows then faults a second time and, in a process with
   other threads (numpy's BLAS pool), flushes their TLBs by interrupt. x86's compare-exchange
   always writes its destination, so an unlocked one is a write access that costs little; the
   lock prefix is not needed, the tracking lock is held. Elsewhere, and in the sanitizer builds
   (which do not see into asm), a read and a write. */
#if (defined(__x86_64__) || defined(__i386__)) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)
#define FIL_SMALL_CLAIM_WRITES 1
#else
#define FIL_SMALL_CLAIM_WRITES 0
#endif
static inline uint32_t fil_small_claim(uint32_t *e, uint32_t v) {
#if FIL_SMALL_CLAIM_WRITES
    uint32_t old = 0;
    __asm__("cmpxchgl %2, %1" : "+a"(old), "+m"(*e) : "r"(v) : "cc");
    return old;
#else
    uint32_t old = *e;
    if (old == 0) *e = v;
    return old;
#endif
}
static inline callsite_t fil_small_cs(uint32_t entry) { return (entry >> SMALL_SIZE_BITS) - 1; }
static inline uint32_t fil_small_size(uint32_t entry) { return entry & SMALL_MAX_SIZE; }
/* A new zeroed arena of size bytes (a multiple of the page size, at most 1 MiB) with its side
   table, or NULL (then the caller maps a plain one). */
void *_fil_small_arena_map(size_t size);
/* Unmap an arena from _fil_small_arena_map and return 1; 0 (nothing done) for any other. */
int _fil_small_arena_unmap(void *arena, size_t size);
/* The directory behind _fil_small_entry (defined in small_map.c; inline here because every
   tracked allocation and free looks it up): region number -> the region's side table, which
   starts where an arena ends (pymalloc's arenas) or lies outside the region (heap regions). */
#define SMALL_REGION_BITS 20   /* 1 MiB: pymalloc's arena size on 64-bit 3.11 */
#define SMALL_ADDR_BITS 47     /* user-space addresses on x86-64 and arm64 */
#define SMALL_LEAF_BITS 14     /* one leaf maps 16 GiB of address space */
typedef struct {
    uint32_t *side[1u << SMALL_LEAF_BITS];
    uint32_t spilled[1u << SMALL_LEAF_BITS];   /* allocation-table entries in each region */
    /* Heap regions without a side table: small blocks tracked there (saturating), and which
       16 KiB stretches (a side-table page each) they fell in. */
    uint32_t seen[1u << SMALL_LEAF_BITS];
    uint64_t stretches[1u << SMALL_LEAF_BITS];
} fil_small_leaf_t;
#define SMALL_TOP_BITS (SMALL_ADDR_BITS - SMALL_REGION_BITS - SMALL_LEAF_BITS)
extern fil_small_leaf_t *_fil_small_top[1u << SMALL_TOP_BITS];
/* The directory slot of the leaf covering p (p below 1 << SMALL_ADDR_BITS), and p's region's
   index in that leaf. */
static inline fil_small_leaf_t **fil_small_leaf_slot(uintptr_t p) {
    return &_fil_small_top[p >> (SMALL_REGION_BITS + SMALL_LEAF_BITS)];
}
static inline size_t fil_small_region_index(uintptr_t p) {
    return (p >> SMALL_REGION_BITS) & ((1u << SMALL_LEAF_BITS) - 1);
}
/* In front of the directory, a direct-mapped cache of region number -> side table (NULL: none,
   cached too), so that the lookup of every allocation and free is one load and a compare rather
   than two dependent loads. small_map.c writes a region's slot whenever the region's side table
   changes; the slot of region 0, which is never mapped, starts out right. */
#define SMALL_RC_BITS 9
typedef struct {
    uintptr_t region;
    uint32_t *side;
} fil_small_rc_t;
extern fil_small_rc_t _fil_small_rc[1u << SMALL_RC_BITS];
/* The side table of p's region from the directory, entered in the cache. */
uint32_t *_fil_small_side_miss(uintptr_t p);
/* p's entry in the side table of its region, if any (side: that table, or NULL). */
static inline uint32_t *fil_small_entry_in(uintptr_t p, uint32_t *side) {
    if (!side) return NULL;
    uintptr_t base = p & ~(((uintptr_t)1 << SMALL_REGION_BITS) - 1);
    if (p - base >= (uintptr_t)side - base || (p & 15)) return NULL;
    return side + ((p - base) >> 4);
}
/* The entry for a block at p, or NULL when p's region has no side table. */
static inline uint32_t *_fil_small_entry(uintptr_t p) {
    uintptr_t region = p >> SMALL_REGION_BITS;
    const fil_small_rc_t *c = &_fil_small_rc[region & ((1u << SMALL_RC_BITS) - 1)];
    return fil_small_entry_in(p, FIL_LIKELY(c->region == region) ? c->side
                                                                 : _fil_small_side_miss(p));
}
/* The same for the quick paths: NULL also when the region is not in the cache. */
static inline uint32_t *fil_small_entry_cached(uintptr_t p) {
    uintptr_t region = p >> SMALL_REGION_BITS;
    const fil_small_rc_t *c = &_fil_small_rc[region & ((1u << SMALL_RC_BITS) - 1)];
    return fil_small_entry_in(p, FIL_LIKELY(c->region == region) ? c->side : NULL);
}
/* A heap region gets a side table once the small blocks tracked there have been many for the
   side-table pages they would touch: SMALL_ADOPT_PER_PAGE per 16 KiB stretch they fell in, and
   SMALL_ADOPT_MIN in all. Dense or busy regions (a C extension's small structs, a malloc/free
   loop) qualify; sparse ones (numpy's shape arrays, one between each pair of 10 KiB buffers,
   would touch a 4 KiB side page per buffer) stay with the allocation table. */
#define SMALL_ADOPT_PER_PAGE 128u
#define SMALL_ADOPT_MIN 1024u
/* Note a small block at p (16-byte aligned, in no region with a side table) about to go to the
   allocation table; when its region qualifies, map the region's side table instead and return
   p's entry. NULL otherwise. Under the lock. */
uint32_t *_fil_small_adopt(uintptr_t p);
/* Blocks that live in the allocation table are counted per region, so a free that finds an empty
   side entry knows whether the table can hold the block: +1 or -1 for the block at p. Regions
   adopted after their blocks went to the table are covered the same way. When a count cannot be
   kept (no memory for a directory leaf), _fil_small_spilled answers "maybe" until a clear. */
void _fil_small_spill(uintptr_t p, int delta);
extern int _fil_small_spill_unknown;
/* Whether the allocation table may hold a block of p's region; p has a side entry. */
static inline int _fil_small_spilled(uintptr_t p) {
    return _fil_small_spill_unknown ||
           (*fil_small_leaf_slot(p))->spilled[fil_small_region_index(p)] != 0;
}
void _fil_small_clear(void);
size_t _fil_small_bytes(void);   /* side tables mapped, in bytes (walks the directory) */
/* Resident bytes of the side tables and directory leaves; *leaves_mapped: the leaves' mapped
   bytes, which prim_pages_in_use counts; *sides_mapped: the side tables'. Caller holds the
   lock. */
size_t _fil_small_resident(size_t *leaves_mapped, size_t *sides_mapped);

/* ---- range_table.c: live anonymous mappings, [start, start+len) -> callsite ---- */
/* A sorted array of disjoint ranges; mappings are few (thousands), unmaps may be partial. */
typedef struct {
    uintptr_t start;
    uint64_t len;
    callsite_t cs;
} range_t;
typedef struct {
    range_t *ranges;
    size_t count, capacity;
} range_table_t;
/* Called once per removed piece while unmapping. */
typedef void (*range_removed_fn)(void *ctx, callsite_t cs, uint64_t bytes);
/* Add [start, start+len); any tracked overlap is removed first (MAP_FIXED replaces mappings).
   Returns 0, or -1 if the table could not grow. */
int _fil_range_add(range_table_t *t, uintptr_t start, uint64_t len, callsite_t cs,
                   range_removed_fn on_removed, void *ctx);
/* Remove whatever tracked bytes lie in [start, start+len), splitting ranges as needed. */
int _fil_range_remove(range_table_t *t, uintptr_t start, uint64_t len,
                      range_removed_fn on_removed, void *ctx);
void _fil_range_clear(range_table_t *t);

/* ---- callsite.c: interned call stacks ---- */
/* A call stack is a path in a trie whose nodes are (parent, function, line); the node id is the
   callsite. Functions are interned (file, name) pairs; strings are interned once. A second table
   maps an interpreter-level key (parent, code object, instruction offset) to a node so that the
   line number and names are computed only the first time a frame position is seen.
   All protected by the tracking lock. */
int _fil_callsite_init(void);
void _fil_callsite_reset_all(void);  /* unit tests only: forget everything */
/* The child of parent for (file, name, line); creates it if new. Returns CALLSITE_MAX when the
   trie is full (that overflow node stands for "[too many call stacks]"). */
callsite_t _fil_callsite_child(callsite_t parent, const char *file, size_t file_len,
                               const char *name, size_t name_len, uint32_t line);
/* A frame the profiler adds itself ("[failed allocation]", "[native thread: ...]"): no file,
   no line, only its bracketed name, which is how reports print it. */
callsite_t _fil_callsite_marker(callsite_t parent, const char *name);
/* Interned function (file, name); CALLSITE_FUNC_NONE when memory is refused. */
#define CALLSITE_FUNC_NONE UINT32_MAX
#define CALLSITE_FUNC_HIDDEN (UINT32_MAX - 1)   /* a position whose frames are not shown */
uint32_t _fil_callsite_func(const char *file, size_t file_len, const char *name, size_t name_len);
/* The child of parent for an interned function and line (CALLSITE_MAX when full). */
callsite_t _fil_callsite_child_of(callsite_t parent, uint32_t func, uint32_t line);
/* Position cache: (code, offset, fingerprint) -> (function or CALLSITE_FUNC_HIDDEN, line). */
int _fil_callsite_position_get(const void *code, int32_t lasti, uintptr_t fp, uint32_t *func,
                               uint32_t *line);
void _fil_callsite_position_put(const void *code, int32_t lasti, uintptr_t fp, uint32_t func,
                                uint32_t line);
/* Forget both interpreter-key caches (what is hidden changed). Nodes stay. */
void _fil_callsite_forget_positions(void);
/* Interpreter-key cache: 1 and *node if known. */
int _fil_callsite_cache_get(callsite_t parent, const void *code, int32_t lasti, uintptr_t fp,
                            callsite_t *node);
void _fil_callsite_cache_put(callsite_t parent, const void *code, int32_t lasti, uintptr_t fp,
                             callsite_t node);
/* Node fields, for writing reports. */
callsite_t _fil_callsite_parent(callsite_t cs);
uint32_t _fil_callsite_line(callsite_t cs);
const char *_fil_callsite_file(callsite_t cs, size_t *len);
const char *_fil_callsite_name(callsite_t cs, size_t *len);
uint32_t _fil_callsite_count(void);  /* number of nodes, the root included */
callsite_t _fil_callsite_truncated_root(void);  /* parent of stacks too deep to keep whole */

/* ---- peak.c: live bytes per callsite and the snapshot at the high-water mark ---- */
typedef struct {
    uint64_t live_total;     /* tracked bytes alive now */
    uint64_t peak_total;     /* the high-water mark of live_total */
    uint64_t *live;          /* per callsite, with PEAK_DIRTY: on the dirty list */
    uint64_t *snap;          /* per callsite, at the peak (once settled) */
    uint32_t *dirty;         /* callsites whose live differs from snap */
    uint32_t dirty_count;
    uint32_t capacity;       /* entries in each per-callsite array */
    bool at_peak;            /* live is the peak state and snap not yet updated */
} peak_t;
int _fil_peak_reserve(peak_t *p, uint32_t ncallsites);
/* Bring snap up to date if the current state is the peak. Call before reading snap. */
void _fil_peak_settle(peak_t *p);
void _fil_peak_clear(peak_t *p);
/* A callsite's dirty mark is the top bit of its live bytes, so that the one word an event
   updates also says whether the callsite is on the dirty list. */
#define PEAK_DIRTY ((uint64_t)1 << 63)
#define PEAK_BYTES (~PEAK_DIRTY)
static inline uint64_t fil_peak_live(const peak_t *p, callsite_t cs) {
    return p->live[cs] & PEAK_BYTES;
}
/* Every tracked allocation and free calls one of these two: inline. */
static inline uint64_t fil_peak_mark_dirty(peak_t *p, callsite_t cs, uint64_t live) {
    if (FIL_UNLIKELY(!(live & PEAK_DIRTY))) {
        p->dirty[p->dirty_count++] = cs;
        live |= PEAK_DIRTY;
    }
    return live;
}
static inline void _fil_peak_add(peak_t *p, callsite_t cs, uint64_t bytes) {
    p->live[cs] = fil_peak_mark_dirty(p, cs, p->live[cs]) + bytes;
    p->live_total += bytes;
    if (p->live_total > p->peak_total) {
        p->peak_total = p->live_total;
        p->at_peak = true;
    }
}
/* _fil_peak_sub once the state is known not to be the peak (no snapshot to take first). */
static inline void fil_peak_sub_settled(peak_t *p, callsite_t cs, uint64_t bytes) {
    p->live[cs] = fil_peak_mark_dirty(p, cs, p->live[cs]) - bytes;
    p->live_total -= bytes;
}
static inline void _fil_peak_sub(peak_t *p, callsite_t cs, uint64_t bytes) {
    if (bytes == 0) return;
    if (p->at_peak) _fil_peak_settle(p);
    fil_peak_sub_settled(p, cs, bytes);
}

/* ---- prof_write.c: the collapsed-stacks file ---- */
/* Write one line per callsite with bytes[cs] & mask > 0, frames from the root. Returns 0 or -1
   (errno). */
int _fil_prof_write(const char *path, const uint64_t *bytes, uint64_t mask, uint32_t ncallsites);

/* ---- track.c: the engine behind the hooks ---- */
/* Per-thread state; owned by its thread, found through a thread-local pointer. */
#define FIL_MAX_FRAMES 256
typedef struct {
    /* The two words the frame holds side by side, in this order, checked as one pair: */
    const void *below;   /* its link to the frame below */
    const void *instr;   /* its current instruction: names code and offset in one word */
    const void *frame;   /* where the interpreter frame was */
    const void *code;
    int32_t lasti;
    callsite_t node;
    /* pystack_311.c: the saved stack depth at which a mark was left in this frame while it
       called the next entry's frame (-1: none) */
    int32_t mark;
} frame_cache_entry_t;
/* pystack_311.c: a thread's recent (parent node, code object, offset) -> child node lookups, in
   front of the shared cache, whose table outgrows the first-level cache in big programs. */
#define FIL_NODE_MEMO 64
typedef struct {
    const void *code;    /* NULL: empty */
    uintptr_t fp;        /* the code object's fingerprint when it was entered */
    callsite_t parent;
    int32_t lasti;
    callsite_t node;
} fil_node_memo_t;
/* pystack_311.c: while a mark holds, the other instructions its top frame allocated at, with
   their nodes (the frame, its code and everything under it being as cached), direct-mapped by
   instruction; valid when gen is the thread's mark_gen. */
#define FIL_TOP_ALTS 16
typedef struct {
    const void *instr;
    uint32_t gen;
    callsite_t node;
} fil_top_alt_t;
typedef struct fil_thread_s {
    struct fil_thread_s *next_free;
    unsigned long self;          /* pthread_self() of the thread it belongs to */
    /* pythreads.c: the interpreter's state of this thread while the thread has released it
       (PyEval_SaveThread to PyEval_RestoreThread, both seen), else NULL */
    void *released;
    /* pystack_311.c: its stack while released, which cannot change meanwhile, taken when its
       top frame was released_top at released_instr; kept while released_epoch equals the stack
       provider's epoch (0: not taken yet) */
    const void *released_top;
    const void *released_instr;
    callsite_t released_cs;
    uint32_t released_epoch;
    callsite_t inherited;        /* for threads without Python: the stack that created them */
    uint32_t cache_depth;        /* entries valid in cache[], root first */
    uint32_t cache_rising;       /* cache[0, cache_rising) has rising frame addresses */
    callsite_t cache_base;       /* root node the cached stack hangs from */
    /* pystack_311.c: the saved stack depth of the cached top frame's caller, in whose slot at
       that depth the mark was left (-1: none) */
    int32_t mark_depth;
    /* pystack_311.c: the number of marks left so far (0 after wrapping: the alternatives are
       emptied), naming the mark the alternatives belong to */
    uint32_t mark_gen;
    callsite_t fallback_parent;  /* native threads: the inherited stack the marker hangs from */
    callsite_t fallback_node;    /* ... and its "[native thread ...]" child, interned once */
    atomic_int lock_busy;        /* lock.c: inside the lock on the biased fast path */
    uint32_t memo_epoch;         /* the stack epoch memo[] was filled in (0: never) */
    fil_node_memo_t memo[FIL_NODE_MEMO];
    fil_top_alt_t alt[FIL_TOP_ALTS];
    frame_cache_entry_t cache[FIL_MAX_FRAMES];
    frame_cache_entry_t scratch[FIL_MAX_FRAMES];  /* the stack being taken, innermost first */
} fil_thread_t;

/* The stack provider: the callsite of the calling thread, called with the tracking lock held.
   The library's is the Python stack (pystack_311.c); the C tests link their own
   (tests/c/stack_provider.c, the stress test). _fil_stack_quick gives the same when the answer
   is at hand (the cache agrees at a glance), else FIL_STACK_UNKNOWN, for the quick paths below:
   no call, nothing changed. The library's is inline in them, through link-time optimization. */
#define FIL_STACK_UNKNOWN UINT32_MAX   /* above SMALL_MAX_CALLSITE: no quick path takes it */
callsite_t _fil_stack_of(fil_thread_t *ts);
callsite_t _fil_stack_quick(fil_thread_t *ts);

/* Thread-local reentrancy guard: nonzero while this thread runs profiler code, so allocations
   made by that code (dlsym, libc internals, a signal handler interrupting us) are not tracked
   and cannot deadlock on the tracking lock. initial-exec TLS: reading it never allocates. */
extern __thread int _fil_tl_guard __attribute__((tls_model("initial-exec")));
extern volatile int _fil_tracking;   /* 1 while allocations are being recorded */

/* The calling thread's state, NULL until its first tracked allocation (_fil_thread_get). */
extern __thread fil_thread_t *_fil_tl_thread __attribute__((tls_model("initial-exec")));
fil_thread_t *_fil_thread_get(void);
/* Record a new block of size bytes at p, charged to the calling thread's stack (size 0: nothing). */
void _fil_track_alloc(void *p, size_t size);
void _fil_track_free(void *p);
/* The hooks' quick paths, guard set: the common case whole and without a call, so that a hook
   inlining them saves no registers for calls it does not make.
   _fil_track_alloc_quick: FIL_QUICK_DONE, or the hook passes what it returned on to
   _fil_track_alloc_after (out of line), which takes the full path: from the start after
   FIL_QUICK_NO (nothing done), under the biased lock still held after FIL_QUICK_HELD.
   _fil_track_free_quick: the block's size when done; 0 when nothing was changed, and the hook
   calls _fil_track_free. */
enum { FIL_QUICK_NO, FIL_QUICK_DONE, FIL_QUICK_HELD };
int _fil_track_alloc_quick(void *p, size_t size);
void _fil_track_alloc_after(void *p, size_t size, int quick);
uint32_t _fil_track_free_quick(void *p);
/* Remove p from the books, returning what it was (1) or 0 if unknown; put it back as it was. */
int _fil_track_take(void *p, uint64_t *size, callsite_t *cs);
void _fil_track_put(void *p, uint64_t size, callsite_t cs);
/* After realloc(old, size) returned p (NULL: failed, or glibc freed old for size 0), old having
   been taken first (found, old_size, old_cs from _fil_track_take): the books made to match. */
void _fil_track_realloc(void *old, void *p, size_t size, int found, uint64_t old_size,
                        callsite_t old_cs);
void _fil_track_mmap(void *p, size_t len);
/* Returns the tracked bytes that lay in [p, p+len) (0: nothing there was anonymous memory). */
uint64_t _fil_track_munmap(void *p, size_t len);
/* Current callsite of the calling thread (for pthread_create's inheritance). */
callsite_t _fil_current_callsite(void);
/* lock.c: the tracking lock (biased towards the thread doing the tracking at the moment). */
void _fil_lock(void);
void _fil_unlock(void);
/* The same lock for the hot path, its fast half inline: me is the caller's _fil_tl_thread (may be
   NULL); returns whether the bias let it in, which fil_lock_leave needs back. */
extern _Atomic(fil_thread_t *) _fil_lock_bias_for;
void _fil_lock_slow(fil_thread_t *me);
void _fil_unlock_slow(void);
/* The biased half alone: 1 if in (leave with fil_lock_leave(me, 1)), 0 if not, nothing held. */
static inline int fil_lock_try_biased(fil_thread_t *me) {
    if (FIL_LIKELY(me != NULL) &&
        atomic_load_explicit(&_fil_lock_bias_for, memory_order_relaxed) == me) {
        atomic_store_explicit(&me->lock_busy, 1, memory_order_relaxed);
        atomic_signal_fence(memory_order_seq_cst);   /* the barrier is membarrier's job */
        if (FIL_LIKELY(atomic_load_explicit(&_fil_lock_bias_for, memory_order_acquire) == me))
            return 1;
        atomic_store_explicit(&me->lock_busy, 0, memory_order_release);
    }
    return 0;
}
static inline int fil_lock_enter(fil_thread_t *me) {
    if (FIL_LIKELY(fil_lock_try_biased(me))) return 1;
    _fil_lock_slow(me);
    return 0;
}
static inline void fil_lock_leave(fil_thread_t *me, int fast) {
    if (fast) atomic_store_explicit(&me->lock_busy, 0, memory_order_release);
    else _fil_unlock_slow();
}
void _fil_lock_enable_bias(void);      /* the bias may be granted; the caller's run counts first */
int _fil_lock_bias_possible(void);     /* since then: 0 without membarrier or under TSan */
void _fil_lock_after_fork_child(void); /* in the child, after fork() took the lock */
/* Forget all live allocations and the peak; new allocations are tracked from now on. */
void _fil_track_init_once(void);  /* atfork handlers; from the library constructor */
void _fil_track_reset(void);
void _fil_track_stats(uint64_t *live, uint64_t *peak);
/* The profiler's own memory in use. Its tables count as mapped (they are dense), but side
   tables, directory leaves and the out-of-memory report's reserve, mostly never touched, count
   as resident: a system call per arena, for reports, not hot paths. */
uint64_t _fil_track_own_bytes(void);
/* Write the peak (or current, when current != 0) allocations as collapsed stacks. */
int _fil_track_dump(const char *path, int current, uint64_t *total);
/* oom.c: charge a request that failed (bytes) to the calling thread's stack, under a synthetic
   "[failed allocation]" frame, so the out-of-memory report names the line that asked. */
void _fil_track_add_failed(uint64_t bytes);
/* Reports lost bookkeeping once on stderr (table memory refused by the OS). */
void _fil_warn_once(const char *msg);

#endif
