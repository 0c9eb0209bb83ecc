"""Starts and stops the local processes of the demo and the benchmark: Envoy (the pip build in
.venv/) and mock providers (target/release/mock-provider).

Why this module exists: `make run`/`make demo-check` (examples/demo/demo.py) and every `make
bench*` target (examples/bench/) need the same things: check that the built binaries are there,
start Envoy and mocks, wait until they answer, find the ports they bound, and stop every one of
them by PID, also when a check fails, an exception escapes or the user presses Ctrl-C. This is
the one place that knows how. (The Rust integration tests have their own, in tests/common.)

Every child runs in its own session (process group), so stopping it stops what it forked; and
it gets SIGKILL from the kernel if the thread that started it dies without cleaning up
(PR_SET_PDEATHSIG), so nothing outlives a `kill -9` of the script. Loopback addresses only.

Standard library only (Python 3.11).
"""

import atexit
import ctypes
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENVOY = os.path.join(ROOT, ".venv", "bin", "envoy")
MOCK = os.path.join(ROOT, "target", "release", "mock-provider")
WASM = os.path.join(ROOT, "target", "wasm32-wasip1", "release", "ai_circuit_breaker.wasm")
LOOPBACK = "127.0.0.1"

# What to run when a binary is missing.
HINTS = {ENVOY: "make envoy", MOCK: "make mock", WASM: "make build"}


def require(*paths, who="launcher", hints=None):
    """Exits with a hint naming the make target when one of `paths` does not exist."""
    hints = {**HINTS, **(hints or {})}
    for p in paths:
        if not os.path.exists(p):
            sys.exit(f"{who}: {p} is missing; run `{hints.get(p, 'make build')}`")


# ---------------------------------------------------------------------------------------------
# Children: started here, stopped by PID
# ---------------------------------------------------------------------------------------------

_children = []
_lock = threading.Lock()
_cleanup_installed = [False]
_PR_SET_PDEATHSIG = 1
try:  # resolved here, not in the forked child (no loader lock taken after fork)
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent():
    """Runs in the child before exec: the kernel sends it SIGKILL when the thread that started
    it dies (children are started from the main thread, which lives as long as the script)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(cmd, log_path, env=None, stdout=None, cwd=ROOT):
    """Starts `cmd` in its own session with stderr (and stdout unless given) to `log_path`.
    The process is registered and stopped by `stop_all` at exit."""
    install_cleanup()
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "w") as logf:
        p = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL,
                             stdout=stdout if stdout is not None else logf,
                             stderr=logf, env=env, start_new_session=True,
                             preexec_fn=_die_with_parent)
    with _lock:
        _children.append(p)
    return p


def stop(p, grace=5.0):
    """Stops one process started here, by PID: SIGTERM to its process group, SIGKILL after
    `grace` seconds."""
    if p is None or p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=5)


def stop_all():
    """Stops every process started here that still runs, newest first."""
    with _lock:
        procs = list(reversed(_children))
    for p in procs:
        stop(p, grace=3.0)


def _on_sigterm(signum, _frame):
    raise SystemExit(128 + signum)


def install_cleanup():
    """Stops the children at interpreter exit, which SIGTERM (as SystemExit), Ctrl-C (as
    KeyboardInterrupt), sys.exit and an uncaught exception all lead to. Idempotent."""
    if _cleanup_installed[0]:
        return
    _cleanup_installed[0] = True
    atexit.register(stop_all)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


# ---------------------------------------------------------------------------------------------
# Ports, waits, HTTP
# ---------------------------------------------------------------------------------------------

def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago, for programs that cannot bind port
    0 and report it (Envoy and the mocks do; prefer that)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_until(what, check, timeout, proc=None, log_path=None, interval=0.05):
    """Polls `check()` until it returns a true value, which is returned. Raises RuntimeError
    after `timeout` seconds, or as soon as `proc` has exited (with the end of its log)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}" +
                               (f"; see {log_path}:\n{log_tail(log_path)}" if log_path else ""))
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f} s" +
                               (f"; see {log_path}" if log_path else ""))
        time.sleep(interval)


def log_tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def http(method, url, body=None, headers=None, timeout=5.0):
    """One request: (status, headers with lower-case names, body bytes); status 0 and the
    error text when there was no HTTP response."""
    if isinstance(body, str):
        body = body.encode()
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
    except (urllib.error.URLError, OSError) as e:
        return 0, {}, str(e).encode()


# ---------------------------------------------------------------------------------------------
# Envoy
# ---------------------------------------------------------------------------------------------

_base_ids = [0]


def _next_base_id():
    # Hot restart is off (no shared memory); a unique base id per Envoy all the same, so several
    # engineers' Envoys never meet.
    _base_ids[0] += 1
    return 40000 + (os.getpid() % 2000) * 16 + _base_ids[0]


class Envoy:
    """One Envoy. `config` is a bootstrap as a dict (written to `workdir`/envoy.json) or the
    path of a config file. The admin address is read from --admin-address-path, so a bootstrap
    may bind port 0 for its admin and listeners; `ports` maps listener names to bound ports
    once `wait_ready` returned."""

    def __init__(self, config, workdir, name="envoy", concurrency=1, log_level="info",
                 component_log_level=None, log_format=None):
        self.name = name
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        if isinstance(config, dict):
            self.config_path = os.path.join(workdir, "envoy.json")
            with open(self.config_path, "w") as f:
                json.dump(config, f)
        else:
            self.config_path = config
        self.admin_path = os.path.join(workdir, "admin-address.txt")
        self.log_path = os.path.join(workdir, "envoy.log")
        if os.path.exists(self.admin_path):
            os.remove(self.admin_path)
        cmd = [ENVOY, "-c", self.config_path, "--admin-address-path", self.admin_path,
               "--concurrency", str(concurrency), "--disable-hot-restart",
               "--base-id", str(_next_base_id()), "--log-level", log_level]
        if component_log_level:
            cmd += ["--component-log-level", component_log_level]
        if log_format:
            cmd += ["--log-format", log_format]
        self.t_spawn = time.monotonic()
        self.proc = spawn(cmd, self.log_path)
        self.pid = self.proc.pid
        self.admin = None
        self.ports = {}
        self.ready_s = None

    def _ready(self):
        if self.admin is None and os.path.exists(self.admin_path):
            with open(self.admin_path) as f:
                a = f.read().strip()
            if a and not a.endswith(":0"):
                self.admin = "http://" + a
        return bool(self.admin) and http("GET", self.admin + "/ready", timeout=2)[0] == 200

    def wait_ready(self, timeout=60.0):
        """Waits for admin /ready = 200, then reads the bound listener ports. Returns self."""
        wait_until(f"envoy {self.name}", self._ready, timeout, self.proc, self.log_path,
                   interval=0.02)
        self.ready_s = time.monotonic() - self.t_spawn
        status, _, body = http("GET", self.admin + "/listeners?format=json")
        if status != 200:
            raise RuntimeError(f"envoy {self.name}: /listeners answered {status}")
        for ls in json.loads(body)["listener_statuses"]:
            self.ports[ls["name"]] = ls["local_address"]["socket_address"]["port_value"]
        return self

    def url(self, listener, path):
        return f"http://{LOOPBACK}:{self.ports[listener]}{path}"

    def log_tail(self, n=20):
        return log_tail(self.log_path, n)

    def stop(self):
        stop(self.proc)


def start_envoys(specs, timeout=90.0):
    """Starts several Envoys at once and waits for all: {key: Envoy kwargs} -> {key: Envoy}."""
    envoys = {k: Envoy(**kw) for k, kw in specs.items()}
    for e in envoys.values():
        e.wait_ready(timeout)
    return envoys


# ---------------------------------------------------------------------------------------------
# Mock providers
# ---------------------------------------------------------------------------------------------

class Mock:
    """One mock provider (examples/mock-provider). `listen`/`control` are ports (0: any free
    one); the ports bound are read from the line the mock prints once both listen. `mode` is
    the starting mode (a name or JSON, as its --mode takes)."""

    def __init__(self, name, workdir, listen=0, control=0, mode=None, timeout=10.0):
        self.name = name
        cmd = [MOCK, "--name", name, "--listen", f"{LOOPBACK}:{listen}",
               "--control", f"{LOOPBACK}:{control}"]
        if mode:
            cmd += ["--mode", mode]
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.proc = spawn(cmd, self.log_path, stdout=subprocess.PIPE)
        self.pid = self.proc.pid
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            stop(self.proc)
            raise RuntimeError(f"mock {name} did not start within {timeout:.0f} s; see "
                               f"{self.log_path}:\n{log_tail(self.log_path)}")
        info = json.loads(line)
        self.port, self.control = info["listen"], info["control"]

    def url(self, path):
        return f"http://{LOOPBACK}:{self.port}{path}"

    def ctl(self, method, path, body=None):
        """A call to the control API; its JSON answer (raises unless 200)."""
        data = json.dumps(body).encode() if body is not None else None
        status, _, out = http(method, f"http://{LOOPBACK}:{self.control}{path}", data,
                              {"content-type": "application/json"})
        if status != 200:
            raise RuntimeError(f"mock {self.name} {method} {path}: {status} {out[:200]!r}")
        return json.loads(out)

    def mode(self, **mode):
        return self.ctl("POST", "/mode", mode)

    def stats(self):
        return self.ctl("GET", "/stats")

    def reset(self):
        return self.ctl("POST", "/reset", {})

    def requests(self, path):
        return self.ctl("GET", f"/requests?path={path}").get("requests", [])

    def stop(self):
        stop(self.proc)
