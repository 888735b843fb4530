"""The workloads the harness runs, and the command each tool runs them with.

A workload is a script in benchmarks/workloads/ (see the docstring at the top of each for what it measures), or for
`render_100k` an input file the script writes and the profiler's renderer reads. Order matters: `startup` runs first
because its reported peak is the baseline subtracted from the known-peak workloads.
"""

import os
from dataclasses import dataclass

from .envs import BENCH_DIR, TOOLS

WORKLOADS_DIR = os.path.join(BENCH_DIR, "workloads")

# How our renderer is invoked: fil-profile render FILE.prof -o DIR --no-browser. Fil and memray have no such command.
RENDER_ARGS = ["render", "{prof}", "-o", "{out}", "--no-browser"]


@dataclass(frozen=True)
class Workload:
    name: str
    script: str  # file in workloads/
    tools: tuple = TOOLS  # the tools it makes sense for; others show "n/a"
    prepare: bool = False  # run the script once with FILBENCH_PREPARE=1 before timing
    render: bool = False  # time `fil-profile render` on the file the script wrote, not the script

    @property
    def path(self):
        return os.path.join(WORKLOADS_DIR, self.script)


WORKLOADS = [
    Workload("startup", "startup.py"),
    Workload("pure_python_calls", "pure_python_calls.py"),
    Workload("small_objects", "small_objects.py"),
    Workload("numpy_temporaries", "numpy_temporaries.py"),
    Workload("pandas_etl", "pandas_etl.py"),
    Workload("malloc_loop", "malloc_loop.py", prepare=True),
    Workload("threads", "threads.py"),
    Workload("many_peaks", "many_peaks.py"),
    Workload("live_objects_memory", "live_objects_memory.py"),
    Workload("render_100k", "render_100k.py", tools=("ours",), prepare=True, render=True),
]
BY_NAME = {w.name: w for w in WORKLOADS}


def render_input(scale):
    """The collapsed-stacks file render_100k.py writes for this scale (mirrors its own naming)."""
    count = max(1, int(100_000 * scale))
    return os.path.join(BENCH_DIR, ".build", f"render_{count}.prof")


def command(tool, env, workload, out_dir, scale):
    """The argv that runs `workload` under `tool` (a ToolEnv), writing any profile into out_dir. The second value is
    the memray capture file, or None."""
    if workload.render:
        args = [a.format(prof=render_input(scale), out=out_dir) for a in RENDER_ARGS]
        return [env.bin("fil-profile"), *args], None
    if tool == "plain":
        return [env.python, workload.path], None
    if tool in ("ours", "fil"):
        return [env.bin("fil-profile"), "-o", out_dir, "--no-browser", "run", workload.path], None
    if tool == "memray":
        capture = os.path.join(out_dir, "memray.bin")
        return [env.bin("memray"), "run", "-q", "-f", "-o", capture, workload.path], capture
    raise ValueError(f"unknown tool {tool}")
