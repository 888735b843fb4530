/* oom.c: out-of-memory detection and the emergency report.
 *
 * Two kinds of event end a profiled program with an out-of-memory report:
 *   - an intercepted allocation fails (hooks.c, pyalloc.c call _fil_oom_on_failure);
 *   - the early check finds available memory under a threshold, before the kernel's OOM killer
 *     would end the process without a word.
 *
 * The early check stays off the hot path. track.c subtracts each tracked allocation's size
 * from _fil_oom_countdown under the lock it already holds (one subtraction and one compare) and
 * calls _fil_oom_poll() when it goes negative. The poll reads the memory figures (prim.h:
 * MemAvailable, the memory cgroup, RLIMIT_AS) and sets the next countdown from the headroom
 * above the threshold: a quarter of it, between 1 MiB and 64 MiB. On a healthy machine that is
 * one read of a few /proc files per 64 MiB allocated; close to the threshold the checks come
 * closer together, so the overshoot is at most about 1 MiB plus one allocation.
 *
 * Bytes allocated since the last reading are not yet in MemAvailable or the cgroup's usage
 * (pages count once touched): a single huge array is typically allocated, then filled, and the
 * fill is what the kernel kills. So those bytes are subtracted from the system and cgroup
 * figures (not from the address-space figure: the virtual size already includes them).
 *
 * The threshold, per figure, is 1% of that figure's limit, at least 64 MiB and at most 512 MiB,
 * and never more than a tenth of the limit (a 200 MiB container keeps 20 MiB). A user who
 * knows better sets one threshold for all figures (FIL_OOM_THRESHOLD_MIB, from
 * `--oom-threshold`); FIL_DISABLE_OOM_DETECTION=1 (`--disable-oom-detection`) turns the early
 * check off, while failed allocations still report.
 *
 * The report is written with almost nothing left: no Python (the failing allocation may come
 * from inside the interpreter with any lock held), no malloc. The allocations alive now are
 * dumped to out-of-memory.prof (track.c, static buffer), and rendered (render.h) from scratch
 * memory reserved at start. Then the process ends with _exit(FIL_OOM_EXIT_CODE): the program's
 * own atexit handlers and buffered output are skipped, as after a kill.
 *
 * The scratch is mapped at start, so it is inside any address-space limit from the beginning,
 * but touched (populated) only by the first poll that finds a figure's headroom above its
 * threshold under 4 budgets (256 MiB): from then on its pages are resident, as the report
 * needs them when memory is really short. Polls come at least every budget, so that happens
 * before the threshold is crossed, unless a single allocation jumps from there to under it, and
 * that allocation is not touched yet when the report starts. A failed allocation is the
 * address-space limit or an impossible size, not a shortage of pages. Populating at every start
 * cost ~6 ms (20 MiB of page faults) and kept 20 MiB resident in programs far from any limit.
 */
#include "oom.h"

#include "fil_internal.h"
#include "outbuf.h"
#include "prim.h"
#include "render.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MIB ((uint64_t)1 << 20)
#define BUDGET_MIN MIB
#define BUDGET_MAX (64 * MIB)
/* Scratch for the renderer, reserved at start: enough for a .prof of 512 KiB (thousands of
   call stacks). A bigger .prof is rendered with freshly mapped memory instead. */
#define SCRATCH_PROF_BYTES ((size_t)512 << 10)

int64_t _fil_oom_countdown = INT64_MAX;   /* protected by the tracking lock */

/* Set at configure/start time by the thread starting tracking, read on the report path. */
static char out_dir[PATH_MAX] = "fil-result";
static char command_line[4096];
static int have_command_line;
static int early_check;              /* 0: only failed allocations report */
static uint64_t threshold_override;  /* bytes; 0 = the per-figure default */
static long utc_offset;              /* seconds east of UTC when tracking started */
static void *scratch;
static size_t scratch_size;
/* A poll populates the scratch while the report may use it and, if it is too small, unmap it:
   the state keeps the unmapping from happening under the populating. */
enum { SCRATCH_UNTOUCHED, SCRATCH_POPULATING, SCRATCH_POPULATED, SCRATCH_GONE };
static atomic_int scratch_state;
static int64_t budget_set;           /* the countdown's value at the last poll (tracking lock) */

static atomic_int polling;           /* one thread reads the figures at a time */
static atomic_int reporting;         /* the first thread to report owns the process's end */

void _fil_oom_configure(const char *dir, const char *cmdline) {
    if (dir && dir[0] && strlen(dir) < sizeof out_dir) strcpy(out_dir, dir);
    have_command_line = cmdline && strlen(cmdline) < sizeof command_line;
    if (have_command_line) strcpy(command_line, cmdline);
}

static uint64_t parse_mib(const char *s) {
    uint64_t v = 0;
    if (!s || !*s) return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX >> 21)) return 0;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    return v * MIB;
}

void _fil_oom_start(void) {
    const char *off = prim_getenv("FIL_DISABLE_OOM_DETECTION");
    early_check = !(off && off[0] && strcmp(off, "0") != 0);
    threshold_override = parse_mib(prim_getenv("FIL_OOM_THRESHOLD_MIB"));
    /* localtime_r may load the time zone (and allocate) the first time: do it now, not when
       memory has run out. DST changing during the run shifts report names by an hour. */
    time_t now = time(NULL);
    struct tm tm;
    if (localtime_r(&now, &tm)) utc_offset = tm.tm_gmtoff;
    if (!scratch) {
        size_t size = fil_render_scratch_hint(SCRATCH_PROF_BYTES);
        /* Populated later (see the top of this file). Small pages: the renderer fills it from
           the start, so huge pages would save nothing, while faulting them in costs from about
           half as much (free memory in 2 MiB blocks) to several times as much (the kernel
           compacting memory first; 50 ms against 10 ms seen on a VM). */
        scratch = prim_pages_alloc_with(size, 0);
        if (scratch) scratch_size = size;
    }
    _fil_lock();
    budget_set = 0;
    _fil_oom_countdown = early_check ? 0 : INT64_MAX;   /* 0: the first allocation reads */
    _fil_unlock();
}

size_t _fil_oom_reserve_resident(size_t *mapped) {
    void *p = scratch;
    size_t size = scratch_size;
    int st = atomic_load(&scratch_state);
    *mapped = p && st != SCRATCH_GONE ? size : 0;
    return *mapped ? prim_resident_bytes(p, size) : 0;
}

/* ---- deciding ---- */

static uint64_t default_threshold(uint64_t limit) {
    uint64_t t = limit / 100;
    if (t < 64 * MIB) t = 64 * MIB;
    if (t > 512 * MIB) t = 512 * MIB;
    if (t > limit / 10) t = limit / 10;
    return t;
}

static const char *figure_name(int which) {
    static const char *const names[] = {"system memory (MemAvailable)", "memory cgroup limit",
                                        "address-space limit (ulimit -v)"};
    return names[which];
}

int _fil_oom_assess(const prim_memory_t *m, uint64_t override, uint64_t pending,
                    oom_verdict_t *v) {
    const prim_mem_figure_t *figs[3] = {&m->system, &m->cgroup, &m->address_space};
    uint64_t headroom = UINT64_MAX;
    v->which = -1;
    v->available = v->limit = v->threshold = PRIM_NO_LIMIT;
    int out = 0;
    for (int i = 0; i < 3; i++) {
        if (figs[i]->limit == PRIM_NO_LIMIT) continue;
        uint64_t avail = figs[i]->available;
        if (i != 2) avail = avail > pending ? avail - pending : 0;
        uint64_t t = override ? override : default_threshold(figs[i]->limit);
        int under = avail < t;
        /* Report the figure that fired; among those, or when none did, the scarcest. */
        if ((under && !out) || (under == out && avail < v->available)) {
            v->which = i;
            v->available = avail;
            v->limit = figs[i]->limit;
            v->threshold = t;
        }
        if (under) out = 1;
        else if (avail - t < headroom) headroom = avail - t;
    }
    uint64_t b = headroom / 4;
    v->budget = b < BUDGET_MIN ? BUDGET_MIN : b > BUDGET_MAX ? BUDGET_MAX : b;
    return out;
}

/* ---- the report ---- */

/* Append to a fixed buffer without overflowing; the result is always NUL-terminated. */
typedef struct {
    char *buf;
    size_t cap, len;
} text_t;

/* An empty text over buf[0..cap). */
static text_t text_on(char *buf, size_t cap) {
    buf[0] = '\0';
    return (text_t){buf, cap, 0};
}

static void put(text_t *t, const char *s) {
    size_t n = strlen(s);
    if (t->len + n >= t->cap) n = t->cap - 1 - t->len;
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

static void put_u64(text_t *t, uint64_t v, int width) {
    char d[24];
    size_t n = fmt_u64(d, v);
    while (width-- > (int)n) put(t, "0");
    d[n] = '\0';
    put(t, d);
}

/* "812.3 MiB", "1.5 GiB": one decimal, binary units, like `free -h`. */
static void put_mib(text_t *t, uint64_t bytes) {
    static const char *const units[] = {" MiB", " GiB", " TiB", " PiB", " EiB"};
    int u = 0;
    uint64_t scale = MIB;
    while (u < 4 && bytes / scale >= 1024) {
        scale <<= 10;
        u++;
    }
    uint64_t whole = bytes / scale, rest = bytes % scale;
    uint64_t tenth = (rest / (scale / 1024) * 10 + 512) / 1024;   /* rounded */
    if (tenth >= 10) {
        whole++;
        tenth = 0;
    }
    put_u64(t, whole, 0);
    put(t, ".");
    put_u64(t, tenth, 0);
    put(t, units[u]);
}

static void say(const char *s) { prim_write_stderr(s, strlen(s)); }

/* Civil date from days since 1970-01-01 (proleptic Gregorian; eras of 400 years). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* mkdir -p for the output directory (its parents may not exist yet). */
static int make_dirs(char *path) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        int r = mkdir(path, 0777);
        *p = '/';
        if (r < 0 && errno != EEXIST) return -1;
    }
    return mkdir(path, 0777) < 0 && errno != EEXIST ? -1 : 0;
}

/* OUT_DIR/YYYY-MM-DDTHH-MM-SS.mmm[-N], created; the same scheme as _report.new_run_dir. */
static int new_run_dir(char *dir, size_t cap) {
    char base[PATH_MAX];
    memcpy(base, out_dir, sizeof base);
    if (make_dirs(base) < 0) return -1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t secs = (int64_t)ts.tv_sec + utc_offset;
    int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
    int64_t sod = secs - days * 86400, year;
    unsigned mon, day;
    civil_from_days(days, &year, &mon, &day);
    for (unsigned n = 1; n < 1000; n++) {
        text_t t = {dir, cap, 0};
        dir[0] = '\0';
        put(&t, out_dir);
        put(&t, "/");
        put_u64(&t, (uint64_t)year, 4);
        put(&t, "-");
        put_u64(&t, mon, 2);
        put(&t, "-");
        put_u64(&t, day, 2);
        put(&t, "T");
        put_u64(&t, (uint64_t)(sod / 3600), 2);
        put(&t, "-");
        put_u64(&t, (uint64_t)(sod / 60 % 60), 2);
        put(&t, "-");
        put_u64(&t, (uint64_t)(sod % 60), 2);
        put(&t, ".");
        put_u64(&t, (uint64_t)(ts.tv_nsec / 1000000), 3);
        if (n > 1) {
            put(&t, "-");
            put_u64(&t, n, 0);
        }
        if (t.len + 32 >= cap) {
            errno = ENAMETOOLONG;
            return -1;
        }
        if (mkdir(dir, 0777) == 0) return 0;
        if (errno != EEXIST) return -1;
    }
    return -1;
}

/* strerror may translate (and allocate); these names are enough to act on. */
static const char *errno_name(int e) {
    switch (e) {
    case ENOMEM: return "out of memory (ENOMEM)";
    case ENOSPC: return "no space left on device (ENOSPC)";
    case EDQUOT: return "disk quota exceeded (EDQUOT)";
    case EACCES: return "permission denied (EACCES)";
    case EROFS: return "read-only file system (EROFS)";
    case ENOENT: return "no such file or directory (ENOENT)";
    case ENAMETOOLONG: return "file name too long (ENAMETOOLONG)";
    case EMFILE: return "too many open files (EMFILE)";
    default: return "system error";
    }
}

static void say_error(const char *what, int err) {
    char line[512];
    text_t t = text_on(line, sizeof line);
    put(&t, "=fil-profile= error: could not ");
    put(&t, what);
    put(&t, ": ");
    put(&t, errno_name(err));
    put(&t, "\n");
    say(line);
}

/* Render PREFIX.svg, PREFIX-reversed.svg and index.html: from the reserved scratch first; if
   that is too small, give it back and let the renderer map what it needs. */
static int render(const char *dir, const char *prof, const char *note) {
    fil_render_opts_t o = {0};
    o.prof_path = prof;
    o.out_dir = dir;
    o.file_prefix = "out-of-memory";
    o.kind = FIL_REPORT_OOM;
    o.command_line = have_command_line ? command_line : NULL;
    o.extra_note = note;
    if (scratch) {
        o.scratch = scratch;
        o.scratch_size = scratch_size;
        if (fil_render_report(&o) == 0) return 0;
        if (errno != ENOMEM) return -1;
        for (int st;;) {   /* wait for a poll populating it, then keep the others off */
            st = atomic_load(&scratch_state);
            if (st != SCRATCH_POPULATING &&
                atomic_compare_exchange_strong(&scratch_state, &st, SCRATCH_GONE))
                break;
            sched_yield();
        }
        prim_pages_free(scratch, scratch_size);
        scratch = NULL;
        o.scratch = NULL;
        o.scratch_size = 0;
    }
    return fil_render_report(&o);
}

/* Never returns. failed_size: the request that failed, 0 for the early check. */
/* "Available: X of Y (which figure[; threshold Z]); tracked: W", for the terminal (with the
   threshold) and for index.html's note. */
static void put_figures(text_t *t, const oom_verdict_t *v, uint64_t tracked, int threshold) {
    put(t, "Available: ");
    if (v->limit != PRIM_NO_LIMIT) {
        put_mib(t, v->available);
        put(t, " of ");
        put_mib(t, v->limit);
        put(t, " (");
        put(t, figure_name(v->which));
        if (threshold) {
            put(t, "; threshold ");
            put_mib(t, v->threshold);
        }
        put(t, ")");
    } else {
        put(t, "unknown (no memory limit could be read)");
    }
    put(t, "; tracked: ");
    put_mib(t, tracked);
}

static void report_and_exit(const char *reason, const oom_verdict_t *v, uint64_t failed_size)
    __attribute__((noreturn));
static void report_and_exit(const char *reason, const oom_verdict_t *v, uint64_t failed_size) {
    _fil_tl_guard++;   /* whatever this thread allocates from now on goes untracked */
    if (atomic_exchange(&reporting, 1)) {
        /* Another thread is writing the report and will end the process. */
        for (;;) pause();
    }
    uint64_t tracked, peak_bytes;
    _fil_track_stats(&tracked, &peak_bytes);
    /* The failed request goes into the report under the line that asked for it. */
    if (failed_size) _fil_track_add_failed(failed_size);
    _fil_tracking = 0;   /* freeze: frees from other threads no longer change the picture */

    char dir[PATH_MAX], prof[PATH_MAX + 32], svg[PATH_MAX + 32];
    int ok_dir = new_run_dir(dir, sizeof dir) == 0;
    int err = errno;
    char msg[2048];
    text_t t = text_on(msg, sizeof msg);
    put(&t, "=fil-profile= Out of memory: ");
    put(&t, reason);
    put(&t, "\n=fil-profile= ");
    put_figures(&t, v, tracked, 1);
    put(&t, "\n");
    say(msg);
    if (!ok_dir) {
        say_error("create the report directory", err);
        _exit(FIL_OOM_EXIT_CODE);
    }
    text_t p = text_on(prof, sizeof prof);
    put(&p, dir);
    put(&p, "/out-of-memory.prof");
    uint64_t total;
    if (_fil_track_dump(prof, 1, &total) < 0) {
        say_error("write out-of-memory.prof", errno);
        _exit(FIL_OOM_EXIT_CODE);
    }
    /* The note for index.html: the same figures, in words. */
    char note[1024];
    text_t n = text_on(note, sizeof note);
    put(&n, "The program ran out of memory: ");
    put(&n, reason);
    put(&n, ". ");
    put_figures(&n, v, tracked, 0);
    put(&n, ".");
    if (failed_size)
        put(&n, " The request that failed is drawn as [failed allocation] under the line that"
                " made it.");
    put(&n, " The profiler stopped the program with exit code 53.");
    text_t s = text_on(svg, sizeof svg);
    if (render(dir, prof, note) == 0) {
        put(&s, "=fil-profile= Wrote memory usage flamegraph to ");
        put(&s, dir);
        put(&s, "/out-of-memory.svg\n");
        say(svg);
    } else {
        say_error("render the flamegraphs (out-of-memory.prof is complete)", errno);
        put(&s, "=fil-profile= Wrote the allocations alive to ");
        put(&s, prof);
        put(&s, "\n");
        say(svg);
    }
    _exit(FIL_OOM_EXIT_CODE);
}

void _fil_oom_poll(void) {
    if (atomic_exchange(&polling, 1)) return;
    _fil_lock();
    int64_t since = budget_set - _fil_oom_countdown;   /* bytes allocated since the last read */
    _fil_oom_countdown = INT64_MAX;
    _fil_unlock();
    if (!early_check) {
        atomic_store(&polling, 0);
        return;
    }
    prim_memory_t m;
    prim_memory_read(&m);
    oom_verdict_t v;
    if (_fil_oom_assess(&m, threshold_override, since > 0 ? (uint64_t)since : 0, &v)) {
        char reason[256];
        text_t t = text_on(reason, sizeof reason);
        put(&t, "available memory fell under the threshold (");
        put(&t, figure_name(v.which));
        put(&t, ")");
        report_and_exit(reason, &v, 0);
    }
    int untouched = SCRATCH_UNTOUCHED;
    if (v.budget < BUDGET_MAX && scratch &&
        atomic_compare_exchange_strong(&scratch_state, &untouched, SCRATCH_POPULATING)) {
        /* Within 4 budgets of a threshold: make the report's memory resident now. */
        prim_pages_populate(scratch, scratch_size);
        atomic_store(&scratch_state, SCRATCH_POPULATED);
    }
    _fil_lock();
    int64_t during = INT64_MAX - _fil_oom_countdown;   /* allocated while we were reading */
    budget_set = (int64_t)v.budget;
    _fil_oom_countdown = budget_set - during;
    _fil_unlock();
    atomic_store(&polling, 0);
}

void _fil_oom_on_failure(uint64_t size) {
    prim_memory_t m;
    prim_memory_read(&m);
    oom_verdict_t v;
    _fil_oom_assess(&m, threshold_override, 0, &v);
    char reason[128];
    text_t t = text_on(reason, sizeof reason);
    put(&t, "an allocation of ");
    put_u64(&t, size, 0);
    put(&t, " bytes (");
    put_mib(&t, size);
    put(&t, ") failed");
    report_and_exit(reason, &v, size);
}
