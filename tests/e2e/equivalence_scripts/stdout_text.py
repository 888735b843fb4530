"""Equivalence: text on stdout and stderr, interleaved, with non-ASCII, long lines and no
trailing newline; output from an atexit handler and from a thread."""
import atexit
import sys
import threading

atexit.register(lambda: print("atexit handler ran"))
print("hello, wörld ✓ — ünïcödé")
print("tab\tseparated\tvalues", "\N{SNOWMAN}" * 10)
sys.stderr.write("a line on stderr\n")
for i in range(2000):
    print(i, "x" * (i % 97))
print("a very long line " * 5000)
t = threading.Thread(target=lambda: print("from a thread", flush=True))
t.start()
t.join()
sys.stdout.write("no trailing newline")
