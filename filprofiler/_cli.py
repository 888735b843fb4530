"""The `fil-profile` command line (also `python -m filprofiler`).

    fil-profile [-o DIR] [--no-browser] [--disable-oom-detection] [--oom-threshold MIB]
                [--limit-thread-pools] run (SCRIPT | -m MODULE) [ARGS...]
    fil-profile python [ARGS...]
    fil-profile render FILE.prof [-o DIR] [--no-browser]
    fil-profile install-kernel [--user | --sys-prefix]

Options come before the subcommand; everything after the script or module name goes to the
program unchanged. `run` replaces this process with the Python interpreter and the preloaded
library (so the program's exit status is this command's), running filprofiler/_run.py.
"""
import os
import sys

from . import __version__
from . import _env

PREFIX = "=fil-profile= "
SUBCOMMANDS = ("run", "python", "render", "install-kernel")

DESCRIPTION = """\
Find where a Python program's memory peaks and which code allocated what was alive then.

commands:
  run SCRIPT [ARGS...]     profile a script; the report goes to DIR/<timestamp>/
  run -m MODULE [ARGS...]  profile a module, as `python -m MODULE`
  python [ARGS...]         an interpreter with the profiler loaded but not tracking
                           (for filprofiler.api and the Jupyter kernel)
  render FILE.prof         render a collapsed-stacks file into flamegraphs and index.html
  install-kernel           install the "Python 3 with Fil" Jupyter kernel

examples:
  fil-profile run job.py --input data.csv
  fil-profile -o reports --no-browser run -m mypackage.job
"""


def error(message, code=2):
    sys.stderr.write(PREFIX + "error: " + message + "\n")
    sys.exit(code)


def top_parser():
    import argparse

    p = argparse.ArgumentParser(
        prog="fil-profile",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="fil-profile [options] {run,python,render,install-kernel} ...",
    )
    p.add_argument("--version", action="version", version="fil-profile " + __version__)
    p.add_argument("-o", "--output", metavar="DIR", default="fil-result",
                   help="directory for reports (default: fil-result); each run gets a new "
                        "timestamped directory inside it")
    p.add_argument("--no-browser", action="store_true",
                   help="do not open the report in a browser, only print its path")
    p.add_argument("--disable-oom-detection", action="store_true",
                   help="do not stop the program when available memory runs low "
                        "(a failing allocation still writes an out-of-memory report)")
    p.add_argument("--oom-threshold", metavar="MIB", type=int, default=None,
                   help="stop the program with an out-of-memory report when less than MIB "
                        "MiB remain available (default: 1%% of the limit, 64-512 MiB)")
    p.add_argument("--limit-thread-pools", action="store_true",
                   help="run BLAS, OpenMP, numexpr and BLOSC thread pools with one thread")
    return p


# The options before the subcommand, spelled out in full, and where argparse stores them.
FLAG_DESTS = {"--no-browser": "no_browser", "--disable-oom-detection": "disable_oom_detection",
              "--limit-thread-pools": "limit_thread_pools"}
VALUE_DESTS = {"-o": "output", "--output": "output", "--oom-threshold": "oom_threshold"}


class Options:
    """What top_parser() returns for no options: the defaults."""
    output = "fil-result"
    no_browser = False
    disable_oom_detection = False
    oom_threshold = None
    limit_thread_pools = False


def parse_plain_options(before):
    """The options as top_parser() would parse them, for the usual command lines: each option
    spelled out in full (`--no-browser`, `-o DIR`), its value a separate argument that does not
    start with '-', --oom-threshold's in ASCII digits. None for anything else (abbreviations,
    `--output=DIR`, `-oDIR`, --help, mistakes), which argparse then parses, or reports.

    Importing argparse (with re, enum, gettext) and building the parser cost about as much as
    starting the interpreter itself, ~14 ms at every launch."""
    opts = Options()
    i = 0
    while i < len(before):
        arg = before[i]
        if arg in FLAG_DESTS:
            setattr(opts, FLAG_DESTS[arg], True)
            i += 1
            continue
        if arg not in VALUE_DESTS or i + 1 == len(before) or before[i + 1].startswith("-"):
            return None
        value = before[i + 1]
        if arg == "--oom-threshold":
            if not (value.isascii() and value.isdigit() and len(value) < 19):
                return None
            value = int(value)
        setattr(opts, VALUE_DESTS[arg], value)
        i += 2
    return opts


def split_argv(argv):
    """(options before the subcommand, subcommand or None, the rest untouched)."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in SUBCOMMANDS:
            return argv[:i], a, argv[i + 1:]
        if a in ("-o", "--output", "--oom-threshold"):
            i += 2
            continue
        if not a.startswith("-"):
            break
        i += 1
    return argv, None, []


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    before, command, rest = split_argv(argv)
    opts = parse_plain_options(before) if command is not None else None
    if opts is None:
        parser = top_parser()
        opts = parser.parse_args(before)
    if command is None:
        if before and not any(a.startswith("-") for a in before):
            error("unknown command %r; use one of: %s" % (before[0], ", ".join(SUBCOMMANDS)))
        parser.print_help()
        sys.exit(0 if not before else 2)
    if command == "run":
        return cmd_run(opts, rest)
    if command == "python":
        return cmd_python(rest)
    if command == "render":
        return cmd_render(opts, rest)
    if command == "install-kernel":
        from ._kernel import install_kernel_cli

        return install_kernel_cli(rest)


def check_target(mode, target):
    """A one-line error, before anything starts, for a program that cannot be run."""
    if mode == "module":
        return
    if not os.path.exists(target):
        error("can't open file %r: no such file; check the path" % target)
    if os.path.isdir(target):
        if not os.path.exists(os.path.join(target, "__main__.py")):
            error("%r is a directory without a __main__.py; give the script to run" % target)
        return
    if not os.access(target, os.R_OK):
        error("can't read file %r: permission denied" % target)


def cmd_run(opts, rest):
    if not rest or rest[0] in ("-h", "--help"):
        sys.stderr.write("usage: fil-profile [options] run (SCRIPT | -m MODULE) [ARGS...]\n")
        sys.exit(0 if rest else 2)
    if rest[0] == "-m":
        if len(rest) < 2:
            error("-m needs a module name: fil-profile run -m MODULE [ARGS...]")
        mode, target, args = "module", rest[1], rest[2:]
    elif rest[0].startswith("-m") and len(rest[0]) > 2:
        mode, target, args = "module", rest[0][2:], rest[1:]
    else:
        mode, target, args = "script", rest[0], rest[1:]
    check_target(mode, target)
    env = _env.preload_environment()
    if opts.disable_oom_detection:
        env["FIL_DISABLE_OOM_DETECTION"] = "1"
    if opts.oom_threshold is not None:
        if opts.oom_threshold < 1:
            error("--oom-threshold needs a positive number of MiB")
        env["FIL_OOM_THRESHOLD_MIB"] = str(opts.oom_threshold)
    runner = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_run.py")
    config = [opts.output, "0" if opts.no_browser else "1",
              "1" if opts.limit_thread_pools else "0", mode, target]
    cmd = _env.python_command() + [runner] + config + args
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(cmd[0], cmd, env)


def cmd_python(rest):
    env = _env.preload_environment()
    cmd = _env.python_command() + rest
    sys.stdout.flush()
    os.execve(cmd[0], cmd, env)


def cmd_render(opts, rest):
    import argparse

    p = argparse.ArgumentParser(prog="fil-profile render",
                                description="Render a collapsed-stacks file (.prof) into "
                                            "flamegraphs and index.html.")
    p.add_argument("prof", help="collapsed stacks: 'frame;frame;... BYTES' per line")
    p.add_argument("-o", "--output", metavar="DIR", default=None,
                   help="directory to write into (default: beside the .prof)")
    p.add_argument("--no-browser", action="store_true")
    a = p.parse_args(rest)
    from . import _report

    if not os.path.isfile(a.prof):
        error("can't open %r: no such file" % a.prof)
    out = a.output or os.path.dirname(os.path.abspath(a.prof))
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        error("cannot create %r: %s" % (out, e.strerror))
    try:
        index = _report.render(a.prof, out, "peak", command_line=None)
    except OSError as e:
        error("could not render %r into %r: %s" % (a.prof, out, e.strerror or e), 1)
    sys.stderr.write(PREFIX + "Wrote report to " + index + "\n")
    if not (opts.no_browser or a.no_browser):
        _report.open_in_browser(index)
