"""Helpers shared by the benchmark workloads.

Each workload is a plain script that runs unchanged under `python`, `fil-profile run` and `memray run`. The harness
talks to it through the environment and stderr only, so the workloads import nothing but this module:

- FILBENCH_SCALE (float, default 1.0) scales the amount of work; `run.py --quick` sets 0.1.
- FILBENCH_PREPARE=1 asks the workload to do its untimed setup (compile a C file, write an input) and exit.
- A workload that knows facts about itself prints them to stderr as `KEY=<int>` lines: TRUE_PEAK_BYTES (bytes of its
  own allocations alive at once at its peak), LIVE_ALLOCATIONS (number of live allocations it holds at its peak).
"""

import os
import sys

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_DIR = os.path.join(BENCH_DIR, ".build")


def scale():
    """The FILBENCH_SCALE factor, 1.0 when unset."""
    return float(os.environ.get("FILBENCH_SCALE", "1"))


def scaled(n, minimum=1):
    """n work units scaled by FILBENCH_SCALE, at least `minimum`."""
    return max(minimum, int(n * scale()))


def preparing():
    """True when the harness only wants the untimed setup done."""
    return os.environ.get("FILBENCH_PREPARE") == "1"


def report(key, value):
    """Tell the harness a fact about this run (an integer) on stderr."""
    print(f"{key}={int(value)}", file=sys.stderr, flush=True)
