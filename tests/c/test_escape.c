/* Unit tests for escape.c: UTF-8 validation and XML/JS escaping of hostile strings. */
#include <string.h>

#include "escape.h"
#include "testhelper.h"

static char out[4096];

/* Run an escaper into `out` through an outbuf whose staging buffer is big enough never to
 * flush (fd 1 is valid but never written). */
static const char *run(void (*esc)(outbuf_t *, const char *, size_t), const char *s, size_t n) {
    outbuf_t ob;
    outbuf_init(&ob, 1, out, sizeof out - 1);
    esc(&ob, s, n);
    out[ob.len] = '\0';
    return out;
}
#define RUN(esc, lit) run(esc, lit, sizeof(lit) - 1)

static void test_utf8(void) {
    uint32_t cp;
    CHECK_EQ_U(utf8_next("A", 1, &cp), 1); CHECK_EQ_U(cp, 'A');
    CHECK_EQ_U(utf8_next("\xc3\xa9", 2, &cp), 2); CHECK_EQ_U(cp, 0xE9);
    CHECK_EQ_U(utf8_next("\xe2\x86\x92", 3, &cp), 3); CHECK_EQ_U(cp, 0x2192);
    CHECK_EQ_U(utf8_next("\xf0\x9f\x98\x80", 4, &cp), 4); CHECK_EQ_U(cp, 0x1F600);
    /* invalid: lone continuation, overlong '<', surrogate, truncated, > U+10FFFF, 0xFF */
    CHECK_EQ_U(utf8_next("\x80", 1, &cp), 1); CHECK_EQ_U(cp, ESC_REPLACEMENT);
    CHECK_EQ_U(utf8_next("\xc0\xbc", 2, &cp), 1); CHECK_EQ_U(cp, ESC_REPLACEMENT);
    CHECK_EQ_U(utf8_next("\xe0\x80\xbc", 3, &cp), 1); CHECK_EQ_U(cp, ESC_REPLACEMENT);
    CHECK_EQ_U(utf8_next("\xed\xa0\x80", 3, &cp), 1); CHECK_EQ_U(cp, ESC_REPLACEMENT);
    CHECK_EQ_U(utf8_next("\xe2\x86", 2, &cp), 1); CHECK_EQ_U(cp, ESC_REPLACEMENT);
    CHECK_EQ_U(utf8_next("\xf4\x90\x80\x80", 4, &cp), 1); CHECK_EQ_U(cp, ESC_REPLACEMENT);
    CHECK_EQ_U(utf8_next("\xff", 1, &cp), 1); CHECK_EQ_U(cp, ESC_REPLACEMENT);
    CHECK_EQ_U(utf8_count("a\xc3\xa9\xff" "b", 5), 4);
    CHECK_EQ_U(utf8_prefix_bytes("\xc3\xa9\xc3\xa9\xc3\xa9", 6, 2), 4);
    CHECK_EQ_U(utf8_prefix_bytes("abc", 3, 10), 3);
    CHECK_EQ_U(utf8_suffix_start("\xc3\xa9" "abc", 5, 2), 3);
    CHECK_EQ_U(utf8_suffix_start("abc", 3, 5), 0);
}

static void test_xml(void) {
    CHECK(strcmp(RUN(esc_xml_text, "a<b>&c"), "a&lt;b&gt;&amp;c") == 0);
    CHECK(strcmp(RUN(esc_xml_text, "</text><script>alert(1)</script>"),
                 "&lt;/text&gt;&lt;script&gt;alert(1)&lt;/script&gt;") == 0);
    CHECK(strcmp(RUN(esc_xml_text, "x]]>y"), "x]]&gt;y") == 0);
    CHECK(strcmp(RUN(esc_xml_text, "q\"'\t"), "q\"'\t") == 0);            /* text keeps quotes, tab */
    CHECK(strcmp(RUN(esc_xml_attr, "q\"'\t<"), "q&quot;&#39;&#9;&lt;") == 0);
    CHECK(strcmp(RUN(esc_xml_text, "bad\xff!"), "bad\xef\xbf\xbd!") == 0);
    CHECK(strcmp(RUN(esc_xml_text, "\xc0\xbc"), "\xef\xbf\xbd\xef\xbf\xbd") == 0);  /* overlong '<' */
    CHECK(strcmp(RUN(esc_xml_text, "nul\x01" "bell\x07" "nl\n"), "nul\xef\xbf\xbd" "bell\xef\xbf\xbd" "nl\xef\xbf\xbd") == 0);
    CHECK(strcmp(RUN(esc_xml_text, "c1\xc2\x85"), "c1\xef\xbf\xbd") == 0);
    CHECK(strcmp(RUN(esc_xml_text, "\xef\xbf\xbe"), "\xef\xbf\xbd") == 0);        /* U+FFFE */
    CHECK(strcmp(RUN(esc_xml_text, "caf\xc3\xa9 \xe2\x86\x92"), "caf\xc3\xa9 \xe2\x86\x92") == 0);
    const char nul[] = {'a', '\0', 'b'};
    CHECK(strcmp(run(esc_xml_text, nul, 3), "a\xef\xbf\xbd" "b") == 0);
    CHECK(strcmp(RUN(esc_xml_text, ""), "") == 0);
}

static void test_js(void) {
    CHECK(strcmp(RUN(esc_js_string, "a\"b'c\\d"), "a\\\"b\\'c\\\\d") == 0);
    CHECK(strcmp(RUN(esc_js_string, "</script>"), "\\u003c/script\\u003e") == 0);
    CHECK(strcmp(RUN(esc_js_string, "]]>"), "\\u005d\\u005d\\u003e") == 0);
    CHECK(strcmp(RUN(esc_js_string, "\n\r\t&"), "\\n\\r\\t\\u0026") == 0);
    CHECK(strcmp(RUN(esc_js_string, "\xe2\x80\xa8"), "\\u2028") == 0);
    CHECK(strcmp(RUN(esc_js_string, "x\xff\x01"), "x\\ufffd\\ufffd") == 0);
    CHECK(strcmp(RUN(esc_js_string, "\xc3\xa9"), "\xc3\xa9") == 0);
    CHECK(strstr(RUN(esc_js_string, "</SCRIPT ]]> <!--"), "<") == NULL);
}

int main(void) {
    test_utf8();
    test_xml();
    test_js();
    return test_report("test_escape");
}
