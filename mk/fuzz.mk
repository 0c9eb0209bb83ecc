# Fuzzing, included by the main Makefile. See tests/fuzz/README.md and RELIABILITY.md.
#
#   make fuzz         every target for FUZZ_EXECS executions (default 10^6), each run also
#                     stopped after FUZZ_SECONDS (default 900); FUZZ_TARGETS picks targets
#   make fuzz-smoke   the seeds and kept crashes, then FUZZ_SMOKE_EXECS (3000) executions per
#                     target (part of make test; ~30 s once built)
#
# Engine: AFL++ through cargo-afl, on stable Rust (sancov instrumentation, no nightly flag).
# cargo-afl is installed into .tools/cargo and builds its own pinned AFL++ (from the sources
# its crate ships; needs only a C compiler and make) into .tools/xdg, once.

CARGO_AFL_VERSION := 0.18.2
CARGO_AFL     := .tools/cargo/bin/cargo-afl
AFL_DATA      := $(CURDIR)/.tools/xdg
AFL_RUNTIME    = $(AFL_DATA)/afl.rs/rustc-$(shell rustc -V | awk '{print $$2 "-" substr($$3, 2, 7)}')/afl.rs-$(CARGO_AFL_VERSION)/afl-llvm/afl-compiler-rt.o
FUZZ_DIR      := tests/fuzz
FUZZ_BIN      := target/fuzz-afl/release/fuzz
FUZZ_OUT      := target/fuzz-out
FUZZ_EXECS    ?= 1000000
FUZZ_SECONDS  ?= 900
FUZZ_SMOKE_EXECS ?= 3000
# Through cargo (`cargo afl`), which tells cargo-afl where cargo is.
AFL_CARGO     := PATH=$(CURDIR)/.tools/cargo/bin:$$PATH XDG_DATA_HOME=$(AFL_DATA) cargo afl
FUZZ_ENV       = CARGO_AFL=$(CARGO_AFL) XDG_DATA_HOME=$(AFL_DATA) FUZZ_BIN=$(FUZZ_BIN) \
                 FUZZ_OUT=$(FUZZ_OUT) FUZZ_EXECS=$(FUZZ_EXECS) FUZZ_SECONDS=$(FUZZ_SECONDS) \
                 FUZZ_SMOKE_EXECS=$(FUZZ_SMOKE_EXECS)

.PHONY: fuzz fuzz-smoke fuzz-tools fuzz-build

$(CARGO_AFL):
	cargo install --quiet --locked cargo-afl --version $(CARGO_AFL_VERSION) --root .tools/cargo

fuzz-tools: $(CARGO_AFL)
	@[ -f "$(AFL_RUNTIME)" ] || { echo "building AFL++ for cargo-afl into .tools/xdg (once, ~40 s)"; \
	  $(AFL_CARGO) config --build >/dev/null; }

fuzz-build: fuzz-tools
	$(AFL_CARGO) build --quiet --release \
	  --manifest-path $(FUZZ_DIR)/Cargo.toml --target-dir target/fuzz-afl

fuzz: fuzz-build
	$(FUZZ_ENV) $(FUZZ_DIR)/fuzz.sh full

fuzz-smoke: fuzz-build
	$(FUZZ_ENV) $(FUZZ_DIR)/fuzz.sh smoke
