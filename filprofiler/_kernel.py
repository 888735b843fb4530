"""The "Python 3 with Fil" Jupyter kernel: its kernelspec, installing it, and starting it.

The kernelspec (filprofiler/kernelspec/kernel.json, kernel name `filprofile`) is installed with
the package into <sys.prefix>/share/jupyter/kernels/filprofile, where a Jupyter running from the
same environment finds it. Its command is

    python -m filprofiler python -m filprofiler._kernel -f {connection_file}

that is, `fil-profile python` (the interpreter with the Fil library preloaded, not tracking)
running this module, which starts ipykernel. Jupyter replaces a leading "python" with its own
interpreter. `fil-profile install-kernel` writes the same spec with this environment's
interpreter spelled out, for a Jupyter that runs from another environment.

Started as the kernel (`python -m filprofiler._kernel`), this module gives back the user's own
LD_PRELOAD, so that programs the notebook starts (`!python job.py`, subprocess) do not run under
the profiler, and hands over to ipykernel as `python -m ipykernel_launcher` would.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

KERNEL_NAME = "filprofile"
PREFIX = "=fil-profile= "


def kernelspec_dir():
    """The directory of the packaged kernelspec (kernel.json and any logos)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernelspec")


def kernelspec(python):
    """The kernelspec as a dict, with `python` as the interpreter to start."""
    with open(os.path.join(kernelspec_dir(), "kernel.json"), encoding="utf-8") as f:
        spec = json.load(f)
    spec["argv"] = [python] + spec["argv"][1:]
    return spec


def _error(message):
    sys.stderr.write(PREFIX + "error: " + message + "\n")
    sys.exit(1)


def install_kernel_cli(argv):
    """`fil-profile install-kernel [--user | --sys-prefix | --prefix DIR]`; default --user."""
    p = argparse.ArgumentParser(
        prog="fil-profile install-kernel",
        description="Install the \"Python 3 with Fil\" Jupyter kernel (kernel name %r), which runs "
                    "notebooks with the profiler loaded so %%%%filprofile can profile a cell. "
                    "Installing the package already puts it into this environment's "
                    "share/jupyter/kernels; use this when Jupyter runs from another environment."
                    % KERNEL_NAME)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true",
                       help="for the current user, seen by every Jupyter they run (the default)")
    where.add_argument("--sys-prefix", action="store_true",
                       help="into this environment (%s)" % sys.prefix)
    where.add_argument("--prefix", metavar="DIR",
                       help="into DIR/share/jupyter/kernels (Jupyter finds it if DIR is one of "
                            "its data prefixes)")
    a = p.parse_args(argv)
    import importlib.util

    missing = [m for m in ("ipykernel", "jupyter_client") if importlib.util.find_spec(m) is None]
    if missing:
        _error("the kernel needs %s in this environment (%s); install with "
               "`pip install ipykernel`" % (" and ".join(missing), sys.prefix))
    from jupyter_client.kernelspec import KernelSpecManager

    prefix = a.prefix or (sys.prefix if a.sys_prefix else None)
    tmp = tempfile.mkdtemp(prefix="filprofile-kernel-")
    try:
        for name in os.listdir(kernelspec_dir()):
            if name != "kernel.json":
                shutil.copy(os.path.join(kernelspec_dir(), name), tmp)
        with open(os.path.join(tmp, "kernel.json"), "w", encoding="utf-8") as f:
            json.dump(kernelspec(sys.executable), f, indent=1)
            f.write("\n")
        try:
            dest = KernelSpecManager().install_kernel_spec(
                tmp, KERNEL_NAME, user=prefix is None, prefix=prefix)
        except OSError as e:
            _error("could not install the kernel: %s: %s" % (e.filename or "", e.strerror or e))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.stderr.write(PREFIX + "Installed the \"%s\" kernel in %s\n"
                     % (kernelspec(sys.executable)["display_name"], dest))
    return 0


def _launch():
    """Inside the kernel process (the library has already given back the user's LD_PRELOAD):
    run ipykernel."""
    from . import _filpreload

    if not _filpreload.preloaded():
        sys.stderr.write(PREFIX + "warning: the Fil library is not preloaded in this kernel; "
                         "%%filprofile will not be available. Start it with "
                         "`fil-profile python -m filprofiler._kernel`.\n")
    # As ipykernel_launcher does: the working directory is not a source of modules for the
    # kernel itself (IPython puts it back on sys.path for the notebook's code).
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    _launch()
