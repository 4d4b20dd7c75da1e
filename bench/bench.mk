# bench/bench.mk -- build and run the comparison against hnswlib and FAISS,
# and turn every CSV in bench/out/ into the recall/QPS table and plot.
#
# Included by the top-level Makefile (its last line), so it sees $(BUILD),
# $(LDLIBS_LIB), $(PYTHON) and $(DATA_DIR).  It is a separate fragment
# because the baselines are C++ and need -march=native, -fopenmp and
# libfaiss, none of which belong in the library's build.  The program is
# bench/baselines.cpp (not .c) so that the Makefile's $(BUILD)/bench/%
# pattern rule for C benchmarks never matches it.
#
#   make bench-baselines   build + run hnswlib and FAISS on GloVe-100
#                          -> bench/out/baselines.csv (10-17 minutes: 17 on a
#                          busy 2-core box, mostly the two hnswlib builds)
#   make bench-report      every bench/out/*.csv -> bench/out/table.md and
#                          bench/out/recall_qps.png (QPS at fixed recall@10,
#                          ratios to "avq")
#   BASELINE_ARGS="--quick --nq 2000" make bench-baselines   a smoke run
#   make bench-living      the living index (issue 12): incremental adds into a
#                          quantizer trained on half the data, 30 % removals,
#                          search while a writer adds/removes 5,000 vectors/s,
#                          each against a full build in the same run (about
#                          5 minutes; LIVING_ARGS=--quick: about a minute)

BENCH_CXX      ?= g++
BENCH_CXXFLAGS ?= -O3 -march=native -std=c++17 -fopenmp -Wall -Wextra -Wno-unused-parameter
BENCH_OUT      ?= bench/out
GLOVE_DIR      ?= $(DATA_DIR)/glove-100
BASELINE_ARGS  ?=
BASELINES      = $(BUILD)/bench/baselines
LIVING_ARGS    ?=

.PHONY: bench-baselines bench-report bench-living

# Standalone on purpose (reads .fvecs/.ivecs itself): the baseline numbers
# never depend on the state of libavq.  Debian ships FAISS as a static
# library; it needs OpenMP (-fopenmp) and BLAS/LAPACK (OpenBLAS has both).
$(BASELINES): bench/baselines.cpp
	@mkdir -p $(dir $@)
	$(BENCH_CXX) $(BENCH_CXXFLAGS) -o $@ $< -lfaiss $(LDLIBS_LIB)

bench-baselines: $(BASELINES)
	@test -f $(GLOVE_DIR)/base.fvecs || { echo "bench-baselines: $(GLOVE_DIR)/base.fvecs missing: run 'make data' first" >&2; exit 1; }
	@mkdir -p $(BENCH_OUT)
	$(BASELINES) --base $(GLOVE_DIR)/base.fvecs --query $(GLOVE_DIR)/query.fvecs \
	    --gt $(GLOVE_DIR)/gt_cos.ivecs --k 10 --csv $(BENCH_OUT)/baselines.csv \
	    --timer $(BENCH_TIMER) --runs $(BENCH_RUNS) --cache $(BENCH_OUT) --hnsw-fine $(BASELINE_ARGS)

bench-report:
	@ls $(BENCH_OUT)/*.csv >/dev/null 2>&1 || { echo "bench-report: no CSV in $(BENCH_OUT)/: run the benchmarks first" >&2; exit 1; }
	$(PYTHON) bench/report.py $(BENCH_OUT)/*.csv --png $(BENCH_OUT)/recall_qps.png --md $(BENCH_OUT)/table.md

# bench/living.c is built by the Makefile's $(BUILD)/bench/% rule (libavq +
# the CLI's dataset readers).
bench-living: $(BUILD)/bench/living
	@test -f $(GLOVE_DIR)/base.fvecs || { echo "bench-living: $(GLOVE_DIR)/base.fvecs missing: run 'make data' first" >&2; exit 1; }
	$(BUILD)/bench/living --base $(GLOVE_DIR)/base.fvecs --query $(GLOVE_DIR)/query.fvecs \
	    --gt $(GLOVE_DIR)/gt_cos.ivecs $(LIVING_ARGS)
