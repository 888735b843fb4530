/* stress.c: many threads hammering the allocator, to find races, deadlocks and lost bytes.
 *
 * Each of N threads (default 16) performs OPS random operations (default 1,000,000) on its own
 * set of slots: malloc, calloc, realloc (growing, shrinking, to zero), free, posix_memalign,
 * aligned_alloc, anonymous mmap, munmap of a whole mapping or of a part of it (leaving one or two
 * pieces), and mremap; in the engine stress also blocks carved from a pymalloc-like arena with a
 * side table (small_map.c), which each thread now and then unmaps and maps anew. Sizes are random, mostly small with a tail of large ones. Every block
 * carries a tag in its first and last byte that is checked before it is released, so a profiler
 * that corrupts memory, or hands one block out twice, is caught. At the end each thread frees
 * everything it still holds.
 *
 * Built two ways from this one file:
 *   - Engine stress (FIL_STRESS_ENGINE defined; `make stress`, and `make test-c` with fewer
 *     operations): a program linked with the core objects that calls the engine API
 *     (_fil_track_*) itself after each libc call, the way hooks.c does, so it runs under ASan,
 *     UBSan and TSan without any preloading. A monitor thread meanwhile reads stats, writes
 *     reports and resets the books. At the end it checks that live bytes are back to zero and
 *     that the lines of the peak report add up to the peak.
 *   - Preload stress (default): a shared library with fil_stress_run() for ctypes, driven from a
 *     profiled Python program (tests/e2e/test_stress.py); the preloaded hooks do the tracking.
 *
 * Usage of the engine program: stress [OPS_PER_THREAD [THREADS [SEED]]]
 * Exit status 0 when every check passed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../c/rng.h"

#ifdef FIL_STRESS_ENGINE
#include "fil_internal.h"
#endif

#define PAGE 4096u
#define NSLOTS 512
#define MAX_THREADS 64

enum { EMPTY, HEAP, MAP, POOL };

typedef struct {
    unsigned char *p;
    size_t size;
    int kind;
} slot_t;

typedef struct {
    int index;
    long ops;
    uint64_t seed;
    long errors;   /* tag mismatches and failed calls that should not fail */
    unsigned char *arena;   /* engine stress: this thread's arena (POOL blocks), or NULL */
    int pool_blocks;        /* POOL blocks live in it */
} worker_t;

/* ---- the operations: libc call, then (engine stress only) what the hooks would tell the
   engine, in the hooks' order: a block leaves the books before it is released and joins them
   after it is obtained ---- */

#ifdef FIL_STRESS_ENGINE
/* Which line of the fake Python stack the current thread is "at"; see _fil_stack_of(). */
static __thread uint32_t tl_line;
static __thread int tl_thread_index;
/* The quick stack (fil_internal.h) answers while the thread is still at the line _fil_stack_of
   last answered for, as the library's does while the cached stack holds. */
static __thread uint32_t tl_known_line = UINT32_MAX;
static __thread callsite_t tl_known_cs;
callsite_t _fil_stack_quick(fil_thread_t *ts) {
    (void)ts;
    return tl_line == tl_known_line ? tl_known_cs : FIL_STACK_UNKNOWN;
}
/* As the hooks do: the quick path, else the full one. The run fails if the quick paths never
   answered, which would leave them untested. */
static atomic_long quick_allocs, quick_frees;
static void track_alloc(void *p, size_t size) {
    int quick = _fil_track_alloc_quick(p, size);
    if (quick == FIL_QUICK_DONE) atomic_fetch_add_explicit(&quick_allocs, 1, memory_order_relaxed);
    else _fil_track_alloc_after(p, size, quick);
}
static void track_free(void *p) {
    if (_fil_track_free_quick(p)) atomic_fetch_add_explicit(&quick_frees, 1, memory_order_relaxed);
    else _fil_track_free(p);
}
#define ENGINE(x) x
#else
#define ENGINE(x) ((void)0)
#endif

static void *do_malloc(size_t size) {
    void *p = malloc(size);
    ENGINE(if (p) track_alloc(p, size));
    return p;
}

static void *do_calloc(size_t n, size_t size) {
    void *p = calloc(n, size);
    ENGINE(if (p) track_alloc(p, n * size));
    return p;
}

static void *do_memalign(size_t align, size_t size, int posix) {
    void *p = NULL;
    if (posix) {
        if (posix_memalign(&p, align, size) != 0) p = NULL;
    } else {
        p = aligned_alloc(align, (size + align - 1) & ~(align - 1));
    }
    ENGINE(if (p) track_alloc(p, size));
    return p;
}

static void do_free(void *p) {
    ENGINE(track_free(p));
    free(p);
}

static void *do_realloc(void *old, size_t size) {
#ifdef FIL_STRESS_ENGINE
    uint64_t old_size = 0;
    callsite_t old_cs = 0;
    int had = old ? _fil_track_take(old, &old_size, &old_cs) : 0;
    void *p = realloc(old, size);
    if (p) _fil_track_alloc(p, size);
    else if (had && size != 0) _fil_track_put(old, old_size, old_cs);
    return p;
#else
    return realloc(old, size);
#endif
}

static void *do_mmap(size_t len) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    ENGINE(_fil_track_mmap(p, len));
    return p;
}

static int do_munmap(void *p, size_t len) {
    ENGINE(_fil_track_munmap(p, len));
    return munmap(p, len);
}

/* The kernel's mremap, or, under ThreadSanitizer, the same move done with mmap + copy + munmap.
   TSan intercepts mmap and munmap but not mremap: after a moving or shrinking mremap it keeps
   the old range's access history, and when another thread later maps that address it reports
   a race between two owners the kernel kept apart. The engine calls around it are the same. */
static void *kernel_mremap(void *old, size_t old_len, size_t new_len) {
#if defined(__SANITIZE_THREAD__)
    void *p = mmap(NULL, new_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return MAP_FAILED;
    memcpy(p, old, old_len < new_len ? old_len : new_len);
    munmap(old, old_len);
    return p;
#else
    return mremap(old, old_len, new_len, MREMAP_MAYMOVE);
#endif
}

static void *do_mremap(void *old, size_t old_len, size_t new_len) {
#ifdef FIL_STRESS_ENGINE
    /* As hooks.c: only a mapping that was tracked is tracked after the move (after a reset by
       the monitor thread, an older mapping is not). */
    uint64_t was_tracked = _fil_track_munmap(old, old_len);
    void *p = kernel_mremap(old, old_len, new_len);
    if (was_tracked && p != MAP_FAILED) _fil_track_mmap(p, new_len);
    else if (was_tracked) _fil_track_mmap(old, old_len);   /* unchanged: back on the books */
#else
    void *p = kernel_mremap(old, old_len, new_len);
#endif
    return p == MAP_FAILED ? NULL : p;
}

/* ---- engine stress: pymalloc-like blocks. Slot i's block lies at arena + i * POOL_STRIDE, at
   most POOL_STRIDE bytes, so blocks of different slots never overlap. ---- */
#ifdef FIL_STRESS_ENGINE
#define ARENA_BYTES ((size_t)1 << 20)
#define POOL_STRIDE (ARENA_BYTES / NSLOTS)

static void *pool_alloc(worker_t *w, size_t i, size_t size) {
    if (!w->arena) w->arena = _fil_small_arena_map(ARENA_BYTES);
    if (!w->arena) return NULL;
    void *p = w->arena + i * POOL_STRIDE;
    track_alloc(p, size);
    w->pool_blocks++;
    return p;
}

static void pool_free(worker_t *w, void *p) {
    track_free(p);
    /* An empty arena goes back, as pymalloc's do; the next block maps a fresh one. */
    if (--w->pool_blocks == 0) {
        if (_fil_small_arena_unmap(w->arena, ARENA_BYTES) != 1) w->errors++;
        w->arena = NULL;
    }
}
#endif

/* ---- tags: the first and last byte of every block ---- */

static unsigned char tag_of(const worker_t *w, size_t slot) {
    return (unsigned char)(0x5A ^ (w->index * 37) ^ (slot * 11));
}

static void tag(slot_t *s, unsigned char t) {
    if (s->size == 0) return;
    s->p[0] = t;
    s->p[s->size - 1] = t;
}

static int tag_ok(const slot_t *s, unsigned char t) {
    return s->size == 0 || (s->p[0] == t && s->p[s->size - 1] == t);
}

/* Mostly small, like Python objects; sometimes pages; rarely large. */
static size_t random_size(rng_t *r) {
    uint64_t roll = rng_below(r, 100);
    if (roll < 70) return rng_range(r, 1, 256);
    if (roll < 95) return rng_range(r, 257, 16384);
    return rng_range(r, 16385, 256 * 1024);
}

static size_t random_pages(rng_t *r) { return rng_range(r, 1, 16) * PAGE; }

static int find_empty(slot_t *slots, rng_t *r) {
    for (int tries = 0; tries < 8; tries++) {
        int i = (int)rng_below(r, NSLOTS);
        if (slots[i].kind == EMPTY) return i;
    }
    return -1;
}

static void release(worker_t *w, slot_t *slots, size_t i) {
    slot_t *s = &slots[i];
    if (!tag_ok(s, tag_of(w, i))) w->errors++;
    if (s->kind == HEAP) do_free(s->p);
#ifdef FIL_STRESS_ENGINE
    else if (s->kind == POOL) pool_free(w, s->p);
#endif
    else if (s->kind == MAP && do_munmap(s->p, s->size) != 0) w->errors++;
    s->kind = EMPTY;
}

static void step(worker_t *w, slot_t *slots, rng_t *r) {
    size_t i = rng_below(r, NSLOTS);
    slot_t *s = &slots[i];
    unsigned char t = tag_of(w, i);
    uint64_t roll = rng_below(r, 100);
#ifdef FIL_STRESS_ENGINE
    /* Runs of steps at one line, as Python code makes, so the quick stack answers in between. */
    if (rng_below(r, 4) == 0) tl_line = (uint32_t)rng_below(r, 400);
#endif
    if (s->kind == EMPTY) {
        size_t size = random_size(r);
        void *p;
#ifdef FIL_STRESS_ENGINE
        if (rng_below(r, 4) == 0) {
            size = rng_range(r, 1, POOL_STRIDE);
            p = pool_alloc(w, i, size);
            if (!p) { w->errors++; return; }
            *s = (slot_t){p, size, POOL};
            tag(s, t);
            return;
        }
#endif
        if (roll < 45) {
            p = do_malloc(size);
        } else if (roll < 65) {
            p = do_calloc(1 + size / 16, 16);
            size = (1 + size / 16) * 16;
            /* calloc'd memory is zero: check a byte the tag does not cover. */
            if (p && size > 2 && ((unsigned char *)p)[size / 2] != 0) w->errors++;
        } else if (roll < 78) {
            p = do_memalign((size_t)1 << rng_range(r, 3, 12), size, 1);
        } else if (roll < 91) {
            p = do_memalign((size_t)1 << rng_range(r, 3, 12), size, 0);
        } else {
            size = random_pages(r);
            p = do_mmap(size);
            if (p) {
                *s = (slot_t){p, size, MAP};
                tag(s, t);
            } else {
                w->errors++;
            }
            return;
        }
        if (!p) { w->errors++; return; }
        *s = (slot_t){p, size, HEAP};
        tag(s, t);
    } else if (s->kind == POOL) {
        release(w, slots, i);
    } else if (s->kind == HEAP) {
        if (!tag_ok(s, t)) w->errors++;
        if (roll < 55) {
            release(w, slots, i);
        } else if (roll < 58) {
            /* realloc to zero frees in glibc (and returns NULL). */
            void *p = do_realloc(s->p, 0);
            if (p) do_free(p);
            s->kind = EMPTY;
        } else {
            size_t size = random_size(r);
            unsigned char *p = do_realloc(s->p, size);
            if (!p) { w->errors++; return; }
            /* The contents up to the smaller size move with the block. */
            if (p[0] != t) w->errors++;
            if (size >= s->size && p[s->size - 1] != t) w->errors++;
            s->p = p;
            s->size = size;
            tag(s, t);
        }
    } else {
        if (!tag_ok(s, t)) w->errors++;
        size_t pages = s->size / PAGE;
        if (roll < 35 || pages == 1) {
            release(w, slots, i);
        } else if (roll < 70) {
            /* Partial munmap: a random page-aligned piece; what is left is one or two pieces.
               A right-hand piece goes to another slot, or is unmapped too if none is free. */
            size_t a = rng_below(r, pages), b = rng_range(r, a + 1, pages);
            if (a == 0 && b == pages) b = pages - 1;
            unsigned char *base = s->p;
            size_t len = s->size;
            if (do_munmap(base + a * PAGE, (b - a) * PAGE) != 0) w->errors++;
            s->kind = EMPTY;
            if (a > 0) {
                *s = (slot_t){base, a * PAGE, MAP};
                tag(s, t);
            }
            if (b < pages) {
                int j = a > 0 ? find_empty(slots, r) : (int)i;
                if (j < 0) {
                    if (do_munmap(base + b * PAGE, len - b * PAGE) != 0) w->errors++;
                } else {
                    slots[j] = (slot_t){base + b * PAGE, len - b * PAGE, MAP};
                    tag(&slots[j], tag_of(w, (size_t)j));
                }
            }
        } else {
            size_t size = random_pages(r);
            unsigned char *p = do_mremap(s->p, s->size, size);
            if (!p) { w->errors++; return; }
            if (p[0] != t) w->errors++;
            s->p = p;
            s->size = size;
            tag(s, t);
        }
    }
}

static void *worker_main(void *arg) {
    worker_t *w = arg;
    rng_t r = {w->seed};
    slot_t *slots = calloc(NSLOTS, sizeof(slot_t));
    if (!slots) { w->errors++; return NULL; }
#ifdef FIL_STRESS_ENGINE
    tl_thread_index = w->index;
#endif
    for (long k = 0; k < w->ops; k++) step(w, slots, &r);
    for (size_t i = 0; i < NSLOTS; i++)
        if (slots[i].kind != EMPTY) release(w, slots, i);
    free(slots);
    return NULL;
}

/* Runs the workers; returns the number of errors they found (0: all good), or -1 if threads
   could not be started. */
static long run_workers(int nthreads, long ops, uint64_t seed) {
    if (nthreads < 1 || nthreads > MAX_THREADS) return -1;
    pthread_t tids[MAX_THREADS];
    worker_t workers[MAX_THREADS];
    int started = 0;
    long errors = 0;
    for (int i = 0; i < nthreads; i++) {
        workers[i] = (worker_t){i, ops, seed * 1000003u + (uint64_t)i, 0, NULL, 0};
        if (pthread_create(&tids[i], NULL, worker_main, &workers[i]) != 0) break;
        started++;
    }
    for (int i = 0; i < started; i++) {
        pthread_join(tids[i], NULL);
        errors += workers[i].errors;
    }
    return started == nthreads ? errors : -1;
}

#ifndef FIL_STRESS_ENGINE

/* The preload stress entry point, for ctypes: returns 0 when every tag and call checked out. */
__attribute__((visibility("default"))) long fil_stress_run(int nthreads, long ops, unsigned long seed) {
    return run_workers(nthreads, ops, seed);
}

#else  /* FIL_STRESS_ENGINE */

/* A fake Python: each thread is "in" function worker_<index> at line tl_line of stress.py,
   called from <module>. Interning happens under the tracking lock, as with the real one; 16
   threads x 400 lines also makes the per-callsite arrays grow while the threads run. */
callsite_t _fil_stack_of(fil_thread_t *ts) {
    (void)ts;
    char name[32];
    int n = snprintf(name, sizeof name, "worker_%d", tl_thread_index);
    callsite_t top = _fil_callsite_child(CALLSITE_NO_PYTHON, "stress.py", 9, "<module>", 8, 1);
    tl_known_cs = _fil_callsite_child(top, "stress.py", 9, name, (size_t)n, tl_line + 10);
    tl_known_line = tl_line;
    return tl_known_cs;
}

static atomic_int workers_done;
static long monitor_errors;

/* The lock on its own: threads take it in bursts of different lengths, with pauses, so that the
   bias (lock.c) moves from thread to thread, is revoked and granted again many times (this
   binary lowers the run that earns it to 16 acquisitions). Inside, a flag that a second thread
   would find set, and a plain counter that would lose increments. */
static atomic_int lock_inside;
static atomic_long lock_errors;
static long lock_counter;

static void *lock_hammer_main(void *arg) {
    long index = (long)(intptr_t)arg;
    _fil_lock();
    _fil_thread_get();   /* a state of its own: only a thread with one can own the bias */
    _fil_unlock();
    long burst = 64 << (index % 4);   /* 64 to 512 acquisitions between pauses */
    for (long i = 0; i < 20000; i++) {
        _fil_lock();
        if (atomic_exchange_explicit(&lock_inside, 1, memory_order_relaxed)) lock_errors++;
        lock_counter++;
        atomic_store_explicit(&lock_inside, 0, memory_order_relaxed);
        _fil_unlock();
        if (i % burst == burst - 1) {
            struct timespec pause = {0, 100 * 1000};
            nanosleep(&pause, NULL);
        }
    }
    return NULL;
}

static int check_lock(void) {
    enum { nthreads = 4 };   /* few, so that each often has the lock to itself for a while */
    pthread_t t[nthreads];
    for (long i = 0; i < nthreads; i++)
        if (pthread_create(&t[i], NULL, lock_hammer_main, (void *)(intptr_t)i) != 0) return -1;
    for (int i = 0; i < nthreads; i++) pthread_join(t[i], NULL);
    if (lock_errors || lock_counter != 20000L * nthreads) {
        fprintf(stderr, "stress: lock: %ld times two threads inside, %ld of %ld increments\n",
                (long)lock_errors, lock_counter, 20000L * nthreads);
        return -1;
    }
    /* Tracking started again by the thread that holds the bias (a second profiled call): turning
       the bias on must not wait for that thread itself. A hang ends the run after 30 s. */
    for (int i = 0; i < 64; i++) { _fil_lock(); _fil_unlock(); }
    alarm(30);
    _fil_lock_enable_bias();
    alarm(0);
    _fil_lock();
    _fil_unlock();
    return 0;
}

/* Sum of the byte counts ending the lines of a .prof file; -1 if unreadable or malformed. */
static long long prof_sum(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long long sum = 0;
    char line[65536];
    while (fgets(line, sizeof line, f)) {
        char *sp = strrchr(line, ' ');
        char *end;
        if (!sp) { sum = -1; break; }
        long long v = strtoll(sp + 1, &end, 10);
        if (end == sp + 1 || (*end != '\n' && *end != 0) || v <= 0) { sum = -1; break; }
        sum += v;
    }
    fclose(f);
    return sum;
}

/* While the workers run: stats must be coherent (live never above peak), reports can be
   written, and the books can be reset, all concurrently with allocation. */
static void *monitor_main(void *arg) {
    const char *path = arg;
    struct timespec pause = {0, 2 * 1000 * 1000};
    long rounds = 0;
    while (!atomic_load(&workers_done)) {
        uint64_t live, peak, total;
        _fil_track_stats(&live, &peak);
        if (live > peak) monitor_errors++;
        if (_fil_track_dump(path, rounds % 2, &total) != 0) monitor_errors++;
        if (rounds % 50 == 25) _fil_track_reset();
        rounds++;
        nanosleep(&pause, NULL);
    }
    return NULL;
}

int main(int argc, char **argv) {
    long ops = argc > 1 ? atol(argv[1]) : 1000000;
    int nthreads = argc > 2 ? atoi(argv[2]) : 16;
    uint64_t seed = test_seed("stress", argc > 3 ? strtoull(argv[3], NULL, 0) : 1);
    char path[] = "/tmp/fil-stress-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) { perror("mkstemp"); return 2; }
    close(fd);

    if (_fil_callsite_init() != 0) { fprintf(stderr, "stress: callsite init failed\n"); return 2; }
    _fil_lock_enable_bias();   /* the biased lock, as the Python side turns it on */
    _fil_track_reset();

    pthread_t monitor;
    if (pthread_create(&monitor, NULL, monitor_main, path) != 0) return 2;
    long errors = run_workers(nthreads, ops, seed);
    atomic_store(&workers_done, 1);
    pthread_join(monitor, NULL);

    int failed = 0;
    if (check_lock() != 0) failed = 1;
    if (errors != 0) {
        fprintf(stderr, "stress: %ld errors in the workers (tags or calls)\n", errors);
        failed = 1;
    }
    if (monitor_errors) {
        fprintf(stderr, "stress: %ld errors in the monitor (stats or dump)\n", monitor_errors);
        failed = 1;
    }
    uint64_t live, peak, total;
    _fil_track_stats(&live, &peak);
    if (live != 0) {
        fprintf(stderr, "stress: %llu bytes still live after everything was freed\n",
                (unsigned long long)live);
        failed = 1;
    }
    /* The peak report's lines add up to the peak. */
    if (_fil_track_dump(path, 0, &total) != 0 || total != peak) {
        fprintf(stderr, "stress: peak dump failed or total %llu != peak %llu\n",
                (unsigned long long)total, (unsigned long long)peak);
        failed = 1;
    }
    long long sum = prof_sum(path);
    if (sum < 0 || (uint64_t)sum != peak) {
        fprintf(stderr, "stress: peak report sums to %lld, peak is %llu\n", sum,
                (unsigned long long)peak);
        failed = 1;
    }
    /* Nothing is live, so the current report is empty. */
    if (_fil_track_dump(path, 1, &total) != 0 || total != 0 || prof_sum(path) != 0) {
        fprintf(stderr, "stress: current report not empty after everything was freed\n");
        failed = 1;
    }
    unlink(path);
    long qa = atomic_load(&quick_allocs), qf = atomic_load(&quick_frees);
    /* They need the bias, which ThreadSanitizer's build never grants. */
    if (_fil_lock_bias_possible() && (qa == 0 || qf == 0)) {
        fprintf(stderr, "stress: the quick paths never answered (%ld allocations, %ld frees)\n",
                qa, qf);
        failed = 1;
    }
    printf("stress: %d threads x %ld ops: peak %llu bytes over %u callsites, quick paths %ld + %ld, "
           "%s\n", nthreads, ops, (unsigned long long)peak, _fil_callsite_count(), qa, qf,
           failed ? "FAILED" : "ok");
    return failed;
}

#endif
