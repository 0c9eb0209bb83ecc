# Benchmarks, included by the main Makefile (which defines ENVOY, WASM, MOCK and the `build`,
# `envoy` and `mock` targets). See examples/bench/README.md and BENCHMARKS.md.
#
#   make bench          full run (~11 min on 2 cores): target/bench/results.json and the
#                       generated tables in BENCHMARKS.md
#   make bench-smoke    every code path of the harness for a second or two (~40 s); asserts
#                       nothing about speed; ends with "bench-smoke: N passed, N failed"
#   make bench-litellm  LiteLLM proxy on the same mock: throughput and the outage scenario
#                       (~5 min, plus a one-time pip install into .venv-litellm); never in CI
#
# Load generator: wrk, the Debian package (installed here when missing).

BENCH_PY      := python3 examples/bench/bench.py
LITELLM_VENV  := .venv-litellm
LITELLM_BIN   := $(LITELLM_VENV)/bin/litellm
# The proxy extra of newer releases pins a package the registry here lacks; this resolves
# to 1.108.x (see BENCHMARKS.md for the version measured).
LITELLM_PKG   ?= litellm[proxy]
SUDO          := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: bench bench-smoke bench-litellm bench-render bench-wrk

bench-wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "installing wrk (Debian package)"; \
	  $(SUDO) apt-get install -y wrk >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update >/dev/null && $(SUDO) apt-get install -y wrk; }; }

bench: build envoy mock bench-wrk
	$(BENCH_PY) run

bench-smoke: build envoy mock bench-wrk
	$(BENCH_PY) smoke

$(LITELLM_BIN):
	python3 -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --quiet --disable-pip-version-check '$(LITELLM_PKG)'

bench-litellm: build envoy mock bench-wrk $(LITELLM_BIN)
	$(BENCH_PY) litellm

# Regenerate BENCHMARKS.md's tables from target/bench/*.json without measuring.
bench-render:
	$(BENCH_PY) render
