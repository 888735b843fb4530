/* pyalloc.c: Python's own allocators, seen by the tracker.
 *
 * pymalloc serves small objects from arenas (1 MiB in 3.11) it maps itself; tracked at the
 * arena level they would be invisible (one arena = many objects, freed objects still "in use").
 * Rather than forcing PYTHONMALLOC=malloc, which slows every object allocation, the object and
 * memory domains are wrapped (PyMem_SetAllocator, as tracemalloc does): each call goes to the
 * previous allocator and the block is recorded at its requested size. pymalloc's arenas are then
 * obtained with raw mmap (PyObject_SetArenaAllocator) so they are not counted a second time,
 * each with a side table where its blocks are recorded (small_map.c); requests above 512 bytes
 * that pymalloc forwards to malloc run with the guard set, for the same reason.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "fil_internal.h"
#include "oom.h"
#include "pystack.h"

#include <sys/mman.h>

static PyMemAllocatorEx prev_mem, prev_obj;
#define PYMALLOC_MAX_REQUEST 512   /* pymalloc's own blocks; larger requests go to malloc */

static inline int active(void) { return _fil_tl_guard == 0 && _fil_tracking; }

/* The full path behind w_malloc's quick one (quick: what it said), guard set: drops it. */
static FIL_NOINLINE void *malloc_rest(void *p, size_t size, int quick) {
    if (p) _fil_track_alloc_after(p, size, quick);
    else _fil_oom_on_failure(size);   /* out of memory: report and exit (oom.c) */
    _fil_tl_guard--;
    return p;
}

static void *w_malloc(void *ctx, size_t size) {
    PyMemAllocatorEx *a = ctx;
    if (!active()) return a->malloc(a->ctx, size);
    _fil_tl_guard++;
    void *p = a->malloc(a->ctx, size);
    if (FIL_UNLIKELY(p == NULL)) return malloc_rest(p, size, FIL_QUICK_NO);
    int quick = _fil_track_alloc_quick(p, size);
    if (FIL_UNLIKELY(quick != FIL_QUICK_DONE)) return malloc_rest(p, size, quick);
    _fil_tl_guard--;
    return p;
}

static void *w_calloc(void *ctx, size_t n, size_t size) {
    PyMemAllocatorEx *a = ctx;
    if (!active()) return a->calloc(a->ctx, n, size);
    _fil_tl_guard++;
    void *p = a->calloc(a->ctx, n, size);
    size_t total;
    if (p) _fil_track_alloc(p, n * size);
    else if (!__builtin_mul_overflow(n, size, &total)) _fil_oom_on_failure(total);
    _fil_tl_guard--;
    return p;
}

static void *w_realloc(void *ctx, void *old, size_t size) {
    PyMemAllocatorEx *a = ctx;
    if (!active()) return a->realloc(a->ctx, old, size);
    _fil_tl_guard++;
    uint64_t old_size = 0;
    callsite_t old_cs = 0;
    int had_old = old ? _fil_track_take(old, &old_size, &old_cs) : 0;
    void *p = a->realloc(a->ctx, old, size);
    _fil_track_realloc(old, p, size, had_old, old_size, old_cs);
    if (!p) _fil_oom_on_failure(size);
    _fil_tl_guard--;
    return p;
}

static FIL_NOINLINE void free_rest(PyMemAllocatorEx *a, void *p) {
    _fil_track_free(p);
    a->free(a->ctx, p);
    _fil_tl_guard--;
}

/* A block of at most 512 bytes was pymalloc's own (larger ones go to malloc, which must not see
   them again): its free calls no allocator, only arena_free when its arena empties, which takes
   care of itself. So the guard is down again before it, and the call is the last thing done.
   (Under PYTHONMALLOC=malloc the previous free is malloc's, whose hook then finds nothing.) */
static void w_free(void *ctx, void *p) {
    PyMemAllocatorEx *a = ctx;
    if (p && active()) {
        _fil_tl_guard++;
        uint32_t size = _fil_track_free_quick(p);
        if (FIL_UNLIKELY(size == 0)) return free_rest(a, p);
        if (FIL_UNLIKELY(size > PYMALLOC_MAX_REQUEST)) {
            a->free(a->ctx, p);
            _fil_tl_guard--;
            return;
        }
        _fil_tl_guard--;
    }
    a->free(a->ctx, p);
}

/* The arena allocator serves two clients. pymalloc asks for its arenas from inside an object
   allocation, which while tracking comes through the wrappers above, guard set. Whatever asks
   with the guard down while tracking is something else: the interpreter's frame stack growing
   by a chunk (16 KiB and up; deep recursion takes many), or an extension using the same entry
   point (_PyObject_VirtualAlloc). That memory holds no tracked blocks: it gets what the default
   arena allocator does, an anonymous mmap, which the mmap hook (hooks.c) tracks and charges to
   the line whose call needed it, and munmap gives it back.

   pymalloc's arenas come with a side table where their blocks are recorded (small_map.c); if
   that mapping is refused, a plain one still serves the program and its blocks go to the
   allocation table (the hooks pass both calls through: the guard is set, or not tracking). */
static void *arena_alloc(void *ctx, size_t size) {
    (void)ctx;
    void *p = active() ? NULL : _fil_small_arena_map(size);
    if (p) return p;
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void arena_free(void *ctx, void *p, size_t size) {
    (void)ctx;
    if (!_fil_small_arena_unmap(p, size)) munmap(p, size);
}

void _fil_pyalloc_install(void) {
    static int installed;
    if (installed) return;
    installed = 1;
    PyObjectArenaAllocator arenas = {NULL, arena_alloc, arena_free};
    PyObject_SetArenaAllocator(&arenas);
    PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &prev_mem);
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &prev_obj);
    PyMemAllocatorEx mem = {&prev_mem, w_malloc, w_calloc, w_realloc, w_free};
    PyMemAllocatorEx obj = {&prev_obj, w_malloc, w_calloc, w_realloc, w_free};
    PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &mem);
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &obj);
}
