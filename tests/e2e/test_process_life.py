"""End-to-end: the profiled program's life, from fork to exit, goes as it would under plain python.

fork with and without exec, multiprocessing pools under every start method, os._exit, SIGTERM
and SIGINT, threads still running at exit, malloc inside TLS destructors, dlopen/dlclose while
tracking, recursion 50,000 deep, and stacks that are right again after generators, coroutines
and exceptions unwound. Every run has a timeout (conftest.RUN_TIMEOUT), so a deadlock fails the
test instead of hanging the suite; no assertion depends on timing.
"""
import os
import signal
import textwrap

import pytest

from conftest import (MiB, assert_close, bytes_at, bytes_under, bytes_with_sequence, compile_c,
                      describe, fil_lines, line_of, program_stderr, run_plain, total)

LIB_NAME = "_filpreload"


def lines(script):
    return lambda marker: "script.py:%d" % line_of(script, marker)


def assert_report(report, prof):
    assert report is not None and prof is not None, "no report written"
    for name in ("peak-memory.prof", "peak-memory.svg", "peak-memory-reversed.svg", "index.html"):
        assert os.path.getsize(os.path.join(report, name)) > 0, name


def run_dirs(out_parent):
    """Every run directory under the fil-out-* directories of a test's tmp_path."""
    found = []
    for d in os.listdir(str(out_parent)):
        if d.startswith("fil-out-"):
            found += [os.path.join(str(out_parent), d, r) for r in os.listdir(os.path.join(str(out_parent), d))]
    return found


# The library is mapped in a process iff it was preloaded (or forked from one that was).
PRELOAD_PROBE = textwrap.dedent("""\
    def preload_state():
        import os
        with open("/proc/self/maps") as f:
            mapped = "%s" in f.read()
        return (os.environ.get("LD_PRELOAD"), mapped)
    """ % LIB_NAME)


# ---- fork ----

FORK_SCRIPT = PRELOAD_PROBE + textwrap.dedent("""\
    import os, sys, threading
    kept = bytearray(12 << 20)  # @parent_before
    stop = False
    def churn():
        # Keeps the tracker busy while the main thread forks, so some forks happen while
        # another thread is inside an allocation.
        while not stop:
            junk = [bytearray(64) for _ in range(200)]
    t = threading.Thread(target=churn)
    t.start()
    for i in range(12):
        pid = os.fork()
        if pid == 0:
            # The child runs Python, allocates, and exits normally (atexit handlers run).
            mine = [bytearray(1 << 20) for _ in range(5)]
            mine.append(str(preload_state()[1]).encode())
            sys.exit(40 + i % 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 40 + i % 3, status
    stop = True
    t.join()
    after = bytearray(7 << 20)  # @parent_after
    print("forks done", flush=True)
    """)


def test_fork_without_exec_parent_reports_once(run_fil, tmp_path):
    """Forked children (some forked while another thread allocates) run Python and exit
    normally without deadlock; only the parent writes a report, and it holds the parent's
    memory, not the children's."""
    proc, report, prof = run_fil(FORK_SCRIPT)
    assert proc.stdout == b"forks done\n"
    assert_report(report, prof)
    assert len(run_dirs(tmp_path)) == 1, run_dirs(tmp_path)
    assert len([l for l in fil_lines(proc.stderr) if "Report:" in l]) == 1, proc.stderr.decode()
    L = lines(FORK_SCRIPT)
    assert_close(bytes_at(prof, L("parent_before")), 12 * MiB, what=describe(prof))
    assert_close(bytes_at(prof, L("parent_after")), 7 * MiB, what=describe(prof))
    assert total(prof) < 30 * MiB, describe(prof)  # no child's 5 MiB counted 12 times


FORK_EXEC_SCRIPT = PRELOAD_PROBE + textwrap.dedent("""\
    import os, subprocess, sys
    kept = bytearray(3 << 20)  # @kept
    child = "import os; print(os.environ.get('LD_PRELOAD'), '%s' in open('/proc/self/maps').read())"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.dup2(w, 1)
        os.execv(sys.executable, [sys.executable, "-c", child])
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    print("fork+exec:", out.strip(), os.waitstatus_to_exitcode(status))
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True).stdout
    print("subprocess:", out.strip())
    print("self:", preload_state())
    """ % LIB_NAME)


def test_fork_and_exec_child_is_a_plain_python(run_fil, tmp_path):
    """A child that execs (by hand or through subprocess) is a plain interpreter: no
    LD_PRELOAD in its environment, the library not mapped; the program itself sees no
    LD_PRELOAD either, though the library is loaded."""
    proc, report, prof = run_fil(FORK_EXEC_SCRIPT)
    assert proc.stdout.decode().splitlines() == [
        "fork+exec: None False 0", "subprocess: None False", "self: (None, True)"]
    assert_report(report, prof)
    assert len(run_dirs(tmp_path)) == 1


POOL_SCRIPT = PRELOAD_PROBE + textwrap.dedent("""\
    import multiprocessing as mp, os, sys
    def work(x):
        block = bytearray((x + 1) * 100_000)
        return (x * x, len(block), preload_state(), os.getpid())
    if __name__ == "__main__":
        method = sys.argv[1]
        ctx = mp.get_context(method)
        with ctx.Pool(3) as pool:
            results = pool.map(work, range(12))
            more = pool.apply_async(work, (20,)).get(timeout=60)
        assert [r[0] for r in results] == [x * x for x in range(12)], results
        assert [r[1] for r in results] == [(x + 1) * 100_000 for x in range(12)]
        assert more[0] == 400
        states = set(r[2] for r in results)
        pids = set(r[3] for r in results)
        assert os.getpid() not in pids
        print(method, sorted(states), flush=True)
        big = bytearray(6 << 20)  # @parent
    """)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_pool(run_fil, tmp_path, method):
    """Results are right and nothing hangs. Fork workers are copies of the profiled process
    (the library is mapped, not tracking, writing nothing); spawn and forkserver workers are
    fresh interpreters from sys.executable without the preload."""
    proc, report, prof = run_fil(POOL_SCRIPT, method)
    mapped = method == "fork"
    assert proc.stdout.decode() == "%s [(None, %s)]\n" % (method, mapped), proc.stdout
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()
    assert_report(report, prof)
    assert len(run_dirs(tmp_path)) == 1
    assert_close(bytes_at(prof, "script.py:%d" % line_of(POOL_SCRIPT, "parent")), 6 * MiB,
                 what=describe(prof))


# ---- exits and signals ----

def test_os_exit_keeps_its_code(run_fil):
    """os._exit skips atexit: no report is required, but the code is n and nothing hangs."""
    script = "import os\nkept = bytearray(1 << 20)\nprint('bye', flush=True)\nos._exit(13)\n"
    proc, report, prof = run_fil(script, expect_exit=13)
    assert proc.stdout == b"bye\n"
    assert b"Traceback" not in proc.stderr and b"Segmentation" not in proc.stderr


def test_os_exit_from_a_thread_while_others_allocate(run_fil):
    script = textwrap.dedent("""\
        import os, threading
        def churn():
            while True:
                junk = [bytearray(100) for _ in range(100)]
        for _ in range(4):
            threading.Thread(target=churn, daemon=True).start()
        def leave():
            os._exit(9)
        threading.Thread(target=leave).start()
        threading.Event().wait()
        """)
    run_fil(script, expect_exit=9)


SIGTERM_SCRIPT = textwrap.dedent("""\
    import os, signal, sys, time
    kept = bytearray(4 << 20)  # @kept
    if len(sys.argv) > 1:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(5))
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)
    print("not reached")
    """)


def test_sigterm_default_dies_like_plain_python(run_fil, tmp_path):
    proc, report, prof = run_fil(SIGTERM_SCRIPT, expect_exit=-signal.SIGTERM)
    plain = run_plain("script.py", cwd=tmp_path)
    assert plain.returncode == proc.returncode == -signal.SIGTERM
    assert proc.stdout == plain.stdout == b"ready\n"


def test_sigterm_handler_that_exits_writes_the_report(run_fil, tmp_path):
    proc, report, prof = run_fil(SIGTERM_SCRIPT, "handler", expect_exit=5)
    plain = run_plain("script.py", "handler", cwd=tmp_path)
    assert plain.returncode == 5
    assert proc.stdout == plain.stdout == b"ready\n"
    assert program_stderr(proc.stderr) == plain.stderr
    assert_report(report, prof)
    assert_close(bytes_at(prof, "script.py:%d" % line_of(SIGTERM_SCRIPT, "kept")), 4 * MiB,
                 what=describe(prof))


SIGINT_SCRIPT = textwrap.dedent("""\
    import os, signal, time
    kept = bytearray(5 << 20)  # @kept
    def wait():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(60)
    wait()
    """)


def test_sigint_writes_the_report_and_dies_like_plain_python(run_fil, tmp_path):
    proc, report, prof = run_fil(SIGINT_SCRIPT, expect_exit=-signal.SIGINT)
    plain = run_plain("script.py", cwd=tmp_path)
    assert plain.returncode == -signal.SIGINT
    assert program_stderr(proc.stderr) == plain.stderr, proc.stderr.decode()
    assert_report(report, prof)
    assert_close(bytes_at(prof, "script.py:%d" % line_of(SIGINT_SCRIPT, "kept")), 5 * MiB,
                 what=describe(prof))


def test_sigint_caught_by_the_program_is_its_business(run_fil, tmp_path):
    script = textwrap.dedent("""\
        import os, signal, sys
        try:
            os.kill(os.getpid(), signal.SIGINT)
            import time; time.sleep(60)
        except KeyboardInterrupt:
            print("caught", flush=True)
        sys.exit(0)
        """)
    proc, report, prof = run_fil(script)
    assert proc.stdout == b"caught\n"
    assert_report(report, prof)


# ---- threads, TLS destructors, dlopen ----

def test_daemon_threads_allocating_while_main_exits(run_fil):
    """Daemon threads still allocating (Python objects and libc) while the interpreter shuts
    down: no crash, no hang, a report. Run a few times: shutdown races vary."""
    script = textwrap.dedent("""\
        import ctypes, threading
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        def churn(n):
            while True:
                junk = [bytearray(n) for _ in range(50)]
                p = libc.malloc(n * 10)
                libc.free(p)
        for i in range(6):
            threading.Thread(target=churn, args=(100 + i * 1000,), daemon=True).start()
        kept = bytearray(3 << 20)
        print("main done", flush=True)
        """)
    for _ in range(3):
        proc, report, prof = run_fil(script)
        assert proc.stdout == b"main done\n"
        assert_report(report, prof)


TLS_LIB = r"""
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void *volatile leaked[64];
static volatile int nleaked;

/* Runs during thread exit, after the thread's own code is done: allocates, frees, and keeps
 * one block (so the report must show it), like many C libraries' per-thread caches. */
static void destructor(void *value) {
    free(value);
    char *scratch = malloc(4096);
    memset(scratch, 1, 4096);
    scratch = realloc(scratch, 100000);
    free(scratch);
    void *keep = calloc(1, 1 << 20);
    int i = __atomic_fetch_add(&nleaked, 1, __ATOMIC_SEQ_CST);
    if (i < 64) leaked[i] = keep;
}

static void make_key(void) { pthread_key_create(&key, destructor); }

void tls_touch(void) {
    pthread_once(&once, make_key);
    pthread_setspecific(key, malloc(1000));
}

static void *thread_main(void *arg) { (void)arg; tls_touch(); return NULL; }

/* Creates n native threads, each touching the key, and joins them. */
int tls_native_threads(int n) {
    for (int i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, thread_main, NULL) != 0) return -1;
        pthread_join(t, NULL);
    }
    return 0;
}

int tls_leaked(void) { return nleaked; }
"""


def test_malloc_in_tls_destructors(run_fil, tmp_path):
    """pthread_key destructors that malloc/realloc/free during thread exit, for native threads
    created while tracking and for Python threads: no crash or hang, and the blocks they keep
    are in the report."""
    lib = compile_c(tmp_path, TLS_LIB)
    script = textwrap.dedent("""\
        import ctypes, sys, threading, time
        lib = ctypes.CDLL(sys.argv[1])
        assert lib.tls_native_threads(8) == 0  # @native
        threads = [threading.Thread(target=lib.tls_touch) for _ in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        # join() returns once Python is done with a thread; its OS thread runs the TLS
        # destructors after that, so wait for them (a hang still fails after 30 s).
        deadline = time.monotonic() + 30
        while lib.tls_leaked() < 16 and time.monotonic() < deadline:
            time.sleep(0.01)
        print(lib.tls_leaked(), flush=True)
        """)
    proc, report, prof = run_fil(script, lib)
    assert proc.stdout == b"16\n"
    assert_report(report, prof)
    # 16 MiB kept by destructors, whatever stack they are charged to.
    assert total(prof) >= 16 * MiB, describe(prof)


DL_LIB = r"""
#include <stdlib.h>
#include <string.h>
static char *cache;
/* Loading allocates, unloading frees: the tracker sees both while the library is mapped. */
__attribute__((constructor)) static void on_load(void) { cache = malloc(256 << 10); memset(cache, 2, 256 << 10); }
__attribute__((destructor)) static void on_unload(void) { free(cache); }
void *dl_alloc(size_t n) { char *p = malloc(n); memset(p, 3, n); return p; }
void dl_free(void *p) { free(p); }
"""


def test_dlopen_dlclose_while_tracking(run_fil, tmp_path):
    """A library loaded and unloaded 30 times while tracking; blocks it allocated before
    dlclose outlive it (freed later, or kept to the peak) and stay charged to the Python
    line that called it."""
    lib = compile_c(tmp_path, DL_LIB)
    script = textwrap.dedent("""\
        import _ctypes, ctypes, sys
        kept = []
        for i in range(30):
            lib = ctypes.CDLL(sys.argv[1])
            lib.dl_alloc.restype = ctypes.c_void_p
            lib.dl_alloc.argtypes = [ctypes.c_size_t]
            p = lib.dl_alloc(1 << 20)  # @alloc
            if i % 3 == 0:
                kept.append(p)
            else:
                lib.dl_free.argtypes = [ctypes.c_void_p]
                lib.dl_free(p)
            handle = lib._handle
            del lib
            _ctypes.dlclose(handle)
        libc = ctypes.CDLL(None)
        libc.free.argtypes = [ctypes.c_void_p]
        for p in kept[5:]:
            libc.free(p)  # blocks from an unloaded library, freed through libc
        print(len(kept), flush=True)
        """)
    proc, report, prof = run_fil(script, lib)
    assert proc.stdout == b"10\n"
    assert_report(report, prof)
    at_alloc = bytes_at(prof, "script.py:%d" % line_of(script, "alloc"))
    # At the peak 10 blocks were alive plus at most the one about to be freed.
    assert 10 * MiB <= at_alloc <= 11 * MiB + 64 * 1024, describe(prof)


# ---- deep stacks and unwinding ----

DEEP_SCRIPT = textwrap.dedent("""\
    import sys, threading
    sys.setrecursionlimit(200_000)
    threading.stack_size(512 << 20)
    kept = []
    def down(n):
        if n == 0:
            kept.append(bytearray(6 << 20))  # @bottom
            return
        down(n - 1)  # @recurse
    def main():
        down(50_000)
    t = threading.Thread(target=main)
    t.start()
    t.join()
    print("deep done", flush=True)
    """)


def test_recursion_50000_deep(run_fil):
    """No crash, and a bounded report: stacks are cut to the 256 frames nearest the
    allocation under a `[stack truncated]` root, so the .prof stays small."""
    proc, report, prof = run_fil(DEEP_SCRIPT)
    assert proc.stdout == b"deep done\n"
    assert_report(report, prof)
    L = lines(DEEP_SCRIPT)
    prof_path = os.path.join(report, "peak-memory.prof")
    assert os.path.getsize(prof_path) < 4 * MiB
    for stack in prof:
        assert len(stack) <= 257, len(stack)
    deep = [(s, n) for s, n in prof.items() if s[0].file == "[stack truncated]"]
    assert deep, describe(prof)
    bottom = bytes_at(prof, L("bottom") + " (down)")
    assert_close(bottom, 6 * MiB, what=describe(prof))
    # The 6 MiB is under the truncated root, with only `down` frames kept above the leaf.
    held = [(s, n) for s, n in deep if leaf_at(s, L("bottom"))]
    assert sum(n for _, n in held) == bottom
    for s, _ in held:
        assert all(f.func == "down" for f in s[1:]), s[:5]
    for path in ("peak-memory.svg", "peak-memory-reversed.svg", "index.html"):
        assert os.path.getsize(os.path.join(report, path)) < 8 * MiB


UNWIND_SCRIPT = textwrap.dedent("""\
    import asyncio
    kept = []
    def deep_raise(n):
        if n == 0:
            scratch = bytearray(1000)  # @in_deep
            raise ValueError("bottom")
        deep_raise(n - 1)  # @deep_call
    def after_exception():
        kept.append(bytearray(3 << 20))  # @after_exc
    def gen_deep(n):
        if n == 0:
            yield 1
            kept.append(bytearray(4 << 20))  # @gen_resumed
            yield 2
        else:
            yield from gen_deep(n - 1)  # @gen_delegate
    def make_suspended(n):
        # Creates and first-resumes the generator 300 frames deep, then returns: the
        # generator stays suspended while all those frames unwind.
        if n == 0:
            g = gen_deep(3)
            next(g)
            return g
        return make_suspended(n - 1)
    async def worker_a():
        for _ in range(3):
            await asyncio.sleep(0)
            kept.append(bytearray(2 << 20))  # @coro_a
    async def worker_b():
        for _ in range(3):
            try:
                await asyncio.sleep(0)
                deep_raise(50)  # @coro_b_raise
            except ValueError:
                pass
            kept.append(bytearray(1 << 20))  # @coro_b
    async def both():
        await asyncio.gather(worker_a(), worker_b())
    try:
        deep_raise(400)  # @module_raise
    except ValueError:
        pass
    after_exception()  # @module_after
    g = make_suspended(300)
    next(g)  # @module_resume
    asyncio.run(both())  # @module_async
    """)


def leaf_at(stack, where):
    """The stack's allocating frame is at `where` ("script.py:LINE")."""
    leaf = stack[-1]
    return "%s:%d" % (os.path.basename(leaf.file), leaf.line) == where


def test_stacks_are_right_after_unwinding(run_fil):
    """After an exception unwound 400 frames, a generator suspended 300 frames deep outlived
    those frames, and coroutines interleaved (one of them raising through 50 frames), each
    later allocation is charged to exactly the stack that made it."""
    proc, report, prof = run_fil(UNWIND_SCRIPT)
    assert_report(report, prof)
    L = lines(UNWIND_SCRIPT)
    # Exactly <module> -> after_exception: no deep_raise frame left on the stack.
    after = {s: n for s, n in prof.items() if leaf_at(s, L("after_exc"))}
    assert_close(sum(after.values()), 3 * MiB, what=describe(prof))
    for s in after:
        assert [(f.line, f.func) for f in s] == [
            (int(L("module_after").split(":")[1]), "<module>"),
            (int(L("after_exc").split(":")[1]), "after_exception")], s
    # The generator resumed from <module>: <module> -> gen_deep x4, none of make_suspended.
    resumed = {s: n for s, n in prof.items() if leaf_at(s, L("gen_resumed"))}
    assert_close(sum(resumed.values()), 4 * MiB, what=describe(prof))
    for s in resumed:
        assert s[0].line == int(L("module_resume").split(":")[1]), s
        assert [f.func for f in s[1:]] == ["gen_deep"] * 4, s
    # Coroutines: a's blocks under a, b's under b, never each other's frames.
    a_bytes = bytes_at(prof, L("coro_a") + " (worker_a)")
    b_bytes = bytes_at(prof, L("coro_b") + " (worker_b)")
    assert_close(a_bytes, 6 * MiB, what=describe(prof))
    assert_close(b_bytes, 3 * MiB, what=describe(prof))
    for s, n in prof.items():
        funcs = [f.func for f in s]
        if "worker_a" in funcs:
            assert "worker_b" not in funcs and "deep_raise" not in funcs, s
        if s[-1].func == "worker_b":
            assert "deep_raise" not in funcs and "worker_a" not in funcs, s
    assert_close(bytes_under(prof, L("module_async") + " (<module>)"), 9 * MiB, rel=0.05,
                 what=describe(prof))
    assert bytes_with_sequence(prof, L("module_async") + " (<module>)") >= 9 * MiB
