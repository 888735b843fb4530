"""mremap of a file-backed mapping is not allocated memory, before or after the resize.

Python's mmap.resize() grows a file mapping with mremap. The hook used to put every mapping that
came out of mremap on the books, so a 1 MiB file mapping grown to 64 MiB showed up as 64 MiB of
allocated memory at the peak. An anonymous mapping grown the same way must still be counted.
"""
import os
import re
import subprocess
import sys
import textwrap

MiB = 1024 * 1024

SCRIPT = textwrap.dedent("""\
    import mmap, os, sys
    from filprofiler import _filpreload

    path = sys.argv[1]
    with open(path, "w+b") as f:
        f.truncate(1 << 20)
        m = mmap.mmap(f.fileno(), 1 << 20)
        before = _filpreload.stats()[0]
        m.resize(64 << 20)                    # file-backed: mremap, not counted
        file_grown = _filpreload.stats()[0] - before
        m.close()
    a = mmap.mmap(-1, 1 << 20)
    before = _filpreload.stats()[0]
    a.resize(64 << 20)                        # anonymous: mremap, counted at the new size
    anon_grown = _filpreload.stats()[0] - before
    a.close()
    sys.stderr.write("GROWN %d %d\\n" % (file_grown, anon_grown))
    """)


def test_mremap_of_file_mapping_not_counted(tmp_path):
    script = tmp_path / "remap.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, "-m", "filprofiler", "-o", str(tmp_path / "out"), "--no-browser", "run",
         str(script), str(tmp_path / "data.bin")],
        capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = re.search(r"^GROWN (-?\d+) (-?\d+)$", proc.stderr, re.M)
    assert m, proc.stderr[-3000:]
    file_grown, anon_grown = int(m.group(1)), int(m.group(2))
    # Objects the interpreter frees meanwhile can take a few bytes off: not counted is about 0.
    assert abs(file_grown) < MiB, file_grown
    assert abs(anon_grown - 63 * MiB) < MiB, anon_grown
