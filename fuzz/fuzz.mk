# Loader fuzzer: placeholder until the harness lands (issue 7).
fuzz:
	@echo "fuzz: not built yet" >&2; exit 1
