"""How a profiled process is launched: the preload library, and the environment that carries it.

Kept in one place so that the launcher (_cli), the runner (_run) and the Jupyter kernel agree.
On Linux the library is injected with LD_PRELOAD; a macOS port changes this file.
"""
import os
import sys

PRELOAD_VAR = "LD_PRELOAD"
# The user's own LD_PRELOAD before we added ours: "unset" or "set:VALUE". The library puts it
# back as soon as it is loaded (prim_restore_user_environment in src/prim_linux.c), before
# Python starts, so the program and its subprocesses see the environment they would without us.
SAVED_VAR = "_FIL_SAVED_LD_PRELOAD"


def library_path():
    """The preload library, which is also the `filprofiler._filpreload` extension module: the
    file the import system would load, found as it would (the package's directories in order,
    extension suffixes in order, before any source), without importing it here nor
    importlib.util, which would cost the launcher more than all its other imports."""
    from importlib.machinery import EXTENSION_SUFFIXES

    import filprofiler

    for directory in filprofiler.__path__:
        for suffix in EXTENSION_SUFFIXES:
            path = os.path.join(directory, "_filpreload" + suffix)
            if os.path.isfile(path):
                return os.path.realpath(path)
    raise FileNotFoundError("the filprofiler C library is missing; reinstall with `pip install .`")


def preload_environment(base=None):
    """A copy of the environment with the library preloaded."""
    env = dict(os.environ if base is None else base)
    lib = library_path()
    old = env.get(PRELOAD_VAR)
    env[SAVED_VAR] = "unset" if old is None else "set:" + old
    env[PRELOAD_VAR] = lib if not old else lib + ":" + old
    return env


def python_command():
    return [sys.executable]
