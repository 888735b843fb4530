/* lock.c: the tracking lock, biased towards the thread that does most of the tracking now.
 *
 * Every tracked allocation and free takes this lock once. For an uncontended lock the cost is the
 * atomic read-modify-write itself: a full barrier that drains the store buffer, measured at about
 * 14% of a profiled allocation-heavy pure-Python run. Yet at any moment nearly all of them come
 * from one thread, the one holding the GIL. So the lock is biased: one thread, the owner, takes
 * it with plain stores, and every other thread takes an ordinary spinlock and revokes the bias
 * first. `bias_for` (_fil_lock_bias_for) names the owner while the bias is on, and is NULL
 * otherwise. The fast path is inline (fil_lock_enter/fil_lock_leave in fil_internal.h), so the
 * hot hooks take the lock without a call; _fil_lock/_fil_unlock wrap it for everyone else.
 *
 * The owner's fast path:        me->lock_busy = 1; compiler barrier; if (bias_for == me) enter.
 * A non-owner taking the lock:  spinlock; old = bias_for; bias_for = NULL; membarrier();
 *                               wait while old->lock_busy.
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) makes every running thread of the process execute
 * a full memory barrier before it returns. Hence either the owner's store to its busy flag is
 * visible to the revoker after the call (and the revoker waits for the owner to leave), or the
 * owner's load of `bias_for` comes after the barrier and sees NULL (and the owner takes the
 * spinlock like everyone else). This is the asymmetric form of Dekker's algorithm: the rare side
 * pays a syscall so that the common side pays nothing.
 *
 * The bias follows the work. Whichever thread takes the spinlock `quiet_needed` times in a row,
 * no other thread in between, gets the bias (only that thread, holding the spinlock, ever sets
 * bias_for to itself). Python threads take turns at the GIL every few milliseconds, tens of
 * thousands of allocations each, so each turn but its first few thousand runs on the fast path;
 * a single-threaded program keeps one owner for good. Each thread's busy flag lies in its own
 * state (fil_thread_t), which is never freed, so a former owner that stalled inside its fast path
 * writes only its own flag, and sees bias_for naming someone else.
 *
 * A revocation costs a membarrier (an interrupt to every core running the process), which a
 * short turn does not repay: after a turn of less than a millisecond quiet_needed doubles (up to
 * about a million), after a longer one it halves (down to 4096). Without membarrier (old kernels,
 * some sandboxes) or under ThreadSanitizer (which cannot see the barrier) the bias is never
 * granted and this is a plain spinlock.
 */
#include "fil_internal.h"
#include "prim.h"

#include <sched.h>
#include <stdatomic.h>

/* The stress build sets both to 16, to move the bias around as often as it can. */
#ifndef FIL_LOCK_QUIET_FIRST
#define FIL_LOCK_QUIET_FIRST 4096u
#endif
#ifndef FIL_LOCK_QUIET_MAX
#define FIL_LOCK_QUIET_MAX (1u << 20)
#endif

static atomic_int spin;                      /* the spinlock */
_Atomic(fil_thread_t *) _fil_lock_bias_for;   /* bias_for */
static int bias_supported;
/* Under the spinlock: */
static fil_thread_t *run_thread;             /* the thread of the current run of acquisitions */
static unsigned run_len;
static unsigned quiet_needed = FIL_LOCK_QUIET_FIRST;
static uint64_t turn_start_ns;               /* when the bias was last granted */

/* _fil_lock's caller, when it got in on the fast path (fil_lock_enter's callers keep that in a
   local instead). */
static __thread fil_thread_t *tl_fast __attribute__((tls_model("initial-exec")));

#define LONG_TURN_NS 1000000u

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static void spin_lock(void) {
    for (;;) {
        if (!atomic_exchange_explicit(&spin, 1, memory_order_acquire)) return;
        for (int spins = 0; atomic_load_explicit(&spin, memory_order_relaxed); spins++) {
            if (spins < 64) cpu_relax();
            else sched_yield();   /* the holder may be descheduled: let it run */
        }
    }
}

static void spin_unlock(void) { atomic_store_explicit(&spin, 0, memory_order_release); }

/* Caller holds the spinlock. Afterwards the owner is not inside the critical section and will
   not enter it on the fast path. */
static void revoke(void) {
    fil_thread_t *o = atomic_load_explicit(&_fil_lock_bias_for, memory_order_relaxed);
    if (!o) return;
    atomic_store_explicit(&_fil_lock_bias_for, NULL, memory_order_relaxed);
    prim_membarrier();
    while (atomic_load_explicit(&o->lock_busy, memory_order_acquire)) cpu_relax();
    if (prim_now_ns() - turn_start_ns < LONG_TURN_NS) {
        if (quiet_needed < FIL_LOCK_QUIET_MAX) quiet_needed *= 2;
    } else if (quiet_needed > FIL_LOCK_QUIET_FIRST) {
        quiet_needed /= 2;
    }
}

/* Caller holds the spinlock, the bias revoked. A thread alone at the lock for long enough gets
   the bias. A thread without a state yet (NULL) never does. */
static void count_run(fil_thread_t *me) {
    if (!bias_supported || !me) {
        run_thread = NULL;
        return;
    }
    if (me != run_thread) {
        run_thread = me;
        run_len = 0;
    }
    if (++run_len < quiet_needed) return;
    run_len = 0;
    turn_start_ns = prim_now_ns();
    atomic_store_explicit(&_fil_lock_bias_for, me, memory_order_release);
}

/* The slow half of fil_lock_enter (fil_internal.h): the spinlock, for a thread without the bias. */
void _fil_lock_slow(fil_thread_t *me) {
    spin_lock();
    revoke();   /* someone else's bias (or none: a no-op) */
    count_run(me);
}

/* Granted the bias in this very acquisition (count_run): leaving by the spinlock is right, the
   fast path starts with the next one. */
void _fil_unlock_slow(void) { spin_unlock(); }

void _fil_lock(void) {
    fil_thread_t *me = _fil_tl_thread;
    if (fil_lock_enter(me)) tl_fast = me;
}

void _fil_unlock(void) {
    fil_thread_t *me = tl_fast;
    if (me) tl_fast = NULL;
    fil_lock_leave(me, me != NULL);
}

void _fil_lock_enable_bias(void) {
    /* The spinlock itself, not _fil_lock(): the caller may hold the bias from an earlier tracking
       session, and revoke() waits for the owner to leave a fast path it would then be inside. */
    spin_lock();
    revoke();   /* an owner may be on its fast path: wait for it */
    fil_thread_t *me = _fil_thread_get();
#if defined(__SANITIZE_THREAD__)
    bias_supported = 0;
#else
    bias_supported = prim_membarrier_init() == 0;
#endif
    run_thread = me;   /* the first run to count is the caller's */
    run_len = 0;
    spin_unlock();
}

int _fil_lock_bias_possible(void) { return bias_supported; }

void _fil_lock_after_fork_child(void) {
    /* One thread now: the forking thread, which held the lock in the prepare handler. */
    fil_thread_t *me = _fil_tl_thread;
    tl_fast = NULL;
    if (me) atomic_store_explicit(&me->lock_busy, 0, memory_order_relaxed);
    atomic_store_explicit(&_fil_lock_bias_for, NULL, memory_order_relaxed);
    run_thread = NULL;
    run_len = 0;
    spin_unlock();
}
