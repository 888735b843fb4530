"""Equivalence: what the program can see of how it was started: sys.argv, __file__,
sys.path[0], __name__ and the other module attributes of __main__, the interpreter, signal
dispositions, threads, and the environment (LD_PRELOAD must be the user's own)."""
import os
import signal
import sys
import threading

main = sys.modules["__main__"]
print("argv", sys.argv)
print("file", __file__, os.path.isabs(__file__))
print("path0", sys.path[0])
print("name", __name__, main is sys.modules[__name__], globals() is vars(main))
print("package", __package__, "spec", __spec__, "cached", __cached__)
print("loader", type(__loader__).__name__, "doc", repr(__doc__[:20]))
print("builtins", type(__builtins__).__name__)
print("executable", sys.executable, "prefix", sys.prefix)
print("flags", sys.flags, sys.warnoptions)
print("recursion", sys.getrecursionlimit(), "threads", threading.active_count())
print("stdio", sys.stdin.encoding, sys.stdout.encoding, sys.stdout.line_buffering,
      sys.stdout.isatty())
for name in ("SIGINT", "SIGTERM", "SIGPIPE", "SIGXFSZ", "SIGCHLD", "SIGHUP"):
    print("signal", name, signal.getsignal(getattr(signal, name)))
print("cwd", os.getcwd())
print("LD_PRELOAD", os.environ.get("LD_PRELOAD"))
for key in sorted(os.environ):
    print("env", key, os.environ[key])
