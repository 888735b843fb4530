/* escape: UTF-8 validation and context escaping for XML, HTML and JS strings (see escape.h).
 *
 * The decoder follows the well-formed byte sequences of Unicode (table 3-7): it rejects
 * overlong forms, surrogates and code points above U+10FFFF byte by byte, so a hostile file
 * name can never smuggle a '<' through an overlong encoding.
 */
#include "escape.h"

static const char replacement_utf8[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

static int is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

size_t utf8_next(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned char c = u[0];
    if (c < 0x80) { *cp = c; return 1; }
    *cp = ESC_REPLACEMENT;
    if (c < 0xC2 || c > 0xF4) return 1;
    if (c < 0xE0) {
        if (n < 2 || !is_cont(u[1])) return 1;
        *cp = ((uint32_t)(c & 0x1F) << 6) | (u[1] & 0x3F);
        return 2;
    }
    if (c < 0xF0) {
        if (n < 3 || !is_cont(u[1]) || !is_cont(u[2])) return 1;
        if (c == 0xE0 && u[1] < 0xA0) return 1;     /* overlong */
        if (c == 0xED && u[1] > 0x9F) return 1;     /* surrogate */
        *cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
        return 3;
    }
    if (n < 4 || !is_cont(u[1]) || !is_cont(u[2]) || !is_cont(u[3])) return 1;
    if (c == 0xF0 && u[1] < 0x90) return 1;         /* overlong */
    if (c == 0xF4 && u[1] > 0x8F) return 1;         /* above U+10FFFF */
    *cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
          ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
    return 4;
}

size_t utf8_count(const char *s, size_t n) {
    size_t chars = 0;
    uint32_t cp;
    for (size_t i = 0; i < n; chars++) i += utf8_next(s + i, n - i, &cp);
    return chars;
}

size_t utf8_prefix_bytes(const char *s, size_t n, size_t max_chars) {
    size_t i = 0;
    uint32_t cp;
    for (size_t chars = 0; i < n && chars < max_chars; chars++) i += utf8_next(s + i, n - i, &cp);
    return i;
}

size_t utf8_suffix_start(const char *s, size_t n, size_t max_chars) {
    size_t total = utf8_count(s, n);
    if (total <= max_chars) return 0;
    return utf8_prefix_bytes(s, n, total - max_chars);
}

/* Characters no report should carry: they are invalid in XML 1.0, or parse errors in HTML. */
static int is_unwanted(uint32_t cp) {
    if (cp < 0x20) return cp != '\t';
    if (cp >= 0x7F && cp <= 0x9F) return 1;
    if (cp >= 0xFDD0 && cp <= 0xFDEF) return 1;
    return cp == 0xFFFE || cp == 0xFFFF;
}

/* Shared loop of the two XML escapers: `attr` adds quotes and tab to the escaped set. Runs of
 * plain bytes are copied in one write, which keeps escaping cheap for long source lines. */
static void esc_xml(outbuf_t *ob, const char *s, size_t n, int attr) {
    size_t run = 0, i = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = utf8_next(s + i, n - i, &cp);
        const char *rep = NULL;
        if (cp == '&') rep = "&amp;";
        else if (cp == '<') rep = "&lt;";
        else if (cp == '>') rep = "&gt;";
        else if (attr && cp == '"') rep = "&quot;";
        else if (attr && cp == '\'') rep = "&#39;";
        else if (attr && cp == '\t') rep = "&#9;";
        int bad = cp == ESC_REPLACEMENT && len == 1;
        if (rep || bad || is_unwanted(cp)) {
            outbuf_write(ob, s + run, i - run);
            if (rep) outbuf_puts(ob, rep);
            else outbuf_write(ob, replacement_utf8, 3);
            run = i + len;
        }
        i += len;
    }
    outbuf_write(ob, s + run, n - run);
}

void esc_xml_text(outbuf_t *ob, const char *s, size_t n) { esc_xml(ob, s, n, 0); }

void esc_xml_attr(outbuf_t *ob, const char *s, size_t n) { esc_xml(ob, s, n, 1); }

static void put_u_escape(outbuf_t *ob, uint32_t cp) {
    static const char hex[] = "0123456789abcdef";
    char b[6] = {'\\', 'u', hex[(cp >> 12) & 15], hex[(cp >> 8) & 15], hex[(cp >> 4) & 15], hex[cp & 15]};
    outbuf_write(ob, b, 6);
}

void esc_js_string(outbuf_t *ob, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = utf8_next(s + i, n - i, &cp);
        if (cp == ESC_REPLACEMENT && len == 1) cp = ESC_REPLACEMENT;
        else if (is_unwanted(cp) && cp != '\n' && cp != '\r') cp = ESC_REPLACEMENT;
        switch (cp) {
        case '\\': outbuf_puts(ob, "\\\\"); break;
        case '"': outbuf_puts(ob, "\\\""); break;
        case '\'': outbuf_puts(ob, "\\'"); break;
        case '\n': outbuf_puts(ob, "\\n"); break;
        case '\r': outbuf_puts(ob, "\\r"); break;
        case '\t': outbuf_puts(ob, "\\t"); break;
        case '<': case '>': case '&': case ']': case 0x2028: case 0x2029: case ESC_REPLACEMENT:
            put_u_escape(ob, cp);
            break;
        default:
            outbuf_write(ob, s + i, len);
        }
        i += len;
    }
}
