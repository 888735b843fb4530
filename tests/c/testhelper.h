/* Minimal C test helper: CHECK(cond) records a failure and goes on; test_report() ends the run.
 * The closing line "N passed, N failed" is the plain summary CI reads. */
#ifndef FIL_TESTHELPER_H
#define FIL_TESTHELPER_H
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

static int th_passed, th_failed;
#define CHECK(cond) do { \
    if (cond) th_passed++; \
    else { th_failed++; fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } \
} while (0)
#define CHECK_EQ_U(a, b) do { \
    unsigned long long _a = (unsigned long long)(a), _b = (unsigned long long)(b); \
    if (_a == _b) th_passed++; \
    else { th_failed++; fprintf(stderr, "%s:%d: %s == %s failed: %llu != %llu\n", \
                                __FILE__, __LINE__, #a, #b, _a, _b); } \
} while (0)
/* Page faults this process has taken so far (minor ones: pages mapped without disk I/O). The
   sanitizers fault in shadow memory for what the code touches (ThreadSanitizer: four times as
   much), and their runtimes map memory of their own, so fault counts are checked only in the
   plain build (TEST_FAULTS_COUNTED); it is the one CI runs first. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TEST_FAULTS_COUNTED 0
#else
#define TEST_FAULTS_COUNTED 1
#endif
static inline long test_minor_faults(void) {
    struct rusage u;
    return getrusage(RUSAGE_SELF, &u) == 0 ? u.ru_minflt : -1;
}
static inline int test_report(const char *name) {
    printf("%s: %d passed, %d failed\n", name, th_passed, th_failed);
    return th_failed ? 1 : 0;
}
#endif
