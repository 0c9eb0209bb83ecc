"""The peers: LiteLLM proxy and Portkey's open-source AI gateway, measured beside Envoy (bare
and with the filter) on the same mock providers, under the same load, in the same session.

Why a module: users who want a fallback when a provider fails pick one of these instead of an
Envoy filter, so `make bench-peers` puts them side by side: throughput and latency (wrk), and
the 60 s outage of the primary (calls to the dead primary, client errors, latency). Each peer
is installed inside the repository by mk/bench.mk and started here on loopback only:

- LiteLLM proxy (.venv-litellm, pip): one worker, no database, the local model cost map
  (no fetch at start), telemetry off; its router's fallback with allowed_fails / cooldown
  (its circuit breaker) and with its default router settings.
- Portkey gateway (.tools/portkey, npm, pinned by examples/bench/portkey/package-lock.json),
  under Node with --headless (no UI, no log streaming). The open-source gateway has no
  circuit breaker (its cb_config needs Portkey's hosted control plane), so every request
  tries the primary first. Its config travels in the `x-portkey-config` header of each
  request: the `fallback` strategy, and the same with `retry`. Node runs it with
  examples/bench/portkey/loopback-guard.mjs preloaded, which binds its listener to
  127.0.0.1 (the gateway itself listens on every interface) and refuses, and logs, any
  connection to a non-loopback address; the harness counts those lines.

Proxy variables are removed from both peers' environment so nothing is sent through a proxy.
"""

import json
import os
import shutil
import time

import launcher
from launcher import ROOT, http

from . import procs
from .cases import (chat_url, filter_outage_run, log_outage, outage_settings, probe,
                    run_outage)
from .envoy_configs import V1, bare_proxy, filter_config, filter_proxy, two_upstreams
from .load import interleaved, summarize_runs, wrk_script
from .settings import CHAT_PATH, CHAT_REQUEST, log

LITELLM_VENV = os.path.join(ROOT, ".venv-litellm")
LITELLM = os.path.join(LITELLM_VENV, "bin", "litellm")
LITELLM_KEY = "sk-bench-only"
PORTKEY_DIR = os.path.join(ROOT, ".tools", "portkey")
PORTKEY_PKG = os.path.join(PORTKEY_DIR, "node_modules", "@portkey-ai", "gateway")
PORTKEY = os.path.join(PORTKEY_PKG, "build", "start-server.js")
LOOPBACK_GUARD = os.path.join(ROOT, "examples", "bench", "portkey", "loopback-guard.mjs")
GUARD_MARK = "LOOPBACK-GUARD blocked"
INSTALL_HINTS = {LITELLM: "make bench-peers", PORTKEY: "make bench-peers"}


def clean_env(**extra):
    """The environment for a peer: ours without proxy settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(extra)
    return env


def served_from_body(data):
    """Which mock answered, from its reply text ("Hello from <name>"): the peers re-serialise
    the body and do not pass our served-by header."""
    marker = b"Hello from "
    i = data.find(marker)
    if i < 0:
        return "-"
    name = data[i + len(marker):].split(b'"', 1)[0]
    return name.decode(errors="replace") or "-"


class PeerProcess:
    """One peer proxy process on a free loopback port, ready when GET `ready_path` is 200."""

    def __init__(self, name, cmd, env, port, ready_path, log_path):
        self.name = name
        self.port = port
        self.ready_path = ready_path
        self.log_path = log_path
        self.t_spawn = time.monotonic()
        self.proc = launcher.spawn(cmd, log_path, env=env)
        self.pid = self.proc.pid
        self.ready_s = None

    def wait_ready(self, timeout):
        launcher.wait_until(self.name, lambda: http(
            "GET", f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=2)[0] == 200,
            timeout, self.proc, self.log_path, interval=0.2)
        self.ready_s = time.monotonic() - self.t_spawn
        return self

    def url(self):
        return f"http://127.0.0.1:{self.port}{CHAT_PATH}"

    def cpu(self):
        return procs.cpu_meter(self.pid, tree=True)

    def blocked_connects(self):
        """Lines of the loopback guard (Portkey only) in the log."""
        try:
            with open(self.log_path, errors="replace") as f:
                return [line.strip() for line in f if GUARD_MARK in line]
        except OSError:
            return []

    def stop(self):
        launcher.stop(self.proc, grace=10.0)


class LiteLLM:
    key = "litellm"
    name = "LiteLLM proxy"
    short = "LiteLLM"
    binary = LITELLM
    ready_timeout = 180.0
    # variant -> label; the first is also the throughput config.
    variants = {"seed": "allowed_fails 5 / cooldown 30 s / num_retries 0 + fallback",
                "defaults": "default router settings + fallback"}

    @staticmethod
    def version():
        py = os.path.join(LITELLM_VENV, "bin", "python")
        return procs.first_line([py, "-c", "import importlib.metadata as m; "
                                           "print(m.version('litellm'))"])

    @staticmethod
    def runtime():
        py = os.path.join(LITELLM_VENV, "bin", "python")
        return procs.first_line([py, "--version"]) + ", 1 worker process"

    @staticmethod
    def config(primary_port, fallback_port, variant):
        lines = ["model_list:"]
        for name, port in (("gpt-primary", primary_port), ("gpt-fallback", fallback_port)):
            lines += [f"  - model_name: {name}",
                      f"    litellm_params: {{model: openai/gpt-4o-mini, "
                      f"api_base: \"http://127.0.0.1:{port}/v1\", api_key: sk-mock}}"]
        lines += ["router_settings:", '  fallbacks: [{"gpt-primary": ["gpt-fallback"]}]']
        if variant == "seed":
            lines += ["  allowed_fails: 5", "  cooldown_time: 30", "  num_retries: 0"]
        lines += ["litellm_settings: {telemetry: false}"]
        return "\n".join(lines) + "\n"

    @classmethod
    def start(cls, name, primary_port, fallback_port, variant):
        d = procs.workdir(f"litellm-{os.getpid()}")
        cfg = os.path.join(d, f"{name}.yaml")
        with open(cfg, "w") as f:
            f.write(cls.config(primary_port, fallback_port, variant))
        port = launcher.free_port()
        env = clean_env(LITELLM_MASTER_KEY=LITELLM_KEY, LITELLM_LOCAL_MODEL_COST_MAP="True",
                        LITELLM_TELEMETRY="False")
        return PeerProcess(name, [LITELLM, "--config", cfg, "--host", "127.0.0.1",
                                  "--port", str(port)], env, port, "/health/liveliness",
                           os.path.join(d, f"{name}.log"))

    @staticmethod
    def request(primary_port, fallback_port, variant):
        body = json.dumps({"model": "gpt-primary",
                           "messages": [{"role": "user", "content": "hello"}]},
                          separators=(",", ":"))
        return {"Authorization": f"Bearer {LITELLM_KEY}"}, body


class Portkey:
    key = "portkey"
    name = "Portkey gateway"
    short = "Portkey"
    binary = PORTKEY
    ready_timeout = 60.0
    variants = {"fallback": "strategy fallback (primary, then fallback)",
                "fallback_retry": "strategy fallback + retry (attempts 2)"}

    @staticmethod
    def version():
        try:
            with open(os.path.join(PORTKEY_PKG, "package.json")) as f:
                return json.load(f)["version"]
        except (OSError, ValueError, KeyError):
            return "?"

    @staticmethod
    def runtime():
        return "Node " + procs.first_line(["node", "--version"]).lstrip("v")

    @staticmethod
    def config(primary_port, fallback_port, variant):
        """The gateway config (sent as the x-portkey-config header): two OpenAI-compatible
        targets on the mocks; `fallback` moves to the next target on any non-2xx."""
        def target(port):
            return {"provider": "openai", "api_key": "sk-mock",
                    "custom_host": f"http://127.0.0.1:{port}/v1"}
        cfg = {"strategy": {"mode": "fallback"},
               "targets": [target(primary_port), target(fallback_port)]}
        if variant == "fallback_retry":
            # Inherited by both targets; retried on 429/500/502/503/504 with a 1 s, 2 s back-off.
            cfg["retry"] = {"attempts": 2}
        return cfg

    @staticmethod
    def start(name, primary_port, fallback_port, variant):
        d = procs.workdir(f"portkey-{os.getpid()}")
        port = launcher.free_port()
        node = shutil.which("node") or "node"
        return PeerProcess(name, [node, "--import", LOOPBACK_GUARD, PORTKEY, f"--port={port}",
                                  "--headless"], clean_env(), port, "/",
                           os.path.join(d, f"{name}.log"))

    @classmethod
    def request(cls, primary_port, fallback_port, variant):
        cfg = json.dumps(cls.config(primary_port, fallback_port, variant), separators=(",", ":"))
        return {"x-portkey-config": cfg}, CHAT_REQUEST


PEERS = {p.key: p for p in (LiteLLM, Portkey)}


def installed(peer):
    return os.path.exists(peer.binary) and (peer is not Portkey or shutil.which("node"))


def require(keys):
    launcher.require(*(PEERS[k].binary for k in keys), who="bench", hints=INSTALL_HINTS)
    if "portkey" in keys and shutil.which("node") is None:
        raise SystemExit("bench: node is missing (Portkey's gateway runs under Node)")


def started(peer, name, primary, fallback, variant):
    """A peer process, ready, that served one request from the primary: or RuntimeError."""
    p = peer.start(name, primary.port, fallback.port, variant)
    try:
        p.wait_ready(peer.ready_timeout)
        headers, body = peer.request(primary.port, fallback.port, variant)
        st, _, data = http("POST", p.url(), body,
                           {"content-type": "application/json", **headers}, timeout=30)
        if st != 200 or served_from_body(data) != "openai":
            raise RuntimeError(f"{peer.key} probe: {st} {data[:300]!r}")
    except BaseException:
        p.stop()
        raise
    return p


def case_peer_throughput(keys, primary, fallback, s):
    """wrk at each peer, bare Envoy and Envoy + filter (--concurrency 1), interleaved."""
    log(f"peers: throughput ({', '.join(keys)} vs Envoy, same mock upstream)")
    clusters = [("openai", primary.port), ("anthropic", fallback.port)]
    out = {}
    cases = {}
    peer_procs = {}
    running = []
    try:
        for k in keys:
            peer = PEERS[k]
            variant = next(iter(peer.variants))
            p = peer_procs[k] = started(peer, f"{k}-throughput", primary, fallback, variant)
            running.append(p)
            headers, body = peer.request(primary.port, fallback.port, variant)
            cases[k] = (p.cpu(), p.url(), wrk_script(k, headers=headers, body=body), None)
            out[k] = {"label": f"{peer.name} {peer.version()}", "ready_s": p.ready_s,
                      "config": peer.variants[variant]}
        envoys = procs.envoys({
            "bare": ("peers-bare", bare_proxy(clusters), 1),
            "filter": ("peers-filter", filter_proxy(clusters, filter_config(two_upstreams(), V1)),
                       1)})
        running += envoys.values()
        out["bare"] = {"label": "bare Envoy (--concurrency 1)"}
        out["filter"] = {"label": "Envoy + filter (--concurrency 1)"}
        for k, e in envoys.items():
            if probe(chat_url(e))[0] != 200:
                raise RuntimeError(f"peers: {k} Envoy probe failed")
            cases[k] = (procs.cpu_meter(e.pid), chat_url(e), wrk_script("chat"), None)
        runs = interleaved(cases, s["reps"], s["duration"], s["connections"], s["warmup"] or 1,
                           timeout_s=s["peer_timeout_s"], on_run=lambda k, r: log(
                               f"  {k:<8} {r['rps']:>8.0f} req/s  p50 {r['p50_us'] / 1000:>7.1f} ms"
                               f"  p99 {r['p99_us'] / 1000:>7.1f} ms  cpu "
                               f"{r['cpu_us_per_req'] or 0:>8.1f} us/req  non-2xx {r['non2xx']}"))
        for k, rs in runs.items():
            out[k].update({"runs": rs, **summarize_runs(rs)})
        for k, p in peer_procs.items():
            out[k]["blocked_connects"] = p.blocked_connects()
    finally:
        for p in running:
            p.stop()
    return out


def case_peer_outage(keys, primary, fallback, s, variants=None):
    """The outage scenario through each peer variant, then through Envoy + filter (failover on,
    seed settings) on the same mocks."""
    out = {"settings": outage_settings(s, s["policy"]), "runs": {}}
    for k in keys:
        peer = PEERS[k]
        for variant, label in peer.variants.items():
            if variants is not None and (k, variant) not in variants:
                continue
            key = f"{k}_{variant}"
            p = started(peer, key, primary, fallback, variant)
            try:
                headers, body = peer.request(primary.port, fallback.port, variant)
                for _ in range(3):
                    http("POST", p.url(), body, {"content-type": "application/json", **headers},
                         timeout=30)
                log(f"outage {key}: {sum(s['outage'])} s at {s['rate']} req/s")
                results, summary = run_outage(p.url(), primary, fallback, s, headers=headers,
                                              body=body, served_by=served_from_body)
            finally:
                p.stop()
            out["runs"][key] = {"label": f"{peer.short} {peer.version()}, {label}",
                                "summary": summary, "timeline": results,
                                "blocked_connects": p.blocked_connects()}
            log_outage(key, summary)
    out["runs"]["filter_failover"] = filter_outage_run("filter_failover", primary, fallback, s,
                                                       True)
    return out


def case_peers(keys, s, variants=None):
    """Both halves on one pair of mocks: {versions, throughput, outage}."""
    primary, fallback = procs.mock("openai"), procs.mock("anthropic")
    try:
        return {"peers": {k: {"name": PEERS[k].name, "version": PEERS[k].version(),
                              "runtime": PEERS[k].runtime()} for k in keys},
                "throughput": case_peer_throughput(keys, primary, fallback, s),
                "outage": case_peer_outage(keys, primary, fallback, s, variants)}
    finally:
        primary.stop()
        fallback.stop()
