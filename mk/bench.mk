# Benchmarks, included by the main Makefile (which defines ENVOY, WASM, MOCK and the `build`,
# `envoy` and `mock` targets). See examples/bench/README.md and BENCHMARKS.md.
#
#   make bench          full run (~16 min on 2 cores, the stream part ~4 of them):
#                       target/bench/results.json and the generated tables in BENCHMARKS.md
#   make bench-smoke    every code path of the harness for a second or two (~1-1.5 min); asserts
#                       nothing about speed; ends with "bench-smoke: N passed, N failed"
#   make bench-peers    LiteLLM proxy and Portkey's gateway beside Envoy and the filter on the
#                       same mock: throughput and the outage scenario (~11 min, plus one-time
#                       installs into .venv-litellm and .tools/portkey); never in CI
#   make bench-litellm  the old name of bench-peers (kept as an alias)
#   make bench-exports  the export trimming alone (~5 min): bare Envoy, the empty filter and
#                       the filter, each module with every SDK export and with only those of
#                       src/adapter/exports.txt, 10 interleaved repetitions:
#                       target/bench/results-exports.json and its table in BENCHMARKS.md
#   make bench-stream   the stream part of make bench alone (~5 min): 200-chunk streams through
#                       bare Envoy, the empty filter and the filter, and the non-streaming
#                       success path against the filter before stream judging (bench-base)
#   make bench-modules  the modules those cases compare (target/bench/modules/)
#   make bench-before-after [BASE=305c66c]
#                       the success path of BASE's release module (built by its own `make
#                       build` in a temporary worktree, mk/base-module.sh) and of this one,
#                       beside bare Envoy and the empty filter, 10 interleaved repetitions
#                       (~5 min, plus the base's build once): target/bench/results-before-after.json
#                       and its table in BENCHMARKS.md
#   make bench-base     the filter as of $(BENCH_BASE), the commit before stream judging
#                       entered the exchange (f14141e), built from `git archive` under
#                       target/bench/base-src/ and post-processed like the release module:
#                       make bench compares the non-streaming success path with it
#
# Load generator: wrk, the Debian package (installed here when missing).

BENCH_PY      := python3 examples/bench/bench.py
LITELLM_VENV  := .venv-litellm
LITELLM_BIN   := $(LITELLM_VENV)/bin/litellm
# The proxy extra of newer releases pins a package the registry here lacks; this resolves
# to 1.108.x (see BENCHMARKS.md for the version measured).
LITELLM_PKG   ?= litellm[proxy]
# Portkey's open-source gateway from npm, the version pinned (with every dependency, by
# integrity hash) in examples/bench/portkey/package-lock.json; installed without running
# install scripts into .tools/portkey, never globally.
PORTKEY_SRC   := examples/bench/portkey
PORTKEY_DIR   := .tools/portkey
PORTKEY_JS    := $(PORTKEY_DIR)/node_modules/@portkey-ai/gateway/build/start-server.js

.PHONY: bench bench-translate bench-smoke bench-peers bench-litellm bench-render bench-wrk bench-modules \
        bench-exports bench-base bench-stream bench-before-after-module bench-before-after portkey

# The modules the filter is compared with, post-processed like the release build
# (mk/wasm-post.sh): the proxy-wasm SDK with empty contexts (examples/bench/empty-filter) and
# cargo's build of the filter ($(WASM).raw, kept by `make build`), each with every export the
# SDK makes and with only those of $(KEPT_EXPORTS). Rebuilt when their input is newer.
BENCH_MODULES := target/bench/modules
EMPTY_RAW     := target/wasm32-wasip1/release/examples/empty_filter.wasm

bench-modules: build
	cargo build --release --example empty-filter --target wasm32-wasip1
	@mkdir -p $(BENCH_MODULES)
	@post() { \
	  if [ ! "$$2" -nt "$$1" ] || { [ -n "$${3:-}" ] && [ ! "$$2" -nt "$$3" ]; }; then \
	    $(WASM_POST) "$$@" || exit 1; fi; \
	  ls -l "$$2" | awk '{print "bench module " $$NF " (" $$5 " bytes)"}'; }; \
	post $(EMPTY_RAW) $(BENCH_MODULES)/empty-all-exports.wasm && \
	post $(EMPTY_RAW) $(BENCH_MODULES)/empty-kept-exports.wasm $(KEPT_EXPORTS) && \
	post $(WASM).raw $(BENCH_MODULES)/filter-all-exports.wasm && \
	post $(WASM).raw $(BENCH_MODULES)/filter-kept-exports.wasm $(KEPT_EXPORTS)

# The base the non-streaming success path is compared with: the commit before f14141e
# ("Streams in the exchange"), the first parent of that merge. Its cargo output goes through
# today's mk/wasm-post.sh (that commit predates binaryen post-processing), so the two modules
# differ only in their source. Needs the commit in the clone's history (not a shallow clone).
BENCH_BASE     ?= 3c1b476
BENCH_BASE_SRC := target/bench/base-src
BENCH_BASE_RAW := $(BENCH_BASE_SRC)/target/wasm32-wasip1/release/ai_circuit_breaker.wasm

bench-base: toolchain wasm-opt
	@mkdir -p $(BENCH_MODULES)
	@want=$$(git rev-parse $(BENCH_BASE)) || exit 1; \
	if [ "$$(cat $(BENCH_BASE_SRC)/.commit 2>/dev/null)" != "$$want" ]; then \
	  rm -rf $(BENCH_BASE_SRC)/src $(BENCH_BASE_SRC)/examples && mkdir -p $(BENCH_BASE_SRC) && \
	  git archive "$$want" | tar -x -C $(BENCH_BASE_SRC) && echo "$$want" > $(BENCH_BASE_SRC)/.commit; \
	fi
	cargo build --release --lib --target wasm32-wasip1 --manifest-path $(BENCH_BASE_SRC)/Cargo.toml
	@if [ ! $(BENCH_MODULES)/base.wasm -nt $(BENCH_BASE_RAW) ]; then \
	  $(WASM_POST) $(BENCH_BASE_RAW) $(BENCH_MODULES)/base.wasm || exit 1; fi
	@ls -l $(BENCH_MODULES)/base.wasm | awk '{print "bench module " $$NF " (" $$5 " bytes, $(BENCH_BASE))"}'

bench-wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "installing wrk (Debian package)"; \
	  $(SUDO) apt-get install -y wrk >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update >/dev/null && $(SUDO) apt-get install -y wrk; }; }

bench: build envoy mock bench-wrk bench-modules bench-base
	$(BENCH_PY) run
	$(MAKE) --no-print-directory bench-translate

# Provider translation's CPU per request and per streamed chunk, natively, against the same
# bodies untranslated (BENCHMARKS.md, "Provider translation").
bench-translate:
	cargo run --quiet --release --example translate-cost

# The stream part of make bench alone (streams, and the non-streaming success path against
# the filter before stream judging): the rest of target/bench/results.json is kept.
bench-stream: build envoy mock bench-wrk bench-modules bench-base
	$(BENCH_PY) run --only stream

bench-exports: build envoy mock bench-wrk bench-modules
	$(BENCH_PY) exports

# The commit compared with in bench-before-after: 305c66c is the last commit before the
# exchange-core restructure (#10).
BASE        ?= 305c66c
BEFORE_AFTER_MODULE := $(BENCH_MODULES)/before-after-base.wasm

bench-before-after-module:
	mk/base-module.sh $(BASE) $(BEFORE_AFTER_MODULE)

bench-before-after: build envoy mock bench-wrk bench-modules bench-before-after-module
	$(BENCH_PY) before-after

# The smoke runs the peers' code path with Portkey (a small npm install, skipped with a note
# where npm is missing); with LiteLLM too once bench-peers has installed it.
bench-smoke: build envoy mock bench-wrk bench-modules
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory portkey; \
	else echo "note: npm is missing; bench-smoke skips the Portkey peer"; fi
	$(BENCH_PY) smoke

$(LITELLM_BIN):
	python3 -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --quiet --disable-pip-version-check '$(LITELLM_PKG)'

$(PORTKEY_JS): $(PORTKEY_SRC)/package.json $(PORTKEY_SRC)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: Portkey's gateway is an npm package"; exit 1; }
	mkdir -p $(PORTKEY_DIR)
	cp $(PORTKEY_SRC)/package.json $(PORTKEY_SRC)/package-lock.json $(PORTKEY_DIR)/
	npm ci --prefix $(PORTKEY_DIR) --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

portkey: $(PORTKEY_JS)

bench-peers: build envoy mock bench-wrk bench-modules $(LITELLM_BIN) portkey
	$(BENCH_PY) peers

bench-litellm: bench-peers

# Regenerate BENCHMARKS.md's tables from target/bench/*.json without measuring.
bench-render:
	$(BENCH_PY) render
