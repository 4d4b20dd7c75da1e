# tests/tsan.mk -- ThreadSanitizer run of the living-index stress test,
# included by the top Makefile (`-include tests/tsan.mk`).
#
#   make tsan                       build + run for $(TSAN_SECONDS) s (default 30)
#   make tsan TSAN_SECONDS=120      a longer run
#   make tsan-build                 only build $(TSAN_BUILD)/test_stress
#   make tsan-clean                 remove $(TSAN_BUILD)
#
# The library is rebuilt from the same sources as the main build (the
# top Makefile's rules, re-entered with BUILD=$(TSAN_BUILD) and
# SANITIZE=-fsanitize=thread), so every object -- the SIMD kernels too --
# is instrumented.  tests/test_stress.c is compiled with -DAVQ_STRESS_MAIN
# into a standalone program: Criterion's runner is not instrumented and
# would only add noise.
#
# OpenBLAS is not instrumented either: its worker threads are invisible to
# TSan (their accesses look like races with nothing, or hide real ones), so
# the run pins it to the calling thread (OPENBLAS_NUM_THREADS=1).  Any
# report is fatal (halt_on_error=1), and the exit code is TSan's (66).

TSAN_BUILD   ?= build-tsan
TSAN_SECONDS ?= 30
TSAN_FLAGS    = -fsanitize=thread -fno-omit-frame-pointer
TSAN_ENV      = OPENBLAS_NUM_THREADS=1 \
                TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4 $(TSAN_OPTIONS)" \
                AVQ_STRESS_SECONDS=$(TSAN_SECONDS)

.PHONY: tsan tsan-build tsan-clean tsan-stress-bin

tsan: tsan-build
	$(TSAN_ENV) $(TSAN_BUILD)/test_stress

tsan-build:
	$(MAKE) --no-print-directory BUILD=$(TSAN_BUILD) SANITIZE="$(TSAN_FLAGS)" OPT="-O1 -g" tsan-stress-bin

# Only meaningful inside the sub-make above (BUILD = $(TSAN_BUILD)).
tsan-stress-bin: $(BUILD)/test_stress

# compiled and linked in one step; its header dependencies (-MMD) go to
# test_stress.d beside it
$(BUILD)/test_stress: tests/test_stress.c $(STATIC_LIB) $(BUILD)/test_stress.d
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(DEPFLAGS) -MF $@.d -DAVQ_STRESS_MAIN -o $@ $< $(STATIC_LIB) $(LDLIBS_LIB)

$(BUILD)/test_stress.d:
-include $(wildcard $(BUILD)/test_stress.d)

tsan-clean:
	rm -rf $(TSAN_BUILD)
