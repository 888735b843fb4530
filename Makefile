# The one build description of the C core.
#
# `pip install .` runs `make lib` (through setup.py) to build the preload library that is also the
# Python extension module; `make test-c` builds and runs the C unit tests from the same source lists.
#
#   make lib                         build build/_filpreload.so
#   make test-c                      C unit tests
#   make test-c SANITIZE=address,undefined   the same under ASan+UBSan (or SANITIZE=thread)
#   make WERROR=1 ...                warnings are errors (CI sets it)
#   make lib CHECK_STACKS=1          a library that checks every cached stack against a full walk
#                                    and aborts on a difference (the tests build one; slow)

PYTHON ?= python3
CC ?= cc
BUILD ?= build
PY_INCLUDE ?= $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_paths()['include'])")
EXT_SUFFIX ?= .so
WERROR ?= 0
CHECK_STACKS ?= 0

CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -O2 -g -fPIC -Wall -Wextra -fvisibility=hidden \
              -fno-strict-aliasing -fexceptions -Isrc
ifeq ($(WERROR),1)
CFLAGS_BASE += -Werror
endif
ifeq ($(CHECK_STACKS),1)
CFLAGS_BASE += -DFIL_CHECK_STACKS
endif
# Link-time optimization lets the hooks, the engine and the tables inline into each other (the
# hot path crosses four files per allocation). Not with sanitizers, whose reports it blurs.
LTO = -flto=auto
ifneq ($(SANITIZE),)
LTO =
CFLAGS_BASE += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -O1
LDFLAGS_SAN = -fsanitize=$(SANITIZE)
endif

# Sources that know nothing about Python: linked into unit tests and the library alike.
CORE_SRCS = src/arena.c src/alloc_table.c src/small_map.c src/range_table.c src/callsite.c src/peak.c src/outbuf.c src/prof_write.c \
            src/prim_linux.c src/lock.c src/track.c src/oom.c
# The renderer: collapsed stacks in, SVG/HTML out. No Python, no malloc.
RENDER_SRCS = src/render_tree.c src/render_svg.c src/render_html.c src/escape.c
# Only in the shared library: the libc interposition and the Python side.
LIB_SRCS = src/hooks.c src/pystack_311.c src/pyalloc.c src/pythreads.c src/pymodule.c

CORE_OBJS = $(patsubst src/%.c,$(BUILD)/obj/%.o,$(CORE_SRCS) $(RENDER_SRCS))
LIB_OBJS = $(patsubst src/%.c,$(BUILD)/obj/%.o,$(LIB_SRCS))

LIB = $(BUILD)/_filpreload$(EXT_SUFFIX)

.PHONY: lib test-c clean
lib: $(LIB)

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(LTO) -I$(PY_INCLUDE) -I$(PY_INCLUDE)/internal -c $< -o $@

$(LIB): $(CORE_OBJS) $(LIB_OBJS)
	$(CC) -shared $(LTO) -O2 -o $@ $^ $(LDFLAGS_SAN) -Wl,--version-script=src/exports.map -Wl,-z,nodelete -ldl -lpthread

# ---- C unit tests: one binary per data structure, no framework (tests/c/testhelper.h) ----
C_TESTS = $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(wildcard tests/c/test_*.c))
# Each links the tests' stack provider (the library's is the Python stack).
$(BUILD)/tests/%: tests/c/%.c $(CORE_OBJS) tests/c/testhelper.h tests/c/stack_provider.c tests/c/stack_provider.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -Itests/c $< tests/c/stack_provider.c $(CORE_OBJS) -o $@ $(LDFLAGS_SAN) -lpthread -lm

test-c: $(C_TESTS)
	@set -e; for t in $(C_TESTS); do echo "== $$t"; $$t; done

clean:
	rm -rf $(BUILD)

# ---- Stress and sanitizer runs (tests/stress/stress.c; see its header) ----
# `make stress` builds and runs the engine-level stress: 16 threads calling the engine API
# directly, with the full operation count (STRESS_OPS per thread). `make test-c` runs it too,
# with TEST_STRESS_OPS. Sanitizer variants need their own BUILD directory, e.g.
#   make test-c SANITIZE=address,undefined BUILD=build/asan
#   make test-c SANITIZE=thread BUILD=build/tsan
STRESS_OPS ?= 1000000
ifeq ($(SANITIZE),thread)
TEST_STRESS_OPS ?= 20000
else
TEST_STRESS_OPS ?= 100000
endif
STRESS_THREADS ?= 16
STRESS_BIN = $(BUILD)/tests/stress
# Sanitizers report and fail on the first finding: a clean run is the assertion.
SAN_ENV = ASAN_OPTIONS=abort_on_error=0:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
          TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
$(C_TESTS): tests/c/rng.h
# The lock's bias moves after 16 uncontended acquisitions here, not 4096 or more, to move it often.
$(BUILD)/obj/lock_stress.o: src/lock.c $(wildcard src/*.h) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -DFIL_LOCK_QUIET_FIRST=16 -DFIL_LOCK_QUIET_MAX=16 -c $< -o $@
STRESS_OBJS = $(filter-out $(BUILD)/obj/lock.o,$(CORE_OBJS)) $(BUILD)/obj/lock_stress.o
$(STRESS_BIN): tests/stress/stress.c tests/c/rng.h $(STRESS_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -DFIL_STRESS_ENGINE $< $(STRESS_OBJS) -o $@ $(LDFLAGS_SAN) -lpthread -lm

.PHONY: stress test-stress
stress: $(STRESS_BIN)
	$(SAN_ENV) $(STRESS_BIN) $(STRESS_OPS) $(STRESS_THREADS)
test-stress: $(STRESS_BIN)
	$(SAN_ENV) $(STRESS_BIN) $(TEST_STRESS_OPS) $(STRESS_THREADS)
test-c: test-stress
