"""End-to-end: `fil-profile run` behaves like `python` for the program.

Exit codes and tracebacks, stdout byte for byte, sys.argv / sys.path[0] / __file__ / __name__ for
scripts and `-m`, subprocesses that do not inherit the preload, the launcher's frames hidden
from every stack, and one-line errors for programs that cannot be run. Most tests run the same
program under plain python and compare.
"""
import os
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import (MiB, NO_PYTHON, assert_close, bytes_at, bytes_under, compile_c,
                      describe, fil_lines, line_of, program_stderr, run_plain, write_script)


def assert_report_written(report, prof):
    assert report is not None and prof is not None, "no report written"
    for name in ("peak-memory.prof", "peak-memory.svg", "index.html"):
        assert os.path.exists(os.path.join(report, name)), name


# ---- exit codes and exceptions ----

def test_sys_exit_code_passes_through(run_fil):
    script = textwrap.dedent("""\
        import sys
        kept = bytearray(12 << 20)  # @kept
        sys.exit(3)
        """)
    proc, report, prof = run_fil(script, expect_exit=3)
    assert_report_written(report, prof)
    assert_close(bytes_at(prof, "script.py:%d" % line_of(script, "kept")), 12 * MiB)


@pytest.mark.parametrize("code, expected", [("sys.exit('bye')", 1), ("sys.exit(None)", 0),
                                            ("os._exit(0) if False else sys.exit(255)", 255)])
def test_sys_exit_forms(run_fil, tmp_path, code, expected):
    script = "import os, sys\n%s\n" % code
    plain = run_plain(script, cwd=tmp_path)
    proc, report, prof = run_fil(script, expect_exit=expected)
    assert plain.returncode == expected
    assert program_stderr(proc.stderr) == plain.stderr
    assert_report_written(report, prof)


EXCEPTION_SCRIPT = """\
import json
def parse(text):
    return json.loads(text)
def main():
    kept = bytearray(9 << 20)  # @kept
    parse("{not json")
main()
"""


def test_uncaught_exception_like_plain_python(run_fil, tmp_path):
    """Exit code 1, and the traceback on stderr is exactly plain python's: it starts at the
    script's <module>, with no filprofiler/_run.py or runpy frames. The report is written."""
    proc, report, prof = run_fil(EXCEPTION_SCRIPT, expect_exit=1)
    plain = run_plain("script.py", cwd=tmp_path)
    assert plain.returncode == 1
    err = program_stderr(proc.stderr)
    assert b"_run.py" not in err and b"runpy" not in err, err.decode()
    assert err == plain.stderr, "fil:\n%s\nplain:\n%s" % (err.decode(), plain.stderr.decode())
    assert_report_written(report, prof)
    assert_close(bytes_at(prof, "script.py:%d" % line_of(EXCEPTION_SCRIPT, "kept")), 9 * MiB)


def test_syntax_error_in_script_like_plain_python(run_fil, tmp_path):
    script = "x = 1\nif x\n    print(x)\n"
    proc, report, prof = run_fil(script, expect_exit=1)
    plain = run_plain("script.py", cwd=tmp_path)
    assert plain.returncode == 1
    err = program_stderr(proc.stderr)
    assert err == plain.stderr, "fil:\n%s\nplain:\n%s" % (err.decode(), plain.stderr.decode())


def test_exception_with_cause_and_custom_excepthook(run_fil, tmp_path):
    """Chained exceptions print both tracebacks; a program's own sys.excepthook is used."""
    script = textwrap.dedent("""\
        import sys
        def hook(t, v, tb):
            n = 0
            while tb is not None:
                n += 1
                tb = tb.tb_next
            sys.stderr.write("hooked %s with %d frames\\n" % (t.__name__, n))
        if len(sys.argv) > 1:
            sys.excepthook = hook
        def f():
            try:
                {}["missing"]
            except KeyError as e:
                raise ValueError("wrapped") from e
        f()
        """)
    for args in ((), ("hook",)):
        proc, report, prof = run_fil(script, *args, expect_exit=1)
        plain = run_plain("script.py", *args, cwd=tmp_path)
        err = program_stderr(proc.stderr)
        assert err == plain.stderr, "fil:\n%s\nplain:\n%s" % (err.decode(),
                                                               plain.stderr.decode())


def test_uncaught_keyboard_interrupt_like_plain_python(run_fil, tmp_path):
    """Plain python ends an uncaught KeyboardInterrupt by dying of SIGINT (return code -2)."""
    script = textwrap.dedent("""\
        kept = bytearray(11 << 20)  # @kept
        def work():
            raise KeyboardInterrupt
        work()
        """)
    proc, report, prof = run_fil(script, expect_exit=None)
    plain = run_plain("script.py", cwd=tmp_path)
    assert plain.returncode == -2
    assert proc.returncode == -2, proc.stderr.decode()
    err = program_stderr(proc.stderr)
    assert err == plain.stderr, "fil:\n%s\nplain:\n%s" % (err.decode(), plain.stderr.decode())
    assert_report_written(report, prof)
    assert_close(bytes_at(prof, "script.py:%d" % line_of(script, "kept")), 11 * MiB)


# ---- stdout and the program's view of itself ----

STDOUT_SCRIPT = """\
import sys
print("plain line")
print("no newline", end="")
print(" then more", 1, 2.5, None, sep="|")
sys.stdout.write("written\\n")
sys.stdout.flush()
sys.stdout.buffer.write(b"\\x00\\xff binary \\r\\n\\x1b[0m")
sys.stdout.buffer.flush()
print("caf\\u00e9 \\u2603")
for i in range(2000):
    print(i, end=" ")
print(file=sys.stderr)
sys.stdout.write("tail without newline")
"""


def test_stdout_is_byte_for_byte_the_programs(run_fil, tmp_path):
    proc, report, prof = run_fil(STDOUT_SCRIPT, env={"PYTHONIOENCODING": "utf-8"})
    plain = run_plain("script.py", cwd=tmp_path, env={"PYTHONIOENCODING": "utf-8"})
    assert plain.returncode == 0
    assert proc.stdout == plain.stdout
    assert program_stderr(proc.stderr) == plain.stderr
    # Every line the profiler adds is on stderr and prefixed.
    for line in proc.stderr.decode().splitlines():
        assert line == "" or line.startswith("=fil-profile= "), line


def test_stdin_reaches_the_program(run_fil, tmp_path):
    script = "import sys\ndata = sys.stdin.buffer.read()\nsys.stdout.buffer.write(data[::-1])\n"
    payload = bytes(range(256)) * 100
    proc, report, prof = run_fil(script, stdin=payload)
    assert proc.stdout == payload[::-1]


IDENTITY_SCRIPT = """\
import os, sys
print(repr(sys.argv))
print(repr(sys.path[0]))
print(repr(__name__))
print(repr(__file__) if "__file__" in globals() else "no __file__")
print(repr(None if __spec__ is None else (__spec__.name, __spec__.origin, __spec__.parent,
                                          type(__spec__.loader).__name__)))
print(repr(__package__), repr(type(__loader__).__name__))
print(repr(sys.modules["__main__"].__dict__ is globals()))
print(repr(os.getcwd()))
"""


@pytest.mark.parametrize("how", ["relative", "absolute", "subdir"])
def test_script_identity_like_plain_python(run_fil, tmp_path, how):
    """sys.argv (with arguments that look like fil-profile's own options), sys.path[0],
    __name__, __file__ and __spec__ as under `python SCRIPT ARGS`."""
    sub = tmp_path / "sub dir"
    sub.mkdir()
    path = write_script(sub, IDENTITY_SCRIPT, "ident.py")
    target = {"relative": os.path.join("sub dir", "ident.py"), "absolute": path,
              "subdir": path}[how]
    cwd = sub if how == "subdir" else tmp_path
    if how == "subdir":
        target = "ident.py"
    args = ("-o", "x", "run", "--no-browser", "-m", "json", "--", "é ü")
    plain = subprocess.run([sys.executable, target, *args], cwd=str(cwd), capture_output=True)
    assert plain.returncode == 0, plain.stderr
    proc, report, prof = run_fil(target, *args, cwd=cwd)
    assert proc.stdout.decode() == plain.stdout.decode()


# ---- run -m ----

def make_package(root):
    pkg = root / "mypkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("import_time = bytearray(1 << 20)\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(IDENTITY_SCRIPT + "kept = bytearray(13 << 20)  # @kept\n")
    (pkg / "sub" / "tool.py").write_text(IDENTITY_SCRIPT + "kept = bytearray(14 << 20)  # @kept\n")
    (root / "topmod.py").write_text(IDENTITY_SCRIPT + textwrap.dedent("""\
        import json
        def build():
            return bytearray(15 << 20)  # @kept
        kept = build()  # @call
        """))


@pytest.mark.parametrize("module, main_file, size", [("topmod", "topmod.py", 15),
                                                     ("mypkg", "__main__.py", 13),
                                                     ("mypkg.sub.tool", "tool.py", 14)])
def test_run_module_like_python_m(run_fil, tmp_path, module, main_file, size):
    make_package(tmp_path)
    args = ("--flag", "run", "value")
    plain = run_plain(module, *args, cwd=tmp_path, module=True)
    assert plain.returncode == 0, plain.stderr
    proc, report, prof = run_fil(module, *args, module=True)
    assert proc.stdout.decode() == plain.stdout.decode()
    # The module's allocation is at its line, under its own <module> as the first frame.
    kept = [s for s in prof if s[-1].file.endswith(main_file) and s[-1].func in ("<module>",
                                                                                  "build")]
    assert kept, describe(prof)
    src = open(kept[0][-1].file).read()
    assert_close(bytes_at(prof, "%s:%d" % (main_file, line_of(src, "kept"))), size * MiB,
                 what=describe(prof))
    # Its stack starts at its own <module>.
    kept_line = line_of(src, "kept")
    at_kept = [s for s in prof if s[-1].file.endswith(main_file) and s[-1].line == kept_line]
    assert at_kept and all(s[0].file.endswith(main_file) and s[0].func == "<module>"
                           for s in at_kept), at_kept
    # No launcher frame anywhere.
    for stack in prof:
        for f in stack:
            assert "runpy" not in f.file and "filprofiler" not in f.file, stack


def test_run_module_every_stack_starts_at_a_module(run_fil, tmp_path):
    """Before the module runs, runpy looks it up through the import system (importlib.util,
    the frozen bootstrap, zipimport's path hook): none of those frames is shown, so every stack
    starts at the module's <module>. What an installed meta-path finder (setuptools'
    _distutils_hack, an editable install's) allocates and keeps during the lookup stays under
    its own frames, as it does for any import."""
    make_package(tmp_path)
    proc, report, prof = run_fil("topmod", module=True)
    for stack in prof:
        root = stack[0]
        assert (root.func == NO_PYTHON or (root.file.endswith("topmod.py")
                                           and root.func == "<module>")
                or os.sep + "site-packages" + os.sep in root.file), stack


def test_run_module_errors_like_python_m(run_fil, tmp_path):
    plain = run_plain("no_such_module_xyz", cwd=tmp_path, module=True)
    proc, report, prof = run_fil("no_such_module_xyz", module=True, expect_exit=None)
    assert proc.returncode == plain.returncode != 0
    assert b"No module named no_such_module_xyz" in proc.stderr
    assert b"Traceback" not in proc.stderr


# ---- subprocesses ----

SUBPROCESS_SCRIPT = """\
import subprocess, sys
child = '''
import os
print(os.environ.get("LD_PRELOAD"))
print(any("_filpreload" in line for line in open("/proc/self/maps")))
print(os.environ.get("_FIL_SAVED_LD_PRELOAD"))
'''
out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True)
print(out.stdout, end="")
print(repr(__import__("os").environ.get("LD_PRELOAD")))
"""


def test_subprocess_does_not_inherit_the_preload(run_fil):
    proc, report, prof = run_fil(SUBPROCESS_SCRIPT)
    assert proc.stdout.decode().splitlines() == ["None", "False", "None", "None"]


def test_subprocess_keeps_the_users_own_preload(run_fil, tmp_path):
    user_lib = compile_c(tmp_path, "int user_preload_marker = 42;\n")
    proc, report, prof = run_fil(SUBPROCESS_SCRIPT, env={"LD_PRELOAD": user_lib})
    assert proc.stdout.decode().splitlines() == [user_lib, "False", "None", repr(user_lib)]


# ---- the launcher's own frames ----

def test_first_frame_is_the_scripts_module(run_fil):
    script = textwrap.dedent("""\
        import collections, decimal, json
        def f():
            return [bytearray(100) for _ in range(1000)]  # @small
        x = f()
        y = bytearray(5 << 20)  # @big
        """)
    proc, report, prof = run_fil(script)
    for stack in prof:
        assert stack[0].func == NO_PYTHON or (stack[0].file.endswith("/script.py")
                                              and stack[0].func == "<module>"), stack
        for f in stack:
            assert "runpy" not in f.file and "filprofiler" not in f.file, stack
    assert_close(bytes_under(prof, "script.py:%d (<module>)" % line_of(script, "big")), 5 * MiB)


# ---- programs that cannot be run, help, version ----

def fil(*args, cwd):
    return subprocess.run([sys.executable, "-m", "filprofiler", *args], cwd=str(cwd),
                          capture_output=True, timeout=60)


def assert_one_line_error(proc):
    assert proc.returncode != 0
    err = proc.stderr.decode()
    assert err.startswith("=fil-profile= error:"), err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    assert proc.stdout == b""


def test_relative_output_directory_is_where_the_command_ran(tmp_path):
    """`-o out` names a directory relative to where fil-profile was started, as a user reads
    it: a program that changes directory does not move its reports (the one SIGUSR2 asks for
    while it runs, nor the one at exit)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "moves.py").write_text(textwrap.dedent("""
        import os, signal
        keep = bytearray(8 * 1024 * 1024)
        os.chdir(%r)
        os.kill(os.getpid(), signal.SIGUSR2)
        print(os.getcwd())
    """ % str(elsewhere)))
    proc = fil("-o", "out", "--no-browser", "run", "moves.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == str(elsewhere)   # the program did move
    assert not (elsewhere / "out").exists()
    runs = sorted((tmp_path / "out").iterdir())
    assert len(runs) == 2, runs   # the SIGUSR2 report and the one at exit
    for run in runs:
        assert (run / "index.html").is_file() and (run / "peak-memory.prof").is_file()
    assert "Report: %s" % (runs[-1] / "index.html") in proc.stderr.decode()


def test_run_directories_never_collide(tmp_path, monkeypatch):
    """Jobs run side by side with the same -o can finish in the same millisecond: each report
    gets a directory of its own, found by creating it rather than by looking first (which
    another process can beat). Here the clock stands still and every look says "free", as it
    would for a process that looked just before another created the directory."""
    from filprofiler import _report

    moment = 1_700_000_000.5
    monkeypatch.setattr(_report.time, "time", lambda: moment)
    monkeypatch.setattr(_report.os.path, "exists", lambda p: False)
    base = tmp_path / "reports" / "nested"
    made = [_report.new_run_dir(str(base)) for _ in range(5)]
    assert len(set(made)) == 5
    assert sorted(os.listdir(base)) == sorted(os.path.basename(m) for m in made)
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.localtime(moment))
    assert os.path.basename(made[0]) == stamp + ".500"
    assert os.path.basename(made[1]) == stamp + ".500-2"


def test_run_directories_sort_in_time_order_across_a_second(tmp_path, monkeypatch):
    """The name's seconds and milliseconds are of one moment. Read from the clock separately, a
    second ending between the two reads named a report a whole second early, so that it sorted
    before one written just before it (a SIGUSR2 report and the final one, say)."""
    from filprofiler import _report

    ticks = (1_700_000_000.9995 + i / 1000 for i in range(1000))   # a clock 1 ms on per read
    monkeypatch.setattr(_report.time, "time", lambda: next(ticks))
    base = tmp_path / "reports"
    made = [os.path.basename(_report.new_run_dir(str(base))) for _ in range(2)]
    assert made == sorted(made)
    assert made[0] == time.strftime("%Y-%m-%dT%H-%M-%S", time.localtime(1_700_000_000)) + ".999"
    assert made[1] == time.strftime("%Y-%m-%dT%H-%M-%S", time.localtime(1_700_000_001)) + ".000"


def test_missing_script(tmp_path):
    proc = fil("-o", "out", "--no-browser", "run", "does_not_exist.py", cwd=tmp_path)
    assert_one_line_error(proc)
    assert "does_not_exist.py" in proc.stderr.decode()
    assert not (tmp_path / "out").exists()


def test_directory_without_main(tmp_path):
    (tmp_path / "adir").mkdir()
    proc = fil("-o", "out", "--no-browser", "run", "adir", cwd=tmp_path)
    assert_one_line_error(proc)


def test_directory_with_main_runs_like_python(run_fil, tmp_path):
    d = tmp_path / "app"
    d.mkdir()
    (d / "__main__.py").write_text(IDENTITY_SCRIPT)
    plain = subprocess.run([sys.executable, "app", "a"], cwd=str(tmp_path), capture_output=True)
    proc, report, prof = run_fil("app", "a")
    assert proc.stdout.decode() == plain.stdout.decode()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root can read a file without read permission")
def test_unreadable_script(tmp_path):
    path = write_script(tmp_path, "print('hi')\n", "secret.py")
    os.chmod(path, 0)
    proc = fil("-o", "out", "--no-browser", "run", "secret.py", cwd=tmp_path)
    assert_one_line_error(proc)


def test_no_arguments_prints_help(tmp_path):
    proc = fil(cwd=tmp_path)
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert "usage: fil-profile" in out and "run" in out and "--no-browser" in out


def test_help_and_version(tmp_path):
    from filprofiler import __version__

    proc = fil("--help", cwd=tmp_path)
    assert proc.returncode == 0 and b"usage: fil-profile" in proc.stdout
    proc = fil("--version", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.decode().strip() == "fil-profile " + __version__
    console = os.path.join(os.path.dirname(sys.executable), "fil-profile")
    if os.path.exists(console):
        same = subprocess.run([console, "--version"], capture_output=True)
        assert same.stdout == proc.stdout


def test_summary_on_stderr(run_fil):
    script = "big = bytearray(20 << 20)  # @big\n"
    proc, report, prof = run_fil(script)
    lines = fil_lines(proc.stderr)
    assert any(l.startswith("=fil-profile= Peak tracked memory: 20.") for l in lines), lines
    assert any(os.path.join(report, "index.html") in l for l in lines), lines
    assert any("script.py:1 (<module>)" in l for l in lines), lines
    assert ":" not in os.path.basename(report)


@pytest.mark.parametrize("replacement", ["io.StringIO()", "Sink()"])
def test_summary_reaches_stderr_when_the_program_replaced_sys_stderr(run_fil, replacement):
    """A program that captures sys.stderr (a log handler, a progress bar, an object with no
    flush()) still leaves the summary on the process's standard error, after its own output."""
    script = textwrap.dedent("""
        import io, sys
        class Sink:
            def write(self, s):
                return len(s)
        big = bytearray(20 << 20)  # @big
        sys.stderr.write("the program's last words\\n")
        sys.stderr = %s
    """ % replacement)
    proc, report, prof = run_fil(script, expect_exit=None)
    err = proc.stderr.decode()
    assert err.startswith("the program's last words\n"), err
    lines = fil_lines(proc.stderr)
    assert any(l.startswith("=fil-profile= Peak tracked memory: 20.") for l in lines), err
    assert any(os.path.join(report, "index.html") in l for l in lines), err
    # Exactly as without the profiler (plain python exits 120 when a replaced stream cannot be
    # flushed at shutdown).
    plain = run_plain(script, cwd=run_fil.tmp_path)
    assert proc.returncode == plain.returncode, (proc.returncode, plain.returncode)


# ---- the launcher's own option parsing ----

PLAIN_CASES = [
    [], ["--no-browser"], ["-o", "out"], ["--output", "a b"], ["-o", ""], ["-o", "x", "-o", "y"],
    ["--oom-threshold", "12"], ["--oom-threshold", "0"], ["--oom-threshold", "007"],
    ["--disable-oom-detection", "--limit-thread-pools", "--no-browser", "-o", "d",
     "--oom-threshold", "64", "--no-browser"],
    # Left to argparse: it takes some of these, rejects the others.
    ["--oom-threshold", "-5"], ["--oom-threshold", "\u0661\u0662"], ["--oom-threshold", "1_000"],
    ["--oom-threshold", " 5"], ["--oom-threshold", "9" * 30], ["-o", "-x"], ["-o", "-"], ["-o"],
    ["--no-b"], ["--out", "x"], ["--output=x"], ["-ox"], ["--", "x"], ["--nope"], ["x"],
]


def test_plain_options_parse_as_argparse_does():
    """The launcher parses the usual options without argparse; whenever it does, the result is
    argparse's, and it leaves everything else to argparse."""
    from filprofiler import _cli

    parser = _cli.top_parser()
    handled = 0
    for before in PLAIN_CASES:
        fast = _cli.parse_plain_options(before)
        if fast is None:
            continue
        handled += 1
        expected = vars(parser.parse_args(before))
        assert {k: getattr(fast, k) for k in expected} == expected, before
    assert handled == 10


def test_run_does_not_import_argparse(tmp_path):
    """`fil-profile -o DIR --no-browser run ...` starts the program without importing argparse,
    importlib.util or re (and what they import): they were most of the launcher's own time.
    Through the installed command when there is one (bin/fil-profile: an entry point's wrapper
    would import re), else as it runs the launcher (`python -m` would import importlib.util)."""
    write_script(tmp_path, "print('ran')\n")
    console = os.path.join(os.path.dirname(sys.executable), "fil-profile")
    launcher = [console] if os.path.exists(console) else [
        "-c", "import sys; from filprofiler._cli import main; sys.exit(main())"]
    proc = subprocess.run([sys.executable, "-X", "importtime", *launcher, "-o", "out",
                           "--no-browser", "run", "script.py"], cwd=str(tmp_path),
                          capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == b"ran\n", proc.stderr
    imported = [l.rsplit("|", 1)[-1].strip() for l in proc.stderr.decode().splitlines()
                if l.startswith("import time:")]
    assert "filprofiler._cli" in imported
    for heavy in ("argparse", "importlib.util", "re"):
        assert heavy not in imported, imported
