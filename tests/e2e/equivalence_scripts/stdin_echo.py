"""Equivalence: the program reads all of stdin (bytes) and answers from it."""
import hashlib
import sys

data = sys.stdin.buffer.read()
print(len(data), hashlib.sha256(data).hexdigest())
sys.stdout.buffer.write(data[::-1][:1000])
print()
lines = data.split(b"\n")
print(len(lines), lines[0][:50])
