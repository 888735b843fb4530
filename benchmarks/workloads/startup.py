"""Startup: an interpreter that imports numpy and exits.

Measures each tool's fixed cost (launch, preload, report writing) and gives the baseline the harness subtracts from
the reported peak of workloads with a known true peak: the interpreter's and numpy's own memory is real, but no
workload can know it to the byte, and it differs per tool (Python's allocator may be switched).
"""

import numpy  # noqa: F401  (the import is the workload)
