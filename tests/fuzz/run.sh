#!/usr/bin/env bash
# Fuzz the report renderer for a bounded time: builds tests/fuzz/fuzz_render.c with libFuzzer,
# AddressSanitizer and UndefinedBehaviorSanitizer (clang), and runs it over the committed seed
# corpus tests/fuzz/corpus/ (read-only: new inputs go to a scratch directory).
#
#   bash tests/fuzz/run.sh [SECONDS]      default 60; FUZZ_JOBS=N runs N workers in parallel
#
# Exit status is non-zero on a crash, a sanitizer report or a failed output check; the
# offending input is saved as build/fuzz/crash-* (reproduce: build/fuzz/fuzz_render "$PWD/FILE",
# with an absolute path, since the harness changes directory).
# FUZZ_CFLAGS adds compiler flags (e.g. -fno-sanitize=pointer-overflow to look past a known
# finding). Needs clang and its compiler-rt (Debian: apt-get install clang libclang-rt-14-dev).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN="${1:-60}"
CLANG="${CLANG:-clang}"
OUT="$PWD/build/fuzz"    # absolute: the harness chdirs into its own temporary directory
CORPUS="$PWD/tests/fuzz/corpus"
if ! command -v "$CLANG" >/dev/null 2>&1; then
  echo "fuzz: $CLANG not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
  exit 1
fi
mkdir -p "$OUT/new-corpus"
SRCS="src/render_tree.c src/render_svg.c src/render_html.c src/escape.c src/outbuf.c"
"$CLANG" -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -Isrc \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined ${FUZZ_CFLAGS:-} \
  tests/fuzz/fuzz_render.c $SRCS -lm -o "$OUT/fuzz_render"
# Every seed must pass on its own first (a quick regression check of the corpus).
"$OUT/fuzz_render" -runs=0 "$CORPUS"
cd "$OUT"    # libFuzzer writes fuzz-N.log here with FUZZ_JOBS
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
exec "$OUT/fuzz_render" -max_total_time="$SECONDS_TO_RUN" -max_len=65536 -timeout=10 \
  -rss_limit_mb=2048 -artifact_prefix="$OUT/" -print_final_stats=1 \
  ${FUZZ_JOBS:+-jobs=$FUZZ_JOBS -workers=$FUZZ_JOBS} \
  "$OUT/new-corpus" "$CORPUS"
