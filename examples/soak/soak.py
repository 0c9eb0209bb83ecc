#!/usr/bin/env python3
"""Entry point of `make soak`, `make soak-smoke`, `make streams-1000` and `make streams-smoke`
(see README.md beside this file and RELIABILITY.md).

    soak.py soak [--secs 600] [--rate 40] [--cycle 30] [--warmup 120] [--bound-mib 4]
    soak.py soak --smoke            # 50 s, warm-up 20 s, 15 s fault cycles
    soak.py streams [--n 1000] [--variants filter,empty,bare,filter_64k]
    soak.py streams --smoke         # 200 streams, the filter only
    soak.py render soak|streams     # the Markdown tables of the last result, for RELIABILITY.md

Exits 0 when every check passed, 1 otherwise, printing each failure; the figures go to
target/soak/<kind>-result.json. Every process started is stopped by PID on the way out,
also on a failure, an exception or Ctrl-C (examples/launcher.py). The whole run has a
deadline (SIGALRM): a run that hangs stops.
"""

import argparse
import json
import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(1, HERE)

import common  # noqa: E402
import launcher  # noqa: E402

MIB = 1024 * 1024


def _deadline(seconds):
    def expired(_signum, _frame):
        raise SystemExit(f"soak: deadline of {seconds:.0f} s passed")
    signal.signal(signal.SIGALRM, expired)
    signal.alarm(int(seconds))


def _finish(kind, bad, result):
    os.makedirs(common.OUT, exist_ok=True)
    path = os.path.join(common.OUT, f"{kind}-result.json")
    with open(path, "w") as f:
        json.dump({"failures": bad, **result}, f, indent=1)
    for b in bad:
        print(f"FAIL {b}", flush=True)
    print(f"{kind}: {'FAILED' if bad else 'passed'} ({len(bad)} failures); figures in {path}",
          flush=True)
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("soak")
    s.add_argument("--smoke", action="store_true")
    s.add_argument("--secs", type=float)
    s.add_argument("--rate", type=float, default=40.0)
    s.add_argument("--cycle", type=float)
    s.add_argument("--warmup", type=float)
    s.add_argument("--bound-mib", type=float, default=4.0)
    t = sub.add_parser("streams")
    t.add_argument("--smoke", action="store_true")
    t.add_argument("--n", type=int)
    t.add_argument("--tokens", type=int)
    t.add_argument("--delay-ms", type=int)
    t.add_argument("--ramp", type=float, default=200.0)
    t.add_argument("--variants")
    r = sub.add_parser("render", help="the Markdown tables of a result file, for RELIABILITY.md")
    r.add_argument("kind", choices=["soak", "soak-smoke", "streams", "streams-smoke"])
    a = ap.parse_args()
    if a.cmd == "render":
        from render import render
        with open(os.path.join(common.OUT, f"{a.kind}-result.json")) as f:
            print(render(a.kind, json.load(f)))
        return 0

    launcher.require(launcher.ENVOY, launcher.MOCK, launcher.WASM, who="soak")
    launcher.install_cleanup()
    fds = common.raise_fd_limit()
    if a.cmd == "soak":
        secs = a.secs or (50.0 if a.smoke else float(os.environ.get("SOAK_SECS", 600)))
        cycle = a.cycle or (15.0 if a.smoke else 30.0)
        warmup = a.warmup if a.warmup is not None else (20.0 if a.smoke else 120.0)
        _deadline(secs + 180)
        from traffic import run
        bad, result = run(secs, a.rate, cycle, warmup, a.bound_mib * MIB)
        return _finish("soak-smoke" if a.smoke else "soak", bad, result)
    n = a.n or (200 if a.smoke else 1000)
    tokens = a.tokens or (8 if a.smoke else 20)
    delay = a.delay_ms or 1000
    every = "filter,empty,bare,filter_64k"
    variants = (a.variants or ("filter" if a.smoke else every)).split(",")
    if "empty" in variants:
        launcher.require(common.EMPTY_MODULE, who="soak", hints={
            common.EMPTY_MODULE: "make bench-modules"})
    if fds < 3 * n + 200:
        sys.exit(f"soak: {n} streams need ~{3 * n + 200} open files; the limit is {fds}")
    _deadline(len(variants) * (2 * (n / a.ramp + tokens * delay / 1000) + 120))
    from streams import run
    bad, result = run(n, tokens, delay, a.ramp, variants)
    result["fd_limit"] = fds
    return _finish("streams-smoke" if a.smoke else "streams", bad, result)


if __name__ == "__main__":
    sys.exit(main())
