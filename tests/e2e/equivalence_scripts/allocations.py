"""Equivalence: a program that computes with a fair amount of memory (lists, dicts, strings,
bytearrays, freed and reallocated) and prints results that depend on all of it."""
import hashlib
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
squares = [i * i for i in range(n)]
table = {str(i): i for i in range(n)}
blob = bytearray(b"x") * (8 << 20)
for i in range(0, len(blob), 4096):
    blob[i] = i % 251
digest = hashlib.sha256(blob).hexdigest()
del blob
text = ",".join(map(str, squares[:50_000]))
chunks = [bytes(1000 + i % 3000) for i in range(2000)]
print(sum(squares) % 1_000_003, len(table), digest, len(text), sum(map(len, chunks)))
