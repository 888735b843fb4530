"""numpy with large temporaries, and a peak that is known to the byte.

Measures the profiler's cost when a few large allocations dominate (its overhead should vanish) and whether the peak
it reports is the true one. Each step keeps two inputs alive and makes three temporaries; inside the deepest step a
sixth array exists for a moment. Only named arrays are used, so numpy's temporary elision cannot change the peak.
The data buffers are so large that the interpreter's own memory is small beside them; the harness further subtracts
what each tool reports for the `startup` workload (an interpreter that imports numpy and exits).

numpy asks the kernel for huge pages on large arrays (madvise). Where the kernel then compacts memory to find them
(transparent_hugepage/defrag = madvise, as on the machine the published table comes from), the same run took
anywhere from 1.4 to 4.4 s plain, a spread larger than any profiler's cost. The workload turns that request off, the
same way under every tool, so what is timed is the arrays' work and the profiler's, not the kernel's compaction.
"""

import numpy as np

from _common import report, scaled

try:
    np._core.multiarray._set_madvise_hugepage(False)
except AttributeError:  # numpy 1.x
    np.core.multiarray._set_madvise_hugepage(False)


def step(a, b, last):
    t1 = a * b
    t2 = np.sqrt(t1)
    t3 = t1 + t2
    if last:
        t4 = np.multiply(t3, 0.5)  # the peak: a, b, t1, t2, t3, t4
        total = float(t4[-1])
        del t4
    else:
        total = 0.0
    return total + float(t3.sum())


def main():
    n = scaled(20_000_000, minimum=1000)
    iterations = 8
    a = np.ones(n)
    b = np.arange(n, dtype=np.float64)
    acc = 0.0
    for i in range(iterations):
        acc += step(a, b, i == iterations - 1)
    report("TRUE_PEAK_BYTES", 6 * a.nbytes)
    print(acc)


if __name__ == "__main__":
    main()
