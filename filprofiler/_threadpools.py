"""`--limit-thread-pools`: run BLAS, OpenMP, numexpr and BLOSC pools with one thread.

By default the profiler leaves thread pools alone (pool threads are charged to the Python code
waiting on them; see the README). Some users want Fil's documented behaviour instead: every pool
limited to one thread while profiling. threadpoolctl does it for BLAS and OpenMP runtimes that
are loaded; numexpr and blosc have setters of their own. Environment variables cover pools that
are created later by libraries not imported yet.
"""
import contextlib
import os
import sys

ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
            "NUMEXPR_NUM_THREADS", "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
            "BLOSC_NTHREADS")


def limit_for_process():
    """For `fil-profile run`: before the program starts, for its whole life."""
    for var in ENV_VARS:
        os.environ[var] = "1"
    _set_library_limits()


def _set_library_limits():
    """Limit pools of libraries already loaded; returns a function restoring them."""
    restores = []
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        ctl = threadpool_limits(limits=1)
        restores.append(ctl.restore_original_limits)
    numexpr = sys.modules.get("numexpr")
    if numexpr is not None and hasattr(numexpr, "set_num_threads"):
        old = numexpr.set_num_threads(1)
        restores.append(lambda: numexpr.set_num_threads(old))
    blosc = sys.modules.get("blosc") or sys.modules.get("numcodecs.blosc")
    if blosc is not None and hasattr(blosc, "set_nthreads"):
        old = blosc.set_nthreads(1)
        restores.append(lambda: blosc.set_nthreads(old))

    def restore():
        for r in reversed(restores):
            try:
                r()
            except Exception:
                pass

    return restore


@contextlib.contextmanager
def limited():
    """For one cell or one API call: limit pools, then put the previous limits back."""
    saved = {var: os.environ.get(var) for var in ENV_VARS}
    for var in ENV_VARS:
        os.environ[var] = "1"
    restore = _set_library_limits()
    try:
        yield
    finally:
        restore()
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
