"""Process control for a benchmark run: the module under test, work directories, the Envoys and
mocks a case starts, and what a process costs (CPU time, memory) read from /proc.

Why a module: starting and stopping is the shared launcher's job (examples/launcher.py, also
used by the demo); what a benchmark adds is here. Every Envoy of a run loads one copy of the
.wasm taken when the run starts, logs with microsecond timestamps (the scaling case reads
start-up phases from it) and binds port 0 everywhere, so several engineers can run Envoys on
one machine at once. CPU per request is the process's user+sys time before and after a load
run, the steadiest figure on a shared machine.
"""

import datetime
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys

import launcher
from launcher import ENVOY, MOCK, ROOT, WASM, http

from .settings import BASE_MODULE, MODULES, OUT

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
ENVOY_LOG_FORMAT = "[%Y-%m-%d %T.%f][%t][%l][%n] %v"

# The module every Envoy of a run loads (see snapshot_wasm), and the other modules some cases
# compare it with (settings.MODULES, built by `make bench-modules`).
_wasm_under_test = [WASM]
_modules = {}


def workdir(*parts):
    """A directory under target/bench/work/, created if needed."""
    d = os.path.join(OUT, "work", *parts)
    os.makedirs(d, exist_ok=True)
    return d


def snapshot_wasm(src=None, extra=None):
    """Copies the release module (or `src`) and the comparison modules (and `extra`, {key:
    path}) aside; every Envoy of this run loads a copy, so a rebuild of target/ by someone else
    half-way through cannot mix two filters in one run."""
    d = workdir(f"wasm-{os.getpid()}")
    dst = os.path.join(d, "ai_circuit_breaker.wasm")
    shutil.copyfile(src or WASM, dst)
    _wasm_under_test[0] = dst
    for key, path in {**MODULES, **(extra or {})}.items():
        _modules[key] = os.path.join(d, os.path.basename(path))
        shutil.copyfile(path, _modules[key])
    if os.path.exists(BASE_MODULE):
        _modules["base"] = os.path.join(d, "base.wasm")
        shutil.copyfile(BASE_MODULE, _modules["base"])


def wasm_under_test():
    return _wasm_under_test[0]


def module(key):
    """This run's copy of the comparison module `key` (settings.MODULES, "base", or an `extra`
    of snapshot_wasm)."""
    return _modules[key]


def has_module(key):
    return key in _modules


def require(*extra, hints=None):
    """Exits with the make target to run when a binary or wrk is missing."""
    launcher.require(ENVOY, WASM, MOCK, *MODULES.values(), *extra, who="bench",
                     hints={**{p: "make bench-modules" for p in MODULES.values()},
                            **(hints or {})})
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is missing; `apt-get install -y wrk` (make bench does it)")


def envoy(name, config, concurrency=1):
    """Starts one Envoy on a bootstrap dict (not yet ready: call wait_ready, or use envoys)."""
    return launcher.Envoy(config, workdir(f"{name}-{os.getpid()}"), name=name,
                          concurrency=concurrency, log_format=ENVOY_LOG_FORMAT)


def envoys(specs, timeout=90.0):
    """Starts several Envoys at once and waits for all: {key: (name, config, concurrency)}."""
    started = {k: envoy(name, cfg, conc) for k, (name, cfg, conc) in specs.items()}
    for e in started.values():
        e.wait_ready(timeout)
    return started


def mock(name, mode=None):
    """Starts one mock provider on free ports (its log under target/bench/work/mocks-PID/)."""
    return launcher.Mock(name, workdir(f"mocks-{os.getpid()}"), mode=mode)


def envoy_memory(e):
    """Envoy's own heap figures (admin /memory)."""
    status, _, body = http("GET", e.admin + "/memory")
    return json.loads(body) if status == 200 else {}


# ---------------------------------------------------------------------------------------------
# What a process costs, from /proc
# ---------------------------------------------------------------------------------------------

def proc_cpu_s(pid):
    """user+sys CPU seconds of one process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_pids(pid):
    """pid and all its descendants (LiteLLM may fork workers)."""
    parents = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def tree_cpu_s(pid):
    """user+sys CPU seconds of a process and its descendants."""
    total = 0.0
    for p in tree_pids(pid):
        try:
            total += proc_cpu_s(p)
        except OSError:
            pass
    return total


def cpu_meter(pid, tree=False):
    """A function giving the CPU seconds of `pid` (with its descendants if `tree`) so far."""
    return (lambda: tree_cpu_s(pid)) if tree else (lambda: proc_cpu_s(pid))


def machine_busy_s():
    """CPU seconds all cores spent busy since boot (/proc/stat: everything but idle and
    iowait)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK


def own_cpu_s():
    """CPU seconds used by this harness and everything it started: the live process tree, plus
    the children already reaped (wrk runs)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return tree_cpu_s(os.getpid()) + ru.ru_utime + ru.ru_stime


def rss_bytes(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


# ---------------------------------------------------------------------------------------------
# Machine facts recorded with every result
# ---------------------------------------------------------------------------------------------

def first_line(cmd):
    """First line a command prints (stdout or stderr), or '?'."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def machine():
    model = "?"
    mem = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "?")
        with open("/proc/meminfo") as f:
            mem = next((f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB" for line in f
                        if line.startswith("MemTotal")), "?")
    except OSError:
        pass
    commit = first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "Cargo.toml",
                            "Cargo.lock"], capture_output=True, text=True).stdout.strip()
    env = first_line([ENVOY, "--version"])
    m = re.search(r"/(\d+\.\d+\.\d+)/", env)
    wasm = wasm_under_test()

    def sha256(path):
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    digest = sha256(wasm)
    return {"nproc": os.cpu_count(), "cpu_model": model, "memory": mem,
            "kernel": platform.release(), "python": platform.python_version(),
            "envoy": m.group(1) if m else env,
            "wrk": first_line(["wrk", "--version"]).split(" [")[0],
            "commit": commit + ("+dirty(src)" if dirty else ""),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "wasm_bytes": os.path.getsize(wasm), "wasm_sha256": digest,
            "modules": {k: {"bytes": os.path.getsize(p), "sha256": sha256(p)}
                        for k, p in _modules.items()},
            "wasm_built": datetime.datetime.fromtimestamp(os.path.getmtime(WASM)).strftime(
                "%Y-%m-%d %H:%M:%S")}
