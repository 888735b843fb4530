#!/usr/bin/env bash
# The whole test suite, from a fresh machine: system packages, a virtualenv, the package built
# with warnings as errors, the C unit tests (plain, ASan+UBSan, TSan), a bounded fuzzing run of
# the renderer, the pytest suite, and the end-to-end suite again on a self-checking build.
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
echo "== End-to-end tests again, against a library that checks every cached stack by a full walk"
# The same package built with CHECK_STACKS=1 into build/checked, found first through PYTHONPATH
# by the tests and the processes they profile: a stack the cache gets wrong stops the program.
rm -rf build/checked
FIL_WERROR=1 FIL_CHECK_STACKS=1 .venv/bin/pip install -q --no-deps --target build/checked .
PYTHONPATH="$PWD/build/checked" .venv/bin/python -P -c "import sys, filprofiler._env as e
p = e.library_path()
sys.exit(0 if '/build/checked/' in p else 'the self-checking build is not the one found: ' + p)"
PYTHONPATH="$PWD/build/checked" .venv/bin/pytest tests/e2e -q -p no:cacheprovider "$@"
