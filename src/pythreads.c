/* pythreads.c: which Python threads are waiting on native work.
 *
 * A native thread (an OpenBLAS, OpenMP, numexpr or BLOSC worker) has no Python stack. The
 * memory it allocates belongs, for the user, to the Python line that asked for the work; that
 * line's thread is inside native code with the GIL released, waiting. Extensions release the GIL
 * with Py_BEGIN_ALLOW_THREADS, i.e. PyEval_SaveThread()/PyEval_RestoreThread() called through the
 * PLT, so this preloaded library can see them: the thread states currently released are kept in
 * a small set. When exactly one is in it, a native thread's allocation is charged to that
 * thread's current stack (line included); otherwise to the stack that created the native thread,
 * under a visible "[native thread ...]" frame so the report says how much was charged that way.
 *
 * Safety of reading another thread's frames: the set is changed under the tracking lock, and a
 * thread leaves it (in PyEval_RestoreThread, before taking the GIL back) only through that lock.
 * Stacks are taken under the same lock, so while a native thread walks the waiting thread's
 * frames, that thread cannot resume running Python and change them.
 *
 * The releasing thread also notes its own state in its fil_thread_t until it takes it back, so its
 * allocations meanwhile find their Python stack without a thread-specific-data lookup, and take
 * that stack only once: it cannot change until the thread runs Python again (pystack_311.c).
 *
 * Whether GIL releases inside libpython itself (time.sleep, file reads) are seen depends on how
 * it was built: with -fno-semantic-interposition they bind directly and are not. Either way is
 * right: such a thread is waiting in native code all the same.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "fil_internal.h"
#include "pystack.h"

#include <dlfcn.h>

#define MAX_RELEASED 64

static PyThreadState *released[MAX_RELEASED];   /* protected by the tracking lock */
static int nreleased;
static int overflowed;   /* more released threads than slots: never guess then */

typedef PyThreadState *(*save_fn)(void);
typedef void (*restore_fn)(PyThreadState *);

static save_fn real_save;
static restore_fn real_restore;

static void resolve(void) {
    _fil_tl_guard++;   /* dlsym may allocate */
    real_save = (save_fn)dlsym(RTLD_NEXT, "PyEval_SaveThread");
    real_restore = (restore_fn)dlsym(RTLD_NEXT, "PyEval_RestoreThread");
    _fil_tl_guard--;
}

__attribute__((visibility("default"))) PyThreadState *PyEval_SaveThread(void) {
    if (FIL_UNLIKELY(!real_save)) resolve();
    PyThreadState *ts = real_save();
    if (_fil_tracking && ts && _fil_tl_guard == 0) {
        _fil_tl_guard++;
        _fil_lock();
        if (nreleased < MAX_RELEASED) released[nreleased++] = ts;
        else overflowed = 1;
        fil_thread_t *me = _fil_thread_get();
        if (me) {
            me->released = ts;
            me->released_epoch = 0;   /* its stack is taken at its first allocation */
        }
        _fil_unlock();
        _fil_tl_guard--;
    }
    return ts;
}

__attribute__((visibility("default"))) void PyEval_RestoreThread(PyThreadState *ts) {
    if (FIL_UNLIKELY(!real_restore)) resolve();
    /* Always leave the set, tracking or not: a stale entry would point at a running thread. */
    fil_thread_t *me = _fil_tl_thread;
    if (me) me->released = NULL;
    if (nreleased) {
        _fil_tl_guard++;
        _fil_lock();
        for (int i = 0; i < nreleased; i++) {
            if (released[i] == ts) {
                released[i] = released[--nreleased];
                break;
            }
        }
        if (nreleased == 0) overflowed = 0;
        _fil_unlock();
        _fil_tl_guard--;
    }
    real_restore(ts);
}

void *_fil_pythreads_sole_waiter(void) {
    return nreleased == 1 && !overflowed ? released[0] : NULL;
}

void _fil_pythreads_reset(void) {
    _fil_lock();
    nreleased = 0;
    overflowed = 0;
    _fil_unlock();
}
