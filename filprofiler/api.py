"""filprofiler.api: profile the peak memory of one function call from your own code.

    from filprofiler.api import profile

    result = profile(lambda: build_model(data), "reports/build-model")

The program must run under the Fil library, started with `fil-profile python yourscript.py`
(an interpreter with the profiler loaded but not tracking); `profile()` tracks only while the
function runs. Importing this module works anywhere; calling `profile()` without the library
raises RuntimeError. Called while memory is already being tracked (the whole program under
`fil-profile run`, or inside another profile() call or %%filprofile cell), it just calls the
function: that report, which covers the call, is kept whole.
"""
import os
import sys

from . import _report

__all__ = ["profile"]

NOT_PRELOADED = (
    "filprofiler.api.profile() needs the Fil profiler loaded into this Python process; run your "
    "program with `fil-profile python yourscript.py [ARGS...]` instead of `python yourscript.py`"
)


def _run_profiled(func):
    """Call func() with tracking on. start() must be called from this frame, the one that then
    calls func: the core cuts this thread's stacks here, so the report starts at func."""
    from . import _filpreload

    _filpreload.start(_report.hidden_files(), True)
    try:
        return func()
    finally:
        _filpreload.stop()


_warned_nested = False


def _warn_nested(path):
    global _warned_nested
    if _warned_nested:
        return
    _warned_nested = True
    # sys.stderr, not _report.to_stderr's fd 2: in a notebook this is where the user looks.
    sys.stderr.write(
        _report.PREFIX + "warning: profile() wrote no report to %s: memory is already being "
        "profiled (by `fil-profile run`, or an enclosing profile() or %%%%filprofile), and that "
        "report covers this call; start the program with `fil-profile python` for a report of "
        "the function alone\n" % path)
    sys.stderr.flush()


def _describe(func):
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    module = getattr(func, "__module__", None)
    return "filprofiler.api.profile(%s)" % (module + "." + name if module else name)


def profile(func, path):
    """Call func() with no arguments, tracking memory while it runs, and return its result.

    The report of the peak reached during the call is written into the directory `path`
    (created if needed; files already there with the same names are replaced):
    peak-memory.prof (the allocations alive at the peak, as collapsed stacks whose root is
    func's frame), peak-memory.svg and peak-memory-reversed.svg (flamegraphs) and index.html.
    Memory allocated before the call does not count, nor does anything after it.

    If func raises, the report is still written and then the exception propagates unchanged.
    If the report cannot be written, OSError is raised (after func returned normally; when func
    raised, its exception wins and the report's failure is noted on it).

    Raises RuntimeError, before calling func, when this process was not started with
    `fil-profile python`. When memory is already being tracked (`fil-profile run`, an enclosing
    profile() or %%filprofile), starting afresh would throw that report's data away: func is
    then simply called, `path` is left alone, and a warning (once per process) says so.
    """
    from . import _filpreload

    if not _filpreload.preloaded():
        raise RuntimeError(NOT_PRELOADED)
    if not callable(func):
        raise TypeError("profile() needs a function to call, not %r" % (func,))
    path = os.fspath(path)
    if _filpreload.tracking():
        _warn_nested(path)
        return func()
    os.makedirs(path, exist_ok=True)
    try:
        result = _run_profiled(func)
    except BaseException as e:
        try:
            _write(path, func)
        except OSError as report_error:
            e.add_note("filprofiler: the report could not be written in %s: %s"
                       % (path, report_error))
        raise
    _write(path, func)
    return result


def _write(path, func):
    from . import _filpreload

    prof = os.path.join(path, "peak-memory.prof")
    _filpreload.dump(prof)
    _report.render(prof, path, "peak", _describe(func))
