# arm64.mk -- AArch64: the cross build from x86-64 and its test under
# emulation (issue 20).  Included from the Makefile.
#
#   make arm64        build-arm64/libavq.a, cross-compiled (NEON kernels)
#   make test-arm64   the kernel, index and persistence tests of the C suite,
#                     cross-built and run under qemu-aarch64, including the
#                     index files written on x86-64 (see below)
#   make test-shim    the same suites built for this x86-64 host against the
#                     Criterion stand-in (first step of test-arm64)
#   make arm64-bench  build-arm64/bench/scan, static, for a real ARM machine
#
# Needs Debian's gcc-aarch64-linux-gnu, qemu-user and the arm64 multiarch
# libc6 and OpenBLAS: scripts/deps_arm64.sh installs exactly that.
#
# qemu-aarch64 runs WITHOUT -L: the dynamic loader and libc.so.6 must be
# one glibc build.  With -L /usr/aarch64-linux-gnu qemu took
# ld-linux-aarch64.so.1 from the cross package (libc6-arm64-cross,
# 2.36-8cross1) but, through the loader's search path, libc.so.6 from the
# multiarch libc6:arm64 (2.36-9+deb12u14; OpenBLAS pulls it in), and that
# mismatched pair hangs in pthread_create and fork (a five-line
# pthread_create program never returns).  Without -L both come from
# libc6:arm64.  That hang is what made every threaded test and OpenBLAS's
# thread pool "hang under qemu", and the fork hang the one first blamed on
# Criterion's runner.
#
# Criterion is still not used for the arm64 binary: libcriterion3:arm64
# cannot be installed beside the amd64 one (its libnanomsg5 is not
# Multi-Arch: same: dpkg removes the amd64 Criterion).  The same test files
# are compiled against tests/criterion_shim/, a small stand-in for the part
# of Criterion's API they use (tests run one after another in one process,
# the same assertions, "N passed, N failed, N skipped").  `make test-shim`
# runs the same suites built for x86-64 against the shim first (test-arm64
# depends on it), so a failure that is the test's or the shim's shows up
# there, not as a port bug.  Each qemu run is bounded by ARM64_TIMEOUT
# seconds, so a hang fails the target instead of stalling CI.
#
# OpenBLAS runs single-threaded under qemu (OPENBLAS_NUM_THREADS=1): its
# threads only add emulation work on a shared 2-core machine.
#
# A native build on an aarch64 machine is the plain `make`: the Makefile's
# architecture test picks src/simd/*_neon.c and no x86 flag.  This file is
# for the cross build only; its objects go to $(ARM64_BUILD), never build/.
#
# What runs under qemu (ARM64_TESTS): the kernels against the scalar
# reference (test_scan: every shape the x86 kernels are tested on), packing,
# top-k, the index build/search/save/load suite, the short-leaf cases and
# the golden files.  The golden test runs twice: on the committed v1 files
# of tests/golden (written on x86-64 by avq 0.1.0), and on a set written
# just now by today's library built natively on this x86-64 host
# (tests/golden/make_golden.c into $(ARM64_BUILD)/x86-written): both must
# load in every mode and give the recorded ids exactly, scores to 1e-5.
# The suites that drive the CLI's dataset code (HDF5) or long stress runs
# are left to the native test run: emulation is ~20x slower.

ARM64_CROSS   ?= aarch64-linux-gnu-
ARM64_CC      ?= $(ARM64_CROSS)gcc
ARM64_BUILD   ?= build-arm64
ARM64_TIMEOUT ?= 900
ARM64_QEMU    ?= OPENBLAS_NUM_THREADS=1 timeout $(ARM64_TIMEOUT) qemu-aarch64
ARM64_TESTS   ?= scan pack topk index short_leaves golden
# globs ("suite/name") of tests in ARM64_TESTS not run under qemu (the
# shim's --skip); empty: all.  .ci/run skips the slowest index tests.
ARM64_SKIP    ?=

ARM64_LIB_SRC = $(wildcard src/*.c) $(wildcard src/simd/*_neon.c)
ARM64_LIB_OBJ = $(patsubst %.c,$(ARM64_BUILD)/%.o,$(ARM64_LIB_SRC))
ARM64_TEST_OBJ = $(patsubst %,$(ARM64_BUILD)/tests/test_%.o,$(ARM64_TESTS)) \
                 $(ARM64_BUILD)/tests/criterion_shim/runner.o
ARM64_STATIC  = $(ARM64_BUILD)/libavq.a
ARM64_TEST_BIN = $(ARM64_BUILD)/test_avq
# the same language, warning and visibility flags as the native build, and
# nothing x86-specific (the SIMD file needs no flag: NEON is baseline)
ARM64_CFLAGS  = -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -fPIC -fvisibility=hidden \
                -Iinclude -Isrc $(CFLAGS)

.PHONY: arm64 test-arm64 arm64-check-tools

arm64-check-tools:
	@command -v $(ARM64_CC) >/dev/null 2>&1 || \
	    { echo "arm64: $(ARM64_CC) not found: run scripts/deps_arm64.sh" >&2; exit 1; }
	@test -e /usr/lib/aarch64-linux-gnu/libopenblas.so || \
	    { echo "arm64: no arm64 OpenBLAS: run scripts/deps_arm64.sh" >&2; exit 1; }
	@test -e /lib/ld-linux-aarch64.so.1 || \
	    { echo "arm64: no arm64 multiarch libc6 (qemu's loader): run scripts/deps_arm64.sh" >&2; exit 1; }

$(ARM64_BUILD)/%.o: %.c | arm64-check-tools
	@mkdir -p $(dir $@)
	$(ARM64_CC) $(ARM64_CFLAGS) -MMD -MP -c $< -o $@

$(ARM64_BUILD)/tests/%.o: tests/%.c | arm64-check-tools
	@mkdir -p $(dir $@)
	$(ARM64_CC) $(ARM64_CFLAGS) -Itests/criterion_shim -MMD -MP -c $< -o $@

-include $(wildcard $(ARM64_BUILD)/src/*.d $(ARM64_BUILD)/src/simd/*.d $(ARM64_BUILD)/tests/*.d \
                    $(ARM64_BUILD)/tests/criterion_shim/*.d)

$(ARM64_STATIC): $(ARM64_LIB_OBJ)
	@rm -f $@
	$(ARM64_CROSS)ar rcs $@ $^

arm64: $(ARM64_STATIC)

# The fast-scan micro-benchmark for a real ARM machine (bench/README.md):
# linked statically (bench/scan needs no OpenBLAS), so the one file can be
# copied to any aarch64 Linux and run there; timings under qemu mean nothing.
ARM64_BENCH = $(ARM64_BUILD)/bench/scan
$(ARM64_BENCH): bench/scan.c $(ARM64_STATIC)
	@mkdir -p $(dir $@)
	$(ARM64_CC) $(ARM64_CFLAGS) -Itools -static -o $@ $< $(ARM64_STATIC) -lpthread -lm

.PHONY: arm64-bench
arm64-bench: $(ARM64_BENCH)

# OpenBLAS and libc are the multiarch ones the cross linker finds itself.
$(ARM64_TEST_BIN): $(ARM64_TEST_OBJ) $(ARM64_STATIC)
	$(ARM64_CC) -o $@ $(ARM64_TEST_OBJ) $(ARM64_STATIC) -lopenblas -lpthread -lm

# Index files written on this x86-64 host by today's library.
$(ARM64_BUILD)/make_golden_x86: tests/golden/make_golden.c $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -Iinclude $< $(STATIC_LIB) $(LDLIBS_LIB) -o $@

$(ARM64_BUILD)/x86-written/.done: $(ARM64_BUILD)/make_golden_x86
	rm -rf $(dir $@) && mkdir -p $(dir $@)
	$< $(dir $@) >/dev/null
	@touch $@

# The same suites, built for this x86-64 host against the same shim and
# run natively (seconds): a failure there is the test's or the shim's, not
# aarch64's.  It runs first in test-arm64 so that such a failure is not
# mistaken for a port bug -- the golden test's uninitialised
# avq_search_params (its struct_size was whatever the shim's stack held, 21)
# failed here and under qemu alike, never under Criterion.
ARM64_SHIM_NATIVE = $(ARM64_BUILD)/native-shim
ARM64_SHIM_NATIVE_OBJ = $(patsubst $(ARM64_BUILD)/%,$(ARM64_SHIM_NATIVE)/%,$(ARM64_TEST_OBJ))
ARM64_SHIM_NATIVE_BIN = $(ARM64_SHIM_NATIVE)/test_avq

$(ARM64_SHIM_NATIVE)/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -Iinclude -Isrc -Itests/criterion_shim $(CFLAGS) \
	    -MMD -MP -c $< -o $@

-include $(wildcard $(ARM64_SHIM_NATIVE)/tests/*.d $(ARM64_SHIM_NATIVE)/tests/criterion_shim/*.d)

$(ARM64_SHIM_NATIVE_BIN): $(ARM64_SHIM_NATIVE_OBJ) $(STATIC_LIB)
	$(CC) -o $@ $(ARM64_SHIM_NATIVE_OBJ) $(STATIC_LIB) $(LDLIBS_LIB)

.PHONY: test-shim
test-shim: $(ARM64_SHIM_NATIVE_BIN)
	$(ARM64_SHIM_NATIVE_BIN)

# The kernels are checked against scalar in both ISAs the binary has
# (AVQ_ISA does not matter for test_scan: it compares every table, and on
# aarch64 it fails if the neon one is missing); the index suites run on the
# default choice, neon.
test-arm64: test-shim $(ARM64_TEST_BIN) $(ARM64_BUILD)/x86-written/.done
	$(ARM64_QEMU) $(ARM64_TEST_BIN) --jobs=2 $(foreach g,$(ARM64_SKIP),--skip '$(g)')
	AVQ_GOLDEN_DIR=$(ARM64_BUILD)/x86-written $(ARM64_QEMU) $(ARM64_TEST_BIN) --jobs=2 --filter 'golden/*'

.PHONY: arm64-clean
clean: arm64-clean
arm64-clean:
	rm -rf $(ARM64_BUILD)
