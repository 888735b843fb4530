/* Unit tests for the renderer's data side (render_tree.c): parsing of odd and malformed
 * lines, merging of identical stacks, reversal, narrow-frame merging and the layout
 * invariant that widths add up at every level; stacks sharing frames with the previous line
 * (which the parser takes over instead of looking up again) against a plain split, trees
 * against a walk through their sibling lists, and trees built only as deep as can be drawn
 * against whole ones; plus one whole report into a temp dir. */
#define FIL_RENDER_INTERNAL 1
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "render.h"
#include "rng.h"
#include "testhelper.h"

#define LIT(s) s, sizeof(s) - 1

static uint32_t find_frame(const render_data_t *d, const char *text) {
    for (uint32_t i = 0; i < d->nframes; i++)
        if (d->frames[i].len == strlen(text) && memcmp(d->frames[i].text, text, d->frames[i].len) == 0) return i;
    return RENDER_NONE;
}

static int frame_is(const render_data_t *d, uint32_t id, const char *file, uint32_t line, const char *func) {
    const render_frame_t *f = &d->frames[id];
    size_t fl = file ? strlen(file) : 0;
    return f->file_len == fl && (!file || memcmp(f->file, file, fl) == 0) && f->line == line &&
           f->func_len == strlen(func) && memcmp(f->func, func, f->func_len) == 0;
}

static void test_parse(void) {
    static const char prof[] =
        "/a/job.py:12 (<module>);/a/job.py:5 (load) 100\n"
        "/a/job.py:12 (<module>);/a/job.py:5 (load) 50\r\n"   /* same stack again: summed */
        "[No Python stack] 7\n"
        "\n"
        "no count here\n"
        "bad count 12x\n"
        "huge 99999999999999999999999\n"
        "C:\\odd path:3 (f (nested)) 1\n"                    /* last " (" wins */
        "weird;;frames: (x) 2\n"                             /* empty and malformed frames kept */
        " 4\n"                                               /* empty stack: one empty frame */
        "tabs\there:9 (g) 3\n"
        "last 5";                                            /* no final newline */
    render_data_t d;
    CHECK(render_data_parse(&d, LIT(prof), NULL, 0) == 0);
    CHECK_EQ_U(d.total, 100 + 50 + 7 + 1 + 2 + 4 + 3 + 5);
    CHECK_EQ_U(d.skipped_lines, 3);        /* no count, "12x", overflow */
    CHECK_EQ_U(d.nstacks, 8);
    uint32_t load = find_frame(&d, "/a/job.py:5 (load)");
    CHECK(load != RENDER_NONE && frame_is(&d, load, "/a/job.py", 5, "load"));
    CHECK_EQ_U(d.frames[load].leaf_bytes, 150);
    uint32_t nps = find_frame(&d, "[No Python stack]");
    CHECK(nps != RENDER_NONE && frame_is(&d, nps, NULL, 0, "[No Python stack]"));
    uint32_t odd = find_frame(&d, "C:\\odd path:3 (f (nested))");
    CHECK(odd != RENDER_NONE && frame_is(&d, odd, "C:\\odd path:3 (f", 0, "C:\\odd path:3 (f (nested))") == 0);
    /* " (nested)" is the last " (": LINE must then be after the last ':' of "C:\odd path:3 (f",
     * which is "3 (f": not a number, so the frame is kept whole. */
    CHECK(odd != RENDER_NONE && frame_is(&d, odd, NULL, 0, "C:\\odd path:3 (f (nested))"));
    CHECK(find_frame(&d, "") != RENDER_NONE);
    uint32_t mal = find_frame(&d, "frames: (x)");
    CHECK(mal != RENDER_NONE && frame_is(&d, mal, NULL, 0, "frames: (x)"));
    uint32_t tab = find_frame(&d, "tabs\there:9 (g)");
    CHECK(tab != RENDER_NONE && frame_is(&d, tab, "tabs\there", 9, "g"));
    CHECK(find_frame(&d, "last") != RENDER_NONE);
    render_data_release(&d);
}

/* Every drawn box's children (drawn and merged) start at its left edge, are contiguous, and
 * add up to the bytes of all its children; the root is the total. Returns boxes checked. */
static uint32_t check_layout(const render_data_t *d, const render_tree_t *t) {
    CHECK_EQ_U(t->boxes[0].w, d->total);
    CHECK_EQ_U(t->nodes[0].total, d->total);
    uint32_t checked = 0;
    for (uint32_t b = 0; b < t->nboxes; b++) {
        const render_box_t *p = &t->boxes[b];
        if (p->merged) continue;
        const render_node_t *n = &t->nodes[p->node];
        CHECK_EQ_U(p->w, n->total);
        uint64_t children = 0, drawn = 0, x = p->x;
        for (uint32_t c = n->first_child; c != RENDER_NONE; c = t->nodes[c].next_sibling) {
            children += t->nodes[c].total;
            CHECK(t->nodes[c].total <= n->total);
        }
        for (uint32_t k = 0; k < t->nboxes; k++) {
            const render_box_t *c = &t->boxes[k];
            int mine = c->merged ? c->node == p->node && c->depth == p->depth + 1
                                 : c->depth == p->depth + 1 && t->nodes[c->node].parent == p->node;
            if (!mine) continue;
            CHECK_EQ_U(c->x, x);
            x += c->w;
            drawn += c->w;
        }
        CHECK_EQ_U(drawn, children);
        CHECK(children <= n->total);
        checked++;
    }
    return checked;
}

static void test_tree_and_reversal(void) {
    static const char prof[] =
        "m:1 (a);m:2 (b);m:3 (c) 600\n"
        "m:1 (a);m:2 (b) 300\n"
        "m:1 (a);m:4 (d);m:3 (c) 100\n"
        "m:9 (z) 1\n";
    render_data_t d;
    render_tree_t t;
    CHECK(render_data_parse(&d, LIT(prof), NULL, 0) == 0);
    CHECK(render_tree_build(&d, &t, 0, 0) == 0);
    CHECK_EQ_U(t.nnodes, 1 + 6);                                  /* root a b c d c z */
    uint32_t a = t.nodes[0].first_child;
    CHECK_EQ_U(t.nodes[a].total, 1000);
    CHECK_EQ_U(t.nodes[t.nodes[a].next_sibling].total, 1);        /* sorted: biggest first */
    uint32_t b = t.nodes[a].first_child;
    CHECK_EQ_U(t.nodes[b].total, 900);
    CHECK(render_tree_layout(&d, &t, RENDER_MAX_BOXES) == 0);
    CHECK(check_layout(&d, &t) > 0);
    /* z (1 byte of 1001) is under 0.1%: merged into a remainder box of width 1. */
    int found = 0;
    for (uint32_t i = 0; i < t.nboxes; i++)
        if (t.boxes[i].merged == 1 && t.boxes[i].depth == 1 && t.boxes[i].w == 1 && t.boxes[i].x == 1000) found = 1;
    CHECK(found);

    render_tree_t r;
    CHECK(render_tree_build(&d, &r, 1, 0) == 0);
    /* Leaves first: c (700 from two callers, merged after reversal), b (300), z (1). */
    uint32_t c = r.nodes[0].first_child;
    CHECK(frame_is(&d, r.nodes[c].frame, "m", 3, "c"));
    CHECK_EQ_U(r.nodes[c].total, 700);
    uint32_t cb = r.nodes[c].first_child;
    CHECK(frame_is(&d, r.nodes[cb].frame, "m", 2, "b"));
    CHECK_EQ_U(r.nodes[cb].total, 600);
    CHECK_EQ_U(r.nodes[r.nodes[cb].next_sibling].total, 100);      /* d */
    uint32_t b2 = r.nodes[c].next_sibling;
    CHECK(frame_is(&d, r.nodes[b2].frame, "m", 2, "b"));
    CHECK_EQ_U(r.nodes[b2].total, 300);
    CHECK(render_tree_layout(&d, &r, RENDER_MAX_BOXES) == 0);
    check_layout(&d, &r);
    render_data_release(&d);
}

/* The tree built only as deep as the layout can draw gives the very boxes of the whole tree. */
static void check_pruned_draws_the_same(render_data_t *d, int reversed, uint32_t max_boxes) {
    render_mark_t mark = render_arena_mark(&d->arena);
    render_tree_t full, pruned;
    CHECK(render_tree_build(d, &full, reversed, 0) == 0);
    CHECK(render_tree_layout(d, &full, max_boxes) == 0);
    CHECK(render_tree_build(d, &pruned, reversed, render_tree_first_threshold(d->total)) == 0);
    CHECK(render_tree_layout(d, &pruned, max_boxes) == 0);
    CHECK(pruned.nnodes <= full.nnodes);
    CHECK_EQ_U(pruned.nboxes, full.nboxes);
    CHECK_EQ_U(pruned.threshold, full.threshold);
    CHECK_EQ_U(pruned.rows, full.rows);
    int same = pruned.nboxes == full.nboxes;
    for (uint32_t i = 0; same && i < full.nboxes; i++) {
        const render_box_t *a = &full.boxes[i], *b = &pruned.boxes[i];
        same = a->depth == b->depth && a->merged == b->merged && a->x == b->x && a->w == b->w &&
               full.nodes[a->node].frame == pruned.nodes[b->node].frame;
    }
    CHECK(same);
    render_arena_reset(&d->arena, mark);
}

/* The child of `parent` for `frame` by scanning the sibling list: no hashing, no shortcut. */
static uint32_t scan_child(const render_tree_t *t, uint32_t parent, uint32_t frame) {
    for (uint32_t c = t->nodes[parent].first_child; c != RENDER_NONE; c = t->nodes[c].next_sibling)
        if (t->nodes[c].frame == frame) return c;
    return RENDER_NONE;
}

/* Random lines over frames chosen to trip a byte-level shortcut: prefixes of one another
 * ("a", "ab", "a b"), with spaces, empty ones (";;"), digits (a count-like "1"), stacks that
 * are prefixes of the previous one, repeated stacks, and malformed lines in between. Each
 * stack must be its line split on ';', each tree's node totals what walking every stack
 * through the sibling lists sums up, and the tree built only as deep as can be drawn must
 * draw the same boxes. */
static void test_shared_prefixes(void) {
    static const char *const frames[] = {"a", "ab", "a b", "", "1", "m.py:1 (f)", "m.py:12 (f)",
                                         "m.py:1 (g)", "x;", "[No Python stack]"};
    static char buf[1 << 20];
    static uint64_t expected[1 << 16];
    rng_t rng = {test_seed("test_render", 11)};
    for (int round = 0; round < 40; round++) {
        size_t len = 0;
        /* The line texts, to compare against: stack bytes start/len per parsed line. */
        static size_t starts[4096], lens[4096];
        size_t nlines = 0;
        char prev[512];
        size_t prev_len = 0;
        for (int i = 0; i < 300; i++) {
            if (rng_below(&rng, 20) == 0) { len += (size_t)sprintf(buf + len, "junk line\n"); continue; }
            char stack[512];
            size_t sl = 0;
            int keep = prev_len && rng_below(&rng, 4) ? (int)rng_below(&rng, 4) : -1;
            if (keep >= 0) {   /* start with part of the previous stack, cut at a ';' or not */
                size_t cut = rng_below(&rng, prev_len + 1);
                memcpy(stack, prev, cut);
                sl = cut;
            }
            int more = (int)rng_below(&rng, 5);
            for (int k = 0; k < more && sl < 400; k++) {
                if (sl > 0 || k > 0) stack[sl++] = ';';
                const char *f = frames[rng_below(&rng, sizeof frames / sizeof frames[0])];
                memcpy(stack + sl, f, strlen(f));
                sl += strlen(f);
            }
            if (sl == 0) { stack[0] = 'a'; sl = 1; }
            memcpy(prev, stack, sl);
            prev_len = sl;
            starts[nlines] = len;
            lens[nlines++] = sl;
            memcpy(buf + len, stack, sl);
            len += sl;
            len += (size_t)sprintf(buf + len, " %u\n", (unsigned)rng_below(&rng, 1000));
        }
        render_data_t d;
        CHECK(render_data_parse(&d, buf, len, NULL, 0) == 0);
        CHECK_EQ_U(d.nstacks, nlines);
        for (size_t k = 0; k < d.nstacks && k < nlines; k++) {
            const render_stack_t *st = &d.stacks[k];
            char joined[1024];
            size_t jl = 0;
            for (uint32_t j = 0; j < st->depth && jl < 900; j++) {
                const render_frame_t *f = &d.frames[d.ids[st->first + j]];
                if (j) joined[jl++] = ';';
                memcpy(joined + jl, f->text, f->len);
                jl += f->len;
            }
            /* The line's stack text (a frame text may hold ' ': the count is after the last). */
            CHECK(jl == lens[k] && memcmp(joined, buf + starts[k], jl) == 0);
        }
        for (int reversed = 0; reversed < 2; reversed++) {
            render_mark_t mark = render_arena_mark(&d.arena);
            render_tree_t t;
            CHECK(render_tree_build(&d, &t, reversed, 0) == 0);
            CHECK(t.nnodes < sizeof expected / sizeof expected[0]);
            memset(expected, 0, sizeof expected);
            expected[0] = d.total;
            int found = 1;
            for (size_t k = 0; k < d.nstacks; k++) {
                const render_stack_t *st = &d.stacks[k];
                uint32_t cur = 0;
                for (uint32_t j = 0; j < st->depth && cur != RENDER_NONE; j++) {
                    uint32_t frame = d.ids[st->first + (reversed ? st->depth - 1 - j : j)];
                    cur = scan_child(&t, cur, frame);
                    if (cur != RENDER_NONE) expected[cur] += st->bytes;
                }
                found &= cur != RENDER_NONE;
            }
            CHECK(found);
            int same = 1;
            for (uint32_t i = 0; i < t.nnodes; i++) same &= expected[i] == t.nodes[i].total;
            CHECK(same);
            render_arena_reset(&d.arena, mark);
            check_pruned_draws_the_same(&d, reversed, 20);
            check_pruned_draws_the_same(&d, reversed, RENDER_MAX_BOXES);
        }
        render_data_release(&d);
    }
}

/* Many small stacks: the box cap holds, widths still add up, nothing is lost. */
static void test_merging_cap(void) {
    size_t cap = 4 << 20, len = 0;
    char *buf = malloc(cap);
    for (int i = 0; i < 20000; i++) {
        char line[200];
        int n = snprintf(line, sizeof line, "r.py:1 (main);w.py:%d (work%d);leaf.py:%d (alloc) %d\n",
                         i % 400 + 1, i % 400, i % 97 + 1, 1 + i % 1000);
        memcpy(buf + len, line, (size_t)n);
        len += (size_t)n;
    }
    render_data_t d;
    render_tree_t t;
    CHECK(render_data_parse(&d, buf, len, NULL, 0) == 0);
    CHECK(render_tree_build(&d, &t, 0, 0) == 0);
    CHECK(render_tree_layout(&d, &t, 50) == 0);
    CHECK(t.nboxes <= 50);
    CHECK(t.threshold > d.total / 1000);            /* raised to respect the cap */
    int merged = 0;
    for (uint32_t i = 0; i < t.nboxes; i++) merged += t.boxes[i].merged > 0;
    CHECK(merged > 0);
    check_layout(&d, &t);
    CHECK(render_tree_layout(&d, &t, RENDER_MAX_BOXES) == 0);
    CHECK(t.nboxes <= RENDER_MAX_BOXES);
    check_layout(&d, &t);
    for (uint32_t i = 1; i < t.nboxes; i++)
        CHECK(t.boxes[i].merged || t.boxes[i].w >= t.threshold);
    for (int reversed = 0; reversed < 2; reversed++) {
        check_pruned_draws_the_same(&d, reversed, 50);
        check_pruned_draws_the_same(&d, reversed, RENDER_MAX_BOXES);
    }
    render_data_release(&d);

    /* The same from a scratch block; a block too small fails with ENOMEM. */
    char *scratch = malloc(64 << 20);
    CHECK(render_data_parse(&d, buf, len, scratch, 64 << 20) == 0);
    CHECK(render_tree_build(&d, &t, 1, render_tree_first_threshold(d.total)) == 0);
    CHECK(render_tree_layout(&d, &t, RENDER_MAX_BOXES) == 0);
    check_layout(&d, &t);
    render_data_release(&d);
    errno = 0;
    int rc = render_data_parse(&d, buf, len, scratch, 4096);
    CHECK(rc == -1 && errno == ENOMEM);
    render_data_release(&d);
    free(scratch);
    free(buf);
}

static void test_empty_and_human(void) {
    render_data_t d;
    render_tree_t t;
    CHECK(render_data_parse(&d, "", 0, NULL, 0) == 0);
    CHECK(render_tree_build(&d, &t, 0, 0) == 0);
    CHECK(render_tree_layout(&d, &t, RENDER_MAX_BOXES) == 0);
    CHECK_EQ_U(t.nboxes, 1);
    CHECK_EQ_U(t.boxes[0].w, 0);
    render_data_release(&d);

    char s[40];
    render_fmt_human(s, 0); CHECK(strcmp(s, "0 B") == 0);
    render_fmt_human(s, 1023); CHECK(strcmp(s, "1023 B") == 0);
    render_fmt_human(s, 1024); CHECK(strcmp(s, "1.0 KiB") == 0);
    render_fmt_human(s, 1294467072); CHECK(strcmp(s, "1.2 GiB") == 0);
    render_fmt_human(s, (uint64_t)234 * 1048576 + 524288); CHECK(strcmp(s, "234.5 MiB") == 0);
    render_fmt_human(s, 1048575); CHECK(strcmp(s, "1.0 MiB") == 0);
    render_fmt_human(s, UINT64_MAX); CHECK(strcmp(s, "16.0 EiB") == 0);
}

static void test_report_files(void) {
    char dir[] = "/tmp/fil_render_test_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char prof[256], path[256];
    snprintf(prof, sizeof prof, "%s/in.prof", dir);
    int fd = open(prof, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    static const char text[] = "/nonexistent/x.py:3 (f) 2048\n[No Python stack] 1\n";
    CHECK(write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1));
    close(fd);
    fil_render_opts_t o = {.prof_path = prof, .out_dir = dir, .file_prefix = "peak-memory",
                           .kind = FIL_REPORT_PEAK, .command_line = "python x.py"};
    CHECK(fil_render_report(&o) == 0);
    const char *outs[] = {"peak-memory.svg", "peak-memory-reversed.svg", "index.html"};
    for (int i = 0; i < 3; i++) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, outs[i]);
        CHECK(stat(path, &st) == 0 && st.st_size > 500);
        unlink(path);
    }
    o.prof_path = "/nonexistent/none.prof";
    errno = 0;
    CHECK(fil_render_report(&o) == -1 && errno == ENOENT);
    o.prof_path = prof;
    o.file_prefix = "../escape";
    CHECK(fil_render_report(&o) == -1 && errno == EINVAL);
    unlink(prof);
    rmdir(dir);
}

int main(void) {
    test_parse();
    test_tree_and_reversal();
    test_shared_prefixes();
    test_merging_cap();
    test_empty_and_human();
    test_report_files();
    return test_report("test_render");
}
