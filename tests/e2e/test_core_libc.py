"""End-to-end: every intercepted libc entry point, called from Python through ctypes.

Each call allocates a size of its own on a line of its own, everything stays alive until the
peak, and the report must hold that size (within 5%) at exactly that line. ctypes releases the
GIL around foreign calls, so these also check that the stack is read correctly from a thread
that does not hold the GIL. Symbols are looked up with CDLL(None), the process's global scope,
which is how any C code linked against libc reaches them.
"""
import textwrap

from conftest import MiB, assert_close, bytes_at, describe, line_of, total

LIBC_PRELUDE = """\
import ctypes, os
from ctypes import c_void_p, c_size_t, c_int, c_long
libc = ctypes.CDLL(None, use_errno=True)
def fn(name, restype, *argtypes):
    f = getattr(libc, name)
    f.restype = restype
    f.argtypes = argtypes
    return f
malloc = fn("malloc", c_void_p, c_size_t)
calloc = fn("calloc", c_void_p, c_size_t, c_size_t)
realloc = fn("realloc", c_void_p, c_void_p, c_size_t)
reallocarray = fn("reallocarray", c_void_p, c_void_p, c_size_t, c_size_t)
free = fn("free", None, c_void_p)
posix_memalign = fn("posix_memalign", c_int, ctypes.POINTER(c_void_p), c_size_t, c_size_t)
aligned_alloc = fn("aligned_alloc", c_void_p, c_size_t, c_size_t)
memalign = fn("memalign", c_void_p, c_size_t, c_size_t)
valloc = fn("valloc", c_void_p, c_size_t)
pvalloc = fn("pvalloc", c_void_p, c_size_t)
mmap = fn("mmap", c_void_p, c_void_p, c_size_t, c_int, c_int, c_int, c_long)
mmap64 = fn("mmap64", c_void_p, c_void_p, c_size_t, c_int, c_int, c_int, c_long)
munmap = fn("munmap", c_int, c_void_p, c_size_t)
mremap = fn("mremap", c_void_p, c_void_p, c_size_t, c_size_t, c_int)
PROT_RW = 0x1 | 0x2
MAP_PRIVATE, MAP_ANONYMOUS, MREMAP_MAYMOVE = 0x02, 0x20, 1
MAP_FAILED = ctypes.c_void_p(-1).value
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1 << 20
def anon(n, f=mmap):
    p = f(None, n, PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    assert p not in (None, MAP_FAILED), ctypes.get_errno()
    return p
"""

SCRIPT = LIBC_PRELUDE + """\
gone = malloc(200 * MB)  # @freed_early
free(gone)
gone = calloc(1, 150 * MB)  # @calloc_freed_early
free(gone)
p_malloc = malloc(11 * MB)  # @malloc
p_calloc = calloc(12, MB)  # @calloc
p_grow = malloc(1 * MB)  # @grow_src
p_grow = realloc(p_grow, 13 * MB)  # @realloc_grow
p_shrink = malloc(40 * MB)  # @shrink_src
p_shrink = realloc(p_shrink, 14 * MB)  # @realloc_shrink
p_null = realloc(None, 15 * MB)  # @realloc_null
box = c_void_p()
assert posix_memalign(ctypes.byref(box), 4096, 16 * MB) == 0  # @posix_memalign
p_aligned = aligned_alloc(4096, 17 * MB)  # @aligned_alloc
p_memalign = memalign(65536, 18 * MB)  # @memalign
p_valloc = valloc(19 * MB)  # @valloc
p_pvalloc = pvalloc(20 * MB + 1)  # @pvalloc
p_ra = reallocarray(None, 21, MB)  # @reallocarray_null
p_ra2 = malloc(2 * MB)  # @reallocarray_src
p_ra2 = reallocarray(p_ra2, 22, MB)  # @reallocarray_grow
m1 = anon(23 * MB)  # @mmap
m2 = anon(24 * MB, mmap64)  # @mmap64
m3 = anon(1 * MB)  # @mremap_src
m3 = mremap(m3, 1 * MB, 25 * MB, MREMAP_MAYMOVE)  # @mremap_grow
assert m3 != MAP_FAILED
m4 = anon(40 * MB)  # @mremap_shrink_src
m4 = mremap(m4, 40 * MB, 26 * MB, MREMAP_MAYMOVE)  # @mremap_shrink
assert m4 != MAP_FAILED
m5 = anon(30 * MB)  # @mmap_partial
assert munmap(m5 + 10 * MB, 3 * MB) == 0
assert munmap(m5 + 27 * MB, 3 * MB) == 0
m6 = anon(8 * MB)  # @mmap_unmapped
assert munmap(m6, 8 * MB) == 0
p_freed = malloc(9 * MB)  # @malloc_freed
free(p_freed)
# The peak is here, and larger than every moment before (the 30 MiB map before its holes, the
# 8 and 9 MiB blocks): everything above that was not freed is alive.
last = malloc(12 * MB)  # @last
for p in (p_malloc, p_calloc, p_grow, p_shrink, p_null, box.value, p_aligned, p_memalign,
          p_valloc, p_pvalloc, p_ra, p_ra2, last):
    free(p)
munmap(m1, 23 * MB); munmap(m2, 24 * MB); munmap(m3, 25 * MB); munmap(m4, 26 * MB)
munmap(m5, 10 * MB); munmap(m5 + 13 * MB, 14 * MB)
after = malloc(100 * MB)  # @after_peak
free(after)
"""

EXPECTED = {
    "malloc": 11 * MiB, "calloc": 12 * MiB, "realloc_grow": 13 * MiB,
    "realloc_shrink": 14 * MiB, "realloc_null": 15 * MiB, "posix_memalign": 16 * MiB,
    "aligned_alloc": 17 * MiB, "memalign": 18 * MiB, "valloc": 19 * MiB,
    "pvalloc": 20 * MiB + 4096,  # pvalloc rounds up to a whole page
    "reallocarray_null": 21 * MiB, "reallocarray_grow": 22 * MiB,
    "mmap": 23 * MiB, "mmap64": 24 * MiB, "mremap_grow": 25 * MiB, "mremap_shrink": 26 * MiB,
    "mmap_partial": 24 * MiB,  # 30 MiB minus two 3 MiB holes (one inside, one at the end)
    "last": 12 * MiB,
}
ABSENT = ["freed_early", "calloc_freed_early", "grow_src", "shrink_src", "reallocarray_src",
          "mremap_src", "mremap_shrink_src", "mmap_unmapped", "malloc_freed", "after_peak"]


def test_every_libc_entry_point_charged_to_the_calling_line(run_fil):
    proc, report, prof = run_fil(SCRIPT)
    assert prof is not None, proc.stderr.decode()
    for marker, size in EXPECTED.items():
        line = line_of(SCRIPT, marker)
        assert_close(bytes_at(prof, "script.py:%d (<module>)" % line), size,
                     what="%s at line %d\n%s" % (marker, line, describe(prof)))
    for marker in ABSENT:
        line = line_of(SCRIPT, marker)
        # Python objects made on the line (a ctypes result, an int) may stay: a few bytes.
        assert bytes_at(prof, "script.py:%d" % line) < 64 * 1024, (
            "%s (line %d) was freed before the peak but is in the report\n%s"
            % (marker, line, describe(prof)))
    # Nothing else of size: the peak is the sum of the above plus the interpreter's small change.
    assert_close(total(prof), sum(EXPECTED.values()), what="total\n" + describe(prof))


def test_free_of_blocks_allocated_before_tracking_is_harmless(run_fil):
    """Blocks allocated before tracking started (by the interpreter and the launcher) that are
    freed during the run are unknown pointers: they must not make the books go wrong."""
    script = LIBC_PRELUDE + textwrap.dedent("""\
        import gc, sys
        keep = malloc(30 * MB)  # @keep
        sys.path_importer_cache.clear()
        sys.modules.pop("shutil", None)
        gc.collect()
        for _ in range(1000):
            free(malloc(64))
        at_peak = malloc(10 * MB)  # @peak
        """)
    proc, report, prof = run_fil(script)
    assert_close(bytes_at(prof, "script.py:%d" % line_of(script, "keep")), 30 * MiB)
    assert_close(bytes_at(prof, "script.py:%d" % line_of(script, "peak")), 10 * MiB)
    assert_close(total(prof), 40 * MiB, what="total\n" + describe(prof))
