"""End-to-end: bad input and hostile content.

Programs that cannot run (missing, a directory, a syntax error) fail as under plain python, with
no profiler traceback. An output directory that cannot be written or does not exist, and a disk
that fills up while the report is written (RLIMIT_FSIZE), leave the program's own exit status
and output intact, print one clear message, and never leave a partial report behind. A program
whose file name, source lines and function names are hostile (markup, quotes, `]]>`,
`</script>`, `;`, tabs, newlines, very long lines, bytes that are not UTF-8) gives reports that
are well-formed XML/HTML with no injected script, and a .prof whose every line still parses.
"""
import os
import re
import resource
import signal
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

from conftest import (MiB, RUN_TIMEOUT, assert_close, bytes_at, clean_env, describe, fil_lines,
                      parse_prof, program_stderr, run_plain, total, write_script)

REPORT_FILES = ("peak-memory.prof", "peak-memory.svg", "peak-memory-reversed.svg", "index.html")


def fil(*args, cwd, env=None, stdin=None, preexec_fn=None):
    return subprocess.run([sys.executable, "-m", "filprofiler", *args], cwd=str(cwd),
                          env=clean_env(env), capture_output=True, timeout=RUN_TIMEOUT,
                          input=stdin, preexec_fn=preexec_fn)


def runs_in(out):
    return sorted(os.listdir(str(out))) if os.path.isdir(str(out)) else []


def assert_no_profiler_traceback(stderr):
    text = stderr.decode(errors="replace")
    assert "filprofiler" not in text.replace("=fil-profile=", ""), text
    assert "_run.py" not in text and "runpy" not in text, text


# ---- programs that cannot run ----

def test_missing_script_fails_like_plain_python(tmp_path):
    proc = fil("-o", "out", "--no-browser", "run", "nope.py", cwd=tmp_path)
    plain = subprocess.run([sys.executable, "nope.py"], cwd=str(tmp_path), capture_output=True)
    assert proc.returncode == plain.returncode == 2
    assert "nope.py" in proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()
    assert proc.stdout == b""
    assert runs_in(tmp_path / "out") == []


def test_directory_instead_of_a_script(tmp_path):
    (tmp_path / "pkgdir").mkdir()
    proc = fil("-o", "out", "--no-browser", "run", "pkgdir", cwd=tmp_path)
    assert proc.returncode != 0
    lines = fil_lines(proc.stderr)
    assert len(lines) == 1 and "pkgdir" in lines[0] and "__main__" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr.decode()
    assert runs_in(tmp_path / "out") == []


@pytest.mark.parametrize("where", ["script", "imported module"])
def test_syntax_error_like_plain_python(tmp_path, where):
    bad = "x = 1\ndef f(:\n    pass\n"
    if where == "script":
        write_script(tmp_path, bad)
    else:
        write_script(tmp_path, bad, "broken.py")
        write_script(tmp_path, "print('before', flush=True)\nimport broken\n")
    proc = fil("-o", "out", "--no-browser", "run", "script.py", cwd=tmp_path)
    plain = run_plain("script.py", cwd=tmp_path)
    assert proc.returncode == plain.returncode == 1
    assert proc.stdout == plain.stdout
    assert program_stderr(proc.stderr) == plain.stderr, proc.stderr.decode()
    assert b"SyntaxError" in plain.stderr
    assert_no_profiler_traceback(program_stderr(proc.stderr))
    # A script that never started leaves no (empty) report; one that ran until an import
    # failed has its report.
    assert len(runs_in(tmp_path / "out")) == (0 if where == "script" else 1)


# ---- where the report goes ----

PROGRAM = textwrap.dedent("""\
    import sys
    kept = bytearray(2 << 20)
    print("program output", flush=True)
    sys.exit(3)
    """)


def test_output_below_a_regular_file(tmp_path):
    """-o names a path that cannot be a directory (even for root): the program still runs
    to its own exit status and output; one clear message; no traceback."""
    write_script(tmp_path, PROGRAM)
    (tmp_path / "afile").write_text("not a directory")
    proc = fil("-o", "afile/sub", "--no-browser", "run", "script.py", cwd=tmp_path)
    assert proc.returncode == 3
    assert proc.stdout == b"program output\n"
    lines = fil_lines(proc.stderr)
    assert len(lines) == 1 and "error" in lines[0] and "afile/sub" in lines[0], lines
    assert "Traceback" not in proc.stderr.decode()
    assert (tmp_path / "afile").read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0555 directory anyway")
def test_output_in_a_read_only_directory(tmp_path):
    write_script(tmp_path, PROGRAM)
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(str(ro), 0o555)
    try:
        proc = fil("-o", "ro/out", "--no-browser", "run", "script.py", cwd=tmp_path)
    finally:
        os.chmod(str(ro), 0o755)
    assert proc.returncode == 3 and proc.stdout == b"program output\n"
    lines = fil_lines(proc.stderr)
    assert len(lines) == 1 and "error" in lines[0], lines
    assert os.listdir(str(ro)) == []


def test_output_directory_is_created(tmp_path):
    write_script(tmp_path, PROGRAM)
    proc = fil("-o", "new/deeper/reports", "--no-browser", "run", "script.py", cwd=tmp_path)
    assert proc.returncode == 3 and proc.stdout == b"program output\n"
    runs = runs_in(tmp_path / "new/deeper/reports")
    assert len(runs) == 1
    for name in REPORT_FILES:
        assert os.path.getsize(str(tmp_path / "new/deeper/reports" / runs[0] / name)) > 0


# ---- the disk fills up while the report is written ----

# Many distinct stacks alive at the peak, so the .prof and the flamegraphs are tens of KiB.
BIG_REPORT = textwrap.dedent("""\
    import signal, sys
    if "default-sigxfsz" in sys.argv:
        # Undo CPython's SIG_IGN: now exceeding RLIMIT_FSIZE kills the writer.
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    keep = []
    src = "\\n".join("def f%d():\\n    keep.append(bytearray(20000 + %d))\\nf%d()" % (i, i, i)
                     for i in range(400))
    exec(compile(src, "generated.py", "exec"))
    print("program output", flush=True)
    sys.exit(4)
    """)


def _limit_file_size(limit):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_keeps_the_exit_status_and_leaves_no_partial_report(tmp_path):
    """Report files of known sizes (from a run without a limit); then, with RLIMIT_FSIZE just
    below each file's size, so that writing that file fails partway, and with the program
    having restored SIGXFSZ's default action (death): the program's output and exit status
    are its own, one clear message, and no run directory is left."""
    write_script(tmp_path, BIG_REPORT)
    proc = fil("-o", "full", "--no-browser", "run", "script.py", cwd=tmp_path)
    assert proc.returncode == 4
    [run] = runs_in(tmp_path / "full")
    sizes = {name: os.path.getsize(str(tmp_path / "full" / run / name)) for name in REPORT_FILES}
    assert min(sizes.values()) > 4096, sizes
    limits = sorted({1024} | {s - 1 for s in sizes.values()})
    for i, limit in enumerate(limits):
        for extra in ([], ["default-sigxfsz"]):
            out = tmp_path / ("limited-%d-%d" % (i, len(extra)))
            proc = fil("-o", str(out), "--no-browser", "run", "script.py", *extra, cwd=tmp_path,
                       preexec_fn=_limit_file_size(limit))
            what = "limit %d %s: %s" % (limit, extra, proc.stderr.decode(errors="replace"))
            assert proc.returncode == 4, what
            assert proc.stdout == b"program output\n", what
            if limit >= max(sizes.values()):
                continue
            assert runs_in(out) == [], what
            lines = fil_lines(proc.stderr)
            assert len(lines) == 1, what
            assert "error" in lines[0] and ("full" in lines[0] or "limit" in lines[0]), what
            assert "Traceback" not in proc.stderr.decode(), what
    # With room for everything, the report is whole.
    out = tmp_path / "roomy"
    proc = fil("-o", str(out), "--no-browser", "run", "script.py", "default-sigxfsz",
               cwd=tmp_path, preexec_fn=_limit_file_size(max(sizes.values()) + 1))
    assert proc.returncode == 4
    [run] = runs_in(out)
    assert total(parse_prof(str(out / run / "peak-memory.prof"))) > 8 * MiB


# ---- hostile content, end to end ----

HOSTILE_NAME = b'we<ir>d &"\';\t ]]> <script> \xff\xfe name.py'
HOSTILE_SOURCE = (b"""# -*- coding: latin-1 -*-
# caf\xe9 \xff\xfe </script><script>alert("comment")</script> ]]> & < > "' ; \t tab
keep = []
def f_\xe9():
    keep.append(bytearray(3 << 20)) ; s = "</script><script>alert(1)</script> ]]> <&>\\t\\"'"
f_\xe9()
def hostile():
    keep.append(bytearray(2 << 20))  # """ + b"<&>\t" * 3000 + b"""
hostile.__code__ = hostile.__code__.replace(
    co_name="</script><script>alert(2)</script>",
    co_qualname="q</title>]]>&amp;\\"'; 12345\\n[No Python stack] 99\\t\\x01\\udcff")
hostile()
code = compile("keep.append(bytearray(1 << 20))\\n",
               "fake\\nfile;with]]></script><script>alert(3)</script>\\udcfe.py", "exec")
exec(code)
keep.append([bytearray(4096) for _ in range(10)])
keep.append(list(bytearray(8192) for _ in range(5)))
lam = lambda: keep.append(bytearray(16384)); lam()
import hostile_lines
hostile_lines.g()
print("hostile done")
""")

# A module with an ordinary name, so the report can show its hostile source lines.
HOSTILE_LINES = (b"""# -*- coding: latin-1 -*-
keep = []
def g():
    keep.append(bytearray(5 << 20)) ; s = "</script><script>alert(5)</script> ]]> \xff\xe9 <&>\t\\"'" # """
                 + b"y" * 3000 + b"\n")

PROF_LINE = re.compile(r"^(?P<stack>.+) (?P<bytes>[0-9]+)$")


def _check_svg(path):
    """Parses as XML; at most one <script>, holding none of the program's text, and no event
    handler attribute or javascript: link carrying it. Returns (scripts, element names)."""
    tree = ET.parse(path)
    scripts = [e for e in tree.iter() if e.tag.rsplit("}", 1)[-1] == "script"]
    assert len(scripts) <= 1, path
    for e in tree.iter():
        tag = e.tag.rsplit("}", 1)[-1]
        if tag in ("script", "style"):
            assert "alert(" not in (e.text or ""), path
        for key, value in e.attrib.items():
            assert not key.rsplit("}", 1)[-1].lower().startswith("on") or "alert(" not in value, (key, value)
            assert not value.strip().lower().startswith("javascript:"), (key, value)
    return len(scripts), {e.tag for e in tree.iter()}


def _check_html(path):
    """Parses as HTML5 with no parse errors (html5lib, strict); no script element or event
    handler attribute carries the program's text. Returns (scripts, element names)."""
    html5lib = pytest.importorskip("html5lib")
    with open(path, "rb") as f:
        data = f.read()
    doc = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(data)
    scripts = 0
    for e in doc.iter():
        if e.tag in ("script", "style"):
            scripts += e.tag == "script"
            assert "alert(" not in (e.text or ""), path
        for key, value in e.attrib.items():
            assert not key.lower().startswith("on") or "alert(" not in value, (key, value)
            assert not value.strip().lower().startswith("javascript:"), (key, value)
    return scripts, {e.tag for e in doc.iter() if isinstance(e.tag, str)}


def test_hostile_names_and_source_give_valid_reports(tmp_path):
    try:
        with open(os.path.join(os.fsencode(str(tmp_path)), HOSTILE_NAME), "wb") as f:
            f.write(HOSTILE_SOURCE)
        name = HOSTILE_NAME
    except OSError:  # a file system that refuses such names: keep the rest of the test
        name = b"hostile_name.py"
        with open(os.path.join(os.fsencode(str(tmp_path)), name), "wb") as f:
            f.write(HOSTILE_SOURCE)
    (tmp_path / "hostile_lines.py").write_bytes(HOSTILE_LINES)
    write_script(tmp_path, "kept = bytearray(1 << 20)\n", "harmless.py")
    proc = fil("-o", "out", "--no-browser", "run", os.fsdecode(name), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stdout == b"hostile done\n"
    [run] = runs_in(tmp_path / "out")
    report = tmp_path / "out" / run

    # Every .prof line is `FRAME;FRAME;... BYTES`, valid UTF-8, frames `FILE:LINE (FUNC)`.
    with open(str(report / "peak-memory.prof"), "rb") as f:
        raw_lines = f.read().split(b"\n")
    assert raw_lines[-1] == b""
    for raw in raw_lines[:-1]:
        m = PROF_LINE.match(raw.decode("utf-8"))
        assert m, raw
    prof = parse_prof(str(report / "peak-memory.prof"))
    assert_close(bytes_at(prof, lambda f: f.func.startswith("f_")), 3 * MiB, what=describe(prof))
    assert_close(bytes_at(prof, lambda f: "12345" in f.func), 2 * MiB, what=describe(prof))
    assert_close(bytes_at(prof, lambda f: "alert(3)" in f.file), 1 * MiB, what=describe(prof))
    assert_close(bytes_at(prof, "hostile_lines.py:4 (g)"), 5 * MiB, what=describe(prof))
    # The hostile source line is shown (escaped) in the page.
    assert b"alert(5)" in (report / "index.html").read_bytes()

    # As many scripts as, and no kind of element beyond, the report of a harmless program.
    proc = fil("-o", "calm", "--no-browser", "run", "harmless.py", cwd=tmp_path)
    [calm] = runs_in(tmp_path / "calm")
    calm = tmp_path / "calm" / calm
    checks = [(_check_svg, "peak-memory.svg"), (_check_svg, "peak-memory-reversed.svg"),
              (_check_html, "index.html")]
    for check, name in checks:
        scripts, tags = check(str(report / name))
        calm_scripts, calm_tags = check(str(calm / name))
        assert scripts == calm_scripts, name
        assert tags <= calm_tags, (name, tags - calm_tags)
    for name in REPORT_FILES[1:]:
        text = (report / name).read_bytes()
        text.decode("utf-8")  # valid UTF-8 throughout
        assert b"<script>alert" not in text and b"</script><script>" not in text, name
        assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]", text), name
