/* arena.c: the profiler's own small permanent allocations (strings, per-thread states).
 *
 * Memory comes from page-backed chunks (prim_pages_alloc) and is never returned: what lives here
 * (interned strings, thread states recycled through a free list) lives as long as the process.
 * Never goes through malloc, so it is safe inside the hooks.
 */
#include "fil_internal.h"
#include "prim.h"

#define ARENA_CHUNK (1u << 20)

static char *chunk_pos, *chunk_end;

void *_fil_arena_alloc(size_t size) {
    size = (size + 15) & ~(size_t)15;
    if (chunk_pos == NULL || (size_t)(chunk_end - chunk_pos) < size) {
        size_t want = size > ARENA_CHUNK ? size : ARENA_CHUNK;
        char *c = prim_pages_alloc(want);
        if (!c) return NULL;
        chunk_pos = c;
        chunk_end = c + ((want + 4095) & ~(size_t)4095);
    }
    void *p = chunk_pos;
    chunk_pos += size;
    return p;
}
