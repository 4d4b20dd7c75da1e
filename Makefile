# avq -- GNU Makefile.  `make help` lists every target with one line each:
# it reads the "#   make TARGET   what it does" lines of this header and of
# each included fragment's header (the first line of a description counts),
# for every target declared .PHONY; keep one such line per new target.
#
#   make            static + shared libavq and the avq CLI (in build/)
#   make all        static + shared libavq and the avq CLI (what plain `make` builds)
#   make help       this list of targets
#   make paper      build/avq-paper, the paper's experiment (not part of the CLI)
#   make paper-plot run it: doc/img/paper.png (Recall1@N curves) and its table
#   make test       all tests: Criterion unit tests, then pytest (CLI, Python)
#   make unit-test  the Criterion unit tests only (build/test_avq --jobs=2)
#   make py-test    the pytest suite only (tests/*.py: CLI, Python, packaging)
#   make check      the same tests built with AddressSanitizer + UBSan
#   make ci         the whole CI contract (.ci/run): test, check, AVQ_ISA
#                   variants, tsan, fuzz, format check
#   make format-check  clang-format-14 --dry-run on the files kept formatted
#   make WERROR=1   any of the above with warnings as errors (CI does)
#   make bench      benchmarks: micro, avq sweep, baselines, report + plot
#                   (needs the GloVe data: fetched on first use; the
#                   baselines need `scripts/deps.sh --bench`)
#   make bench-micro  the kernel micro-benchmarks (scan, train)
#   make bench-avq  avq's recall/QPS sweep on GloVe-100 -> bench/out/avq.csv
#   make bench-faiss-native  the FAISS baseline linked with the native FAISS build
#                   (bench/faiss_native.sh) -> bench/out/faiss_native.csv
#   make bench-frontier-png  bench/out/*.csv -> doc/img/frontier.png (the
#                   README's picture: avq, native FAISS, hnswlib)
#   make demo       the main job on the default GloVe data
#   make data       fetch and prepare the default data sets into $(DATA_DIR)
#   make install    PREFIX=/usr/local: header, libraries, CLI, pkg-config file
#                   (its Libs carry -rpath, so programs run without
#                   LD_LIBRARY_PATH; not the Python module: install-python)
#   make uninstall  remove exactly the files `make install` put in PREFIX
#   make install-python  pip-install the Python module for $(PYTHON) (offline)
#                   (a venv: PYTHON=venv/bin/python; or PIP_ARGS=--user)
#   make uninstall-python  pip-uninstall it from the same environment
#   make clean      remove every build directory
#   make tsan-stress-bin  internal: the sub-make step of `make tsan` (tests/tsan.mk)
#
# Warnings are errors only on request: `make WERROR=1` (CI sets it, see
# .ci/run), so that a newer compiler's new warning cannot break a user's
# build.  Header dependencies come from the compiler (-MMD -MP: one .d file
# beside each object, included below), so an object is rebuilt when a
# header it includes changes, and only then.
#
# The library is compiled for baseline x86-64 (or any other CPU); only the
# files in src/simd/ get ISA flags (-mavx2, -mavx512*), and the kernel is
# chosen at run time (src/cpu.c).  Never add a build-machine -march flag here.
#
# The avq CLI (tools/) is a client of the public header alone: its objects
# are compiled without -Isrc and it links the shared library, which exports
# nothing but the AVQ_API functions, so a use of an internal function fails
# to build.  It finds build/libavq.so.0 at run time through an RPATH of
# $ORIGIN (its own directory; $ORIGIN/../lib once installed), which the
# loader searches before LD_LIBRARY_PATH and the system directories: a
# libavq installed elsewhere is never picked up instead (and the CLI checks
# the version it got).  The research program avq-paper (tools/cmd_paper.c)
# drives internal encoders and links the static library instead.

CC      ?= gcc
PYTHON  ?= /usr/bin/python3
PREFIX  ?= /usr/local
BUILD   ?= build
DATA_DIR ?= $(CURDIR)/data

HDF5_CFLAGS := $(shell pkg-config --cflags hdf5 2>/dev/null)
HDF5_LIBS   := $(shell pkg-config --libs hdf5 2>/dev/null || echo -lhdf5)

WERROR  ?=
WARN     = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
ifeq ($(WERROR),1)
  WARN  += -Werror
endif
DEPFLAGS = -MMD -MP
OPT     ?= -O2 -g
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -fPIC -fvisibility=hidden \
             -Iinclude -Isrc $(SANITIZE) $(CFLAGS)
LDLIBS_LIB = -lopenblas -lpthread -lm

ARCH := $(shell $(CC) -dumpmachine)
ifneq (,$(findstring x86_64,$(ARCH)))
  AVX2_FLAGS   = -mavx2 -mfma -mbmi -mbmi2 -mpopcnt
  AVX512_FLAGS = -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vbmi -mavx512vnni -mfma -mbmi -mbmi2 -mpopcnt
  SIMD_SRC = $(wildcard src/simd/*_avx2.c) $(wildcard src/simd/*_avx512.c)
else ifneq (,$(findstring aarch64,$(ARCH)))
  # NEON is the AArch64 baseline: no flag (cross build and qemu test: arm64.mk)
  SIMD_SRC = $(wildcard src/simd/*_neon.c)
else
  SIMD_SRC =
endif

LIB_SRC   = $(wildcard src/*.c) $(SIMD_SRC)
LIB_OBJ   = $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
# tools/: the CLI (avq.c + commands + dataset readers) and avq-paper
PAPER_SRC = tools/cmd_paper.c tools/avq_paper.c
PAPER_OBJ = $(patsubst %.c,$(BUILD)/%.o,$(PAPER_SRC))
TOOL_SRC  = $(filter-out $(PAPER_SRC),$(wildcard tools/*.c))
TOOL_OBJ  = $(patsubst %.c,$(BUILD)/%.o,$(TOOL_SRC))
# the CLI's modules without its main(): linked into the unit tests, the
# benchmarks and avq-paper (with the static library)
TOOL_LIB_OBJ = $(filter-out $(BUILD)/tools/avq.o,$(TOOL_OBJ))
TEST_SRC  = $(wildcard tests/*.c)
TEST_OBJ  = $(patsubst %.c,$(BUILD)/%.o,$(TEST_SRC))
BENCH_SRC = $(wildcard bench/*.c)
BENCH_BIN = $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
# the micro benchmarks that run without arguments (the others take files)
BENCH_MICRO = $(BUILD)/bench/scan $(BUILD)/bench/train

STATIC_LIB = $(BUILD)/libavq.a
SHARED_LIB = $(BUILD)/libavq.so
SONAME_LINK = $(BUILD)/libavq.so.0
CLI        = $(BUILD)/avq
PAPER_BIN  = $(BUILD)/avq-paper
TEST_BIN   = $(BUILD)/test_avq

# The tools see include/ and tools/ only (no -Isrc: see the top).
TOOL_CFLAGS = -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -Iinclude -Itools $(SANITIZE) $(CFLAGS) \
              $(HDF5_CFLAGS)
# RPATH (not RUNPATH: --disable-new-dtags) so that it also wins over
# LD_LIBRARY_PATH.
CLI_RPATH = -Wl,--disable-new-dtags,-rpath,'$$ORIGIN:$$ORIGIN/../lib'

.PHONY: all help test unit-test py-test check ci format-check bench bench-micro bench-avq demo data install \
        uninstall install-python uninstall-python clean paper paper-plot fuzz python

all: $(STATIC_LIB) $(SHARED_LIB) $(SONAME_LINK) $(CLI)

# Each object depends on its .d file too: an object built before its .d
# existed (a tree from before -MMD) is rebuilt once, so that no header
# change can be missed; the empty rule below makes a missing .d "new".
$(BUILD)/%.o: %.c $(BUILD)/%.d
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(DEPFLAGS) $(HDF5_CFLAGS) -c $< -o $@

$(BUILD)/tools/%.o: tools/%.c $(BUILD)/tools/%.d
	@mkdir -p $(dir $@)
	$(CC) $(TOOL_CFLAGS) $(DEPFLAGS) -c $< -o $@

# the one tools/ file that uses internal headers (avq-paper only)
$(BUILD)/tools/cmd_paper.o: tools/cmd_paper.c $(BUILD)/tools/cmd_paper.d
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(DEPFLAGS) $(HDF5_CFLAGS) -Itools -c $< -o $@

$(BUILD)/src/simd/%_avx2.o: src/simd/%_avx2.c $(BUILD)/src/simd/%_avx2.d
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(DEPFLAGS) $(AVX2_FLAGS) -c $< -o $@

$(BUILD)/src/simd/%_avx512.o: src/simd/%_avx512.c $(BUILD)/src/simd/%_avx512.d
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(DEPFLAGS) $(AVX512_FLAGS) -c $< -o $@

DEP_FILES = $(patsubst %.o,%.d,$(LIB_OBJ) $(TOOL_OBJ) $(PAPER_OBJ) $(TEST_OBJ)) \
            $(patsubst %,%.d,$(BENCH_BIN))
$(DEP_FILES):
-include $(wildcard $(DEP_FILES))

$(STATIC_LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(SHARED_LIB): $(LIB_OBJ)
	$(CC) -shared $(SANITIZE) -Wl,-soname,libavq.so.0 -o $@ $^ $(LDLIBS_LIB)

# the name the loader looks for (the soname)
$(SONAME_LINK): $(SHARED_LIB)
	ln -sf $(notdir $<) $@

# Linked by path, so that no other libavq.so on the linker's search path
# can stand in for this one.
$(CLI): $(TOOL_OBJ) $(SHARED_LIB) $(SONAME_LINK)
	$(CC) $(SANITIZE) -o $@ $(TOOL_OBJ) $(SHARED_LIB) $(CLI_RPATH) $(HDF5_LIBS) -ldl -lm

# The paper's experiment (tools/cmd_paper.c): internal API, static library.
$(PAPER_BIN): $(PAPER_OBJ) $(TOOL_LIB_OBJ) $(STATIC_LIB)
	$(CC) $(SANITIZE) -o $@ $(PAPER_OBJ) $(TOOL_LIB_OBJ) $(STATIC_LIB) $(HDF5_LIBS) $(LDLIBS_LIB)

paper: $(PAPER_BIN)

# The paper experiment's default run and its picture, committed as
# doc/img/paper.png (README.md, doc/RESULTS.md); the table goes to
# bench/out/paper/paper.csv (not bench/out/: bench-report reads every CSV there).  Two to three minutes on two cores.
paper-plot: $(PAPER_BIN)
	@mkdir -p bench/out/paper doc/img
	$(PAPER_BIN) --threads 2 --csv bench/out/paper/paper.csv --plot doc/img/paper.png

# The unit tests link the static library and the CLI's helper modules
# (dataset readers etc.), so internal functions can be tested directly.
$(TEST_BIN): $(TEST_OBJ) $(TOOL_LIB_OBJ) $(STATIC_LIB)
	$(CC) $(SANITIZE) -o $@ $(TEST_OBJ) $(TOOL_LIB_OBJ) $(STATIC_LIB) -lcriterion $(HDF5_LIBS) $(LDLIBS_LIB)

$(BUILD)/bench/%: bench/%.c $(STATIC_LIB) $(TOOL_LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(DEPFLAGS) -MF $@.d $(HDF5_CFLAGS) -Itools -o $@ $< $(TOOL_LIB_OBJ) $(STATIC_LIB) $(HDF5_LIBS) $(LDLIBS_LIB)

test: unit-test py-test

unit-test: $(TEST_BIN) $(CLI)
	$(TEST_BIN) --jobs=2

py-test: $(CLI) $(SHARED_LIB) $(PAPER_BIN) python
	AVQ_BIN=$(abspath $(CLI)) AVQ_PAPER_BIN=$(abspath $(PAPER_BIN)) $(PYTHON) -m pytest -q tests

check:
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp $(MAKE) BUILD=build-sanitize SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" OPT="-O1 -g" test

# The CI contract, as CI runs it (a fresh clone: bash .ci/run).
ci:
	bash .ci/run

# clang-format-14 (Debian 12's; other versions format differently) on the
# files that are formatted to .clang-format -- not every file: see there
# why.  Skipped with a message when clang-format-14 is not installed.
CLANG_FORMAT   ?= clang-format-14
FORMAT_CHECKED  = src/cpu.c src/cpu.h src/util.c src/topk.h bench/train.c \
                  tests/test_mips.c tests/test_index.c tests/test_corpus.c
format-check:
	@if ! command -v $(CLANG_FORMAT) >/dev/null 2>&1; then \
	    echo "format-check: $(CLANG_FORMAT) is not installed: skipped"; \
	else \
	    $(CLANG_FORMAT) --dry-run --Werror $(FORMAT_CHECKED) && \
	    echo "format-check: $(words $(FORMAT_CHECKED)) files formatted as .clang-format says"; \
	fi

# The whole comparison takes a while (hnswlib builds dominate); each part
# can be run alone: bench-micro, bench-avq, bench-baselines, bench-report.
bench: bench-micro bench-avq bench-baselines bench-faiss-native bench-report bench-frontier-png

bench-micro: $(BENCH_BIN)
	@for b in $(BENCH_MICRO); do echo "== $$b"; $$b || exit 1; done

# One timer and number of passes for avq and the baselines, so that their
# rows compare: BENCH_TIMER=cpu ignores time stolen by other load.
BENCH_TIMER ?= wall
BENCH_RUNS  ?= 3

bench-avq: $(CLI) $(BUILD)/bench/recall_qps data
	AVQ_BIN=$(abspath $(CLI)) AVQ_RECALL_QPS=$(abspath $(BUILD)/bench/recall_qps) \
	    $(PYTHON) bench/avq_sweep.py --csv bench/out/avq.csv --timer $(BENCH_TIMER) --runs $(BENCH_RUNS)

data: $(CLI)
	AVQ_BIN=$(abspath $(CLI)) DATA_DIR=$(DATA_DIR) $(PYTHON) scripts/data.py glove

demo: $(CLI)
	AVQ_BIN=$(abspath $(CLI)) DATA_DIR=$(DATA_DIR) $(PYTHON) scripts/demo.py

# The pkg-config file, for this PREFIX (rewritten every time: PREFIX may
# differ from the last run).  Its Libs add -Wl,-rpath,${libdir}, so that a
# program linked with `pkg-config --libs avq` finds libavq.so.0 at run time
# without LD_LIBRARY_PATH or ldconfig (see README.md, "Installing").
AVQ_VERSION = $(shell sed -n 's/^\#define AVQ_VERSION_MAJOR //p' include/avq.h).$(shell sed -n 's/^\#define AVQ_VERSION_MINOR //p' include/avq.h).$(shell sed -n 's/^\#define AVQ_VERSION_PATCH //p' include/avq.h)
PC_FILE = $(BUILD)/avq.pc
.PHONY: $(PC_FILE)
$(PC_FILE): avq.pc.in
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(AVQ_VERSION)|' $< > $@

# What `make install` writes, relative to $(DESTDIR)$(PREFIX): `make
# uninstall` removes exactly these (directories stay: they may be shared).
INSTALLED = include/avq.h lib/libavq.a lib/libavq.so.0 lib/libavq.so \
            lib/pkgconfig/avq.pc bin/avq

install: all $(PC_FILE)
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/avq.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(STATIC_LIB) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(SHARED_LIB) $(DESTDIR)$(PREFIX)/lib/libavq.so.0
	ln -sf libavq.so.0 $(DESTDIR)$(PREFIX)/lib/libavq.so
	install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(PC_FILE) $(DESTDIR)$(PREFIX)/lib/pkgconfig/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/,$(INSTALLED))

# The Python module is per interpreter, so `make install` leaves it alone.
# pip builds it from the repository root (pyproject.toml, setup.py) with the
# setuptools and numpy already installed (no build isolation, no index: works
# offline).  Debian's /usr/bin/python3 refuses to be changed by pip outside
# a venv (PEP 668): use PYTHON=/path/to/venv/bin/python, or PIP_ARGS=--user
# / PIP_ARGS="--prefix DIR".
PIP_ARGS ?=
install-python:
	$(PYTHON) -m pip install --no-build-isolation --no-deps --no-index $(PIP_ARGS) $(CURDIR)

uninstall-python:
	$(PYTHON) -m pip uninstall -y avq

# `make help` (see the top): every .PHONY target of the Makefile and the
# included fragments, with the first "#   make TARGET  text" line found.
HELP_FILES = $(filter Makefile %.mk,$(MAKEFILE_LIST))
help:
	@$(MAKE) --no-print-directory -pRrq -f $(firstword $(MAKEFILE_LIST)) : 2>/dev/null | \
	    sed -n 's/^\.PHONY: //p' | tr ' ' '\n' | grep -v -e '^$$' -e / | sort -u | \
	    awk 'FNR == NR { want[$$1] = 1; next } \
	         /^#   make [a-z][a-z0-9_-]*( |$$)/ { cur = ""; t = $$3; if (t in want && !(t in desc)) { \
	             d = $$0; sub(/^#   make [^ ]* */, "", d); desc[t] = d; order[++n] = t; cur = t }; next } \
	         cur != "" && /^#     +[^ ]/ { d = $$0; sub(/^# +/, "", d); desc[cur] = desc[cur] " " d; next } \
	         { cur = "" } \
	         END { for (i = 1; i <= n; i++) { d = desc[order[i]]; \
	                   if (length(d) > 92) { d = substr(d, 1, 92); sub(/ [^ ]*$$/, "", d); d = d " ..." } \
	                   printf "  make %-18s %s\n", order[i], d } \
	               for (t in want) if (!(t in desc)) printf "  make %-18s (no description)\n", t }' \
	        - $(HELP_FILES)

clean:
	rm -rf build build-sanitize build-clang build-fuzz build-tsan

# Benchmarks against other libraries (C++ parts, baselines) live in their own
# fragment so they can evolve without touching the core build.
-include bench/bench.mk

# The Python extension module (python/python.mk: target `python`) and the
# loader fuzzer (fuzz/fuzz.mk: target `fuzz`) each own their fragment.
include python/python.mk
include fuzz/fuzz.mk

# ThreadSanitizer stress test of the living index (tests/tsan.mk: `make tsan`).
-include tests/tsan.mk

# True-MIPS benchmark and the natively built FAISS baseline (bench/mips.mk).
-include bench/mips.mk

# Filtered search against native FAISS and hnswlib (bench/filter.mk: `make bench-filter`).
-include bench/filter.mk

# The 2M scale set and its benchmark (bench/large.mk: `make data-large`, `make bench-large`).
-include bench/large.mk

# AArch64 cross build and its test under qemu (arm64.mk: `make test-arm64`).
-include arm64.mk

# The FAISS baseline of `make bench` once more, linked with the FAISS that
# bench/faiss_native.sh builds for this CPU (`make faiss-native`, rule in
# bench/mips.mk) instead of Debian's generic libfaiss: the same program,
# index (IVF2048,PQ50x4fs + exact refine) and sweep, its rows renamed
# faiss-native.  (The program's "Debian's libfaiss" note does not apply to
# this build.)  Here at the end because $(FAISS_NATIVE) comes from
# bench/mips.mk.  The native headers come first on the include path and the
# library is linked by its full path, so Debian's -lfaiss is never used.
BASELINES_NATIVE = $(BUILD)/bench/baselines-native
FRONTIER_SYSTEMS = avq,avq-recon,faiss-native,hnswlib-M16,hnswlib-M32
$(BASELINES_NATIVE): bench/baselines.cpp $(FAISS_NATIVE)/BUILDINFO
	@mkdir -p $(dir $@)
	$(BENCH_CXX) $(BENCH_CXXFLAGS) -DAVQ_FAISS_NATIVE -I$(FAISS_NATIVE)/include -o $@ $< \
	    $$(sed -n 's/^lib=//p' $(FAISS_NATIVE)/BUILDINFO) $(LDLIBS_LIB)

# The native FAISS is swept at several list counts and the report keeps, per
# target recall, its best setting over all of them: 576 (avq's own leaf count
# on GloVe, sqrt(n)) and 1024 as issue 15 asks, and the 2048 of the Debian
# row.  On GloVe the fewer lists are the faster ones at 0.90-0.95 (doc/RESULTS.md).
NATIVE_NLISTS ?= 576 1024 2048
.PHONY: bench-faiss-native bench-frontier-png
bench-faiss-native: $(BASELINES_NATIVE)
	@test -f $(GLOVE_DIR)/base.fvecs || { echo "bench-faiss-native: $(GLOVE_DIR)/base.fvecs missing: run 'make data' first" >&2; exit 1; }
	@mkdir -p $(BENCH_OUT)
	for nl in $(NATIVE_NLISTS); do \
	    $(BASELINES_NATIVE) --systems faiss --base $(GLOVE_DIR)/base.fvecs --query $(GLOVE_DIR)/query.fvecs \
	        --gt $(GLOVE_DIR)/gt_cos.ivecs --k 10 --csv $(BENCH_OUT)/faiss_native.$$nl.tmp --nlist $$nl \
	        --timer $(BENCH_TIMER) --runs $(BENCH_RUNS) --faiss-fine $(BASELINE_ARGS) || exit 1; \
	done
	awk 'FNR > 1 || NR == 1' $(foreach nl,$(NATIVE_NLISTS),$(BENCH_OUT)/faiss_native.$(nl).tmp) | \
	    sed 's/^faiss-ivfpqfs,/faiss-native,/' > $(BENCH_OUT)/faiss_native.csv
	rm -f $(BENCH_OUT)/faiss_native.*.tmp

# The committed picture (doc/img/frontier.png, shown in README.md and
# doc/RESULTS.md) from the same CSVs as bench-report.
bench-frontier-png:
	@ls $(BENCH_OUT)/*.csv >/dev/null 2>&1 || { echo "bench-frontier-png: no CSV in $(BENCH_OUT)/: run the benchmarks first" >&2; exit 1; }
	$(PYTHON) bench/report.py $(BENCH_OUT)/*.csv --small --plot-systems $(FRONTIER_SYSTEMS) \
	    --png doc/img/frontier.png >/dev/null
-include mpi/mpi.mk
