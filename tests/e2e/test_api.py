"""End-to-end: filprofiler.api.profile(func, path) in a program started with `fil-profile python`,
and its RuntimeError under plain python.

Each script prints what profile() returned or raised; the report directory it was given must hold
the function's allocations at the function's own lines, with stacks starting at the function
(none of api.py's frames), and nothing allocated before or after the call.
"""
import os
import subprocess
import sys

from conftest import (MiB, RUN_TIMEOUT, assert_close, bytes_at, bytes_under, clean_env, describe,
                      line_of, parse_prof, total, write_script)

REPORT_FILES = ("peak-memory.prof", "peak-memory.svg", "peak-memory-reversed.svg", "index.html")


def fil_python(tmp_path, script, *args, expect_exit=0):
    """`fil-profile python SCRIPT ARGS` in tmp_path; the CompletedProcess (text)."""
    path = write_script(tmp_path, script)
    proc = subprocess.run([sys.executable, "-m", "filprofiler", "python", path, *args],
                          cwd=str(tmp_path), env=clean_env(), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)
    assert proc.returncode == expect_exit, (
        "exit %d, expected %d\nstdout:\n%s\nstderr:\n%s"
        % (proc.returncode, expect_exit, proc.stdout, proc.stderr))
    return proc


def report(directory):
    for name in REPORT_FILES:
        p = os.path.join(str(directory), name)
        assert os.path.isfile(p) and os.path.getsize(p) > 0, "missing %s" % p
    return parse_prof(os.path.join(str(directory), "peak-memory.prof"))


SCRIPT = """\
import sys
from filprofiler.api import profile

before = bytearray(30 * 1024 * 1024)       # not part of the profiled call

def work(n):
    block = bytearray(n * 1024 * 1024)       # @work_block
    return len(block)

result = profile(lambda: work(40), sys.argv[1])
print("result", result)
after = bytearray(60 * 1024 * 1024)         # not part of it either
"""


def test_profile_returns_the_result_and_writes_the_report(tmp_path):
    out = tmp_path / "reports" / "nested"   # created by profile()
    proc = fil_python(tmp_path, SCRIPT, str(out))
    assert proc.stdout == "result 41943040\n"
    prof = report(out)
    line = line_of(SCRIPT, "work_block")
    # The stacks start at the profiled function (the lambda), with work() above it.
    assert_close(bytes_under(prof, "<lambda>", "script.py:%d (work)" % line), 40 * MiB,
                 rel=0.01, what="work's bytearray\n" + describe(prof))
    assert not any(os.path.basename(f.file) == "api.py" for s in prof for f in s), describe(prof)
    # Only the call: the 30 MiB before it and the 60 MiB after it are not in the report.
    assert total(prof) < 41 * MiB, describe(prof)
    with open(out / "index.html", encoding="utf-8") as f:
        assert "filprofiler.api.profile(" in f.read()


RAISING = """\
import sys
from filprofiler.api import profile

def fails():
    held = [bytearray(25 * 1024 * 1024)]     # @held
    raise KeyError("from fails")

try:
    profile(fails, sys.argv[1])
except KeyError as e:
    print("caught", e.args[0])
    import traceback
    print(traceback.extract_tb(e.__traceback__)[-1].name)
"""


def test_exception_propagates_after_the_report_is_written(tmp_path):
    out = tmp_path / "failing"
    proc = fil_python(tmp_path, RAISING, str(out))
    lines = proc.stdout.splitlines()
    assert lines[0] == "caught from fails", proc.stdout
    assert lines[-1] == "fails", "the exception keeps its own traceback: " + proc.stdout
    prof = report(out)
    assert_close(bytes_at(prof, "script.py:%d (fails)" % line_of(RAISING, "held")), 25 * MiB,
                 rel=0.01, what="fails' bytearray\n" + describe(prof))


TWICE = """\
import sys
from filprofiler.api import profile

def first():
    return bytearray(50 * 1024 * 1024)      # @first

def second():
    return len(bytearray(10 * 1024 * 1024))  # @second

kept = profile(first, sys.argv[1])          # still alive during the second call
print(profile(second, sys.argv[2]))
"""


def test_each_call_reports_only_itself(tmp_path):
    proc = fil_python(tmp_path, TWICE, str(tmp_path / "one"), str(tmp_path / "two"))
    assert proc.stdout == "10485760\n"
    one, two = report(tmp_path / "one"), report(tmp_path / "two")
    assert_close(bytes_at(one, "script.py:%d" % line_of(TWICE, "first")), 50 * MiB, rel=0.01,
                 what=describe(one))
    assert_close(bytes_at(two, "script.py:%d" % line_of(TWICE, "second")), 10 * MiB, rel=0.01,
                 what=describe(two))
    assert total(two) < 11 * MiB, "the first call's array is not the second's: " + describe(two)


AGAIN_AFTER_MANY = """\
import sys
from filprofiler.api import profile

def many():
    # Far more allocations in a row than the lock needs to bias itself towards this thread, so
    # the next call starts tracking while this thread holds the bias.
    return [str(i) for i in range(200_000)]   # @many

def block():
    return len(bytearray(12 * 1024 * 1024))  # @block

kept = profile(many, sys.argv[1])
print(profile(block, sys.argv[2]))
print(profile(block, sys.argv[3]))
"""


def test_profiling_again_after_many_allocations(tmp_path):
    """Each start of tracking resets the lock's bias, which the starting thread may hold itself."""
    dirs = [str(tmp_path / name) for name in ("one", "two", "three")]
    proc = fil_python(tmp_path, AGAIN_AFTER_MANY, *dirs)
    assert proc.stdout == "12582912\n12582912\n"
    one = report(dirs[0])
    assert bytes_at(one, "script.py:%d" % line_of(AGAIN_AFTER_MANY, "many")) > 10 * MiB, describe(one)
    for d in dirs[1:]:
        prof = report(d)
        assert_close(bytes_at(prof, "script.py:%d" % line_of(AGAIN_AFTER_MANY, "block")), 12 * MiB,
                     rel=0.01, what=describe(prof))


OUTSIDE = """\
import sys
import filprofiler.api
called = []
try:
    filprofiler.api.profile(lambda: called.append(1), sys.argv[1])
except RuntimeError as e:
    print("RuntimeError:", e)
print("called", called)
"""


def test_runtime_error_outside_fil_profile_python(tmp_path):
    path = write_script(tmp_path, OUTSIDE)
    out = tmp_path / "never"
    proc = subprocess.run([sys.executable, path, str(out)], cwd=str(tmp_path), env=clean_env(),
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first.startswith("RuntimeError:") and "fil-profile python yourscript.py" in first
    assert second == "called []", "the function must not run without the profiler"
    assert not out.exists()


NESTED_UNDER_RUN = """\
import sys
from filprofiler.api import profile

before = bytearray(30 * 1024 * 1024)            # @before

def work():
    block = bytearray(50 * 1024 * 1024)           # @block
    return len(block)

print(profile(work, sys.argv[1]))
print(profile(work, sys.argv[1]))
after = bytearray(100 * 1024 * 1024)            # @after
"""


def test_profile_under_fil_profile_run_keeps_the_whole_program_report(run_fil, tmp_path):
    """Under `fil-profile run` the whole program is tracked already: profile() must not start
    afresh (which would leave the report at exit with the function's data only) nor stop
    tracking when it returns (which would lose the rest of the program)."""
    out = tmp_path / "function-report"
    proc, _, prof = run_fil(NESTED_UNDER_RUN, str(out))
    assert proc.stdout.decode() == "52428800\n52428800\n"
    warnings = [l for l in proc.stderr.decode().splitlines() if "profile() wrote no report" in l]
    assert len(warnings) == 1, proc.stderr.decode()   # once, for two calls
    assert str(out) in warnings[0] and "fil-profile python" in warnings[0]
    assert not out.exists()
    # The peak is at the end, after both calls: what was allocated before and after them.
    assert_close(bytes_at(prof, "script.py:%d" % line_of(NESTED_UNDER_RUN, "before")), 30 * MiB,
                 rel=0.01, what=describe(prof))
    assert_close(bytes_at(prof, "script.py:%d" % line_of(NESTED_UNDER_RUN, "after")), 100 * MiB,
                 rel=0.01, what=describe(prof))
    assert bytes_at(prof, "script.py:%d" % line_of(NESTED_UNDER_RUN, "block")) == 0


NESTED_CALLS = """\
import sys
from filprofiler.api import profile

def inner():
    return len(bytearray(20 * 1024 * 1024))       # @inner

def outer():
    kept = bytearray(10 * 1024 * 1024)            # @outer
    return profile(inner, sys.argv[2]) + len(kept)

print(profile(outer, sys.argv[1]))
"""


def test_profile_inside_profile_reports_once_for_the_outer_call(tmp_path):
    outer_dir, inner_dir = tmp_path / "outer", tmp_path / "inner"
    proc = fil_python(tmp_path, NESTED_CALLS, str(outer_dir), str(inner_dir))
    assert proc.stdout == "%d\n" % (30 * MiB)
    assert "profile() wrote no report to %s" % inner_dir in proc.stderr
    assert not inner_dir.exists()
    prof = report(outer_dir)
    assert_close(bytes_at(prof, "script.py:%d" % line_of(NESTED_CALLS, "outer")), 10 * MiB,
                 rel=0.01, what=describe(prof))
    assert_close(bytes_at(prof, "script.py:%d" % line_of(NESTED_CALLS, "inner")), 20 * MiB,
                 rel=0.01, what=describe(prof))
