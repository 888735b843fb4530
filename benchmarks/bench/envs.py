"""One virtualenv per tool, created once and cached under benchmarks/.venvs/.

Each tool gets its own environment so that one profiler's packages (and their pinned numpy, say) cannot change
another's runs: `plain` has python + numpy + pandas, and `ours`, `fil`, `memray` each add one package. A tool that
fails to install is reported as unavailable with the reason, never raised: the table then says so.

The cache is keyed by a stamp file holding what was installed. `ours` is this repository, which changes under our
feet, so it is reinstalled whenever a fingerprint of its source tree (paths, sizes, mtimes) changes. It is built from
a copy of the tree in benchmarks/.build/ours-src, so that the install neither writes into nor races with the
developer's own build/ directory.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(BENCH_DIR)
VENVS_DIR = os.path.join(BENCH_DIR, ".venvs")

TOOLS = ("plain", "ours", "fil", "memray")
BASE_PACKAGES = ["numpy", "pandas"]
# The package that makes each tool, and the distribution name to ask for its version.
TOOL_PACKAGE = {"plain": None, "ours": REPO_ROOT, "fil": "filprofiler", "memray": "memray"}
TOOL_DIST = {"plain": None, "ours": "filprofiler", "fil": "filprofiler", "memray": "memray"}
# Directories of the repository that are not part of what `pip install` builds.
SOURCE_SKIP = {"benchmarks", "tests", "examples", "build", "dist", "fil-result", "node_modules"}
SOURCE_COPY = os.path.join(BENCH_DIR, ".build", "ours-src")


def _skip_top(name):
    """Top-level entries of the repository that `pip install` does not need (build-asan/ and the like included)."""
    return name in SOURCE_SKIP or name.startswith(("build-", "build_"))

PIP_TIMEOUT = 1800  # seconds; a source build of `ours` included


@dataclass
class ToolEnv:
    """A tool's environment. `available` is False with `reason` set when it could not be made."""

    tool: str
    path: str
    available: bool = False
    reason: str = ""
    versions: dict = field(default_factory=dict)

    def bin(self, name):
        return os.path.join(self.path, "bin", name)

    @property
    def python(self):
        return self.bin("python")


def source_fingerprint(root=REPO_ROOT):
    """A hash of the repository's buildable files (relative path, size, mtime): changes when the source does."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".")
            and not d.endswith(".egg-info")
            and not (rel_dir == "." and _skip_top(d))
            and d != "__pycache__"
        )
        for name in sorted(filenames):
            if name.endswith((".pyc", ".o", ".so")):
                continue
            full = os.path.join(dirpath, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            digest.update(f"{os.path.relpath(full, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def copy_source(root=REPO_ROOT, dest=SOURCE_COPY):
    """Copy the repository's buildable files (no VCS data, build output or benchmarks) to dest; returns dest."""
    shutil.rmtree(dest, ignore_errors=True)

    def ignore(dirpath, names):
        top = os.path.abspath(dirpath) == os.path.abspath(root)
        return {
            n
            for n in names
            if n.startswith(".")
            or n.endswith((".egg-info", ".pyc", ".o", ".so"))
            or n == "__pycache__"
            or (top and _skip_top(n) and n not in ("tests", "examples"))
        }

    shutil.copytree(root, dest, ignore=ignore, symlinks=True)
    return dest


def _pip(env, args, log):
    """Run pip in env, appending its output to the open file `log`. Returns the exit code (124 on timeout)."""
    log.write(f"$ pip {' '.join(args)}\n")
    log.flush()
    try:
        return subprocess.run(
            [env.python, "-m", "pip", "--disable-pip-version-check", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=PIP_TIMEOUT,
        ).returncode
    except subprocess.TimeoutExpired:
        log.write(f"pip timed out after {PIP_TIMEOUT} s\n")
        return 124


def _tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).strip()
    except OSError:
        return ""


def _read_stamp(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _versions(env):
    dists = ["numpy", "pandas"] + ([TOOL_DIST[env.tool]] if TOOL_DIST[env.tool] else [])
    code = (
        "import importlib.metadata as m, json, platform\n"
        f"out = {{'python': platform.python_version()}}\n"
        f"for d in {dists!r}:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: out[d] = None\n"
        "print(json.dumps(out))\n"
    )
    try:
        done = subprocess.run([env.python, "-I", "-c", code], cwd=env.path, capture_output=True, text=True, timeout=120)
        return json.loads(done.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


def ensure(tool, python=sys.executable, say=print):
    """Create or reuse the virtualenv for `tool`; never raises for an install failure (see ToolEnv.reason)."""
    env = ToolEnv(tool, os.path.join(VENVS_DIR, tool))
    os.makedirs(env.path, exist_ok=True)
    stamp_path = os.path.join(env.path, "filbench-stamp.json")
    log_path = os.path.join(env.path, "filbench-install.log")
    stamp = _read_stamp(stamp_path)
    want_base = {"python": python, "packages": BASE_PACKAGES}
    package = TOOL_PACKAGE[tool]
    if tool == "ours" and not any(
        os.path.exists(os.path.join(REPO_ROOT, f)) for f in ("pyproject.toml", "setup.py")
    ):
        env.reason = f"{REPO_ROOT} has no pyproject.toml or setup.py yet"
        return env
    want_tool = source_fingerprint() if tool == "ours" else package

    with open(log_path, "a") as log:
        if stamp.get("base") != want_base or not os.path.exists(env.python):
            say(f"[{tool}] creating virtualenv {env.path} (log: {log_path})")
            stamp = {}
            made = subprocess.run([python, "-m", "venv", "--clear", env.path], stdout=log, stderr=subprocess.STDOUT)
            if made.returncode != 0 or _pip(env, ["install", "-q", *BASE_PACKAGES], log) != 0:
                env.reason = "creating the virtualenv failed: " + _tail(log_path, 3)
                return env
            stamp = {"base": want_base}
            _write_stamp(stamp_path, stamp)
        if package and stamp.get("tool") != want_tool:
            say(f"[{tool}] installing {package}")
            args = ["install", "-q", package]
            if tool == "ours":
                args = ["install", "-q", "--force-reinstall", "--no-deps", copy_source()]
            if _pip(env, args, log) != 0:
                stamp.pop("tool", None)
                _write_stamp(stamp_path, stamp)
                env.reason = f"pip install {package} failed: " + _tail(log_path, 3).replace("\n", " | ")
                return env
            stamp["tool"] = want_tool
            _write_stamp(stamp_path, stamp)

    env.versions = _versions(env)
    if tool != "plain" and not env.versions.get(TOOL_DIST[tool]):
        env.reason = f"{TOOL_DIST[tool]} is not importable after install"
        return env
    env.available = True
    return env


def _write_stamp(path, stamp):
    with open(path, "w") as f:
        json.dump(stamp, f, indent=1)
