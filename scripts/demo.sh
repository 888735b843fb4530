#!/usr/bin/env bash
# The demo: set up a virtualenv with the profiler and numpy, then profile the bundled job.
# The report directory is printed at the end (and opened in a browser where there is one).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q numpy .
.venv/bin/fil-profile run examples/demo_job.py
