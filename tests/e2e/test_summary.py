"""The terminal summary's "Biggest call sites" at exit.

The renderer hands the call sites over while it has the .prof parsed (src/render.h, on_site),
so the summary does not read the file a second time. The lines printed must still be exactly
what reading the .prof line by line gives: `leaf_totals` below is that reading, the reference
every test compares with, on crafted files (ties, a frame first seen inside a stack and only
later as a leaf, texts that only merge once decoded, zero counts), on random ones, and on a
real run.
"""
import os
import random
import re

from filprofiler import _report

from conftest import fil_lines


def leaf_totals(path, n=5):
    """Reference: [(leaf frame, bytes)] biggest first, ties in order of first appearance as a
    leaf, each leaf decoded with replacement characters and equal texts summed."""
    by_text = {}
    with open(path, "rb") as f:
        for raw in f.read().split(b"\n"):
            stack, _, count = raw.rpartition(b" ")
            if not stack or not count.isdigit():
                continue
            leaf = stack.rsplit(b";", 1)[-1].decode("utf-8", "replace")
            by_text[leaf] = by_text.get(leaf, 0) + int(count)
    return sorted(by_text.items(), key=lambda kv: -kv[1])[:n]


def summary_sites(path, out_dir, n=5):
    """What the exit summary lists for the .prof at path, through the renderer."""
    sites = _report._render(str(path), str(out_dir), "peak", None, None, n)
    return _report.biggest_call_sites(sites, n)


def write(path, lines):
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def test_ties_keep_first_appearance_as_a_leaf(tmp_path):
    prof = write(tmp_path / "a.prof", [
        b"m.py:1 (main);late.py:5 (f);x.py:9 (k) 0",   # late.py:5 seen first inside a stack
        b"m.py:1 (main);early.py:2 (g) 30",
        b"m.py:1 (main);late.py:5 (f) 30",              # and only now as a leaf: after early
        b"[No Python stack] 30",
        b"m.py:1 (main);tiny.py:1 (t) 1",
        b"m.py:1 (main);zero.py:1 (z) 0",
        b"m.py:1 (main);early.py:2 (g) 0",
    ])
    expected = leaf_totals(prof)
    assert expected == [("early.py:2 (g)", 30), ("late.py:5 (f)", 30), ("[No Python stack]", 30),
                        ("tiny.py:1 (t)", 1), ("x.py:9 (k)", 0)]
    assert summary_sites(prof, tmp_path) == expected
    assert summary_sites(prof, tmp_path, n=20) == leaf_totals(prof, n=20)


def test_texts_that_merge_once_decoded(tmp_path):
    """Different bytes that decode to the same text are one call site, as in the reference;
    a valid U+FFFD reads the same as an invalid byte."""
    bad_a = b"caf\xc3.py:1 (f)"      # truncated sequence
    bad_b = b"caf\xff.py:1 (f)"      # invalid byte
    literal = "caf\ufffd.py:1 (f)".encode()
    prof = write(tmp_path / "b.prof", [
        b"m.py:1 (main);big.py:1 (b) 25",
        b"m.py:1 (main);" + bad_a + b" 10",
        b"m.py:1 (main);" + bad_b + b" 10",
        b"m.py:1 (main);" + literal + b" 10",
        b"m.py:1 (main);other.py:1 (o) 20",
        b"m.py:1 (main);c.py:1 (c) 3",
        b"m.py:1 (main);d.py:1 (d) 2",
        b"m.py:1 (main);e.py:1 (e) 1",
    ])
    expected = leaf_totals(prof)
    assert expected[0] == ("caf\ufffd.py:1 (f)", 30)
    assert summary_sites(prof, tmp_path) == expected


def test_random_files_match_the_reference(tmp_path):
    leaves = [b"a.py:%d (f)" % i for i in range(12)] + [
        b"\xe2\x82.py:1 (x)", b"\xe2.py:1 (x)", "\ufffd.py:1 (x)".encode(), b"[No Python stack]",
        "\u00e9t\u00e9.py:4 (\u00e9)".encode()]
    rng = random.Random(1234)
    for case in range(150):
        lines = []
        for _ in range(rng.randint(0, 40)):
            stack = [rng.choice(leaves) for _ in range(rng.randint(1, 4))]
            lines.append(b";".join(stack) + b" %d" % rng.choice([0, 1, 2, 3, 5, 8, rng.randint(0, 1 << 40)]))
        prof = write(tmp_path / ("r%d.prof" % case), lines)
        n = rng.choice([1, 3, 5, 8])
        assert summary_sites(prof, tmp_path, n) == leaf_totals(prof, n), lines


def test_exit_summary_matches_the_prof(run_fil):
    script = """
        def alloc(n):
            return bytearray(n)

        def tie_a():
            return bytearray(3 << 20)   # @a

        def tie_b():
            return bytearray(3 << 20)   # @b

        keep = [alloc(1 << 20) for _ in range(4)]
        keep += [tie_a(), tie_b(), bytearray(5 << 20), bytearray(2 << 20)]
        """
    proc, report_dir, _ = run_fil(script)
    lines = fil_lines(proc.stderr)
    start = lines.index("=fil-profile= Biggest call sites:")
    printed = lines[start + 1:]
    expected = leaf_totals(os.path.join(report_dir, "peak-memory.prof"))
    assert len(printed) == len(expected) == 5
    for line, (frame, count) in zip(printed, expected):
        assert re.fullmatch(r"=fil-profile= +[0-9.]+ MiB  (.*)", line).group(1) == frame
        assert line.split()[1] == "%.1f" % (count / (1 << 20))
