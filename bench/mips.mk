# bench/mips.mk -- true maximum inner product search (raw, un-normalised vectors):
# avq against a FAISS compiled for this CPU, interleaved in one run.
#
# Included by the top-level Makefile (`-include bench/mips.mk`, its last line),
# so it sees $(BUILD), $(CLI), $(PYTHON), $(DATA_DIR) and, from bench/bench.mk,
# $(BENCH_CXX), $(GLOVE_DIR).
#
#   make faiss-native     build FAISS from Debian's source package at its AVX2 /
#                         AVX-512 opt level into $(FAISS_NATIVE_DIR) (once; about 3
#                         minutes on 2 busy cores, niced; bench/faiss_native.sh)
#   make bench-mips       GloVe-100 raw vectors, ground truth gt_ip.ivecs:
#                         avq (ip defaults), avq-recon (--threshold none) and
#                         native FAISS IVF{sqrt n},PQ{d/2}x4fs + refine; QPS at
#                         recall@10 0.90 / 0.95 and the ratios avq / FAISS
#                         -> bench/out/mips/glove-100.{csv,md}
#   make bench-mips-synth the same on the synthetic MIPS set (200k x 64, Gaussian
#                         mixture x log-normal norms; generated on first use)
#   MIPS_ARGS="--quick"   a smoke run (small grid, 2000 random queries, screening only)
#
# Debian's libfaiss-dev is never linked here: mips_faiss refuses a library
# compiled without AVX2.  Only the C++ program gets -march=native (as FAISS
# itself does); libavq is the ordinary build.

BENCH_CXX        ?= g++
GLOVE_DIR        ?= $(DATA_DIR)/glove-100
FAISS_NATIVE_DIR ?= $(DATA_DIR)/cache/faiss-native
FAISS_NATIVE     = $(FAISS_NATIVE_DIR)/current
MIPS_FAISS       = $(BUILD)/bench/mips_faiss
MIPS_CXXFLAGS   ?= -O3 -march=native -std=c++17 -fopenmp -Wall -Wextra -Wno-unused-parameter
MIPS_ARGS       ?=
MIPS_OUT        ?= bench/out/mips

.PHONY: faiss-native bench-mips bench-mips-synth

faiss-native:
	DATA_DIR=$(DATA_DIR) FAISS_NATIVE_DIR=$(FAISS_NATIVE_DIR) bash bench/faiss_native.sh

$(FAISS_NATIVE)/BUILDINFO:
	DATA_DIR=$(DATA_DIR) FAISS_NATIVE_DIR=$(FAISS_NATIVE_DIR) bash bench/faiss_native.sh

# The native headers come first on the include path (-I is searched before
# /usr/include, where Debian's faiss headers live) and the library is linked
# by its full path, so -lfaiss (Debian's) can never be picked up.
$(MIPS_FAISS): bench/mips_faiss.cpp $(FAISS_NATIVE)/BUILDINFO
	@mkdir -p $(dir $@)
	$(BENCH_CXX) $(MIPS_CXXFLAGS) -I$(FAISS_NATIVE)/include -o $@ $< \
	    $$(sed -n 's/^lib=//p' $(FAISS_NATIVE)/BUILDINFO) -lopenblas -lpthread -lm

bench-mips: $(CLI) $(BUILD)/bench/recall_qps $(MIPS_FAISS)
	@test -f $(GLOVE_DIR)/gt_ip.ivecs || { echo "bench-mips: $(GLOVE_DIR)/gt_ip.ivecs missing: run 'make data' first" >&2; exit 1; }
	$(PYTHON) bench/mips.py --dataset glove --data-dir $(DATA_DIR) --out $(MIPS_OUT) \
	    --avq $(CLI) --recall-qps $(BUILD)/bench/recall_qps --faiss $(MIPS_FAISS) \
	    --faiss-info $(FAISS_NATIVE)/BUILDINFO $(MIPS_ARGS)

bench-mips-synth: $(CLI) $(BUILD)/bench/recall_qps $(MIPS_FAISS)
	$(PYTHON) bench/mips.py --dataset synth --data-dir $(DATA_DIR) --out $(MIPS_OUT) \
	    --avq $(CLI) --recall-qps $(BUILD)/bench/recall_qps --faiss $(MIPS_FAISS) \
	    --faiss-info $(FAISS_NATIVE)/BUILDINFO $(MIPS_ARGS)
