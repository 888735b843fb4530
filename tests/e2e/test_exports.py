"""The preload library exports exactly the symbols it means to (src/exports.map), nothing else.

A preloaded library's every exported symbol interposes on the whole process: an internal helper
that leaked out under a common name (`hash_bytes`, `grow`, ...) could silently replace a
function of the same name in the profiled program or in an extension. The build uses hidden
visibility and the version script src/exports.map; this test reads the intended list from that
map and compares it with what the dynamic symbol table of the installed library really defines.
"""
import importlib.util
import os
import re
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXPORTS_MAP = os.path.join(HERE, "..", "..", "src", "exports.map")


def intended_exports():
    """The names listed under `global:` in the version script."""
    with open(EXPORTS_MAP) as f:
        text = re.sub(r"/\*.*?\*/", " ", f.read(), flags=re.S)   # comments
    m = re.search(r"global:(.*?)local:", text, re.S)
    assert m, "no global:/local: sections in exports.map"
    names = {n.strip() for n in m.group(1).split(";")}
    names.discard("")
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in names), names
    return names


def exported_symbols(lib):
    """Names defined in lib's dynamic symbol table (version suffixes removed)."""
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True, capture_output=True,
                         text=True).stdout
    names = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            names.add(fields[2].split("@")[0])
    return names


def library_path():
    spec = importlib.util.find_spec("filprofiler._filpreload")
    assert spec is not None and spec.origin, "filprofiler._filpreload is not installed"
    return os.path.realpath(spec.origin)


@pytest.mark.skipif(shutil.which("nm") is None, reason="nm (binutils) is not installed")
def test_exports_are_exactly_the_map():
    lib = library_path()
    exported = exported_symbols(lib)
    intended = intended_exports()
    assert exported - intended == set(), "exported but not meant to be: %s" % sorted(exported - intended)
    assert intended - exported == set(), "meant to be exported but missing: %s" % sorted(intended - exported)


def test_map_lists_the_essentials():
    """The map itself keeps the entry points the profiler cannot work without."""
    names = intended_exports()
    for essential in ("malloc", "free", "calloc", "realloc", "mmap", "munmap", "mremap",
                      "pthread_create", "_Znwm", "_ZdlPv", "PyInit__filpreload"):
        assert essential in names
