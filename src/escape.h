/* escape: writing program-derived bytes safely into SVG, HTML and JavaScript.
 *
 * Everything the report shows that came from the profiled program (source lines, file and
 * function names, the command line) is untrusted bytes: it may be invalid UTF-8, hold
 * control characters, or try to close the element it sits in (`</text><script>`, `]]>`).
 * These writers validate UTF-8 (each byte of an invalid sequence becomes U+FFFD), replace
 * control characters other than tab (and C1 controls, U+FFFE/U+FFFF, U+FDD0..U+FDEF) by
 * U+FFFD, and escape what is special in the target context. Output is always valid UTF-8.
 * Nothing here allocates.
 */
#ifndef FIL_ESCAPE_H
#define FIL_ESCAPE_H

#include <stddef.h>
#include <stdint.h>

#include "outbuf.h"

#define ESC_REPLACEMENT 0xFFFDu

/* Decode one code point from s[0..n), n > 0. Returns the bytes consumed (1..4) and sets *cp.
 * An invalid, overlong, surrogate or truncated sequence consumes exactly one byte and yields
 * ESC_REPLACEMENT, so every byte is accounted for and scanning always makes progress. */
size_t utf8_next(const char *s, size_t n, uint32_t *cp);

/* Number of code points in s[0..n), counting each invalid byte as one (as it will be shown). */
size_t utf8_count(const char *s, size_t n);

/* Byte length of the longest prefix of s[0..n) holding at most max_chars code points. */
size_t utf8_prefix_bytes(const char *s, size_t n, size_t max_chars);

/* Byte offset where the last max_chars code points of s[0..n) begin (0 if s is shorter). */
size_t utf8_suffix_start(const char *s, size_t n, size_t max_chars);

/* XML/HTML character data: escapes & < > (so `]]>` cannot appear). Tab is kept. */
void esc_xml_text(outbuf_t *ob, const char *s, size_t n);

/* XML/HTML attribute value inside double or single quotes: as text, plus " ' and tab
 * (written as &#9; so attribute normalisation keeps it). */
void esc_xml_attr(outbuf_t *ob, const char *s, size_t n);

/* Body of a JavaScript string literal (either quote style), safe inside <script> and inside a
 * CDATA section: escapes \ " ' and controls, and writes < > & ] U+2028 U+2029 as \uXXXX, so
 * neither `</script>` nor `]]>` can be produced. */
void esc_js_string(outbuf_t *ob, const char *s, size_t n);

#endif
