"""Equivalence: raw bytes on stdout (every byte value, invalid UTF-8, NULs), a megabyte in
one write, and the text layer mixed in after flushing."""
import sys

out = sys.stdout.buffer
out.write(bytes(range(256)))
out.write(b"\xff\xfe\x00\x00invalid utf-8: \xc3\x28 \xed\xa0\x80\n")
out.write(bytes((i * 7) % 256 for i in range(1 << 20)))
out.flush()
print("text after bytes")
