"""Writing a report: the run directory, the C renderer, the terminal summary, the browser.

Shared by `fil-profile run`, the API and the Jupyter magic. The work (dumping the peak's
allocations, drawing flamegraphs) is done by the C core; this module only names files and
talks to the user.
"""
import errno
import mmap
import os
import shutil
import sys
import time

PREFIX = "=fil-profile= "
MIB = 1024 * 1024


# Frames not shown in reports: the import machinery between an `import` line and the imported
# module's own lines, and runpy's frames between the launcher and `run -m`'s module.
IMPORTLIB_FILES = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")


def hidden_files():
    import runpy

    # runpy is frozen in 3.11+: its frames' file is "<frozen runpy>", not runpy.__file__.
    return [os.path.abspath(runpy.__file__), runpy.run_path.__code__.co_filename,
            *IMPORTLIB_FILES]


def _core():
    from . import _filpreload

    return _filpreload


def new_run_dir(base):
    """base/<timestamp>/, created; a timestamp without ':' so it is a valid name everywhere."""
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S")
    ms = "%03d" % (int(time.time() * 1000) % 1000)
    path = os.path.join(base, stamp + "." + ms)
    n = 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(base, "%s.%s-%d" % (stamp, ms, n))
    os.makedirs(path)
    return path


def render(prof, out_dir, kind, command_line=None, note=None):
    """Flamegraphs and index.html from a .prof; returns the path of index.html."""
    prefix = "out-of-memory" if kind == "oom" else "peak-memory"
    _core().render(prof, out_dir, prefix, kind, command_line, note)
    return os.path.join(out_dir, "index.html")


def parse_prof(path):
    """[(frames, bytes)] from a collapsed-stacks file; frames as written, root first."""
    stacks = []
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            stacks.append((stack.split(";"), int(count)))
    return stacks


def top_callsites(path, n=5):
    """The n lines holding the most bytes: [(leaf frame, bytes)], biggest first (ties in order
    of first appearance), reading the file as parse_prof does.

    Only each line's leaf is needed. A .prof of a big program is megabytes of deep stacks, and
    decoding and splitting all of it took longer than rendering the flamegraphs; so the file is
    mapped and each line is cut from the right in place. ';' and ' ' are ASCII, so cutting the
    bytes finds the same leaf as cutting the decoded text; leaves that decode alike are merged."""
    by_bytes = {}
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return []
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            find, rfind = data.find, data.rfind
            pos, end = 0, len(data)
            while pos < end:
                nl = find(b"\n", pos)
                if nl < 0:
                    nl = end
                space = rfind(b" ", pos, nl)
                if space > pos:
                    count = data[space + 1:nl]
                    if count.isdigit():
                        semi = rfind(b";", pos, space)
                        leaf = data[(semi + 1 if semi >= 0 else pos):space]
                        by_bytes[leaf] = by_bytes.get(leaf, 0) + int(count)
                pos = nl + 1
    totals = {}
    for leaf, count in by_bytes.items():   # in first appearance order, as parse_prof's
        text = leaf.decode("utf-8", "replace")
        totals[text] = totals.get(text, 0) + count
    return sorted(totals.items(), key=lambda kv: -kv[1])[:n]


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
            index = render(prof, run_dir, "peak", command_line)
    except OSError as e:
        where = e.filename if isinstance(e.filename, str) else base
        if e.errno in _FULL_ERRNOS:
            advice = "the disk is full or a file size limit was reached; no report was kept"
        else:
            advice = "choose a writable directory with -o DIR"
        sys.stderr.write(PREFIX + "error: could not write the report in %s: %s; %s\n"
                         % (where, e.strerror or e, advice))
        if run_dir and os.path.isdir(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)  # never leave a report that looks whole
        return None
    print_summary(label, peak, prof, index)
    return index


def print_summary(label, total, prof, index):
    out = [PREFIX + "%s: %s" % (label, mib(total)),
           PREFIX + "Report: " + index]
    own = _core().stats()[2]
    out.append(PREFIX + "Profiler's own memory: %s" % mib(own))
    top = top_callsites(prof)
    if top:
        out.append(PREFIX + "Biggest call sites:")
        for frame, count in top:
            out.append(PREFIX + "  %10s  %s" % (mib(count), frame))
    sys.stderr.write("\n".join(out) + "\n")
    sys.stderr.flush()


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
