/* Unit tests for the memory figures' parsers (prim_linux.c) and the out-of-memory decision
 * (oom.c's _fil_oom_assess), fed with fixture text as the kernel writes it. */
#include "oom.h"
#include "prim.h"
#include "testhelper.h"

#include <string.h>

#define MIB ((uint64_t)1 << 20)
#define GIB ((uint64_t)1 << 30)

static const char meminfo[] =
    "MemTotal:       24684092 kB\n"
    "MemFree:        21756648 kB\n"
    "MemAvailable:   23522652 kB\n"
    "Buffers:           12345 kB\n";

static void test_keyed(void) {
    uint64_t v = 0;
    CHECK(prim_parse_keyed_u64(meminfo, strlen(meminfo), "MemAvailable:", &v) == 0);
    CHECK_EQ_U(v, 23522652);
    CHECK(prim_parse_keyed_u64(meminfo, strlen(meminfo), "MemTotal:", &v) == 0);
    CHECK_EQ_U(v, 24684092);
    CHECK(prim_parse_keyed_u64(meminfo, strlen(meminfo), "SwapFree:", &v) == -1);
    /* memory.stat: a key must not match a longer key, nor a key that merely ends like it. */
    static const char stat[] = "active_file 7\ninactive_file_x 9\ntotal_inactive_file 5\n"
                               "inactive_file 135168\n";
    CHECK(prim_parse_keyed_u64(stat, strlen(stat), "inactive_file", &v) == 0);
    CHECK_EQ_U(v, 135168);
    CHECK(prim_parse_keyed_u64(stat, strlen(stat), "total_inactive_file", &v) == 0);
    CHECK_EQ_U(v, 5);
    /* Not NUL-terminated: the length bounds the search. */
    CHECK(prim_parse_keyed_u64(meminfo, 30, "MemAvailable:", &v) == -1);
    static const char garbled[] = "MemAvailable:   lots kB\n";
    CHECK(prim_parse_keyed_u64(garbled, strlen(garbled), "MemAvailable:", &v) == -1);
}

static void test_limits(void) {
    uint64_t v = 0;
    CHECK(prim_parse_cgroup_limit("max\n", 4, &v) == 0);
    CHECK(v == PRIM_NO_LIMIT);
    CHECK(prim_parse_cgroup_limit("536870912\n", 10, &v) == 0);
    CHECK_EQ_U(v, 536870912);
    CHECK(prim_parse_cgroup_limit("9223372036854771712\n", 20, &v) == 0);   /* v1 unlimited */
    CHECK(v == PRIM_NO_LIMIT);
    CHECK(prim_parse_cgroup_limit("", 0, &v) == -1);
    CHECK(prim_parse_cgroup_limit("99999999999999999999999\n", 24, &v) == -1);   /* overflow */
    CHECK(prim_parse_first_u64("765 438 410 5 0 123 0\n", 22, &v) == 0);
    CHECK_EQ_U(v, 765);
}

static void test_cgroup_path(void) {
    static const char v1[] = "9:name=systemd:/\n"
                             "4:cpu,memory:/process_api/76af\n"
                             "0::/user.slice/x:y\n";
    char out[64];
    CHECK(prim_parse_cgroup_path(v1, strlen(v1), 0, out, sizeof out) == 0);
    CHECK(strcmp(out, "/process_api/76af") == 0);
    CHECK(prim_parse_cgroup_path(v1, strlen(v1), 1, out, sizeof out) == 0);
    CHECK(strcmp(out, "/user.slice/x:y") == 0);   /* ':' inside the path is kept */
    static const char nomem[] = "3:memoryx:/a\n2:cpu:/b\n";
    CHECK(prim_parse_cgroup_path(nomem, strlen(nomem), 0, out, sizeof out) == -1);
    CHECK(prim_parse_cgroup_path(nomem, strlen(nomem), 1, out, sizeof out) == -1);
    char tiny[4];
    CHECK(prim_parse_cgroup_path(v1, strlen(v1), 0, tiny, sizeof tiny) == -1);
}

static void test_mounts(void) {
    char root[64], mnt[64];
    static const char v1[] =
        "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory";
    CHECK(prim_parse_cgroup_mount(v1, strlen(v1), 0, root, sizeof root, mnt, sizeof mnt) == 0);
    CHECK(strcmp(root, "/docker/abc") == 0);
    CHECK(strcmp(mnt, "/sys/fs/cgroup/memory") == 0);
    CHECK(prim_parse_cgroup_mount(v1, strlen(v1), 1, root, sizeof root, mnt, sizeof mnt) == -1);
    static const char cpu[] = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu";
    CHECK(prim_parse_cgroup_mount(cpu, strlen(cpu), 0, root, sizeof root, mnt, sizeof mnt) == -1);
    static const char v2[] = "41 31 0:38 / /sys/fs/cgroup/my\\040dir rw - cgroup2 cgroup2 rw\n";
    CHECK(prim_parse_cgroup_mount(v2, strlen(v2), 1, root, sizeof root, mnt, sizeof mnt) == 0);
    CHECK(strcmp(mnt, "/sys/fs/cgroup/my dir") == 0);   /* \040 decoded */
    CHECK(strcmp(root, "/") == 0);
    static const char tmpfs[] = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755";
    CHECK(prim_parse_cgroup_mount(tmpfs, strlen(tmpfs), 1, root, sizeof root, mnt, sizeof mnt) == -1);
    CHECK(prim_parse_cgroup_mount("", 0, 1, root, sizeof root, mnt, sizeof mnt) == -1);
}

static prim_memory_t none(void) {
    prim_memory_t m;
    m.system = m.cgroup = m.address_space = (prim_mem_figure_t){PRIM_NO_LIMIT, PRIM_NO_LIMIT};
    return m;
}

static void test_assess(void) {
    oom_verdict_t v;
    prim_memory_t m = none();
    /* No limits known: never out of memory, the longest budget. */
    CHECK(_fil_oom_assess(&m, 0, 0, &v) == 0);
    CHECK(v.which == -1);
    CHECK_EQ_U(v.budget, 64 * MIB);

    /* A healthy 24 GiB machine: threshold 1% = 245 MiB; plenty left. */
    m.system = (prim_mem_figure_t){20 * GIB, 24 * GIB};
    CHECK(_fil_oom_assess(&m, 0, 0, &v) == 0);
    CHECK_EQ_U(v.threshold, 24 * GIB / 100);
    CHECK_EQ_U(v.budget, 64 * MIB);
    /* Just under the threshold fires; just above does not. */
    m.system.available = 24 * GIB / 100 - 1;
    CHECK(_fil_oom_assess(&m, 0, 0, &v) == 1);
    CHECK(v.which == 0);
    m.system.available = 24 * GIB / 100 + 8 * MIB;
    CHECK(_fil_oom_assess(&m, 0, 0, &v) == 0);
    CHECK_EQ_U(v.budget, 2 * MIB);   /* a quarter of the headroom */
    m.system.available = 24 * GIB / 100 + 1;
    CHECK(_fil_oom_assess(&m, 0, 0, &v) == 0);
    CHECK_EQ_U(v.budget, MIB);       /* the floor */
    /* Bytes allocated since the reading count against system memory ... */
    m.system.available = 1 * GIB;
    CHECK(_fil_oom_assess(&m, 0, 900 * MIB, &v) == 1);

    /* ... but not against the address space, whose figure already includes them. */
    m = none();
    m.address_space = (prim_mem_figure_t){1 * GIB, 2 * GIB};
    CHECK(_fil_oom_assess(&m, 0, 1000 * MIB, &v) == 0);
    /* Small limits: the threshold is at least 64 MiB but at most a tenth of the limit. */
    m.address_space = (prim_mem_figure_t){30 * MIB, 200 * MIB};
    CHECK(_fil_oom_assess(&m, 0, 0, &v) == 0);
    CHECK_EQ_U(v.threshold, 20 * MIB);
    m.address_space = (prim_mem_figure_t){60 * MIB, 2 * GIB};
    CHECK(_fil_oom_assess(&m, 0, 0, &v) == 1);
    CHECK_EQ_U(v.threshold, 64 * MIB);
    CHECK(v.which == 2);
    /* Huge limits: capped at 512 MiB. */
    m.address_space = (prim_mem_figure_t){600 * MIB, 1024 * GIB};
    CHECK(_fil_oom_assess(&m, 0, 0, &v) == 0);
    CHECK_EQ_U(v.threshold, 512 * MIB);

    /* The figure that fired is reported, even when another one is scarcer but fine. */
    m = none();
    m.system = (prim_mem_figure_t){100 * MIB, 24 * GIB};        /* under 245 MiB: fires */
    m.cgroup = (prim_mem_figure_t){50 * MIB, 400 * MIB};        /* threshold 40 MiB: fine */
    CHECK(_fil_oom_assess(&m, 0, 0, &v) == 1);
    CHECK(v.which == 0);
    CHECK_EQ_U(v.available, 100 * MIB);
    m.cgroup.available = 10 * MIB;                               /* both fire: the scarcer */
    CHECK(_fil_oom_assess(&m, 0, 0, &v) == 1);
    CHECK(v.which == 1);
    CHECK_EQ_U(v.limit, 400 * MIB);

    /* An explicit threshold applies to every figure. */
    m = none();
    m.system = (prim_mem_figure_t){1 * GIB, 24 * GIB};
    CHECK(_fil_oom_assess(&m, 2 * GIB, 0, &v) == 1);
    CHECK(_fil_oom_assess(&m, 100 * MIB, 0, &v) == 0);
    CHECK_EQ_U(v.threshold, 100 * MIB);
    /* Over the limit already: available 0, not a wrapped-around huge number. */
    m.system = (prim_mem_figure_t){0, 24 * GIB};
    CHECK(_fil_oom_assess(&m, 0, 5 * MIB, &v) == 1);
    CHECK_EQ_U(v.available, 0);
}

/* The live reading: whatever this machine has, the figures are consistent. */
static void test_read(void) {
    prim_memory_t m;
    prim_memory_read(&m);
    CHECK(m.system.limit != PRIM_NO_LIMIT);   /* every Linux has /proc/meminfo */
    CHECK(m.system.available <= m.system.limit);
    CHECK(m.address_space.limit == PRIM_NO_LIMIT || m.address_space.available <= m.address_space.limit);
    CHECK(m.cgroup.limit == PRIM_NO_LIMIT || m.cgroup.available <= m.cgroup.limit);
}

int main(void) {
    test_keyed();
    test_limits();
    test_cgroup_path();
    test_mounts();
    test_assess();
    test_read();
    return test_report("test_oom_parse");
}
