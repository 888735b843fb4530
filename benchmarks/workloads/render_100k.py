"""Input for the render_100k workload: a collapsed-stacks file with 100,000 distinct call stacks.

The timed command is the profiler's report renderer (`fil-profile render`), not this script; the harness runs this
script once in the untimed prepare step. The stacks look like a real program's: a tree of modules and functions 5 to
40 frames deep with shared prefixes, each stack ending in a distinct leaf, bytes spread over six orders of
magnitude. The file is deterministic.
"""

import os
import random

from _common import BUILD_DIR, preparing, scaled

PATH_TEMPLATE = os.path.join(BUILD_DIR, "render_{}.prof")


def frame(rng, depth):
    module = f"/srv/app/pkg{rng.randrange(30)}/module_{rng.randrange(200)}.py"
    return f"{module}:{rng.randrange(1, 2000)} (function_{depth}_{rng.randrange(400)})"


def generate(count, rng):
    # A pool of prefixes grown as a tree, so stacks share roots as in a real program.
    prefixes = [["/srv/app/main.py:12 (<module>)"]]
    stacks = set()
    while len(stacks) < count:
        parent = prefixes[rng.randrange(len(prefixes))]
        if len(parent) < 40:
            child = parent + [frame(rng, len(parent))]
            prefixes.append(child)
        else:
            child = parent
        if len(child) >= 5:
            stacks.add(";".join(child + [frame(rng, len(child))]))
    return sorted(stacks)


def path(count):
    return PATH_TEMPLATE.format(count)


def main():
    count = scaled(100_000)
    target = path(count)
    if os.path.exists(target):
        return
    os.makedirs(BUILD_DIR, exist_ok=True)
    rng = random.Random(7)
    tmp = f"{target}.{os.getpid()}.tmp"
    with open(tmp, "w") as out:
        for stack in generate(count, rng):
            out.write(f"{stack} {int(10 ** rng.uniform(1, 7))}\n")
    os.replace(tmp, target)


if __name__ == "__main__":
    assert preparing(), "render_100k.py only writes its input; the harness times `fil-profile render`"
    main()
