"""filprofiler: find the peak of a Python program's memory and the code that allocated it.

Run a program with ``fil-profile run script.py``; see the README for the Jupyter magic and the
``filprofiler.api`` module. The tracking itself is done by a C library preloaded into the
profiled process (``filprofiler/_filpreload*.so``).
"""

__version__ = "0.1.0"


def load_ipython_extension(ipython):
    """`%load_ext filprofiler`: registers the `%%filprofile` cell magic (Fil kernel only)."""
    from ._magic import load

    load(ipython)
