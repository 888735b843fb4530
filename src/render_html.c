/* render_html: index.html, and fil_render_report() which drives the whole report.
 *
 * fil_render_report parses the .prof once, then builds, lays out and writes the forward tree,
 * resets the arena, does the same for the reversed tree, and writes index.html last (it needs
 * both graphs' heights). index.html embeds the SVGs with <object> so their scripts run, also
 * from file://; everything program-derived in it is escaped with escape.h.
 */
#define FIL_RENDER_INTERNAL 1
#include "render.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "escape.h"

#define TOP_SITES 20
#define OUT_BUF_SIZE (64 * 1024)

static void put_text(outbuf_t *ob, const char *s) { esc_xml_text(ob, s, strlen(s)); }

static const char html_style[] =
    "<style>\n"
    "body { font-family: system-ui, -apple-system, \"Segoe UI\", sans-serif; margin: 0 auto; padding: 0 1em 2em;\n"
    "       max-width: 1280px; color: #222; line-height: 1.45; }\n"
    "h1 { font-size: 1.6em; margin-top: 0.8em; }\n"
    "code, pre, td.src { font-family: \"DejaVu Sans Mono\", Menlo, Consolas, monospace; }\n"
    ".cmd { display: block; overflow-x: auto; white-space: pre; background: #f3f3ee; padding: 0.5em; }\n"
    ".oom { border-left: 4px solid #b0160c; background: #fdf0ee; padding: 0.5em 1em; }\n"
    "object.graph { display: block; width: 100%; height: auto; border: 1px solid #ddd; }\n"
    ".scroll { overflow-x: auto; }\n"
    "table { border-collapse: collapse; min-width: 100%; }\n"
    "th, td { text-align: left; padding: 0.25em 0.6em; border-bottom: 1px solid #e4e4e4; vertical-align: top; }\n"
    "td.num { text-align: right; white-space: nowrap; }\n"
    "td.src { white-space: pre; }\n"
    "@media (max-width: 600px) { body { padding: 0 0.4em; } h1 { font-size: 1.25em; } }\n"
    "</style>\n";

static void put_graph(outbuf_t *ob, const char *prefix, const char *suffix, uint32_t rows, const char *alt) {
    outbuf_puts(ob, "<object class=\"graph\" type=\"image/svg+xml\" data=\"");
    put_text(ob, prefix);
    outbuf_puts(ob, suffix);
    outbuf_puts(ob, ".svg\" style=\"aspect-ratio: ");
    outbuf_u64(ob, RENDER_WIDTH);
    outbuf_puts(ob, " / ");
    outbuf_u64(ob, render_svg_height(rows));
    outbuf_puts(ob, "\"><a href=\"");
    put_text(ob, prefix);
    outbuf_puts(ob, suffix);
    outbuf_puts(ob, ".svg\">");
    outbuf_puts(ob, alt);
    outbuf_puts(ob, "</a></object>\n<p><a href=\"");
    put_text(ob, prefix);
    outbuf_puts(ob, suffix);
    outbuf_puts(ob, ".svg\">Open this graph on its own page</a></p>\n");
}

/* The TOP_SITES frames with the most leaf bytes, biggest first, ties in first-seen order. */
static uint32_t top_sites(const render_data_t *d, uint32_t *out) {
    uint32_t n = 0;
    for (uint32_t id = 0; id < d->nframes; id++) {
        uint64_t b = d->frames[id].leaf_bytes;
        if (b == 0 || (n == TOP_SITES && b <= d->frames[out[n - 1]].leaf_bytes)) continue;
        uint32_t i = n < TOP_SITES ? n++ : n - 1;
        while (i > 0 && d->frames[out[i - 1]].leaf_bytes < b) { out[i] = out[i - 1]; i--; }
        out[i] = id;
    }
    return n;
}

/* May s[0..n) decode (with replacement) to the same text as other bytes? Only if it holds an
   invalid sequence or U+FFFD itself: a valid text without U+FFFD decodes to itself alone. */
static int may_merge_when_decoded(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        if ((unsigned char)s[i] < 0x80) { i++; continue; }
        uint32_t cp;
        i += utf8_next(s + i, n - i, &cp);
        if (cp == ESC_REPLACEMENT) return 1;
    }
    return 0;
}

typedef struct { uint32_t frame; uint64_t order; } site_rank_t;

/* opts->on_site for the call sites (see render.h). Stacks are visited in file order, so a
   frame's first stack as a leaf is its order, and a later site ties below an earlier one. */
static int report_sites(render_data_t *d, const fil_render_opts_t *o) {
    render_mark_t mark = render_arena_mark(&d->arena);
    uint8_t *seen = render_arena_alloc(&d->arena, d->nframes ? d->nframes : 1);
    uint32_t cap = o->sites;
    site_rank_t *top = render_arena_alloc(&d->arena, (cap ? cap : 1) * sizeof *top);
    if (!seen || !top) return -1;
    memset(seen, 0, d->nframes);
    uint32_t n = 0;
    for (size_t k = 0; k < d->nstacks; k++) {
        const render_stack_t *st = &d->stacks[k];
        uint32_t id = d->ids[st->first + st->depth - 1];
        if (seen[id]) continue;
        seen[id] = 1;
        const render_frame_t *f = &d->frames[id];
        if (may_merge_when_decoded(f->text, f->len)) {
            o->on_site(o->site_ctx, f->text, f->len, f->leaf_bytes, k);
            continue;
        }
        if (cap == 0 || (n == cap && f->leaf_bytes <= d->frames[top[n - 1].frame].leaf_bytes)) continue;
        uint32_t i = n < cap ? n++ : n - 1;
        while (i > 0 && d->frames[top[i - 1].frame].leaf_bytes < f->leaf_bytes) { top[i] = top[i - 1]; i--; }
        top[i] = (site_rank_t){id, k};
    }
    for (uint32_t i = 0; i < n; i++) {
        const render_frame_t *f = &d->frames[top[i].frame];
        o->on_site(o->site_ctx, f->text, f->len, f->leaf_bytes, top[i].order);
    }
    render_arena_reset(&d->arena, mark);
    return 0;
}

static void put_sites_table(outbuf_t *ob, render_data_t *d) {
    uint32_t ids[TOP_SITES];
    uint32_t n = top_sites(d, ids);
    if (n == 0) { outbuf_puts(ob, "<p>No allocations were recorded.</p>\n"); return; }
    outbuf_puts(ob, "<div class=\"scroll\"><table>\n<thead><tr><th>Size</th><th>% of total</th>"
                    "<th>Location</th><th>Function</th><th>Source line</th></tr></thead>\n<tbody>\n");
    for (uint32_t i = 0; i < n; i++) {
        render_frame_t *f = &d->frames[ids[i]];
        outbuf_puts(ob, "<tr><td class=\"num\">");
        render_human_bytes(ob, f->leaf_bytes);
        outbuf_puts(ob, "</td><td class=\"num\">");
        render_percent(ob, f->leaf_bytes, d->total, 2);
        outbuf_puts(ob, "%</td><td><code>");
        if (f->line) {
            esc_xml_text(ob, f->file, f->file_len);
            outbuf_putc(ob, ':');
            outbuf_u64(ob, f->line);
        }
        outbuf_puts(ob, "</code></td><td><code>");
        if (f->len == 0) outbuf_puts(ob, "[empty frame]");
        else esc_xml_text(ob, f->func, f->func_len);
        outbuf_puts(ob, "</code></td><td class=\"src\">");
        uint32_t src_len;
        const char *src = render_frame_source(d, ids[i], &src_len);
        if (src) esc_xml_text(ob, src, src_len);
        outbuf_puts(ob, "</td></tr>\n");
    }
    outbuf_puts(ob, "</tbody></table></div>\n");
}

int render_html_write(render_data_t *d, const render_html_info_t *info, int fd, char *buf, size_t bufsize) {
    const fil_render_opts_t *o = info->opts;
    int oom = o->kind == FIL_REPORT_OOM;
    outbuf_t ob;
    outbuf_init(&ob, fd, buf, bufsize);
    outbuf_puts(&ob, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                     "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    outbuf_puts(&ob, oom ? "Fil out-of-memory report: " : "Fil memory report: ");
    put_text(&ob, info->title);
    outbuf_puts(&ob, "</title>\n");
    outbuf_puts(&ob, html_style);
    outbuf_puts(&ob, "</head>\n<body>\n<h1>");
    outbuf_puts(&ob, oom ? "Fil out-of-memory report" : "Fil memory report");
    outbuf_puts(&ob, "</h1>\n");
    if (oom) {
        outbuf_puts(&ob, "<p class=\"oom\"><strong>This is an out-of-memory report.</strong> The process ran out of "
                         "memory; the graphs show the allocations that were still live at that moment, which is "
                         "where to look for what filled memory.</p>\n");
    }
    if (o->extra_note && o->extra_note[0]) {
        outbuf_puts(&ob, "<p class=\"note\">");
        put_text(&ob, o->extra_note);
        outbuf_puts(&ob, "</p>\n");
    }
    outbuf_puts(&ob, "<p>Command profiled:</p>\n<code class=\"cmd\">");
    if (o->command_line) put_text(&ob, o->command_line);
    else outbuf_puts(&ob, "(not recorded)");
    outbuf_puts(&ob, "</code>\n<p>");
    outbuf_puts(&ob, oom ? "Allocations live at out-of-memory time: <strong>"
                         : "Peak tracked memory usage: <strong>");
    render_human_bytes(&ob, d->total);
    outbuf_puts(&ob, "</strong> (");
    outbuf_u64(&ob, d->total);
    outbuf_puts(&ob, " bytes).</p>\n");
    if (d->skipped_lines) {
        outbuf_puts(&ob, "<p>Note: ");
        outbuf_u64(&ob, d->skipped_lines);
        outbuf_puts(&ob, " malformed line(s) of the profile data had no byte count and were skipped.</p>\n");
    }

    outbuf_puts(&ob, "<h2>Where the memory was allocated</h2>\n"
                     "<p>Callers at the top, the lines that allocated at the bottom of each column.</p>\n");
    put_graph(&ob, o->file_prefix, "", info->rows_forward, "Flamegraph (SVG)");
    outbuf_puts(&ob, "<h2>Reversed: allocating lines first</h2>\n"
                     "<p>The same data with every stack reversed: the lines that allocated are at the top, "
                     "whatever called them, and their callers below.</p>\n");
    put_graph(&ob, o->file_prefix, "-reversed", info->rows_reversed, "Reversed flamegraph (SVG)");

    outbuf_puts(&ob, "<h2>Biggest call sites</h2>\n<p>The source lines that allocated the most memory, "
                     "summed over every call stack that reached them.</p>\n");
    put_sites_table(&ob, d);

    outbuf_puts(&ob,
        "<h2>How to read a flamegraph</h2>\n"
        "<p>Each box is a line of code in a function. The top box is the whole program; below each box are "
        "the calls it made, and a box's width is the share of memory allocated by that line and everything "
        "it called. Wide boxes are where the memory went; the redder the box, the bigger its share.</p>\n"
        "<p>Empty space under a box is memory that line allocated itself. Frames too small to see are "
        "merged into grey \"N small frames\" boxes, so widths always add up. Hover over a box for its "
        "file, line, source and size; click to zoom into it (\"Reset zoom\" goes back); \"Search\" "
        "highlights matching frames and shows how much of the total they hold.</p>\n"
        "</body>\n</html>\n");
    return outbuf_flush(&ob);
}

/* out_dir + "/" + prefix + suffix into dst, or ENAMETOOLONG. */
static int join_path(char *dst, size_t cap, const char *dir, const char *prefix, const char *suffix) {
    size_t a = strlen(dir), b = strlen(prefix), c = strlen(suffix);
    if (a + 1 + b + c + 1 > cap) { errno = ENAMETOOLONG; return -1; }
    memcpy(dst, dir, a);
    dst[a] = '/';
    memcpy(dst + a + 1, prefix, b);
    memcpy(dst + a + 1 + b, suffix, c + 1);
    return 0;
}

static int write_file(const char *path, int (*emit)(int fd, void *ctx), void *ctx) {
    int fd = outbuf_open_file(path);
    if (fd < 0) return -1;
    int rc = emit(fd, ctx);
    int e = errno;
    if (close(fd) < 0 && rc == 0) return -1;
    errno = e;
    return rc;
}

typedef struct {
    render_data_t *d;
    render_tree_t *t;
    const char *title;
    const render_html_info_t *info;
    char *buf;
} emit_ctx_t;

static int emit_svg(int fd, void *p) {
    emit_ctx_t *c = p;
    return render_svg_write(c->d, c->t, fd, c->title, c->buf, OUT_BUF_SIZE);
}

static int emit_html(int fd, void *p) {
    emit_ctx_t *c = p;
    return render_html_write(c->d, c->info, fd, c->buf, OUT_BUF_SIZE);
}

static int render_one(emit_ctx_t *c, const char *path, int reversed, uint32_t *rows) {
    render_tree_t t;
    render_mark_t mark = render_arena_mark(&c->d->arena);
    int rc = -1;
    uint64_t drawn = render_tree_first_threshold(c->d->total);
    if (render_tree_build(c->d, &t, reversed, drawn) == 0 && render_tree_layout(c->d, &t, RENDER_MAX_BOXES) == 0) {
        c->t = &t;
        rc = write_file(path, emit_svg, c);
        *rows = t.rows;
    }
    int e = errno;
    render_arena_reset(&c->d->arena, mark);
    render_data_forget_sources(c->d);   /* they were copied above the mark */
    errno = e;
    return rc;
}

size_t fil_render_scratch_hint(size_t prof_bytes) {
    /* Typical frames take 20+ bytes of text and cost < 160 bytes of tables each. */
    if (prof_bytes > (SIZE_MAX - ((size_t)16 << 20)) / 8) return SIZE_MAX;
    return prof_bytes * 8 + ((size_t)16 << 20);
}

int fil_render_report(const fil_render_opts_t *opts) {
    if (!opts || !opts->prof_path || !opts->out_dir || !opts->file_prefix || !opts->file_prefix[0] ||
        strchr(opts->file_prefix, '/')) {
        errno = EINVAL;
        return -1;
    }
    char svg_path[PATH_MAX], rev_path[PATH_MAX], html_path[PATH_MAX];
    if (join_path(svg_path, sizeof svg_path, opts->out_dir, opts->file_prefix, ".svg") < 0 ||
        join_path(rev_path, sizeof rev_path, opts->out_dir, opts->file_prefix, "-reversed.svg") < 0 ||
        join_path(html_path, sizeof html_path, opts->out_dir, "index", ".html") < 0)
        return -1;

    render_data_t d;
    int rc = -1, e = 0;
    if (render_data_load(&d, opts->prof_path, opts->scratch, opts->scratch_size) < 0) goto done;
    if (opts->on_site && report_sites(&d, opts) < 0) goto done;

    char human[40], title[160], rev_title[200];
    render_fmt_human(human, d.total);
    const char *head = opts->kind == FIL_REPORT_OOM ? "Current allocations at out-of-memory time ("
                                                     : "Peak Tracked Memory Usage (";
    size_t n = strlen(head), h = strlen(human);
    memcpy(title, head, n);
    memcpy(title + n, human, h);
    memcpy(title + n + h, ")", 2);
    n = strlen(title);
    memcpy(rev_title, title, n);
    memcpy(rev_title + n, ", reversed", 11);

    emit_ctx_t c = {&d, NULL, title, NULL, render_arena_alloc(&d.arena, OUT_BUF_SIZE)};
    if (!c.buf) goto done;
    render_html_info_t info = {opts, title, 0, 0};
    if (render_one(&c, svg_path, 0, &info.rows_forward) < 0) goto done;
    c.title = rev_title;
    if (render_one(&c, rev_path, 1, &info.rows_reversed) < 0) goto done;
    c.info = &info;
    if (write_file(html_path, emit_html, &c) < 0) goto done;
    rc = 0;
done:
    e = errno;
    render_data_release(&d);
    errno = e;
    return rc;
}
