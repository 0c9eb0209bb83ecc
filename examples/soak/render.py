"""The Markdown tables of a soak or streams result (target/soak/*-result.json), as
RELIABILITY.md quotes them: `soak.py render soak`. Reads the figures; measures nothing."""


def _mib(n):
    return f"{n / (1024 * 1024):.2f}"


def _kib(n):
    return f"{n / 1024:.1f}"


def soak(r):
    rows = ["| t (s) | requests sent | VmRSS (MiB) | allocated (MiB) | heap_size (MiB) |",
            "| ---: | ---: | ---: | ---: | ---: |"]
    for s in r["samples"]:
        rows.append(f"| {s['t']:.0f} | {s['requests']:,} | {_mib(s['rss'])} | "
                    f"{_mib(s['allocated'])} | {_mib(s['heap_size'])} |")
    m = r["memory"]
    out = ["\n".join(rows), "",
           f"After the {m['warmup_s']:.0f} s warm-up (bound {_mib(m['bound'])} MiB): growth "
           f"first → last sample: RSS {_mib(m['growth']['rss'])} MiB, allocated "
           f"{_mib(m['growth']['allocated'])} MiB, heap_size {_mib(m['growth']['heap_size'])} "
           f"MiB; highest sample over the first: RSS {_mib(m['peak_over_first']['rss'])} MiB, "
           f"allocated {_mib(m['peak_over_first']['allocated'])} MiB."]
    b = r["books"]
    out += ["", "| upstream | success | failure | ignored | rejected | transitions | "
            "failures by reason | mock received |",
            "| --- | ---: | ---: | ---: | ---: | --- | --- | ---: |"]
    for u, o in b["outcomes"].items():
        tr = ", ".join(f"{k.replace('>', ' → ')} {v}"
                       for k, v in sorted(b["transitions"][u].items()))
        fr = ", ".join(f"{k} {v}" for k, v in sorted(b["failures"][u].items()))
        out.append(f"| {u} | {o['success']:,} | {o['failure']:,} | {o['ignored']:,} | "
                   f"{b['rejected'][u]:,} | {tr or '–'} | {fr or '–'} | "
                   f"{b['mock_received'][u]:,} |")
    total = sum(sum(o.values()) for o in b["outcomes"].values())
    fo = b["failovers"]
    out += ["", f"Books: Σ requests {total:,} + all_open {b['all_open']:,} + cancelled "
            f"{b['cancelled']:,} = {total + b['all_open'] + b['cancelled']:,}; routed "
            f"{b['routed']:,} + failovers {fo['success']:,} success + {fo['failure']:,} "
            f"failure = {b['routed'] + fo['success'] + fo['failure']:,} (skipped "
            f"{fo['skipped']:,}). Envoy downstream_rq_total {b['downstream_rq_total']:,}."]
    return "\n".join(out)


def streams(r):
    rows = ["| variant | streams | baseline RSS / allocated (MiB) | at the peak | per stream: "
            "RSS (KiB) | per stream: allocated (KiB) | complete with [DONE] | after all ended "
            "| after all cancelled | cancel drained in |",
            "| --- | ---: | --- | --- | ---: | ---: | ---: | --- | --- | ---: |"]
    for name in ("filter", "empty", "bare", "filter_64k"):
        if name not in r:
            continue
        v = r[name]
        b, p, e = v["baseline"], v["peak"], v["after_end"]
        c = v.get("after_cancel")
        rows.append(
            f"| {name} | {p['active']:,} | {_mib(b['rss'])} / {_mib(b['allocated'])} | "
            f"{_mib(p['rss'])} / {_mib(p['allocated'])} | {_kib(v['per_stream']['rss'])} | "
            f"{_kib(v['per_stream']['allocated'])} | {v['complete']:,} | "
            f"{_mib(e['rss'])} / {_mib(e['allocated'])} | "
            + (f"{_mib(c['rss'])} / {_mib(c['allocated'])} | {v['cancel_drain_s']} s |"
               if c else "– | – |"))
    out = ["\n".join(rows)]
    for other in ("empty", "bare"):
        d = r.get(f"filter_minus_{other}")
        if d:
            out.append(f"\nThe filter minus {other}: RSS {_kib(d['rss'])} KiB, allocated "
                       f"{_kib(d['allocated'])} KiB per in-flight stream.")
    d = r.get("filter_64k_minus_filter")
    if d:
        out.append(f"\nA 64 KiB prompt instead of a short one: RSS {_kib(d['rss'])} KiB, "
                   f"allocated {_kib(d['allocated'])} KiB more per in-flight stream.")
    return "\n".join(out)


def render(kind, r):
    return soak(r) if kind.startswith("soak") else streams(r)
