"""The cases `make bench` measures: which Envoys each starts, what it checks before measuring,
and what it derives (ratios against bare Envoy, start-up phases, the outage summary).

Why a module: a case is the benchmark's claim ("the filter costs X per request", "the dead
primary gets N calls"); keeping each one readable top to bottom, apart from how processes
start (procs), how load is made (load) and how it is printed (report), is what lets a reader
check the claim. Every case probes its proxies first and refuses to measure a proxy that
does not route as expected.
"""

import datetime
import json
import os
import re
import shutil
import subprocess

from . import procs
from .envoy_configs import (FO_OFF, FO_ON, V1, bare_proxy, filter_config, filter_proxy,
                            outage_filter_config, spread_routes, two_upstreams, upstream_server)
from .load import (first_byte_sample, interleaved, measure, open_loop, paired_diffs,
                   paired_ratios, pct, summarize, summarize_runs, wrk, wrk_script)
from .settings import (CHAT_PATH, CHAT_REQUEST, ERROR_MODE, PROBE_PATH, RECOVERY_PROBE,
                       SEED_POLICY, STREAM_REQUEST, log)
from launcher import http


def chat_url(e, path=CHAT_PATH):
    """The URL of `path` on an Envoy's `bench` listener."""
    return e.url("bench", path)


def probe(url, body=CHAT_REQUEST, headers=None):
    """One request: (status, the filter's served-by header or '-')."""
    status, hdrs, _ = http("POST", url, body.encode(),
                           {"content-type": "application/json", **(headers or {})})
    return status, hdrs.get("x-ai-cb-served-by", "-")


def log_run(k, r):
    log(f"  {k:<16} {r['rps']:>8.0f} req/s  p50 {r['p50_us']:>6} us  p99 {r['p99_us']:>6} us"
        f"  cpu {r['cpu_us_per_req'] or 0:>6.1f} us/req  other load "
        f"{r['other_load_cores']:.2f} cores")


# ---------------------------------------------------------------------------------------------
# Upstream check and per-request cost
# ---------------------------------------------------------------------------------------------

def case_upstream_check(mock, s):
    """How fast the upstream candidates are on their own: an Envoy direct_response listener
    and the mock provider. The faster one (it must beat the proxies under test) is used."""
    log("upstream check: wrk straight at an Envoy direct_response listener and at the mock")
    upstream = procs.envoys({"u": ("upstream", upstream_server(), 1)})["u"]
    script = wrk_script("plain")
    cases = {"direct_response": (procs.cpu_meter(upstream.pid), upstream.url("ok", CHAT_PATH),
                                 script, None),
             "mock_provider": (procs.cpu_meter(mock.pid), mock.url(CHAT_PATH), script, None)}
    runs = interleaved(cases, max(1, s["reps"] - 1), s["duration"], s["connections"], 0,
                       on_run=lambda k, r: log(f"  {k:<16} {r['rps']:>8.0f} req/s  cpu "
                                               f"{r['cpu_us_per_req'] or 0:>6.1f} us/req"))
    upstream.stop()
    return {k: {"runs": rs, **summarize_runs(rs)} for k, rs in runs.items()}


def per_request_variants(ok, err):
    """Every proxy under test for the per-request case: key -> (label, bootstrap, concurrency,
    expected probe (status, served_by))."""
    both = [("openai", ok), ("anthropic", ok)]
    v = {}
    for conc in (1, 2):
        v[f"bare_c{conc}"] = (f"bare Envoy, --concurrency {conc}", bare_proxy(both), conc,
                              (200, "-"))
        v[f"filter_c{conc}"] = (f"filter, CLOSED, defaults (failover on), --concurrency {conc}",
                                filter_proxy(both, filter_config(two_upstreams(), V1)), conc,
                                (200, "openai"))
    # Fewer VM entries: the empty filter (the floor) and this filter, each built with every
    # export the SDK makes and with only those of src/adapter/exports.txt (the release build,
    # filter_c1, is one of the two: every export unless built with WASM_EXPORTS).
    for k, module, what in (("empty_c1", "empty_all_exports",
                             "empty proxy-wasm filter (SDK only), every SDK export (floor)"),
                            ("empty_kept_c1", "empty_kept_exports",
                             "empty proxy-wasm filter, exports of src/adapter/exports.txt"),
                            ("exports_all_c1", "filter_all_exports",
                             "filter, defaults, every SDK export"),
                            ("exports_kept_c1", "filter_kept_exports",
                             "filter, defaults, exports of src/adapter/exports.txt")):
        empty = k.startswith("empty")
        v[k] = (what, filter_proxy(both, {} if empty else filter_config(two_upstreams(), V1),
                                   wasm=procs.module(module)), 1,
                (200, "-" if empty else "openai"))
    # Before/after (make bench-before-after): another commit's module as it shipped
    # ("before_after_base", present only when that run snapshotted it) and this one's release
    # build, same config.
    ba = before_after_config()
    if procs.has_module("before_after_base"):
        v["base_c1"] = ("base commit's module, defaults, two upstreams, failover on",
                        filter_proxy(both, ba, wasm=procs.module("before_after_base")), 1,
                        (200, "openai"))
    v["current_c1"] = ("current module, defaults, two upstreams, failover on",
                       filter_proxy(both, ba), 1, (200, "openai"))
    v["passthrough_c1"] = (
        "filter loaded, no filter route matches (VM floor)",
        filter_proxy(both, filter_config(two_upstreams(),
                                         [{"match": {"path_prefix": "/nomatch/"},
                                           "upstream": "openai"}])), 1, (200, "-"))
    v["disabled_c1"] = (
        "filter routes, primary mode `disabled` (no breaker bookkeeping), failover off",
        filter_proxy(both, filter_config(two_upstreams("disabled"), V1, failover=FO_OFF)), 1,
        (200, "openai"))
    v["nofailover_c1"] = (
        "filter, CLOSED, failover off (no request copy kept)",
        filter_proxy(both, filter_config(two_upstreams(), V1, failover=FO_OFF)), 1,
        (200, "openai"))
    v["rerouted_c1"] = ("rerouted: primary forced_open, served by fallback",
                        filter_proxy(both, filter_config(two_upstreams("forced_open"), V1)), 1,
                        (200, "anthropic"))
    v["rewrite_c1"] = ("rerouted + fallback rewrites body `model`",
                       filter_proxy(both, filter_config(
                           two_upstreams("forced_open",
                                         {"model": "claude-3-5-sonnet-20241022"}), V1)), 1,
                       (200, "anthropic"))
    ff = [{"name": "openai", "fallbacks": ["anthropic"], "mode": "forced_open"},
          {"name": "anthropic", "mode": "forced_open"}]
    v["fastfail_c1"] = ("fast-fail: all forced_open, local 503",
                        filter_proxy(both, filter_config(ff, V1)), 1, (503, "-"))
    body_routes = [{"match": {"path_prefix": "/v1/", "model": "gpt-4o-mini"},
                    "upstream": "openai"},
                   {"match": {"path_prefix": "/v1/"}, "upstream": "anthropic"}]
    v["body_c1"] = ("body routing on `model` (pauses for the body)",
                    filter_proxy(both, filter_config(two_upstreams(), body_routes)), 1,
                    (200, "openai"))
    # Failover: the primary always answers 500 and stays admitted (metrics_only), so every
    # request fails on the primary and is retried on the fallback inside the same request.
    fo_clusters = [("openai", err), ("anthropic", ok)]
    v["failover_c1"] = ("failover: primary 500, retried on fallback in-request",
                        filter_proxy(fo_clusters, filter_config(
                            two_upstreams("metrics_only"), V1, failover=FO_ON)), 1,
                        (200, "anthropic"))
    return v


# Headline ratios: filter case / bare case.
RATIO_PAIRS = {"c1": ("filter_c1", "bare_c1"), "c2": ("filter_c2", "bare_c2"),
               "lowc": ("filter_lowc", "bare_lowc"),
               "c1_failover_off": ("nofailover_c1", "bare_c1"),
               "c1_vm_floor": ("passthrough_c1", "bare_c1"),
               "c1_empty": ("empty_c1", "bare_c1"),
               "c1_empty_kept": ("empty_kept_c1", "bare_c1"),
               "c1_exports_all": ("exports_all_c1", "bare_c1"),
               "c1_exports_kept": ("exports_kept_c1", "bare_c1"),
               # The export trimming itself: trimmed module / the same module untrimmed.
               "exports_kept_vs_all": ("exports_kept_c1", "exports_all_c1"),
               "empty_kept_vs_all": ("empty_kept_c1", "empty_c1"),
               # Before/after: each module against bare Envoy, the floor, and each other.
               "c1_base": ("base_c1", "bare_c1"),
               "c1_current": ("current_c1", "bare_c1"),
               "base_vs_empty": ("base_c1", "empty_c1"),
               "current_vs_empty": ("current_c1", "empty_c1"),
               "current_vs_base": ("current_c1", "base_c1")}


def case_per_request(ok, err, s):
    variants = per_request_variants(ok, err)
    if s.get("variants"):
        variants = {k: v for k, v in variants.items() if k in s["variants"]}
    else:   # the before/after cases only where asked for (make bench-before-after)
        variants = {k: v for k, v in variants.items() if k not in ("base_c1", "current_c1")}
    log(f"per-request: starting {len(variants)} Envoys")
    envoys = procs.envoys({k: (k, cfg, conc) for k, (_, cfg, conc, _) in variants.items()})
    script = wrk_script("chat")
    result = {"variants": {}}
    cases = {}
    for k, (label, _, conc, expect) in variants.items():
        st, by = probe(chat_url(envoys[k]))
        entry = {"label": label, "concurrency": conc, "probe": {"status": st, "served_by": by},
                 "expected": {"status": expect[0], "served_by": expect[1]}}
        result["variants"][k] = entry
        if (st, by) != expect:
            if k.startswith("failover"):
                entry["skipped"] = (f"failover not available (primary 500 -> client saw {st}, "
                                    f"served by {by})")
                log(f"  {k}: {entry['skipped']}")
                continue
            raise RuntimeError(f"{k}: probe gave {st} served_by={by}, expected {expect}")
        cases[k] = (procs.cpu_meter(envoys[k].pid), chat_url(envoys[k]), script, None)
    # Latency at low concurrency: one connection, closed loop.
    for k in ("bare_c1", "filter_c1"):
        if k in envoys and (not s.get("variants") or "lowc" in s["variants"]):
            cases[k.replace("_c1", "_lowc")] = (procs.cpu_meter(envoys[k].pid),
                                                chat_url(envoys[k]), script, 1)
    log(f"per-request: {len(cases)} cases x {s['reps']} reps x {s['duration']} s, interleaved")
    runs = interleaved(cases, s["reps"], s["duration"], s["connections"], s["warmup"],
                       on_run=log_run)
    for k, rs in runs.items():
        e = result["variants"].setdefault(k, {"label": ("bare Envoy" if k.startswith("bare")
                                                        else "filter, CLOSED") +
                                              ", --concurrency 1, wrk -c1",
                                              "concurrency": 1})
        e["runs"] = rs
        e.update(summarize_runs(rs))
    for e in envoys.values():
        e.stop()
    ratios = {}
    for tag, (fk, bk) in RATIO_PAIRS.items():
        f, b = runs.get(fk), runs.get(bk)
        if not f or not b:
            continue
        fm, bm = summarize_runs(f), summarize_runs(b)
        ratios[tag] = {
            "throughput": fm["rps"]["median"] / bm["rps"]["median"],
            "throughput_paired": paired_ratios(f, b, "rps"),
            "cpu": fm["cpu_us_per_req"]["median"] / bm["cpu_us_per_req"]["median"],
            "cpu_paired": paired_ratios(f, b, "cpu_us_per_req"),
            "cpu_added_us": fm["cpu_us_per_req"]["median"] - bm["cpu_us_per_req"]["median"],
            "cpu_added_paired": paired_diffs(f, b, "cpu_us_per_req"),
            "p50_added_us": fm["p50_us"]["median"] - bm["p50_us"]["median"],
            "p99_added_us": fm["p99_us"]["median"] - bm["p99_us"]["median"],
        }
    result["ratios"] = ratios
    return result


def before_after_config():
    """The filter config both modules of make bench-before-after get (base_c1, current_c1)."""
    return filter_config(two_upstreams(), V1, failover=FO_ON)


def case_host_calls(modules, requests=1000):
    """VM entries and host calls per success-path request of each module (key -> path), counted
    by examples/bench/hostcalls.mjs under a minimal host in Node: exact counts, no timing, so
    they say where two modules' CPU per request may differ. {"skipped": why} without Node."""
    node = shutil.which("node")
    if not node:
        return {"skipped": "node is missing"}
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "hostcalls.mjs")
    cfg = json.dumps(before_after_config())
    out = {}
    for key, (path, config) in modules.items():
        r = subprocess.run([node, script, path, cfg if config else "{}", str(requests)],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            out[key] = {"skipped": (r.stderr.strip() or f"exit {r.returncode}")[:300]}
            continue
        out[key] = json.loads(r.stdout)
        log(f"  host calls {key:<8} {out[key]['entries_per_request']:.0f} VM entries, "
            f"{out[key]['host_calls_per_request']:.0f} host calls per request")
    return out


# ---------------------------------------------------------------------------------------------
# Scaling with the number of upstreams
# ---------------------------------------------------------------------------------------------

def configure_times(path):
    """From an Envoy log (microsecond timestamps): when the first wasm VM was being created,
    when the filter logged "configured N upstreams", and when Envoy started workers."""
    ts = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\]")

    def t(line):
        m = ts.match(line)
        return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp() \
            if m else None
    first = listeners = workers = main_loop = None
    configured_all = []
    with open(path, errors="replace") as f:
        for line in f:
            if first is None:
                first = t(line)
            if listeners is None and re.search(r"\]\[config\] loading \d+ listener", line):
                listeners = t(line)
            if "wasm log" in line and "configured" in line and "upstreams" in line:
                configured_all.append(t(line))
            if workers is None and "starting workers" in line:
                workers = t(line)
            if main_loop is None and "starting main dispatch loop" in line:
                main_loop = t(line)
    configured = configured_all[0] if configured_all else None

    def span(a, b):
        return None if a is None or b is None else b - a
    return {"configured_count": len(configured_all),
            # Envoy creates the listener's filter chain: compiles the module, starts the VM,
            # the filter parses its config and logs "configured N upstreams".
            "listener_to_configured_s": span(listeners, configured),
            # From that line (breakers + metrics built next) until Envoy starts its workers.
            "configured_to_workers_s": span(configured, workers),
            # Whole listener set-up, config read to main loop (compare with bare Envoy).
            "listener_to_main_loop_s": span(listeners, main_loop),
            "log_start_to_main_loop_s": span(first, main_loop)}


def scaling_specs(n, ok, tick_variant):
    """The Envoys of one scaling size: bare and filter (and the filter with a 60 s tick)."""
    clusters = [(f"u{i}", ok) for i in range(n)]
    bare_routes, ups, routes = spread_routes(n)
    specs = {"bare": (f"scale{n}-bare", bare_proxy(clusters, bare_routes), 1),
             "filter": (f"scale{n}-filter", filter_proxy(clusters, filter_config(ups, routes)), 1)}
    if tick_variant:
        specs["filter_tick60"] = (f"scale{n}-tick60", filter_proxy(
            clusters, filter_config(ups, routes, tick_interval=60)), 1)
    return specs


def case_scaling(ok, s, tick_variant=False):
    out = {"sizes": {}}
    for n in s["sizes"]:
        paths = [f"/u/{i}{CHAT_PATH}" for i in range(n)]
        script = wrk_script(f"spread{n}", paths)
        specs = scaling_specs(n, ok, tick_variant and n == max(s["sizes"]))
        log(f"scaling: {n} upstreams: starting {', '.join(specs)}")
        # Started one after the other so each start-up time is its own.
        envoys = {k: procs.envoys({k: spec})[k] for k, spec in specs.items()}
        entry = {"upstreams": n}
        for k, e in envoys.items():
            st, by = probe(chat_url(e, paths[-1]))
            want = (200, "-" if k == "bare" else f"u{n - 1}")
            if (st, by) != want:
                raise RuntimeError(f"scaling {n} {k}: probe {st} {by}, expected {want}")
            entry[k] = {"ready_s": e.ready_s, "log": configure_times(e.log_path)}
        cases = {k: (procs.cpu_meter(e.pid), chat_url(e, paths[0]), script, None)
                 for k, e in envoys.items()}
        runs = interleaved(cases, s["reps"], s["duration"], s["connections"], s["warmup"],
                           on_run=lambda k, r: log(f"  {n:>4} {k:<14} {r['rps']:>8.0f} req/s  "
                                                   f"cpu {r['cpu_us_per_req'] or 0:>6.1f} us/req"))
        for k, e in envoys.items():
            entry[k].update({"runs": runs[k], **summarize_runs(runs[k]),
                             "rss_bytes": procs.rss_bytes(e.pid),
                             "memory": procs.envoy_memory(e)})
        for e in envoys.values():
            e.stop()
        f, b = entry["filter"], entry["bare"]
        entry["ratios"] = {
            "throughput": f["rps"]["median"] / b["rps"]["median"],
            "cpu": f["cpu_us_per_req"]["median"] / b["cpu_us_per_req"]["median"],
            "cpu_added_us": f["cpu_us_per_req"]["median"] - b["cpu_us_per_req"]["median"],
            "rss_added_bytes": f["rss_bytes"] - b["rss_bytes"],
            "heap_added_bytes": (int(f["memory"].get("allocated", 0)) -
                                 int(b["memory"].get("allocated", 0))),
            "ready_added_s": f["ready_s"] - b["ready_s"],
        }
        fl, bl = f["log"], b["log"]
        if fl["listener_to_main_loop_s"] is not None and bl["listener_to_main_loop_s"] is not None:
            entry["ratios"]["startup_added_s"] = (fl["listener_to_main_loop_s"] -
                                                  bl["listener_to_main_loop_s"])
        log(f"  {n:>4}: ready {f['ready_s']:.2f}s (bare {b['ready_s']:.2f}s), "
            f"RSS +{entry['ratios']['rss_added_bytes'] / 1e6:.1f} MB")
        out["sizes"][str(n)] = entry
    return out


# ---------------------------------------------------------------------------------------------
# Outage
# ---------------------------------------------------------------------------------------------

def failover_probe(err_port, ok_port):
    """Is in-request failover there? A primary that answers 500 must come back as a 200."""
    cfg = filter_proxy([("openai", err_port), ("anthropic", ok_port)],
                       filter_config(two_upstreams("metrics_only"), V1, failover=FO_ON))
    e = procs.envoys({"p": ("failover-probe", cfg, 1)})["p"]
    try:
        st, by = probe(chat_url(e))
    finally:
        e.stop()
    return st == 200 and by == "anthropic", st, by


def outage_summary(results, fired, t_down, t_up, primary, dead_calls, total_primary,
                   probe_calls=0):
    before = [r for r in results if r["t"] < t_down]
    during = [r for r in results if t_down <= r["t"] < t_up]
    after = [r for r in results if r["t"] >= t_up]

    def lat(rs, q):
        return pct([r["latency_ms"] for r in rs if r["latency_ms"] is not None], q)

    def errors(rs):
        return sum(1 for r in rs if not 200 <= r["status"] < 300)
    rec = fired.get(t_up, t_up)
    first_back = next((r["t"] for r in after if r["served_by"] == primary), None)
    last_not = max((r["t"] for r in after if r["served_by"] != primary), default=None)
    all_back = None
    if first_back is not None:
        later = [r["t"] for r in after if last_not is None or r["t"] > last_not]
        all_back = min(later) if later else None
    by = {}
    for r in during:
        if r["status"] == 0:
            key = f"no response ({r.get('error', '?')})"
        elif 200 <= r["status"] < 300:
            key = r["served_by"]
        else:
            key = f"{r['served_by']}!{r['status']}"
        by[key] = by.get(key, 0) + 1
    return {
        "requests": len(results), "requests_during": len(during),
        "client_errors": errors(results), "client_errors_during": errors(during),
        "dead_primary_calls": dead_calls, "primary_calls_total": total_primary,
        "dead_primary_probe_calls": probe_calls,
        "served_during": by,
        "stale_connection_retries": sum(1 for r in results if r.get("stale_connection_retried")),
        "p50_before_ms": lat(before, 50), "p99_before_ms": lat(before, 99),
        "p50_during_ms": lat(during, 50), "p99_during_ms": lat(during, 99),
        "p50_after_ms": lat(after, 50), "p99_after_ms": lat(after, 99),
        "first_on_primary_after_recovery_s":
            None if first_back is None else max(0.0, first_back - rec),
        "all_on_primary_after_recovery_s": None if all_back is None else max(0.0, all_back - rec),
        "events": fired,
    }


def run_outage(url, primary_mock, fallback_mock, s, headers=None, body=CHAT_REQUEST,
               served_by=None, primary="openai"):
    """The outage scenario through `url`: `before` s normal, `down` s of HTTP 500 from the
    primary mock, `after` s recovered. Calls to the dead primary are the mock's own count of
    requests answered in error mode, less the recovery probes among them (counted apart):
    the probes the mock received on PROBE_PATH up to the moment it recovers (its request
    log keeps only the last 200 requests, too few for a 20 req/s run)."""
    before, down, after = s["outage"]
    primary_mock.reset()
    fallback_mock.reset()
    at_recovery = {}

    def recover():
        at_recovery["probes"] = primary_mock.stats()["by_path"].get(PROBE_PATH, 0)
        primary_mock.mode(mode="healthy")

    events = [(before, lambda: primary_mock.mode(mode="error", status=500)),
              (before + down, recover)]
    results, fired = open_loop(url, body, headers, s["rate"], before + down + after,
                               events=events, served_by=served_by)
    stats = primary_mock.stats()
    probes = at_recovery.get("probes", 0)
    return results, outage_summary(results, fired, before, before + down, primary,
                                   stats["by_mode"].get("error", 0) - probes, stats["total"],
                                   probes)


def outage_settings(s, policy=None):
    out = {"before_s": s["outage"][0], "outage_s": s["outage"][1], "after_s": s["outage"][2],
           "rate": s["rate"]}
    if policy:
        out["policy"] = policy
    return out


def filter_outage_run(key, primary, fallback, s, failover, recovery_probe=None):
    """The outage through Envoy + filter (--concurrency 2) with `s['policy']`, and the
    primary's `recovery_probe` when given."""
    clusters = [("openai", primary.port), ("anthropic", fallback.port)]
    e = procs.envoys({key: (f"outage-{key}", filter_proxy(
        clusters, outage_filter_config(s["policy"], failover, recovery_probe)), 2)})[key]
    try:
        for _ in range(5):
            probe(chat_url(e))
        log(f"outage {key}: {sum(s['outage'])} s at {s['rate']} req/s "
            f"(primary 500 from {s['outage'][0]} s for {s['outage'][1]} s)")
        results, summary = run_outage(chat_url(e), primary, fallback, s)
    finally:
        e.stop()
    log_outage(key, summary)
    settings = "seed settings" if s["policy"] == SEED_POLICY else "smoke settings"
    probing = (f", recovery probe every {recovery_probe['interval']} s" if recovery_probe
               else "")
    return {"label": f"Envoy + filter, {settings}, failover {'on' if failover else 'off'}{probing}",
            "concurrency": 2, "summary": summary, "timeline": results}


def case_outage(s):
    out = {"settings": outage_settings(s, s["policy"]), "runs": {}}
    primary, fallback = procs.mock("openai"), procs.mock("anthropic")
    # The failover probe: a third mock answering 500.
    dead = procs.mock("dead", mode=ERROR_MODE)
    ok, st, by = failover_probe(dead.port, fallback.port)
    dead.stop()
    out["failover_available"] = ok
    for key, fo in (("filter_seed", False), ("filter_failover", True)):
        if fo and not ok:
            out["runs"][key] = {"label": "Envoy + filter, failover on",
                                "skipped": f"failover not available (primary 500 -> client saw "
                                           f"{st}, served by {by})"}
            log(f"outage {key}: skipped, failover not available")
            continue
        out["runs"][key] = filter_outage_run(key, primary, fallback, s, fo)
    if ok:
        out["runs"]["filter_failover_probe"] = filter_outage_run(
            "filter_failover_probe", primary, fallback, s, True, RECOVERY_PROBE)
        # Sparse traffic, where the breaker hears of a recovery late without probes.
        flap = {**s, **s["flapping"]}
        out["flapping"] = {"settings": outage_settings(flap, s["policy"]), "runs": {}}
        for key, rp in (("flapping", None), ("flapping_probe", RECOVERY_PROBE)):
            out["flapping"]["runs"][key] = filter_outage_run(key, primary, fallback, flap,
                                                             True, rp)
    primary.stop()
    fallback.stop()
    return out


def log_outage(key, sm):
    def f(x):
        return "-" if x is None else f"{x:.1f}"
    log(f"  {key}: errors {sm['client_errors']}, dead-primary calls {sm['dead_primary_calls']} "
        f"+ {sm.get('dead_primary_probe_calls', 0)} probes, "
        f"p50 {f(sm['p50_before_ms'])} -> {f(sm['p50_during_ms'])} ms, p99 "
        f"{f(sm['p99_before_ms'])} -> {f(sm['p99_during_ms'])} ms, back on primary after "
        f"{f(sm['first_on_primary_after_recovery_s'])} / "
        f"{f(sm['all_on_primary_after_recovery_s'])} s")


# ---------------------------------------------------------------------------------------------
# Streams, and the non-streaming success path against the filter before stream judging
# ---------------------------------------------------------------------------------------------

# Streamed cases (`s_*`) and non-streamed ones (`n_*`): key -> (label, module or None for the
# release filter or bare Envoy, filter config or None for bare Envoy). `n_base` is the filter
# as of `make bench-base` (the commit before stream judging entered the exchange).
STREAM_CASES = {
    "s_bare": ("bare Envoy", None, None),
    "s_empty": ("empty proxy-wasm filter (floor)", "empty_all_exports", {}),
    "s_filter": ("filter, defaults (failover on: headers held until the first token)", None,
                 "fo_on"),
    "s_nofo": ("filter, failover off (nothing held)", None, "fo_off"),
    "n_bare": ("bare Envoy", None, None),
    "n_empty": ("empty proxy-wasm filter (floor)", "empty_all_exports", {}),
    "n_filter": ("filter, defaults (failover on)", None, "fo_on"),
    "n_base": ("filter before stream judging (`make bench-base`), defaults", "base", "fo_on"),
}
# Comparisons: (a, b) -> a minus / over b, all from the same interleaved run.
STREAM_PAIRS = {"s_filter-s_bare": ("s_filter", "s_bare"),
                "s_filter-s_empty": ("s_filter", "s_empty"),
                "s_nofo-s_bare": ("s_nofo", "s_bare"),
                "s_nofo-s_empty": ("s_nofo", "s_empty"),
                "s_empty-s_bare": ("s_empty", "s_bare"),
                "n_filter-n_base": ("n_filter", "n_base"),
                "n_filter-n_bare": ("n_filter", "n_bare"),
                "n_base-n_bare": ("n_base", "n_bare"),
                "n_filter-n_empty": ("n_filter", "n_empty"),
                "n_empty-n_bare": ("n_empty", "n_bare")}
STREAM_KEYS = ("rps", "cpu_us_per_req", "cpu_us_per_chunk", "p50_us", "p99_us", "ttfb_ms",
               "ttft_ms", "total_ms", "other_load_cores")


def stream_probe(url, tokens):
    """One streamed request: refuses a proxy that does not pass the whole stream through."""
    status, hdrs, body = http("POST", url, STREAM_REQUEST.encode(),
                              {"content-type": "application/json"})
    pieces = body.count(b'"delta":{"content":"')
    ok = (status == 200 and hdrs.get("content-type", "").startswith("text/event-stream")
          and body.rstrip().endswith(b"data: [DONE]") and pieces == tokens)
    return ok, status, hdrs.get("x-ai-cb-served-by", "-"), pieces


def case_stream(s):
    """Streams of `tokens` content chunks (no pause between them) through bare Envoy, the empty
    filter and the filter with failover on and off; and the non-streaming success path through
    bare Envoy, the empty filter, the filter and the filter before stream judging. All in one
    run, interleaved: wrk for throughput and CPU, then `ttfb_requests` sequential requests for
    the time to first byte and first token (streamed cases)."""
    tokens = s["tokens"]
    sm = procs.mock("stream-upstream", mode=f'{{"mode":"healthy","tokens":{tokens}}}')
    ok = procs.mock("stream-upstream-plain")
    result = {"tokens": tokens, "cases": {}}
    envoys = {}
    try:
        specs = {}
        for k, (label, module, cfg) in STREAM_CASES.items():
            if module and not procs.has_module(module):
                result["cases"][k] = {"label": label, "skipped": f"module {module} not built "
                                      "(make bench-base)"}
                log(f"stream: {k}: {result['cases'][k]['skipped']}")
                continue
            m = sm if k.startswith("s_") else ok
            both = [("openai", m.port), ("anthropic", m.port)]
            if cfg is None:
                boot = bare_proxy(both)
            elif cfg == {}:
                boot = filter_proxy(both, {}, wasm=procs.module(module))
            else:
                boot = filter_proxy(both, filter_config(
                    two_upstreams(), V1, failover=FO_ON if cfg == "fo_on" else FO_OFF),
                    wasm=procs.module(module) if module else None)
            specs[k] = (f"stream-{k}", boot, 1)
        log(f"stream: starting {len(specs)} Envoys")
        envoys = procs.envoys(specs)
        s_script = wrk_script("stream", body=STREAM_REQUEST)
        n_script = wrk_script("chat")
        cases = {}
        for k in specs:
            url = chat_url(envoys[k])
            want = "-" if k.endswith(("bare", "empty")) else "openai"
            if k.startswith("s_"):
                good, st, by, pieces = stream_probe(url, tokens)
                if not good or by != want:
                    raise RuntimeError(f"stream {k}: probe gave {st} served_by={by}, {pieces} "
                                       f"content chunks; expected a whole stream of {tokens}")
            else:
                st, by = probe(url)
                if (st, by) != (200, want):
                    raise RuntimeError(f"stream {k}: probe gave {st} served_by={by}")
            result["cases"][k] = {"label": STREAM_CASES[k][0],
                                  "streamed": k.startswith("s_")}
            cases[k] = (procs.cpu_meter(envoys[k].pid), url,
                        s_script if k.startswith("s_") else n_script)
        if s["warmup"]:
            for k, (_, url, script) in cases.items():
                wrk(url, script, s["warmup"], s["connections"])
        runs = {k: [] for k in cases}
        log(f"stream: {len(cases)} cases x {s['reps']} reps x {s['duration']} s, interleaved")
        for rep in range(s["reps"]):
            for k, (cpu, url, script) in cases.items():
                r = measure(cpu, url, script, s["duration"], s["connections"])
                r["rep"] = rep
                if k.startswith("s_"):
                    r["cpu_us_per_chunk"] = (r["cpu_us_per_req"] / tokens
                                             if r["cpu_us_per_req"] else None)
                    fb = first_byte_sample(url, STREAM_REQUEST, s["ttfb_requests"])
                    for key in ("ttfb_ms", "ttft_ms", "total_ms"):
                        r[key] = pct(fb[key], 50)
                    r["first_byte_requests"] = len(fb["ttfb_ms"])
                    r["first_byte_errors"] = fb["errors"]
                    r["events"] = fb["events"]
                runs[k].append(r)
                log(f"  {k:<9} {r['rps']:>8.0f} req/s  cpu {r['cpu_us_per_req'] or 0:>7.1f} "
                    f"us/req" + (f"  {r['cpu_us_per_chunk'] or 0:.2f} us/chunk  ttfb "
                                 f"{r['ttfb_ms'] or 0:.2f} ms  ttft {r['ttft_ms'] or 0:.2f} ms"
                                 if k.startswith("s_") else "") +
                    f"  other load {r['other_load_cores']:.2f} cores")
    finally:
        for e in envoys.values():
            e.stop()
        sm.stop()
        ok.stop()
    for k, rs in runs.items():
        result["cases"][k]["runs"] = rs
        result["cases"][k].update({key: summarize(rs, key) for key in STREAM_KEYS})
    result["events_per_response"] = next(
        (r["events"] for rs in runs.values() for r in rs if r.get("events")), None)
    cmp_ = {}
    for tag, (a, b) in STREAM_PAIRS.items():
        ra, rb = runs.get(a), runs.get(b)
        if not ra or not rb:
            continue
        c = {}
        for key in STREAM_KEYS[:-1]:
            ma, mb = summarize(ra, key), summarize(rb, key)
            if not ma or not mb:
                continue
            c[key] = {"added": ma["median"] - mb["median"],
                      "ratio": ma["median"] / mb["median"] if mb["median"] else None,
                      "paired_added": paired_diffs(ra, rb, key),
                      "paired_ratio": paired_ratios(ra, rb, key)}
        cmp_[tag] = c
    result["compare"] = cmp_
    return result
