"""End-to-end: a program behaves the same under `fil-profile run` as under plain python.

Each script in equivalence_scripts/ runs twice from the same working directory (so absolute
paths agree): under plain python, then under `python -m filprofiler -o OUT --no-browser run`,
with the same arguments, stdin and environment. The test asserts the same stdout bytes, the
same stderr apart from the profiler's own `=fil-profile= ` lines, the same exit status, and the
same files left in the working directory, byte for byte.
"""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import RUN_TIMEOUT, clean_env, compile_c, program_stderr

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "equivalence_scripts")

STDIN = b"first line\n" + bytes(range(256)) + b"\n" + b"lots of input " * 50_000

# id: (script, args, stdin, expected exit status)
CASES = {
    "stdout-text": ("stdout_text.py", [], None, 0),
    "stdout-binary": ("stdout_binary.py", [], None, 0),
    "exit-normal": ("exit_codes.py", ["normal"], None, 0),
    "exit-3": ("exit_codes.py", ["exit3"], None, 3),
    "exit-message": ("exit_codes.py", ["message"], None, 1),
    "exit-none": ("exit_codes.py", ["none"], None, 0),
    "exit-exception": ("exit_codes.py", ["exception"], None, 1),
    "exit-in-finally": ("exit_codes.py", ["finally"], None, 7),
    "files-written": ("files_written.py", [], None, 0),
    "identity": ("identity.py", ["a b", "--flag", "ü", "", "-m", "x;y<z>"], None, 0),
    "stdin": ("stdin_echo.py", [], STDIN, 0),
    "allocations": ("allocations.py", ["300000"], None, 0),
}


def snapshot(directory):
    """{relative path: bytes} of every file under directory, caches aside."""
    files = {}
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            path = os.path.join(root, name)
            files[os.path.relpath(path, directory)] = open(path, "rb").read()
    return files


def reset(directory, script):
    """Leave only the script in directory."""
    for name in os.listdir(directory):
        if name != script:
            path = os.path.join(directory, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def run_both(tmp_path, script, args, stdin, env=None):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(os.path.join(SCRIPTS, script), str(work / script))
    run = dict(cwd=str(work), env=clean_env(env), capture_output=True, timeout=RUN_TIMEOUT,
               input=stdin if stdin is not None else b"")
    plain = subprocess.run([sys.executable, script, *args], **run)
    plain_files = snapshot(str(work))
    reset(str(work), script)
    out = str(tmp_path / "fil-out")
    fil = subprocess.run([sys.executable, "-m", "filprofiler", "-o", out, "--no-browser", "run",
                          script, *args], **run)
    fil_files = snapshot(str(work))
    return plain, plain_files, fil, fil_files, out


def assert_same(plain, plain_files, fil, fil_files):
    err = fil.stderr.decode(errors="replace")
    assert fil.returncode == plain.returncode, (fil.returncode, plain.returncode, err)
    if fil.stdout != plain.stdout:
        a, b = plain.stdout, fil.stdout
        i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
        raise AssertionError("stdout differs at byte %d: plain %r, fil %r\nstderr:\n%s"
                             % (i, a[max(0, i - 60):i + 60], b[max(0, i - 60):i + 60], err))
    assert program_stderr(fil.stderr) == plain.stderr, (
        "stderr differs\nplain:\n%s\nfil:\n%s" % (plain.stderr.decode(errors="replace"), err))
    assert sorted(fil_files) == sorted(plain_files)
    for name in plain_files:
        assert fil_files[name] == plain_files[name], name


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_as_plain_python(tmp_path, case):
    script, args, stdin, expected = CASES[case]
    plain, plain_files, fil, fil_files, out = run_both(tmp_path, script, args, stdin)
    assert plain.returncode == expected, plain.stderr.decode(errors="replace")
    assert_same(plain, plain_files, fil, fil_files)
    # And the profiler did profile: one complete report.
    runs = os.listdir(out)
    assert len(runs) == 1, runs
    assert os.path.exists(os.path.join(out, runs[0], "index.html"))


def test_users_own_ld_preload_is_what_the_program_sees(tmp_path):
    """With the user's own LD_PRELOAD set, the program sees exactly that value (and the rest of
    the environment unchanged), as under plain python."""
    lib = compile_c(tmp_path, "int users_own_preload_marker(void) { return 42; }\n")
    plain, plain_files, fil, fil_files, out = run_both(
        tmp_path, "identity.py", ["x"], None, env={"LD_PRELOAD": lib})
    assert ("LD_PRELOAD %s\n" % lib).encode() in plain.stdout
    assert_same(plain, plain_files, fil, fil_files)
