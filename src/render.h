/* render: the report renderer. Collapsed stacks (.prof) in; two SVG flamegraphs and an
 * index.html out.
 *
 * It runs at exit and on the out-of-memory path inside the profiled process, whose malloc is
 * intercepted and may be failing: so it never calls malloc/free or stdio streams. Working
 * memory comes from mmap, or from a caller-provided scratch block; output goes through
 * outbuf.h onto file descriptors.
 *
 * Files: render_tree.c (parse, call trees, merging, layout), render_svg.c (flamegraph SVG
 * with its inline script), render_html.c (index.html and fil_render_report itself).
 */
#ifndef FIL_RENDER_H
#define FIL_RENDER_H

#include <stddef.h>
#include <stdint.h>

typedef enum { FIL_REPORT_PEAK, FIL_REPORT_OOM } fil_report_kind_t;

/* A call site: the last frame of a stack, with the bytes of every stack ending in it. `order`
 * is the index (from 0), among the .prof's stack lines, of the first one ending there. text
 * points into the .prof and is valid only during the call. */
typedef void (*fil_render_site_fn)(void *ctx, const char *text, size_t len, uint64_t bytes,
                                   uint64_t order);

typedef struct {
    const char *prof_path;     /* input collapsed stacks */
    const char *out_dir;       /* existing directory to write into */
    const char *file_prefix;   /* "peak-memory" or "out-of-memory": writes PREFIX.svg and PREFIX-reversed.svg */
    fil_report_kind_t kind;
    const char *command_line;  /* shown in index.html; may be NULL */
    const char *extra_note;    /* optional plain text paragraph for index.html (e.g. OOM figures); may be NULL */
    void *scratch;             /* optional preallocated working memory (OOM path); NULL = mmap what is needed */
    size_t scratch_size;
    /* Optional: the call sites for a terminal summary, so that it need not read the .prof again.
     * on_site is called, in no particular order, for the `sites` biggest call sites whose text is
     * valid UTF-8 without U+FFFD (ranked by bytes, then order), and for every call site whose text
     * is not: decoded with replacement characters, those may read the same as another, so the
     * caller decodes, merges equal texts (bytes summed, the smaller order kept) and ranks them by
     * (-bytes, order). The result is what reading the .prof line by line would give. */
    fil_render_site_fn on_site;
    void *site_ctx;
    unsigned sites;
} fil_render_opts_t;

/* Render opts->prof_path into out_dir: PREFIX.svg (callers at the top), PREFIX-reversed.svg
 * (allocating lines at the top) and index.html (overwritten if present). The .prof is only
 * read. Lines whose byte count does not parse are skipped and their number is shown in
 * index.html; every other byte is drawn somewhere.
 *
 * Memory: with scratch == NULL, working memory is mmap'ed and unmapped before returning.
 * Otherwise everything is carved from scratch[0..scratch_size) (the .prof and source files
 * are still mapped read-only, which costs no anonymous memory); fil_render_scratch_hint()
 * says how much to reserve.
 *
 * Returns 0, or -1 with errno set: ENOMEM if scratch is too small, or the errno of a failed
 * open/read/write. Never calls malloc/free or stdio FILE functions. */
int fil_render_report(const fil_render_opts_t *opts);

/* A generous scratch size for rendering a .prof of prof_bytes bytes. */
size_t fil_render_scratch_hint(size_t prof_bytes);

/* ---------------------------------------------------------------------------------------
 * Internal: shared by render_tree.c, render_svg.c, render_html.c and their unit tests only.
 * --------------------------------------------------------------------------------------- */
#ifdef FIL_RENDER_INTERNAL

#include "outbuf.h"

#define RENDER_NONE UINT32_MAX
#define RENDER_WIDTH 1200          /* SVG user units */
#define RENDER_MAX_BOXES 3000      /* cap on drawn frame boxes per flamegraph */

/* Bump allocator over scratch (fixed) or over mmap'ed chunks (growing). */
typedef struct render_chunk_s render_chunk_t;
typedef struct {
    char *base;                 /* current chunk's usable memory */
    size_t cap, used;
    render_chunk_t *chunk;      /* current mmap'ed chunk, NULL in scratch mode */
    int grows;                  /* 1: mmap more chunks on demand; 0: fixed scratch */
} render_arena_t;

typedef struct {
    render_chunk_t *chunk;
    size_t used;
} render_mark_t;

void render_arena_init(render_arena_t *a, void *scratch, size_t size);
/* 16-byte aligned, uninitialised; NULL with errno = ENOMEM when out of memory. */
void *render_arena_alloc(render_arena_t *a, size_t size);
render_mark_t render_arena_mark(const render_arena_t *a);
/* Drop everything allocated since mark (chunks mapped since are unmapped). */
void render_arena_reset(render_arena_t *a, render_mark_t mark);
void render_arena_release(render_arena_t *a);

/* One distinct frame text, parsed once. `file`/`func` point into the mapped .prof. A frame
 * that is not `FILE:LINE (FUNCTION)` has line == 0, file_len == 0 and func = the whole text. */
typedef struct {
    const char *text;
    size_t len;
    const char *file, *func;
    size_t file_len, func_len;
    uint32_t line;
    uint32_t hash;
    uint64_t leaf_bytes;        /* bytes of stacks whose last frame is this one */
    const char *src;            /* display form of the source line, NULL if none/unresolved */
    uint32_t src_len;
    uint8_t src_done;           /* source lookup attempted */
} render_frame_t;

typedef struct {
    uint64_t bytes;
    size_t first;               /* index into render_data_t.ids */
    uint32_t depth;
} render_stack_t;

#define RENDER_SOURCE_CACHE 8
typedef struct {
    const char *path;           /* points into the .prof */
    size_t path_len;
    const char *map;            /* NULL if the file could not be read */
    size_t size;
    int used;
} render_source_file_t;

/* The parsed .prof: distinct frames and every stack as a run of frame ids. */
typedef struct {
    render_arena_t arena;
    const char *prof;           /* the .prof, mapped read-only (or a caller buffer in tests) */
    size_t prof_len;
    int prof_mapped;
    render_frame_t *frames;
    uint32_t nframes, frames_cap;
    uint32_t *frame_slots;      /* open addressing: frame id + 1, 0 = empty */
    uint32_t frame_slots_cap;
    uint32_t *ids;              /* every stack's frames, one after the other */
    size_t nids, ids_cap;
    render_stack_t *stacks;
    size_t nstacks;
    uint64_t total;             /* sum of all stack bytes */
    size_t skipped_lines;       /* lines whose count did not parse (or would overflow) */
    render_source_file_t source_cache[RENDER_SOURCE_CACHE];
    unsigned source_clock;
} render_data_t;

/* Parse buf[0..len) (kept referenced, not copied). Returns 0 or -1 (ENOMEM). */
int render_data_parse(render_data_t *d, const char *buf, size_t len, void *scratch, size_t scratch_size);
/* Map path read-only and parse it. Returns 0 or -1 with errno. */
int render_data_load(render_data_t *d, const char *path, void *scratch, size_t scratch_size);
/* Unmap the .prof, any cached source files and all working memory. */
void render_data_release(render_data_t *d);
/* Display form of the frame's source line (tabs expanded to visible "→   ", trailing space
 * dropped, long lines cut with "…"); sets *len. NULL when there is none. Bytes are raw:
 * escape them. Cached per frame; unreadable files are not retried within a cache window. */
const char *render_frame_source(render_data_t *d, uint32_t frame, uint32_t *len);

/* Forget cached source lines: call after resetting the arena below where they were copied. */
void render_data_forget_sources(render_data_t *d);

/* A call-tree node. Children are a sibling list sorted by bytes, biggest first. */
typedef struct {
    uint64_t total;             /* bytes of this subtree */
    uint64_t x;                 /* layout: byte offset of the left edge from the root's */
    uint32_t frame;             /* RENDER_NONE for the root */
    uint32_t parent, first_child, next_sibling;
} render_node_t;

/* One drawn box. A remainder box (merged < threshold children of `node`) has merged > 0. */
typedef struct {
    uint32_t node;
    uint32_t depth;             /* root = 0 */
    uint32_t merged;            /* number of merged children, 0 for a real frame box */
    uint64_t x, w;              /* in bytes */
} render_box_t;

typedef struct {
    render_node_t *nodes;
    uint32_t nnodes, nodes_cap;
    int reversed;
    render_box_t *boxes;
    uint32_t nboxes;
    uint32_t rows;              /* max box depth + 1 */
    uint64_t threshold;         /* children under this many bytes were merged */
} render_tree_t;

/* Build the call tree of d (reversed: leaf first) in d's arena, children sorted. Nodes of fewer
 * than min_total bytes are left without children: 0 builds the whole tree, and
 * render_tree_first_threshold(d->total) all that render_tree_layout can draw. 0 or -1. */
int render_tree_build(render_data_t *d, render_tree_t *t, int reversed, uint64_t min_total);
/* The layout's first merge threshold for a tree of `total` bytes: ~0.1% (at least 1). */
uint64_t render_tree_first_threshold(uint64_t total);
/* Choose the merge threshold (render_tree_first_threshold, raised until at most max_boxes boxes)
 * and fill t->boxes in breadth-first order. Looks under no node smaller than the first
 * threshold. 0 or -1 (ENOMEM). */
int render_tree_layout(render_data_t *d, render_tree_t *t, uint32_t max_boxes);

/* "1.5 MiB", "12 B": binary units, one decimal above bytes. render_fmt_human writes it
 * NUL-terminated into dst (at least 32 bytes) and returns its length. */
void render_human_bytes(outbuf_t *ob, uint64_t bytes);
size_t render_fmt_human(char *dst, uint64_t bytes);
/* Percent of total with `decimals` decimals; 0 when total is 0. */
void render_percent(outbuf_t *ob, uint64_t part, uint64_t total, int decimals);

/* Height in SVG user units of a flamegraph with `rows` rows of boxes (width RENDER_WIDTH). */
uint32_t render_svg_height(uint32_t rows);
/* Write one flamegraph SVG onto fd. title is plain text (escaped here). 0 or -1 with errno. */
int render_svg_write(render_data_t *d, render_tree_t *t, int fd, const char *title, char *buf, size_t bufsize);

typedef struct {
    const fil_render_opts_t *opts;
    const char *title;
    uint32_t rows_forward, rows_reversed;
} render_html_info_t;

/* Write index.html onto fd. 0 or -1 with errno. */
int render_html_write(render_data_t *d, const render_html_info_t *info, int fd, char *buf, size_t bufsize);

#endif /* FIL_RENDER_INTERNAL */
#endif
