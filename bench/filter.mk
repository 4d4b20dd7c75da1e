# bench/filter.mk -- filtered search (issue 13): avq's tag filters against native
# FAISS with an IDSelector / post-filtering and hnswlib with post-filtering, on
# GloVe-100 (cosine) with synthetic tags, interleaved in one run.
#
# Included by the top-level Makefile (`-include bench/filter.mk`), after
# bench/bench.mk and bench/mips.mk, so it sees $(BUILD), $(CLI), $(PYTHON),
# $(DATA_DIR); the defaults below repeat what it needs from those fragments.
#
#   make bench-filter     data (tags, query subset, exact filtered ground truth;
#                         cached in $(DATA_DIR)/cache/filter/), the indexes
#                         (baselines cached there too), every system's sweep per
#                         case and selectivity, the planner's crossover ladder
#                         -> bench/out/filter/filter.{md,csv}
#   FILTER_ARGS="--quick"            a smoke run (small grids, one round)
#   FILTER_ARGS="--nq 300 --runs 1"  fewer queries / rounds
#   (bench/filter.py --help lists every option)
#
# The avq side (bench/filter_avq.c) is built by the Makefile's $(BUILD)/bench/%
# rule (libavq + the CLI's readers, the library's ordinary flags).  The baselines
# (bench/filter_baselines.cpp) get -march=native and link the FAISS of
# bench/faiss_native.sh by its full path (never Debian's generic libfaiss: the
# program refuses a build without AVX2); hnswlib is Debian's header-only 0.6.2.

BENCH_CXX        ?= g++
FAISS_NATIVE_DIR ?= $(DATA_DIR)/cache/faiss-native
FILTER_FAISS     ?= $(FAISS_NATIVE_DIR)/current
FILTER_CXXFLAGS  ?= -O3 -march=native -std=c++17 -fopenmp -Wall -Wextra -Wno-unused-parameter
FILTER_ARGS      ?=
FILTER_OUT       ?= bench/out/filter
FILTER_BASELINES = $(BUILD)/bench/filter_baselines
FILTER_AVQ       = $(BUILD)/bench/filter_avq

.PHONY: bench-filter

$(FILTER_BASELINES): bench/filter_baselines.cpp
	@test -f $(FILTER_FAISS)/BUILDINFO || { echo "bench-filter: no native FAISS in $(FILTER_FAISS): run 'make faiss-native' first" >&2; exit 1; }
	@mkdir -p $(dir $@)
	$(BENCH_CXX) $(FILTER_CXXFLAGS) -I$(FILTER_FAISS)/include -o $@ $< \
	    $$(sed -n 's/^lib=//p' $(FILTER_FAISS)/BUILDINFO) -lopenblas -lpthread -lm

bench-filter: $(CLI) $(FILTER_AVQ) $(FILTER_BASELINES)
	@test -f $(DATA_DIR)/glove-100/base.fvecs || { echo "bench-filter: $(DATA_DIR)/glove-100 missing: run 'make data' first" >&2; exit 1; }
	$(PYTHON) bench/filter.py --data-dir $(DATA_DIR) --out $(FILTER_OUT) --avq $(CLI) \
	    --filter-avq $(FILTER_AVQ) --baselines $(FILTER_BASELINES) \
	    --faiss-info $(FILTER_FAISS)/BUILDINFO $(FILTER_ARGS)
