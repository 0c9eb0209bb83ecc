#!/usr/bin/env python3
"""The local demo behind `make run`.

Starts three mock AI providers (openai, anthropic, azure-openai), a mock webhook receiver and
Envoy with the ai-circuit-breaker filter (envoy/envoy.yaml), then replays an outage of the
primary provider and prints a timeline: each second, which provider served the requests,
each breaker's state (read from the filter's health endpoint), and how many calls the
breaker kept away from the dead provider. Afterwards it keeps serving on localhost:10000
until Ctrl-C. Every process it started is stopped on exit, by PID.

Options: --once (exit after the timeline), --check (--once, then verify the timeline: the
breaker opened and closed again, clients saw no error, alerts arrived; used by `make test`),
--outage SECONDS.
Standard library only.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENVOY = os.path.join(ROOT, ".venv", "bin", "envoy")
MOCK = os.path.join(ROOT, "target", "release", "mock-provider")
LISTENER = "http://127.0.0.1:10000"
ADMIN = "http://127.0.0.1:9901"
HEALTH = LISTENER + "/health/circuit-breakers"
# name, data port, control port (must match the clusters in envoy/envoy.yaml)
MOCKS = [("openai", 18001, 18101), ("anthropic", 18002, 18102),
         ("azure-openai", 18003, 18103), ("webhook", 18009, 18109)]
RATE = 5  # requests per second during the timeline

children = []


def start(cmd, log_path):
    log = open(log_path, "w")
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL)
    children.append(p)
    return p


def stop_all():
    for p in reversed(children):
        if p.poll() is None:
            p.terminate()
    deadline = time.time() + 5
    for p in children:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()


def http(method, url, body=None, timeout=5.0):
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except (urllib.error.URLError, OSError) as e:
        return 0, {}, str(e).encode()


def wait_for(what, check, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.1)
    sys.exit(f"demo: {what} did not come up within {timeout:.0f}s")


def mock_control(port, path, body=None):
    status, _, data = http("POST" if body else "GET", f"http://127.0.0.1:{port}{path}",
                           json.dumps(body).encode() if body else None)
    return json.loads(data) if status == 200 else {}


def chat():
    body = json.dumps({"model": "gpt-4o-mini",
                       "messages": [{"role": "user", "content": "hello"}]}).encode()
    status, headers, _ = http("POST", LISTENER + "/v1/chat/completions", body)
    lower = {k.lower(): v for k, v in headers.items()}
    served = lower.get("x-ai-cb-served-by", "-")
    if "x-ai-cb-failover" in lower:
        served = "failover→" + served
    return status, served


def states():
    status, _, data = http("GET", HEALTH)
    if status != 200:
        return {}, "?"
    h = json.loads(data)
    return h["providers"], h["overall_health"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--once", action="store_true", help="exit after the timeline")
    ap.add_argument("--check", action="store_true",
                    help="exit after the timeline and verify it (non-zero exit on failure)")
    ap.add_argument("--outage", type=int, default=20, help="seconds the primary is down")
    args = ap.parse_args()
    for path, hint in ((ENVOY, "make envoy"), (MOCK, "make mock"),
                       (os.path.join(ROOT, "target/wasm32-wasip1/release/ai_circuit_breaker.wasm"), "make build")):
        if not os.path.exists(path):
            sys.exit(f"demo: {path} is missing; run `{hint}` (or just `make run`)")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    logdir = os.path.join(ROOT, "target", "demo")
    os.makedirs(logdir, exist_ok=True)
    for name, port, control in MOCKS:
        start([MOCK, "--name", name, "--listen", f"127.0.0.1:{port}",
               "--control", f"127.0.0.1:{control}"], os.path.join(logdir, f"{name}.log"))
    envoy_log = os.path.join(logdir, "envoy.log")
    start([ENVOY, "-c", "envoy/envoy.yaml", "--concurrency", "2", "--base-id", "18",
           "--component-log-level", "wasm:info"], envoy_log)
    wait_for("Envoy", lambda: http("GET", ADMIN + "/ready")[0] == 200)
    wait_for("the filter", lambda: states()[0] != {})

    print(f"""
ai-circuit-breaker demo — Envoy with the filter on {LISTENER}
  health   {HEALTH}
  metrics  {ADMIN}/stats/prometheus | grep circuit_breaker
  logs     {logdir}/
Primary openai falls back to anthropic (model rewritten) then azure-openai (path rewritten).
Breaker: 5 failures in 60 s open it, 10 s recovery, 2 probe successes close it.
""")
    openai_ctl = MOCKS[0][2]
    outage_start, outage_end = 3, 3 + args.outage
    total = outage_end + 12
    dead_calls = avoided = errors = 0
    openai_trail = []
    header = (f"{'t':>4}  {'served by (this second)':<34} {'openai':<22} {'anthropic':<16} "
              f"{'azure':<16} {'health':<9} dead-provider calls / kept away")
    print(header)
    print("-" * len(header))
    for t in range(total):
        if t == outage_start:
            mock_control(openai_ctl, "/mode", {"mode": "error", "status": 500})
            print(f"{'':>4}  >>> openai starts failing with HTTP 500")
        if t == outage_end:
            mock_control(openai_ctl, "/mode", {"mode": "healthy"})
            print(f"{'':>4}  >>> openai recovers")
        tick_start = time.time()
        seen = {}  # upstream -> the distinct states seen this second, in order

        def observe():
            prov, overall = states()
            for name, st in prov.items():
                trail = seen.setdefault(name, [])
                if not trail or trail[-1] != st:
                    trail.append(st)
            return overall

        observe()
        served = {}
        for _ in range(RATE):
            status, by = chat()
            key = by if status < 500 else f"{by}!{status}"
            served[key] = served.get(key, 0) + 1
            down = outage_start <= t < outage_end
            if down and (by == "openai" or by.startswith("failover")):
                dead_calls += 1
            elif down:
                avoided += 1
            if status >= 500:
                errors += 1
            overall = observe()
            time.sleep(max(0.0, (1.0 / RATE) - 0.01))

        def state(name):
            return "→".join(seen.get(name, ["?"]))

        for st in seen.get("openai", []):
            if not openai_trail or openai_trail[-1] != st:
                openai_trail.append(st)

        shown = " ".join(f"{k}×{v}" for k, v in sorted(served.items()))
        print(f"{t:>3}s  {shown:<34} {state('openai'):<22} {state('anthropic'):<16} "
              f"{state('azure'):<16} {overall:<9} {dead_calls} / {avoided}")
        time.sleep(max(0.0, 1.0 - (time.time() - tick_start)))

    alerts = mock_control(MOCKS[3][2], "/requests?path=/alerts").get("requests", [])
    print(f"\nDuring the {args.outage} s outage {dead_calls} requests were first sent to the dead provider "
          f"(the ones that tripped the breaker, and probes) and {avoided} went straight to a fallback.\n"
          f"Clients saw {errors} errors: in-request failover re-sent each failed request to the next "
          f"fallback (see x-ai-cb-failover).")
    print(f"Webhook alerts received: {len(alerts)}")
    for a in alerts:
        try:
            print("  " + json.loads(a["body"])["text"])
        except (ValueError, KeyError):
            print("  " + a.get("body", "")[:120])
    if args.check:
        checks = {
            "breaker went closed -> open -> half_open -> closed":
                "closed→open→half_open→closed" in "→".join(openai_trail),
            "clients saw no error": errors == 0,
            "dead provider got at most failure_threshold + probes calls": 5 <= dead_calls <= 8,
            "an open and a close alert reached the webhook": len(alerts) >= 2,
            "traffic is back on the primary": openai_trail[-1:] == ["closed"],
        }
        for name, ok in checks.items():
            print(f"  {'ok  ' if ok else 'FAIL'} {name}")
        failed = sum(not ok for ok in checks.values())
        print(f"demo-check: {len(checks) - failed} passed, {failed} failed")
        if failed:
            sys.exit(1)
        return
    if args.once:
        return
    print(f"\nStill serving on {LISTENER} (try: curl -s {HEALTH} | python3 -m json.tool). Ctrl-C stops.")
    try:
        while all(p.poll() is None for p in children):
            time.sleep(1)
        sys.exit("demo: a process exited unexpectedly; see " + logdir)
    except KeyboardInterrupt:
        print()


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
