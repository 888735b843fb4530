/* fuzz_render: a libFuzzer harness over the report renderer (fil_render_report).
 *
 * Input: the bytes of a .prof (collapsed stacks), as a profiled program could make them:
 * frame names come from file and function names the profiler does not control. Each input is
 * written to a file in a private temporary directory and rendered there; then every file the
 * renderer produced is checked:
 *   - it is valid UTF-8 without control characters XML forbids;
 *   - its markup is well-formed: every '<' opens a known construct (tag, end tag, comment,
 *     CDATA, declaration), end tags match their start tags, attribute values are quoted and
 *     hold no '<', every '&' starts a character reference, no `]]>` in character data;
 *   - it holds exactly as many <script> elements as the report of a harmless input (so no
 *     program-derived text ever opened a script).
 * A violation aborts, which libFuzzer reports as a crash with the input saved. Crashes,
 * leaks and undefined behaviour inside the renderer are caught by ASan/UBSan (built by
 * tests/fuzz/run.sh). Note that the renderer takes its working memory from mmap, which ASan
 * does not instrument: an overrun inside one of its chunks is caught only if it leaves the
 * chunk or corrupts the output.
 *
 * The input's length picks the mode, so the corpus files stay plain .prof files: odd lengths
 * render from a fixed scratch block (as the out-of-memory path does), lengths 1 mod 3 render
 * an out-of-memory report with a hostile note. A hostile source file `s.py` sits in the
 * working directory so frames naming it (`s.py:3 (f)`) exercise the source-line display.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "render.h"

#define HOSTILE_CMD "fil-profile run 'x</script><script>alert(1)</script>]]>&amp;\"\t\xff\xfe.py'"
#define HOSTILE_NOTE "note </title><script>alert(2)</script> ]]> & \x01\x80 <!-- -->"

static const char SOURCE_TEXT[] =
    "# -*- coding: latin-1 -*-\n"
    "x = '</script><script>alert(3)</script>'\n"
    "def f(): return \"]]> <![CDATA[ & &amp; <b>\"\t# caf\xe9 \xff\n"
    "\t\t\x01\x02\x7f tabs and controls \xed\xa0\x80 surrogate \xc0\xaf overlong\n";

static char work_dir[] = "/tmp/fil-fuzz-XXXXXX";
static char prof_path[256], out_dir[256];
static int baseline_scripts[3] = {-1, -1, -1};

static const char *const OUTPUTS[3] = {"peak-memory.svg", "peak-memory-reversed.svg", "index.html"};
static const char *const OOM_OUTPUTS[3] = {"out-of-memory.svg", "out-of-memory-reversed.svg",
                                           "index.html"};

static void fail(const char *file, const char *what, size_t at) {
    fprintf(stderr, "fuzz_render: %s: %s at byte %zu\n", file, what, at);
    abort();
}

static void write_all(const char *path, const void *data, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) { perror(path); abort(); }
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { perror(path); abort(); }
        p += w;
        n -= (size_t)w;
    }
    close(fd);
}

/* The whole file, NUL-terminated, from malloc; NULL if it does not exist. */
static char *read_all(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) < 0) abort();
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) abort();
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) abort();
        got += (size_t)r;
    }
    close(fd);
    buf[got] = 0;
    *len = got;
    return buf;
}

/* Valid UTF-8 (no overlongs, surrogates or values above U+10FFFF), no C0 controls except
 * tab/LF/CR, no DEL..C1 controls, no U+FFFE/U+FFFF. */
static void check_text(const char *file, const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c < 0x80) {
            if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f)
                fail(file, "control character", i);
            i++;
            continue;
        }
        size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        if (c < 0xC2 || c > 0xF4 || i + len > n) fail(file, "invalid UTF-8 lead byte", i);
        uint32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) fail(file, "invalid UTF-8 continuation", i + k);
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            fail(file, "overlong, surrogate or out-of-range UTF-8", i);
        if ((cp >= 0x80 && cp <= 0x9F) || cp == 0xFFFE || cp == 0xFFFF)
            fail(file, "C1 control or noncharacter", i);
        i += len;
    }
}

static int is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == ':' || c == '.';
}

/* '&' at s[i]: a character reference `&name;`, `&#123;` or `&#x1F;`. Returns its length. */
static size_t check_entity(const char *file, const char *s, size_t n, size_t i) {
    size_t j = i + 1;
    if (j < n && s[j] == '#') {
        j++;
        int hex = j < n && (s[j] == 'x' || s[j] == 'X');
        if (hex) j++;
        size_t start = j;
        while (j < n && (hex ? (s[j] >= '0' && s[j] <= '9') || ((s[j] | 32) >= 'a' && (s[j] | 32) <= 'f')
                             : (s[j] >= '0' && s[j] <= '9')))
            j++;
        if (j == start) fail(file, "empty numeric character reference", i);
    } else {
        size_t start = j;
        while (j < n && ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z'))) j++;
        if (j == start) fail(file, "bare '&'", i);
    }
    if (j >= n || s[j] != ';') fail(file, "unterminated character reference", i);
    return j + 1 - i;
}

static size_t find(const char *s, size_t n, size_t from, const char *needle) {
    const char *p = memmem(s + from, n - from, needle, strlen(needle));
    return p ? (size_t)(p - s) : (size_t)-1;
}

static int is_void_html(const char *name, size_t len) {
    static const char *const VOID[] = {"meta", "br", "hr", "img", "input", "link", "col", "wbr",
                                       "area", "base", "source", NULL};
    for (int k = 0; VOID[k]; k++)
        if (strlen(VOID[k]) == len && strncasecmp(VOID[k], name, len) == 0) return 1;
    return 0;
}

#define MAX_DEPTH 256

/* Well-formed markup (see the top of the file); returns the number of <script> elements. */
static int check_markup(const char *file, const char *s, size_t n, int html) {
    const char *stack[MAX_DEPTH];
    size_t stack_len[MAX_DEPTH];
    int depth = 0, scripts = 0;
    size_t i = 0;
    while (i < n) {
        if (s[i] == '&') { i += check_entity(file, s, n, i); continue; }
        if (s[i] == ']' && n - i >= 3 && memcmp(s + i, "]]>", 3) == 0)
            fail(file, "']]>' in character data", i);
        if (s[i] != '<') { i++; continue; }
        size_t at = i, end;
        if (n - i >= 4 && memcmp(s + i, "<!--", 4) == 0) {
            if ((end = find(s, n, i + 4, "-->")) == (size_t)-1) fail(file, "unterminated comment", at);
            i = end + 3;
        } else if (n - i >= 9 && memcmp(s + i, "<![CDATA[", 9) == 0) {
            if (html) fail(file, "CDATA in HTML", at);
            if ((end = find(s, n, i + 9, "]]>")) == (size_t)-1) fail(file, "unterminated CDATA", at);
            i = end + 3;
        } else if (n - i >= 2 && (s[i + 1] == '!' || s[i + 1] == '?')) {
            if ((end = find(s, n, i + 2, ">")) == (size_t)-1) fail(file, "unterminated declaration", at);
            i = end + 1;
        } else if (n - i >= 2 && s[i + 1] == '/') {
            size_t j = i + 2, start = j;
            while (j < n && is_name_char(s[j])) j++;
            if (j == start || j >= n || s[j] != '>') fail(file, "malformed end tag", at);
            if (depth == 0 || stack_len[depth - 1] != j - start ||
                memcmp(stack[depth - 1], s + start, j - start) != 0)
                fail(file, "end tag does not match the open element", at);
            depth--;
            i = j + 1;
        } else {
            size_t j = i + 1, start = j;
            while (j < n && is_name_char(s[j])) j++;
            size_t name_len = j - start;
            if (name_len == 0) fail(file, "'<' that starts no tag", at);
            for (;;) {  /* attributes */
                while (j < n && (s[j] == ' ' || s[j] == '\n' || s[j] == '\t' || s[j] == '\r')) j++;
                if (j >= n) fail(file, "unterminated tag", at);
                if (s[j] == '>' || (s[j] == '/' && j + 1 < n && s[j + 1] == '>')) break;
                size_t a = j;
                while (j < n && is_name_char(s[j])) j++;
                if (j == a) fail(file, "malformed attribute", j);
                if (j < n && s[j] == '=') {
                    j++;
                    if (j >= n || (s[j] != '"' && s[j] != '\'')) fail(file, "unquoted attribute value", j);
                    char q = s[j++];
                    while (j < n && s[j] != q) {
                        if (s[j] == '<') fail(file, "'<' in attribute value", j);
                        if (s[j] == '&') { j += check_entity(file, s, n, j); continue; }
                        j++;
                    }
                    if (j >= n) fail(file, "unterminated attribute value", at);
                    j++;
                } else if (!html) {
                    fail(file, "attribute without value in XML", a);
                }
            }
            int self_closing = s[j] == '/';
            i = j + (self_closing ? 2 : 1);
            const char *name = s + start;
            int is_script = name_len == 6 && strncasecmp(name, "script", 6) == 0;
            int is_style = name_len == 5 && strncasecmp(name, "style", 5) == 0;
            if (is_script) scripts++;
            if (self_closing || (html && is_void_html(name, name_len))) continue;
            if (is_script || is_style) {
                /* Raw text up to the matching end tag; in SVG it may be wrapped in CDATA. */
                const char *close = is_script ? "</script>" : "</style>";
                if ((end = find(s, n, i, close)) == (size_t)-1) fail(file, "unterminated script/style", at);
                if (!html) {
                    size_t c = find(s, end, i, "<![CDATA[");
                    size_t raw_end = c == (size_t)-1 ? end : c;
                    if (memchr(s + i, '<', raw_end - i)) fail(file, "'<' in SVG script outside CDATA", i);
                }
                i = end + strlen(close);
                continue;
            }
            if (depth == MAX_DEPTH) fail(file, "elements nested too deeply", at);
            stack[depth] = name;
            stack_len[depth++] = name_len;
        }
    }
    if (depth != 0) fail(file, "unclosed element at end of file", n);
    return scripts;
}

/* Check every output; on the first call, remember how many scripts a report holds. */
static void check_outputs(int oom) {
    for (int k = 0; k < 3; k++) {
        char path[512];
        const char *name = oom ? OOM_OUTPUTS[k] : OUTPUTS[k];
        snprintf(path, sizeof path, "%s/%s", out_dir, name);
        size_t len;
        char *buf = read_all(path, &len);
        if (!buf) fail(name, "missing after a successful render", 0);
        check_text(name, (const unsigned char *)buf, len);
        int scripts = check_markup(name, buf, len, k == 2);
        if (baseline_scripts[k] < 0) baseline_scripts[k] = scripts;
        else if (scripts != baseline_scripts[k]) fail(name, "number of <script> elements changed", 0);
        free(buf);
        unlink(path);
    }
}

static int render(int oom, int use_scratch, size_t input_size) {
    fil_render_opts_t o = {
        .prof_path = prof_path,
        .out_dir = out_dir,
        .file_prefix = oom ? "out-of-memory" : "peak-memory",
        .kind = oom ? FIL_REPORT_OOM : FIL_REPORT_PEAK,
        .command_line = HOSTILE_CMD,
        .extra_note = oom ? HOSTILE_NOTE : NULL,
    };
    void *scratch = NULL;
    if (use_scratch) {
        o.scratch_size = fil_render_scratch_hint(input_size);
        scratch = malloc(o.scratch_size);
        if (!scratch) abort();
        o.scratch = scratch;
    }
    int rc = fil_render_report(&o);
    int e = errno;
    free(scratch);
    errno = e;
    return rc;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (!mkdtemp(work_dir)) { perror("mkdtemp"); abort(); }
    snprintf(prof_path, sizeof prof_path, "%s/input.prof", work_dir);
    snprintf(out_dir, sizeof out_dir, "%s/out", work_dir);
    if (mkdir(out_dir, 0755) < 0) { perror(out_dir); abort(); }
    char src[256];
    snprintf(src, sizeof src, "%s/s.py", work_dir);
    write_all(src, SOURCE_TEXT, sizeof SOURCE_TEXT - 1);
    if (chdir(work_dir) < 0) { perror(work_dir); abort(); }
    /* The baseline: a harmless report for each kind sets the expected <script> counts. */
    static const char harmless[] = "a.py:1 (<module>);a.py:2 (f) 100\n";
    write_all(prof_path, harmless, sizeof harmless - 1);
    if (render(0, 0, sizeof harmless - 1) < 0) { perror("baseline render"); abort(); }
    check_outputs(0);
    if (render(1, 0, sizeof harmless - 1) < 0) { perror("baseline oom render"); abort(); }
    check_outputs(1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int use_scratch = size % 2 == 1;
    int oom = size % 3 == 1;
    write_all(prof_path, data, size);
    if (render(oom, use_scratch, size) == 0) {
        check_outputs(oom);
    } else if (errno != ENOMEM || !use_scratch) {
        /* Only a fixed scratch block may run out; anything else is a renderer failure. */
        fprintf(stderr, "fuzz_render: render failed: %s\n", strerror(errno));
        abort();
    }
    return 0;
}
