"""`make streams-1000`: N concurrent slow streaming requests through Envoy with 2 workers; the
memory each in-flight stream costs, with the filter and without it; and that nothing stalls
or leaks when the streams all end, or are all cancelled.

For each variant (`filter`: the release module with the soak's config; `empty`: the
proxy-wasm SDK with empty contexts, examples/bench/empty-filter; `bare`: no filter;
`filter_64k`: the filter again with a 64 KiB prompt in every request), a fresh
Envoy (`--concurrency 2`) in front of one mock whose streams send `tokens` content pieces
`delay_ms` apart:

1. warm-up: a few streams one after the other (the Wasm VMs and connection pools exist);
   then the baseline sample (RSS, admin /memory allocated and heap_size);
2. N streams opened at `ramp` per second; once Envoy counts N active downstream requests
   and every client has its first chunk, the peak sample (two, 1 s apart; the higher);
3. every stream runs to its end: each must be a 200 with its `data: [DONE]`; then nothing
   may be left active (downstream and upstream requests) and the sample after the end;
4. N streams again, and once all are in flight every client closes its connection: Envoy
   must drop every request (downstream and upstream active back to 0 within 20 s); the
   sample after the cancel.

Memory per in-flight stream = (peak − baseline) / N. What the filter adds per stream is its
figure minus the empty module's (the cost of any Wasm filter) and minus bare Envoy's.
"""

import asyncio
import json
import os
import time

import httpx2 as httpx  # the HTTP client of the pinned openai SDK (make sdk)

import launcher
from common import (EMPTY_MODULE, LISTENER, bootstrap, log, memory, mib, stats, wait_idle,
                    workdir)

STREAM = {"model": "gpt-4o-mini", "stream": True,
          "messages": [{"role": "user", "content": "hello"}]}
# The `filter_64k` variant: the filter with a 64 KiB prompt in every request, to see the
# request copy kept for failover (README "Memory held per request") in the per-stream figure.
BIG_PROMPT = 64 * 1024
PATH = "/v1/chat/completions"
CLUSTER = "openai"


class Streams:
    """N client streams, each read to its end or until cancelled."""

    def __init__(self, n, body):
        self.n = n
        self.body = body
        self.first = 0
        self.done = 0
        self.status = {}
        self.errors = {}
        self.first_event = None

    async def one(self, client, url):
        try:
            async with client.stream("POST", url, content=self.body,
                                     headers={"content-type": "application/json"}) as r:
                self.status[r.status_code] = self.status.get(r.status_code, 0) + 1
                body = b""
                got_first = False
                async for chunk in r.aiter_raw():
                    body += chunk
                    if not got_first:
                        got_first = True
                        self.first += 1
                        if self.first == self.n and self.first_event:
                            self.first_event.set()
                if r.status_code == 200 and body.rstrip().endswith(b"data: [DONE]"):
                    self.done += 1
        except httpx.HTTPError as e:
            name = type(e).__name__
            self.errors[name] = self.errors.get(name, 0) + 1


async def wave(envoy, n, ramp, cancel, on_peak, timeout, body):
    """Opens n streams at `ramp` per second; at the peak (n active in Envoy, every first chunk
    in) calls `on_peak()`; then lets them end, or cancels them all. Returns (Streams,
    seconds to the peak)."""
    s = Streams(n, body)
    s.first_event = asyncio.Event()
    url = envoy.url(LISTENER, PATH)
    limits = httpx.Limits(max_connections=n + 16, max_keepalive_connections=n + 16)
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout)) as client:
        tasks = []
        for i in range(n):
            await asyncio.sleep(max(0.0, t0 + i / ramp - time.monotonic()))
            tasks.append(asyncio.create_task(s.one(client, url)))
        try:
            await asyncio.wait_for(s.first_event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        active = 0
        for _ in range(100):  # at most ~10 s for Envoy's gauge to catch up
            active = (await loop.run_in_executor(None, stats, envoy)).get(
                f"http.{LISTENER}.downstream_rq_active", 0)
            if active >= n:
                break
            await asyncio.sleep(0.1)
        t_peak = time.monotonic() - t0
        await loop.run_in_executor(None, on_peak, active)
        if cancel:
            for t in tasks:
                t.cancel()
        await asyncio.wait(tasks, timeout=timeout)
    return s, t_peak


def variant(name, n, tokens, delay_ms, ramp, with_cancel):
    """One variant's run (module doc, steps 1-4). Returns (failures, result dict)."""
    d = workdir(f"streams-{name}-{os.getpid()}")
    mock = launcher.Mock(CLUSTER, d)
    mock.mode(mode="healthy", tokens=tokens, chunk_delay_ms=delay_ms)
    wasm = EMPTY_MODULE if name == "empty" else None
    req = dict(STREAM)
    if name == "filter_64k":
        req["messages"] = [{"role": "user", "content": "x" * BIG_PROMPT}]
    body = json.dumps(req).encode()
    envoy = launcher.Envoy(bootstrap([(CLUSTER, mock.port)], wasm=wasm,
                                     with_filter=name != "bare"),
                           d, name=f"streams-{name}", concurrency=2).wait_ready()
    bad = []
    try:
        # 1. warm-up and baseline
        mock.mode(mode="healthy", tokens=3)
        for _ in range(10):
            launcher.http("POST", envoy.url(LISTENER, PATH), '{"model":"m","stream":true}',
                          {"content-type": "application/json"})
        mock.mode(mode="healthy", tokens=tokens, chunk_delay_ms=delay_ms)
        time.sleep(1.0)
        base = memory(envoy)
        stream_s = tokens * delay_ms / 1000
        timeout = stream_s + n / ramp + 60
        peaks = []

        def on_peak(active):
            a = memory(envoy)
            time.sleep(1.0)
            b = memory(envoy)
            peak = {k: max(a[k], b[k]) for k in a}
            peak["active"] = active
            peaks.append(peak)
            log(f"{name}: {active} active; rss {mib(peak['rss']):.1f} MiB, allocated "
                f"{mib(peak['allocated']):.1f} MiB (baseline {mib(base['rss']):.1f} / "
                f"{mib(base['allocated']):.1f})")

        # 2-3. all end
        ended, t_peak = asyncio.run(wave(envoy, n, ramp, False, on_peak, timeout, body))
        idle_end = wait_idle(envoy, [CLUSTER])
        time.sleep(1.0)
        after_end = memory(envoy)
        if peaks[0]["active"] < n:
            bad.append(f"{name}: only {peaks[0]['active']} of {n} streams active at once")
        if ended.done != n or ended.errors:
            bad.append(f"{name}: {ended.done} of {n} streams complete with [DONE]; statuses "
                       f"{ended.status}, errors {ended.errors}")
        bad += [f"{name}: {k} = {v} after every stream ended" for k, v in idle_end.items()
                if v and "cx_active" not in k]
        result = {"n": n, "tokens": tokens, "delay_ms": delay_ms, "ramp": ramp,
                  "baseline": base, "peak": peaks[0], "after_end": after_end,
                  "t_peak_s": round(t_peak, 1), "complete": ended.done,
                  "status": ended.status, "errors": ended.errors, "idle_after_end": idle_end}
        # 4. all cancelled
        if with_cancel:
            cancelled, _ = asyncio.run(wave(envoy, n, ramp, True, on_peak, timeout, body))
            t = time.monotonic()
            idle_cancel = wait_idle(envoy, [CLUSTER], timeout=20)
            drain_s = time.monotonic() - t
            time.sleep(1.0)
            after_cancel = memory(envoy)
            bad += [f"{name}: {k} = {v} after every stream was cancelled"
                    for k, v in idle_cancel.items() if v and "cx_active" not in k]
            if cancelled.done:
                bad.append(f"{name}: {cancelled.done} streams ended before the cancel "
                           "(make them longer)")
            result.update({"peak_cancel": peaks[1], "after_cancel": after_cancel,
                           "idle_after_cancel": idle_cancel,
                           "cancel_drain_s": round(drain_s, 1),
                           "cancel_client_errors": cancelled.errors})
        result["per_stream"] = {k: (peaks[0][k] - base[k]) / n
                                for k in ("rss", "allocated", "heap_size")}
        return bad, result
    finally:
        envoy.stop()
        mock.stop()


def run(n, tokens, delay_ms, ramp, variants):
    """Each variant in turn (never two Envoys at once, so they don't share the cores)."""
    bad, results = [], {}
    for name in variants:
        log(f"{name}: {n} streams of {tokens} pieces {delay_ms} ms apart, opened at "
            f"{ramp}/s, through --concurrency 2")
        b, r = variant(name, n, tokens, delay_ms, ramp, with_cancel=name == "filter")
        bad += b
        results[name] = r
        ps = r["per_stream"]
        log(f"{name}: per in-flight stream: rss {ps['rss'] / 1024:.1f} KiB, allocated "
            f"{ps['allocated'] / 1024:.1f} KiB, heap {ps['heap_size'] / 1024:.1f} KiB; "
            f"{r['complete']}/{n} complete")
    if "filter" in results:
        f = results["filter"]["per_stream"]
        for other in ("empty", "bare"):
            if other in results:
                o = results[other]["per_stream"]
                results[f"filter_minus_{other}"] = {k: f[k] - o[k] for k in f}
        if "filter_64k" in results:
            o = results["filter_64k"]["per_stream"]
            results["filter_64k_minus_filter"] = {k: o[k] - f[k] for k in f}
    return bad, results
