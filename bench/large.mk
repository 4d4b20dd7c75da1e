# bench/large.mk -- the scale set (issue 15): 2M sentence-like vectors made from
# the GloVe words, and avq against native FAISS on it.
#
# Included by the top-level Makefile, so it sees $(CLI), $(PYTHON), $(DATA_DIR)
# and, from bench/mips.mk, the native FAISS build and its benchmark program.
#
#   make data-large       derive DATA_DIR/sif-2m-100 from GloVe: 2,000,000 SIF
#                         sentence vectors + 10,000 queries + exact top-100 cosine
#                         ground truth, checksummed (doc/DATA.md; ~5-10 minutes,
#                         about 1 GB; needs `make data`)
#   make bench-large      avq (cosine defaults) against native FAISS IVF-PQ fast scan
#                         + refine on sif-2m, interleaved, one thread, one query per
#                         call -> bench/out/large/sif-2m-100.{csv,md} (~30 minutes)
#   LARGE_ARGS="--quick"  a smoke run of bench-large (small grid, screening only)

LARGE_ARGS ?=
LARGE_OUT  ?= bench/out/large

.PHONY: data-large bench-large

data-large: $(CLI) data
	AVQ_BIN=$(abspath $(CLI)) DATA_DIR=$(DATA_DIR) $(PYTHON) scripts/data.py sif-2m

bench-large: $(CLI) $(BUILD)/bench/recall_qps $(MIPS_FAISS) $(FAISS_NATIVE)/BUILDINFO
	@test -f $(DATA_DIR)/sif-2m-100/gt_cos.ivecs || { echo "bench-large: run 'make data-large' first" >&2; exit 1; }
	$(PYTHON) bench/mips.py --dataset sif --data-dir $(DATA_DIR) --out $(LARGE_OUT) \
	    --max-fraction 0.16 --screen-nq 1000 --nq 2000 --runs 2 --targets 0.90,0.95,0.99 \
	    --avq $(CLI) --recall-qps $(BUILD)/bench/recall_qps --faiss $(MIPS_FAISS) \
	    --faiss-info $(FAISS_NATIVE)/BUILDINFO $(LARGE_ARGS)
