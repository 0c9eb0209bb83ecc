# Soak and concurrent streams (issue 15), included by the main Makefile (which defines VENV
# and the `build`, `envoy`, `mock` and `sdk` targets). See examples/soak/README.md and
# RELIABILITY.md.
#
#   make soak            SOAK_SECS (600) of mixed traffic through Envoy --concurrency 2 with
#                        faults, memory sampled every 10 s; fails on growth over 4 MiB after
#                        the 120 s warm-up, on books that do not balance, on anything left in
#                        flight or a probe slot held at rest (~10.5 min)
#   make soak-smoke      the same for 50 s (20 s warm-up, 15 s fault cycles); in make test (~55 s)
#   make streams-1000    1,000 concurrent slow streams (20 s each) through the filter, the
#                        empty filter, bare Envoy and the filter with 64 KiB prompts: memory
#                        per in-flight stream, all end, all cancelled (~2.5 min)
#   make streams-smoke   200 streams (8 s each) through the filter: all end, all cancelled;
#                        in make test (~17 s)
#
# Client: Python asyncio with the HTTP client of the pinned openai SDK (httpx2, `make sdk`).

SOAK_PY   := $(VENV)/bin/python examples/soak/soak.py
SOAK_SECS ?= 600

.PHONY: soak soak-smoke streams-1000 streams-smoke

soak: build envoy mock sdk
	SOAK_SECS=$(SOAK_SECS) $(SOAK_PY) soak

soak-smoke: build envoy mock sdk
	$(SOAK_PY) soak --smoke

streams-1000: build envoy mock sdk bench-modules
	$(SOAK_PY) streams

streams-smoke: build envoy mock sdk
	$(SOAK_PY) streams --smoke
