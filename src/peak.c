/* peak.c: live bytes per callsite, and the exact set of bytes alive at the high-water mark.
 *
 * The algorithm. The peak is the maximum over time of live_total, the sum of live tracked
 * allocation sizes. The report needs, per callsite, the bytes alive at that moment (snap[]).
 * Copying live[] to snap[] whenever live_total exceeds the peak would cost O(callsites) per new
 * peak, and a program that grows, frees a little and grows again reaches thousands of peaks.
 *
 * Instead:
 *   - live[cs] is updated on every allocation and free, and cs is put on a dirty list the first
 *     time it changes after snap[] was last brought up to date (one array slot, and the top bit
 *     of live[cs] as its mark: the word the event updates anyway).
 *   - When an allocation takes live_total above peak_total, the peak moves and `at_peak` says the
 *     current state IS the peak state; nothing is copied.
 *   - Only when memory is about to go down from a peak state (the first free after at_peak, or a
 *     report being written) is snap[] settled: snap[cs] = live[cs] for each dirty cs, and the
 *     dirty list is emptied.
 * Callsites not on the dirty list have live == snap, so after settling snap[] is exactly the
 * state at the peak. Each settle costs the number of callsites changed since the last one, and
 * every change puts at most one entry on the list, so the total cost over a run is bounded by
 * the number of allocation events: O(1) amortized per event, whatever the number of peaks.
 * Memory: 20 bytes per callsite (live, snap, dirty slot).
 * The add and sub of every event are inline, in fil_internal.h; the rest is here.
 *
 * Protected by the tracking lock.
 */
#include "fil_internal.h"
#include "prim.h"

#include <string.h>

/* Resize one per-callsite array from `from` to `to` entries of `elem` bytes. */
static int resize(void **arr, size_t elem, size_t from, size_t to) {
    if (to == 0) {
        prim_pages_free(*arr, from * elem);
        *arr = NULL;
        return 0;
    }
    void *q = prim_pages_resize(*arr, from * elem, to * elem);
    if (!q) return -1;
    /* A callsite's counters are first read, then written (_fil_peak_add): fault the new ones in
       writable now, in one call, rather than each page twice (see PRIM_PAGES_POPULATE). */
    if (to > from) prim_pages_populate((char *)q + from * elem, (to - from) * elem);
    *arr = q;
    return 0;
}

int _fil_peak_reserve(peak_t *p, uint32_t n) {
    if (n <= p->capacity) return 0;
    uint32_t cap = p->capacity ? p->capacity : 4096;
    while (cap < n) cap *= 2;
    void *arrays[3] = {p->live, p->snap, p->dirty};
    static const size_t elem[3] = {8, 8, 4};
    int r = 0;
    for (int i = 0; i < 3 && r == 0; i++) {
        if (resize(&arrays[i], elem[i], p->capacity, cap) < 0) {
            /* All three keep one capacity: give back what already grew. Shrinking a mapping
               does not fail. */
            for (int j = 0; j < i; j++) resize(&arrays[j], elem[j], cap, p->capacity);
            r = -1;
        }
    }
    /* Growth of anonymous memory is zero-filled. */
    p->live = arrays[0];
    p->snap = arrays[1];
    p->dirty = arrays[2];
    if (r == 0) p->capacity = cap;
    return r;
}

void _fil_peak_settle(peak_t *p) {
    if (!p->at_peak) return;
    for (uint32_t i = 0; i < p->dirty_count; i++) {
        callsite_t cs = p->dirty[i];
        p->live[cs] &= PEAK_BYTES;
        p->snap[cs] = p->live[cs];
    }
    p->dirty_count = 0;
    p->at_peak = false;
}

void _fil_peak_clear(peak_t *p) {
    if (p->capacity) {
        memset(p->live, 0, (size_t)p->capacity * 8);
        memset(p->snap, 0, (size_t)p->capacity * 8);
    }
    p->dirty_count = 0;
    p->live_total = p->peak_total = 0;
    p->at_peak = true;   /* the empty state is the peak so far */
}
