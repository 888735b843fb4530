/* range_table.c: live anonymous memory mappings, [start, start+len) -> callsite.
 *
 * mmap'd regions can be unmapped in part (munmap of the middle of a mapping leaves two), so they
 * are kept as disjoint ranges sorted by start address in one array. Programs hold few mappings
 * (glibc's own large-malloc mmaps are internal to libc and never reach the hooks), so a binary
 * search plus memmove is cheap; every change is O(log n + pieces moved).
 */
#include "fil_internal.h"
#include "prim.h"

#include <string.h>

static int reserve(range_table_t *t, size_t need) {
    if (need <= t->capacity) return 0;
    size_t cap = t->capacity ? t->capacity * 2 : 256;
    while (cap < need) cap *= 2;
    range_t *r = prim_pages_resize(t->ranges, t->capacity * sizeof(range_t), cap * sizeof(range_t));
    if (!r) return -1;
    t->ranges = r;
    t->capacity = cap;
    return 0;
}

/* Index of the first range whose end is above addr. */
static size_t first_ending_after(const range_table_t *t, uintptr_t addr) {
    size_t lo = 0, hi = t->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->ranges[mid].start + t->ranges[mid].len <= addr) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

int _fil_range_remove(range_table_t *t, uintptr_t start, uint64_t len,
                      range_removed_fn on_removed, void *ctx) {
    if (len == 0) return 0;
    uintptr_t end = start + len;
    size_t i = first_ending_after(t, start);
    while (i < t->count && t->ranges[i].start < end) {
        range_t r = t->ranges[i];
        uintptr_t r_end = r.start + r.len;
        uintptr_t cut_lo = r.start > start ? r.start : start;
        uintptr_t cut_hi = r_end < end ? r_end : end;
        on_removed(ctx, r.cs, cut_hi - cut_lo);
        int keep_left = r.start < cut_lo, keep_right = cut_hi < r_end;
        if (keep_left && keep_right) {
            if (reserve(t, t->count + 1) < 0) {
                /* Cannot split: drop the right part from the books too, so totals stay true. */
                on_removed(ctx, r.cs, r_end - cut_hi);
                t->ranges[i].len = cut_lo - r.start;
                return -1;
            }
            memmove(&t->ranges[i + 2], &t->ranges[i + 1], (t->count - i - 1) * sizeof(range_t));
            t->ranges[i].len = cut_lo - r.start;
            t->ranges[i + 1] = (range_t){cut_hi, r_end - cut_hi, r.cs};
            t->count++;
            return 0;
        } else if (keep_left) {
            t->ranges[i].len = cut_lo - r.start;
            i++;
        } else if (keep_right) {
            t->ranges[i].start = cut_hi;
            t->ranges[i].len = r_end - cut_hi;
            i++;
        } else {
            memmove(&t->ranges[i], &t->ranges[i + 1], (t->count - i - 1) * sizeof(range_t));
            t->count--;
        }
    }
    return 0;
}

int _fil_range_add(range_table_t *t, uintptr_t start, uint64_t len, callsite_t cs,
                   range_removed_fn on_removed, void *ctx) {
    if (len == 0) return 0;
    _fil_range_remove(t, start, len, on_removed, ctx);
    if (reserve(t, t->count + 1) < 0) return -1;
    size_t i = first_ending_after(t, start);
    memmove(&t->ranges[i + 1], &t->ranges[i], (t->count - i) * sizeof(range_t));
    t->ranges[i] = (range_t){start, len, cs};
    t->count++;
    return 0;
}

void _fil_range_clear(range_table_t *t) { t->count = 0; }
