"""What every part of a benchmark run shares: where results go, the request sent, the breaker
policies, the goals, and how long each kind of run measures.

Why a module: the cases, the peers, the report and the CLI must agree on these values (the
report prints the settings a run used); keeping them in one place keeps them from drifting.
"""

import json
import os
import time

from launcher import ROOT

OUT = os.path.join(ROOT, "target", "bench")
RESULTS = os.path.join(OUT, "results.json")
RESULTS_PEERS = os.path.join(OUT, "results-peers.json")
RESULTS_EXPORTS = os.path.join(OUT, "results-exports.json")
RESULTS_BEFORE_AFTER = os.path.join(OUT, "results-before-after.json")

# The modules the filter is compared with (built by `make bench-modules`, mk/bench.mk): the
# proxy-wasm SDK with empty contexts (examples/bench/empty-filter), and the filter, each with
# every export the SDK makes and with only those in src/adapter/exports.txt.
MODULES_DIR = os.path.join(OUT, "modules")
MODULES = {k: os.path.join(MODULES_DIR, f"{k.replace('_', '-')}.wasm")
           for k in ("empty_all_exports", "empty_kept_exports", "filter_all_exports",
                     "filter_kept_exports")}
# The filter as of the commit before stream judging entered the exchange (`make bench-base`,
# mk/bench.mk): the stream case compares the non-streaming success path with it. Optional: the
# part is skipped with a note when the module is missing (bench-smoke does not build it).
BASE_MODULE = os.path.join(MODULES_DIR, "base.wasm")
# `make bench-before-after`: another commit's release module, as its own `make build` shipped
# it (built by mk/base-module.sh); its full commit hash is in the same name + ".commit".
BEFORE_AFTER_MODULE = os.path.join(MODULES_DIR, "before-after-base.wasm")
BENCH_MD = os.path.join(ROOT, "BENCHMARKS.md")

CHAT_PATH = "/v1/chat/completions"
CHAT_REQUEST = json.dumps({"model": "gpt-4o-mini",
                           "messages": [{"role": "user", "content": "hello"}]},
                          separators=(",", ":"))
ERROR_MODE = json.dumps({"mode": "error", "status": 500})
# The stream case: the same chat completion with `"stream": true`, answered by a mock whose
# streams have STREAM_TOKENS content chunks sent with no pause between them.
STREAM_REQUEST = json.dumps({"model": "gpt-4o-mini", "stream": True,
                             "messages": [{"role": "user", "content": "hello"}]},
                            separators=(",", ":"))
STREAM_TOKENS = 200

# The seed's breaker settings (src/config.rs defaults, spelled out).
SEED_POLICY = {"failure_threshold": 5, "window_size": 60, "recovery_timeout": 30,
               "success_threshold": 2}
# Tiny settings so the smoke's 2 s outage opens and closes a breaker.
SMOKE_POLICY = {"failure_threshold": 2, "window_size": 10, "recovery_timeout": 1,
                "success_threshold": 1}

# The outage scenario's active recovery probe (README "Recovery probes").
RECOVERY_PROBE = {"method": "GET", "path": "/v1/models", "interval": 2, "timeout": 1}
PROBE_PATH = RECOVERY_PROBE["path"]

# Goals from the issue (not assertions).
TARGETS = {
    "throughput_ratio": 0.90,   # filter/bare, at least
    "cpu_ratio": 1.35,          # filter/bare CPU per request, at most
    "p50_added_us": 50,         # at low concurrency (wrk -c1), at most
    "wasm_bytes": 400 * 1024,
}

# Figures measured by someone else on this kind of machine (quoted as anchors only).
ANCHORS = {
    "litellm_throughput": "LiteLLM 50–130 req/s at 140–285 ms p50",
    "litellm_outage": "LiteLLM outage with seed settings: 12 calls to the dead primary, "
                      "0 client errors, ~21 ms p50; with defaults 2,501 calls and +4.6 s p50",
}

# Run lengths. `outage` is (seconds before, seconds down, seconds after) at `rate` req/s.
FULL = {"duration": 5, "reps": 3, "connections": 16, "warmup": 1,
        "sizes": [1, 10, 100, 1000], "outage": (10, 60, 40), "rate": 20, "policy": SEED_POLICY,
        # Sparse traffic: the primary flaps (down 60 s) under one request every 4 s.
        "flapping": {"outage": (10, 60, 40), "rate": 0.25}}
SMOKE = {"duration": 1, "reps": 1, "connections": 4, "warmup": 0,
         "sizes": [1, 10], "outage": (1, 2, 2), "rate": 20, "policy": SMOKE_POLICY,
         "flapping": {"outage": (1, 2, 2), "rate": 2}}
# The stream part of `make bench` (--only stream; `make bench-stream`): streamed and
# non-streamed cases interleaved in one run, more repetitions than the per-request case;
# `ttfb_requests` sequential requests per case and repetition time the first byte and token.
STREAM = {"duration": 5, "reps": 5, "connections": 16, "warmup": 1, "ttfb_requests": 200,
          "tokens": STREAM_TOKENS}
STREAM_SMOKE = {"duration": 1, "reps": 1, "connections": 4, "warmup": 0, "ttfb_requests": 10,
                "tokens": STREAM_TOKENS}
# `make bench-exports`: the export trimming alone, bare Envoy and the empty filter measured in
# the same run; more repetitions, as the difference sought is a few µs per request.
EXPORTS = {**FULL, "reps": 10,
           "variants": ["bare_c1", "empty_c1", "empty_kept_c1", "exports_all_c1",
                        "exports_kept_c1"]}
# `make bench-before-after`: the success path of another commit's module (BASE) and of this
# one, each as shipped, beside bare Envoy and the empty filter, in one interleaved run; base
# and current are neighbours in the order, for the per-repetition ratio.
BEFORE_AFTER = {**FULL, "reps": 10,
                "variants": ["bare_c1", "empty_c1", "base_c1", "current_c1"]}
# The peers are slow (LiteLLM: ~100 req/s on 2 cores): wrk gets a longer per-request timeout.
PEERS = {**FULL, "peer_timeout_s": 10}
PEERS_SMOKE = {**SMOKE, "peer_timeout_s": 10}

# Whole-run deadlines (seconds): a run that hangs is stopped, and its processes with it.
DEADLINES = {"run": 45 * 60, "smoke": 6 * 60, "peers": 40 * 60, "exports": 20 * 60,
             "before-after": 15 * 60}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)
