"""Writing a report: the run directory, the C renderer, the terminal summary, the browser.

Shared by `fil-profile run`, the API and the Jupyter magic. The work (dumping the peak's
allocations, drawing flamegraphs) is done by the C core; this module only names files and
talks to the user.
"""
import errno
import os
import sys
import time

PREFIX = "=fil-profile= "
MIB = 1024 * 1024


# Frames not shown in reports: the import machinery between an `import` line (or a call of
# importlib.import_module) and the imported module's own lines, and runpy's frames between the
# launcher and `run -m`'s module.
IMPORTLIB_FILES = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>",
                   "<frozen zipimport>")


def hidden_files():
    import importlib.util
    import runpy

    # Each module by its source path and by the file name its code carries: some are frozen
    # (runpy's frames say "<frozen runpy>" in 3.11), and whether is up to how Python was built.
    files = list(IMPORTLIB_FILES)
    for module, function in ((runpy, runpy.run_path), (importlib, importlib.import_module),
                             (importlib.util, importlib.util.find_spec)):
        for name in (os.path.abspath(module.__file__), function.__code__.co_filename):
            if name not in files:
                files.append(name)
    return files


def _core():
    from . import _filpreload

    return _filpreload


def new_run_dir(base):
    """base/<timestamp>/, created; a timestamp without ':' so it is a valid name everywhere.
    Never one that exists already, even when other processes profiled with the same -o (jobs
    run side by side) make theirs in the same millisecond: creating it is the test."""
    now = time.time()   # read once: the seconds and the milliseconds must be of one moment
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.localtime(now))
    ms = "%03d" % (int(now * 1000) % 1000)
    os.makedirs(base, exist_ok=True)
    n = 1
    while True:
        path = os.path.join(base, "%s.%s" % (stamp, ms) + ("-%d" % n if n > 1 else ""))
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            n += 1


def render(prof, out_dir, kind, command_line=None, note=None):
    """Flamegraphs and index.html from a .prof; returns the path of index.html."""
    _render(prof, out_dir, kind, command_line, note)
    return os.path.join(out_dir, "index.html")


def _render(prof, out_dir, kind, command_line, note, sites=0):
    prefix = "out-of-memory" if kind == "oom" else "peak-memory"
    return _core().render(prof, out_dir, prefix, kind, command_line, note, sites)


SUMMARY_SITES = 5


def biggest_call_sites(sites, n=SUMMARY_SITES):
    """The n lines holding the most bytes: [(leaf frame, bytes)], biggest first, ties in order of
    first appearance in the .prof; what reading the .prof line by line, decoding each leaf frame
    with replacement characters and summing by text, would give.

    `sites` comes from the renderer, which has just parsed the .prof (so it is not read a second
    time, megabytes for a big program): (text bytes, bytes, order) for the n biggest call sites,
    plus every one whose text may decode like another's, which are merged here."""
    totals = {}
    for raw, count, order in sites:
        text = raw.decode("utf-8", "replace")
        seen = totals.get(text)
        totals[text] = (count, order) if seen is None else (seen[0] + count, min(seen[1], order))
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[1][1]))
    return [(text, count) for text, (count, _) in ranked[:n]]


def to_stderr(text):
    """Write the profiler's own lines to the process's standard error itself (fd 2), after what
    the program wrote there: the program may have replaced sys.stderr (a log capture, a progress
    bar) or closed it, and our lines are not its business."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        data = text.encode("utf-8", "backslashreplace")
    try:
        while data:
            data = data[os.write(2, data):]
    except OSError:
        pass  # no standard error to write to


def mib(n):
    return "%.1f MiB" % (n / MIB)


class _FileSizeLimitIgnored:
    """SIGXFSZ ignored while the report is written, then restored.

    Past RLIMIT_FSIZE a write raises SIGXFSZ, whose default action kills the process: a
    program that restored the default (CPython itself ignores it) would die while we write,
    losing its own exit status and leaving a truncated report. Ignored, the write fails with
    EFBIG instead, which is reported like a full disk. Only the main thread may change
    signal handlers; elsewhere (API calls from threads) this does nothing."""

    def __enter__(self):
        import signal

        self.saved = None
        if hasattr(signal, "SIGXFSZ"):
            try:
                self.saved = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            except (ValueError, OSError):
                self.saved = None

    def __exit__(self, *exc):
        import signal

        if self.saved is not None:
            try:
                signal.signal(signal.SIGXFSZ, self.saved)
            except (ValueError, OSError):
                pass


# Errors that mean the disk (or a quota, or a file size limit) is full, not the directory wrong.
_FULL_ERRNOS = {getattr(errno, n) for n in ("ENOSPC", "EFBIG", "EDQUOT") if hasattr(errno, n)}


def write_peak_report(base, command_line, label="Peak tracked memory"):
    """Dump the peak, render it, print the summary. Returns index.html's path, or None after
    printing why the report could not be written (the program's own outcome is untouched, and
    no partial run directory is left)."""
    run_dir = None
    try:
        with _FileSizeLimitIgnored():
            run_dir = new_run_dir(base)
            prof = os.path.join(run_dir, "peak-memory.prof")
            peak = _core().dump(prof)
            sites = _render(prof, run_dir, "peak", command_line, None, SUMMARY_SITES)
            index = os.path.join(run_dir, "index.html")
    except OSError as e:
        where = e.filename if isinstance(e.filename, str) else base
        if e.errno in _FULL_ERRNOS:
            advice = "the disk is full or a file size limit was reached; no report was kept"
        else:
            advice = "choose a writable directory with -o DIR"
        to_stderr(PREFIX + "error: could not write the report in %s: %s; %s\n"
                  % (where, e.strerror or e, advice))
        if run_dir and os.path.isdir(run_dir):
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)  # never leave a report that looks whole
        return None
    print_summary(label, peak, biggest_call_sites(sites), index)
    return index


def print_summary(label, total, top, index):
    out = [PREFIX + "%s: %s" % (label, mib(total)),
           PREFIX + "Report: " + index]
    own = _core().stats()[2]
    out.append(PREFIX + "Profiler's own memory: %s" % mib(own))
    if top:
        out.append(PREFIX + "Biggest call sites:")
        for frame, count in top:
            out.append(PREFIX + "  %10s  %s" % (mib(count), frame))
    to_stderr("\n".join(out) + "\n")


def open_in_browser(index):
    """Open the report unless there is no browser to open it with ($BROWSER is respected)."""
    if not os.environ.get("BROWSER") and not (os.environ.get("DISPLAY")
                                              or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        import webbrowser

        return webbrowser.open("file://" + os.path.abspath(index))
    except Exception:
        return False
