"""End-to-end: native code compiled during the test (C, C++, Fortran) and memory maps.

The libraries are built into the test's tmp_path and loaded with ctypes; the bytes they allocate
must be charged to the Python line that called into them, including from a pthread the C code
starts (charged to the Python stack that created it) and after a C++ exception thrown by a
failing `new` has unwound through the profiler's operator new (possible only while not
tracking: while tracking, a failed allocation is an out-of-memory exit, issue 4).
"""
import os
import subprocess
import sys
import textwrap

from conftest import (MiB, assert_close, bytes_at, bytes_under, bytes_with_sequence, clean_env,
                      compile_c, describe, frame_matcher, line_of, parse_prof, total)

C_LIB = r"""
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *c_malloc(size_t n) { return malloc(n); }
void c_free(void *p) { free(p); }

struct job { size_t n; void *out; };
static void *worker(void *arg) {
    struct job *j = arg;
    j->out = malloc(j->n);
    return NULL;
}
/* A pthread that waits for `async_go`, allocates `n` bytes, keeps them and sets `async_done`:
   the Python thread that started it is back in Python by then, not waiting in native code. */
_Atomic int async_go, async_done;
static void *async_worker(void *arg) {
    size_t n = (size_t)arg;
    while (!atomic_load(&async_go)) usleep(1000);
    volatile char *p = malloc(n);
    if (p) p[0] = 1;
    atomic_store(&async_done, 1);
    return NULL;
}
int c_thread_start(size_t n) {
    pthread_t t;
    if (pthread_create(&t, NULL, async_worker, (void *)n) != 0) return -1;
    return pthread_detach(t);
}

/* Allocates n bytes, calls back into Python, allocates n bytes again; both are kept. */
void *around_before, *around_after;
void c_around_callback(size_t n, void (*callback)(void)) {
    around_before = malloc(n);
    callback();
    around_after = malloc(n);
}

/* Starts a pthread that allocates n bytes and returns them (still alive) once it has ended. */
void *c_thread_alloc(size_t n) {
    struct job j = { n, NULL };
    pthread_t t;
    if (pthread_create(&t, NULL, worker, &j) != 0) return NULL;
    pthread_join(t, NULL);
    return j.out;
}
"""

CXX_LIB = r"""
#include <cstddef>
#include <new>

struct Blob { char data[3 << 20]; };                          // 3 MiB, plain new
struct alignas(4096) Page { char data[4096]; };               // over-aligned: aligned new

extern "C" {
void *cxx_new_blob() { return new Blob; }
void cxx_delete_blob(void *p) { delete static_cast<Blob *>(p); }
void *cxx_new_array(size_t n) { return new char[n]; }
void cxx_delete_array(void *p) { delete[] static_cast<char *>(p); }
void *cxx_new_aligned(void) { return new Page; }              // operator new(size, align)
void *cxx_new_aligned_array(size_t n) { return new Page[n]; }
void *cxx_new_nothrow(size_t n) { return new (std::nothrow) char[n]; }
/* A `new` that cannot succeed: returns 1 if std::bad_alloc was thrown and caught here. */
char *volatile escaped;   /* keeps the compiler from eliding the new/delete pair */
int cxx_huge_new_caught(size_t n) {
    try {
        escaped = new char[n];
        delete[] escaped;
        return 0;
    } catch (const std::bad_alloc &) {
        return 1;
    }
}
}
"""

LOADER = """\
import ctypes, sys
from ctypes import c_void_p, c_size_t, c_int
def load(path, **sigs):
    lib = ctypes.CDLL(path)
    for name, (res, *args) in sigs.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return lib
MB = 1 << 20
"""


def test_c_library_malloc_and_pthread_worker(run_fil, tmp_path):
    lib = compile_c(tmp_path, C_LIB)
    script = LOADER + textwrap.dedent("""\
        lib = load(sys.argv[1], c_malloc=(c_void_p, c_size_t), c_free=(None, c_void_p),
                   c_thread_alloc=(c_void_p, c_size_t))
        def from_function():
            return lib.c_malloc(30 * MB)  # @in_function
        def start_thread():
            return lib.c_thread_alloc(25 * MB)  # @thread_call
        a = from_function()  # @call_function
        b = start_thread()  # @call_thread
        gone = lib.c_malloc(20 * MB)  # @freed
        lib.c_free(gone)
        c = lib.c_malloc(21 * MB)  # @last
        """)
    proc, report, prof = run_fil(script, lib)
    L = lambda m: "script.py:%d" % line_of(script, m)
    assert_close(bytes_under(prof, L("call_function"), L("in_function")), 30 * MiB,
                 what="C malloc\n" + describe(prof))
    # The pthread has no Python frames of its own: it is charged to the stack that created it.
    assert_close(bytes_under(prof, L("call_thread"), L("thread_call")), 25 * MiB,
                 what="pthread worker\n" + describe(prof))
    assert_close(bytes_at(prof, L("last")), 21 * MiB)
    assert bytes_at(prof, L("freed")) < 64 * 1024
    assert_close(total(prof), 76 * MiB, what="total\n" + describe(prof))


def test_native_code_calling_back_into_python_with_the_gil_released(run_fil, tmp_path):
    """ctypes releases the GIL around a foreign call, and the C code's allocations are charged to
    the calling line without walking its stack again each time. A callback into Python in the
    middle takes the GIL back and runs more frames, which themselves release it again for a
    nested foreign call: each allocation must still land on its own line, the C code's after
    the callback included."""
    lib = compile_c(tmp_path, C_LIB)
    script = LOADER + textwrap.dedent("""\
        CB = ctypes.CFUNCTYPE(None)
        lib = load(sys.argv[1], c_malloc=(c_void_p, c_size_t),
                   c_around_callback=(None, c_size_t, CB))
        kept = []
        def callback():
            kept.append(bytearray(7 * MB))  # @cb_python
            kept.append(lib.c_malloc(5 * MB))  # @cb_native
        def outer(n):
            lib.c_around_callback(n * MB, CB(callback))  # @around
        for _ in range(3):
            outer(2)  # @first_caller
        outer(3)  # @second_caller
        """)
    proc, report, prof = run_fil(script, lib)
    L = lambda m: "script.py:%d" % line_of(script, m)
    ending_at = lambda spec: sum(n for stack, n in prof.items() if frame_matcher(spec)(stack[-1]))
    # The C code's own blocks, before and after the callback: 3 calls x 2 x 2 MiB, 1 x 2 x 3 MiB.
    assert_close(bytes_with_sequence(prof, L("first_caller"), L("around")) -
                 bytes_with_sequence(prof, L("first_caller"), L("around"), "callback"), 12 * MiB,
                 what="C code under the first caller\n" + describe(prof))
    assert_close(bytes_with_sequence(prof, L("second_caller"), L("around")) -
                 bytes_with_sequence(prof, L("second_caller"), L("around"), "callback"), 6 * MiB,
                 what="C code under the second caller\n" + describe(prof))
    assert_close(ending_at(L("around")), 18 * MiB, what="C code\n" + describe(prof))
    # The callback's, four times over.
    assert_close(ending_at(L("cb_python")), 28 * MiB, what="callback\n" + describe(prof))
    assert_close(ending_at(L("cb_native")), 20 * MiB, what="nested call\n" + describe(prof))
    assert_close(bytes_with_sequence(prof, L("around"), L("cb_native")), 20 * MiB)
    assert_close(total(prof), 66 * MiB, what="total\n" + describe(prof))


def test_c_pthread_charged_to_the_stack_that_created_it(run_fil, tmp_path):
    """The native thread allocates while its creator is busy in Python (holding the GIL, not
    waiting in native code): the memory goes to the Python stack that called pthread_create."""
    lib = compile_c(tmp_path, C_LIB)
    script = LOADER + textwrap.dedent("""\
        lib = load(sys.argv[1], c_thread_start=(c_int, c_size_t))
        go = ctypes.c_int.in_dll(lib, "async_go")
        done = ctypes.c_int.in_dll(lib, "async_done")
        def launch():
            assert lib.c_thread_start(27 * MB) == 0  # @create
        launch()  # @call
        go.value = 1
        while done.value == 0:  # plain memory reads: the GIL is never released here
            pass
        """)
    proc, report, prof = run_fil(script, lib)
    L = lambda m: "script.py:%d" % line_of(script, m)
    assert_close(bytes_under(prof, L("call"), L("create")), 27 * MiB, what=describe(prof))


CXX_SIGS = """\
lib = load(sys.argv[1], cxx_new_blob=(c_void_p,), cxx_delete_blob=(None, c_void_p),
           cxx_new_array=(c_void_p, c_size_t), cxx_delete_array=(None, c_void_p),
           cxx_new_aligned=(c_void_p,), cxx_new_aligned_array=(c_void_p, c_size_t),
           cxx_new_nothrow=(c_void_p, c_size_t), cxx_huge_new_caught=(c_int, c_size_t))
"""


def test_cxx_new_forms(run_fil, tmp_path):
    lib = compile_c(tmp_path, CXX_LIB, cxx=True)
    script = LOADER + CXX_SIGS + textwrap.dedent("""\
        blobs = [lib.cxx_new_blob() for _ in range(4)]  # @new
        arr = lib.cxx_new_array(13 * MB)  # @new_array
        pages = [lib.cxx_new_aligned() for _ in range(256)]  # @aligned_new
        page_array = lib.cxx_new_aligned_array(2048)  # @aligned_new_array
        nothrow = lib.cxx_new_nothrow(9 * MB)  # @nothrow
        tmp = lib.cxx_new_array(10 * MB)  # @deleted
        lib.cxx_delete_array(tmp)
        lib.cxx_delete_blob(lib.cxx_new_blob())  # @deleted_blob
        after = lib.cxx_new_array(17 * MB)  # @last
        """)
    proc, report, prof = run_fil(script, lib)
    L = lambda m: "script.py:%d" % line_of(script, m)
    expected = {"new": 4 * 3 * MiB, "new_array": 13 * MiB, "aligned_new": 256 * 4096,
                "aligned_new_array": 2048 * 4096, "nothrow": 9 * MiB, "last": 17 * MiB}
    for marker, size in expected.items():
        assert_close(bytes_at(prof, L(marker)), size, what="%s\n%s" % (marker, describe(prof)))
    assert bytes_at(prof, L("deleted")) < 64 * 1024
    assert bytes_at(prof, L("deleted_blob")) < 64 * 1024
    assert_close(total(prof), sum(expected.values()), what="total\n" + describe(prof))


def test_cxx_bad_alloc_through_the_hooks_then_tracking_works(tmp_path):
    """With the library loaded but not tracking (`fil-profile python`), a `new` that cannot
    succeed throws std::bad_alloc through the profiler's operator new; the program catches it
    and goes on. Tracking then started on the same thread (filprofiler.api) must still see
    that thread's allocations: the unwinding must not leave the reentrancy guard set."""
    lib = compile_c(tmp_path, CXX_LIB, cxx=True)
    script = LOADER + CXX_SIGS + textwrap.dedent("""\
        from filprofiler.api import profile
        assert lib.cxx_huge_new_caught(1 << 62) == 1
        assert lib.cxx_huge_new_caught(1 << 62) == 1
        kept = []
        def work():
            kept.append(lib.cxx_new_array(17 * MB))  # @after_throw
        profile(work, sys.argv[2])
        print("survived")
        """)
    path = os.path.join(str(tmp_path), "script.py")
    with open(path, "w") as f:
        f.write(script)
    out = os.path.join(str(tmp_path), "report")
    proc = subprocess.run([sys.executable, "-m", "filprofiler", "python", path, lib, out],
                          cwd=str(tmp_path), env=clean_env(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"survived\n"
    prof = parse_prof(os.path.join(out, "peak-memory.prof"))
    assert_close(bytes_at(prof, "script.py:%d" % line_of(script, "after_throw")), 17 * MiB,
                 what=describe(prof))


def test_cxx_failed_new_while_tracking_is_an_out_of_memory_exit(run_fil, tmp_path):
    """While tracking, a failing `new` is an out-of-memory event (issue 4): a controlled exit
    53 with the out-of-memory report, not a crash inside the profiler's operator new."""
    lib = compile_c(tmp_path, CXX_LIB, cxx=True)
    script = LOADER + CXX_SIGS + textwrap.dedent("""\
        kept = lib.cxx_new_array(5 * MB)  # @kept
        lib.cxx_huge_new_caught(1 << 62)
        print("not reached")
        """)
    proc, report, prof = run_fil(script, lib, expect_exit=53)
    assert b"not reached" not in proc.stdout
    assert b"Out of memory" in proc.stderr, proc.stderr.decode()
    oom = parse_prof(os.path.join(report, "out-of-memory.prof"))
    assert_close(bytes_at(oom, "script.py:%d" % line_of(script, "kept")), 5 * MiB,
                 what=describe(oom))


FORTRAN_LIB = """\
module keeper
  use iso_c_binding
  implicit none
  real(c_double), allocatable, save :: kept(:)
contains
  subroutine fortran_allocate(n) bind(C, name="fortran_allocate")
    integer(c_long), value :: n
    allocate(kept(n))
    kept(1) = 1.0d0
  end subroutine
  subroutine fortran_release() bind(C, name="fortran_release")
    deallocate(kept)
  end subroutine
end module
"""


def test_gfortran_allocate(run_fil, tmp_path):
    lib = compile_c(tmp_path, FORTRAN_LIB, fortran=True)
    script = LOADER + textwrap.dedent("""\
        from ctypes import c_long
        lib = load(sys.argv[1], fortran_allocate=(None, c_long), fortran_release=(None,))
        lib.fortran_allocate(30 * MB // 8)  # @freed
        lib.fortran_release()
        lib.fortran_allocate(35 * MB // 8)  # @kept
        """)
    proc, report, prof = run_fil(script, lib)
    L = lambda m: "script.py:%d" % line_of(script, m)
    assert_close(bytes_at(prof, L("kept")), 35 * MiB, what=describe(prof))
    assert bytes_at(prof, L("freed")) < 64 * 1024


MMAP_MODULE_SCRIPT = """\
import ctypes, mmap, os, sys
MB = 1 << 20
path = sys.argv[1]
with open(path, "wb") as f:
    f.truncate(50 * MB)
fd = os.open(path, os.O_RDWR)
file_map = mmap.mmap(fd, 50 * MB)  # @file_backed
anon = mmap.mmap(-1, 30 * MB)  # @anon
anon[0:5] = b"hello"
grown = mmap.mmap(-1, 2 * MB)  # @resize_src
grown.resize(22 * MB)  # @resize
assert len(grown) == 22 * MB
closed = mmap.mmap(-1, 4 * MB)  # @closed
closed.close()
last = mmap.mmap(-1, 5 * MB)  # @last
"""


def test_mmap_module_anonymous_counted_file_backed_not(run_fil, tmp_path):
    proc, report, prof = run_fil(MMAP_MODULE_SCRIPT, str(tmp_path / "data.bin"))
    L = lambda m: "script.py:%d" % line_of(MMAP_MODULE_SCRIPT, m)
    assert bytes_at(prof, L("file_backed")) < 64 * 1024, "a file-backed map was counted\n" + \
        describe(prof)
    assert_close(bytes_at(prof, L("anon")), 30 * MiB, what="mmap.mmap(-1)\n" + describe(prof))
    # mmap.resize() on an anonymous map is mremap on Linux: charged to the resizing line.
    assert_close(bytes_at(prof, L("resize")), 22 * MiB, what="resize\n" + describe(prof))
    assert bytes_at(prof, L("resize_src")) < 64 * 1024
    assert bytes_at(prof, L("closed")) < 64 * 1024
    assert_close(bytes_at(prof, L("last")), 5 * MiB)
    assert_close(total(prof), 57 * MiB, what="total\n" + describe(prof))


# libc's mmap and munmap through ctypes, for the partial-unmap tests' scripts.
MMAP_PREAMBLE = textwrap.dedent("""\
        import ctypes
        from ctypes import c_void_p, c_size_t, c_int, c_long
        libc = ctypes.CDLL(None)
        mmap_ = libc.mmap
        mmap_.restype, mmap_.argtypes = c_void_p, [c_void_p, c_size_t, c_int, c_int, c_int, c_long]
        munmap = libc.munmap
        munmap.restype, munmap.argtypes = c_int, [c_void_p, c_size_t]
        MB = 1 << 20
        """)


def test_partial_munmap_of_a_larger_mapping(run_fil):
    """ctypes mmap of 64 MiB, then holes punched at the start, the middle and the end: the
    mapping's line keeps exactly what is still mapped, and unmapping the pieces left (in
    several calls, one spanning a hole) takes it all away before a later peak."""
    script = MMAP_PREAMBLE + textwrap.dedent("""\
        def map_anon(n):
            return mmap_(None, n, 3, 0x22, -1, 0)  # @map
        a = map_anon(64 * MB)  # @a
        assert munmap(a, 4 * MB) == 0
        assert munmap(a + 30 * MB, 6 * MB) == 0
        assert munmap(a + 60 * MB, 4 * MB) == 0
        b = map_anon(2 * MB)  # @b_peak1
        # first peak above: a holds 64 - 14 = 50 MiB
        assert munmap(a + 4 * MB, 40 * MB) == 0  # spans the hole at 30..36
        assert munmap(a + 44 * MB, 16 * MB) == 0
        c = map_anon(70 * MB)  # @c_peak2
        """)
    proc, report, prof = run_fil(script)
    L = lambda m: "script.py:%d" % line_of(script, m)
    # The second peak (72 MiB: b and c) beats the first (64 MiB, a alone): a is gone.
    assert bytes_at(prof, L("a")) < 64 * 1024, describe(prof)
    assert_close(bytes_at(prof, L("b_peak1")), 2 * MiB)
    assert_close(bytes_at(prof, L("c_peak2")), 70 * MiB)
    assert_close(total(prof), 72 * MiB, what=describe(prof))


def test_partial_munmap_state_at_peak(run_fil):
    """The peak taken after holes were punched holds the mapping's remaining size."""
    script = MMAP_PREAMBLE + textwrap.dedent("""\
        a = mmap_(None, 64 * MB, 3, 0x22, -1, 0)  # @a
        assert munmap(a, 4 * MB) == 0
        assert munmap(a + 30 * MB, 6 * MB) == 0
        assert munmap(a + 60 * MB, 4 * MB) == 0
        b = bytearray(20 * MB)  # @b
        """)
    proc, report, prof = run_fil(script)
    L = lambda m: "script.py:%d" % line_of(script, m)
    assert_close(bytes_at(prof, L("a")), 50 * MiB, what=describe(prof))
    assert_close(bytes_at(prof, L("b")), 20 * MiB, what=describe(prof))
