#!/usr/bin/env python3
"""Where the bytes of a .wasm go: code size per crate, from the module's `name` section.

The release build is stripped (no names), so build an unstripped copy first:

    CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=target/bench/unstripped \\
        cargo build --release --lib --target wasm32-wasip1
    python3 examples/bench/wasm_sizes.py \\
        target/bench/unstripped/wasm32-wasip1/release/ai_circuit_breaker.wasm

Prints the size of every section, then the function bodies grouped by the crate their
(Rust legacy-mangled) name starts with, then the largest functions. Standard library only.
"""

import re
import sys
from collections import Counter

SECTIONS = {0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory",
            6: "global", 7: "export", 8: "start", 9: "element", 10: "code", 11: "data",
            12: "datacount"}


def leb(b, i):
    result = shift = 0
    while True:
        byte = b[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, i


def crate_of(name):
    """The crate of a Rust symbol: legacy (`_ZN10serde_json2de...`) or v0 (`_RNv...C<hash>_4core...`)
    mangling; for `<T as Trait>::f`, the crate of T."""
    if name.startswith("_R"):
        m = re.search(r"C[A-Za-z0-9]*_(\d+)([A-Za-z_][A-Za-z0-9_]*)", name)
        if m:
            return m.group(2)[:int(m.group(1))]
    m = re.match(r"_ZN(\d+)", name)
    if m:
        n = int(m.group(1))
        start = m.end()
        ident = name[start:start + n]
        if ident.startswith("_$LT$"):       # <T as Trait>::f -> the type's crate
            inner = re.search(r"([a-z_][a-z0-9_]*)\.\.", ident)
            return inner.group(1) if inner else "(generic impls)"
        return ident
    return name.split("::")[0] if "::" in name else "(other)"


def main(path):
    b = open(path, "rb").read()
    assert b[:4] == b"\0asm", "not a wasm module"
    i = 8
    sections = Counter()
    imports = 0
    bodies = []
    names = {}
    while i < len(b):
        sid = b[i]
        size, j = leb(b, i + 1)
        end = j + size
        label = SECTIONS.get(sid, str(sid))
        if sid == 0:
            nlen, k = leb(b, j)
            cname = b[k:k + nlen].decode(errors="replace")
            label = f"custom:{cname}"
            if cname == "name":
                k += nlen
                while k < end:
                    sub = b[k]
                    slen, k2 = leb(b, k + 1)
                    if sub == 1:
                        count, m = leb(b, k2)
                        for _ in range(count):
                            idx, m = leb(b, m)
                            ln, m = leb(b, m)
                            names[idx] = b[m:m + ln].decode(errors="replace")
                            m += ln
                    k = k2 + slen
        elif sid == 2:
            count, k = leb(b, j)
            for _ in range(count):
                for _ in range(2):
                    ln, k = leb(b, k)
                    k += ln
                kind = b[k]
                k += 1
                if kind == 0:
                    _, k = leb(b, k)
                    imports += 1
                elif kind == 1:
                    k += 1
                    flags, k = leb(b, k)
                    _, k = leb(b, k)
                    if flags & 1:
                        _, k = leb(b, k)
                elif kind == 2:
                    flags, k = leb(b, k)
                    _, k = leb(b, k)
                    if flags & 1:
                        _, k = leb(b, k)
                elif kind == 3:
                    k += 2
        elif sid == 10:
            count, k = leb(b, j)
            for n in range(count):
                bsize, k2 = leb(b, k)
                bodies.append((imports + n, bsize))
                k = k2 + bsize
        sections[label] += end - i
        i = end
    total = len(b)
    print(f"{path}: {total:,} bytes")
    for label, size in sections.most_common():
        print(f"  section {label:<28} {size:>9,}  {100 * size / total:5.1f} %")
    code = sum(s for _, s in bodies)
    by_crate = Counter()
    for idx, size in bodies:
        by_crate[crate_of(names.get(idx, "?"))] += size
    print(f"\nfunction bodies by crate ({len(bodies)} functions, {code:,} bytes):")
    for crate, size in by_crate.most_common(15):
        print(f"  {crate:<28} {size:>9,}  {100 * size / code:5.1f} %")
    print("\nlargest functions:")
    for idx, size in sorted(bodies, key=lambda x: -x[1])[:15]:
        print(f"  {size:>8,}  {names.get(idx, '?')[:110]}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
