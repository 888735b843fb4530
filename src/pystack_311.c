/* pystack_311.c: the Python call stack of the allocating thread, for CPython 3.11.
 *
 * Everything that depends on the interpreter's version lives in this file: the layout of
 * _PyInterpreterFrame, how the current instruction is found, how a code object's names are read.
 * Another CPython version is another pystack_3XX.c.
 *
 * How a stack is taken. No profile hook is installed: in 3.11 a profile function sends every
 * bytecode through the DO_TRACING path, a large slowdown on pure Python. Instead, at allocation
 * time the thread's frame chain (tstate->cframe->current_frame, ->previous ...) is walked; this
 * works for a thread that released the GIL too, since only that thread changes its own frames.
 * Each frame contributes (code object, instruction offset). The thread keeps the previous stack
 * it saw (fil_thread_t.cache, root first, with the trie node of every prefix), so only the
 * frames that differ from it are interned; in a loop that allocates at one line that is none.
 * A frame position seen for the first time is resolved once: file, function (co_qualname) and
 * line number are read and interned (callsite.c), then cached by (parent, code, offset).
 *
 * Strings are read straight from the unicode objects' storage (and encoded to UTF-8 here if not
 * ASCII): the hook path never calls into Python in a way that could allocate.
 *
 * Stacks deeper than FIL_MAX_FRAMES keep their innermost frames under a "[stack truncated]" root,
 * which bounds both the work per allocation and the size of reports.
 */
#define PY_SSIZE_T_CLEAN
#define Py_BUILD_CORE 1
#include <Python.h>
#include "internal/pycore_frame.h"
#include "internal/pycore_pystate.h"

#include "fil_internal.h"
#include "pystack.h"
#ifdef FIL_CHECK_STACKS
#include "prim.h"
#include <stdio.h>
#include <stdlib.h>
#endif

#include <pthread.h>
#include <string.h>

/* Files whose frames are not shown (the launcher's runpy frames); set before tracking starts. */
static struct { char *bytes; size_t len; } hidden[FIL_MAX_HIDDEN];
static int nhidden;

/* The frame below which nothing is shown: the launcher's frame that runs the user's code.
   Only for the thread that started tracking. Protected by the tracking lock. */
static PyThreadState *cut_tstate;
static _PyInterpreterFrame *cut_frame;
/* Changes with the cut and at each start, so that stacks kept across them are taken again (never
   0, which marks a stack not taken). Protected by the tracking lock. */
static uint32_t stack_epoch = 1;

static void next_epoch(void) {
    if (++stack_epoch == 0) stack_epoch = 1;
}

/* UTF-8 of a str object without allocating: ASCII and cached UTF-8 are used in place, other
   strings are encoded into scratch (truncated at cap). */
static const char *utf8_of(PyObject *o, char *scratch, size_t cap, size_t *len) {
    if (!o || !PyUnicode_Check(o) || !PyUnicode_IS_READY(o)) { *len = 1; return "?"; }
    if (PyUnicode_IS_COMPACT_ASCII(o)) {
        *len = (size_t)((PyASCIIObject *)o)->length;
        return (const char *)(((PyASCIIObject *)o) + 1);
    }
    PyCompactUnicodeObject *c = (PyCompactUnicodeObject *)o;
    if (c->utf8) { *len = (size_t)c->utf8_length; return c->utf8; }
    int kind = PyUnicode_KIND(o);
    const void *data = PyUnicode_DATA(o);
    Py_ssize_t n = PyUnicode_GET_LENGTH(o);
    size_t out = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        char buf[4];
        size_t k;
        if (ch < 0x80) { buf[0] = (char)ch; k = 1; }
        else if (ch < 0x800) { buf[0] = (char)(0xC0 | (ch >> 6)); buf[1] = (char)(0x80 | (ch & 0x3F)); k = 2; }
        else if (ch < 0x10000) {
            if (ch >= 0xD800 && ch <= 0xDFFF) ch = 0xFFFD;   /* lone surrogate */
            buf[0] = (char)(0xE0 | (ch >> 12)); buf[1] = (char)(0x80 | ((ch >> 6) & 0x3F));
            buf[2] = (char)(0x80 | (ch & 0x3F)); k = 3;
        } else {
            buf[0] = (char)(0xF0 | (ch >> 18)); buf[1] = (char)(0x80 | ((ch >> 12) & 0x3F));
            buf[2] = (char)(0x80 | ((ch >> 6) & 0x3F)); buf[3] = (char)(0x80 | (ch & 0x3F)); k = 4;
        }
        if (out + k > cap) break;
        memcpy(scratch + out, buf, k);
        out += k;
    }
    *len = out;
    return scratch;
}

static int is_hidden(const char *file, size_t len) {
    for (int i = 0; i < nhidden; i++)
        if (hidden[i].len == len && memcmp(hidden[i].bytes, file, len) == 0) return 1;
    return 0;
}

static inline uintptr_t fingerprint(PyCodeObject *code) {
    return (uintptr_t)code->co_filename ^ ((uintptr_t)code->co_qualname << 7) ^
           (uintptr_t)code->co_firstlineno;
}

/* Line numbers. PyCode_Addr2Line scans the code object's line table from its start on every
   call, so resolving the new positions of one long code object one by one is quadratic: a module
   body executed during an import allocates at a new position every few lines. Instead a few
   cursors (bounds of the last line found, as CPython's tracing keeps one per frame) are kept,
   one per code object, direct-mapped by address; the next position of the same code object,
   usually a little further on, continues the scan from there.
   A cursor is only reused for the same code object with the same line table object of the same
   length: its pointers then lie inside a live table, whatever happened in between. A freed code
   object whose address, fingerprint and table address and length are all taken again by another
   is the case the position cache (callsite.c) already accepts. Under the tracking lock. */
#define LINE_CURSORS 64
typedef struct {
    PyCodeObject *code;
    uintptr_t fp;
    PyObject *table;
    Py_ssize_t table_len;
    PyCodeAddressRange bounds;
} line_cursor_t;
static line_cursor_t line_cursor[LINE_CURSORS];

static int line_of(PyCodeObject *code, int32_t lasti, uintptr_t fp) {
    if (lasti < 0) return code->co_firstlineno;
    PyObject *table = code->co_linetable;
    Py_ssize_t len = PyBytes_GET_SIZE(table);
    size_t slot = ((uintptr_t)code >> 4) % LINE_CURSORS;
    line_cursor_t *c = &line_cursor[slot];
    if (c->code != code || c->fp != fp || c->table != table || c->table_len != len) {
        /* As CPython's _PyCode_InitAddressRange (not exported): before the first range. */
        c->code = code;
        c->fp = fp;
        c->table = table;
        c->table_len = len;
        c->bounds.opaque.lo_next = (const uint8_t *)PyBytes_AS_STRING(table);
        c->bounds.opaque.limit = c->bounds.opaque.lo_next + len;
        c->bounds.opaque.computed_line = code->co_firstlineno;
        c->bounds.ar_start = -1;
        c->bounds.ar_end = 0;
        c->bounds.ar_line = -1;
    }
    /* Walks forward or back from the cursor to the range holding the offset (in bytes). */
    return _PyCode_CheckLineNumber(lasti * (int)sizeof(_Py_CODEUNIT), &c->bounds);
}

/* A (parent, position) pair seen for the first time. The position's function and line are
   computed once per position (names read, line table scanned) and cached; a position met again
   under another parent only interns the new node. */
static callsite_t resolve(callsite_t parent, PyCodeObject *code, int32_t lasti, uintptr_t fp) {
    uint32_t func, line;
    if (!_fil_callsite_position_get(code, lasti, fp, &func, &line)) {
        static char file_buf[4096], name_buf[1024];   /* under the tracking lock */
        size_t flen, nlen;
        const char *file = utf8_of(code->co_filename, file_buf, sizeof file_buf, &flen);
        if (is_hidden(file, flen)) {
            func = CALLSITE_FUNC_HIDDEN;
            line = 0;
        } else {
            const char *name = utf8_of(code->co_qualname, name_buf, sizeof name_buf, &nlen);
            int l = line_of(code, lasti, fp);
            line = (uint32_t)(l < 0 ? code->co_firstlineno : l);
            func = _fil_callsite_func(file, flen, name, nlen);
            if (func == CALLSITE_FUNC_NONE) return CALLSITE_MAX;
        }
        _fil_callsite_position_put(code, lasti, fp, func, line);
    }
    return func == CALLSITE_FUNC_HIDDEN ? parent : _fil_callsite_child_of(parent, func, line);
}

/* A native thread's allocation when no single Python thread is waiting on native work: charged
   to the stack that created the thread, under a marker frame that makes the fallback visible. */
static callsite_t native_fallback(fil_thread_t *ts) {
    if (ts->inherited == CALLSITE_NO_PYTHON) return CALLSITE_NO_PYTHON;
    if (ts->fallback_parent != ts->inherited || ts->fallback_node == CALLSITE_NO_PYTHON) {
        ts->fallback_parent = ts->inherited;
        ts->fallback_node = _fil_callsite_marker(
            ts->inherited, "[native thread: charged to the code that started it]");
    }
    return ts->fallback_node;
}

/* The node for a frame at (code, lasti) under parent: from the thread's memo, else the shared
   cache, else resolved and interned. The memo, direct-mapped and small, holds what the thread
   met lately: a loop whose top frame moves between a few allocating lines finds it there, where
   the shared table (one slot per frame position in the program) would be a cache miss. It
   checks what the shared cache checks, so it answers nothing the shared cache would not. */
static inline callsite_t child_of(fil_thread_t *ts, callsite_t parent, PyCodeObject *code,
                                  int32_t lasti) {
    uintptr_t fp = fingerprint(code);
    uint32_t slot = (uint32_t)(((uintptr_t)code >> 4) ^ ((uint32_t)lasti * 0x9E3779B1u) ^
                               (parent * 0x85EBCA77u));
    fil_node_memo_t *m = &ts->memo[(slot ^ (slot >> 16)) % FIL_NODE_MEMO];
    if (m->code == code && m->lasti == lasti && m->parent == parent && m->fp == fp) return m->node;
    callsite_t child;
    if (!_fil_callsite_cache_get(parent, code, lasti, fp, &child)) {
        child = resolve(parent, code, lasti, fp);
        _fil_callsite_cache_put(parent, code, lasti, fp, child);
    }
    *m = (fil_node_memo_t){code, fp, parent, lasti, child};
    return child;
}

/* Before child_of: a memo filled in another epoch is emptied, as what is hidden may differ. */
static inline void memo_of_this_epoch(fil_thread_t *ts) {
    if (FIL_UNLIKELY(ts->memo_epoch != stack_epoch)) {
        memset(ts->memo, 0, sizeof ts->memo);
        ts->memo_epoch = stack_epoch;
    }
}

/* Intern cache entries [from, n) (root first), the parent of entry `from` being `node`. */
static callsite_t intern_from(fil_thread_t *ts, uint32_t from, uint32_t n, callsite_t node) {
    memo_of_this_epoch(ts);
    for (uint32_t i = from; i < n; i++) {
        frame_cache_entry_t *e = &ts->cache[i];
        node = child_of(ts, node, (PyCodeObject *)e->code, e->lasti);
        e->node = node;
    }
    return node;
}

/* Cache entries [from, n) were rewritten: how far from the root their addresses still rise. */
static inline void note_refill(fil_thread_t *ts, uint32_t from, uint32_t n) {
    frame_cache_entry_t *c = ts->cache;
    uint32_t k = ts->cache_rising < from ? ts->cache_rising : from;
    if (k == 0 && n > 0) k = 1;   /* one entry rises trivially */
    while (k < n && (uintptr_t)c[k].frame > (uintptr_t)c[k - 1].frame) k++;
    ts->cache_rising = k;
}

/* A frame's link to its caller and its instruction pointer lie side by side, as `below` and
   `instr` do in a cache entry: one 16-byte load from each compares both. */
_Static_assert(offsetof(_PyInterpreterFrame, prev_instr) ==
                   offsetof(_PyInterpreterFrame, previous) + sizeof(void *),
               "previous and prev_instr adjacent");
_Static_assert(offsetof(frame_cache_entry_t, instr) ==
                   offsetof(frame_cache_entry_t, below) + sizeof(void *),
               "below and instr adjacent");
typedef uintptr_t word_pair_t __attribute__((vector_size(2 * sizeof(uintptr_t))));
static inline word_pair_t load_pair(const void *p) {
    word_pair_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Whether cached frames [0, d) are still linked as cached: each frame's link and instruction
   read, every frame known to lie inside the data-stack chunk in use. Nearly every allocation
   makes this check (a C function allocating over and over under an unchanged stack), so its
   loop only gathers differences; *changed (the outermost frame whose instruction differs from
   the cache, d: none) is looked for afterwards, and only when there is one. Each entry's
   `below` is the link its frame had when read: the frame under it in the cache, or for the
   outermost the stop frame (NULL: none) of that time. */
static inline int same_links(const frame_cache_entry_t *c, uint32_t d, const void *stop,
                             uint32_t *changed) {
    if (c[0].below != stop) return 0;   /* the cut moved */
    word_pair_t diff = {0, 0};
    for (uint32_t k = 0; k < d; k++)
        diff |= load_pair(&c[k].below) ^
                load_pair((const char *)c[k].frame + offsetof(_PyInterpreterFrame, previous));
    if (diff[0] != 0) return 0;
    uint32_t k = d;
    if (diff[1] != 0)
        for (k = 0; ((const _PyInterpreterFrame *)c[k].frame)->prev_instr == c[k].instr; k++) {}
    *changed = k;
    return 1;
}

/* The cached frames' addresses all inside [lo, lo + span), so that reading them is safe. */
static inline int all_inside(const frame_cache_entry_t *c, uint32_t d, uintptr_t lo,
                             uintptr_t span) {
    for (uint32_t k = 0; k < d; k++)
        if ((uintptr_t)c[k].frame - lo >= span) return 0;
    return 1;
}

static inline void fill_entry(frame_cache_entry_t *e, _PyInterpreterFrame *f) {
    e->mark = -1;
    e->below = f->previous;
    e->frame = f;
    e->instr = f->prev_instr;
    e->code = f->f_code;
    e->lasti = (int32_t)_PyInterpreterFrame_LASTI(f);
}

/* An unchanged stack found in a few loads, for the common case: the top frame was called from
   Python by the frame under it, not through C (is_entry false). That caller is then suspended in
   the call with its stack depth saved (stacktop), and the stack slot at that depth is dead: the
   callee's return value will be written there. When the cache is filled with such a top, a mark
   is written into that slot. Later, if the top frame is at the same address and still not an
   entry frame, its caller at the same address with the same saved depth, and the mark still in
   place, then the top frame is the one cached, so none of the frames under it has changed and
   only the top's own instruction needs comparing:
     - had the cached top returned, its return value would have replaced the mark;
     - had it left by an exception, the frame now under the top (the same, or a new one at that
       address) would be suspended in the call that pushed the current top, with the same saved
       depth: the lowest operand of that call, pushed after the cached top left, would sit in
       that very slot.
   The interpreter stores only object pointers and NULL in stack slots, and never reads one at or
   above the saved depth (the cycle GC and frame copies stop below it), so it never sees the
   mark. Only the thread's own frames are marked: a native thread charged to a waiting Python
   thread must not write into frames that may resume meanwhile. */
#define FRAME_MARK ((PyObject *)(uintptr_t)0x46494c2d4d41524bULL)   /* "FIL-MARK": odd */

/* Whether frame f is cached entry k, as are all under it, by a mark left at `depth` in its
   caller (entry k - 1; depth -1: none). The caller is read as cached, so that its slot is read
   while f->previous is still on its way. */
/* Whether the mark left in frame f at `depth` (not -1) is still in place: f suspended at that
   depth, the mark in its slot. */
static FIL_ALWAYS_INLINE int mark_in_place(const _PyInterpreterFrame *f, int32_t depth) {
    return f->stacktop == depth && f->localsplus[depth] == FRAME_MARK;
}

static FIL_ALWAYS_INLINE int mark_holds(const frame_cache_entry_t *c, uint32_t k, int32_t depth,
                                        const _PyInterpreterFrame *f, const void *stop) {
    if (depth < 0 || c[k].frame != (const void *)f) return 0;
    const _PyInterpreterFrame *caller = c[k].below;
    return f->previous == caller && !f->is_entry && mark_in_place(caller, depth) &&
           c[0].below == stop;
}

/* The top frame, by the last mark left (leave_mark). */
static FIL_ALWAYS_INLINE int marked_top(const fil_thread_t *ts, const _PyInterpreterFrame *top,
                                        const void *stop) {
    return mark_holds(ts->cache, ts->cache_depth - 1, ts->mark_depth, top, stop);
}

/* A frame further down that the stack has returned to, by the mark its caller kept. */
static inline int marked_below(const fil_thread_t *ts, uint32_t k, const _PyInterpreterFrame *f,
                               const void *stop) {
    return mark_holds(ts->cache, k, ts->cache[k - 1].mark, f, stop);
}

/* Where an instruction of the marked top frame is remembered (fil_thread_t.alt). */
static FIL_ALWAYS_INLINE fil_top_alt_t *alt_slot(fil_thread_t *ts, const void *instr) {
    return &ts->alt[((uintptr_t)instr * 0x9E3779B97F4A7C15ull) >> (64 - 4)];
}
_Static_assert(FIL_TOP_ALTS == 16, "alt_slot takes 4 bits");

/* The node of the marked top frame (marked_top holds) at instruction instr: the cached entry's,
   or one it allocated at earlier under the same mark; a loop body allocates at several
   instructions in turn. FIL_STACK_UNKNOWN if neither. */
static FIL_ALWAYS_INLINE callsite_t marked_node(fil_thread_t *ts, const void *instr) {
    const frame_cache_entry_t *e = &ts->cache[ts->cache_depth - 1];
    if (FIL_LIKELY(instr == e->instr)) return e->node;
    const fil_top_alt_t *a = alt_slot(ts, instr);
    return FIL_LIKELY(a->instr == instr) && FIL_LIKELY(a->gen == ts->mark_gen) ? a->node
                                                                              : FIL_STACK_UNKNOWN;
}

/* Frame f, cached as entry e, suspended in a call from Python (see above): the mark left in the
   slot at its saved stack depth if that depth lies in its stack, and the depth noted in e;
   returns it (-1: no mark). */
static int put_mark(frame_cache_entry_t *e, _PyInterpreterFrame *f) {
    int depth = f->stacktop;
    const PyCodeObject *code = f->f_code;
    if (depth < code->co_nlocalsplus || depth >= code->co_nlocalsplus + code->co_stacksize)
        depth = -1;
    else
        f->localsplus[depth] = FRAME_MARK;
    e->mark = depth;
    return depth;
}

/* After the cache was filled for top: mark it if it qualifies (see above). */
static FIL_NOINLINE void leave_mark(fil_thread_t *ts, _PyInterpreterFrame *top) {
    uint32_t d = ts->cache_depth;
    ts->mark_depth = -1;
    if (FIL_UNLIKELY(++ts->mark_gen == 0)) memset(ts->alt, 0, sizeof ts->alt);   /* old marks' */
    if (d >= 2) ts->cache[d - 2].mark = -1;
    if (!top || d < 2 || ts->cache_base != CALLSITE_NO_PYTHON || top->is_entry) return;
    _PyInterpreterFrame *caller = top->previous;
    if (caller != ts->cache[d - 2].frame || ts->cache[d - 1].frame != top) return;
    ts->mark_depth = put_mark(&ts->cache[d - 2], caller);
    if (ts->mark_depth < 0) return;
    /* Its own caller too, unless its mark is in place already: while the caller stays in this
       call, a new call it makes at the top's address is then told apart by reading the new top
       frame alone (take_stack's path 0b). */
    if (d < 3 || caller->is_entry || caller->previous != ts->cache[d - 3].frame) return;
    frame_cache_entry_t *g = &ts->cache[d - 3];
    _PyInterpreterFrame *gf = caller->previous;
    if (g->mark < 0 || !mark_in_place(gf, g->mark)) put_mark(g, gf);
}

/* The calling thread's thread state, or NULL. Most allocations come from the thread holding the
   GIL, whose state the runtime keeps in one global: one load and a compare of what 3.11 stores
   as thread_id with pthread_self() (kept in ts) instead of a thread-specific-data lookup. */
static inline PyThreadState *own_tstate(const fil_thread_t *ts) {
    PyThreadState *t = _PyThreadState_GET();
    if (FIL_LIKELY(t != NULL) && FIL_LIKELY(t->thread_id == ts->self)) return t;
    /* Native code that released the GIL through PyEval_SaveThread (pythreads.c). */
    if (ts->released) return ts->released;
    /* Otherwise (a GIL release the hook did not see, or a thread without Python): the
       thread-specific datum PyGILState_GetThisThreadState reads, without its two calls around it. */
    struct _gilstate_runtime_state *g = &_PyRuntime.gilstate;
    if (!g->autoInterpreterState || !g->autoTSSkey._is_initialized) return NULL;
    return pthread_getspecific(g->autoTSSkey._key);
}

/* The cached frames [changed, d) were found different (frames at the same addresses, chained
   as cached): read them again and intern them. */
static FIL_NOINLINE callsite_t refill_top(fil_thread_t *ts, _PyInterpreterFrame *top,
                                          uint32_t changed, uint32_t d) {
    frame_cache_entry_t *c = ts->cache;
    _PyInterpreterFrame *f = top;
    for (uint32_t k = d; k-- > changed; f = f->previous) fill_entry(&c[k], f);
    note_refill(ts, changed, d);
    return intern_from(ts, changed, d, changed ? c[changed - 1].node : CALLSITE_NO_PYTHON);
}

/* The marked top frame at an instruction not met under this mark yet: the entry it replaces
   becomes one of the alternatives, the mark stays. */
static FIL_NOINLINE callsite_t refill_marked_top(fil_thread_t *ts, _PyInterpreterFrame *top) {
    uint32_t d = ts->cache_depth;
    const frame_cache_entry_t *e = &ts->cache[d - 1];
    *alt_slot(ts, e->instr) = (fil_top_alt_t){e->instr, ts->mark_gen, e->node};
    return refill_top(ts, top, d - 1, d);
}

/* walk_frames when the fast check could not decide: the chain walked once. */
#define PUSHED_MAX 8   /* new frames looked through above the marked one */
static FIL_NOINLINE callsite_t walk_slow(fil_thread_t *ts, PyThreadState *tstate,
                                         _PyInterpreterFrame *top, _PyInterpreterFrame *stop) {
    frame_cache_entry_t *c = ts->cache;
    uint32_t d = ts->cache_depth;
    /* 2a. Calls made on top of the marked top frame since (frames pushed on one chunk lie higher
       up): only the new frames are read, down to the marked one, which the mark shows to be the
       frame cached, with everything under it (see marked_top); its instruction is read again. */
    if (ts->mark_depth >= 0 && (uintptr_t)top > (uintptr_t)c[d - 1].frame) {
        frame_cache_entry_t *sc = ts->scratch;
        uint32_t j = 0;
        _PyInterpreterFrame *f = top;
        for (; f && f != stop && f != c[d - 1].frame && j < PUSHED_MAX; f = f->previous)
            fill_entry(&sc[j++], f);
        if (f == c[d - 1].frame && d + j <= FIL_MAX_FRAMES && marked_top(ts, f, stop)) {
            fill_entry(&c[d - 1], f);
            for (uint32_t i = 0; i < j; i++) c[d + i] = sc[j - 1 - i];
            uint32_t n = d + j;
            note_refill(ts, d - 1, n);
            ts->cache_depth = n;
            return intern_from(ts, d - 1, n, c[d - 2].node);
        }
    }
    /* 2b. Returned to a frame cached further down (lower on the chunk), whose caller's mark
       still holds: the stack is the cache's up to that frame, whose instruction is read again. */
    if (d >= 2 && ts->cache_base == CALLSITE_NO_PYTHON &&
        (uintptr_t)top < (uintptr_t)c[d - 1].frame) {
        for (uint32_t k = d - 1; k-- > 1;) {
            if (c[k].frame != (const void *)top) continue;
            if (!marked_below(ts, k, top, stop)) break;
            fill_entry(&c[k], top);
            note_refill(ts, k, k + 1);
            ts->cache_depth = k + 1;
            return intern_from(ts, k, k + 1, c[k - 1].node);
        }
    }
    /* 2. A stack as deep as the cached one: one walk down the chain, compared as it goes. */
    if (d && ts->cache_base == CALLSITE_NO_PYTHON) {
        uint32_t i = 0, changed = d;
        _PyInterpreterFrame *f = top;
        for (; f && f != stop && i < d; f = f->previous, i++)
            if (c[d - 1 - i].instr != (const void *)f->prev_instr) changed = d - 1 - i;
        if (i == d && (!f || f == stop))
            return changed == d ? c[d - 1].node : refill_top(ts, top, changed, d);
    }

    /* 3. Any other depth: the whole stack into scratch (innermost first), then compared with the
       cache from the root. */
    frame_cache_entry_t *sc = ts->scratch;
    uint32_t n = 0;
    int truncated = 0;
    for (_PyInterpreterFrame *f = top; f && f != stop; f = f->previous) {
        if (FIL_UNLIKELY(n == FIL_MAX_FRAMES)) { truncated = 1; break; }
        fill_entry(&sc[n], f);
        n++;
    }
    if (n == 0) return tstate == own_tstate(ts) ? ts->inherited : CALLSITE_NO_PYTHON;
    callsite_t base = truncated ? _fil_callsite_truncated_root() : CALLSITE_NO_PYTHON;

    /* The cached stack (root first) agrees with this one up to first_changed. */
    uint32_t first_changed = 0;
    if (ts->cache_base == base) {
        uint32_t lim = n < d ? n : d;
        while (first_changed < lim && c[first_changed].instr == sc[n - 1 - first_changed].instr)
            first_changed++;
    }
    for (uint32_t i = first_changed; i < n; i++) c[i] = sc[n - 1 - i];
    note_refill(ts, first_changed, n);
    ts->cache_depth = n;
    ts->cache_base = base;
    return intern_from(ts, first_changed, n, first_changed ? c[first_changed - 1].node : base);
}

/* The cache was filled again for top: leave the mark, on the thread's own frames. */
static FIL_NOINLINE callsite_t after_refill(fil_thread_t *ts, _PyInterpreterFrame *top, int own,
                                            callsite_t cs) {
    if (own) leave_mark(ts, top);
    else ts->mark_depth = -1;
    return cs;
}

/* The stack of tstate's frames, interned through ts's cache. tstate is the calling thread's own,
   or a thread held in native code (pythreads.c) whose frames cannot change meanwhile.

   Only pointers are read from frames: code objects are touched only when a frame position is
   new (resolve()). A frame still being set up (creating its cells before its first
   instruction, "incomplete" to CPython) is kept: its offset maps to its `def` line, which is
   where those cells belong. A frame is compared with the cache by its instruction pointer
   alone, which names both its code object and its offset.

   The first checks are inline in the hook path. The mark (above) answers for a top frame called
   from Python, in a few loads however deep the stack: in a pandas job, nearly every allocation.
   A new top frame at the cached top's address, called by the cached caller, is read alone when
   the mark in the caller's own caller (left with the top's) shows the caller unchanged: an
   interpreter loop calling a new handler each step. Otherwise, for a stack as deep as the
   cached one, every frame is compared. In walk_slow, the marks left before (one per caller,
   each kept while its frame stays suspended in that call) answer for calls made on top of the
   marked frame and for returns to a marked one, reading only the frames above it; failing
   those, the whole chain is walked. Each way finds the outermost frame that differs from the
   cache, and only the frames above it are read again. */
static FIL_ALWAYS_INLINE callsite_t take_stack(fil_thread_t *ts, PyThreadState *tstate, int own) {
    if (FIL_UNLIKELY(!tstate->cframe)) return ts->inherited;
    _PyInterpreterFrame *top = tstate->cframe->current_frame;
    _PyInterpreterFrame *stop = tstate == cut_tstate ? cut_frame : NULL;
    frame_cache_entry_t *c = ts->cache;
    uint32_t d = ts->cache_depth;
    /* 0. The top frame marked as the one cached (leave_mark): only its instruction to look up. */
    if (own && FIL_LIKELY(marked_top(ts, top, stop))) {
        callsite_t cs = marked_node(ts, top->prev_instr);
        return FIL_LIKELY(cs != FIL_STACK_UNKNOWN) ? cs : refill_marked_top(ts, top);
    }
    /* 0b. A new call at the cached top's address from the cached caller (an interpreter loop
       calling one handler after another), the caller shown to be the frame cached, with all
       under it, by the mark its own caller keeps: only the new top frame is read, and the
       caller's instruction compared. */
    if (own && d >= 3 && c[d - 1].frame == (const void *)top && top->previous == c[d - 2].frame &&
        marked_below(ts, d - 2, top->previous, stop)) {
        const _PyInterpreterFrame *caller = top->previous;
        uint32_t from = caller->prev_instr == c[d - 2].instr ? d - 1 : d - 2;
        return after_refill(ts, top, own, refill_top(ts, top, from, d));
    }
    /* 1. Frames at the cached addresses, all inside the data-stack chunk in use (so mapped
       whatever happened since): check the chain link by link from the cache, loads that do not
       wait on one another, instead of chasing `previous` pointers one miss at a time. (A
       generator's frame lives in the generator object, outside the chunk.) When the cached
       addresses rise from root to top, as frames pushed on one chunk do, the two ends lying in
       the chunk put all of them there. */
    if (FIL_LIKELY(d != 0) && FIL_LIKELY(ts->cache_base == CALLSITE_NO_PYTHON) &&
        FIL_LIKELY(c[d - 1].frame == (const void *)top)) {
        uintptr_t lo = (uintptr_t)tstate->datastack_chunk;
        uintptr_t span = (uintptr_t)tstate->datastack_top - lo;
        int inside = FIL_LIKELY(ts->cache_rising >= d)
                         ? (uintptr_t)c[0].frame - lo < span && (uintptr_t)top - lo < span
                         : all_inside(c, d, lo, span);
        uint32_t changed;
        if (FIL_LIKELY(inside) && FIL_LIKELY(same_links(c, d, stop, &changed)))
            return FIL_LIKELY(changed == d)
                       ? c[d - 1].node
                       : after_refill(ts, top, own, refill_top(ts, top, changed, d));
    }
    return after_refill(ts, top, own, walk_slow(ts, tstate, top, stop));
}

#ifdef FIL_CHECK_STACKS
/* The self-checking build (make CHECK_STACKS=1, for the tests): every stack the cache answers for
   on the thread's own frames is taken again by a plain walk from the root, and a difference
   stops the program with both answers. */
static FIL_NOINLINE void check_stack(fil_thread_t *ts, PyThreadState *tstate, callsite_t cs) {
    if (!tstate->cframe) return;
    _PyInterpreterFrame *stop = tstate == cut_tstate ? cut_frame : NULL;
    static PyCodeObject *code[FIL_MAX_FRAMES];   /* under the tracking lock */
    static int32_t lasti[FIL_MAX_FRAMES];
    uint32_t n = 0;
    _PyInterpreterFrame *f = tstate->cframe->current_frame;
    for (; f && f != stop && n < FIL_MAX_FRAMES; f = f->previous, n++) {
        code[n] = f->f_code;
        lasti[n] = (int32_t)_PyInterpreterFrame_LASTI(f);
    }
    if (n == 0) return;
    callsite_t node = f && f != stop ? _fil_callsite_truncated_root() : CALLSITE_NO_PYTHON;
    memo_of_this_epoch(ts);
    while (n-- > 0) node = child_of(ts, node, code[n], lasti[n]);
    if (node != cs) {
        char msg[96];
        int len = snprintf(msg, sizeof msg, "=fil-profile= stack check: cached %u, walked %u\n",
                           (unsigned)cs, (unsigned)node);
        prim_write_stderr(msg, (size_t)len);
        abort();
    }
}
#endif

static FIL_ALWAYS_INLINE callsite_t walk_frames(fil_thread_t *ts, PyThreadState *tstate, int own) {
    callsite_t cs = take_stack(ts, tstate, own);
#ifdef FIL_CHECK_STACKS
    if (own) check_stack(ts, tstate, cs);
#endif
    return cs;
}

/* A thread that only exists in C: charged to the Python thread waiting on it, if just one. */
static FIL_NOINLINE callsite_t native_stack(fil_thread_t *ts) {
    PyThreadState *waiter = _fil_pythreads_sole_waiter();
    if (waiter) {
        callsite_t cs = walk_frames(ts, waiter, 0);
        if (cs != CALLSITE_NO_PYTHON) return cs;
    }
    return native_fallback(ts);
}

/* A thread that released the GIL through the hooked PyEval_SaveThread runs no Python until it
   takes the GIL back, so its frames stay as they are: its stack is taken at its first allocation
   and kept (fil_thread_t.released_cs) until PyEval_RestoreThread, or until tracking starts again
   or the cut moves (stack_epoch). Python run meanwhile through a GIL taken behind the hooks' back
   (PyGILState_Ensure inside libpython) is the thread's own again and is walked as such; its
   frames are gone by the time it releases the GIL again. Should it have kept the GIL and gone
   on running Python after all (a release the hook saw, a take-back it did not), its top frame or
   instruction has moved and the stack is taken again. A native loop under one ctypes call then
   pays a few compares per allocation instead of a check of every frame. */
static inline const void *top_of(PyThreadState *tstate) {
    return FIL_LIKELY(tstate->cframe != NULL) ? tstate->cframe->current_frame : NULL;
}

static inline int released_stack_kept(const fil_thread_t *ts) {
    const _PyInterpreterFrame *top = top_of(ts->released);
    return FIL_LIKELY(ts->released_epoch == stack_epoch) && FIL_LIKELY(top == ts->released_top) &&
           FIL_LIKELY(top == NULL || (const void *)top->prev_instr == ts->released_instr);
}

static FIL_NOINLINE callsite_t released_stack(fil_thread_t *ts) {
    callsite_t cs = walk_frames(ts, ts->released, 1);
    const _PyInterpreterFrame *top = top_of(ts->released);
    ts->released_top = top;
    ts->released_instr = top ? top->prev_instr : NULL;
    ts->released_cs = cs;
    ts->released_epoch = stack_epoch;
    return cs;
}

static FIL_NOINLINE callsite_t unseen_release_stack(fil_thread_t *ts) {
    PyThreadState *tstate = own_tstate(ts);
    return FIL_LIKELY(tstate != NULL) ? walk_frames(ts, tstate, 1) : native_stack(ts);
}

static FIL_NOINLINE callsite_t python_stack(fil_thread_t *ts) {
    PyThreadState *t = _PyThreadState_GET();
    if (FIL_LIKELY(t != NULL) && FIL_LIKELY(t->thread_id == ts->self)) return walk_frames(ts, t, 1);
    if (ts->released)
        return FIL_LIKELY(released_stack_kept(ts)) ? ts->released_cs : released_stack(ts);
    return unseen_release_stack(ts);
}

/* The tracker's stack providers (fil_internal.h). The quick one is inline in the hooks' quick
   paths: the thread's own marked top frame at an instruction known under the mark (take_stack's
   path 0), or a thread in native code whose kept stack still holds. Tracking starts only after
   _fil_pystack_install. */
extern inline FIL_ALWAYS_INLINE callsite_t _fil_stack_quick(fil_thread_t *ts) {
#ifndef FIL_CHECK_STACKS   /* the self-checking build checks every answer: python_stack gives all */
    PyThreadState *t = _PyThreadState_GET();
    if (FIL_LIKELY(t != NULL) && FIL_LIKELY(t->thread_id == ts->self)) {
        if (FIL_UNLIKELY(t->cframe == NULL)) return FIL_STACK_UNKNOWN;
        _PyInterpreterFrame *top = t->cframe->current_frame;
        if (FIL_LIKELY(marked_top(ts, top, t == cut_tstate ? cut_frame : NULL)))
            return marked_node(ts, top->prev_instr);
    } else if (ts->released && FIL_LIKELY(released_stack_kept(ts))) {
        return ts->released_cs;
    }
#else
    (void)ts;
#endif
    return FIL_STACK_UNKNOWN;
}

callsite_t _fil_stack_of(fil_thread_t *ts) { return python_stack(ts); }

int _fil_pystack_set_hidden(const char *const *files, int count) {
    _fil_lock();
    _fil_callsite_forget_positions();   /* cached positions know what was hidden before */
    next_epoch();                       /* and so do the threads' memos */
    nhidden = 0;
    for (int i = 0; i < count && nhidden < FIL_MAX_HIDDEN; i++) {
        size_t len = strlen(files[i]);
        char *copy = _fil_arena_alloc(len + 1);
        if (!copy) break;
        memcpy(copy, files[i], len);
        hidden[nhidden].bytes = copy;
        hidden[nhidden].len = len;
        nhidden++;
    }
    _fil_unlock();
    return 0;
}

void _fil_pystack_install(int cut_at_caller) {
    PyThreadState *tstate = PyThreadState_Get();
    _fil_lock();
    if (cut_at_caller) {
        cut_tstate = tstate;
        cut_frame = tstate->cframe->current_frame;   /* the Python frame calling into us */
    } else {
        cut_tstate = NULL;
        cut_frame = NULL;
    }
    /* Frames from before may have cached positions below the new cut: start afresh. */
    next_epoch();
    fil_thread_t *ts = _fil_thread_get();
    if (ts) {
        ts->cache_depth = ts->cache_rising = 0;
        ts->mark_depth = -1;
    }
    _fil_unlock();
    _fil_pythreads_reset();
}

void _fil_pystack_forget_cut(void) {
    _fil_lock();
    cut_tstate = NULL;
    cut_frame = NULL;
    next_epoch();
    _fil_unlock();
}
