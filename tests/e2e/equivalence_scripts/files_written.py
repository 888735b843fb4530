"""Equivalence: files the program writes, appends, renames and removes in its working
directory (the test compares the directory afterwards, byte for byte)."""
import json
import os

with open("text.txt", "w") as f:
    f.write("line 1\nline 2 ünïcödé\n")
with open("binary.bin", "wb") as f:
    f.write(bytes(range(256)) * 1000)
os.makedirs("nested/deeper", exist_ok=True)
with open("nested/deeper/data.json", "w") as f:
    json.dump({"a": [1, 2, 3], "b": None}, f, sort_keys=True)
with open("text.txt", "a") as f:
    f.write("appended\n")
with open("temp.txt", "w") as f:
    f.write("to be removed")
os.remove("temp.txt")
with open("before.txt", "w") as f:
    f.write("renamed")
os.rename("before.txt", "after.txt")
print(sorted(os.listdir(".")))
