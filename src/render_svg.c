/* render_svg: one laid-out call tree (render_tree.c) as a self-contained, interactive SVG.
 *
 * The picture is an icicle: the root ("all") on top, callees below. Every box is a <g
 * class="f"> holding a <title> (the tooltip: full path, source line, bytes), a <rect> and two
 * <text> lines (function and file:line, then the source line), fitted to the box at generation
 * time so the SVG reads well even where scripts do not run (<img>, viewers). The data the
 * script needs is in attributes: data-x/data-w (left edge and width in bytes), data-d (depth),
 * data-fn/data-loc/data-src (the strings, escaped as attributes). The script is static text:
 * no program-derived byte is ever written inside it, and it sits in CDATA anyway.
 *
 * Text fitting assumes a monospace font at 12px, about 7.3 user units per character; the same
 * rules are implemented in C (fit_label) and in the script (fitLabel) for zooming.
 */
#define FIL_RENDER_INTERNAL 1
#include "render.h"

#include <math.h>
#include <string.h>

#include "escape.h"

#define PAD 10          /* left/right margin */
#define TOP 44          /* title and controls */
#define ROW_H 34        /* one row of boxes */
#define BOX_H 32
#define BOTTOM 52       /* details bar */
#define CHAR_W 7.3

static const char ellipsis[] = "\xe2\x80\xa6";

uint32_t render_svg_height(uint32_t rows) { return TOP + rows * ROW_H + BOTTOM; }

/* What a box says: function, "file:line" (raw, from the frame text) and source line. */
typedef struct {
    const char *fn, *loc, *src;
    size_t fn_len, loc_len;
    uint32_t src_len;
    char merged_label[40];
} box_text_t;

static void box_text(render_data_t *d, const render_tree_t *t, const render_box_t *b, box_text_t *bt) {
    memset(bt, 0, sizeof *bt);
    if (b->merged) {
        size_t n = fmt_u64(bt->merged_label, b->merged);
        const char *what = b->merged == 1 ? " small frame" : " small frames";
        memcpy(bt->merged_label + n, what, strlen(what) + 1);
        bt->fn = bt->merged_label;
        bt->fn_len = strlen(bt->merged_label);
        return;
    }
    uint32_t frame = t->nodes[b->node].frame;
    if (frame == RENDER_NONE) { bt->fn = "all"; bt->fn_len = 3; return; }
    const render_frame_t *f = &d->frames[frame];
    bt->fn = f->func;
    bt->fn_len = f->func_len;
    if (f->len == 0) { bt->fn = "[empty frame]"; bt->fn_len = 13; }
    if (f->line) {
        bt->loc = f->text;
        bt->loc_len = (size_t)(f->func - f->text) - 2;   /* "FILE:LINE" before " (" */
    }
    bt->src = render_frame_source(d, frame, &bt->src_len);
}

/* s cut to max_chars characters, the last one being "…" when anything was cut. */
static void put_head(outbuf_t *ob, const char *s, size_t n, size_t max_chars) {
    if (utf8_count(s, n) <= max_chars) { esc_xml_text(ob, s, n); return; }
    if (max_chars == 0) return;
    esc_xml_text(ob, s, utf8_prefix_bytes(s, n, max_chars - 1));
    outbuf_puts(ob, ellipsis);
}

/* "fn file:line" in max_chars: the path is shortened from the left first, then fn is cut. */
static void put_label(outbuf_t *ob, const box_text_t *bt, size_t max_chars) {
    if (max_chars < 3) return;
    size_t nf = utf8_count(bt->fn, bt->fn_len);
    size_t nl = bt->loc ? utf8_count(bt->loc, bt->loc_len) : 0;
    if (!bt->loc || nf + 1 + nl <= max_chars) {
        if (!bt->loc || nf > max_chars) { put_head(ob, bt->fn, bt->fn_len, max_chars); return; }
        esc_xml_text(ob, bt->fn, bt->fn_len);
        outbuf_putc(ob, ' ');
        esc_xml_text(ob, bt->loc, bt->loc_len);
        return;
    }
    if (nf + 1 + 8 <= max_chars) {
        esc_xml_text(ob, bt->fn, bt->fn_len);
        outbuf_putc(ob, ' ');
        outbuf_puts(ob, ellipsis);
        size_t from = utf8_suffix_start(bt->loc, bt->loc_len, max_chars - nf - 2);
        esc_xml_text(ob, bt->loc + from, bt->loc_len - from);
        return;
    }
    put_head(ob, bt->fn, bt->fn_len, max_chars);
}

/* Pale yellow for a sliver of the total to deep red for all of it. sqrt spreads the small
 * shares, which are most boxes, over more of the scale; no randomness, so runs compare. */
static double heat(uint64_t part, uint64_t total) {
    return total ? sqrt((double)part / (double)total) : 0.0;
}

static void put_fill(outbuf_t *ob, double t) {
    static const int lo[3] = {255, 242, 184}, hi[3] = {176, 22, 12};
    outbuf_puts(ob, "rgb(");
    for (int i = 0; i < 3; i++) {
        if (i) outbuf_putc(ob, ',');
        outbuf_u64(ob, (uint64_t)(lo[i] + (hi[i] - lo[i]) * t + 0.5));
    }
    outbuf_putc(ob, ')');
}

static void put_px(outbuf_t *ob, uint64_t bytes, uint64_t total) {
    double span = RENDER_WIDTH - 2 * PAD;
    outbuf_fixed(ob, total ? (double)bytes * span / (double)total : 0.0, 1);
}

static void put_box(outbuf_t *ob, render_data_t *d, const render_tree_t *t, const render_box_t *b) {
    uint64_t total = t->nodes[0].total;
    box_text_t bt;
    box_text(d, t, b, &bt);
    double xpx = PAD + (total ? (double)b->x * (RENDER_WIDTH - 2 * PAD) / (double)total : 0.0);
    double wpx = total ? (double)b->w * (RENDER_WIDTH - 2 * PAD) / (double)total : 0.0;
    uint32_t y = TOP + b->depth * ROW_H;
    double h = heat(b->w, total);

    outbuf_puts(ob, "<g class=\"f\" data-x=\"");
    outbuf_u64(ob, b->x);
    outbuf_puts(ob, "\" data-w=\"");
    outbuf_u64(ob, b->w);
    outbuf_puts(ob, "\" data-d=\"");
    outbuf_u64(ob, b->depth);
    if (b->merged) {
        outbuf_puts(ob, "\" data-m=\"");
        outbuf_u64(ob, b->merged);
    }
    outbuf_puts(ob, "\" data-fn=\"");
    esc_xml_attr(ob, bt.fn, bt.fn_len);
    outbuf_puts(ob, "\" data-loc=\"");
    if (bt.loc) esc_xml_attr(ob, bt.loc, bt.loc_len);
    outbuf_puts(ob, "\" data-src=\"");
    if (bt.src) esc_xml_attr(ob, bt.src, bt.src_len);
    outbuf_puts(ob, "\"><title>");
    esc_xml_text(ob, bt.fn, bt.fn_len);
    if (bt.loc) { outbuf_putc(ob, '\n'); esc_xml_text(ob, bt.loc, bt.loc_len); }
    if (bt.src) { outbuf_putc(ob, '\n'); esc_xml_text(ob, bt.src, bt.src_len); }
    outbuf_putc(ob, '\n');
    render_human_bytes(ob, b->w);
    outbuf_puts(ob, " (");
    render_percent(ob, b->w, total, 2);
    outbuf_puts(ob, "%)</title><rect x=\"");
    outbuf_fixed(ob, xpx, 1);
    outbuf_puts(ob, "\" y=\"");
    outbuf_u64(ob, y);
    outbuf_puts(ob, "\" width=\"");
    put_px(ob, b->w, total);
    outbuf_puts(ob, "\" height=\"" );
    outbuf_u64(ob, BOX_H);
    outbuf_puts(ob, "\" fill=\"");
    if (b->merged) outbuf_puts(ob, "rgb(214,214,214)");
    else put_fill(ob, h);
    outbuf_puts(ob, b->merged || h < 0.6 ? "\"/><text class=\"l\" x=\"" : "\"/><text class=\"l dark\" x=\"");
    outbuf_fixed(ob, xpx + 3, 1);
    outbuf_puts(ob, "\" y=\"");
    outbuf_u64(ob, y + 13);
    outbuf_puts(ob, "\">");
    size_t max_chars = wpx > 6 ? (size_t)((wpx - 6) / CHAR_W) : 0;
    put_label(ob, &bt, max_chars);
    outbuf_puts(ob, b->merged || h < 0.6 ? "</text><text class=\"s\" x=\"" : "</text><text class=\"s dark\" x=\"");
    outbuf_fixed(ob, xpx + 3, 1);
    outbuf_puts(ob, "\" y=\"");
    outbuf_u64(ob, y + 27);
    outbuf_puts(ob, "\">");
    if (bt.src && max_chars >= 3) put_head(ob, bt.src, bt.src_len, max_chars);
    outbuf_puts(ob, "</text></g>\n");
}

static const char svg_style[] =
    "<style>\n"
    "text { font-family: \"DejaVu Sans Mono\", Menlo, Consolas, monospace; font-size: 12px; fill: #222; }\n"
    "text.l, text.s { white-space: pre; pointer-events: none; }\n"
    "text.s { fill: #444; }\n"
    "text.dark { fill: #fff; }\n"
    "#title { font-size: 16px; font-family: sans-serif; }\n"
    ".btn { cursor: pointer; fill: #1a4f9c; text-decoration: underline; }\n"
    "g.f { cursor: pointer; }\n"
    "g.f:hover rect { stroke: #000; stroke-width: 0.8; }\n"
    "</style>\n";

/* Static: reads everything from attributes. Kept free of "]]>" and "</" by construction. */
static const char svg_script[] =
    "<script type=\"text/ecmascript\"><![CDATA[\n"
    "(function () {\n"
    "\"use strict\";\n"
    "var W = 1200, PAD = 10, CW = 7.3;\n"
    "var svg = document.documentElement;\n"
    "var total = Number(svg.getAttribute(\"data-total\"));\n"
    "var details = document.getElementById(\"details\"), details2 = document.getElementById(\"details2\");\n"
    "var resetBtn = document.getElementById(\"reset\"), searchBtn = document.getElementById(\"search\");\n"
    "var matched = document.getElementById(\"matched\");\n"
    "var items = Array.prototype.map.call(document.querySelectorAll(\"g.f\"), function (g) {\n"
    "  var t = g.getElementsByTagName(\"text\");\n"
    "  var r = g.getElementsByTagName(\"rect\")[0];\n"
    "  return { g: g, r: r, l: t[0], s: t[1], fill: r.getAttribute(\"fill\"),\n"
    "           x: Number(g.getAttribute(\"data-x\")), w: Number(g.getAttribute(\"data-w\")),\n"
    "           d: Number(g.getAttribute(\"data-d\")), merged: g.hasAttribute(\"data-m\"),\n"
    "           fn: g.getAttribute(\"data-fn\"), loc: g.getAttribute(\"data-loc\"),\n"
    "           src: g.getAttribute(\"data-src\") };\n"
    "});\n"
    "function human(b) {\n"
    "  if (b < 1024) return b + \" B\";\n"
    "  var u = [\"KiB\", \"MiB\", \"GiB\", \"TiB\", \"PiB\", \"EiB\"], i = 0;\n"
    "  b /= 1024;\n"
    "  while (b >= 1023.95 && i < 5) { b /= 1024; i++; }\n"
    "  return b.toFixed(1) + \" \" + u[i];\n"
    "}\n"
    "function pct(b) { return (total ? 100 * b / total : 0).toFixed(2) + \"%\"; }\n"
    "function chars(s) { return Array.from(s); }\n"
    "function head(s, n) {\n"
    "  var c = chars(s);\n"
    "  if (c.length <= n) return s;\n"
    "  return n < 1 ? \"\" : c.slice(0, n - 1).join(\"\") + \"\\u2026\";\n"
    "}\n"
    "function fitLabel(fn, loc, n) {\n"
    "  if (n < 3) return \"\";\n"
    "  var nf = chars(fn).length, cl = chars(loc);\n"
    "  if (!loc || nf + 1 + cl.length <= n) return !loc || nf > n ? head(fn, n) : fn + \" \" + loc;\n"
    "  if (nf + 1 + 8 <= n) return fn + \" \\u2026\" + cl.slice(cl.length - (n - nf - 2)).join(\"\");\n"
    "  return head(fn, n);\n"
    "}\n"
    "function draw(o, x, w) {\n"
    "  o.r.setAttribute(\"x\", x.toFixed(1));\n"
    "  o.r.setAttribute(\"width\", w.toFixed(1));\n"
    "  o.l.setAttribute(\"x\", (x + 3).toFixed(1));\n"
    "  o.s.setAttribute(\"x\", (x + 3).toFixed(1));\n"
    "  var n = w > 6 ? Math.floor((w - 6) / CW) : 0;\n"
    "  o.l.textContent = fitLabel(o.fn, o.loc, n);\n"
    "  o.s.textContent = n >= 3 ? head(o.src, n) : \"\";\n"
    "}\n"
    "function zoom(z) {\n"
    "  if (!(z.w > 0)) return;\n"
    "  var lo = z.x, hi = z.x + z.w, scale = (W - 2 * PAD) / z.w;\n"
    "  items.forEach(function (o) {\n"
    "    var show;\n"
    "    if (o.d < z.d) {\n"
    "      show = o.x <= lo && o.x + o.w >= hi;\n"
    "      if (show) draw(o, PAD, W - 2 * PAD);\n"
    "    } else {\n"
    "      show = o.x >= lo && o.x + o.w <= hi && o.w * scale >= 0.5;\n"
    "      if (show) draw(o, PAD + (o.x - lo) * scale, o.w * scale);\n"
    "    }\n"
    "    o.g.style.display = show ? \"\" : \"none\";\n"
    "  });\n"
    "  resetBtn.style.display = z === items[0] ? \"none\" : \"\";\n"
    "}\n"
    "function describe(o) {\n"
    "  details.textContent = o.fn + (o.loc ? \"  \" + o.loc : \"\") + \"  \" + human(o.w) + \" (\" + pct(o.w) + \")\";\n"
    "  details2.textContent = o.src;\n"
    "}\n"
    "function search(term) {\n"
    "  term = (term || \"\").toLowerCase();\n"
    "  var ranges = [];\n"
    "  items.forEach(function (o) {\n"
    "    var hit = term !== \"\" && o.d > 0 && !o.merged &&\n"
    "      (o.fn.toLowerCase().indexOf(term) >= 0 || o.loc.toLowerCase().indexOf(term) >= 0 ||\n"
    "       o.src.toLowerCase().indexOf(term) >= 0);\n"
    "    o.r.setAttribute(\"fill\", hit ? \"rgb(224,64,224)\" : o.fill);\n"
    "    if (hit) ranges.push([o.x, o.x + o.w]);\n"
    "  });\n"
    "  ranges.sort(function (a, b) { return a[0] - b[0] || b[1] - a[1]; });\n"
    "  var sum = 0, end = -1;\n"
    "  ranges.forEach(function (r) {\n"
    "    if (r[0] >= end) { sum += r[1] - r[0]; end = r[1]; }\n"
    "    else if (r[1] > end) { sum += r[1] - end; end = r[1]; }\n"
    "  });\n"
    "  matched.textContent = term ? \"Matched: \" + pct(sum) + \" of total\" : \"\";\n"
    "  searchBtn.textContent = term ? \"Clear search\" : \"Search\";\n"
    "  return total ? sum / total : 0;\n"
    "}\n"
    "items.forEach(function (o) {\n"
    "  o.g.addEventListener(\"mouseover\", function () { describe(o); });\n"
    "  o.g.addEventListener(\"click\", function () { zoom(o); });\n"
    "});\n"
    "resetBtn.addEventListener(\"click\", function () { zoom(items[0]); });\n"
    "searchBtn.addEventListener(\"click\", function () {\n"
    "  if (searchBtn.textContent !== \"Search\") { search(\"\"); return; }\n"
    "  var term = window.prompt(\"Search frames (function, file or source text):\", \"\");\n"
    "  if (term) search(term);\n"
    "});\n"
    "document.addEventListener(\"keydown\", function (e) {\n"
    "  if (e.key === \"Escape\") { zoom(items[0]); search(\"\"); }\n"
    "});\n"
    "window.filZoom = function (i) { zoom(items[i]); };\n"
    "window.filSearch = search;\n"
    "})();\n"
    "]]></script>\n";

int render_svg_write(render_data_t *d, render_tree_t *t, int fd, const char *title, char *buf, size_t bufsize) {
    outbuf_t ob;
    outbuf_init(&ob, fd, buf, bufsize);
    uint32_t height = render_svg_height(t->rows);
    uint64_t total = t->nodes[0].total;

    outbuf_puts(&ob, "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
                     "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" xml:space=\"preserve\" width=\"100%\" viewBox=\"0 0 ");
    outbuf_u64(&ob, RENDER_WIDTH);
    outbuf_putc(&ob, ' ');
    outbuf_u64(&ob, height);
    outbuf_puts(&ob, "\" preserveAspectRatio=\"xMidYMin meet\" data-total=\"");
    outbuf_u64(&ob, total);
    outbuf_puts(&ob, "\" data-reversed=\"");
    outbuf_u64(&ob, (uint64_t)t->reversed);
    outbuf_puts(&ob, "\">\n<title>");
    esc_xml_text(&ob, title, strlen(title));
    outbuf_puts(&ob, "</title>\n");
    outbuf_puts(&ob, svg_style);
    outbuf_puts(&ob, "<rect x=\"0\" y=\"0\" width=\"100%\" height=\"100%\" fill=\"#fbfbf7\"/>\n"
                     "<text id=\"title\" x=\"600\" y=\"26\" text-anchor=\"middle\">");
    esc_xml_text(&ob, title, strlen(title));
    outbuf_puts(&ob, "</text>\n"
                     "<text id=\"reset\" class=\"btn\" x=\"10\" y=\"26\" style=\"display:none\">Reset zoom</text>\n"
                     "<text id=\"search\" class=\"btn\" x=\"1190\" y=\"26\" text-anchor=\"end\">Search</text>\n"
                     "<g id=\"frames\">\n");
    if (total == 0)
        outbuf_puts(&ob, "<text x=\"600\" y=\"70\" text-anchor=\"middle\">No allocations were recorded.</text>\n");
    for (uint32_t i = 0; i < t->nboxes; i++) put_box(&ob, d, t, &t->boxes[i]);
    outbuf_puts(&ob, "</g>\n<rect x=\"0\" y=\"");
    outbuf_u64(&ob, height - BOTTOM + 4);
    outbuf_puts(&ob, "\" width=\"100%\" height=\"");
    outbuf_u64(&ob, BOTTOM - 4);
    outbuf_puts(&ob, "\" fill=\"#eeeee6\"/>\n<text id=\"details\" x=\"10\" y=\"");
    outbuf_u64(&ob, height - BOTTOM + 22);
    outbuf_puts(&ob, "\" style=\"white-space:pre\">Hover over a frame for details; click to zoom.</text>\n"
                     "<text id=\"details2\" x=\"10\" y=\"");
    outbuf_u64(&ob, height - BOTTOM + 40);
    outbuf_puts(&ob, "\" style=\"white-space:pre\"> </text>\n<text id=\"matched\" x=\"1190\" y=\"");
    outbuf_u64(&ob, height - BOTTOM + 22);
    outbuf_puts(&ob, "\" text-anchor=\"end\"> </text>\n");
    outbuf_puts(&ob, svg_script);
    outbuf_puts(&ob, "</svg>\n");
    return outbuf_flush(&ob);
}
