"""10 million live small objects: the profiler's own memory per live allocation.

Holds a list of 10 million distinct int objects (each one allocation of 28 bytes) at its peak. The harness reports
(peak RSS under the tool - peak RSS plain) / LIVE_ALLOCATIONS as the tool's bytes of overhead per live allocation;
the list itself is one more allocation and is counted.
"""

from _common import report, scaled

FIRST = 1 << 20  # well above the small-int cache, so every element is a new object


def main():
    count = scaled(10_000_000)
    live = list(range(FIRST, FIRST + count))
    report("LIVE_ALLOCATIONS", count + 1)
    print(sum(live) - FIRST * count)
    del live


if __name__ == "__main__":
    main()
