"""`make soak`: mixed traffic through Envoy (`--concurrency 2`, the release module) against
four mock providers for a fixed time, Envoy's memory sampled every 10 s, and the books checked
at the end.

The traffic, open-loop at `rate` requests per second (at most `MAX_IN_FLIGHT` at once), in a
fixed repeating mix of 20:

* 7 chat completions and 4 streamed ones to `openai` (the default route, failing over to
  `anthropic`);
* 4 streams to `gemini`, whose streams fail inside the 200 now and then (no fallback: while
  its breaker is open the filter answers 503 itself, `circuit_breaker_all_open`);
* 2 slow streams to `mistral` that the client cancels after two content chunks;
* 3 reads of the health endpoint.

The faults, once per `cycle` seconds: `openai` is down (500s) for 3 s, so its breaker opens,
probes while it is still down, re-opens, and closes once it is back; every other cycle
`anthropic` is down for 1.5 s at the same time (failovers fail, then both breakers are open and
the filter answers locally). Half a cycle later `gemini` fails its next 5 streams, with an error
event (even cycles) or a connection cut (odd cycles).

At the end, with no traffic: nothing is in flight in Envoy, no breaker holds a probe slot, the
filter's counters match what was sent exactly (see `check_books`), and memory after warm-up
stayed within `bound` (see `check_memory`).
"""

import asyncio
import json
import os
import time

import httpx2 as httpx  # the HTTP client of the pinned openai SDK (make sdk)

import launcher
from common import (HEALTH_PATH, LISTENER, bootstrap, filter_metrics, health, log, memory,
                    metric_sum, mib, stats, wait_idle, workdir)

MAX_IN_FLIGHT = 64
MIX = (["chat"] * 7 + ["stream"] * 4 + ["gemini"] * 4 + ["cancel"] * 2 + ["health"] * 3)
# Interleaved so that every kind comes every few requests.
MIX = [MIX[(i * 7) % len(MIX)] for i in range(len(MIX))]
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
STREAM = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
CLUSTERS = ["openai", "anthropic", "gemini", "mistral"]
# Mock modes at rest: mistral's streams last ~10 s (100 pieces, 100 ms apart), so a client
# that cancels after two pieces is never late enough to see the end, even on a busy machine.
REST_MODES = {"openai": {"mode": "healthy"}, "anthropic": {"mode": "healthy"},
              "gemini": {"mode": "healthy", "tokens": 5},
              "mistral": {"mode": "healthy", "tokens": 100, "chunk_delay_ms": 100}}
SAMPLE_EVERY = 10.0


class Tally:
    """What the clients sent and saw, per kind."""

    def __init__(self):
        self.sent = {}
        self.status = {}
        self.cancelled = 0
        self.complete_streams = 0
        self.broken = {}

    def add(self, kind, key):
        d = self.status.setdefault(kind, {})
        d[key] = d.get(key, 0) + 1


async def one(client, base, kind, tally):
    """Sends one request of `kind` and records what came back."""
    tally.sent[kind] = tally.sent.get(kind, 0) + 1
    try:
        if kind == "health":
            r = await client.get(base + HEALTH_PATH)
            tally.add(kind, r.status_code)
            return
        if kind == "chat":
            r = await client.post(base + "/v1/chat/completions", json=CHAT)
            tally.add(kind, r.status_code)
            return
        path = {"stream": "/v1/chat/completions", "gemini": "/g/v1/chat/completions",
                "cancel": "/m/v1/chat/completions"}[kind]
        async with client.stream("POST", base + path, json=STREAM) as r:
            tally.add(kind, r.status_code)
            pieces = 0
            body = b""
            async for chunk in r.aiter_raw():
                body += chunk
                if kind == "cancel" and r.status_code == 200 and b"[DONE]" not in body:
                    pieces = body.count(b'"content":"') - 1  # the role chunk has "content":""
                    if pieces >= 2:
                        tally.cancelled += 1
                        return  # leaving the block closes the connection mid-stream
            if r.status_code == 200 and b"data: [DONE]" in body:
                tally.complete_streams += 1
    except httpx.HTTPError as e:
        name = type(e).__name__
        tally.broken.setdefault(kind, {}).setdefault(name, 0)
        tally.broken[kind][name] += 1


async def faults(mocks, cycle, stop_at):
    """The fault schedule (module doc), until `stop_at`."""
    n = 0
    loop = asyncio.get_running_loop()
    while time.monotonic() < stop_at:
        start = time.monotonic()
        await loop.run_in_executor(None, lambda: mocks["openai"].mode(
            mode="down_for", down_ms=3000, **{"with": {"mode": "error", "status": 500}}))
        if n % 2 == 1:
            await loop.run_in_executor(None, lambda: mocks["anthropic"].mode(
                mode="down_for", down_ms=1500, **{"with": {"mode": "error", "status": 503}}))
        await asyncio.sleep(max(0.0, min(cycle / 2, stop_at - time.monotonic())))
        if time.monotonic() >= stop_at:
            break
        fault = ({"mode": "stream_error", "after_tokens": 1} if n % 2 == 0
                 else {"mode": "stream_cut", "after_tokens": 1})
        await loop.run_in_executor(None, lambda: mocks["gemini"].mode(
            mode="fail_next", count=5, tokens=5, **{"with": fault}))
        await asyncio.sleep(max(0.0, min(start + cycle - time.monotonic(),
                                         stop_at - time.monotonic())))
        n += 1
    return n


async def sampler(envoy, t0, stop_at, samples, tally):
    """A memory sample every SAMPLE_EVERY s from t0, the last one at `stop_at`."""
    loop = asyncio.get_running_loop()
    k = 0
    while True:
        at = t0 + k * SAMPLE_EVERY
        if at > stop_at + 0.5:
            return
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        m = await loop.run_in_executor(None, memory, envoy)
        m["t"] = round(time.monotonic() - t0, 1)
        m["requests"] = sum(tally.sent.values())
        samples.append(m)
        log(f"t={m['t']:6.1f}s  rss {mib(m['rss']):7.2f} MiB  allocated "
            f"{mib(m['allocated']):7.2f} MiB  heap {mib(m['heap_size']):7.2f} MiB  "
            f"requests {m['requests']}")
        k += 1


async def drive(envoy, mocks, secs, rate, cycle, samples):
    tally = Tally()
    base = envoy.url(LISTENER, "")
    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT + 8, max_keepalive_connections=32)
    timeout = httpx.Timeout(30.0)
    t0 = time.monotonic()
    stop_at = t0 + secs
    sem = asyncio.Semaphore(MAX_IN_FLIGHT)
    tasks = set()

    async def run(kind):
        try:
            await one(client, base, kind, tally)
        finally:
            sem.release()

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        side = [asyncio.create_task(faults(mocks, cycle, stop_at)),
                asyncio.create_task(sampler(envoy, t0, stop_at, samples, tally))]
        i = 0
        while True:
            at = t0 + i / rate
            if at >= stop_at:
                break
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            await sem.acquire()
            t = asyncio.create_task(run(MIX[i % len(MIX)]))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            i += 1
        # Every request ends by itself within its 30 s timeout.
        if tasks:
            await asyncio.wait(tasks, timeout=40)
        cycles = await side[0]
        await side[1]
    return tally, cycles


def check_books(envoy, mocks, tally, before):
    """The filter's counters against what was sent. Every routed request (all but health
    reads) ends exactly one way: an outcome recorded on the upstream that answered it
    (`circuit_breaker_requests`, any outcome), a local answer because every candidate was open
    (`circuit_breaker_all_open`), or a client cancel, which releases the attempt without an
    outcome. A failover callout (`circuit_breaker_failovers`, result success or failure) is
    one more attempt and records one more outcome. So

        Σ requests + all_open + cancelled = routed + Σ failovers{success, failure}

    and, per mock, the requests it received = the outcomes recorded for its upstream + the
    cancelled streams it served (mistral). Envoy's own downstream_rq_total counts everything
    sent, health reads included. Returns a list of failures (empty when the books balance)
    and the figures."""
    s = stats(envoy)
    m = filter_metrics(s)
    routed = sum(v for k, v in tally.sent.items() if k != "health")
    outcomes = {u: {o: metric_sum(m, "circuit_breaker_requests", upstream=u, outcome=o)
                    for o in ("success", "failure", "ignored")} for u in CLUSTERS}
    total_outcomes = sum(sum(d.values()) for d in outcomes.values())
    all_open = metric_sum(m, "circuit_breaker_all_open")
    fo = {r: metric_sum(m, "circuit_breaker_failovers", result=r)
          for r in ("success", "failure", "skipped")}
    left = total_outcomes + all_open + tally.cancelled
    right = routed + fo["success"] + fo["failure"]
    figures = {"routed": routed, "outcomes": outcomes, "all_open": all_open,
               "failovers": fo, "cancelled": tally.cancelled,
               "rejected": {u: metric_sum(m, "circuit_breaker_rejected", upstream=u)
                            for u in CLUSTERS},
               "transitions": {u: {f"{ls.get('from')}>{ls.get('to')}": v for mm, ls, v in m
                                   if mm == "circuit_breaker_transitions"
                                   and ls.get("upstream") == u and v} for u in CLUSTERS},
               "failures": {u: {r: v for mm, ls, v in m if mm == "circuit_breaker_failures"
                                and ls.get("upstream") == u and v
                                for r in [ls.get("reason")]} for u in CLUSTERS}}
    bad = []
    if left != right:
        bad.append(f"books: Σ requests {total_outcomes} + all_open {all_open} + cancelled "
                   f"{tally.cancelled} = {left} != routed {routed} + failovers "
                   f"{fo['success']}+{fo['failure']} = {right}")
    received = {u: mocks[u].stats()["total"] - before.get(u, 0) for u in CLUSTERS}
    figures["mock_received"] = received
    for u in CLUSTERS:
        want = sum(outcomes[u].values()) + (tally.cancelled if u == "mistral" else 0)
        if received[u] != want:
            bad.append(f"mock {u} received {received[u]} requests; the filter recorded "
                       f"{sum(outcomes[u].values())} outcomes"
                       + (f" + {tally.cancelled} cancelled" if u == "mistral" else ""))
    sent = sum(tally.sent.values())
    rq_total = s.get(f"http.{LISTENER}.downstream_rq_total", 0)
    figures["downstream_rq_total"] = rq_total
    if rq_total != sent:
        bad.append(f"Envoy downstream_rq_total {rq_total} != {sent} requests sent")
    for kind in ("chat", "stream", "health", "cancel"):
        if tally.broken.get(kind):
            bad.append(f"{kind}: requests broken at the client: {tally.broken[kind]}")
    if set(tally.status.get("health", {})) - {200}:
        bad.append(f"health reads: {tally.status['health']}")
    return bad, figures


def check_idle(envoy):
    """Nothing in flight in Envoy (no paused request, no callout), once the traffic stopped."""
    idle = wait_idle(envoy, CLUSTERS)
    return [f"{name} = {v} at rest" for name, v in idle.items()
            if v and "cx_active" not in name], idle


def check_probes(envoy):
    """No breaker holds a probe slot with no traffic (a health read: one more request)."""
    bad = []
    h = health(envoy)
    probes = {u: b.get("probes_in_flight") for u, b in h["breakers"].items()}
    for u, n in probes.items():
        if n != 0:
            bad.append(f"{u}: probes_in_flight = {n} at rest")
    return bad, {"probes_in_flight": probes,
                 "states": {u: b.get("state") for u, b in h["breakers"].items()}}


def heal(envoy, mocks, timeout=20.0):
    """Every mock healthy, then a request on each route until every breaker is closed again
    (bounded): no breaker is stuck open or half-open after the soak."""
    for u, mode in REST_MODES.items():
        mocks[u].mode(**mode)
    deadline = time.monotonic() + timeout
    while True:
        states = {u: b["state"] for u, b in health(envoy)["breakers"].items()}
        if all(s == "closed" for s in states.values()) or time.monotonic() >= deadline:
            return states
        paths = {"openai": "/v1/chat/completions", "anthropic": "/a/v1/chat/completions",
                 "gemini": "/g/v1/chat/completions", "mistral": "/m/v1/chat/completions"}
        for path in {paths[u] for u, s in states.items() if s != "closed"}:
            launcher.http("POST", envoy.url(LISTENER, path), json.dumps(CHAT),
                          {"content-type": "application/json"}, timeout=15)
        time.sleep(0.3)


def check_memory(samples, warmup, bound):
    """After warm-up, neither RSS nor tcmalloc's allocated bytes may end more than `bound`
    above their first post-warm-up sample (the last sample against the first one at or after
    `warmup` s)."""
    post = [s for s in samples if s["t"] >= warmup]
    if len(post) < 2:
        return [f"memory: only {len(post)} samples after the {warmup:.0f} s warm-up"], {}
    first, last = post[0], post[-1]
    growth = {k: last[k] - first[k] for k in ("rss", "allocated", "heap_size")}
    peak = {k: max(s[k] for s in post) - first[k] for k in ("rss", "allocated", "heap_size")}
    bad = [f"memory: {k} grew {mib(growth[k]):.2f} MiB after warm-up (bound "
           f"{mib(bound):.0f} MiB)" for k in ("rss", "allocated") if growth[k] > bound]
    return bad, {"warmup_s": warmup, "bound": bound, "growth": growth, "peak_over_first": peak}


def run(secs, rate, cycle, warmup, bound):
    """The soak: returns (failures, result dict)."""
    d = workdir(f"soak-{os.getpid()}")
    mocks = {u: launcher.Mock(u, d) for u in CLUSTERS}
    for u, mode in REST_MODES.items():
        mocks[u].mode(**mode)
    envoy = launcher.Envoy(bootstrap([(u, mocks[u].port) for u in CLUSTERS]), d, name="soak",
                           concurrency=2).wait_ready()
    log(f"envoy pid {envoy.pid} (--concurrency 2), mocks "
        f"{', '.join(f'{u}:{m.port}' for u, m in mocks.items())}; {secs:.0f} s at {rate} req/s")
    before = {u: mocks[u].stats()["total"] for u in CLUSTERS}
    samples = []
    t0 = time.monotonic()
    tally, cycles = asyncio.run(drive(envoy, mocks, secs, rate, cycle, samples))
    elapsed = time.monotonic() - t0
    log(f"sent {sum(tally.sent.values())} requests in {elapsed:.1f} s, {cycles} fault cycles; "
        f"statuses {tally.status}; broken {tally.broken}; cancelled {tally.cancelled}")
    bad_idle, idle = check_idle(envoy)
    bad_books, books = check_books(envoy, mocks, tally, before)
    bad_rest, rest = check_probes(envoy)
    rest["idle"] = idle
    bad_mem, mem = check_memory(samples, warmup, bound)
    states = heal(envoy, mocks)
    bad_heal = [f"breakers not closed after healing: {states}"] \
        if any(s != "closed" for s in states.values()) else []
    final = memory(envoy)
    envoy.stop()
    for m in mocks.values():
        m.stop()
    result = {"secs": secs, "rate": rate, "cycle": cycle, "elapsed_s": round(elapsed, 1),
              "fault_cycles": cycles, "sent": tally.sent, "status": tally.status,
              "broken": tally.broken, "cancelled": tally.cancelled,
              "complete_streams": tally.complete_streams, "rest": rest, "books": books,
              "memory": mem, "samples": samples, "after_heal": final,
              "states_after_heal": states}
    return bad_idle + bad_books + bad_rest + bad_mem + bad_heal, result
