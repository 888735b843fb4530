"""End-to-end: random call trees, every allocation's stack checked against the interpreter's own.

A seeded program builds chains of 1 to 80 calls through several functions (plain calls, a
generator, a list comprehension, a fork that runs the rest of the chain twice from two lines, and
a try block that catches an exception raised further down), and allocates at random points on
the way down and on the way back up; some chains raise at a random depth. Consecutive
allocations so meet every case the profiler's stack cache tells apart:
  - the same stack again;
  - the same depth with one frame different anywhere below the top (a fork's two runs, with
    nothing allocated in between but at the bottom; twin chains that differ in one link);
  - a deeper or shallower stack sharing a prefix;
  - a generator's frame, which lives outside the thread's frame stack, in between;
  - frames unwound by an exception, then new frames pushed at their addresses by a caller
    suspended at the same stack depth as before;
  - stacks of well over a hundred frames.
Each allocation's true stack is read with sys._getframe as it is made, and everything stays
alive, so the peak is the end (a last block makes up for frame-stack chunks given back): the
report must hold exactly the true stacks, each with the bytes allocated under it. (Checked to fail when the walk or the unchanged-stack check misjudges which
frames changed.)
"""
import json
import textwrap

import pytest

from conftest import describe

SCRIPT = textwrap.dedent("""\
    import json, random, sys

    SEED, EVENTS, OUT = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rng = random.Random(SEED)
    KEEP = [None] * (4 * EVENTS)   # no list growth at the allocation line
    TRUTH = {}
    count = 0
    ALLOC_LINE = None
    MODULE = sys._getframe().f_code
    RAISE_AT = -1

    class Unwind(Exception):
        pass

    def alloc(size):
        global count
        KEEP[count] = bytearray(size)
        f = sys._getframe()
        stack = [(f.f_code.co_filename, ALLOC_LINE, f.f_code.co_qualname)]
        f = f.f_back
        while f is not None:
            stack.append((f.f_code.co_filename, f.f_lineno, f.f_code.co_qualname))
            if f.f_code is MODULE:
                break
            f = f.f_back
        key = json.dumps(stack[::-1])
        TRUTH[key] = TRUTH.get(key, 0) + size
        count += 1

    ALLOC_LINE = alloc.__code__.co_firstlineno + 2

    def run(fns, i, at):
        if i in at:
            alloc(at[i])
        if i == RAISE_AT:
            raise Unwind
        if i < len(fns):
            fns[i](fns, i + 1, at)
        if -1 - i in at:
            alloc(at[-1 - i])

    def plain_a(fns, i, at):
        run(fns, i, at)

    def plain_b(fns, i, at):
        x = 1
        run(fns, i, at)
        return x

    def through_generator(fns, i, at):
        for _ in generator(fns, i, at):
            pass

    def generator(fns, i, at):
        yield run(fns, i, at)

    def through_comprehension(fns, i, at):
        return [run(fns, i, at) for _ in (0,)]

    def fork(fns, i, at):
        run(fns, i, at)
        run(fns, i, at)

    def catcher_a(fns, i, at):
        try:
            run(fns, i, at)
        except Unwind:
            pass

    def catcher_b(fns, i, at):
        try:
            run(fns, i, at)
        except Unwind:
            return None

    KINDS = [plain_a, plain_b, through_generator, through_comprehension, catcher_a, catcher_b]

    def random_chain(previous):
        if previous and rng.random() < 0.5:   # the same shape, one link changed
            fns = list(previous)
            fns[rng.randrange(len(fns))] = rng.choice(KINDS)
        else:
            fns = [rng.choice(KINDS) for _ in range(rng.randint(1, 80))]   # under 256 frames
        # At most one fork: everything under it runs twice, the two runs' stacks differing only
        # in the fork's line, however deep it is, with nothing allocated in between but at the
        # bottom.
        fns = [plain_a if f is fork else f for f in fns]
        if rng.random() < 0.4:
            fns[rng.randrange(len(fns))] = fork
        return fns

    SAME_FRAMES = {plain_a: plain_b, plain_b: plain_a, fork: plain_a,
                   through_generator: through_comprehension,
                   through_comprehension: through_generator,
                   catcher_a: catcher_b, catcher_b: catcher_a}

    fns = None
    while count < EVENTS:
        if fns and rng.random() < 0.3:
            # Twins: the same depth, only one link (anywhere) different, both allocating at the
            # bottom: consecutive allocations whose stacks differ below an identical top.
            run(fns, 0, {len(fns): 1000 * rng.randint(2, 40)})
            k = rng.randrange(len(fns))
            fns = fns[:k] + [SAME_FRAMES[fns[k]]] + fns[k + 1:]
            run(fns, 0, {len(fns): 1000 * rng.randint(2, 40)})
            continue
        fns = random_chain(fns)
        at = {}
        for _ in range(rng.randint(1, 6)):
            point = rng.randint(0, len(fns))
            at[point if rng.random() < 0.5 else -1 - point] = 1000 * rng.randint(2, 40)
        RAISE_AT = rng.randint(0, len(fns)) if rng.random() < 0.3 else -1
        try:
            run(fns, 0, at)
        except Unwind:
            pass
        if rng.random() < 0.3:
            try:
                run(fns, 0, at)   # exactly the same again
            except Unwind:
                pass
        RAISE_AT = -1
    # The deepest chains took chunks of frame stack that were given back since, so the end is
    # not necessarily the peak: one more block makes it so.
    BALLAST = bytearray(1 << 20)
    with open(OUT, "w") as f:
        json.dump(TRUTH, f)
    """)


@pytest.mark.parametrize("seed", [20261125, 7, 4242])
def test_random_call_trees_match_the_interpreters_stacks(run_fil, tmp_path, seed):
    truth_path = str(tmp_path / "truth.json")
    _, _, prof = run_fil(SCRIPT, str(seed), "3000", truth_path)
    with open(truth_path) as f:
        truth = {tuple((fr[0], fr[1], fr[2]) for fr in json.loads(key)): size
                 for key, size in json.load(f).items()}
    alloc_line = next(iter(truth))[-1][1]
    got = {tuple((fr.file, fr.line, fr.func) for fr in stack): n for stack, n in prof.items()
           if stack[-1].func == "alloc" and stack[-1].line == alloc_line}
    assert len(truth) > 1000, "the program should make many distinct stacks"
    assert max(len(s) for s in truth) > 70, "and some deeper than the shared 64 frames"
    missing = [s for s in truth if s not in got]
    extra = [s for s in got if s not in truth]
    assert not missing and not extra, (
        "%d true stacks missing from the report, %d reported stacks that never happened; "
        "first missing: %r\nfirst extra: %r\n%s"
        % (len(missing), len(extra), missing[:1], extra[:1], describe(prof)))
    # Each bytearray(n) is its object plus n + 1 bytes of storage: under 100 bytes over n.
    wrong = [(s, truth[s], got[s]) for s in truth
             if not truth[s] <= got[s] <= truth[s] + 100 * (truth[s] // 2000)]
    assert not wrong, "%d stacks with the wrong bytes, e.g. %r" % (len(wrong), wrong[:3])
