"""Equivalence: every way a program ends: falling off the end, sys.exit(n), sys.exit(message),
sys.exit(None), an uncaught exception with a cause, and exit from inside a finally."""
import sys

how = sys.argv[1]
print("ending by", how, flush=True)
if how == "normal":
    pass
elif how == "exit3":
    sys.exit(3)
elif how == "message":
    sys.exit("fatal: a message for the user")
elif how == "none":
    sys.exit(None)
elif how == "exception":
    def inner():
        raise KeyError("missing <key> & 'quote'")
    try:
        inner()
    except KeyError as e:
        raise RuntimeError("wrapped") from e
elif how == "finally":
    try:
        raise ValueError("lost")
    finally:
        sys.exit(7)
