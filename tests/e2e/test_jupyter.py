"""End-to-end: the "Python 3 with Fil" kernel and the %%filprofile magic, through real Jupyter.

Notebooks are built here with nbformat and executed headless by `jupyter nbconvert --execute`,
which starts the kernel from its installed kernelspec exactly as Jupyter Lab or Notebook would.
Every Jupyter command runs with its own empty user directories (JUPYTER_DATA_DIR, IPYTHONDIR...),
so a kernel a developer installed with --user cannot stand in for the one the package installs.

Jupyter is a test requirement (ipykernel, jupyter_client, nbconvert, nbformat, and numpy for the
C allocations): a missing one fails these tests with its name, it never skips them.
"""
import base64
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from conftest import MiB, assert_close, bytes_at, bytes_under, clean_env, describe, parse_prof

KERNEL = "filprofile"
DISPLAY_NAME = "Python 3 with Fil"
JUPYTER_TIMEOUT = 300  # seconds for one notebook, kernel start included


def require(*modules):
    missing = []
    for m in modules:
        try:
            __import__(m)
        except ImportError:
            missing.append(m)
    if missing:
        pytest.fail("these tests need %s installed in the test environment (%s); "
                    "install them with pip (see requirements-test.txt)"
                    % (", ".join(missing), sys.executable), pytrace=False)


@pytest.fixture
def jupyter_env(tmp_path):
    require("ipykernel", "jupyter_client", "nbconvert", "nbformat", "numpy")
    home = tmp_path / "jupyter-home"
    dirs = {"JUPYTER_DATA_DIR": home / "data", "JUPYTER_CONFIG_DIR": home / "config",
            "JUPYTER_RUNTIME_DIR": home / "runtime", "IPYTHONDIR": home / "ipython"}
    for d in dirs.values():
        d.mkdir(parents=True)
    env = {k: str(v) for k, v in dirs.items()}
    env.update({"JUPYTER_PATH": None, "JUPYTER_PLATFORM_DIRS": None,
                "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    return clean_env(env)


def jupyter(args, env, cwd, timeout=JUPYTER_TIMEOUT):
    proc = subprocess.run([sys.executable, "-m", "jupyter", *args], env=env, cwd=str(cwd),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, ("jupyter %s failed (%d):\n%s\n%s"
                                  % (" ".join(args), proc.returncode, proc.stdout, proc.stderr))
    return proc


def execute_notebook(directory, cells, env, kernel=KERNEL):
    """Run the code cells in a new notebook with `kernel`; the executed cells (dicts)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(c).strip("\n")) for c in cells]
    src = os.path.join(str(directory), "test.ipynb")
    nbformat.write(nb, src)
    jupyter(["nbconvert", "--to", "notebook", "--execute", "--allow-errors",
             "--ExecutePreprocessor.kernel_name=" + kernel,
             "--ExecutePreprocessor.timeout=%d" % JUPYTER_TIMEOUT,
             "--output", "executed.ipynb", src], env, directory)
    with open(os.path.join(str(directory), "executed.ipynb"), encoding="utf-8") as f:
        return json.load(f)["cells"]


def text(value):
    return "".join(value) if isinstance(value, list) else value


def stream(cell, name="stdout"):
    return "".join(text(o["text"]) for o in cell["outputs"]
                   if o["output_type"] == "stream" and o["name"] == name)


def errors(cell):
    return [o for o in cell["outputs"] if o["output_type"] == "error"]


def cell_report(cell, directory):
    """The inline report of a profiled cell: (html, svg text, peak MiB shown, report dir)."""
    reports = [text(o["data"]["text/html"]) for o in cell["outputs"]
               if o["output_type"] == "display_data"
               and "fil-profile-report" in text(o["data"].get("text/html", ""))]
    assert len(reports) == 1, "expected one inline report, outputs: %s" % (
        json.dumps(cell["outputs"])[:3000])
    html = reports[0]
    img = re.search(r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', html)
    assert img, "the report shows no flamegraph image: %s" % html[:2000]
    svg = base64.b64decode(img.group(1)).decode("utf-8")
    peak = re.search(r"Peak tracked memory usage of this cell: ([0-9.]+) MiB", html)
    assert peak, "the report does not show the peak: %s" % html[:2000]
    link = re.search(r'<a href="([^"]+/index\.html)"', html)
    assert link, "no link to the full report: %s" % html[:2000]
    index = os.path.join(str(directory), link.group(1))  # relative to the notebook's directory
    assert os.path.isfile(index), "the link points to a missing file: %s" % index
    return html, svg, float(peak.group(1)), os.path.dirname(index)


PROFILED_CELL = """\
    %%filprofile
    small = list(range(1000))
    arr = np.ones(50 * MB // 8)
    import colorsys
    print("cell output", arr.nbytes)
    counter += 1
    arr.nbytes * 2
    """


def test_profiled_cell_shows_its_flamegraph_and_keeps_its_variables(tmp_path, jupyter_env):
    cells = execute_notebook(tmp_path, [
        "%load_ext filprofiler",
        "import numpy as np\nMB = 1024 * 1024\ncounter = 0",
        PROFILED_CELL,
        "print('later', arr.nbytes, counter, colorsys.__name__, len(small))",
        PROFILED_CELL,   # the same cell again, as when it is run twice
        """\
        import os
        from filprofiler import _filpreload
        print('preloaded', _filpreload.preloaded(), 'LD_PRELOAD', os.environ.get('LD_PRELOAD'))
        """,
    ], jupyter_env)
    load, _, first, later, second, env_cell = cells
    assert not errors(load) and not stream(load, "stderr"), load["outputs"]

    report_dirs = []
    for cell in (first, second):
        assert not errors(cell), errors(cell)
        # The cell's own output and value, as without the magic.
        assert stream(cell) == "cell output 52428800\n"
        results = [o for o in cell["outputs"] if o["output_type"] == "execute_result"]
        assert [text(r["data"]["text/plain"]) for r in results] == ["104857600"]
        html, svg, peak_mib, report_dir = cell_report(cell, tmp_path)
        report_dirs.append(report_dir)
        # The flamegraph is the cell's: its title has the peak, its boxes the cell's line 3
        # (line 1 being %%filprofile) with that line's source.
        assert re.search(r"<title>Peak Tracked Memory Usage \([0-9.]+ MiB\)</title>", svg)
        assert "cell.py:3" in svg and "arr = np.ones(50 * MB // 8)" in svg
        # 50 MiB array; the kernel's own threads may add a little while the cell runs.
        assert 50 <= peak_mib < 54, html[:500]
        prof = parse_prof(os.path.join(report_dir, "peak-memory.prof"))
        # Stacks start at the cell's code: the magic and IPython frames are cut away.
        assert_close(bytes_under(prof, "cell.py:3 (<module>)"), 50 * MiB, rel=0.02,
                     what="the cell's line 3\n" + describe(prof))
        assert bytes_at(prof, "cell.py:3") == bytes_under(prof, "cell.py:3 (<module>)")
        with open(os.path.join(report_dir, "cell.py"), encoding="utf-8") as f:
            assert f.read().splitlines()[2] == "arr = np.ones(50 * MB // 8)"
        for name in ("index.html", "peak-memory.svg", "peak-memory-reversed.svg"):
            assert os.path.getsize(os.path.join(report_dir, name)) > 0
    assert report_dirs[0] != report_dirs[1], "each run of a cell gets its own report directory"
    assert os.path.dirname(report_dirs[0]) == os.path.join(str(tmp_path), "fil-result")

    # Names the profiled cell defined, changed and imported stay in the notebook.
    assert not errors(later), errors(later)
    assert stream(later) == "later 52428800 1 colorsys 1000\n"
    # The kernel runs preloaded, and gives the notebook's subprocesses the user's environment.
    assert stream(env_cell) == "preloaded True LD_PRELOAD None\n"


def test_cell_that_raises_shows_its_report_then_the_error(tmp_path, jupyter_env):
    cells = execute_notebook(tmp_path, [
        "%load_ext filprofiler",
        """\
        %%filprofile
        kept = bytearray(30 * 1024 * 1024)
        raise ValueError("boom from the cell")
        """,
        "print('after', len(kept))",
        "%%filprofile\nx = (",
    ], jupyter_env)
    _, failing, after, syntax = cells
    kinds = [o["output_type"] for o in failing["outputs"]]
    assert kinds == ["display_data", "error"], failing["outputs"]
    _, svg, peak_mib, report_dir = cell_report(failing, tmp_path)
    assert "cell.py:2" in svg and 30 <= peak_mib < 34
    prof = parse_prof(os.path.join(report_dir, "peak-memory.prof"))
    assert_close(bytes_under(prof, "cell.py:2 (<module>)"), 30 * MiB, rel=0.02,
                 what="the cell's line 2\n" + describe(prof))
    (error,) = errors(failing)
    assert error["ename"] == "ValueError" and error["evalue"] == "boom from the cell"
    # A normal traceback that ends at the cell's line 3.
    plain = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["traceback"]))
    assert re.search(r"cell\.py:3\b", plain), plain
    assert "_run_profiled" not in plain, plain
    # As with any cell, what ran before the exception stays.
    assert stream(after) == "after 31457280\n"
    # A cell that does not compile runs nothing and leaves no report behind.
    assert [e["ename"] for e in errors(syntax)] == ["SyntaxError"], syntax["outputs"]
    assert len(os.listdir(os.path.dirname(report_dir))) == 1


def test_load_ext_outside_the_fil_kernel_names_the_kernel(tmp_path, jupyter_env):
    cells = execute_notebook(tmp_path, ["%load_ext filprofiler", "print('still alive')"],
                             jupyter_env, kernel="python3")
    load, alive = cells
    message = stream(load, "stderr")
    assert "UsageError" in message and '"%s" kernel' % DISPLAY_NAME in message, load["outputs"]
    assert "Traceback" not in json.dumps(load["outputs"]) and not errors(load)
    assert stream(alive) == "still alive\n"


def test_kernelspec_is_installed_with_the_package(tmp_path, jupyter_env):
    require("jupyter_client")
    listing = json.loads(jupyter(["kernelspec", "list", "--json"], jupyter_env, tmp_path).stdout)
    spec = listing["kernelspecs"].get(KERNEL)
    assert spec, "kernel %r not found: %s" % (KERNEL, listing)
    assert spec["spec"]["display_name"] == DISPLAY_NAME
    assert os.path.realpath(spec["resource_dir"]) == os.path.realpath(
        os.path.join(sys.prefix, "share", "jupyter", "kernels", KERNEL))
    assert spec["spec"]["argv"] == ["python", "-m", "filprofiler", "python", "-m",
                                    "filprofiler._kernel", "-f", "{connection_file}"]


def test_kernelspec_found_after_plain_pip_install_in_a_fresh_venv(tmp_path, jupyter_env):
    """The only test that builds the package again: `pip install` from the source tree into a
    new virtualenv, then that environment's own `jupyter kernelspec list`."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    # A copy of the tree, so the build leaves nothing in the developer's checkout.
    import shutil

    src = tmp_path / "src"
    shutil.copytree(root, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", "fil-result", "*.so"))
    proc = subprocess.run([py, "-m", "pip", "install", "-q", str(src), "jupyter_client"],
                          env=jupyter_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run([py, "-m", "jupyter", "kernelspec", "list", "--json"],
                          env=jupyter_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    spec = json.loads(proc.stdout)["kernelspecs"].get(KERNEL)
    assert spec and spec["spec"]["display_name"] == DISPLAY_NAME, proc.stdout
    assert spec["resource_dir"].startswith(str(venv)), spec


def test_install_kernel_for_the_user_and_into_a_prefix(tmp_path, jupyter_env):
    prefix = tmp_path / "prefix"
    for where in (["--user"], ["--prefix", str(prefix)]):
        proc = subprocess.run([sys.executable, "-m", "filprofiler", "install-kernel", *where],
                              env=jupyter_env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "Installed the \"%s\" kernel" % DISPLAY_NAME in proc.stderr
    installed = [os.path.join(jupyter_env["JUPYTER_DATA_DIR"], "kernels", KERNEL),
                 os.path.join(str(prefix), "share", "jupyter", "kernels", KERNEL)]
    for d in installed:
        with open(os.path.join(d, "kernel.json"), encoding="utf-8") as f:
            spec = json.load(f)
        # The interpreter is spelled out, for a Jupyter running from another environment.
        assert spec["argv"][0] == sys.executable
        assert spec["argv"][1:4] == ["-m", "filprofiler", "python"]
        assert spec["display_name"] == DISPLAY_NAME
    # The user's kernel starts: run a profiled cell with it. (In a virtualenv Jupyter prefers
    # the environment's kernels to the user's unless told otherwise.)
    env = dict(jupyter_env, JUPYTER_PREFER_ENV_PATH="0")
    listing = json.loads(jupyter(["kernelspec", "list", "--json"], env, tmp_path).stdout)
    assert os.path.realpath(listing["kernelspecs"][KERNEL]["resource_dir"]) == \
        os.path.realpath(installed[0])
    # With the magic's options: its own output directory, and thread pools limited for the
    # cell only.
    cells = execute_notebook(tmp_path, [
        "%load_ext filprofiler\nimport os",
        """\
        %%filprofile --limit-thread-pools -o custom-reports
        x = bytearray(20 * 1024 * 1024)
        print("during", os.environ.get("OMP_NUM_THREADS"))
        """,
        "print('after', os.environ.get('OMP_NUM_THREADS'))",
    ], env)
    _, svg, peak_mib, report_dir = cell_report(cells[1], tmp_path)
    assert "cell.py:2" in svg and 20 <= peak_mib < 24
    assert os.path.dirname(report_dir) == os.path.join(str(tmp_path), "custom-reports")
    assert stream(cells[1]) == "during 1\n" and stream(cells[2]) == "after None\n"
