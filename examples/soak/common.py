"""What the soak (`make soak`) and the concurrent-stream run (`make streams-1000`) share: the
Envoy bootstrap and the filter's config, Envoy's counters and the filter's metrics read from
the admin API, the health JSON, and the memory figures sampled from /proc and admin /memory.

Why a module: both runs start the same Envoy (`--concurrency 2`, the release module, mock
providers behind it) and judge it with the same readings. Starting and stopping processes is
the shared launcher's job (examples/launcher.py, used by the demo and the benchmark); the
bootstrap pieces are the benchmark's (examples/bench/harness/envoy_configs.py). This module
only adds what the soak needs on top: longer route timeouts, raised cluster limits, and the
readings.
"""

import json
import os
import re
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.dirname(HERE)
# examples/ holds the shared launcher, examples/bench/ the benchmark's harness package.
for p in (EXAMPLES, os.path.join(EXAMPLES, "bench")):
    if p not in sys.path:
        sys.path.insert(1, p)

import launcher  # noqa: E402
from harness import envoy_configs as ec  # noqa: E402
from launcher import ROOT, http  # noqa: E402

OUT = os.path.join(ROOT, "target", "soak")
LISTENER = "soak"
HEALTH_PATH = "/health/circuit-breakers"
EMPTY_MODULE = os.path.join(ROOT, "target", "bench", "modules", "empty-kept-exports.wasm")
PAGE = os.sysconf("SC_PAGE_SIZE")

# The breaker policy: small enough that a 3 s outage opens a breaker, probes it while it is
# still down, and closes it again within a few seconds, many times in a run.
POLICY = {"failure_threshold": 3, "window_size": 5, "recovery_timeout": 1,
          "success_threshold": 2, "recovery_jitter": 0.0}

# Upstreams: openai (the default route; fails over to anthropic), anthropic, gemini (streams
# that fail inside a 200; no fallback, so an open breaker answers locally), mistral (slow
# streams the clients cancel half-way through). `/a/` reaches anthropic directly: only the
# soak's last step uses it, to close its breaker if the traffic ended during its outage.
UPSTREAMS = [{"name": "openai", "fallbacks": ["anthropic"]}, {"name": "anthropic"},
             {"name": "gemini"}, {"name": "mistral"}]
ROUTES = [{"match": {"path_prefix": "/a/"}, "upstream": "anthropic"},
          {"match": {"path_prefix": "/g/"}, "upstream": "gemini"},
          {"match": {"path_prefix": "/m/"}, "upstream": "mistral"},
          {"match": {"path_prefix": "/"}, "upstream": "openai"}]


def filter_config():
    return {"health_path": HEALTH_PATH, "defaults": POLICY, "upstreams": UPSTREAMS,
            "routes": ROUTES, "failover": {"enabled": True}, "tick_interval": 1}


def raise_fd_limit(want=8192):
    """Raises this process's soft open-file limit to `want` (bounded by the hard limit); the
    Envoys and mocks started from here inherit it. Returns the limit in effect."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def _cluster(name, port):
    """A static cluster to one mock, with Envoy's default per-cluster limits (1,024 connections
    and requests) raised above what a run opens, so no request is refused by Envoy itself."""
    c = ec.cluster(name, port)
    c["circuit_breakers"] = {"thresholds": [{"max_connections": 8192,
                                             "max_pending_requests": 8192,
                                             "max_requests": 8192}]}
    return c


def bootstrap(clusters, wasm=None, with_filter=True):
    """Envoy with the filter (module `wasm`, the release one by default) or with no filter at
    all (`with_filter=False`): the route follows the filter's route header, else goes to the
    first cluster. Route timeouts are off: a slow stream may outlive Envoy's 15 s default."""
    routes = [{"match": {"prefix": "/", "headers": [
                  {"name": ec.ROUTE_HEADER, "present_match": True}]},
               "route": {"cluster_header": ec.ROUTE_HEADER, "timeout": "0s"}},
              {"match": {"prefix": "/"}, "route": {"cluster": clusters[0][0], "timeout": "0s"}}]
    filters = [ec.wasm_filter(filter_config(), wasm or launcher.WASM)] if with_filter else []
    cfg = ec.bootstrap([ec.listener(LISTENER, routes, filters)], [])
    cfg["static_resources"]["clusters"] = [_cluster(n, p) for n, p in clusters]
    return cfg


def workdir(*parts):
    d = os.path.join(OUT, "work", *parts)
    os.makedirs(d, exist_ok=True)
    return d


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Readings: Envoy's stats, the filter's metrics, health, memory
# ---------------------------------------------------------------------------------------------

_LABEL = re.compile(r"(\w+)=\.=(.*?);\.;")


def stats(envoy):
    """Every counter and gauge of admin /stats: {name: value}."""
    status, _, body = http("GET", envoy.admin + "/stats?format=json", timeout=10)
    if status != 200:
        raise RuntimeError(f"admin /stats answered {status}")
    return {s["name"]: s["value"] for s in json.loads(body)["stats"] if "value" in s}


def filter_metrics(all_stats):
    """The filter's metrics as (metric, {label: value}, value), read from their stat names
    (`wasmcustom.upstream=.=openai;.;outcome=.=success;.;circuit_breaker_requests`)."""
    out = []
    for name, value in all_stats.items():
        if "circuit_breaker_" not in name:
            continue
        labels = dict(_LABEL.findall(name))
        metric = _LABEL.sub("", name).split(".")[-1]
        out.append((metric, labels, value))
    return out


def metric_sum(metrics, metric, **labels):
    """Sum of `metric` over every series whose labels include `labels`."""
    return sum(v for m, ls, v in metrics if m == metric
               and all(ls.get(k) == want for k, want in labels.items()))


def health(envoy):
    """The filter's health JSON, read through the listener."""
    status, _, body = http("GET", envoy.url(LISTENER, HEALTH_PATH), timeout=5)
    if status != 200:
        raise RuntimeError(f"health read answered {status}: {body[:200]!r}")
    return json.loads(body)


def rss_bytes(pid):
    """VmRSS of one process (/proc/PID/status), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def memory(envoy):
    """One memory sample of an Envoy: RSS, and tcmalloc's allocated and heap_size (admin
    /memory). The filter's Wasm linear memory is V8's mapping, outside tcmalloc: only RSS
    sees it."""
    status, _, body = http("GET", envoy.admin + "/memory", timeout=5)
    m = json.loads(body) if status == 200 else {}
    return {"rss": rss_bytes(envoy.pid), "allocated": int(m.get("allocated", 0)),
            "heap_size": int(m.get("heap_size", 0))}


def wait_idle(envoy, clusters, timeout=20.0):
    """Waits until Envoy has no downstream request and no upstream request or pending request
    on any cluster (nothing paused, nothing in flight). Returns the readings it saw last:
    {name: value} for those gauges."""
    names = [f"http.{LISTENER}.downstream_rq_active", f"http.{LISTENER}.downstream_cx_active"]
    for c in clusters:
        names += [f"cluster.{c}.upstream_rq_active", f"cluster.{c}.upstream_rq_pending_active"]
    deadline = time.monotonic() + timeout
    while True:
        s = stats(envoy)
        seen = {n: s.get(n, 0) for n in names}
        busy = {n: v for n, v in seen.items() if v and "cx_active" not in n}
        if not busy or time.monotonic() >= deadline:
            return seen
        time.sleep(0.2)


def mib(n):
    return n / (1024 * 1024)
