"""Shared fixtures for the end-to-end tests: run the real `fil-profile` CLI on small programs.

`run_fil` runs `python -m filprofiler -o OUT --no-browser run ...` with the interpreter that runs
pytest (so the tests work inside whatever virtualenv has filprofiler installed) and parses the
report's peak-memory.prof into {stack: bytes}, a stack being a tuple of Frame(file, line, func)
from the root. `bytes_at` / `bytes_under` sum the bytes of the stacks that match, so a test can
say "this line held 100 MiB at the peak" in one assertion. `compile_c` builds a shared library
from source text into the test's tmp_path (C, C++ or Fortran).

Scripts mark their interesting lines with a trailing comment `# @NAME`; `line_of(text, NAME)`
returns that line's number, so the assertions never depend on counting lines by hand.
"""
import collections
import hashlib
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

MiB = 1024 * 1024
NO_PYTHON = "[No Python stack]"
RUN_TIMEOUT = 120  # seconds; a hung profiler fails the test instead of the whole suite

Frame = collections.namedtuple("Frame", "file line func")
_FRAME_RE = re.compile(r"^(?P<file>.*):(?P<line>\d+) \((?P<func>.*)\)$")


def parse_frame(text):
    """Frame from `FILE:LINE (FUNC)`; the `[No Python stack]` root becomes Frame(it, 0, it)."""
    if text == NO_PYTHON or (text.startswith("[") and text.endswith("]")):
        # The profiler's own synthetic frames: [No Python stack], [stack truncated],
        # [native thread: charged to the code that started it].
        return Frame(text, 0, text)
    m = _FRAME_RE.match(text)
    if not m:
        raise AssertionError("malformed frame in report: %r" % text)
    return Frame(m.group("file"), int(m.group("line")), m.group("func"))


def parse_prof(path):
    """{(Frame, ...) root first: bytes} from a collapsed-stacks file.

    Every line must be `STACK BYTES` with a positive integer; a malformed line fails the test,
    since other tools parse this format too. Equal stacks on two lines would also be a format
    error (the writer aggregates), so they fail as well."""
    prof = {}
    with open(path, "rb") as f:
        data = f.read()
    for raw in data.decode("utf-8").splitlines():
        stack, sep, count = raw.rpartition(" ")
        assert sep and stack and count.isdigit(), "malformed report line: %r" % raw
        frames = tuple(parse_frame(s) for s in stack.split(";"))
        assert frames not in prof, "stack written twice: %r" % raw
        prof[frames] = int(count)
    return prof


def line_of(text, marker):
    """1-based line number of the line in `text` ending with the comment `# @marker`."""
    text = textwrap.dedent(text)
    hits = [i + 1 for i, l in enumerate(text.splitlines())
            if re.search(r"#\s*@%s\s*$" % re.escape(marker), l)]
    assert len(hits) == 1, "marker @%s found %d times" % (marker, len(hits))
    return hits[0]


def frame_matcher(spec):
    """A predicate on Frame from `spec`:
      - a callable: used as is;
      - "FILE:LINE" or "FILE:LINE (FUNC)": FILE is a full path or a base name;
      - "FUNC" (no colon): the function name (co_qualname, e.g. "Worker.run", "<module>")."""
    if callable(spec):
        return spec
    m = re.match(r"^(?P<file>[^:]+):(?P<line>\d+)(?: \((?P<func>.*)\))?$", spec)
    if not m:
        return lambda f: f.func == spec

    def match(f):
        if m.group("file") not in (f.file, os.path.basename(f.file)):
            return False
        if int(m.group("line")) != f.line:
            return False
        return m.group("func") is None or m.group("func") == f.func

    return match


def bytes_at(prof, predicate):
    """Bytes at the peak of the stacks that contain a frame matching `predicate`
    (see frame_matcher). Each stack counts once even if several of its frames match."""
    match = frame_matcher(predicate)
    return sum(n for stack, n in prof.items() if any(match(f) for f in stack))


def bytes_under(prof, *specs):
    """Bytes of the stacks whose first frames, from the root, match `specs` in order."""
    matchers = [frame_matcher(s) for s in specs]
    return sum(n for stack, n in prof.items()
               if len(stack) >= len(matchers) and all(m(f) for m, f in zip(matchers, stack)))


def bytes_with_sequence(prof, *specs):
    """Bytes of the stacks that contain frames matching `specs` consecutively (caller first),
    anywhere in the stack: for threads and coroutines, whose roots are library frames."""
    matchers = [frame_matcher(s) for s in specs]
    k = len(matchers)

    def has(stack):
        return any(all(m(f) for m, f in zip(matchers, stack[i:i + k]))
                   for i in range(len(stack) - k + 1))

    return sum(n for stack, n in prof.items() if has(stack))


def total(prof):
    return sum(prof.values())


def total_except(prof, *specs):
    """Bytes of the stacks that contain no frame matching any of `specs`: the total without,
    say, the line importing numpy (whose BLAS library maps tens of MiB of buffers)."""
    matchers = [frame_matcher(s) for s in specs]
    return sum(n for stack, n in prof.items()
               if not any(m(f) for m in matchers for f in stack))


def assert_close(actual, expected, rel=0.05, what=""):
    """actual within rel (5% by default) of expected, with a readable message."""
    assert abs(actual - expected) <= rel * expected, (
        "%s: %d bytes (%.2f MiB) at the peak, expected %d (%.2f MiB) within %d%%"
        % (what or "bytes", actual, actual / MiB, expected, expected / MiB, rel * 100))


def describe(prof, limit=15):
    """The biggest stacks, for assertion messages."""
    rows = sorted(prof.items(), key=lambda kv: -kv[1])[:limit]
    return "\n".join("%12d  %s" % (n, " ; ".join("%s:%d (%s)" % (os.path.basename(f.file),
                                                                   f.line, f.func)
                                                    for f in s))
                     for s, n in rows)


def clean_env(env=None):
    """os.environ without a preload, plus `env` overrides (a None value removes a variable)."""
    base = dict(os.environ)
    base.pop("LD_PRELOAD", None)
    base.pop("_FIL_SAVED_LD_PRELOAD", None)
    for k, v in (env or {}).items():
        if v is None:
            base.pop(k, None)
        else:
            base[k] = v
    return base


def write_script(directory, text, name="script.py"):
    path = os.path.join(str(directory), name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return path


def _resolve_script(target, directory):
    if isinstance(target, os.PathLike):
        return os.fspath(target)
    if "\n" not in target and os.path.exists(os.path.join(str(directory), target)):
        return target
    return write_script(directory, target)


class FilRunner:
    """Runs fil-profile (see run_fil); one output directory per call."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.count = 0

    def __call__(self, script, *args, cwd=None, env=None, module=False, expect_exit=0,
                 options=(), stdin=None):
        """Run `fil-profile -o OUT --no-browser [options] run SCRIPT|-m MODULE args...`.

        script: text of a script (written to tmp_path/script.py), a path, or with module=True a
        module name. expect_exit: the return code to assert (None: don't check). Returns
        (CompletedProcess with bytes stdout/stderr, report directory or None, parsed prof or None).
        """
        cwd = str(cwd or self.tmp_path)
        self.count += 1
        out = os.path.join(str(self.tmp_path), "fil-out-%d" % self.count)
        target = ["-m", script] if module else [_resolve_script(script, cwd)]
        cmd = [sys.executable, "-m", "filprofiler", "-o", out, "--no-browser", *options, "run",
               *target, *args]
        proc = subprocess.run(cmd, cwd=cwd, env=clean_env(env), capture_output=True,
                              timeout=RUN_TIMEOUT, input=stdin)
        if expect_exit is not None:
            assert proc.returncode == expect_exit, (
                "fil-profile exited %d, expected %d\nstdout:\n%s\nstderr:\n%s"
                % (proc.returncode, expect_exit, proc.stdout.decode(errors="replace"),
                   proc.stderr.decode(errors="replace")))
        report_dir, prof = None, None
        if os.path.isdir(out):
            runs = sorted(os.listdir(out))
            assert len(runs) == 1, "expected one run directory in %s, found %r" % (out, runs)
            report_dir = os.path.join(out, runs[0])
            prof_path = os.path.join(report_dir, "peak-memory.prof")
            if os.path.exists(prof_path):
                prof = parse_prof(prof_path)
        return proc, report_dir, prof


@pytest.fixture
def run_fil(tmp_path):
    return FilRunner(tmp_path)


def run_plain(script, *args, cwd, env=None, module=False, stdin=None):
    """The same program under plain python, for comparisons."""
    target = ["-m", script] if module else [_resolve_script(script, cwd)]
    return subprocess.run([sys.executable, *target, *args], cwd=str(cwd), env=clean_env(env),
                          capture_output=True, timeout=RUN_TIMEOUT, input=stdin)


def compile_c(tmp_path, source, cxx=False, fortran=False, flags=()):
    """Build `source` into a shared library in tmp_path and return its path.

    C with cc, C++ with c++ (-std=c++17), Fortran with gfortran; -O1 -fPIC -shared -pthread.
    Skips the test when the compiler is missing (Fortran only: the C toolchain is required)."""
    if fortran:
        compiler, ext = os.environ.get("FC", "gfortran"), ".f90"
        if shutil.which(compiler) is None:
            pytest.skip("gfortran is not installed (.ci/run installs it)")
        std = []
    elif cxx:
        compiler, ext, std = os.environ.get("CXX", "c++"), ".cpp", ["-std=c++17"]
    else:
        compiler, ext, std = os.environ.get("CC", "cc"), ".c", ["-std=c11", "-D_GNU_SOURCE"]
    source = textwrap.dedent(source)
    digest = hashlib.sha1((compiler + source + repr(flags)).encode()).hexdigest()[:12]
    src = os.path.join(str(tmp_path), "lib_%s%s" % (digest, ext))
    lib = os.path.join(str(tmp_path), "lib_%s.so" % digest)
    with open(src, "w") as f:
        f.write(source)
    cmd = [compiler, *std, "-O1", "-g", "-fPIC", "-shared", "-pthread", src, "-o", lib, *flags]
    # In tmp_path: gfortran writes its .mod files into the working directory.
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path))
    assert proc.returncode == 0, "compiling failed: %s\n%s" % (" ".join(cmd), proc.stderr)
    return lib


def fil_lines(stderr):
    """The profiler's own stderr lines (those starting with `=fil-profile= `)."""
    return [l for l in stderr.decode(errors="replace").splitlines()
            if l.startswith("=fil-profile= ")]


def program_stderr(stderr):
    """stderr without the profiler's own lines: what the program itself wrote."""
    return b"".join(l for l in stderr.splitlines(keepends=True)
                    if not l.startswith(b"=fil-profile= "))
