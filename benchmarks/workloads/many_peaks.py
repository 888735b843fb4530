"""A program that reaches 100,000 new peaks, with a known true peak.

Measures the cost of the peak bookkeeping: each step keeps one new 10 KiB array and makes one short-lived 10 KiB
array, so the tracked total rises to a new high-water mark every step and drops a little after it. A profiler that
copies its whole live set at each new peak does 100,000 copies of an ever larger set here.

The true peak is the arrays (data buffer and object, as sys.getsizeof counts them) plus the list that holds them, all
alive during the last step; the harness subtracts each tool's `startup` reading (an interpreter that imports numpy)
from what the tool reports.
"""

import sys

import numpy as np

from _common import report, scaled

ELEMENTS = 1280  # float64: 10 KiB per array


def main():
    steps = scaled(100_000)
    kept = []
    for _ in range(steps):
        kept.append(np.ones(ELEMENTS))
        passing = np.ones(ELEMENTS)  # a new peak: one array more than the previous step's high-water mark
        del passing
    report("TRUE_PEAK_BYTES", (steps + 1) * sys.getsizeof(kept[0]) + sys.getsizeof(kept))
    print(len(kept))


if __name__ == "__main__":
    main()
