/* small_map.c: side tables for small blocks, beside pymalloc's arenas and over malloc's heap.
 *
 * Most allocations of a Python program are pymalloc blocks of at most 512 bytes, carved from
 * pools inside arenas that pymalloc asks for through the arena allocator (pyalloc.c). In the
 * allocation table every one of them would cost a random access into a big hash table on
 * allocation and again on free: a cache miss and, once the table outgrows the TLB, a page walk.
 * Instead each arena is mapped with a side table right behind it, one 32-bit entry per 16-byte
 * granule of the arena, so a block's entry is at (block - arena) / 16. Blocks allocated one
 * after the other have neighbouring entries, and the entry of a block being freed is as near
 * in memory as the block is.
 *
 *   mapping, aligned to REGION:  [ arena: size bytes | side table: size / 4 bytes ]
 *
 * An entry holds (callsite + 1) << SIZE_BITS | requested size; 0 is "no tracked block here".
 * A block too big for the entry or a callsite beyond SMALL_MAX_CALLSITE stays in the hash table.
 * Cost: 4 bytes per 16 of arena, and pages of the side table are only touched under pools in
 * use: 8 bytes for a 32-byte object, against 16-43 in the hash table.
 *
 * Finding a pointer's arena: arenas start at REGION-aligned addresses and are at most REGION
 * long, so the region of a pointer names at most one arena. A two-level directory indexed by
 * the region number holds each arena's side table; the side table starts where the arena ends,
 * which also bounds the arena.
 *
 * Heap regions: small blocks from malloc (glibc's heap, C extensions, pymalloc's requests over
 * 512 bytes) get the same treatment where they are dense or busy. Small blocks tracked in a
 * region without a side table are counted, with the 16 KiB stretches they fall in; once they
 * are many for the side-table pages they would touch (fil_internal.h), the next one adopts the
 * region: a side table for all of it (REGION / 4 bytes, only touched where blocks are) is
 * mapped elsewhere and entered in the directory. Sparse regions, where a side table would cost
 * more than the allocation table, stay with the latter. Any allocator works, as
 * long as live blocks start 16 bytes apart, which 16-byte alignment gives. The side table lies
 * outside its region, so the bound check above passes for every pointer of the region.
 * Heap side tables stay until exit (cleared on reset): a region that malloc gave back and got
 * again finds its table ready. A region whose heap side table is still in the directory when
 * pymalloc asks for an arena there gets a plain arena, recorded in that same table.
 *
 * Blocks of a region can also be in the allocation table (too big for an entry, or tracked
 * before the region was adopted). The directory counts them per region, so a free that finds
 * an empty entry searches the allocation table only when its region has some.
 *
 * Protected by the tracking lock.
 */
#include "fil_internal.h"
#include "prim.h"

#include <stddef.h>
#include <sys/mman.h>

#define REGION_BITS SMALL_REGION_BITS
#define REGION ((uintptr_t)1 << REGION_BITS)
#define ADDR_BITS SMALL_ADDR_BITS
#define LEAF_BITS SMALL_LEAF_BITS
#define TOP_BITS SMALL_TOP_BITS
#define GRANULE_SHIFT 4

typedef fil_small_leaf_t leaf_t;
/* _fil_small_clear gives back the counts' pages: they start on a page boundary of the leaf
   (itself page-aligned, from prim_pages_alloc). */
_Static_assert(offsetof(leaf_t, spilled) % 4096 == 0, "per-region counts page-aligned");

leaf_t *_fil_small_top[1u << TOP_BITS];
fil_small_rc_t _fil_small_rc[1u << SMALL_RC_BITS];

/* The region at base now has this side table (NULL: none): its cache slot says so. */
static void cache_side(uintptr_t base, uint32_t *side) {
    uintptr_t region = base >> REGION_BITS;
    fil_small_rc_t *c = &_fil_small_rc[region & ((1u << SMALL_RC_BITS) - 1)];
    c->region = region;
    c->side = side;
}

FIL_NOINLINE uint32_t *_fil_small_side_miss(uintptr_t p) {
    uint32_t *side = NULL;
    if (!(p >> ADDR_BITS)) {
        leaf_t *leaf = *fil_small_leaf_slot(p);
        if (leaf) side = leaf->side[fil_small_region_index(p)];
    }
    cache_side(p & ~(REGION - 1), side);
    return side;
}
static int adopt_failed;                 /* a heap side table could not be mapped: stop trying */

/* The leaf covering p, made on first use; NULL when no memory is left for it. */
static leaf_t *leaf_for(uintptr_t p) {
    leaf_t **slot = fil_small_leaf_slot(p);
    if (!*slot) *slot = prim_pages_alloc(sizeof(leaf_t));
    return *slot;
}
static inline size_t side_size(size_t arena_size) { return arena_size >> (GRANULE_SHIFT - 2); }
static inline size_t round_page(size_t n) { return (n + 4095) & ~(size_t)4095; }

/* The length of the side table in the directory slot of the region at base: an arena's lies
   right behind it (at most REGION on), a heap region's elsewhere and covers the whole region. */
static inline size_t side_len(uintptr_t base, const uint32_t *side) {
    uintptr_t off = (uintptr_t)side - base;
    return round_page(side_size(off <= REGION ? off : REGION));
}

void *_fil_small_arena_map(size_t size) {
    if (size == 0 || size > REGION || (size & 4095)) return NULL;
    size_t total = size + round_page(side_size(size));
    /* Over-map by a region, keep the aligned part. */
    size_t span = total + REGION;
    char *raw = prim_sys_mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                              -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uintptr_t a = ((uintptr_t)raw + REGION - 1) & ~(REGION - 1);
    if (a > (uintptr_t)raw) prim_sys_munmap(raw, a - (uintptr_t)raw);
    uintptr_t end = (uintptr_t)raw + span;
    if (end > a + total) prim_sys_munmap((void *)(a + total), end - (a + total));
    if (a >> ADDR_BITS) { prim_sys_munmap((void *)a, total); return NULL; }

    _fil_lock();
    leaf_t *leaf = leaf_for(a);
    uint32_t **side = leaf ? &leaf->side[fil_small_region_index(a)] : NULL;
    int ok = side && !*side;   /* not a heap region's */
    if (ok) {
        *side = (uint32_t *)(a + size);
        cache_side(a, *side);
    }
    _fil_unlock();
    if (!ok) { prim_sys_munmap((void *)a, total); return NULL; }
    return (void *)a;
}

int _fil_small_arena_unmap(void *arena, size_t size) {
    uintptr_t a = (uintptr_t)arena;
    if ((a & (REGION - 1)) || (a >> ADDR_BITS)) return 0;
    _fil_tl_guard++;   /* pymalloc's free may get here with the guard down (pyalloc.c's w_free) */
    _fil_lock();
    leaf_t *leaf = *fil_small_leaf_slot(a);
    uint32_t **slot = leaf ? &leaf->side[fil_small_region_index(a)] : NULL;
    int ours = slot && *slot == (uint32_t *)(a + size);
    if (ours) {
        *slot = NULL;
        cache_side(a, NULL);
    }
    _fil_unlock();
    _fil_tl_guard--;
    if (ours) prim_sys_munmap(arena, size + round_page(side_size(size)));
    return ours;
}

/* Caller holds the lock. */
uint32_t *_fil_small_adopt(uintptr_t p) {
    if (adopt_failed || (p & 15) || (p >> ADDR_BITS)) return NULL;
    leaf_t *leaf = leaf_for(p);
    if (!leaf) {
        adopt_failed = 1;
        return NULL;
    }
    size_t i = fil_small_region_index(p);
    uint32_t **side = &leaf->side[i];
    if (*side) return NULL;   /* an arena's: p lies past its end */
    uintptr_t base = p & ~(REGION - 1);
    uint32_t seen = leaf->seen[i];
    if (seen < UINT32_MAX) leaf->seen[i] = ++seen;
    uint64_t stretches = leaf->stretches[i] |= (uint64_t)1 << ((p - base) >> 14);
    if (seen < SMALL_ADOPT_MIN ||
        seen / SMALL_ADOPT_PER_PAGE < (uint32_t)__builtin_popcountll(stretches))
        return NULL;
    size_t len = side_size(REGION);
    void *t = prim_sys_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (t == MAP_FAILED) {
        adopt_failed = 1;
        return NULL;
    }
    if ((uintptr_t)t - base < REGION) {   /* inside the region it would describe: unusable */
        prim_sys_munmap(t, len);
        return NULL;
    }
    *side = t;
    cache_side(base, t);
    leaf->seen[i] = 0;
    leaf->stretches[i] = 0;
    return *side + ((p - base) >> GRANULE_SHIFT);
}

int _fil_small_spill_unknown;

/* Caller holds the lock. */
void _fil_small_spill(uintptr_t p, int delta) {
    if (p >> ADDR_BITS) return;   /* never has a side entry: frees search the table anyway */
    leaf_t *leaf = leaf_for(p);
    if (!leaf) {
        _fil_small_spill_unknown = 1;
        return;
    }
    leaf->spilled[fil_small_region_index(p)] += (uint32_t)delta;
}

/* Caller holds the lock, and clears the allocation table too. Fresh zero pages replace every
   side table. */
void _fil_small_clear(void) {
    for (size_t t = 0; t < (1u << TOP_BITS); t++) {
        leaf_t *leaf = _fil_small_top[t];
        if (!leaf) continue;
        for (size_t i = 0; i < (1u << LEAF_BITS); i++) {
            uint32_t *side = leaf->side[i];
            if (!side) continue;
            uintptr_t base = (uintptr_t)((t << LEAF_BITS) | i) << REGION_BITS;
            prim_pages_zero(side, side_len(base, side));
        }
        /* The per-region counts, from `spilled` to the end: given back rather than written
           over, as most of their pages were never touched. */
        prim_pages_zero(leaf->spilled, sizeof *leaf - offsetof(leaf_t, spilled));
    }
    adopt_failed = 0;
    _fil_small_spill_unknown = 0;
}

/* Caller holds the lock. Side tables are mapped whole but only touched under blocks in use, and
   directory leaves only where regions are: their resident bytes are what they cost. */
size_t _fil_small_resident(size_t *leaves_mapped, size_t *sides_mapped) {
    size_t resident = 0, leaves = 0, sides = 0;
    for (size_t t = 0; t < (1u << TOP_BITS); t++) {
        leaf_t *leaf = _fil_small_top[t];
        if (!leaf) continue;
        leaves += sizeof *leaf;
        resident += prim_resident_bytes(leaf, sizeof *leaf);
        for (size_t i = 0; i < (1u << LEAF_BITS); i++) {
            uint32_t *side = leaf->side[i];
            if (!side) continue;
            uintptr_t base = (uintptr_t)((t << LEAF_BITS) | i) << REGION_BITS;
            size_t len = side_len(base, side);
            sides += len;
            resident += prim_resident_bytes(side, len);
        }
    }
    *leaves_mapped = leaves;
    *sides_mapped = sides;
    return resident;
}

size_t _fil_small_bytes(void) {
    size_t leaves, sides;
    _fil_lock();
    _fil_small_resident(&leaves, &sides);
    _fil_unlock();
    return sides;
}
