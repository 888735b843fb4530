#!/usr/bin/env bash
# Installs the Debian packages the tests need, only those missing: a C/C++ toolchain, gfortran
# (Fortran ALLOCATE tests), chromium (report rendering in a real browser) and clang with
# libFuzzer (the renderer's fuzzer).
# Uses apt-get directly as root, sudo otherwise; says what to install when it can do neither.
set -euo pipefail
need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
command -v gfortran >/dev/null 2>&1 || need+=(gfortran)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need+=(python3-venv)
# The renderer's fuzzer (tests/fuzz): clang with its libFuzzer runtime.
command -v clang >/dev/null 2>&1 || need+=(clang)
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || need+=(libclang-rt-14-dev)
[ ${#need[@]} -eq 0 ] && exit 0
echo "Installing Debian packages: ${need[*]}"
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
  echo "Please install these packages (as root): apt-get install ${need[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
