/* lock.c: the tracking lock, biased towards the thread that does most of the tracking.
 *
 * Every tracked allocation and free takes this lock once. In a Python program nearly all of them
 * come from one thread (the one holding the GIL, usually the main thread), and for an uncontended
 * lock the cost is the atomic read-modify-write itself: a full barrier that drains the store
 * buffer, measured at about 14% of a profiled allocation-heavy pure-Python run. So the lock is
 * biased: one thread, the owner, takes it with plain stores, and every other thread takes an
 * ordinary spinlock and, the first time, revokes the bias.
 *
 * The owner's fast path:        owner_busy = 1; compiler barrier; if (!revoked) enter.
 * A non-owner taking the lock:  spinlock; revoked = 1; membarrier(); wait while owner_busy.
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) makes every running thread of the process execute
 * a full memory barrier before it returns. Hence either the owner's store to owner_busy is visible
 * to the revoker after the call (and the revoker waits for the owner to leave), or the owner's
 * load of `revoked` comes after the barrier and sees 1 (and the owner takes the spinlock like
 * everyone else). This is the asymmetric form of Dekker's algorithm: the rare side pays a
 * syscall so that the common side pays nothing.
 *
 * The bias stays revoked while other threads keep tracking; the owner restores it, under the
 * spinlock, after a run of acquisitions during which no other thread took the lock: 4096 at
 * first, doubling at each revocation up to about a million, so that a process whose other
 * threads allocate now and then does not pay a membarrier (an interrupt to every core) each
 * time. Without
 * membarrier (old kernels, some sandboxes) or under ThreadSanitizer (which cannot see the
 * barrier) the bias is never granted and this is a plain spinlock.
 */
#include "fil_internal.h"
#include "prim.h"

#include <sched.h>
#include <stdatomic.h>

#define BIAS_QUIET_FIRST 4096u
#define BIAS_QUIET_MAX (1u << 20)

static atomic_int spin;                 /* the spinlock */
static atomic_int revoked = 1;          /* 1: the owner must use the spinlock too */
static atomic_int owner_busy;           /* written by the owner only */
static _Atomic(const void *) owner;     /* identity of the owner thread (see self()) */
static int bias_supported;
static unsigned nonowner_ops;           /* under the spinlock */
static unsigned quiet_owner_ops;        /* under the spinlock, by the owner */
static unsigned seen_nonowner_ops;
static unsigned quiet_needed = BIAS_QUIET_FIRST;   /* under the spinlock */

static __thread char tl_identity __attribute__((tls_model("initial-exec")));
static __thread int tl_fast __attribute__((tls_model("initial-exec")));  /* holding via fast path */

static inline const void *self(void) { return &tl_identity; }

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
    if (atomic_load_explicit(&revoked, memory_order_relaxed)) return;
    atomic_store_explicit(&revoked, 1, memory_order_relaxed);
    if (quiet_needed < BIAS_QUIET_MAX) quiet_needed *= 2;
    prim_membarrier();
    while (atomic_load_explicit(&owner_busy, memory_order_acquire)) cpu_relax();
}

void _fil_lock(void) {
    if (atomic_load_explicit(&owner, memory_order_relaxed) == self()) {
        atomic_store_explicit(&owner_busy, 1, memory_order_relaxed);
        atomic_signal_fence(memory_order_seq_cst);   /* the barrier is membarrier's job */
        if (FIL_LIKELY(!atomic_load_explicit(&revoked, memory_order_relaxed))) {
            tl_fast = 1;
            return;
        }
        atomic_store_explicit(&owner_busy, 0, memory_order_release);
        spin_lock();
        /* Alone for long enough: take the bias back. */
        if (bias_supported && nonowner_ops == seen_nonowner_ops) {
            if (++quiet_owner_ops >= quiet_needed) atomic_store_explicit(&revoked, 0, memory_order_relaxed);
        } else {
            seen_nonowner_ops = nonowner_ops;
            quiet_owner_ops = 0;
        }
        return;
    }
    spin_lock();
    nonowner_ops++;
    revoke();
}

void _fil_unlock(void) {
    if (tl_fast) {
        tl_fast = 0;
        atomic_store_explicit(&owner_busy, 0, memory_order_release);
        return;
    }
    spin_unlock();
}

void _fil_lock_set_owner(void) {
    _fil_lock();
    revoke();   /* the old owner may be on its fast path: wait for it (we hold the spinlock) */
    atomic_store_explicit(&owner, self(), memory_order_relaxed);
    quiet_owner_ops = 0;
    seen_nonowner_ops = nonowner_ops;
#if defined(__SANITIZE_THREAD__)
    bias_supported = 0;
#else
    bias_supported = prim_membarrier_init() == 0;
#endif
    _fil_unlock();
}

void _fil_lock_after_fork_child(void) {
    /* One thread now: the forking thread, which held the lock in the prepare handler. */
    tl_fast = 0;
    atomic_store_explicit(&owner_busy, 0, memory_order_relaxed);
    atomic_store_explicit(&revoked, 1, memory_order_relaxed);
    atomic_store_explicit(&owner, self(), memory_order_relaxed);
    spin_unlock();
}
