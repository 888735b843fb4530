"""Runs inside the profiled process (started by `fil-profile run`, with the library preloaded).

It sets up sys.argv, sys.path[0] and __main__ as plain `python` would, starts tracking, runs the
program, and writes the report at exit (from an atexit handler, so after non-daemon threads have
finished and also when the program raised or called sys.exit). Its own frames are cut from every
stack, so a report starts at the user's `<module>`.
"""
import atexit
import os
import signal
import sys
import types

# Run as a script: sys.path[0] is this package's directory; the program must not see it.
_here = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0]) == _here:
    del sys.path[0]

from filprofiler import _report  # noqa: E402

_state = {"pid": os.getpid(), "sigint": False, "done": False, "started": False}


def _command_line(mode, target, args):
    import shlex

    head = ["fil-profile", "run"] + (["-m", target] if mode == "module" else [target])
    line = " ".join(shlex.quote(a) for a in head + args)
    # Arguments that are not valid UTF-8 (a file name in another encoding) arrive as lone
    # surrogates, which the core cannot take as text: show those bytes as U+FFFD instead.
    return line.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _at_exit(out_dir, open_browser, command_line):
    if os.getpid() != _state["pid"] or _state["done"]:
        return  # a forked child: the report belongs to the parent
    _state["done"] = True
    from filprofiler import _filpreload

    _filpreload.stop()
    try:
        sys.stdout.flush()
    except Exception:
        pass
    # A program that never started (a syntax error, a missing module) has nothing to report;
    # an empty report would only look like a real one.
    if _state["started"]:
        index = _report.write_peak_report(out_dir, command_line)
        if index and open_browser:
            _report.open_in_browser(index)
    if _state["sigint"]:
        # Plain python ends an uncaught KeyboardInterrupt by dying of SIGINT; so do we.
        try:
            sys.stderr.flush()
        except Exception:
            pass
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)


def _install_sigusr2(out_dir, command_line):
    """SIGUSR2 writes the peak so far into a new run directory; the program keeps running.

    A Python-level handler runs in the main thread between bytecodes, where taking the
    tracking lock is safe. Installed only over the default action, before the program runs: an
    inherited SIG_IGN is respected, and a program that sets its own handler replaces this one.
    """
    if not hasattr(signal, "SIGUSR2") or signal.getsignal(signal.SIGUSR2) != signal.SIG_DFL:
        return

    def on_sigusr2(signum, frame):
        _report.write_peak_report(out_dir, command_line, label="Peak tracked memory so far")

    signal.signal(signal.SIGUSR2, on_sigusr2)


def _strip_own_frames(tb):
    """The traceback without this file's frames, which plain python would not have. (runpy's
    frames stay: `python -m` shows them too.)"""
    own = os.path.abspath(__file__)
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) == own:
        tb = tb.tb_next
    return tb


def _main_module(path):
    from importlib.machinery import SourceFileLoader

    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__loader__ = SourceFileLoader("__main__", path)
    main.__spec__ = None
    main.__package__ = None
    main.__cached__ = None
    main.__builtins__ = __builtins__
    return main


def _execute(mode, target, args, hidden):
    """Set the program up as plain python would, then run it. Tracking starts in this frame,
    which the core cuts away with everything below it; `run` is this file's too, and this file's
    frames are among `hidden`, so every stack starts at the program's own code."""
    from filprofiler import _filpreload

    sys.argv = [target] + args
    if mode == "module":
        import runpy

        sys.path.insert(0, os.getcwd())  # as `python -m`: the current directory comes first
        run = lambda: runpy._run_module_as_main(target, alter_argv=True)  # noqa: E731
    elif os.path.isdir(target) or not target.endswith((".py", ".pyw")) and _is_zip(target):
        import runpy

        # As `python DIR_OR_ZIP`: its absolute path first on sys.path, then its __main__ module.
        sys.path.insert(0, os.path.abspath(target))
        run = lambda: runpy._run_module_as_main("__main__", alter_argv=False)  # noqa: E731
    else:
        path = target if os.path.isabs(target) else os.path.join(os.getcwd(), target)
        with open(path, "rb") as f:
            source = f.read()
        sys.path.insert(0, os.path.dirname(os.path.realpath(path)))
        main = _main_module(path)
        sys.modules["__main__"] = main
        code = compile(source, path, "exec", dont_inherit=True)
        run = lambda: exec(code, main.__dict__)  # noqa: E731
    _state["started"] = True
    _filpreload.start(hidden, True)
    run()


def _is_zip(path):
    import zipfile

    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def main():
    out_dir, open_browser, limit_pools, mode, target = sys.argv[1:6]
    args = sys.argv[6:]
    # Reports go where the command was run, even if the program changes directory.
    out_dir = os.path.abspath(out_dir)
    from filprofiler import _filpreload

    if not _filpreload.preloaded():
        sys.stderr.write(_report.PREFIX + "error: the profiler library was not preloaded; "
                         "start programs with `fil-profile run`\n")
        sys.exit(2)
    if limit_pools == "1":
        from filprofiler import _threadpools

        _threadpools.limit_for_process()
    command_line = _command_line(mode, target, args)
    atexit.register(_at_exit, out_dir, open_browser == "1", command_line)
    # Out of memory, the core writes the report itself (no Python then): tell it where.
    _filpreload.oom_configure(out_dir, command_line)
    _install_sigusr2(out_dir, command_line)
    try:
        _execute(mode, target, args, _report.hidden_files() + [os.path.abspath(__file__)])
    except SystemExit:
        raise
    except BaseException as e:  # report as plain python would, without our frames
        if isinstance(e, KeyboardInterrupt):
            _state["sigint"] = True
        tb = _strip_own_frames(e.__traceback__)
        # The default hook prints the exception's own __traceback__, not its tb argument.
        e.__traceback__ = tb
        sys.excepthook(type(e), e, tb)
        sys.exit(1)


if __name__ == "__main__":
    main()
