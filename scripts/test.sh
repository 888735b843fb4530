#!/usr/bin/env bash
# The whole test suite, from a fresh machine: system packages, a virtualenv, the package built
# with warnings as errors, the C unit tests (plain, ASan+UBSan, TSan), a bounded fuzzing run of
# the renderer and the pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-packages.sh
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -r requirements-test.txt
FIL_WERROR=1 .venv/bin/pip install -q --force-reinstall --no-deps .
PY=.venv/bin/python
echo "== C unit tests"
make -s test-c WERROR=1 PYTHON=$PY
echo "== C unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
make -s test-c WERROR=1 PYTHON=$PY SANITIZE=address,undefined BUILD=build/asan
echo "== C unit tests under ThreadSanitizer"
make -s test-c WERROR=1 PYTHON=$PY SANITIZE=thread BUILD=build/tsan
echo "== Fuzzing the report renderer (60 s)"
mkdir -p build
if bash tests/fuzz/run.sh 60 > build/fuzz.log 2>&1; then
  grep -E "^stat::number_of_executed_units|^Done" build/fuzz.log || true
else
  tail -60 build/fuzz.log
  echo "fuzzing found a problem: the input is saved under build/fuzz/ (see tests/fuzz/run.sh)"
  exit 1
fi
echo "== End-to-end tests"
# pytest exits 5 when it collected no tests: with `set -e` that fails the run, as it should.
# The pytest script, not `python -m pytest`: that would put the source tree, whose filprofiler/
# has no compiled library, ahead of the installed package on sys.path.
.venv/bin/pytest tests -q -p no:cacheprovider "$@"
