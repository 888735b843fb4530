"""The profiler's own memory stays small per live allocation, and small objects stay exact.

Python objects of up to 512 bytes live in pymalloc's arenas, and the profiler records them in a
side table beside each arena (src/small_map.c) rather than in its hash table. A program that
holds a million small objects must cost the profiler a few bytes for each (the goal is at most 32),
while the report still charges every object, at its requested size, to the line that made it.
"""
import json
import re

from conftest import bytes_at, line_of

COUNT = 1_000_000

SCRIPT = """\
import json, sys
from filprofiler import _filpreload

def build(n):
    ints = [i for i in range(1 << 20, (1 << 20) + n)]        # @ints
    pairs = [(i, i) for i in range(n // 4)]                   # @pairs
    return ints, pairs

live0, _, own0 = _filpreload.stats()
held = build(%d)
live1, _, own1 = _filpreload.stats()
del held
live2, _, own2 = _filpreload.stats()
sys.stderr.write("STATS " + json.dumps([live0, own0, live1, own1, live2]) + "\\n")
""" % COUNT


def test_small_objects_cost_little_and_stay_exact(run_fil):
    proc, _, prof = run_fil(SCRIPT)
    stderr = proc.stderr.decode()
    m = re.search(r"^STATS (.*)$", stderr, re.M)
    assert m, stderr[-3000:]
    live0, own0, live1, own1, live2 = json.loads(m.group(1))

    objects = COUNT + COUNT // 4
    per_object = (own1 - own0) / objects
    assert per_object <= 16, "the profiler grew by %.1f bytes per live object" % per_object

    # An int of one digit is 28 bytes (sys.getsizeof), but CPython asks for 28 or 32 depending
    # on how it is made; a 2-tuple is 56 bytes with its GC header and holds one new int. The
    # lists' item arrays are 8 bytes a slot, over-allocated by up to an eighth as they grow.
    def within(what, got, per_int, per_pair, slots):
        lo = COUNT // 4 * (56 + 28) * per_pair + COUNT * 28 * per_int + slots * 8
        hi = COUNT // 4 * (56 + 32) * per_pair + COUNT * 32 * per_int + slots * 9
        assert lo <= got <= hi, "%s: %d bytes, expected %d..%d" % (what, got, lo, hi)

    within("held", live1 - live0, 1, 1, COUNT + COUNT // 4)
    assert abs(live2 - live0) < 1 << 20, (live0, live2)   # all of it went away again
    within("the ints' line", bytes_at(prof, "script.py:%d" % line_of(SCRIPT, "ints")), 1, 0, COUNT)
    within("the pairs' line", bytes_at(prof, "script.py:%d" % line_of(SCRIPT, "pairs")), 0, 1,
           COUNT // 4)


PAIRS = 20_000

SPARSE_SCRIPT = """\
import ctypes, json, sys
from filprofiler import _filpreload

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
keep = [0] * (2 * %d)

live0, _, own0 = _filpreload.stats()
for i in range(%d):
    keep[2 * i] = libc.malloc(10240)     # a buffer
    keep[2 * i + 1] = libc.malloc(24)    # and a small block between buffers, as numpy's shapes
live1, _, own1 = _filpreload.stats()
sys.stderr.write("STATS " + json.dumps([live0, own0, live1, own1]) + "\\n")
""" % (PAIRS, PAIRS)


def test_small_blocks_scattered_between_buffers_cost_little(run_fil):
    """A side table for a heap region is paid for by the small blocks in it: one small block per
    10 KiB of heap would touch a side-table page per block, 25% of the heap (the mistake this
    guards against), so such regions keep their blocks in the hash table."""
    proc, _, prof = run_fil(SPARSE_SCRIPT)
    stderr = proc.stderr.decode()
    m = re.search(r"^STATS (.*)$", stderr, re.M)
    assert m, stderr[-3000:]
    live0, own0, live1, own1 = json.loads(m.group(1))
    per_pair = (own1 - own0) / PAIRS
    assert per_pair <= 128, "the profiler grew by %.0f bytes per buffer and small block" % per_pair
    # Plus a Python int (36 bytes asked for) holding each address.
    held = live1 - live0
    assert PAIRS * (10240 + 24) <= held <= PAIRS * (10240 + 24 + 2 * 40) + (256 << 10), held
