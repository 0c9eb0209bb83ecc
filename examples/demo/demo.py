#!/usr/bin/env python3
"""The local demo behind `make run`.

Starts three mock AI providers (openai, anthropic, azure-openai), a mock webhook receiver and
Envoy with the ai-circuit-breaker filter (envoy/envoy.yaml), then replays an outage of the
primary provider and prints a timeline: each second, which provider served the requests,
each breaker's state (read from the filter's health endpoint), and how many calls the
breaker kept away from the dead provider. Afterwards it keeps serving on localhost:10000
until Ctrl-C. Every process it started is stopped on exit, by PID (examples/launcher.py, shared
with the benchmark harness).

Options: --once (exit after the timeline), --check (--once, then verify the timeline: the
breaker opened and closed again, clients saw no error, alerts arrived; used by `make test`),
--outage SECONDS.
Standard library only.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import launcher  # noqa: E402  (examples/launcher.py: Envoy and mocks, stopped by PID)
from launcher import ROOT, http  # noqa: E402

LISTENER = "http://127.0.0.1:10000"
HEALTH = LISTENER + "/health/circuit-breakers"
ENVOY_CONFIG = os.path.join(ROOT, "envoy", "envoy.yaml")
# name, data port, control port (must match the clusters in envoy/envoy.yaml)
MOCKS = [("openai", 18001, 18101), ("anthropic", 18002, 18102),
         ("azure-openai", 18003, 18103), ("webhook", 18009, 18109)]
RATE = 5  # requests per second during the timeline


def chat():
    body = json.dumps({"model": "gpt-4o-mini",
                       "messages": [{"role": "user", "content": "hello"}]}).encode()
    status, headers, _ = http("POST", LISTENER + "/v1/chat/completions", body,
                              {"content-type": "application/json"})
    served = headers.get("x-ai-cb-served-by", "-")
    if "x-ai-cb-failover" in headers:
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
    launcher.require(launcher.ENVOY, launcher.MOCK, launcher.WASM, who="demo")
    launcher.install_cleanup()
    logdir = os.path.join(ROOT, "target", "demo")
    mocks = {name: launcher.Mock(name, logdir, listen=port, control=control)
             for name, port, control in MOCKS}
    envoy = launcher.Envoy(ENVOY_CONFIG, logdir, concurrency=2,
                           component_log_level="wasm:info").wait_ready(timeout=30)
    launcher.wait_until("the filter's health endpoint", lambda: states()[0] != {}, 30)
    admin = envoy.admin

    print(f"""
ai-circuit-breaker demo — Envoy with the filter on {LISTENER}
  health   {HEALTH}
  metrics  {admin}/stats/prometheus | grep circuit_breaker
  logs     {logdir}/
Primary openai falls back to anthropic (model rewritten) then azure-openai (path rewritten).
Breaker: 5 failures in 60 s open it, 10 s recovery, 2 probe successes close it.
""")
    openai = mocks["openai"]
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
            openai.mode(mode="error", status=500)
            print(f"{'':>4}  >>> openai starts failing with HTTP 500")
        if t == outage_end:
            openai.mode(mode="healthy")
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

    alerts = mocks["webhook"].requests("/alerts")
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
    procs = [envoy.proc] + [m.proc for m in mocks.values()]
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        sys.exit("demo: a process exited unexpectedly; see " + logdir)
    except KeyboardInterrupt:
        print()


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:  # a process did not start or answer; launcher stops the rest
        sys.exit(f"demo: {e}")
