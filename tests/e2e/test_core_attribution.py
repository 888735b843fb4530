"""End-to-end: the peak is the true high-water mark, and its bytes sit at the right stacks.

numpy arrays in nested functions (full stack, every line), a later larger total that was never
alive at one time, a peak reached thousands of times, Python threads alive at the peak,
generators and coroutines, threads that run on after the main thread ends, memory that has no
Python context at all, and the interpreter's own frame stack under deep recursion.
"""
import os
import re
import textwrap

import pytest

from conftest import (MiB, NO_PYTHON, assert_close, bytes_at, bytes_under,
                      bytes_with_sequence, compile_c, describe, line_of, total, total_except)


def lines(script):
    return lambda marker: "script.py:%d" % line_of(script, marker)


def test_numpy_arrays_in_nested_functions(run_fil):
    script = textwrap.dedent("""\
        import numpy as np  # @import
        MB = 1 << 20
        def inner(n):
            return np.ones(n, dtype=np.uint8)  # @inner_ones
        def middle():
            a = inner(30 * MB)  # @middle_calls_inner
            z = np.zeros((1024, 1024, 3))  # @middle_zeros
            return a, z
        def outer():
            kept = middle()  # @outer_calls_middle
            doubled = kept[0].astype(np.uint16)  # @outer_astype
            return kept, doubled
        result = outer()  # @module_calls_outer
        """)
    proc, report, prof = run_fil(script)
    L = lines(script)
    top, mid = "%s (<module>)" % L("module_calls_outer"), "%s (outer)" % L("outer_calls_middle")
    assert_close(bytes_under(prof, top, mid, "%s (middle)" % L("middle_calls_inner"),
                             "%s (inner)" % L("inner_ones")), 30 * MiB,
                 what="np.ones\n" + describe(prof))
    assert_close(bytes_under(prof, top, mid, "%s (middle)" % L("middle_zeros")), 24 * MiB,
                 what="np.zeros\n" + describe(prof))
    assert_close(bytes_under(prof, top, "%s (outer)" % L("outer_astype")), 60 * MiB,
                 what="astype\n" + describe(prof))
    assert_close(total_except(prof, L("import")), 114 * MiB, what="total\n" + describe(prof))


def test_earlier_true_peak_beats_later_larger_total(run_fil):
    """150 MiB alive at once early on; later 21 x 60 MiB and 90+50 MiB are allocated, far more in
    total, but never more than 140 MiB at one time: the report is the early moment."""
    script = textwrap.dedent("""\
        import numpy as np  # @import
        MB = 1 << 20
        def alloc(n):
            return np.empty(n, dtype=np.uint8)
        a = alloc(100 * MB)  # @a
        b = alloc(50 * MB)  # @b
        del a, b
        for i in range(20):
            c = alloc(60 * MB)  # @c
            del c
        d = alloc(60 * MB)  # @d
        del d
        x = alloc(90 * MB)  # @x
        y = alloc(50 * MB)  # @y
        """)
    proc, report, prof = run_fil(script)
    L = lines(script)
    assert_close(bytes_at(prof, L("a")), 100 * MiB, what="a\n" + describe(prof))
    assert_close(bytes_at(prof, L("b")), 50 * MiB, what="b\n" + describe(prof))
    for later in ("c", "d", "x", "y"):
        assert bytes_at(prof, L(later)) < 64 * 1024, "%s in the report\n%s" % (later,
                                                                             describe(prof))
    assert_close(total_except(prof, L("import")), 150 * MiB, what="total\n" + describe(prof))
    # The terminal summary states the same peak as the report.
    summary = proc.stderr.decode()
    m = re.search(r"=fil-profile= Peak tracked memory: ([0-9.]+) MiB", summary)
    assert m, summary
    assert abs(float(m.group(1)) * MiB - total(prof)) <= 0.1 * MiB, summary


def test_peak_reached_thousands_of_times(run_fil):
    """Grow, free a little, grow again, 4000 times: each step is a new peak, and the report
    holds exactly what was alive after the last one (the script prints that amount)."""
    script = textwrap.dedent("""\
        import numpy as np
        live = []
        live_bytes = 0
        for i in range(4000):
            if i % 4 == 3:
                gone = live.pop(len(live) // 2)
                live_bytes -= gone.nbytes
                del gone
            block = np.empty(16384 + (i % 7) * 1024, dtype=np.uint8)  # @grow
            live.append(block)
            live_bytes += block.nbytes
        del block
        print(live_bytes)
        """)
    proc, report, prof = run_fil(script)
    expected = int(proc.stdout)
    assert expected > 40 * MiB
    # Each block also has a numpy object header of ~100 bytes, well inside 5%.
    assert_close(bytes_at(prof, lines(script)("grow")), expected, what=describe(prof))


THREADS_SCRIPT = """\
import threading
import numpy as np  # @import
MB = 1 << 20
ready = threading.Barrier(4)
release = threading.Event()
def hold_a():
    x = np.empty(20 * MB, dtype=np.uint8)  # @thread_a
    ready.wait()
    release.wait()
def nested_b():
    return np.empty(30 * MB, dtype=np.uint8)  # @thread_b_inner
def hold_b():
    x = nested_b()  # @thread_b
    ready.wait()
    release.wait()
class Holder(threading.Thread):
    def run(self):
        x = np.empty(25 * MB, dtype=np.uint8)  # @thread_c
        ready.wait()
        release.wait()
threads = [threading.Thread(target=hold_a), threading.Thread(target=hold_b), Holder()]
for t in threads:
    t.start()
ready.wait()
main_part = np.empty(5 * MB, dtype=np.uint8)  # @main
release.set()
for t in threads:
    t.join()
"""


def test_python_threads_alive_at_the_peak(run_fil):
    proc, report, prof = run_fil(THREADS_SCRIPT)
    L = lines(THREADS_SCRIPT)
    assert_close(bytes_at(prof, L("thread_a") + " (hold_a)"), 20 * MiB,
                 what="hold_a\n" + describe(prof))
    assert_close(bytes_with_sequence(prof, L("thread_b") + " (hold_b)",
                                     L("thread_b_inner") + " (nested_b)"), 30 * MiB,
                 what="hold_b\n" + describe(prof))
    assert_close(bytes_at(prof, L("thread_c") + " (Holder.run)"), 25 * MiB,
                 what="Holder.run\n" + describe(prof))
    assert_close(bytes_under(prof, L("main") + " (<module>)"), 5 * MiB)
    # A thread's memory is on its own stack, never on the main thread's.
    for stack, n in prof.items():
        funcs = {f.func for f in stack}
        if funcs & {"hold_a", "hold_b", "Holder.run"}:
            assert not stack[0].file.endswith("script.py"), stack
            assert stack[0].file.endswith("threading.py"), stack
    assert_close(total_except(prof, L("import")), 80 * MiB, what="total\n" + describe(prof))


def test_generators_and_coroutines(run_fil):
    script = textwrap.dedent("""\
        import asyncio
        import numpy as np
        MB = 1 << 20
        def chunks():
            for i in range(3):
                yield np.empty((i + 1) * 10 * MB, dtype=np.uint8)  # @gen_yield
        def consume():
            return list(chunks())  # @gen_consume
        async def produce(n):
            await asyncio.sleep(0)
            return np.empty(n, dtype=np.uint8)  # @coro_alloc
        async def main():
            first = await produce(7 * MB)  # @coro_await
            more = await asyncio.gather(produce(9 * MB), produce(9 * MB))  # @coro_gather
            return [first] + more
        from_gen = consume()  # @module_gen
        from_coro = asyncio.run(main())  # @module_coro
        """)
    proc, report, prof = run_fil(script)
    L = lines(script)
    assert_close(bytes_under(prof, L("module_gen") + " (<module>)", L("gen_consume") + " (consume)",
                             L("gen_yield") + " (chunks)"), 60 * MiB,
                 what="generator\n" + describe(prof))
    # A coroutine resumed by the event loop: the stack goes through asyncio's frames, then the
    # awaiting coroutine and the awaited one.
    assert_close(bytes_with_sequence(prof, L("coro_await") + " (main)",
                                     L("coro_alloc") + " (produce)"), 7 * MiB,
                 what="await\n" + describe(prof))
    assert_close(bytes_at(prof, L("coro_alloc") + " (produce)"), 25 * MiB,
                 what="gathered\n" + describe(prof))
    # Every coroutine allocation is under the asyncio.run line of the script.
    assert_close(bytes_under(prof, L("module_coro") + " (<module>)"), 25 * MiB, rel=0.05,
                 what="asyncio.run\n" + describe(prof))


def test_non_daemon_thread_running_after_main_ends(run_fil):
    """The main module finishes while a non-daemon thread is still working; the thread
    allocates after that, and the report (written at exit) has its memory."""
    script = textwrap.dedent("""\
        import threading
        import numpy as np
        main_done = threading.Event()
        kept = []
        def late():
            main_done.wait()
            for _ in range(3):
                kept.append(np.empty(15 << 20, dtype=np.uint8))  # @late
            print("thread done", flush=True)
        threading.Thread(target=late).start()
        early = np.empty(10 << 20, dtype=np.uint8)  # @early
        print("main done", flush=True)
        main_done.set()
        """)
    proc, report, prof = run_fil(script)
    assert proc.stdout == b"main done\nthread done\n"
    assert prof is not None
    L = lines(script)
    assert_close(bytes_at(prof, L("late") + " (late)"), 45 * MiB, what=describe(prof))
    assert_close(bytes_at(prof, L("early")), 10 * MiB, what=describe(prof))


def test_every_stack_starts_at_the_scripts_module(run_fil):
    """No launcher frames (runpy, filprofiler/_run.py): each main-thread stack starts at the
    user's `<module>`, imports included."""
    script = textwrap.dedent("""\
        import json, decimal
        import numpy as np
        data = json.dumps({str(i): i for i in range(10000)})
        arr = np.ones(1 << 20)
        """)
    proc, report, prof = run_fil(script)
    roots = {stack[0] for stack in prof}
    for root in roots:
        assert root.func == NO_PYTHON or (root.file.endswith("/script.py")
                                          and root.func == "<module>"), root
    for stack in prof:
        for f in stack:
            assert "filprofiler" not in f.file and "runpy" not in f.file, stack


def test_imported_modules_sit_right_under_the_importing_line(run_fil, tmp_path):
    """Between an `import` statement, or a call of importlib.import_module or of
    importlib.util's loaders, and the imported module's own lines, the import system's frames
    are not shown: a module's allocation is charged to its line, under the line that imported
    it."""
    (tmp_path / "by_statement.py").write_text("kept = bytearray(7 << 20)\n")
    (tmp_path / "by_call.py").write_text("kept = bytearray(9 << 20)\n")
    (tmp_path / "by_spec.py").write_text("kept = bytearray(11 << 20)\n")
    script = textwrap.dedent("""\
        import importlib, importlib.util, sys
        sys.path.insert(0, %r)
        import by_statement  # @statement
        by_call = importlib.import_module("by_call")  # @call
        spec = importlib.util.spec_from_file_location("by_spec", %r)
        by_spec = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(by_spec)  # @spec
        """ % (str(tmp_path), str(tmp_path / "by_spec.py")))
    proc, report, prof = run_fil(script)
    for module, tag, size in (("by_statement", "statement", 7), ("by_call", "call", 9),
                              ("by_spec", "spec", 11)):
        stacks = [s for s in prof if s[-1].file.endswith(module + ".py")]
        assert stacks, describe(prof)
        for stack in stacks:
            where = [(f.file.rsplit("/", 1)[-1], f.line, f.func) for f in stack]
            assert where == [("script.py", line_of(script, tag), "<module>"),
                             (module + ".py", 1, "<module>")], where
        assert_close(bytes_at(prof, "%s.py:1" % module), size * MiB, rel=0.01,
                     what=describe(prof))


NO_PYTHON_LIB = r"""
/* Preloaded (LD_PRELOAD) by the test: its constructor starts a thread before Python and the
   profiler's tracking exist. The thread polls `nopy_request` for a size, allocates it (and keeps
   it), then sets `nopy_done`. The script writes and reads the two variables through ctypes,
   which is plain memory access: it never releases the GIL, so at the moment of the allocation
   no Python thread is waiting in native code that the thread could be charged to. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
_Atomic size_t nopy_request;
_Atomic int nopy_done;
static void *serve(void *unused) {
    (void)unused;
    size_t n;
    while ((n = atomic_load(&nopy_request)) == 0) usleep(1000);
    volatile char *p = malloc(n);
    if (p) p[0] = 1;
    atomic_store(&nopy_done, p ? 1 : -1);
    return NULL;
}
__attribute__((constructor)) static void start(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, serve, NULL) == 0) pthread_detach(t);
}
"""


def test_memory_without_python_context(run_fil, tmp_path):
    """A native thread that existed before tracking started has no Python stack and no creator
    stack: what it allocates is reported as `[No Python stack]`."""
    lib = compile_c(tmp_path, NO_PYTHON_LIB)
    script = textwrap.dedent("""\
        import ctypes
        me = ctypes.CDLL(None)
        request = ctypes.c_size_t.in_dll(me, "nopy_request")
        done = ctypes.c_int.in_dll(me, "nopy_done")
        request.value = 33 << 20
        while done.value == 0:  # holds the GIL: no Python thread is waiting in native code
            pass
        assert done.value == 1
        with_python = bytearray(3 << 20)  # @python
        """)
    proc, report, prof = run_fil(script, env={"LD_PRELOAD": lib})
    assert_close(bytes_at(prof, NO_PYTHON), 33 * MiB, what=describe(prof))
    assert_close(bytes_at(prof, lines(script)("python")), 3 * MiB, what=describe(prof))


def test_same_depth_stacks_that_differ_only_below_the_top(run_fil):
    """Consecutive allocations whose stacks are equally deep, with the innermost frame at the same
    address and instruction each time, while an outer frame moved on: the profiler compares a
    new stack with the previous one frame by frame and must notice a difference anywhere, also
    below a generator's frame (which lives outside the thread's frame stack)."""
    script = textwrap.dedent("""\
        KEEP = []
        def leaf():
            KEEP.append(bytearray(1 << 20))  # @leaf
        def middle(n):
            for _ in range(n):
                leaf()  # @middle_calls_leaf
        def outer():
            middle(3)  # @outer_first
            middle(5)  # @outer_second
            for i in range(7):
                leaf()  # @outer_direct
        def gen():
            for _ in range(2):
                yield leaf()  # @gen_calls_leaf
        def run_gen():
            list(gen())  # @run_gen_first
            list(gen())  # @run_gen_second
        def fresh():
            return bytearray(1 << 20)  # @fresh
        def via_a():
            return fresh()  # @via_a
        def via_b():
            return fresh()  # @via_b
        def both():
            return via_a(), via_b()  # @both
        outer()  # @module_outer
        run_gen()  # @module_run_gen
        for _ in range(4):
            middle(1)  # @module_middle
        PAIRS = [both() for _ in range(6)]  # @module_both
        """)
    _, _, prof = run_fil(script)
    L = lines(script)
    for marker, mib in [("outer_first", 3), ("outer_second", 5), ("outer_direct", 7),
                        ("run_gen_first", 2), ("run_gen_second", 2), ("module_middle", 4),
                        ("via_a", 6), ("via_b", 6)]:
        got = bytes_at(prof, L(marker))
        assert abs(got - mib * MiB) < MiB // 2, "%s: %d bytes\n%s" % (marker, got, describe(prof))
    assert_close(bytes_at(prof, L("leaf")), 23 * MiB, what=describe(prof))


@pytest.mark.parametrize("nlines", [6, 24])
def test_one_frame_allocating_at_several_lines_in_turn(run_fil, nlines):
    """A loop body that allocates at several lines in turn (6, or 24: more than the profiler
    keeps for one frame), run by one call and then by another from a different line: each block
    belongs to its own line under its own caller. (The profiler remembers the lines a frame
    allocated at while the frame stays on top; what it remembers for one call must not answer
    for the next, whose frame sits at the same address with the same instructions.)"""
    body = "\n".join("        row[%d] = bytearray(8192 * %d)  # @line%d" % (k, k + 1, k)
                      for k in range(nlines))
    script = textwrap.dedent("""\
        ROWS = [[None] * %d for _ in range(40)]
        def fill(rows):
            for row in rows:
        %s
        fill(ROWS[:30])  # @first
        fill(ROWS[30:])  # @second
        """) % (nlines, body)
    _, _, prof = run_fil(script)
    L = lines(script)
    for k in range(nlines):
        for caller, rounds in (("first", 30), ("second", 10)):
            got = bytes_under(prof, "%s (<module>)" % L(caller), "%s (fill)" % L("line%d" % k))
            assert_close(got, rounds * 8192 * (k + 1), rel=0.02,
                         what="line %d under %s\n%s" % (k, caller, describe(prof, 60)))


def test_interpreter_loop_calling_a_new_handler_each_step(run_fil):
    """An interpreter written in Python: a dispatch loop calls one handler after another, each a
    new frame at the same address, from two lines in turn; the loop itself is run by calls from
    two lines of its own caller, and allocates nothing before its first handler call. The
    profiler takes such a stack by reading the new handler frame alone when the loop's frame is
    shown unchanged by the mark its caller keeps; every block must still be charged to its own
    handler under the right dispatch line and the right caller line."""
    program = [0, 1, 2, 2, 1, 0, 1, 2, 0, 0]
    script = textwrap.dedent("""\
        KEEP = []
        def h0():
            KEEP.append(bytearray(8192))  # @h0
        def h1():
            KEEP.append(bytearray(2 * 8192))  # @h1
        def h2():
            KEEP.append(bytearray(4 * 8192))  # @h2
        HANDLERS = [h0, h1, h2]
        PROGRAM = %r
        def dispatch(program):
            i = 0
            while i < %d:
                if i %% 2:
                    HANDLERS[program[i]]()  # @odd
                else:
                    HANDLERS[program[i]]()  # @even
                i += 1
        def main():
            for r in range(40):
                if r %% 2:
                    dispatch(PROGRAM)  # @main_odd
                else:
                    dispatch(PROGRAM)  # @main_even
        main()
        """) % (program, len(program))
    _, _, prof = run_fil(script)
    L = lines(script)
    for caller in ("main_odd", "main_even"):
        for parity in ("even", "odd"):
            for op in range(3):
                steps = sum(1 for i, o in enumerate(program)
                            if o == op and i % 2 == (parity == "odd"))
                got = bytes_with_sequence(prof, "%s (main)" % L(caller),
                                          "%s (dispatch)" % L(parity),
                                          "%s (h%d)" % (L("h%d" % op), op))
                assert_close(got, 20 * steps * (8192 << op), rel=0.02,
                             what="h%d from the %s line under %s\n%s"
                                  % (op, parity, caller, describe(prof, 40)))


def test_code_compiled_again_at_the_same_address_keeps_its_own_name(run_fil):
    """Functions compiled afresh in a loop, from two sources in turn, each called once from the
    same line and then freed: a new code object takes the address of one just freed, the other
    function's as often as its own, with its instructions at the same offsets under the same
    caller, so whatever the profiler remembers about a frame position must also check which
    function the code object is."""
    script = textwrap.dedent("""\
        KEEP = []
        SOURCES = [("def alpha():\\n    return bytearray(100000)\\n", "gen_alpha.py", "alpha"),
                   ("def beta():\\n    return bytearray(100000)\\n", "gen_beta.py", "beta")]
        for i in range(400):
            src, filename, name = SOURCES[i // 2 % 2]  # two of each in turn: addresses swap
            ns = {}
            exec(compile(src, filename, "exec"), ns)
            KEEP.append(ns[name]())  # @call
            ns.clear()  # the function and its globals refer to each other: freed here, not by gc
        """)
    _, _, prof = run_fil(script)
    under = lambda func: sum(n for stack, n in prof.items()
                             if stack[-1].func == func and stack[-2].line == line_of(script, "call"))
    assert_close(under("alpha"), 200 * 100000, what="alpha\n" + describe(prof))
    assert_close(under("beta"), 200 * 100000, what="beta\n" + describe(prof))
    assert all(os.path.basename(stack[-1].file) == "gen_%s.py" % stack[-1].func
               for stack in prof if stack[-1].func in ("alpha", "beta")), describe(prof)


def test_stacks_deeper_than_64_frames_that_differ_near_the_top(run_fil):
    """The same comparison on stacks of 103 frames, where the frames that moved on lie beyond
    the first 64 from the root (the innermost one, or the two innermost), and on 33 frames where
    they do not. Every allocation must land on its whole stack."""
    script = textwrap.dedent("""\
        KEEP = []
        def top():
            KEEP.append(bytearray(1 << 20))  # @top_first
            KEEP.append(bytearray(2 << 20))  # @top_second
        def at(depth):
            if depth == 0:
                top()  # @bottom_first
                top()  # @bottom_second
                return
            at(depth - 1)  # @recurse
        def run(depth):
            at(depth)  # @run_first
            at(depth)  # @run_second
        run(100)  # @deep
        run(30)  # @shallow
        """)
    _, _, prof = run_fil(script)
    L = lines(script)
    for start, depth in [("deep", 100), ("shallow", 30)]:
        for run_line in ("run_first", "run_second"):
            for bottom in ("bottom_first", "bottom_second"):
                for leaf, mib in [("top_first", 1), ("top_second", 2)]:
                    specs = [L(start), L(run_line)] + [L("recurse")] * depth + [L(bottom), L(leaf)]
                    got = bytes_under(prof, *specs)
                    assert abs(got - mib * MiB) < 4096, "%s %s %s %s: %d bytes\n%s" % (
                        start, run_line, bottom, leaf, got, describe(prof))
    assert_close(bytes_at(prof, L("top_first")) + bytes_at(prof, L("top_second")), 24 * MiB,
                 what=describe(prof))


DEEP_RECURSION = """\
    import sys
    sys.setrecursionlimit(100_000)
    def rec(n):
        if n == 0:
            return 0
        return rec(n - 1) + 1  # @recurse
    rec(DEPTH)  # @start
    """


def test_deep_recursion_frame_stack_is_memory_of_the_recursing_line(run_fil):
    """Python's frames live in a stack the interpreter grows by chunks taken from the arena
    allocator (16 KiB each, a few dozen frames). 40,000 frames deep that is several MiB, real
    memory like any other (without a profiler it is an anonymous mapping): it is charged to the
    recursive call line whose call needed a new chunk."""
    script = DEEP_RECURSION.replace("DEPTH", "40_000")
    _, _, prof = run_fil(script)
    L = lines(script)
    at_recursion = bytes_at(prof, L("recurse"))
    # Each frame takes at least its header (9 words in 3.11) and at most a few hundred bytes.
    assert 40_000 * 72 <= at_recursion <= 40_000 * 512, describe(prof)
    assert at_recursion >= 0.9 * total(prof), describe(prof)


def test_frame_stack_chunks_are_given_back_when_the_recursion_returns(run_fil):
    """Unwinding frees the chunks: a later, larger allocation is the peak, with the recursion's
    frames no longer in it."""
    script = DEEP_RECURSION.replace("DEPTH", "40_000") + "big = bytearray(24 << 20)  # @big\n"
    _, _, prof = run_fil(script)
    L = lines(script)
    assert_close(bytes_at(prof, L("big")), 24 * MiB, what=describe(prof))
    assert bytes_at(prof, L("recurse")) < 64 * 1024, describe(prof)


@pytest.mark.parametrize("allocator", ["pymalloc", "malloc", "debug"])
def test_same_report_under_each_python_allocator(run_fil, allocator):
    """PYTHONMALLOC picks what is under Python's allocator (`-X dev` turns on its debug hooks):
    pymalloc's arenas, malloc itself (whose hooks then see the same blocks again), or the debug
    hooks' headers around pymalloc's blocks. Each object is counted once at its requested size,
    at its line, and the ones freed before the peak are not counted."""
    script = textwrap.dedent("""\
        def small():
            return [str(i) * 3 for i in range(200_000)]  # @small
        def medium():
            return [bytearray(600) for _ in range(20_000)]  # @medium
        gone = small()
        kept = medium()
        del gone
        again = small()  # @again
        """)
    proc, report, prof = run_fil(script, env={"PYTHONMALLOC": allocator})
    L = lines(script)
    # Per string, its object (49 + length bytes) and its list slot; per bytearray, its object
    # (56 bytes) and its buffer (601); the list's over-allocation is within the tolerance.
    strings = sum(49 + 3 * len(str(i)) + 8 for i in range(200_000))
    arrays = 20_000 * (56 + 601 + 8)
    assert_close(bytes_at(prof, L("medium")), arrays, rel=0.05,
                 what="bytearrays under %s\n%s" % (allocator, describe(prof)))
    assert_close(bytes_under(prof, "%s (<module>)" % L("again"), "%s (small)" % L("small")),
                 strings, rel=0.05, what="strings under %s\n%s" % (allocator, describe(prof)))
    # The first list of strings was freed before the peak: nothing else holds that much.
    assert_close(total(prof), strings + arrays, rel=0.1, what="total under %s" % allocator)
