"""`python -m filprofiler ...` is the same command line as `fil-profile ...`."""
from ._cli import main

main()
