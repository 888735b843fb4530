"""Thread pools (issue 6): native worker threads are charged to the Python code waiting on them,
pools keep their thread counts by default, and --limit-thread-pools really limits them."""
import json
import subprocess
import sys

import pytest

from conftest import MiB, assert_close, bytes_at, clean_env, compile_c, line_of, write_script

OPENMP_SOURCE = r"""
#include <omp.h>
#include <stdlib.h>
#include <string.h>

void *kept[256];

/* Every thread of the team allocates bytes/nthreads; keep=1 keeps the blocks alive. Returns the
   number of threads that really ran. */
int parallel_alloc(size_t bytes, int keep) {
    int nthreads = 1;
    #pragma omp parallel
    {
        #pragma omp single
        nthreads = omp_get_num_threads();
        /* implicit barrier after single: nthreads is set for everyone */
        size_t each = bytes / (size_t)nthreads;
        char *p = malloc(each);
        memset(p, 1, each);
        int t = omp_get_thread_num();
        if (keep && t < 256) kept[t] = p;
        else free(p);
    }
    return nthreads;
}
"""

OPENMP_SCRIPT = """
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.parallel_alloc.argtypes = [ctypes.c_size_t, ctypes.c_int]

def warm_up():
    # The OpenMP pool is created here, so its threads were started by this function.
    return lib.parallel_alloc(16 * 1024 * 1024, 0)  # @warm

def keep_64_mib():
    return lib.parallel_alloc(64 * 1024 * 1024, 1)  # @keep

first = warm_up()
second = keep_64_mib()
print(first, second)
"""


def test_openmp_workers_charged_to_the_waiting_line(tmp_path, run_fil):
    lib = compile_c(tmp_path, OPENMP_SOURCE, flags=("-fopenmp",))
    env = {"OMP_NUM_THREADS": "4"}
    proc, _, prof = run_fil(OPENMP_SCRIPT, lib, env=env)
    first, second = map(int, proc.stdout.split())
    assert first > 1 and second > 1, "the OpenMP region ran with one thread only"
    keep = line_of(OPENMP_SCRIPT, "keep")
    # All 64 MiB, including what the worker threads allocated, at keep_64_mib's line; none of it
    # at warm_up's line, although warm_up's call created the pool's threads.
    assert_close(bytes_at(prof, "script.py:%d (keep_64_mib)" % keep), 64 * MiB,
                 what="keep_64_mib's line")
    assert bytes_at(prof, "warm_up") < MiB


AMBIGUOUS_SOURCE = r"""
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_t worker;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go, done;
void *kept;

static void *run(void *arg) {
    (void)arg;
    pthread_mutex_lock(&mu);
    while (!go) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    kept = malloc(32 << 20);
    memset(kept, 1, 32 << 20);
    pthread_mutex_lock(&mu);
    done = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return NULL;
}

void start_worker(void) { pthread_create(&worker, NULL, run, NULL); }

/* Called through ctypes.PyDLL: the GIL stays held, so no Python thread waits in native code. */
void trigger_and_wait(void) {
    pthread_mutex_lock(&mu);
    go = 1;
    pthread_cond_broadcast(&cv);
    while (!done) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}
"""

AMBIGUOUS_SCRIPT = """
import ctypes, sys
lib = ctypes.PyDLL(sys.argv[1])

def starts_the_thread():
    lib.start_worker()  # @start

def later():
    lib.trigger_and_wait()

starts_the_thread()
later()
"""


def test_fallback_to_creator_is_visible(tmp_path, run_fil):
    """No Python thread is waiting in native code: the worker's memory goes to the stack that
    started the thread, under a frame saying so."""
    lib = compile_c(tmp_path, AMBIGUOUS_SOURCE)
    _, _, prof = run_fil(AMBIGUOUS_SCRIPT, lib)
    start = line_of(AMBIGUOUS_SCRIPT, "start")
    marked = {stack: n for stack, n in prof.items()
              if stack[-1].func.startswith("[native thread")}
    assert_close(sum(marked.values()), 32 * MiB, what="memory charged by the fallback")
    for stack in marked:
        assert any(f.line == start and f.func == "starts_the_thread" for f in stack), stack
    assert bytes_at(prof, "later") < MiB


POOL_INFO_SCRIPT = """
import json, sys
import numpy as np
from threadpoolctl import threadpool_info
a = np.ones((600, 600))
(a @ a).sum()
json.dump([{"api": p["user_api"], "threads": p["num_threads"]} for p in threadpool_info()],
          sys.stderr)
sys.stderr.write("\\n")
"""


def _pool_threads(stderr):
    line = [l for l in stderr.decode().splitlines() if l.startswith("[")][-1]
    return {p["api"]: p["threads"] for p in json.loads(line)}


def _cores():
    import os

    return len(os.sched_getaffinity(0))


@pytest.mark.skipif(_cores() < 2, reason="needs 2 cores for a multi-threaded BLAS pool")
def test_pools_keep_their_threads_by_default(run_fil):
    pytest.importorskip("threadpoolctl")
    proc, _, _ = run_fil(POOL_INFO_SCRIPT)
    pools = _pool_threads(proc.stderr)
    assert pools.get("blas", 0) > 1, pools


def test_limit_thread_pools_option(run_fil):
    pytest.importorskip("threadpoolctl")
    proc, _, prof = run_fil(POOL_INFO_SCRIPT, options=("--limit-thread-pools",))
    pools = _pool_threads(proc.stderr)
    assert pools and all(n == 1 for n in pools.values()), pools
    assert prof  # the report is still written


LIMITED_SCRIPT = """
import json, sys
import numpy as np
from threadpoolctl import threadpool_info
from filprofiler._threadpools import limited

def blas():
    return {p["user_api"]: p["num_threads"] for p in threadpool_info()}

before = blas()
with limited():
    during = blas()
    numexpr_during = None
    try:
        import numexpr
        numexpr_during = numexpr.get_num_threads()
    except ImportError:
        pass
after = blas()
print(json.dumps({"before": before, "during": during, "after": after,
                  "numexpr_during": numexpr_during}))
"""


@pytest.mark.skipif(_cores() < 2, reason="needs 2 cores for a multi-threaded BLAS pool")
def test_limited_restores_previous_limits(tmp_path):
    """The per-cell/per-call form: one thread inside, the previous counts afterwards."""
    pytest.importorskip("threadpoolctl")
    script = write_script(tmp_path, LIMITED_SCRIPT)
    proc = subprocess.run([sys.executable, "-m", "filprofiler", "python", script],
                          cwd=str(tmp_path), env=clean_env(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    result = json.loads(proc.stdout)
    assert result["before"]["blas"] > 1
    assert all(n == 1 for n in result["during"].values()), result
    assert result["after"] == result["before"]
    if result["numexpr_during"] is not None:
        assert result["numexpr_during"] == 1
