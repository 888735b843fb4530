/* alloc_table.c: the live heap allocations that no side table holds, address -> (size, callsite).
 *
 * Small blocks live in side tables (small_map.c); this table takes the rest: blocks over 1023
 * bytes, callsites beyond what an entry holds, unaligned blocks, and all blocks when side tables
 * cannot be mapped. Open addressing with linear probing keeps a lookup to one or two cache
 * lines; backward-shift deletion keeps probe sequences short without tombstones. A slot is 16
 * bytes (address, size<<24 | callsite) and the table grows at 75% load, which keeps its memory
 * at 16-43 bytes per entry (about 27 at 10 million). Memory is page-backed, never malloc.
 *
 * The hash is Fibonacci hashing of the address without its 4 always-zero low bits. (Keeping
 * neighbouring addresses in neighbouring slots, for cache locality, was measured worse: pymalloc
 * packs live objects densely, and dense keys make long runs under linear probing.)
 */
#include "fil_internal.h"
#include "prim.h"

#include <string.h>

#define MIN_CAPACITY 4096

static inline size_t slot_of(const alloc_table_t *t, uintptr_t key) {
    return (size_t)((((uint64_t)key >> 4) * 0x9E3779B97F4A7C15ull) >> (64 - t->log2_capacity));
}

static int grow(alloc_table_t *t) {
    size_t new_cap = t->capacity ? t->capacity * 2 : MIN_CAPACITY;
    alloc_slot_t *slots =
        prim_pages_alloc_with(new_cap * sizeof(alloc_slot_t), PRIM_PAGES_REHASH);
    if (!slots) return -1;
    alloc_table_t n = {slots, new_cap, 0, __builtin_ctzll(new_cap)};
    for (size_t i = 0; i < t->capacity; i++) {
        uintptr_t k = t->slots[i].key;
        if (!k) continue;
        size_t j = slot_of(&n, k);
        while (slots[j].key) j = (j + 1) & (new_cap - 1);
        slots[j] = t->slots[i];
        n.count++;
    }
    prim_pages_free(t->slots, t->capacity * sizeof(alloc_slot_t));
    *t = n;
    return 0;
}

int _fil_alloc_table_insert(alloc_table_t *t, uintptr_t ptr, uint64_t size, callsite_t cs,
                            uint64_t *old_size, callsite_t *old_cs) {
    if (FIL_UNLIKELY((t->count + 1) * 4 > t->capacity * 3) && grow(t) < 0) return -1;
    uint64_t val = (size << 24) | cs;
    size_t mask = t->capacity - 1;
    for (size_t i = slot_of(t, ptr);; i = (i + 1) & mask) {
        uintptr_t k = t->slots[i].key;
        if (k == ptr) {
            *old_size = t->slots[i].val >> 24;
            *old_cs = (callsite_t)(t->slots[i].val & CALLSITE_MAX);
            t->slots[i].val = val;
            return 1;
        }
        if (k == 0) {
            t->slots[i].key = ptr;
            t->slots[i].val = val;
            t->count++;
            return 0;
        }
    }
}

int _fil_alloc_table_remove(alloc_table_t *t, uintptr_t ptr, uint64_t *size, callsite_t *cs) {
    if (t->count == 0) return 0;
    size_t mask = t->capacity - 1;
    size_t i = slot_of(t, ptr);
    for (;; i = (i + 1) & mask) {
        uintptr_t k = t->slots[i].key;
        if (k == 0) return 0;
        if (k == ptr) break;
    }
    *size = t->slots[i].val >> 24;
    *cs = (callsite_t)(t->slots[i].val & CALLSITE_MAX);
    /* Backward-shift: pull later entries of the probe run into the hole when their home slot
       does not lie cyclically within (hole, their position]. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
        uintptr_t k = t->slots[j].key;
        if (k == 0) break;
        size_t home = slot_of(t, k);
        int stays = (hole <= j) ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            t->slots[hole] = t->slots[j];
            hole = j;
        }
    }
    t->slots[hole].key = 0;
    t->slots[hole].val = 0;
    t->count--;
    return 1;
}

void _fil_alloc_table_clear(alloc_table_t *t) {
    if (t->slots) memset(t->slots, 0, t->capacity * sizeof(alloc_slot_t));
    t->count = 0;
}

size_t _fil_alloc_table_bytes(const alloc_table_t *t) { return t->capacity * sizeof(alloc_slot_t); }
