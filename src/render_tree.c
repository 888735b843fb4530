/* render_tree: from collapsed stacks to laid-out flamegraph boxes.
 *
 * Memory. Everything lives in one bump arena (render_arena_t): over the caller's scratch block
 * on the out-of-memory path, over mmap'ed 4 MiB+ chunks otherwise. Growable arrays (frames,
 * nodes, hash slots) double by copying; the abandoned copy is not reused, so the peak is at
 * most twice the final size. The forward and the reversed tree are built one after the other
 * and the arena is reset to a mark in between.
 *
 * Parsing (one pass over the mapped .prof, after a memchr pass that counts lines and ';' to
 * size the id arrays exactly): each line's count is split at the last space; the frames are
 * split on ';' and interned in an open-addressing table keyed by the frame's bytes (FNV-1a),
 * so every stack becomes a run of 32-bit frame ids. A frame is parsed into file/line/function
 * once, when first interned.
 *
 * Tree: a trie over frame ids, so equal stacks and equal prefixes merge; each node carries the
 * bytes of its subtree. It is built top-down: the stacks through a node are grouped by their
 * next frame into its children (a counting sort of stack indices), and only nodes that the
 * layout may draw are split further. The reversed tree is the same over each stack read
 * backwards. Node ids grow from the root, so a parent's id is always smaller than its
 * children's. Children are then sorted by bytes, biggest first (ties by frame text, so output
 * is deterministic) with a linked-list merge sort.
 *
 * Layout: the width unit is the byte. A box's children start at its left edge and follow in
 * sorted order; whatever its children do not cover is the node's own (leaf) bytes. Children
 * below the threshold form a suffix of the sorted list and are drawn as one "N small frames"
 * box whose width is their sum, so at every node: sum(drawn children) + remainder + own bytes
 * == node bytes, and the root's width is the file's total. The threshold starts at 0.1% of the
 * total (about 1 px at 1200 px) and doubles until at most max_boxes boxes are drawn; boxes are
 * produced breadth-first from the root, visiting only drawn nodes' children.
 *
 * Cost: O(B) hashing for a .prof of B bytes, O(F) expected table work for F frames in all
 * stacks, for each tree O(S) per split node of S stacks and O(N log C) for sorting N nodes with
 * at most C children each, and O(D * log(1/t)) for layout, where D is the number of children
 * of drawn nodes (bounded by the box cap times the fan-out). Memory: 4 bytes per frame
 * occurrence plus ~48 bytes per distinct frame, ~20 per stack and ~40 per tree node.
 */
#define FIL_RENDER_INTERNAL 1
#include "render.h"

#include "escape.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- arena ---- */

struct render_chunk_s {
    render_chunk_t *prev;
    size_t size;                /* whole mapping, header included */
};

#define CHUNK_MIN ((size_t)4 << 20)
#define ALIGN_UP(v, a) (((v) + ((a) - 1)) & ~((size_t)(a) - 1))

void render_arena_init(render_arena_t *a, void *scratch, size_t size) {
    memset(a, 0, sizeof *a);
    if (scratch) {
        /* Align the start so every allocation is 16-byte aligned. */
        size_t pad = ALIGN_UP((uintptr_t)scratch, 16) - (uintptr_t)scratch;
        a->base = (char *)scratch + (pad < size ? pad : size);
        a->cap = pad < size ? size - pad : 0;
    } else {
        a->grows = 1;
    }
}

void *render_arena_alloc(render_arena_t *a, size_t size) {
    size = ALIGN_UP(size ? size : 1, 16);
    if (a->cap - a->used >= size) {
        void *p = a->base + a->used;
        a->used += size;
        return p;
    }
    if (!a->grows || size > SIZE_MAX / 2) { errno = ENOMEM; return NULL; }
    size_t hdr = ALIGN_UP(sizeof(render_chunk_t), 16);
    size_t want = size + hdr < CHUNK_MIN ? CHUNK_MIN : ALIGN_UP(size + hdr, 4096);
    void *m = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) { errno = ENOMEM; return NULL; }
    render_chunk_t *c = m;
    c->prev = a->chunk;
    c->size = want;
    a->chunk = c;
    a->base = (char *)m + hdr;
    a->cap = want - hdr;
    a->used = size;
    return a->base;
}

render_mark_t render_arena_mark(const render_arena_t *a) {
    render_mark_t m = {a->chunk, a->used};
    return m;
}

void render_arena_reset(render_arena_t *a, render_mark_t mark) {
    if (a->grows) {
        while (a->chunk && a->chunk != mark.chunk) {
            render_chunk_t *prev = a->chunk->prev;
            munmap(a->chunk, a->chunk->size);
            a->chunk = prev;
        }
        size_t hdr = ALIGN_UP(sizeof(render_chunk_t), 16);
        a->base = a->chunk ? (char *)a->chunk + hdr : NULL;
        a->cap = a->chunk ? a->chunk->size - hdr : 0;
    }
    a->used = mark.used;
}

void render_arena_release(render_arena_t *a) {
    render_mark_t none = {NULL, 0};
    render_arena_reset(a, none);
}

/* Grow an array by doubling into fresh arena memory. */
static void *grow_array(render_arena_t *a, void *old, size_t elem, uint32_t used, uint32_t *cap) {
    uint32_t ncap = *cap ? *cap * 2 : 64;
    if (ncap <= *cap) { errno = ENOMEM; return NULL; }   /* 32-bit overflow */
    void *p = render_arena_alloc(a, (size_t)ncap * elem);
    if (!p) return NULL;
    if (old) memcpy(p, old, (size_t)used * elem);
    *cap = ncap;
    return p;
}

/* ---- frames ---- */

/* Word-at-a-time multiplicative hash: frame text is hashed once per occurrence, which is most
 * of the parsing cost, so bytes are taken eight at a time. */
static uint32_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;
    h *= 0xff51afd7ed558ccdULL;
    return (uint32_t)(h ^ (h >> 32));
}

/* Split `FILE:LINE (FUNCTION)`; anything else is kept whole as the function. */
static void parse_frame(render_frame_t *f) {
    const char *t = f->text;
    size_t n = f->len;
    f->file = NULL; f->file_len = 0; f->line = 0;
    f->func = t; f->func_len = n;
    if (n < 3 || t[n - 1] != ')') return;
    size_t p = n - 1;
    while (p > 0 && !(t[p - 1] == ' ' && t[p] == '(')) p--;
    if (p == 0) return;
    size_t open = p - 1;                      /* index of the space before '(' */
    size_t colon = open;
    while (colon > 0 && t[colon - 1] != ':') colon--;
    if (colon == 0) return;
    colon--;                                  /* index of ':' */
    if (colon == 0 || colon + 1 >= open) return;
    uint64_t line = 0;
    for (size_t i = colon + 1; i < open; i++) {
        if (t[i] < '0' || t[i] > '9') return;
        line = line * 10 + (uint64_t)(t[i] - '0');
        if (line > UINT32_MAX) return;
    }
    if (line == 0) return;
    f->file = t; f->file_len = colon; f->line = (uint32_t)line;
    f->func = t + open + 2; f->func_len = n - 1 - (open + 2);
}

/* Smallest power of two >= 2 * n (and >= 1024): the tables stay at most half full. */
static uint32_t table_size_for(size_t n) {
    uint32_t cap = 1024;
    while (cap < (1u << 31) && (size_t)cap < 2 * n) cap *= 2;
    return cap;
}

static int frames_rehash(render_data_t *d, uint32_t cap) {
    uint32_t *slots = render_arena_alloc(&d->arena, (size_t)cap * sizeof *slots);
    if (!slots) return -1;
    memset(slots, 0, (size_t)cap * sizeof *slots);
    for (uint32_t id = 0; id < d->nframes; id++) {
        uint32_t i = d->frames[id].hash & (cap - 1);
        while (slots[i]) i = (i + 1) & (cap - 1);
        slots[i] = id + 1;
    }
    d->frame_slots = slots;
    d->frame_slots_cap = cap;
    return 0;
}

static uint32_t frame_intern(render_data_t *d, const char *s, size_t n) {
    uint32_t h = hash_bytes(s, n);
    uint32_t mask = d->frame_slots_cap - 1, i = h & mask;
    for (uint32_t slot; (slot = d->frame_slots[i]) != 0; i = (i + 1) & mask) {
        render_frame_t *f = &d->frames[slot - 1];
        if (f->hash == h && f->len == n && memcmp(f->text, s, n) == 0) return slot - 1;
    }
    if (d->nframes == d->frames_cap) {
        render_frame_t *nf = grow_array(&d->arena, d->frames, sizeof *nf, d->nframes, &d->frames_cap);
        if (!nf) return RENDER_NONE;
        d->frames = nf;
    }
    uint32_t id = d->nframes++;
    render_frame_t *f = &d->frames[id];
    memset(f, 0, sizeof *f);
    f->text = s; f->len = n; f->hash = h;
    parse_frame(f);
    d->frame_slots[i] = id + 1;
    if ((uint64_t)d->nframes * 2 > d->frame_slots_cap && frames_rehash(d, d->frame_slots_cap * 2) < 0)
        return RENDER_NONE;
    return id;
}

/* ---- parsing ---- */

/* Count in s[0..n): decimal digits only, no overflow. */
static int parse_count(const char *s, size_t n, uint64_t *out) {
    if (n == 0 || n > 20) return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        uint64_t digit = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - digit) / 10) return -1;
        v = v * 10 + digit;
    }
    *out = v;
    return 0;
}

/* Length of the common prefix of a[0..n) and b[0..n), eight bytes at a time. */
static size_t common_prefix(const char *a, const char *b, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y) break;
    }
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* Append a frame id to d->ids, doubling it when full. 0 or -1 (ENOMEM). */
static int push_id(render_data_t *d, uint32_t id) {
    if (d->nids == d->ids_cap) {
        size_t ncap = d->ids_cap ? d->ids_cap * 2 : 4096;
        uint32_t *n = render_arena_alloc(&d->arena, ncap * sizeof *n);
        if (!n) return -1;
        if (d->nids) memcpy(n, d->ids, d->nids * sizeof *n);
        d->ids = n;
        d->ids_cap = ncap;
    }
    d->ids[d->nids++] = id;
    return 0;
}

/* The stack text of the line parsed last (for parse_line), empty before the first. */
typedef struct {
    const char *text;
    size_t len;
} prev_stack_t;

static int parse_line(render_data_t *d, const char *s, size_t n, prev_stack_t *prev) {
    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    if (n == 0) return 0;                                /* blank line: nothing to skip */
    size_t sp = n;
    while (sp > 0 && s[sp - 1] != ' ') sp--;
    uint64_t bytes;
    if (sp == 0 || parse_count(s + sp, n - sp, &bytes) < 0 || d->total + bytes < d->total) {
        d->skipped_lines++;
        return 0;
    }
    size_t stack_len = sp - 1;
    render_stack_t *st = &d->stacks[d->nstacks++];
    st->bytes = bytes;
    st->first = d->nids;
    st->depth = 0;
    const char *p = s, *end = s + stack_len;
    /* The profiler writes stacks in the order their call sites were first seen, so a line
     * usually starts with many of the previous line's frames. Those that are the same bytes up
     * to and including their ';' in both lines are the same frames: their ids are copied instead
     * of hashing and looking up each frame's text again. */
    if (d->nstacks > 1) {
        const render_stack_t *last = st - 1;
        size_t lim = prev->len < stack_len ? prev->len : stack_len;
        size_t same = common_prefix(prev->text, s, lim), at = 0;
        for (uint32_t k = 0; k + 1 < last->depth; k++) {
            uint32_t id = d->ids[last->first + k];
            size_t semi = at + d->frames[id].len;          /* the ';' after frame k */
            if (semi >= same) break;
            if (push_id(d, id) < 0) return -1;
            st->depth++;
            at = semi + 1;
        }
        p = s + at;
    }
    prev->text = s;
    prev->len = stack_len;
    for (;;) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *stop = semi ? semi : end;
        uint32_t id = frame_intern(d, p, (size_t)(stop - p));
        if (id == RENDER_NONE || push_id(d, id) < 0) return -1;
        st->depth++;
        if (!semi) break;
        p = semi + 1;
    }
    d->frames[d->ids[d->nids - 1]].leaf_bytes += bytes;
    d->total += bytes;
    return 0;
}

int render_data_parse(render_data_t *d, const char *buf, size_t len, void *scratch, size_t scratch_size) {
    memset(d, 0, sizeof *d);
    render_arena_init(&d->arena, scratch, scratch_size);
    d->prof = buf;
    d->prof_len = len;
    /* The stack array's exact size: every line adds at most one. Frame ids and distinct frames
     * grow as they come: a .prof holds far fewer distinct frames than frame occurrences, and
     * counting the occurrences (every ';') cost a pass as long as the parse's own. */
    size_t lines = 1;
    for (const char *p = buf, *end = buf + len; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++) lines++;
    d->stacks = render_arena_alloc(&d->arena, lines * sizeof *d->stacks);
    if (!d->stacks || frames_rehash(d, table_size_for(lines)) < 0) return -1;
    const char *p = buf, *end = buf + len;
    prev_stack_t prev = {buf, 0};
    while (p < end) {
        const char *q = memchr(p, '\n', (size_t)(end - p));
        const char *stop = q ? q : end;
        if (parse_line(d, p, (size_t)(stop - p), &prev) < 0) return -1;
        p = q ? q + 1 : end;
    }
    return 0;
}

int render_data_load(render_data_t *d, const char *path, void *scratch, size_t scratch_size) {
    memset(d, 0, sizeof *d);
    int fd;
    do fd = open(path, O_RDONLY | O_CLOEXEC); while (fd < 0 && errno == EINTR);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) < 0) { int e = errno; close(fd); errno = e; return -1; }
    const char *map = "";
    size_t len = (size_t)st.st_size;
    if (len > 0) {
        void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) { int e = errno; close(fd); errno = e; return -1; }
        map = m;
    }
    close(fd);
    int rc = render_data_parse(d, map, len, scratch, scratch_size);
    d->prof_mapped = len > 0;
    return rc;
}

void render_data_release(render_data_t *d) {
    for (int i = 0; i < RENDER_SOURCE_CACHE; i++) {
        render_source_file_t *c = &d->source_cache[i];
        if (c->map && c->size) munmap((void *)c->map, c->size);
        c->map = NULL;
    }
    if (d->prof_mapped) munmap((void *)d->prof, d->prof_len);
    d->prof_mapped = 0;
    render_arena_release(&d->arena);
}

/* ---- source lines ---- */

#define SOURCE_MAX_CHARS 160
#define TAB_STOP 4

/* Map path (not NUL-terminated in the .prof) if it is a readable regular file. O_NONBLOCK
 * keeps a FIFO named in a frame from hanging the report. */
static const char *map_source(const char *path, size_t n, size_t *size) {
    char z[4096];
    *size = 0;
    if (n == 0 || n >= sizeof z || memchr(path, '\0', n)) return NULL;
    memcpy(z, path, n);
    z[n] = '\0';
    int fd;
    do fd = open(z, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC); while (fd < 0 && errno == EINTR);
    if (fd < 0) return NULL;
    struct stat st;
    void *m = MAP_FAILED;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
        m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return NULL;
    *size = (size_t)st.st_size;
    return m;
}

static render_source_file_t *source_file(render_data_t *d, const char *path, size_t n) {
    for (int i = 0; i < RENDER_SOURCE_CACHE; i++) {
        render_source_file_t *c = &d->source_cache[i];
        if (c->used && c->path_len == n && memcmp(c->path, path, n) == 0) return c;
    }
    render_source_file_t *c = &d->source_cache[d->source_clock++ % RENDER_SOURCE_CACHE];
    if (c->map && c->size) munmap((void *)c->map, c->size);
    c->path = path;
    c->path_len = n;
    c->used = 1;
    c->map = map_source(path, n, &c->size);
    return c;
}

/* Copy the display form of line s[0..n) into the arena: tabs become "→" plus spaces up to the
 * next tab stop so indentation stays visible, trailing blanks go, long lines end in "…". */
static const char *display_line(render_arena_t *a, const char *s, size_t n, uint32_t *out_len) {
    static const char arrow[] = "\xe2\x86\x92", ellipsis[] = "\xe2\x80\xa6";
    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    if (n == 0) return NULL;
    char *out = render_arena_alloc(a, SOURCE_MAX_CHARS * (TAB_STOP + 4) + 8);
    if (!out) return NULL;
    size_t o = 0, col = 0, i = 0;
    while (i < n && col < SOURCE_MAX_CHARS) {
        if (s[i] == '\t') {
            memcpy(out + o, arrow, 3); o += 3; col++;
            while (col % TAB_STOP) { out[o++] = ' '; col++; }
            i++;
            continue;
        }
        uint32_t cp;
        size_t len = utf8_next(s + i, n - i, &cp);
        memcpy(out + o, s + i, len);
        o += len; i += len; col++;
    }
    if (i < n) { memcpy(out + o, ellipsis, 3); o += 3; }
    *out_len = (uint32_t)o;
    return out;
}

const char *render_frame_source(render_data_t *d, uint32_t frame, uint32_t *len) {
    render_frame_t *f = &d->frames[frame];
    if (!f->src_done) {
        f->src_done = 1;
        /* "<stdin>", "<string>", "[No Python stack]"... name no file. */
        if (f->line > 0 && f->file_len > 0 && f->file[0] != '<' && f->file[0] != '[') {
            render_source_file_t *c = source_file(d, f->file, f->file_len);
            const char *p = c->map, *end = p ? p + c->size : NULL;   /* no file: no map */
            for (uint32_t line = 1; p && line < f->line; line++) {
                const char *q = memchr(p, '\n', (size_t)(end - p));
                p = q ? q + 1 : NULL;
            }
            if (p && p < end) {
                const char *q = memchr(p, '\n', (size_t)(end - p));
                f->src = display_line(&d->arena, p, (size_t)((q ? q : end) - p), &f->src_len);
            }
        }
    }
    *len = f->src_len;
    return f->src;
}

/* ---- trees ---- */

/* Sibling order: bytes descending, then frame text, so the picture never depends on the
 * order of lines in the .prof. */
static int node_before(const render_data_t *d, const render_node_t *a, const render_node_t *b) {
    if (a->total != b->total) return a->total > b->total;
    const render_frame_t *fa = &d->frames[a->frame], *fb = &d->frames[b->frame];
    size_t n = fa->len < fb->len ? fa->len : fb->len;
    int c = memcmp(fa->text, fb->text, n);
    if (c != 0) return c < 0;
    return fa->len < fb->len;
}

/* Merge sort of a sibling list of known length; recursion depth is log2(len). */
static uint32_t sort_siblings(const render_data_t *d, render_node_t *nodes, uint32_t head, uint32_t len) {
    if (len < 2) return head;
    uint32_t half = len / 2, mid = head;
    for (uint32_t i = 1; i < half; i++) mid = nodes[mid].next_sibling;
    uint32_t right = nodes[mid].next_sibling;
    nodes[mid].next_sibling = RENDER_NONE;
    uint32_t a = sort_siblings(d, nodes, head, half);
    uint32_t b = sort_siblings(d, nodes, right, len - half);
    uint32_t out = RENDER_NONE, *tail = &out;
    while (a != RENDER_NONE && b != RENDER_NONE) {
        uint32_t *pick = node_before(d, &nodes[b], &nodes[a]) ? &b : &a;
        *tail = *pick;
        tail = &nodes[*pick].next_sibling;
        *pick = nodes[*pick].next_sibling;
    }
    *tail = a != RENDER_NONE ? a : b;
    return out;
}

uint64_t render_tree_first_threshold(uint64_t total) {
    uint64_t threshold = total / 1000 + (total % 1000 != 0);
    return threshold ? threshold : 1;
}

/* A node whose children are still to be made: the stacks through it are order[lo..hi), and
 * its children are their frames at `level` (counted from the root, or from the leaf when
 * reversed). */
typedef struct {
    uint32_t node, level;
    size_t lo, hi;
} expansion_t;

/* The tree is built top-down: a node's stacks are split by their next frame into its children,
 * and only nodes of at least min_total bytes are split further. The layout never looks under
 * a node smaller than its threshold (it is drawn merged into its parent's remainder, or not at
 * all), so with min_total = the first threshold the drawn picture is the whole tree's, for a
 * fraction of the nodes: a .prof's stacks mostly end in small allocations, which a tree built
 * stack by stack had to make every node of (the reversed tree of a numpy import: 54,000 nodes,
 * a few hundred of them ever looked at). */
int render_tree_build(render_data_t *d, render_tree_t *t, int reversed, uint64_t min_total) {
    memset(t, 0, sizeof *t);
    t->reversed = reversed;
    size_t n = d->nstacks;
    uint32_t *order = render_arena_alloc(&d->arena, (n ? n : 1) * sizeof *order);
    uint32_t *child_at = render_arena_alloc(&d->arena, (n ? n : 1) * sizeof *child_at);
    uint32_t *scatter = render_arena_alloc(&d->arena, (n ? n : 1) * sizeof *scatter);
    size_t *start = render_arena_alloc(&d->arena, (n + 1) * sizeof *start);
    uint32_t *child_of_frame = render_arena_alloc(&d->arena, (d->nframes ? d->nframes : 1) * sizeof *child_of_frame);
    t->nodes = grow_array(&d->arena, NULL, sizeof *t->nodes, 0, &t->nodes_cap);
    uint32_t todo_cap = 0, ntodo = 0;
    expansion_t *todo = grow_array(&d->arena, NULL, sizeof *todo, 0, &todo_cap);
    if (!order || !child_at || !scatter || !start || !child_of_frame || !t->nodes || !todo) return -1;
    for (uint32_t f = 0; f < d->nframes; f++) child_of_frame[f] = RENDER_NONE;
    for (size_t s = 0; s < n; s++) order[s] = (uint32_t)s;
    render_node_t *root = &t->nodes[t->nnodes++];
    root->total = d->total; root->x = 0;
    root->frame = RENDER_NONE; root->parent = RENDER_NONE;
    root->first_child = RENDER_NONE; root->next_sibling = RENDER_NONE;
    todo[ntodo++] = (expansion_t){0, 0, 0, n};

    for (uint32_t w = 0; w < ntodo; w++) {
        expansion_t e = todo[w];
        uint32_t first = t->nnodes;
        /* Each stack that goes on to its child at this level, and the children's totals. */
        for (size_t i = e.lo; i < e.hi; i++) {
            const render_stack_t *st = &d->stacks[order[i]];
            child_at[i] = RENDER_NONE;
            if (st->depth <= e.level) continue;             /* ends here: the node's own bytes */
            uint32_t frame = d->ids[st->first + (reversed ? st->depth - 1 - e.level : e.level)];
            uint32_t c = child_of_frame[frame];
            if (c == RENDER_NONE) {
                if (t->nnodes == t->nodes_cap) {
                    render_node_t *nn = grow_array(&d->arena, t->nodes, sizeof *nn, t->nnodes, &t->nodes_cap);
                    if (!nn) return -1;
                    t->nodes = nn;
                }
                c = t->nnodes++;
                render_node_t *cn = &t->nodes[c];
                cn->total = 0; cn->x = 0;
                cn->frame = frame; cn->parent = e.node;
                cn->first_child = RENDER_NONE;
                cn->next_sibling = t->nodes[e.node].first_child;
                t->nodes[e.node].first_child = c;
                child_of_frame[frame] = c;
            }
            t->nodes[c].total += st->bytes;
            child_at[i] = c;
        }
        uint32_t nchildren = t->nnodes - first;
        if (nchildren == 0) continue;
        for (uint32_t c = first; c < t->nnodes; c++) child_of_frame[t->nodes[c].frame] = RENDER_NONE;
        /* Group the stacks by child (a counting sort), in place of the node's range. */
        for (uint32_t k = 0; k <= nchildren; k++) start[k] = 0;
        for (size_t i = e.lo; i < e.hi; i++)
            if (child_at[i] != RENDER_NONE) start[child_at[i] - first + 1]++;
        for (uint32_t k = 0; k < nchildren; k++) start[k + 1] += start[k];
        size_t kept = start[nchildren];
        for (size_t i = e.lo; i < e.hi; i++)
            if (child_at[i] != RENDER_NONE) scatter[start[child_at[i] - first]++] = order[i];
        memcpy(order + e.lo, scatter, kept * sizeof *order);
        /* start[k] is now where child k's stacks end. */
        for (uint32_t k = 0; k < nchildren; k++) {
            uint32_t c = first + k;
            if (t->nodes[c].total < min_total) continue;
            if (ntodo == todo_cap) {
                expansion_t *nt = grow_array(&d->arena, todo, sizeof *nt, ntodo, &todo_cap);
                if (!nt) return -1;
                todo = nt;
            }
            size_t lo = e.lo + (k ? start[k - 1] : 0);
            todo[ntodo++] = (expansion_t){c, e.level + 1, lo, e.lo + start[k]};
        }
    }
    /* Parents precede children, so one pass in id order sorts every sibling list. */
    for (uint32_t id = 0; id < t->nnodes; id++) {
        uint32_t len = 0;
        for (uint32_t c = t->nodes[id].first_child; c != RENDER_NONE; c = t->nodes[c].next_sibling) len++;
        t->nodes[id].first_child = sort_siblings(d, t->nodes, t->nodes[id].first_child, len);
    }
    return 0;
}

/* Breadth-first over drawn nodes. Returns the number of boxes, or max_boxes + 1 as soon as the
 * cap is exceeded (then t->boxes holds garbage). */
static uint32_t layout_pass(render_tree_t *t, uint64_t threshold, uint32_t max_boxes) {
    uint32_t n = 0;
    t->boxes[n++] = (render_box_t){0, 0, 0, 0, t->nodes[0].total};
    t->rows = 1;
    for (uint32_t b = 0; b < n; b++) {
        if (t->boxes[b].merged) continue;
        const render_node_t *parent = &t->nodes[t->boxes[b].node];
        uint32_t depth = t->boxes[b].depth + 1;
        uint64_t x = parent->x;
        uint32_t c = parent->first_child;
        for (; c != RENDER_NONE && t->nodes[c].total >= threshold; c = t->nodes[c].next_sibling) {
            if (n == max_boxes) return max_boxes + 1;
            t->nodes[c].x = x;
            t->boxes[n++] = (render_box_t){c, depth, 0, x, t->nodes[c].total};
            x += t->nodes[c].total;
        }
        uint32_t merged = 0;
        uint64_t bytes = 0;
        for (; c != RENDER_NONE; c = t->nodes[c].next_sibling) { merged++; bytes += t->nodes[c].total; }
        if (bytes > 0) {
            if (n == max_boxes) return max_boxes + 1;
            t->boxes[n++] = (render_box_t){t->boxes[b].node, depth, merged, x, bytes};
        }
        if (n > 0 && t->boxes[n - 1].depth + 1 > t->rows) t->rows = t->boxes[n - 1].depth + 1;
    }
    return n;
}

int render_tree_layout(render_data_t *d, render_tree_t *t, uint32_t max_boxes) {
    if (max_boxes < 2) max_boxes = 2;       /* the root and one remainder always fit */
    t->boxes = render_arena_alloc(&d->arena, (size_t)max_boxes * sizeof *t->boxes);
    if (!t->boxes) return -1;
    uint64_t threshold = render_tree_first_threshold(t->nodes[0].total);
    uint32_t n;
    while ((n = layout_pass(t, threshold, max_boxes)) > max_boxes) {
        /* Too many boxes: a coarser picture. Once threshold > total only the root and one
         * remainder box are left; only a chain of UINT64_MAX-byte frames gets to the cut. */
        if (threshold == UINT64_MAX) { n = max_boxes; break; }
        threshold = threshold > UINT64_MAX / 2 ? UINT64_MAX : threshold * 2;
    }
    t->nboxes = n;
    t->threshold = threshold;
    return 0;
}

/* ---- numbers for humans ---- */

size_t render_fmt_human(char *dst, uint64_t bytes) {
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    size_t n;
    if (bytes < 1024) {
        n = fmt_u64(dst, bytes);
        memcpy(dst + n, " B", 3);
        return n + 2;
    }
    double v = (double)bytes / 1024.0;
    int u = 0;
    while (v >= 1023.95 && u < 5) { v /= 1024.0; u++; }
    uint64_t tenths = (uint64_t)(v * 10.0 + 0.5);
    n = fmt_u64(dst, tenths / 10);
    dst[n++] = '.';
    dst[n++] = (char)('0' + tenths % 10);
    dst[n++] = ' ';
    memcpy(dst + n, units[u], 4);
    return n + 3;
}

void render_human_bytes(outbuf_t *ob, uint64_t bytes) {
    char tmp[40];
    outbuf_write(ob, tmp, render_fmt_human(tmp, bytes));
}

void render_data_forget_sources(render_data_t *d) {
    for (uint32_t i = 0; i < d->nframes; i++) {
        d->frames[i].src = NULL;
        d->frames[i].src_len = 0;
        d->frames[i].src_done = 0;
    }
}

void render_percent(outbuf_t *ob, uint64_t part, uint64_t total, int decimals) {
    outbuf_fixed(ob, total ? (double)part * 100.0 / (double)total : 0.0, decimals);
}
