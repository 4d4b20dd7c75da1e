# fuzz/fuzz.mk -- the loader fuzzer (libFuzzer), included by the top Makefile.
#
#   make fuzz                      build + fuzz for $(FUZZ_SECONDS) s (default 60)
#   make fuzz FUZZ_SECONDS=600     a longer run
#   make fuzz-build                only build $(FUZZ_BUILD)/fuzz_load
#   make fuzz-corpus               regenerate the format-2 seed corpus fuzz/corpus-v2/
#                                  (deterministic; fuzz/corpus/ keeps avq 0.1's v1 files;
#                                  the format-3 (tagged) seeds fuzz/corpus-v3/ come from
#                                  tests/test_filter_io.c, see its header)
#   make fuzz-clean                remove $(FUZZ_BUILD) (objects, binary, working corpus)
#   AVQ_FUZZ_LENIENT=1 make fuzz   memory safety only: skip the consistency checks of
#                                  fuzz_load.c (to fuzz past a known inconsistency)
#
# The library is rebuilt from the same sources as the main build (LIB_SRC,
# with the per-ISA flags of src/simd/) by clang with ASan + UBSan and the
# libFuzzer coverage instrumentation, into its own directory $(FUZZ_BUILD).
# UBSan does not recover: any undefined behaviour is a crash.  The fuzzer
# runs on a working corpus $(FUZZ_BUILD)/corpus (not committed) seeded from
# fuzz/corpus/ (format 1, written by avq 0.1), fuzz/corpus-v2/ (format 2:
# changed indexes with dead slots, empty, emptied and quantizer-only files),
# fuzz/corpus-v3/ (format 3: tagged indexes, damaged tag lists)
# and fuzz/regressions/ + fuzz/regressions-v2/; crash reproducers go to
# fuzz/crashes/ (ignored by git: copy one into fuzz/regressions-v2/, which
# tests/test_living_io.c replays -- fuzz/regressions/ is tests/test_corpus.c's).
# One job only: the machine is shared.

FUZZ_CC      ?= clang
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_ARGS    ?=
# Every UBSan check is fatal.
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_ENV      = UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
FUZZ_CFLAGS   = -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) -Wno-error -fPIC -fvisibility=hidden \
                -Iinclude -Isrc $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_OBJ      = $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(LIB_SRC))
FUZZ_BIN      = $(FUZZ_BUILD)/fuzz_load
FUZZ_HEADERS  = $(wildcard include/*.h src/*.h)

.PHONY: fuzz fuzz-build fuzz-corpus fuzz-clean

$(FUZZ_BUILD)/src/%.o: src/%.c $(FUZZ_HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/src/simd/%_avx2.o: src/simd/%_avx2.c $(FUZZ_HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(AVX2_FLAGS) -c $< -o $@

$(FUZZ_BUILD)/src/simd/%_avx512.o: src/simd/%_avx512.c $(FUZZ_HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(AVX512_FLAGS) -c $< -o $@

$(FUZZ_BIN): fuzz/fuzz_load.c fuzz/avq_file.h $(FUZZ_OBJ)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Ifuzz -fsanitize=fuzzer -o $@ fuzz/fuzz_load.c $(FUZZ_OBJ) $(LDLIBS_LIB)

fuzz-build: $(FUZZ_BIN)

# -rss_limit_mb: a header may legitimately ask for a large search scratch.
fuzz: $(FUZZ_BIN)
	@mkdir -p $(FUZZ_BUILD)/corpus fuzz/crashes fuzz/regressions
	cp -n fuzz/corpus/* $(FUZZ_BUILD)/corpus/ 2>/dev/null || true
	cp -n fuzz/corpus-v2/* $(FUZZ_BUILD)/corpus/ 2>/dev/null || true
	cp -n fuzz/corpus-v3/* $(FUZZ_BUILD)/corpus/ 2>/dev/null || true
	cp -n fuzz/regressions/* $(FUZZ_BUILD)/corpus/ 2>/dev/null || true
	cp -n fuzz/regressions-v2/* $(FUZZ_BUILD)/corpus/ 2>/dev/null || true
	$(FUZZ_ENV) $(FUZZ_BIN) $(FUZZ_BUILD)/corpus -dict=fuzz/avq.dict \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
	    -print_final_stats=1 -artifact_prefix=fuzz/crashes/ $(FUZZ_ARGS)

# The seed corpus: small valid index files built from fixed seeds, plus
# truncated and mutated ones (with valid checksums).  Built with the normal
# library, which writes format 2 only: the v1 files of fuzz/corpus/ are
# never regenerated.  Rerun only when the format changes.
$(BUILD)/fuzz/make_corpus: fuzz/make_corpus.c fuzz/avq_file.h $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Ifuzz -o $@ $< $(STATIC_LIB) $(LDLIBS_LIB)

fuzz-corpus: $(BUILD)/fuzz/make_corpus
	@mkdir -p fuzz/corpus-v2
	$(BUILD)/fuzz/make_corpus fuzz/corpus-v2

fuzz-clean:
	rm -rf $(FUZZ_BUILD)
