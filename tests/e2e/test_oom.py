"""End-to-end tests of out-of-memory reports (src/oom.c) and SIGUSR2 reports (_run.py): the real
`python -m filprofiler run` on small programs, under an address-space limit (`ulimit -Sv`) or
a memory cgroup.

Every run has a subprocess timeout, so a detection that does not fire fails the test instead
of hanging it; no assertion is about time. Helpers are local to this file on purpose.
"""
import os
import re
import resource
import signal
import subprocess
import sys
import textwrap
import time

import pytest

np = pytest.importorskip("numpy")

OOM_EXIT = 53
MIB = 1024 * 1024
RUN_TIMEOUT = 120   # seconds; generous, a hang rather than a slow run is what it catches
# One BLAS thread: thread pools reserve address space (stacks, malloc arenas) per thread, which
# would make the address-space headroom depend on the machine's core count.
QUIET_POOLS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ---- helpers ----

def write_program(tmp_path, name, source):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def fil_command(out_dir, program, *options):
    return [sys.executable, "-m", "filprofiler", "-o", str(out_dir), "--no-browser", *options,
            "run", str(program)]


def limit_address_space(limit_bytes):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, resource.RLIM_INFINITY))
    return apply


def run_fil(tmp_path, program, *options, preexec_fn=None, env=None):
    out_dir = tmp_path / "reports"
    result = subprocess.run(fil_command(out_dir, program, *options),
                            env=dict(os.environ, **QUIET_POOLS, **(env or {})),
                            cwd=str(tmp_path), capture_output=True, text=True,
                            timeout=RUN_TIMEOUT, preexec_fn=preexec_fn)
    return result, out_dir


def run_dirs(out_dir):
    if not out_dir.exists():
        return []
    return sorted(p for p in out_dir.iterdir() if p.is_dir())


def parse_prof(path):
    """[(frames, bytes)]"""
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def bytes_at_line(stacks, filename, line):
    """Bytes of stacks that pass through FILE:LINE (any frame)."""
    mark = "%s:%d " % (filename, line)
    return sum(n for frames, n in stacks if any(f.startswith(mark) for f in frames))


def oom_report(out_dir):
    dirs = run_dirs(out_dir)
    assert len(dirs) == 1, dirs
    d = dirs[0]
    for name in ("out-of-memory.prof", "out-of-memory.svg", "out-of-memory-reversed.svg",
                 "index.html"):
        assert (d / name).is_file(), name
    return d


def line_of(path, marker):
    for i, text in enumerate(path.read_text().splitlines(), 1):
        if marker in text:
            return i
    raise AssertionError(marker)


_baseline = {}


def baseline_vsize(tmp_path):
    """Virtual size of a profiled program that imported numpy (address-space limits are set
    relative to it, so the tests do not depend on this machine's libraries)."""
    if "vsize" not in _baseline:
        probe_dir = tmp_path / "probe"
        probe_dir.mkdir()
        probe = write_program(probe_dir, "probe.py", """
            import numpy, os
            pages = int(open("/proc/self/statm").read().split()[0])
            print(pages * os.sysconf("SC_PAGE_SIZE"))
        """)
        result, _ = run_fil(probe_dir, probe)
        assert result.returncode == 0, result.stderr
        _baseline["vsize"] = int(result.stdout.split()[-1])
    return _baseline["vsize"]


LEAK = """
    import numpy as np
    leak = []
    while True:
        leak.append(np.ones(10 * 1024 * 1024 // 8))  # LEAK
"""


# ---- tests ----

def test_slow_leak_under_ulimit(tmp_path):
    program = write_program(tmp_path, "leak.py", LEAK)
    limit = baseline_vsize(tmp_path) + 600 * MIB
    result, out_dir = run_fil(tmp_path, program, preexec_fn=limit_address_space(limit))
    assert result.returncode == OOM_EXIT, result.stderr
    d = oom_report(out_dir)
    assert "=fil-profile= Wrote memory usage flamegraph to %s/out-of-memory.svg" % d \
        in result.stderr
    assert re.search(r"Available: [\d.]+ \w+ of [\d.]+ \w+ \(address-space limit", result.stderr)
    assert "tracked: " in result.stderr
    stacks = parse_prof(d / "out-of-memory.prof")
    alive = sum(n for frames, n in stacks if frames[-1] != "[failed allocation]")
    leaked = sum(n for frames, n in stacks if frames[-1] != "[failed allocation]" and
                 any(f.startswith("%s:%d " % (program, line_of(program, "# LEAK")))
                     for f in frames))
    assert leaked >= 0.9 * alive, (leaked, alive)
    assert leaked >= 300 * MIB   # most of the 600 MiB headroom was leaked before the report
    html = (d / "index.html").read_text()
    assert "out of memory" in html.lower()
    assert str(program) in html   # the command line


def test_huge_allocation_fails(tmp_path):
    program = write_program(tmp_path, "huge.py", """
        import numpy as np
        small = np.ones(1024 * 1024)
        big = np.ones(2 ** 45)  # HUGE
        print("unreachable")
    """)
    result, out_dir = run_fil(tmp_path, program)
    assert result.returncode == OOM_EXIT, result.stderr
    assert "unreachable" not in result.stdout
    assert "an allocation of %d bytes (256.0 TiB) failed" % (2 ** 48) in result.stderr
    d = oom_report(out_dir)
    stacks = parse_prof(d / "out-of-memory.prof")
    huge_line = line_of(program, "# HUGE")
    failed = [(frames, n) for frames, n in stacks if frames[-1] == "[failed allocation]"]
    assert len(failed) == 1
    frames, n = failed[0]
    assert n == 2 ** 48
    assert any(f.startswith("%s:%d " % (program, huge_line)) for f in frames), frames
    # What was alive is there too: the small array, under its own line.
    assert bytes_at_line(stacks, str(program), huge_line - 1) >= 8 * MIB


def _grow_then_stop_program(tmp_path):
    """Allocates until less than the threshold is left (but far from the limit), then stops
    growing and exits normally. It sets its own address-space limit from its virtual size, so
    the headroom is exact: 600 MiB, of which 450 MiB get used, leaving ~150 MiB < 300 MiB."""
    return write_program(tmp_path, "grow.py", """
        import os, resource
        import numpy as np
        pages = int(open("/proc/self/statm").read().split()[0])
        vsize = pages * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (vsize + 600 * 1024 * 1024, resource.RLIM_INFINITY))
        kept = [np.ones(10 * 1024 * 1024 // 8) for _ in range(45)]  # GROW
        print("finished normally")
    """)


def test_early_detection_fires_under_threshold(tmp_path):
    program = _grow_then_stop_program(tmp_path)
    result, out_dir = run_fil(tmp_path, program, "--oom-threshold", "300")
    assert result.returncode == OOM_EXIT, result.stderr
    assert "finished normally" not in result.stdout
    assert "available memory fell under the threshold (address-space limit" in result.stderr
    assert "threshold 300.0 MiB" in result.stderr
    d = oom_report(out_dir)
    stacks = parse_prof(d / "out-of-memory.prof")
    assert not any(frames[-1] == "[failed allocation]" for frames, _ in stacks)
    assert bytes_at_line(stacks, str(program), line_of(program, "# GROW")) >= 250 * MIB


def test_disable_oom_detection_skips_early_check(tmp_path):
    program = _grow_then_stop_program(tmp_path)
    result, out_dir = run_fil(tmp_path, program, "--oom-threshold", "300",
                              "--disable-oom-detection")
    assert result.returncode == 0, result.stderr
    assert "finished normally" in result.stdout
    assert "Out of memory" not in result.stderr
    dirs = run_dirs(out_dir)
    assert len(dirs) == 1 and (dirs[0] / "peak-memory.prof").is_file()
    assert not (dirs[0] / "out-of-memory.prof").exists()


def test_disable_oom_detection_still_reports_failures(tmp_path):
    program = write_program(tmp_path, "huge.py", """
        import numpy as np
        big = np.ones(2 ** 45)  # HUGE
    """)
    result, out_dir = run_fil(tmp_path, program, "--disable-oom-detection")
    assert result.returncode == OOM_EXIT, result.stderr
    stacks = parse_prof(oom_report(out_dir) / "out-of-memory.prof")
    assert bytes_at_line(stacks, str(program), line_of(program, "# HUGE")) >= 2 ** 48


# ---- cgroups ----

def _mount_of(fstype, option=None):
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if rfields and rfields[0] == fstype and (
                    option is None or option in rfields[-1].split(",")):
                return fields[3], fields[4]
    return None


def _own_cgroup(v2):
    with open("/proc/self/cgroup") as f:
        for line in f:
            ident, ctl, path = line.rstrip("\n").split(":", 2)
            if v2 and ident == "0" and ctl == "":
                return path
            if not v2 and "memory" in ctl.split(","):
                return path
    return None


def _make_memory_cgroup(limit_bytes):
    """(directory, version, why-not). Tries a child of this process's cgroup, v2 then v1."""
    reasons = []
    for v2 in (True, False):
        name = "cgroup2" if v2 else "cgroup"
        mount = _mount_of(name, None if v2 else "memory")
        own = _own_cgroup(v2)
        if not mount or own is None:
            reasons.append("no %s memory hierarchy mounted" % name)
            continue
        root, point = mount
        rel = own[len(root):] if root != "/" and own.startswith(root) else (
            own if root == "/" else "")
        parent = point + rel.rstrip("/")
        child = os.path.join(parent, "fil-oom-test-%d" % os.getpid())
        try:
            os.mkdir(child)
        except OSError as e:
            reasons.append("cannot create a %s under %s: %s" % (name, parent, e.strerror))
            continue
        limit_file = os.path.join(child, "memory.max" if v2 else "memory.limit_in_bytes")
        try:
            if v2 and not os.path.exists(limit_file):
                raise OSError(0, "the memory controller is not enabled for child cgroups "
                                 "(cgroup.subtree_control)")
            with open(limit_file, "w") as f:
                f.write(str(limit_bytes))
            if not v2:
                swap = os.path.join(child, "memory.memsw.limit_in_bytes")
                if os.path.exists(swap):
                    try:
                        with open(swap, "w") as f:
                            f.write(str(limit_bytes))
                    except OSError:
                        pass
            return child, ("v2" if v2 else "v1"), None
        except OSError as e:
            reasons.append("cannot limit memory in %s: %s" % (child, e.strerror))
            os.rmdir(child)
    return None, None, "; ".join(reasons)


def test_cgroup_memory_limit(tmp_path):
    limit = 800 * MIB
    child, version, why = _make_memory_cgroup(limit)
    if child is None:
        print("skipping: " + why)
        pytest.skip("no memory cgroup can be created here: " + why)
    try:
        def enter():
            with open(os.path.join(child, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

        program = write_program(tmp_path, "leak.py", LEAK)
        result, out_dir = run_fil(tmp_path, program, preexec_fn=enter)
        assert result.returncode == OOM_EXIT, (version, result.returncode, result.stderr)
        assert "(memory cgroup limit" in result.stderr, result.stderr
        assert "of 800.0 MiB" in result.stderr
        d = oom_report(out_dir)
        stacks = parse_prof(d / "out-of-memory.prof")
        leaked = bytes_at_line(stacks, str(program), line_of(program, "# LEAK"))
        alive = sum(n for _, n in stacks)
        assert leaked >= 0.9 * alive and leaked >= 500 * MIB, (leaked, alive)
        print(version, result.stderr)
    finally:
        for _ in range(50):
            try:
                os.rmdir(child)
                break
            except OSError:
                time.sleep(0.1)   # the cgroup empties once the killed process is reaped


def test_report_memory_resident_only_near_a_limit(tmp_path):
    """The 20 MiB the report is rendered from are reserved at start but made resident only once
    the early check finds memory within reach of a threshold: a program far from any limit does
    not carry them."""
    program = write_program(tmp_path, "rss.py", """
        import numpy
        data = [bytearray(1 << 20) for _ in range(4)]   # allocations: the early check reads
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                print(int(line.split()[1]) * 1024)
    """)
    plenty, _ = run_fil(tmp_path, program)
    near = baseline_vsize(tmp_path) + 200 * MIB   # under 256 MiB above the threshold
    tight, _ = run_fil(tmp_path, program, preexec_fn=limit_address_space(near))
    assert plenty.returncode == 0 and tight.returncode == 0, (plenty.stderr, tight.stderr)
    extra = int(tight.stdout.split()[-1]) - int(plenty.stdout.split()[-1])
    assert 19 * MIB <= extra <= 22 * MIB, extra / MIB


# ---- SIGUSR2 ----

def _wait_for(predicate, what, proc, limit=RUN_TIMEOUT):
    deadline = time.monotonic() + limit
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError("the program ended (%s) while waiting for %s"
                                 % (proc.returncode, what))
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("gave up waiting for " + what)
        time.sleep(0.05)


def test_sigusr2_writes_peak_so_far(tmp_path):
    program = write_program(tmp_path, "phases.py", """
        import sys
        import numpy as np
        first = np.ones(50 * 1024 * 1024 // 8)  # FIRST
        print("ready", flush=True)
        sys.stdin.readline()
        del first
        second = np.ones(120 * 1024 * 1024 // 8)  # SECOND
        print("done", flush=True)
    """)
    out_dir = tmp_path / "reports"
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(fil_command(out_dir, program), cwd=str(tmp_path),
                                env=dict(os.environ, **QUIET_POOLS), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            proc.send_signal(signal.SIGUSR2)
            _wait_for(lambda: "Peak tracked memory so far" in err_path.read_text(),
                      "the SIGUSR2 report", proc)
            assert len(run_dirs(out_dir)) == 1
            proc.stdin.write("go on\n")
            proc.stdin.flush()
            assert proc.wait(timeout=RUN_TIMEOUT) == 0, err_path.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.stdout.read().strip() == "done"
    first_dir, final_dir = run_dirs(out_dir)   # exactly two, in time order
    first = parse_prof(first_dir / "peak-memory.prof")
    final = parse_prof(final_dir / "peak-memory.prof")
    first_line, second_line = line_of(program, "# FIRST"), line_of(program, "# SECOND")
    assert bytes_at_line(first, str(program), first_line) >= 50 * MIB
    assert bytes_at_line(first, str(program), second_line) == 0
    # The final report covers the whole run: its peak is the second phase.
    assert bytes_at_line(final, str(program), second_line) >= 120 * MIB
    assert bytes_at_line(final, str(program), first_line) < MIB   # the array was freed
    assert (first_dir / "index.html").is_file() and (first_dir / "peak-memory.svg").is_file()


def test_program_sigusr2_handler_wins(tmp_path):
    """A program that installs its own SIGUSR2 handler gets the signal, not the profiler."""
    program = write_program(tmp_path, "own.py", """
        import os, signal
        got = []
        signal.signal(signal.SIGUSR2, lambda s, f: got.append(s))
        os.kill(os.getpid(), signal.SIGUSR2)
        print("handled by program" if got else "not handled")
    """)
    result, out_dir = run_fil(tmp_path, program)
    assert result.returncode == 0, result.stderr
    assert "handled by program" in result.stdout
    assert len(run_dirs(out_dir)) == 1   # only the report at exit


def test_failure_report_with_no_memory_left(tmp_path):
    """Detection off, the leak runs until an allocation fails with the address space exhausted:
    the report is still complete, drawn from the memory reserved at start."""
    program = write_program(tmp_path, "leak.py", LEAK)
    limit = baseline_vsize(tmp_path) + 600 * MIB
    result, out_dir = run_fil(tmp_path, program, "--disable-oom-detection",
                              preexec_fn=limit_address_space(limit))
    assert result.returncode == OOM_EXIT, result.stderr
    assert "an allocation of 10485760 bytes (10.0 MiB) failed" in result.stderr
    d = oom_report(out_dir)   # all four files
    assert "Wrote memory usage flamegraph to %s/out-of-memory.svg" % d in result.stderr
    stacks = parse_prof(d / "out-of-memory.prof")
    assert bytes_at_line(stacks, str(program), line_of(program, "# LEAK")) >= 500 * MIB
