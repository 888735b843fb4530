/* callsite.c: interned call stacks.
 *
 * Every tracked allocation stores one 24-bit callsite id instead of a stack. A callsite is a node
 * of a trie: node = (parent node, function, line), the root (id 0) being "[No Python stack]".
 * Identical stacks are therefore the same id, a stack costs one node per new frame position, and
 * a report walks parent links to print a stack.
 *
 * Three intern tables, all open addressing over page-backed memory:
 *   strings:  bytes -> string id (file names and function names, stored once in the arena)
 *   funcs:    (file id, name id) -> function id
 *   nodes:    (parent, function, line) -> node id
 * and two caches keyed by the interpreter's own (code object, instruction offset, fingerprint):
 * one gives the function and line of a position, so computing a line number and reading names
 * happens only the first time a position is seen; the other gives the node for (parent,
 * position), so a stack seen before costs no interning. The fingerprint (file/name object
 * addresses, first line) guards against a freed code object whose address is reused by another.
 *
 * Protected by the tracking lock.
 */
#include "fil_internal.h"
#include "prim.h"

#include <string.h>

typedef struct { const char *bytes; uint32_t len; } str_t;
typedef struct { uint32_t file, name; } func_t;
typedef struct { callsite_t parent; uint32_t func; uint32_t line; } node_t;
typedef struct { uint32_t hash; uint32_t id_plus1; } idslot_t;
typedef struct {
    idslot_t *slots;
    uint32_t capacity, count;
} idset_t;
/* A slot of the interpreter-key caches: (key, code object, instruction offset, fingerprint)
   -> two values. An empty slot has code == NULL. */
typedef struct {
    const void *code;
    uintptr_t fp;
    uint32_t key;
    int32_t lasti;
    uint32_t a, b;
} cacheslot_t;
typedef struct {
    cacheslot_t *slots;
    uint32_t capacity, count;
} keycache_t;

static str_t *strs;     static uint32_t nstrs, cap_strs;
static func_t *funcs;   static uint32_t nfuncs, cap_funcs;
static node_t *nodes;   static uint32_t nnodes, cap_nodes;
static idset_t str_set, func_set, node_set;
static keycache_t node_cache;      /* (parent, code, offset) -> node */
static keycache_t position_cache;  /* (0, code, offset) -> (function, line) */
static callsite_t truncated_root;

void _fil_callsite_forget_positions(void);

static uint32_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;   /* FNV-1a */
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)p[i]; h *= 0x100000001b3ull; }
    return (uint32_t)(h ^ (h >> 32));
}

static uint32_t mix3(uint32_t a, uint32_t b, uint32_t c) {
    uint64_t h = ((uint64_t)a * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)b * 0xC2B2AE3D27D4EB4Full) ^
                 ((uint64_t)c * 0x165667B19E3779F9ull);
    h ^= h >> 29;
    return (uint32_t)(h ^ (h >> 32));
}

static int grow_array(void **arr, uint32_t *cap, size_t elem) {
    uint32_t ncap = *cap ? *cap * 2 : 1024;
    void *p = prim_pages_resize(*arr, (size_t)*cap * elem, (size_t)ncap * elem);
    if (!p) return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

static int idset_grow(idset_t *s) {
    uint32_t ncap = s->capacity ? s->capacity * 2 : 1024;
    idslot_t *slots =
        prim_pages_alloc_with((size_t)ncap * sizeof(idslot_t), PRIM_PAGES_REHASH);
    if (!slots) return -1;
    for (uint32_t i = 0; i < s->capacity; i++) {
        if (!s->slots[i].id_plus1) continue;
        uint32_t j = s->slots[i].hash & (ncap - 1);
        while (slots[j].id_plus1) j = (j + 1) & (ncap - 1);
        slots[j] = s->slots[i];
    }
    prim_pages_free(s->slots, (size_t)s->capacity * sizeof(idslot_t));
    s->slots = slots;
    s->capacity = ncap;
    return 0;
}

/* Find the slot for hash where eq(id) holds, or the empty slot where it would go. */
#define IDSET_FIND(set, h, EQ, out_slot) do { \
    uint32_t _m = (set).capacity - 1; \
    for (uint32_t _i = (h) & _m;; _i = (_i + 1) & _m) { \
        idslot_t *_s = &(set).slots[_i]; \
        if (!_s->id_plus1) { out_slot = _s; break; } \
        if (_s->hash == (h)) { uint32_t id = _s->id_plus1 - 1; if (EQ) { out_slot = _s; break; } } \
    } \
} while (0)

static int idset_ready(idset_t *s) {
    if ((s->count + 1) * 4 > s->capacity * 3) return idset_grow(s);
    return 0;
}

static int64_t intern_str(const char *p, size_t n) {
    if (n > 65535) n = 65535;
    uint32_t h = hash_bytes(p, n);
    if (idset_ready(&str_set) < 0) return -1;
    idslot_t *slot;
    IDSET_FIND(str_set, h, (strs[id].len == n && memcmp(strs[id].bytes, p, n) == 0), slot);
    if (slot->id_plus1) return slot->id_plus1 - 1;
    if (nstrs == cap_strs && grow_array((void **)&strs, &cap_strs, sizeof(str_t)) < 0) return -1;
    char *copy = _fil_arena_alloc(n + 1);
    if (!copy) return -1;
    memcpy(copy, p, n);
    strs[nstrs] = (str_t){copy, (uint32_t)n};
    slot->hash = h;
    slot->id_plus1 = ++nstrs;
    str_set.count++;
    return nstrs - 1;
}

static int64_t intern_func(uint32_t file, uint32_t name) {
    uint32_t h = mix3(file, name, 0x51);
    if (idset_ready(&func_set) < 0) return -1;
    idslot_t *slot;
    IDSET_FIND(func_set, h, (funcs[id].file == file && funcs[id].name == name), slot);
    if (slot->id_plus1) return slot->id_plus1 - 1;
    if (nfuncs == cap_funcs && grow_array((void **)&funcs, &cap_funcs, sizeof(func_t)) < 0) return -1;
    funcs[nfuncs] = (func_t){file, name};
    slot->hash = h;
    slot->id_plus1 = ++nfuncs;
    func_set.count++;
    return nfuncs - 1;
}

static callsite_t intern_node(callsite_t parent, uint32_t func, uint32_t line) {
    uint32_t h = mix3(parent, func, line);
    if (idset_ready(&node_set) < 0) return CALLSITE_MAX;
    idslot_t *slot;
    IDSET_FIND(node_set, h,
               (nodes[id].parent == parent && nodes[id].func == func && nodes[id].line == line), slot);
    if (slot->id_plus1) return slot->id_plus1 - 1;
    if (nnodes >= CALLSITE_MAX) {
        _fil_warn_once("too many distinct call stacks; the rest are reported as one");
        return CALLSITE_MAX;
    }
    if (nnodes == cap_nodes && grow_array((void **)&nodes, &cap_nodes, sizeof(node_t)) < 0)
        return CALLSITE_MAX;
    nodes[nnodes] = (node_t){parent, func, line};
    slot->hash = h;
    slot->id_plus1 = ++nnodes;
    node_set.count++;
    return nnodes - 1;
}

int _fil_callsite_init(void) {
    if (nnodes) return 0;
    /* id 0: the root, "[No Python stack]"; its parent is itself. */
    int64_t empty = intern_str("", 0);
    int64_t root_name = intern_str("[No Python stack]", 17);
    int64_t trunc_name = intern_str("[stack truncated]", 17);
    if (empty < 0 || root_name < 0 || trunc_name < 0) return -1;
    int64_t root_func = intern_func((uint32_t)empty, (uint32_t)root_name);
    int64_t trunc_func = intern_func((uint32_t)empty, (uint32_t)trunc_name);
    if (root_func < 0 || trunc_func < 0) return -1;
    if (intern_node(0, (uint32_t)root_func, 0) != 0) return -1;
    truncated_root = intern_node(0, (uint32_t)trunc_func, 0);
    return truncated_root == CALLSITE_MAX ? -1 : 0;
}

void _fil_callsite_reset_all(void) {
    nstrs = nfuncs = nnodes = 0;
    if (str_set.slots) memset(str_set.slots, 0, str_set.capacity * sizeof(idslot_t));
    if (func_set.slots) memset(func_set.slots, 0, func_set.capacity * sizeof(idslot_t));
    if (node_set.slots) memset(node_set.slots, 0, node_set.capacity * sizeof(idslot_t));
    _fil_callsite_forget_positions();
    str_set.count = func_set.count = node_set.count = 0;
}

uint32_t _fil_callsite_func(const char *file, size_t file_len, const char *name, size_t name_len) {
    if (!nnodes && _fil_callsite_init() < 0) return CALLSITE_FUNC_NONE;
    int64_t f = intern_str(file, file_len);
    int64_t n = intern_str(name, name_len);
    if (f < 0 || n < 0) return CALLSITE_FUNC_NONE;
    int64_t fn = intern_func((uint32_t)f, (uint32_t)n);
    return fn < 0 ? CALLSITE_FUNC_NONE : (uint32_t)fn;
}

callsite_t _fil_callsite_child_of(callsite_t parent, uint32_t func, uint32_t line) {
    if (func == CALLSITE_FUNC_NONE) return CALLSITE_MAX;
    return intern_node(parent, func, line);
}

callsite_t _fil_callsite_child(callsite_t parent, const char *file, size_t file_len,
                               const char *name, size_t name_len, uint32_t line) {
    return _fil_callsite_child_of(parent, _fil_callsite_func(file, file_len, name, name_len), line);
}

callsite_t _fil_callsite_marker(callsite_t parent, const char *name) {
    return _fil_callsite_child(parent, "", 0, name, strlen(name), 0);
}

static uint32_t cache_hash(uint32_t key, const void *code, int32_t lasti) {
    return mix3(key, (uint32_t)((uintptr_t)code >> 4) ^ (uint32_t)((uintptr_t)code >> 36),
                (uint32_t)lasti);
}

static cacheslot_t *keycache_find(const keycache_t *c, uint32_t key, const void *code,
                                  int32_t lasti, uintptr_t fp) {
    if (!c->count) return NULL;
    uint32_t m = c->capacity - 1;
    for (uint32_t i = cache_hash(key, code, lasti) & m;; i = (i + 1) & m) {
        cacheslot_t *s = &c->slots[i];
        if (!s->code) return NULL;
        if (s->code == code && s->key == key && s->lasti == lasti && s->fp == fp) return s;
    }
}

static void keycache_put(keycache_t *c, uint32_t key, const void *code, int32_t lasti,
                         uintptr_t fp, uint32_t a, uint32_t b) {
    /* At most half full: every new frame position is looked up (and missed) in both caches
       before it is put, and a miss probes up to an empty slot, about 2.5 slots at this load
       against 8.5 at three quarters; an import-heavy start meets thousands of new positions. */
    if ((c->count + 1) * 2 > c->capacity) {
        uint32_t ncap = c->capacity ? c->capacity * 2 : 4096;
        cacheslot_t *n =
            prim_pages_alloc_with((size_t)ncap * sizeof(cacheslot_t), PRIM_PAGES_REHASH);
        if (!n) return;   /* only a cache: lookups just stay slower */
        for (uint32_t i = 0; i < c->capacity; i++) {
            cacheslot_t *o = &c->slots[i];
            if (!o->code) continue;
            uint32_t j = cache_hash(o->key, o->code, o->lasti) & (ncap - 1);
            while (n[j].code) j = (j + 1) & (ncap - 1);
            n[j] = *o;
        }
        prim_pages_free(c->slots, (size_t)c->capacity * sizeof(cacheslot_t));
        c->slots = n;
        c->capacity = ncap;
    }
    uint32_t m = c->capacity - 1;
    uint32_t i = cache_hash(key, code, lasti) & m;
    while (c->slots[i].code) {
        cacheslot_t *o = &c->slots[i];
        if (o->code == code && o->key == key && o->lasti == lasti) break;   /* a stale fp */
        i = (i + 1) & m;
    }
    if (!c->slots[i].code) c->count++;
    c->slots[i] = (cacheslot_t){code, fp, key, lasti, a, b};
}

void _fil_callsite_forget_positions(void) {
    if (node_cache.slots) memset(node_cache.slots, 0, node_cache.capacity * sizeof(cacheslot_t));
    if (position_cache.slots)
        memset(position_cache.slots, 0, position_cache.capacity * sizeof(cacheslot_t));
    node_cache.count = position_cache.count = 0;
}

int _fil_callsite_cache_get(callsite_t parent, const void *code, int32_t lasti, uintptr_t fp,
                            callsite_t *node) {
    cacheslot_t *s = keycache_find(&node_cache, parent, code, lasti, fp);
    if (!s) return 0;
    *node = s->a;
    return 1;
}

void _fil_callsite_cache_put(callsite_t parent, const void *code, int32_t lasti, uintptr_t fp,
                             callsite_t node) {
    keycache_put(&node_cache, parent, code, lasti, fp, node, 0);
}

int _fil_callsite_position_get(const void *code, int32_t lasti, uintptr_t fp, uint32_t *func,
                               uint32_t *line) {
    cacheslot_t *s = keycache_find(&position_cache, 0, code, lasti, fp);
    if (!s) return 0;
    *func = s->a;
    *line = s->b;
    return 1;
}

void _fil_callsite_position_put(const void *code, int32_t lasti, uintptr_t fp, uint32_t func,
                                uint32_t line) {
    keycache_put(&position_cache, 0, code, lasti, fp, func, line);
}

callsite_t _fil_callsite_parent(callsite_t cs) { return cs < nnodes ? nodes[cs].parent : 0; }
uint32_t _fil_callsite_line(callsite_t cs) { return cs < nnodes ? nodes[cs].line : 0; }
uint32_t _fil_callsite_count(void) { return nnodes; }
callsite_t _fil_callsite_truncated_root(void) { return truncated_root; }

const char *_fil_callsite_file(callsite_t cs, size_t *len) {
    if (cs >= nnodes) { *len = 0; return ""; }
    str_t s = strs[funcs[nodes[cs].func].file];
    *len = s.len;
    return s.bytes;
}

const char *_fil_callsite_name(callsite_t cs, size_t *len) {
    if (cs >= nnodes) {
        static const char overflow[] = "[too many call stacks]";
        *len = sizeof(overflow) - 1;
        return overflow;
    }
    str_t s = strs[funcs[nodes[cs].func].name];
    *len = s.len;
    return s.bytes;
}
