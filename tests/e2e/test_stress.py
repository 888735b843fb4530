"""The stress program under the real preload: 16 native threads allocating in every way at once.

tests/stress/stress.c is compiled here as a plain shared library (no profiler code in it) and
called through ctypes from a script run by `fil-profile run`, so every malloc, calloc, realloc,
free, posix_memalign, aligned_alloc, mmap, munmap (partial ones too) and mremap goes through the
preloaded hooks from threads that Python never saw. The run must finish (a deadlock hits the
timeout), the library's own tag checks must pass (the profiler corrupted nothing), the live
bytes must come back to what they were before the stress (everything the threads allocated was
freed, so anything left is bookkeeping gone wrong), and the peak report must be consistent: its
lines add up to the peak the engine reports.

The same run is repeated with the library built with UndefinedBehaviorSanitizer. (ASan and TSan
cannot instrument a preloaded allocator: their runtimes call malloc while initializing, before
the shadow memory the instrumented hook would touch exists; tests/stress runs the engine under
them instead, `make test-c SANITIZE=...`.)

FIL_STRESS_OPS sets the operations per thread (default 1,000,000 as in the reliability issue;
CI on a slow machine may pass fewer).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
STRESS_C = os.path.join(REPO, "tests", "stress", "stress.c")
OPS = int(os.environ.get("FIL_STRESS_OPS", "1000000"))
THREADS = 16
TIMEOUT = 900   # seconds: far above a normal run; only a hang gets near it
MiB = 1024 * 1024

# What Python itself may allocate or free between the two stats() calls around the stress (the
# call's result object, a stats tuple, a dict for the report line).
PYTHON_SLACK = 256 * 1024

SCRIPT = textwrap.dedent("""\
    import ctypes, json, sys
    from filprofiler import _filpreload

    lib = ctypes.CDLL(sys.argv[1])
    lib.fil_stress_run.restype = ctypes.c_long
    lib.fil_stress_run.argtypes = [ctypes.c_int, ctypes.c_long, ctypes.c_ulong]
    threads, ops = int(sys.argv[2]), int(sys.argv[3])
    before = _filpreload.stats()
    errors = lib.fil_stress_run(threads, ops, 12345)  # @stress
    after = _filpreload.stats()
    sys.stderr.write("STRESS " + json.dumps({"errors": errors, "before": list(before),
                                             "after": list(after)}) + "\\n")
    """)


def _line_of(text, marker):
    for n, line in enumerate(text.splitlines(), 1):
        if line.rstrip().endswith("# @" + marker):
            return n
    raise AssertionError("no line marked " + marker)


def _prof_lines(path):
    """[(stack, bytes)], failing on any malformed line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for raw in f.read().splitlines():
            stack, sep, count = raw.rpartition(" ")
            assert sep and stack and count.isdigit(), "malformed report line: %r" % raw
            out.append((stack, int(count)))
    return out


@pytest.fixture(scope="module")
def stress_lib(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("stress") / "libfilstress.so")
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-std=c11", "-D_GNU_SOURCE", "-O2", "-g", "-fPIC", "-shared", "-pthread",
                    "-fvisibility=hidden", "-Wall", "-Wextra", STRESS_C, "-o", out], check=True)
    return out


def _run_stress(stress_lib, tmp_path, extra_env=None):
    """Run the stress script under `fil-profile run`; returns (stderr, result dict, .prof lines)."""
    script = tmp_path / "stress_script.py"
    script.write_text(SCRIPT)
    out_dir = tmp_path / "out"
    env = dict(os.environ)
    env.update(extra_env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "filprofiler", "-o", str(out_dir), "--no-browser", "run",
         str(script), stress_lib, str(THREADS), str(OPS)],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    m = re.search(r"^STRESS (.*)$", proc.stderr, re.M)
    assert m, proc.stderr[-4000:]
    runs = os.listdir(out_dir)
    assert len(runs) == 1
    prof = _prof_lines(out_dir / runs[0] / "peak-memory.prof")
    return proc.stderr, json.loads(m.group(1)), prof


def _check_stress(stderr, result, prof):
    live_before, peak_before = result["before"][:2]
    live_after, peak_after = result["after"][:2]

    # The library's tag checks: no block was corrupted or handed out twice.
    assert result["errors"] == 0

    # Everything the threads allocated was freed: live bytes are back to the baseline.
    assert abs(live_after - live_before) < PYTHON_SLACK, (live_before, live_after)
    # ... and the stress really went through the hooks: the peak rose well above the baseline.
    assert peak_after > live_before + 4 * MiB, (live_before, peak_after)

    # The report's lines add up to the peak. Tracking stopped after the script ended, and
    # nothing afterwards approached a peak of tens of MiB, so it is the peak stats() returned.
    total = sum(n for _, n in prof)
    assert total == peak_after, (total, peak_after)
    summary = re.search(r"Peak tracked memory: ([0-9.]+) MiB", stderr)
    assert summary and summary.group(1) == "%.1f" % (total / MiB), stderr[-2000:]

    # The native threads' memory is charged to the Python line that started them.
    call = "stress_script.py:%d " % _line_of(SCRIPT, "stress")
    at_call = sum(n for stack, n in prof if call in stack)
    assert at_call > total // 2, (at_call, total, prof[:10])


def test_stress_under_preload(stress_lib, tmp_path):
    _check_stress(*_run_stress(stress_lib, tmp_path))


@pytest.fixture(scope="module")
def ubsan_package(tmp_path_factory):
    """A copy of the filprofiler package whose library is built with -fsanitize=undefined.

    UBSan, unlike ASan and TSan, needs no shadow memory set up before the first instrumented
    instruction runs, so the instrumented library can be the preload library itself (its malloc
    is called long before any sanitizer runtime could initialize)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = tmp_path_factory.mktemp("ubsan")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    build = root / "build"
    subprocess.run(["make", "-C", REPO, "lib", "SANITIZE=undefined", "BUILD=" + str(build),
                    "EXT_SUFFIX=" + suffix, "PYTHON=" + sys.executable],
                   check=True, capture_output=True)
    pkg = root / "pkg" / "filprofiler"
    shutil.copytree(os.path.join(REPO, "filprofiler"), str(pkg),
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    shutil.copy(str(build / ("_filpreload" + suffix)), str(pkg))
    return str(root / "pkg")


def test_stress_under_preload_ubsan(stress_lib, ubsan_package, tmp_path):
    env = {"PYTHONPATH": ubsan_package + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    stderr, result, prof = _run_stress(stress_lib, tmp_path, env)
    assert "runtime error" not in stderr, stderr[-4000:]
    _check_stress(stderr, result, prof)
