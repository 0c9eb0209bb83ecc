"""Load generation and the statistics over it: wrk for closed-loop throughput and latency, a
fixed-rate open-loop client for the outage scenario.

Why a module: every case measures with the same two instruments, and their quirks are handled
once here. wrk (the Debian package) runs one thread with a Lua script that sends the chat
completion POST (with any headers a peer needs), picks a random path for the scaling case and
prints a JSON summary. The open-loop client sends request i at t0 + i/rate whatever happened
to earlier ones and counts latency from that due time, so queueing in the proxy shows.
"""

import json
import os
import re
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from http.client import HTTPConnection, HTTPException, RemoteDisconnected

from . import procs
from .settings import CHAT_PATH, CHAT_REQUEST

WRK_LUA = r"""
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
%(headers)s
local paths = { %(paths)s }
local reqs = {}
function init(args)
  for i, p in ipairs(paths) do reqs[i] = wrk.format(nil, p) end
  math.randomseed(%(seed)d)
end
function request()
  return reqs[math.random(#reqs)]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"connect_err":%%d,"read_err":%%d,' ..
    '"write_err":%%d,"status_err":%%d,"timeout_err":%%d,"p50_us":%%d,"p90_us":%%d,' ..
    '"p99_us":%%d,"mean_us":%%.1f,"max_us":%%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
"""


def wrk_script(name, paths=(CHAT_PATH,), headers=None, body=CHAT_REQUEST):
    """Writes a wrk Lua script; header values and the body are Lua long strings, so JSON in
    them (Portkey's x-portkey-config) needs no escaping."""
    path = os.path.join(procs.workdir(f"lua-{os.getpid()}"), f"{name}.lua")
    hdrs = "\n".join(f'wrk.headers["{k}"] = [==[{v}]==]' for k, v in (headers or {}).items())
    with open(path, "w") as f:
        f.write(WRK_LUA % {"body": body, "headers": hdrs, "seed": 12345,
                           "paths": ", ".join(json.dumps(p) for p in paths)})
    return path


def wrk(url, script, duration, connections, timeout_s=5):
    """One closed-loop wrk run (1 thread). Returns its summary."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", f"{timeout_s}s",
           "-s", script, url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + timeout_s + 60)
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            r = json.loads(line[len("WRKJSON "):])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
            return r
    raise RuntimeError(f"wrk gave no summary: {out.stdout[-500:]} {out.stderr[-500:]}")


def measure(cpu, url, script, duration, connections, timeout_s=5):
    """wrk against `url`, plus the CPU seconds `cpu()` reports before and after, per request,
    and how busy the rest of the machine was meanwhile: busy CPU time of all cores (/proc/stat)
    minus what this harness and its processes used, in cores (other engineers' builds show
    up here; a shared 2-core machine is not quiet by default)."""
    b0, o0, c0 = procs.machine_busy_s(), procs.own_cpu_s(), cpu()
    r = wrk(url, script, duration, connections, timeout_s)
    c1, o1, b1 = cpu(), procs.own_cpu_s(), procs.machine_busy_s()
    r["cpu_s"] = c1 - c0
    r["cpu_us_per_req"] = (c1 - c0) * 1e6 / r["requests"] if r["requests"] else None
    r["non2xx"] = r["status_err"]
    r["other_load_cores"] = max(0.0, (b1 - b0) - (o1 - o0)) / (r["duration_us"] / 1e6 or 1)
    return r


def summarize(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "n": len(vals)}


def summarize_runs(runs):
    return {k: summarize(runs, k) for k in ("rps", "p50_us", "p99_us", "cpu_us_per_req",
                                            "other_load_cores")}


def interleaved(cases, reps, duration, connections, warmup, on_run=None, timeout_s=5):
    """Runs every case `reps` times, A B C A B C ...; `cases` = {key: (cpu, url, script,
    connections or None)} where cpu() gives the CPU seconds of what is measured. Returns
    {key: [run, ...]}."""
    runs = {k: [] for k in cases}
    if warmup:
        for k, (_, url, script, conns) in cases.items():
            wrk(url, script, warmup, conns or connections, timeout_s)
    for rep in range(reps):
        for k, (cpu, url, script, conns) in cases.items():
            r = measure(cpu, url, script, duration, conns or connections, timeout_s)
            r["rep"] = rep
            runs[k].append(r)
            if on_run:
                on_run(k, r)
    return runs


def paired_ratios(a_runs, b_runs, key):
    """Per-repetition ratio a/b (the runs were interleaved, so rep i of a and b are neighbours)."""
    vals = [a[key] / b[key] for a, b in zip(a_runs, b_runs) if a.get(key) and b.get(key)]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def paired_diffs(a_runs, b_runs, key):
    """Per-repetition difference a - b (neighbours in the interleaved order)."""
    vals = [a[key] - b[key] for a, b in zip(a_runs, b_runs)
            if a.get(key) is not None and b.get(key) is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "lower_in": sum(1 for x in vals if x < 0), "n": len(vals)}


def pct(vals, q):
    if not vals:
        return None
    s = sorted(vals)
    k = min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))
    return s[k]


KEEPALIVE_EXPIRY = 4.0


def open_loop(url, body, headers, rate, duration, events=(), timeout=15.0, served_by=None):
    """Fixed-rate open-loop client: request i is due at t0 + i/rate whatever happened to the
    earlier ones. Latency counts from the due time (queueing in the proxy included). `events`
    are (t, callable) run by the pacing thread when their time comes. Returns (results, event
    times). Bounded: each request gives up after `timeout` s without a byte, and requests
    still outstanding 2 x `timeout` + 5 s after the last was due are reported as unanswered.

    The pool has a thread for every request that can be in flight (rate x (timeout + 1 s)),
    so a slow proxy never makes requests wait in the client: that would add the client's own
    queueing to the proxy's latency."""
    workers = int(rate * (timeout + 1)) + 16
    m = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    host, port, path = m.group(1), int(m.group(2)), m.group(3)
    n = int(rate * duration)
    results = [None] * n
    local = threading.local()
    hdrs = {"content-type": "application/json", **(headers or {})}

    def one(i, due):
        try:
            attempt(i, due)
        except Exception as e:  # noqa: BLE001 - a harness bug must show, not vanish
            results[i] = {"t": round(due - t0, 4), "status": -1, "served_by": repr(e),
                          "latency_ms": None, "service_ms": None}

    def attempt(i, due):
        sent = time.monotonic()
        status, by, error, stale = 0, "-", None, False
        # Like httpx (the OpenAI SDK's client, keep-alive expiry 5 s), a connection idle for
        # KEEPALIVE_EXPIRY s is not reused: servers close idle ones (uvicorn after 5 s). One the
        # server closed all the same fails at once with nothing received: reconnect and send
        # again, once, as client pools do. Anything else (timeout, reset mid-response, refused)
        # is a client-visible error.
        conn = getattr(local, "conn", None)
        if conn is not None and sent - local.last_used > KEEPALIVE_EXPIRY:
            conn.close()
            local.conn = None
        for retry in (False, True):
            conn = getattr(local, "conn", None)
            reused = conn is not None
            try:
                if conn is None:
                    conn = local.conn = HTTPConnection(host, port, timeout=timeout)
                conn.request("POST", path, body, hdrs)
                r = conn.getresponse()
                data = r.read()
                status = r.status
                by = r.getheader("x-ai-cb-served-by") or (served_by(data) if served_by else "-")
                if (r.getheader("connection") or "").lower() == "close":
                    conn.close()
                    local.conn = None
                local.last_used = time.monotonic()
                break
            except (OSError, HTTPException) as e:
                conn.close()
                local.conn = None
                error = type(e).__name__
                quick = time.monotonic() - sent < 1.0
                if retry or not reused or not quick or not isinstance(
                        e, (RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
                    break
                stale = True
        done = time.monotonic()
        results[i] = {"t": round(due - t0, 4), "status": status, "served_by": by,
                      "latency_ms": round((done - due) * 1000, 3),
                      "service_ms": round((done - sent) * 1000, 3)}
        if status == 0:
            results[i]["error"] = error
        if stale:
            results[i]["stale_connection_retried"] = True

    def fire(t_ev, fn):
        pause = t0 + t_ev - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        fn()
        fired[t_ev] = round(time.monotonic() - t0, 4)

    pending = sorted(events, key=lambda e: e[0])
    fired = {}
    ex = ThreadPoolExecutor(max_workers=workers)
    futures = []
    try:
        t0 = time.monotonic()
        for i in range(n):
            due = t0 + i / rate
            while pending and pending[0][0] <= due - t0:
                fire(*pending.pop(0))
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            futures.append(ex.submit(one, i, due))
        for ev in pending:
            fire(*ev)
        _, late = wait(futures, timeout=2 * timeout + 5)
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
    for i, r in enumerate(results):
        if r is None and late:
            results[i] = {"t": round(i / rate, 4), "status": 0, "served_by": "-",
                          "latency_ms": None, "service_ms": None, "error": "unanswered"}
    return [r for r in results if r is not None], fired


FIRST_TOKEN = re.compile(rb'"(?:content|text|partial_json|arguments)":"[^"]')


def first_byte_sample(url, body, n, timeout=15.0):
    """`n` sequential POSTs of `body` on one kept-alive connection (the stream case's time to
    first byte and first token; wrk reports only the time to the last byte). Per request, from
    the moment the request is written: `ttfb_ms` to the status line and headers, `ttft_ms` to
    the first content piece (a non-empty `content`/`text` delta: what a client shows first),
    `total_ms` to the end of the body. Bounded: every read gives up after `timeout` s. Returns
    {ttfb_ms, ttft_ms, total_ms: [per request], errors, events} where `events` is the number
    of SSE events of the first response."""
    m = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    host, port, path = m.group(1), int(m.group(2)), m.group(3)
    hdrs = {"content-type": "application/json", "accept": "text/event-stream"}
    out = {"ttfb_ms": [], "ttft_ms": [], "total_ms": [], "errors": 0, "events": None}
    conn = None
    for _ in range(n):
        try:
            if conn is None:
                conn = HTTPConnection(host, port, timeout=timeout)
                conn.connect()
            t0 = time.perf_counter()
            conn.request("POST", path, body, hdrs)
            r = conn.getresponse()
            t_head = time.perf_counter()
            t_token, tail, whole = None, b"", []
            while True:
                data = r.read1(65536)
                if not data:
                    break
                if t_token is None:
                    if FIRST_TOKEN.search(tail + data):
                        t_token = time.perf_counter()
                    tail = data[-64:]
                if out["events"] is None:
                    whole.append(data)
            t_end = time.perf_counter()
            if r.status != 200 or t_token is None:
                out["errors"] += 1
                continue
            if out["events"] is None:
                out["events"] = b"".join(whole).replace(b"\r\n", b"\n").count(b"\n\n")
            out["ttfb_ms"].append((t_head - t0) * 1000)
            out["ttft_ms"].append((t_token - t0) * 1000)
            out["total_ms"].append((t_end - t0) * 1000)
        except (OSError, HTTPException):
            out["errors"] += 1
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()
    return out
