"""One measured run of one command: wall time, peak RSS, exit status, with a timeout.

Peak RSS comes from wait4(2) on the child: the kernel's ru_maxrss for the child and every descendant it waited for,
which is the largest single process of the tree (not their sum). All the tools measured here run the program in the
launcher's own process, or exec into it, so that is the whole cost. The child runs in its own session so a timeout
kills the tree.

Also here: reading the peak each profiler reports from its output.
"""

import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Run:
    """The outcome of one run. status is "ok", "failed" (non-zero exit or no report) or "timeout"."""

    status: str
    wall_s: float
    max_rss_kib: int
    returncode: int
    facts: dict = field(default_factory=dict)  # KEY=<int> lines the workload printed on stderr
    reported_peak: int | None = None  # bytes, as the profiler reported it
    detail: str = ""  # why it failed: the end of its stderr


def _kill_tree(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_command(cmd, *, cwd, env, timeout_s, stdout_path, stderr_path):
    """Run cmd to completion or until timeout_s. Returns a Run without facts or reported peak."""
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True)
        except OSError as e:
            return Run("failed", 0.0, 0, -1, detail=f"cannot start {cmd[0]}: {e}")
        timed_out = threading.Event()

        def on_timeout():
            timed_out.set()
            _kill_tree(proc.pid)

        timer = threading.Timer(timeout_s, on_timeout)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    _kill_tree(proc.pid)  # anything the run left behind in its session
    if timed_out.is_set():
        return Run("timeout", wall, usage.ru_maxrss, proc.returncode, detail=f"killed after {timeout_s:.0f} s")
    run = Run("ok" if proc.returncode == 0 else "failed", wall, usage.ru_maxrss, proc.returncode)
    if run.status == "failed":
        run.detail = f"exit code {proc.returncode}: " + tail(stderr_path)
    return run


def tail(path, lines=6):
    """The last lines of a text file, joined with ' | ' for a one-line report."""
    try:
        with open(path, errors="replace") as f:
            return " | ".join(line.rstrip() for line in f.readlines()[-lines:])
    except OSError:
        return ""


def read_facts(stderr_path):
    """The KEY=<int> lines a workload printed on stderr (see workloads/_common.py)."""
    facts = {}
    try:
        with open(stderr_path, errors="replace") as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep and key.isupper() and key.replace("_", "").isalpha() and value.isdigit():
                    facts[key] = int(value)
    except OSError:
        pass
    return facts


def prof_peak(out_dir):
    """Total bytes at the peak from the newest peak-memory.prof under out_dir (Fil's and our format): the sum of the
    last field of every line. None if there is no such file or it does not parse."""
    found = []
    for dirpath, _, filenames in os.walk(out_dir):
        if "peak-memory.prof" in filenames:
            path = os.path.join(dirpath, "peak-memory.prof")
            found.append((os.path.getmtime(path), path))
    if not found:
        return None
    total = 0
    try:
        with open(max(found)[1], errors="replace") as f:
            for line in f:
                line = line.rstrip("\n")
                if line:
                    total += int(line.rsplit(" ", 1)[1])
    except (OSError, ValueError, IndexError):
        return None
    return total


def memray_peak(memray_bin, results_bin, json_path, env, timeout_s=600):
    """Peak memory from `memray stats --json` on a capture file (metadata.peak_memory), untimed. None on failure."""
    try:
        subprocess.run(
            [memray_bin, "stats", "--json", "-f", "-o", json_path, results_bin],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout_s,
            check=True,
        )
        with open(json_path) as f:
            return int(json.load(f)["metadata"]["peak_memory"])
    except (OSError, ValueError, KeyError, TypeError, subprocess.SubprocessError):
        return None
