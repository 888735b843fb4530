"""8 Python threads and a native thread pool allocating at once.

Measures the profiler under contention: eight Python threads build lists of tuples and strings while the main thread
runs numpy matrix products, whose BLAS library works on its own pool of native threads and allocates its buffers
there. A profiler with one global lock, or one that walks stacks expensively per thread, shows it here.
"""

import threading

import numpy as np

from _common import scaled

THREADS = 8


def build_lists(seed, rows, out):
    total = 0
    for chunk in range(4):
        rows_here = [(seed, i, f"row-{seed}-{i}", [i, i * 2]) for i in range(rows)]
        index = {r[2]: r for r in rows_here[::7]}
        total += len(rows_here) + len(index)
    out[seed] = total


def matmuls(size, rounds):
    rng = np.random.default_rng(1)
    a = rng.random((size, size))
    checksum = 0.0
    for _ in range(rounds):
        b = a @ a.T
        a = b / np.linalg.norm(b)
        checksum += float(a[0, 0])
    return checksum


def main():
    results = [0] * THREADS
    workers = [
        threading.Thread(target=build_lists, args=(seed, scaled(50_000), results)) for seed in range(THREADS)
    ]
    for w in workers:
        w.start()
    checksum = matmuls(800, scaled(200))
    for w in workers:
        w.join()
    print(sum(results), round(checksum, 6))


if __name__ == "__main__":
    main()
