"""A C extension doing 10 million small malloc/free pairs.

Measures the profiler's fixed cost per native allocation: nothing here is Python but the one ctypes call, so every
nanosecond of slowdown is the interposed malloc/free path. The shared library is compiled (cc -O2 -shared -fPIC) into
benchmarks/.build/ by the untimed prepare step, or on first use.
"""

import ctypes
import os
import subprocess

from _common import BUILD_DIR, preparing, scaled

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "malloc_loop.c")
LIBRARY = os.path.join(BUILD_DIR, "libmalloc_loop.so")


def build():
    if os.path.exists(LIBRARY) and os.path.getmtime(LIBRARY) >= os.path.getmtime(SOURCE):
        return
    os.makedirs(BUILD_DIR, exist_ok=True)
    tmp = f"{LIBRARY}.{os.getpid()}.tmp"
    subprocess.run([os.environ.get("CC", "cc"), "-O2", "-shared", "-fPIC", "-o", tmp, SOURCE], check=True)
    os.replace(tmp, LIBRARY)


def main():
    build()
    if preparing():
        return
    lib = ctypes.CDLL(LIBRARY)
    lib.filbench_churn.argtypes = [ctypes.c_long]
    lib.filbench_churn.restype = ctypes.c_long
    checksum = lib.filbench_churn(scaled(10_000_000))
    assert checksum != -1, "malloc failed"
    print(checksum)


if __name__ == "__main__":
    main()
