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
    """The preload library, which is also the `filprofiler._filpreload` extension module."""
    import importlib.util

    spec = importlib.util.find_spec("filprofiler._filpreload")
    if spec is None or not spec.origin:
        raise FileNotFoundError("the filprofiler C library is missing; reinstall with `pip install .`")
    return os.path.realpath(spec.origin)


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
