"""The harness's subcommands and the results files they write.

  run      the full benchmark (make bench): target/bench/results.json + BENCHMARKS.md
  smoke    every code path for a second or two, nothing asserted about speed (make bench-smoke)
  peers    LiteLLM and Portkey beside Envoy and the filter (make bench-peers):
           target/bench/results-peers.json + BENCHMARKS.md  (alias: litellm)
  exports  the export trimming alone, more repetitions (make bench-exports):
           target/bench/results-exports.json + BENCHMARKS.md
  before-after  another commit's module beside this one, success path (make
           bench-before-after): target/bench/results-before-after.json + BENCHMARKS.md
  render   regenerate BENCHMARKS.md from the JSON files (make bench-render)

Why a module: the commands decide what a run measures and for how long (every run has a
deadline, after which it stops with its processes), and where the results go; the cases
themselves do not know whether they run in a full benchmark or a smoke.
"""

import argparse
import json
import os
import signal
import sys
import time

from launcher import ROOT

from . import peers, procs
from .cases import (case_host_calls, case_outage, case_per_request, case_scaling, case_stream,
                    case_upstream_check)
from .report import (render_before_after, render_bench, render_exports, render_markdown,
                     render_peers, render_stream)
from .settings import (BEFORE_AFTER, BEFORE_AFTER_MODULE, DEADLINES, ERROR_MODE, EXPORTS, FULL,
                       OUT, PEERS, PEERS_SMOKE, RESULTS, RESULTS_BEFORE_AFTER, RESULTS_EXPORTS,
                       RESULTS_PEERS, SMOKE, STREAM, STREAM_SMOKE, log)


def write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


class DeadlineExpired(BaseException):
    """Not an Exception: no `except Exception` on the way (the smoke's checks) may swallow it."""


def set_deadline(seconds):
    """After `seconds`, the run raises DeadlineExpired in the main thread; the launcher then
    stops every process it started."""
    def expired(_signum, _frame):
        raise DeadlineExpired(f"bench: deadline of {seconds / 60:.0f} min reached")
    signal.signal(signal.SIGALRM, expired)
    signal.alarm(int(seconds))


def cmd_run(args):
    procs.require()
    procs.snapshot_wasm(args.wasm)
    s = dict(FULL)
    if args.variants:
        s["variants"] = args.variants.split(",")
    if args.duration:
        s["duration"] = args.duration
    if args.reps:
        s["reps"] = args.reps
    t0 = time.time()
    res = {"meta": {"command": args.command, "machine": procs.machine()}, "settings": s}
    only = set(args.only.split(",")) if args.only else None
    out_path = args.out or RESULTS
    if only and os.path.exists(out_path):
        with open(out_path) as f:
            prev = json.load(f)    # keep the parts not re-run
        res = {**prev, "meta": res["meta"], "settings": s}
    if only and only - {"per_request", "scaling", "stream", "outage"}:
        sys.exit(f"bench: unknown part in --only {args.only}")
    ok, err = procs.mock("upstream"), procs.mock("upstream-err", mode=ERROR_MODE)
    if not only or "per_request" in only:
        if not s.get("variants"):
            res["upstream_check"] = case_upstream_check(ok, s)
        res["per_request"] = case_per_request(ok.port, err.port, s)
    if not only or "scaling" in only:
        res["scaling"] = case_scaling(ok.port, s, tick_variant=True)
    ok.stop()
    err.stop()
    if not only or "stream" in only:
        ss = dict(STREAM)
        if args.duration:
            ss["duration"] = args.duration
        if args.reps:
            ss["reps"] = args.reps
        res["settings_stream"] = ss
        res["stream"] = case_stream(ss)
    if not only or "outage" in only:
        res["outage"] = case_outage(s)
    res["meta"]["elapsed_s"] = time.time() - t0
    write_json(out_path, res)
    log(f"wrote {os.path.relpath(out_path, ROOT)} ({res['meta']['elapsed_s'] / 60:.1f} min)")
    if not args.no_markdown and out_path == RESULTS and not args.wasm:
        render_markdown()


def cmd_exports(args):
    """The export trimming alone (make bench-exports): bare Envoy, the empty filter and the
    filter, each module built with every SDK export and with src/adapter/exports.txt, in one
    interleaved run with more repetitions than make bench."""
    procs.require()
    procs.snapshot_wasm()
    s = dict(EXPORTS)
    s["reps"] = args.reps or s["reps"]
    s["duration"] = args.duration or s["duration"]
    t0 = time.time()
    res = {"meta": {"command": args.command, "machine": procs.machine()}, "settings": s}
    ok, err = procs.mock("upstream"), procs.mock("upstream-err", mode=ERROR_MODE)
    res["per_request"] = case_per_request(ok.port, err.port, s)
    ok.stop()
    err.stop()
    res["meta"]["elapsed_s"] = time.time() - t0
    out_path = args.out or RESULTS_EXPORTS
    write_json(out_path, res)
    log(f"wrote {os.path.relpath(out_path, ROOT)} ({res['meta']['elapsed_s'] / 60:.1f} min)")
    print(render_exports(res))
    if out_path == RESULTS_EXPORTS:
        render_markdown()


def cmd_before_after(args):
    """Another commit's release module (BASE, built by mk/base-module.sh as that commit's
    `make build` shipped it) and this one's, success path, beside bare Envoy and the empty
    filter, in one interleaved run (make bench-before-after)."""
    procs.require(BEFORE_AFTER_MODULE, hints={BEFORE_AFTER_MODULE: "make bench-before-after"})
    with open(BEFORE_AFTER_MODULE + ".commit") as f:
        base_commit = f.read().strip()
    procs.snapshot_wasm(extra={"before_after_base": BEFORE_AFTER_MODULE})
    s = dict(BEFORE_AFTER)
    s["reps"] = args.reps or s["reps"]
    s["duration"] = args.duration or s["duration"]
    t0 = time.time()
    machine = procs.machine()
    machine["base_commit"] = base_commit
    res = {"meta": {"command": args.command, "machine": machine}, "settings": s}
    ok, err = procs.mock("upstream"), procs.mock("upstream-err", mode=ERROR_MODE)
    res["per_request"] = case_per_request(ok.port, err.port, s)
    ok.stop()
    err.stop()
    res["host_calls"] = case_host_calls({"empty": (procs.module("empty_all_exports"), False),
                                         "base": (procs.module("before_after_base"), True),
                                         "current": (procs.wasm_under_test(), True)})
    res["meta"]["elapsed_s"] = time.time() - t0
    out_path = args.out or RESULTS_BEFORE_AFTER
    write_json(out_path, res)
    log(f"wrote {os.path.relpath(out_path, ROOT)} ({res['meta']['elapsed_s'] / 60:.1f} min)")
    print(render_before_after(res))
    if out_path == RESULTS_BEFORE_AFTER:
        render_markdown()


def peers_result(args, s, keys, variants=None):
    t0 = time.time()
    res = {"meta": {"command": args.command, "machine": procs.machine()}, "settings": s}
    res.update(peers.case_peers(keys, s, variants))
    res["meta"]["elapsed_s"] = time.time() - t0
    return res


def cmd_peers(args):
    keys = args.only.split(",") if args.only else list(peers.PEERS)
    unknown = [k for k in keys if k not in peers.PEERS]
    if unknown:
        sys.exit(f"bench: unknown peer {unknown}; known: {', '.join(peers.PEERS)}")
    procs.require()
    peers.require(keys)
    procs.snapshot_wasm()
    s = dict(PEERS)
    s["reps"] = args.reps or s["reps"]
    s["duration"] = args.duration or s["duration"]
    skip = {("litellm", "defaults")} if args.no_defaults else set()
    if args.no_retry:
        skip.add(("portkey", "fallback_retry"))
    variants = {(k, v) for k in keys for v in peers.PEERS[k].variants} - skip
    res = peers_result(args, s, keys, variants)
    write_json(RESULTS_PEERS, res)
    log(f"wrote {os.path.relpath(RESULTS_PEERS, ROOT)} ({res['meta']['elapsed_s'] / 60:.1f} min)")
    render_markdown()


def cmd_smoke(args):
    """Every code path for a second or two; checks only that the harness works."""
    procs.require()
    procs.snapshot_wasm()
    s = dict(SMOKE)
    t0 = time.time()
    res = {"meta": {"command": "make bench-smoke", "machine": procs.machine()}, "settings": s}
    checks = []

    def check(name, fn):
        try:
            detail = fn()
            checks.append((name, True, detail))
            print(f"bench-smoke: ok   {name}: {detail}", flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure, keep going
            checks.append((name, False, f"{type(e).__name__}: {e}"))
            print(f"bench-smoke: FAIL {name}: {type(e).__name__}: {e}", flush=True)

    ok = err = None
    try:
        ok, err = procs.mock("smoke-upstream"), procs.mock("smoke-upstream-err", mode=ERROR_MODE)

        def upstream_check():
            r = case_upstream_check(ok, s)
            res["upstream_check"] = r
            assert all(v["runs"][0]["requests"] > 0 for v in r.values()), "no requests"
            return ", ".join(f"{k} {v['rps']['median']:.0f} req/s" for k, v in r.items())
        check("upstream check", upstream_check)

        def per_request():
            r = case_per_request(ok.port, err.port, s)
            res["per_request"] = r
            ran = {k: v for k, v in r["variants"].items() if not v.get("skipped")}
            empty = [k for k, v in ran.items() if not v["runs"] or v["runs"][0]["requests"] == 0]
            assert not empty, f"no requests through {empty}"
            skipped = [k for k, v in r["variants"].items() if v.get("skipped")]
            return f"{len(ran)} cases ran" + (f", skipped {skipped}" if skipped else "")
        check("per-request cases", per_request)

        def scaling():
            r = case_scaling(ok.port, s, tick_variant=False)
            res["scaling"] = r
            for n, e in r["sizes"].items():
                assert e["filter"]["runs"][0]["requests"] > 0, f"{n}: no requests"
                assert e["filter"]["rss_bytes"] > 0 and e["filter"]["memory"], f"{n}: no memory"
                assert e["filter"]["log"]["configured_count"], f"{n}: no 'configured' log line"
            return ", ".join(f"{n}: {e['filter']['rps']['median']:.0f} req/s"
                             for n, e in r["sizes"].items())
        check("scaling", scaling)
    finally:
        for m in (ok, err):
            if m:
                m.stop()

    def outage():
        r = case_outage(s)
        res["outage"] = r
        run = r["runs"]["filter_seed"]["summary"]
        assert run["requests"] >= s["rate"] * sum(s["outage"]) * 0.9, "requests missing"
        assert run["dead_primary_calls"] > 0, "the primary mock counted no calls in error mode"
        return (f"{run['requests']} requests, dead-primary calls {run['dead_primary_calls']}, "
                f"failover {'available' if r['failover_available'] else 'not available'}")
    check("outage scenario", outage)

    def stream():
        res["settings_stream"] = dict(STREAM_SMOKE)
        r = case_stream(res["settings_stream"])
        res["stream"] = r
        ran = {k: v for k, v in r["cases"].items() if not v.get("skipped")}
        for k, v in ran.items():
            assert v["runs"][0]["requests"] > 0, f"{k}: no requests"
            if v["streamed"]:
                assert v["runs"][0]["first_byte_requests"] > 0, f"{k}: no first byte timed"
        skipped = [k for k, v in r["cases"].items() if v.get("skipped")]
        return (f"{len(ran)} cases ran, {r['events_per_response']} SSE events per stream" +
                (f", skipped {skipped} (make bench-base builds it)" if skipped else ""))
    check("stream cases", stream)

    def output():
        res["meta"]["elapsed_s"] = time.time() - t0
        path = os.path.join(OUT, "smoke.json")
        write_json(path, res)
        with open(path) as f:
            json.load(f)
        md = render_bench(res)
        if "stream" in res:
            md += "\n" + render_stream(res)
        with open(os.path.join(OUT, "smoke.md"), "w") as f:
            f.write(md)
        assert "Per-request cost" in md
        return f"{os.path.relpath(path, ROOT)} and smoke.md written"
    check("results JSON + markdown", output)

    check("peers", lambda: smoke_peers(args))
    passed = sum(1 for c in checks if c[1])
    print(f"bench-smoke: took {time.time() - t0:.0f} s")
    print(f"bench-smoke: {passed} passed, {len(checks) - passed} failed")
    return 0 if passed == len(checks) else 1


def smoke_peers(args):
    """The peers' code path with the smoke's lengths, for every peer installed (mk/bench.mk
    installs Portkey for the smoke; LiteLLM only for bench-peers): configs of every variant,
    launch, probe, throughput, the first outage variant, the rendered table."""
    for peer in peers.PEERS.values():
        for variant in peer.variants:
            json.dumps(peer.config(1, 2, variant))    # every config renders
    keys = [k for k, p in peers.PEERS.items() if peers.installed(p)]
    if not keys:
        return "no peer installed (make bench-peers installs them): configs only"
    s = dict(PEERS_SMOKE)
    first = {(k, next(iter(peers.PEERS[k].variants))) for k in keys}
    res = peers_result(args, s, keys, first)
    path = os.path.join(OUT, "smoke-peers.json")
    write_json(path, res)
    for k in keys:
        assert res["throughput"][k]["runs"][0]["requests"] > 0, f"{k}: no requests"
    runs = res["outage"]["runs"]
    for key, run in runs.items():
        assert run["summary"]["requests"] >= s["rate"] * sum(s["outage"]) * 0.9, \
            f"{key}: requests missing"
        assert run["summary"]["dead_primary_calls"] > 0, f"{key}: no call to the dead primary"
    md = render_peers(res)
    with open(os.path.join(OUT, "smoke-peers.md"), "w") as f:
        f.write(md)
    assert "Outage" in md
    missing = [k for k, p in peers.PEERS.items() if k not in keys]
    return (", ".join(f"{k}: {res['throughput'][k]['rps']['median']:.0f} req/s, dead-primary "
                      f"calls {runs[f'{k}_{v}']['summary']['dead_primary_calls']}"
                      for k, v in sorted(first)) +
            (f"; not installed: {missing}" if missing else ""))


def main():
    ap = argparse.ArgumentParser(description="Benchmark harness: make bench, make bench-smoke, "
                                             "make bench-peers")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="full benchmark (make bench)")
    r.add_argument("--only", help="comma list of per_request,scaling,stream,outage (others "
                                  "kept from the previous results.json)")
    r.add_argument("--duration", type=int, help="seconds per wrk run (default 5)")
    r.add_argument("--reps", type=int, help="repetitions per case (default 3)")
    r.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md")
    r.add_argument("--out", help="results file (default target/bench/results.json; another "
                                 "file never touches BENCHMARKS.md)")
    r.add_argument("--wasm", help="measure this module instead of the release build "
                                  "(experiments; never touches BENCHMARKS.md)")
    r.add_argument("--variants", help="comma list of per-request cases (e.g. bare_c1,filter_c1,"
                                      "lowc); default all")
    r.add_argument("--command", default="make bench", help=argparse.SUPPRESS)
    sm = sub.add_parser("smoke", help="a few seconds of every code path (make bench-smoke)")
    sm.add_argument("--command", default="make bench-smoke", help=argparse.SUPPRESS)
    pe = sub.add_parser("peers", aliases=["litellm"],
                        help="LiteLLM and Portkey beside the filter (make bench-peers)")
    pe.add_argument("--only", help="comma list of peers (litellm,portkey); default all")
    pe.add_argument("--duration", type=int, help="seconds per wrk run (default 5)")
    pe.add_argument("--reps", type=int, help="repetitions per throughput case (default 3)")
    pe.add_argument("--no-defaults", action="store_true",
                    help="skip the outage run with LiteLLM's default router settings")
    pe.add_argument("--no-retry", action="store_true",
                    help="skip the outage run with Portkey's retry")
    pe.add_argument("--command", default="make bench-peers", help=argparse.SUPPRESS)
    ex = sub.add_parser("exports", help="the export trimming alone, 10 interleaved reps "
                                        "(make bench-exports)")
    ex.add_argument("--duration", type=int, help="seconds per wrk run (default 5)")
    ex.add_argument("--reps", type=int, help="repetitions per case (default 10)")
    ex.add_argument("--out", help="results file (default target/bench/results-exports.json; "
                                  "another file never touches BENCHMARKS.md)")
    ex.add_argument("--command", default="make bench-exports", help=argparse.SUPPRESS)
    ba = sub.add_parser("before-after", help="another commit's module beside this one, success "
                                             "path, 10 interleaved reps (make bench-before-after)")
    ba.add_argument("--duration", type=int, help="seconds per wrk run (default 5)")
    ba.add_argument("--reps", type=int, help="repetitions per case (default 10)")
    ba.add_argument("--out", help="results file (default target/bench/results-before-after.json; "
                                  "another file never touches BENCHMARKS.md)")
    ba.add_argument("--command", default="make bench-before-after", help=argparse.SUPPRESS)
    sub.add_parser("render", help="regenerate BENCHMARKS.md from target/bench/*.json")
    args = ap.parse_args()
    if args.cmd in DEADLINES or args.cmd == "litellm":
        set_deadline(DEADLINES["peers" if args.cmd == "litellm" else args.cmd])
    if args.cmd == "run":
        cmd_run(args)
    elif args.cmd == "smoke":
        sys.exit(cmd_smoke(args))
    elif args.cmd in ("peers", "litellm"):
        cmd_peers(args)
    elif args.cmd == "exports":
        cmd_exports(args)
    elif args.cmd == "before-after":
        cmd_before_after(args)
    elif args.cmd == "render":
        render_markdown()
