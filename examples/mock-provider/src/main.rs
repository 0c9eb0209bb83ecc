//! Mock AI provider: a small std-only HTTP/1.1 server that stands in for OpenAI,
//! Anthropic and Azure OpenAI behind Envoy in the integration tests, the demo and
//! the benchmark. Its failure behaviour can be switched at run time through a
//! separate control listener, so a test can drive the circuit breaker through every
//! state (errors, rate limits, hangs, resets, refused connections) deterministically.
//! It also records every request, which lets the same binary act as the webhook
//! receiver in alerting tests.
//!
//! # CLI
//!
//! ```text
//! mock-provider --name NAME [--listen ADDR] [--control ADDR] [--mode MODE]
//! ```
//!
//! * `--name` (required): provider name, echoed in the `x-mock-provider` header on
//!   every response and in the greeting `Hello from NAME`. Printable ASCII only.
//! * `--listen`, `--control`: `IP:PORT` (or a bare port, meaning `127.0.0.1:PORT`);
//!   both default to `127.0.0.1:0`, i.e. a free port chosen by the OS.
//! * `--mode`: starting mode, either a mode name (default parameters) or a JSON
//!   object as accepted by `POST /mode`. Defaults to `healthy`.
//!
//! Once both listeners are bound, exactly one line is printed to stdout and flushed:
//! `{"name":"openai","listen":41234,"control":41235}`. Nothing else is ever written
//! to stdout; rare errors go to stderr. The process runs until it is killed.
//!
//! # Data listener (what Envoy calls)
//!
//! Every response carries `content-type` and `x-mock-provider: NAME`. In `healthy`
//! mode, by path (the query string is ignored):
//!
//! * any path containing `/chat/completions`: an OpenAI chat completion; with
//!   `"stream": true` in the request body, a `text/event-stream` response in chunked
//!   encoding, one write per event (role, content, finish, then `data: [DONE]`).
//! * a path ending in `/v1/messages`: an Anthropic message.
//! * a path ending in `/embeddings`: an OpenAI embeddings list.
//! * a path ending in `/models`: a small OpenAI models list.
//! * anything else: `{"ok":true,"provider":NAME,"path":PATH}`.
//!
//! The `model` of the request body is echoed back (`mock-model` when absent).
//!
//! # Modes
//!
//! | mode         | parameters (default)    | behaviour                                          |
//! |--------------|-------------------------|----------------------------------------------------|
//! | `healthy`    |                         | answers as above                                   |
//! | `error`      | `status` (500)          | OpenAI `server_error` body; 529 gets Anthropic's `overloaded_error` |
//! | `status`     | `status` (400)          | OpenAI `invalid_request_error` body (529 as above) |
//! | `rate_limit` | `retry_after` (1)       | 429 with `retry-after` and `x-ratelimit-reset-requests` |
//! | `hang`       | `hang_ms` (30000)       | reads the request, answers nothing, closes after `hang_ms` or when the peer closes |
//! | `slow`       | `delay_ms` (1000)       | sleeps, then answers as `healthy`                  |
//! | `reset`      |                         | reads the request, then closes with a TCP RST      |
//! | `refuse`     |                         | data port closed (ECONNREFUSED); open connections are shut down |
//!
//! `status` must be 200..=599 (not 204, 205 or 304); `hang_ms` and `delay_ms` are at
//! most 86400000. The mode is read for every request, so keep-alive connections see a
//! change on their next request. Leaving `refuse` re-binds the same port.
//!
//! `reset` without `libc`/`socket2` (and with `TcpStream::set_linger` unstable): the
//! request is parsed with `MSG_PEEK` and left unread in the kernel, so closing the
//! socket makes Linux send an RST. A request that was already buffered (pipelined), is
//! larger than 64 KiB or trickles in for more than 5 s is read normally instead, and
//! the connection is then closed with a plain shutdown (FIN).
//!
//! # Control listener (HTTP/1.1, JSON)
//!
//! * `POST /mode` with e.g. `{"mode":"error","status":500}`, `{"mode":"rate_limit",
//!   "retry_after":2}`, `{"mode":"hang","hang_ms":5000}`, `{"mode":"slow",
//!   "delay_ms":300}`, `{"mode":"reset"}`, `{"mode":"refuse"}`, `{"mode":"healthy"}`.
//!   Replies `200 {"ok":true,"mode":...,<parameter>:...}` once the change is in effect
//!   (for `refuse`, once the port is closed; when leaving it, once it is bound again),
//!   `400 {"ok":false,"error":...}` for bad JSON or an unknown mode, and `500` if the
//!   data port could not be closed or re-bound within 3 s.
//! * `GET /mode`: the current mode and its parameters.
//! * `GET /stats`: `{"name","mode","mode_config","total","by_mode":{every mode:N},
//!   "by_path":{path:N}}`. Every request that reached the data listener and was
//!   parsed counts, whatever the answer (hung and reset ones included).
//! * `GET /requests[?path=/exact/path]`: `{"requests":[{"seq","method","path",
//!   "target","headers":{lowercased name:value},"body","mode"}]}`, the last 200
//!   requests, oldest first; `body` is UTF-8-lossy and cut at 256 KiB.
//! * `POST /reset`: zero the counters and clear the request log.
//!
//! # Limits
//!
//! Request heads are capped at 64 KiB and 128 headers (431), bodies at 8 MiB (413);
//! bodies may use `content-length` or `transfer-encoding: chunked`. Malformed requests
//! get a 400 and the connection is closed. One thread per connection.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

const MAX_HEAD_BYTES: u64 = 64 * 1024;
const MAX_HEADERS: usize = 128;
const MAX_CHUNK_LINE: u64 = 4 * 1024;
const MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;
const MAX_LOGGED_BODY: usize = 256 * 1024;
const MAX_DURATION_MS: u64 = 86_400_000;
const LOG_CAPACITY: usize = 200;
const PEEK_LIMIT: usize = 64 * 1024;
const PEEK_PATIENCE: Duration = Duration::from_secs(5);
const READ_BUFFER: usize = 16 * 1024;
const THREAD_STACK: usize = 256 * 1024;
const LISTENER_WAIT: Duration = Duration::from_secs(3);
const JSON: &str = "application/json";
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

const USAGE: &str =
    "usage: mock-provider --name NAME [--listen ADDR] [--control ADDR] [--mode MODE]
  ADDR defaults to 127.0.0.1:0 (free port); MODE is a mode name or a JSON object
  modes: healthy, error, status, rate_limit, hang, slow, reset, refuse";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            warn(format_args!("{msg}"));
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let Some(config) = parse_args(std::env::args().skip(1))? else {
        return Ok(());
    };
    let data = bind(config.listen, "data")?;
    let control = bind(config.control, "control")?;
    let listen_addr = data.local_addr().map_err(|e| e.to_string())?;
    let control_addr = control.local_addr().map_err(|e| e.to_string())?;

    let shared = Arc::new(Shared::new(config.name, listen_addr, config.mode));
    let initial = if config.mode == Mode::Refuse {
        drop(data);
        shared.mark_listener(false);
        None
    } else {
        Some(data)
    };
    announce(&shared, listen_addr.port(), control_addr.port())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;

    let acceptor = Arc::clone(&shared);
    thread::Builder::new()
        .name("data-acceptor".into())
        .spawn(move || run_data_acceptor(&acceptor, initial))
        .map_err(|e| format!("cannot start the data acceptor: {e}"))?;
    run_control_acceptor(&shared, &control);
    Ok(())
}

fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr).map_err(|e| format!("cannot bind the {what} listener on {addr}: {e}"))
}

fn announce(shared: &Shared, listen: u16, control: u16) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(
        out,
        r#"{{"name":{},"listen":{listen},"control":{control}}}"#,
        shared.name_json
    )?;
    out.flush()
}

/// Writes one line to stderr, ignoring failures (stderr may be closed).
fn warn(msg: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "mock-provider: {msg}");
}

// ---------------------------------------------------------------------------
// Command line

struct Config {
    name: String,
    listen: SocketAddr,
    control: SocketAddr,
    mode: Mode,
}

/// Returns `None` when `--help` was printed.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Config>, String> {
    let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let mut name = None;
    let mut listen = loopback;
    let mut control = loopback;
    let mut mode = Mode::Healthy;
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            let _ = writeln!(io::stdout().lock(), "{USAGE}");
            return Ok(None);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let value = match inline.or_else(|| args.next()) {
            Some(value) => value,
            None => return Err(format!("{flag} needs a value\n{USAGE}")),
        };
        match flag.as_str() {
            "--name" => name = Some(parse_name(&value)?),
            "--listen" => listen = parse_addr(&value)?,
            "--control" => control = parse_addr(&value)?,
            "--mode" => mode = parse_cli_mode(&value)?,
            _ => return Err(format!("unknown argument {flag:?}\n{USAGE}")),
        }
    }
    let name = name.ok_or_else(|| format!("--name is required\n{USAGE}"))?;
    Ok(Some(Config {
        name,
        listen,
        control,
        mode,
    }))
}

fn parse_name(value: &str) -> Result<String, String> {
    let valid =
        !value.is_empty() && value.len() <= 100 && value.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "--name must be 1-100 printable ASCII characters without spaces, got {value:?}"
        ))
    }
}

fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    value
        .parse()
        .map_err(|_| format!("invalid address {value:?}, expected IP:PORT"))
}

fn parse_cli_mode(value: &str) -> Result<Mode, String> {
    if value.trim_start().starts_with('{') {
        let json: Value = serde_json::from_str(value).map_err(|e| format!("--mode: {e}"))?;
        Mode::from_json(&json)
    } else {
        Mode::parse(value, &Map::new())
    }
}

// ---------------------------------------------------------------------------
// Modes

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Healthy,
    Error { status: u16 },
    Status { status: u16 },
    RateLimit { retry_after: u64 },
    Hang { hang_ms: u64 },
    Slow { delay_ms: u64 },
    Reset,
    Refuse,
}

const MODE_NAMES: [&str; 8] = [
    "healthy",
    "error",
    "status",
    "rate_limit",
    "hang",
    "slow",
    "reset",
    "refuse",
];

impl Mode {
    fn index(self) -> usize {
        match self {
            Mode::Healthy => 0,
            Mode::Error { .. } => 1,
            Mode::Status { .. } => 2,
            Mode::RateLimit { .. } => 3,
            Mode::Hang { .. } => 4,
            Mode::Slow { .. } => 5,
            Mode::Reset => 6,
            Mode::Refuse => 7,
        }
    }

    fn name(self) -> &'static str {
        MODE_NAMES.get(self.index()).copied().unwrap_or("unknown")
    }

    /// Builds a mode from its name and optional parameters, applying defaults.
    fn parse(name: &str, params: &Map<String, Value>) -> Result<Mode, String> {
        let mode = match name {
            "healthy" => Mode::Healthy,
            "error" => Mode::Error {
                status: status_param(params, 500)?,
            },
            "status" => Mode::Status {
                status: status_param(params, 400)?,
            },
            "rate_limit" => Mode::RateLimit {
                retry_after: u64_param(params, "retry_after", 1, u64::from(u32::MAX))?,
            },
            "hang" => Mode::Hang {
                hang_ms: u64_param(params, "hang_ms", 30_000, MAX_DURATION_MS)?,
            },
            "slow" => Mode::Slow {
                delay_ms: u64_param(params, "delay_ms", 1_000, MAX_DURATION_MS)?,
            },
            "reset" => Mode::Reset,
            "refuse" => Mode::Refuse,
            other => {
                return Err(format!(
                    "unknown mode {other:?}; expected one of {}",
                    MODE_NAMES.join(", ")
                ))
            }
        };
        Ok(mode)
    }

    fn from_json(value: &Value) -> Result<Mode, String> {
        let object = value
            .as_object()
            .ok_or(r#"expected a JSON object such as {"mode":"healthy"}"#)?;
        let name = object
            .get("mode")
            .and_then(Value::as_str)
            .ok_or(r#"missing string field "mode""#)?;
        Mode::parse(name, object)
    }

    fn to_json(self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("mode".into(), self.name().into());
        match self {
            Mode::Error { status } | Mode::Status { status } => {
                map.insert("status".into(), status.into());
            }
            Mode::RateLimit { retry_after } => {
                map.insert("retry_after".into(), retry_after.into());
            }
            Mode::Hang { hang_ms } => {
                map.insert("hang_ms".into(), hang_ms.into());
            }
            Mode::Slow { delay_ms } => {
                map.insert("delay_ms".into(), delay_ms.into());
            }
            Mode::Healthy | Mode::Reset | Mode::Refuse => {}
        }
        map
    }
}

fn u64_param(
    params: &Map<String, Value>,
    key: &str,
    default: u64,
    max: u64,
) -> Result<u64, String> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => value
            .as_u64()
            .filter(|n| *n <= max)
            .ok_or_else(|| format!("{key:?} must be an integer between 0 and {max}, got {value}")),
    }
}

fn status_param(params: &Map<String, Value>, default: u16) -> Result<u16, String> {
    let status = u64_param(params, "status", u64::from(default), u64::MAX)?;
    match u16::try_from(status) {
        Ok(s) if (200..=599).contains(&s) && !matches!(s, 204 | 205 | 304) => Ok(s),
        _ => Err(format!(
            "\"status\" must be 200-599 (and not 204, 205 or 304), got {status}"
        )),
    }
}

// ---------------------------------------------------------------------------
// Shared state

struct Shared {
    name: String,
    name_json: String,
    greeting_json: String,
    listen_addr: SocketAddr,
    mode: RwLock<Mode>,
    /// Whether the data port is bound; guarded together with `listener_cv`.
    listener_open: Mutex<bool>,
    listener_cv: Condvar,
    /// Clones of open data connections, shut down when entering `refuse`.
    connections: Mutex<HashMap<u64, TcpStream>>,
    next_connection: AtomicU64,
    next_response_id: AtomicU64,
    stats: Mutex<Stats>,
}

#[derive(Default)]
struct Stats {
    total: u64,
    by_mode: [u64; MODE_NAMES.len()],
    by_path: HashMap<String, u64>,
    seq: u64,
    log: VecDeque<LoggedRequest>,
}

struct LoggedRequest {
    seq: u64,
    mode: Mode,
    request: Request,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn new(name: String, listen_addr: SocketAddr, mode: Mode) -> Shared {
        Shared {
            name_json: Value::from(name.as_str()).to_string(),
            greeting_json: Value::from(format!("Hello from {name}")).to_string(),
            name,
            listen_addr,
            mode: RwLock::new(mode),
            listener_open: Mutex::new(true),
            listener_cv: Condvar::new(),
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(0),
            next_response_id: AtomicU64::new(0),
            stats: Mutex::new(Stats::default()),
        }
    }

    fn mode(&self) -> Mode {
        *self.mode.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_id(&self) -> u64 {
        self.next_response_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn record(&self, mut request: Request, mode: Mode) {
        request.body.truncate(MAX_LOGGED_BODY);
        let mut guard = lock(&self.stats);
        let stats = &mut *guard;
        stats.total += 1;
        if let Some(count) = stats.by_mode.get_mut(mode.index()) {
            *count += 1;
        }
        let path = request.head.path();
        match stats.by_path.get_mut(path) {
            Some(count) => *count += 1,
            None => {
                stats.by_path.insert(path.to_owned(), 1);
            }
        }
        stats.seq += 1;
        if stats.log.len() >= LOG_CAPACITY {
            stats.log.pop_front();
        }
        stats.log.push_back(LoggedRequest {
            seq: stats.seq,
            mode,
            request,
        });
    }

    fn reset_stats(&self) {
        let old = std::mem::take(&mut *lock(&self.stats));
        drop(old);
    }

    /// Switches the mode and waits until the data port matches it.
    fn set_mode(&self, mode: Mode) -> Result<(), String> {
        *self.mode.write().unwrap_or_else(PoisonError::into_inner) = mode;
        {
            let _open = lock(&self.listener_open);
            self.listener_cv.notify_all();
        }
        if mode == Mode::Refuse {
            self.close_data_connections();
            self.wake_acceptor();
            self.wait_listener(false)
                .map_err(|()| "the data listener did not close in time".to_owned())
        } else {
            self.wait_listener(true).map_err(|()| {
                format!(
                    "could not re-bind the data listener on {} (still retrying)",
                    self.listen_addr
                )
            })
        }
    }

    fn mark_listener(&self, open: bool) {
        *lock(&self.listener_open) = open;
        self.listener_cv.notify_all();
    }

    fn wait_listener(&self, open: bool) -> Result<(), ()> {
        let guard = lock(&self.listener_open);
        let (guard, _) = self
            .listener_cv
            .wait_timeout_while(guard, LISTENER_WAIT, |is_open| *is_open != open)
            .unwrap_or_else(PoisonError::into_inner);
        if *guard == open {
            Ok(())
        } else {
            Err(())
        }
    }

    fn wait_while_refused(&self) {
        let guard = lock(&self.listener_open);
        let _guard = self
            .listener_cv
            .wait_while(guard, |_| self.mode() == Mode::Refuse)
            .unwrap_or_else(PoisonError::into_inner);
    }

    fn close_data_connections(&self) {
        for (_, stream) in lock(&self.connections).drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Unblocks the acceptor's `accept()` so it notices the `refuse` mode.
    fn wake_acceptor(&self) {
        let mut addr = self.listen_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    }

    fn rebind(&self) -> TcpListener {
        let mut warned = false;
        loop {
            match TcpListener::bind(self.listen_addr) {
                Ok(listener) => {
                    self.mark_listener(true);
                    return listener;
                }
                Err(e) => {
                    if !warned {
                        warn(format_args!(
                            "re-binding {} failed, retrying: {e}",
                            self.listen_addr
                        ));
                        warned = true;
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn stats_json(&self) -> Value {
        let mode = self.mode();
        let stats = lock(&self.stats);
        let by_mode: Map<String, Value> = MODE_NAMES
            .iter()
            .zip(stats.by_mode.iter())
            .map(|(name, count)| ((*name).to_owned(), Value::from(*count)))
            .collect();
        let by_path: Map<String, Value> = stats
            .by_path
            .iter()
            .map(|(path, count)| (path.clone(), Value::from(*count)))
            .collect();
        json!({
            "name": self.name,
            "mode": mode.name(),
            "mode_config": mode.to_json(),
            "total": stats.total,
            "by_mode": by_mode,
            "by_path": by_path,
        })
    }

    fn requests_json(&self, path: Option<&str>) -> Value {
        let stats = lock(&self.stats);
        let requests: Vec<Value> = stats
            .log
            .iter()
            .filter(|entry| match path {
                Some(path) => entry.request.head.path() == path,
                None => true,
            })
            .map(LoggedRequest::to_json)
            .collect();
        json!({ "requests": requests })
    }
}

impl LoggedRequest {
    fn to_json(&self) -> Value {
        let head = &self.request.head;
        let mut headers = Map::new();
        for (name, value) in &head.headers {
            match headers.get_mut(name) {
                Some(Value::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(value);
                }
                _ => {
                    headers.insert(name.clone(), Value::from(value.as_str()));
                }
            }
        }
        json!({
            "seq": self.seq,
            "method": head.method,
            "path": head.path(),
            "target": head.target,
            "headers": headers,
            "body": String::from_utf8_lossy(&self.request.body),
            "mode": self.mode.name(),
        })
    }
}

// ---------------------------------------------------------------------------
// Listeners and connections

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Data,
    Control,
}

fn run_data_acceptor(shared: &Arc<Shared>, mut listener: Option<TcpListener>) {
    loop {
        if let Some(open) = listener.take() {
            accept_until_refused(shared, &open);
        } // the listening socket is closed here
        shared.mark_listener(false);
        shared.wait_while_refused();
        listener = Some(shared.rebind());
    }
}

fn accept_until_refused(shared: &Arc<Shared>, listener: &TcpListener) {
    for incoming in listener.incoming() {
        let refused = shared.mode() == Mode::Refuse;
        match incoming {
            Ok(_) if refused => return,
            Ok(stream) => spawn_connection(shared, stream, Side::Data),
            Err(_) if refused => return,
            Err(e) => accept_failed(&e),
        }
    }
}

fn run_control_acceptor(shared: &Arc<Shared>, listener: &TcpListener) {
    for incoming in listener.incoming() {
        match incoming {
            Ok(stream) => spawn_connection(shared, stream, Side::Control),
            Err(e) => accept_failed(&e),
        }
    }
}

fn accept_failed(e: &io::Error) {
    if e.kind() != io::ErrorKind::ConnectionAborted {
        warn(format_args!("accept failed: {e}"));
        thread::sleep(Duration::from_millis(10));
    }
}

fn spawn_connection(shared: &Arc<Shared>, stream: TcpStream, side: Side) {
    let shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let _ = stream.set_nodelay(true);
            match side {
                Side::Data => serve_data_connection(&shared, stream),
                Side::Control => {
                    let _ = serve(&shared, &stream, Side::Control);
                }
            }
        });
    if let Err(e) = spawned {
        warn(format_args!("cannot spawn a connection thread: {e}"));
    }
}

/// Keeps a clone of a data connection so `refuse` can shut it down.
struct Registration<'a> {
    shared: &'a Shared,
    id: u64,
}

impl<'a> Registration<'a> {
    fn new(shared: &'a Shared, stream: &TcpStream) -> Option<Registration<'a>> {
        let clone = stream.try_clone().ok()?;
        let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
        lock(&shared.connections).insert(id, clone);
        Some(Registration { shared, id })
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        lock(&self.shared.connections).remove(&self.id);
    }
}

fn serve_data_connection(shared: &Shared, stream: TcpStream) {
    let registration = Registration::new(shared, &stream);
    // Registered after a `refuse` drained the registry: close right away.
    if shared.mode() != Mode::Refuse {
        let _ = serve(shared, &stream, Side::Data);
    }
    // The clone goes first, so dropping `stream` really closes the socket.
    drop(registration);
}

/// Per-connection buffers, reused across requests.
#[derive(Default)]
struct Buffers {
    line: Vec<u8>,
    body: Vec<u8>,
    out: Vec<u8>,
    /// Offsets in `out` after which to flush (streamed responses).
    cuts: Vec<usize>,
}

/// The request loop of one keep-alive connection.
fn serve(shared: &Shared, stream: &TcpStream, side: Side) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, stream);
    let mut bufs = Buffers::default();
    loop {
        if side == Side::Data && reader.buffer().is_empty() {
            // Wait for the next request without consuming it, so `reset` can
            // leave it unread and `refuse` can drop it uncounted.
            if stream.peek(&mut [0u8; 1])? == 0 {
                return Ok(());
            }
            let mode = shared.mode();
            if mode == Mode::Refuse {
                return Ok(());
            }
            if mode == Mode::Reset && reset_with_unread_request(shared, stream, &mut bufs.line)? {
                return Ok(());
            }
        }
        let request = match read_request(&mut reader, &mut bufs.line, |_| send(stream, CONTINUE)) {
            Ok(request) => request,
            Err(ReadError::Closed) => return Ok(()),
            Err(ReadError::Io(e)) => return Err(e),
            Err(error) => return reject(shared, stream, &error, &mut bufs),
        };
        let keep_alive = match side {
            Side::Data => handle_data(shared, stream, request, &mut bufs)?,
            Side::Control => handle_control(shared, stream, &request, &mut bufs)?,
        };
        if !keep_alive {
            return Ok(());
        }
    }
}

fn send(stream: &TcpStream, bytes: &[u8]) -> io::Result<()> {
    let mut writer = stream;
    writer.write_all(bytes)
}

fn send_response(stream: &TcpStream, bufs: &Buffers) -> io::Result<()> {
    let mut start = 0;
    for &cut in &bufs.cuts {
        send(stream, bufs.out.get(start..cut).unwrap_or_default())?;
        start = cut;
    }
    match bufs.out.get(start..) {
        Some(rest) if !rest.is_empty() => send(stream, rest),
        _ => Ok(()),
    }
}

/// Answers an unparseable request and closes the connection.
fn reject(
    shared: &Shared,
    stream: &TcpStream,
    error: &ReadError,
    bufs: &mut Buffers,
) -> io::Result<()> {
    let (status, message) = match error {
        ReadError::HeadTooLarge => (431, "request head too large"),
        ReadError::BodyTooLarge => (413, "request body too large"),
        ReadError::Bad(message) => (400, *message),
        ReadError::Closed | ReadError::Io(_) => return Ok(()),
    };
    bufs.body.clear();
    write!(
        bufs.body,
        r#"{{"error":{{"message":"bad request: {message}","type":"invalid_request_error"}}}}"#
    )?;
    bufs.cuts.clear();
    start_response(&mut bufs.out, status, JSON, shared)?;
    finish_response(&mut bufs.out, &bufs.body, Persist::Close)?;
    send_response(stream, bufs)
}

/// `reset` mode: parses the next request with `MSG_PEEK`, records it and
/// returns `true`; the caller then closes the socket with the request unread,
/// which makes the kernel send an RST. Returns `false` when the request must be
/// read normally instead (too large, too slow or malformed).
fn reset_with_unread_request(
    shared: &Shared,
    stream: &TcpStream,
    line: &mut Vec<u8>,
) -> io::Result<bool> {
    let mut buf = vec![0u8; PEEK_LIMIT];
    let deadline = Instant::now() + PEEK_PATIENCE;
    let mut sent_continue = false;
    loop {
        let n = stream.peek(&mut buf)?;
        if n == 0 {
            return Ok(true);
        }
        let mut peeked = buf.get(..n).unwrap_or_default();
        let parsed = read_request(&mut peeked, line, |_| {
            if !sent_continue {
                sent_continue = true;
                send(stream, CONTINUE)?;
            }
            Ok(())
        });
        match parsed {
            Ok(request) => {
                shared.record(request, Mode::Reset);
                return Ok(true);
            }
            Err(ReadError::Io(e))
                if e.kind() == io::ErrorKind::UnexpectedEof
                    && n < PEEK_LIMIT
                    && Instant::now() < deadline =>
            {
                thread::sleep(Duration::from_millis(1));
            }
            Err(_) => return Ok(false),
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.1 request parsing

struct Head {
    method: String,
    target: String,
    /// Names are lowercased.
    headers: Vec<(String, String)>,
    http10: bool,
}

struct Request {
    head: Head,
    body: Vec<u8>,
}

enum ReadError {
    /// The peer closed the connection before sending a byte.
    Closed,
    Bad(&'static str),
    HeadTooLarge,
    BodyTooLarge,
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Empty,
    Length(u64),
    Chunked,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The target without its query string.
    fn path(&self) -> &str {
        match self.target.split_once('?') {
            Some((path, _)) => path,
            None => &self.target,
        }
    }

    fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    fn expects_continue(&self) -> bool {
        !self.http10
            && self
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    }
}

/// Reads one request; `before_body` runs when the client waits for `100 Continue`.
fn read_request<R: BufRead>(
    reader: &mut R,
    line: &mut Vec<u8>,
    mut before_body: impl FnMut(&Head) -> io::Result<()>,
) -> Result<Request, ReadError> {
    let head = read_head(reader, line)?;
    let kind = body_kind(&head)?;
    if kind != BodyKind::Empty && head.expects_continue() {
        before_body(&head)?;
    }
    let body = read_body(reader, kind, line)?;
    Ok(Request { head, body })
}

fn unexpected_eof() -> ReadError {
    ReadError::Io(io::ErrorKind::UnexpectedEof.into())
}

/// Reads a line into `line` without its CR LF. `Ok(false)` means EOF before any byte.
fn read_line<R: BufRead>(
    reader: &mut R,
    line: &mut Vec<u8>,
    budget: &mut u64,
) -> Result<bool, ReadError> {
    line.clear();
    let n = reader.by_ref().take(*budget).read_until(b'\n', line)?;
    *budget = budget.saturating_sub(n as u64);
    if line.last() != Some(&b'\n') {
        return match (n, *budget) {
            (_, 0) => Err(ReadError::HeadTooLarge),
            (0, _) => Ok(false),
            _ => Err(unexpected_eof()),
        };
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(true)
}

fn read_head<R: BufRead>(reader: &mut R, line: &mut Vec<u8>) -> Result<Head, ReadError> {
    let mut budget = MAX_HEAD_BYTES;
    let mut first = true;
    // Tolerate empty lines before the request line (RFC 9112 section 2.2).
    loop {
        if !read_line(reader, line, &mut budget)? {
            return Err(if first {
                ReadError::Closed
            } else {
                unexpected_eof()
            });
        }
        first = false;
        if !line.is_empty() {
            break;
        }
    }
    let (method, target, http10) = parse_request_line(line)?;
    let mut headers = Vec::with_capacity(8);
    loop {
        if !read_line(reader, line, &mut budget)? {
            return Err(unexpected_eof());
        }
        if line.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(ReadError::HeadTooLarge);
        }
        headers.push(parse_header(line)?);
    }
    Ok(Head {
        method,
        target,
        headers,
        http10,
    })
}

fn parse_request_line(line: &[u8]) -> Result<(String, String, bool), ReadError> {
    let text =
        std::str::from_utf8(line).map_err(|_| ReadError::Bad("request line is not UTF-8"))?;
    let mut parts = text.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(ReadError::Bad("malformed request line")),
    };
    if method.is_empty() || !method.bytes().all(is_token_char) {
        return Err(ReadError::Bad("invalid method"));
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ReadError::Bad("invalid request target"));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(ReadError::Bad("unsupported HTTP version")),
    };
    Ok((method.to_owned(), target.to_owned(), http10))
}

fn parse_header(line: &[u8]) -> Result<(String, String), ReadError> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(ReadError::Bad("header line without ':'"))?;
    let (name, rest) = line.split_at(colon);
    // Also rejects obsolete line folding and whitespace before the colon.
    if name.is_empty() || !name.iter().all(|&b| is_token_char(b)) {
        return Err(ReadError::Bad("invalid header name"));
    }
    let value = trim_whitespace(rest.get(1..).unwrap_or_default());
    if value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
        return Err(ReadError::Bad("invalid header value"));
    }
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    Ok((name, String::from_utf8_lossy(value).into_owned()))
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_whitespace(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

fn body_kind(head: &Head) -> Result<BodyKind, ReadError> {
    let mut transfer_encoding = None;
    let mut length: Option<u64> = None;
    for (name, value) in &head.headers {
        match name.as_str() {
            "transfer-encoding" => transfer_encoding = Some(value.as_str()),
            "content-length" => {
                for part in value.split(',') {
                    let part = part.trim();
                    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(ReadError::Bad("invalid content-length"));
                    }
                    let n = part.parse().map_err(|_| ReadError::BodyTooLarge)?;
                    if length.is_some_and(|previous| previous != n) {
                        return Err(ReadError::Bad("conflicting content-length headers"));
                    }
                    length = Some(n);
                }
            }
            _ => {}
        }
    }
    if let Some(codings) = transfer_encoding {
        let last = codings.rsplit(',').next().unwrap_or_default().trim();
        return if last.eq_ignore_ascii_case("chunked") {
            Ok(BodyKind::Chunked)
        } else {
            Err(ReadError::Bad("unsupported transfer-encoding"))
        };
    }
    match length {
        Some(n) if n > MAX_BODY_BYTES => Err(ReadError::BodyTooLarge),
        Some(0) | None => Ok(BodyKind::Empty),
        Some(n) => Ok(BodyKind::Length(n)),
    }
}

fn read_body<R: BufRead>(
    reader: &mut R,
    kind: BodyKind,
    line: &mut Vec<u8>,
) -> Result<Vec<u8>, ReadError> {
    match kind {
        BodyKind::Empty => Ok(Vec::new()),
        BodyKind::Length(n) => {
            let mut body = Vec::with_capacity(usize::try_from(n).unwrap_or_default());
            read_exactly(reader, n, &mut body)?;
            Ok(body)
        }
        BodyKind::Chunked => read_chunked(reader, line),
    }
}

fn read_exactly<R: Read>(reader: &mut R, n: u64, body: &mut Vec<u8>) -> Result<(), ReadError> {
    let got = reader.by_ref().take(n).read_to_end(body)?;
    if (got as u64) < n {
        return Err(unexpected_eof());
    }
    Ok(())
}

fn read_chunked<R: BufRead>(reader: &mut R, line: &mut Vec<u8>) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let size = parse_chunk_size(read_chunk_line(reader, line)?)?;
        if size == 0 {
            break;
        }
        if (body.len() as u64).saturating_add(size) > MAX_BODY_BYTES {
            return Err(ReadError::BodyTooLarge);
        }
        read_exactly(reader, size, &mut body)?;
        if !read_chunk_line(reader, line)?.is_empty() {
            return Err(ReadError::Bad("missing CRLF after chunk data"));
        }
    }
    // Trailer fields, ignored, up to the final empty line.
    let mut budget = MAX_HEAD_BYTES;
    loop {
        if !read_line(reader, line, &mut budget)? {
            return Err(unexpected_eof());
        }
        if line.is_empty() {
            return Ok(body);
        }
    }
}

fn read_chunk_line<'a, R: BufRead>(
    reader: &mut R,
    line: &'a mut Vec<u8>,
) -> Result<&'a [u8], ReadError> {
    let mut budget = MAX_CHUNK_LINE;
    match read_line(reader, line, &mut budget) {
        Ok(true) => Ok(line),
        Ok(false) => Err(unexpected_eof()),
        Err(ReadError::HeadTooLarge) => Err(ReadError::Bad("chunk line too long")),
        Err(e) => Err(e),
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, ReadError> {
    let digits = match line.iter().position(|&b| b == b';') {
        Some(end) => line.get(..end).unwrap_or_default(),
        None => line,
    };
    let digits = trim_whitespace(digits);
    let valid =
        !digits.is_empty() && digits.len() <= 16 && digits.iter().all(u8::is_ascii_hexdigit);
    let text = std::str::from_utf8(digits).ok().filter(|_| valid);
    text.and_then(|t| u64::from_str_radix(t, 16).ok())
        .ok_or(ReadError::Bad("invalid chunk size"))
}

// ---------------------------------------------------------------------------
// Responses

/// How the connection continues after a response.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Persist {
    KeepAlive,
    /// HTTP/1.0 client that asked for keep-alive.
    KeepAlive10,
    Close,
}

impl Persist {
    fn of(head: &Head) -> Persist {
        let mut close = false;
        let mut keep_alive = false;
        for (name, value) in &head.headers {
            if name == "connection" {
                for token in value.split(',').map(str::trim) {
                    close |= token.eq_ignore_ascii_case("close");
                    keep_alive |= token.eq_ignore_ascii_case("keep-alive");
                }
            }
        }
        match (close, head.http10, keep_alive) {
            (true, _, _) | (false, true, false) => Persist::Close,
            (false, true, true) => Persist::KeepAlive10,
            (false, false, _) => Persist::KeepAlive,
        }
    }

    fn keep_alive(self) -> bool {
        self != Persist::Close
    }

    fn header(self) -> &'static [u8] {
        match self {
            Persist::KeepAlive => b"",
            Persist::KeepAlive10 => b"connection: keep-alive\r\n",
            Persist::Close => b"connection: close\r\n",
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Mock Status",
    }
}

/// Clears `out` and writes the status line and the common headers.
fn start_response(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    shared: &Shared,
) -> io::Result<()> {
    out.clear();
    write!(
        out,
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\nx-mock-provider: {}\r\n",
        reason(status),
        shared.name
    )
}

fn finish_response(out: &mut Vec<u8>, body: &[u8], persist: Persist) -> io::Result<()> {
    write!(out, "content-length: {}\r\n", body.len())?;
    out.extend_from_slice(persist.header());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(())
}

fn json_str(buf: &mut Vec<u8>, s: &str) -> io::Result<()> {
    serde_json::to_writer(buf, s).map_err(io::Error::other)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Data listener

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Chat,
    Messages,
    Embeddings,
    Models,
    Other,
}

fn route(path: &str) -> Route {
    if path.contains("/chat/completions") {
        Route::Chat
    } else if path.ends_with("/v1/messages") {
        Route::Messages
    } else if path.ends_with("/embeddings") {
        Route::Embeddings
    } else if path.ends_with("/models") {
        Route::Models
    } else {
        Route::Other
    }
}

/// Answers one data request according to the current mode; returns whether
/// the connection stays open.
fn handle_data(
    shared: &Shared,
    stream: &TcpStream,
    request: Request,
    bufs: &mut Buffers,
) -> io::Result<bool> {
    let mode = shared.mode();
    let persist = Persist::of(&request.head);
    bufs.cuts.clear();
    match mode {
        Mode::Refuse => return Ok(false),
        Mode::Hang { hang_ms } => {
            shared.record(request, mode);
            hold(stream, Duration::from_millis(hang_ms));
            return Ok(false);
        }
        Mode::Reset => {
            // The request was already consumed, so only a FIN is possible here.
            shared.record(request, mode);
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(false);
        }
        Mode::Healthy | Mode::Slow { .. } => build_success(shared, &request, persist, bufs)?,
        Mode::Error { status } => build_error(shared, status, "server_error", persist, bufs)?,
        Mode::Status { status } => {
            build_error(shared, status, "invalid_request_error", persist, bufs)?
        }
        Mode::RateLimit { retry_after } => build_rate_limit(shared, retry_after, persist, bufs)?,
    }
    shared.record(request, mode);
    if let Mode::Slow { delay_ms } = mode {
        thread::sleep(Duration::from_millis(delay_ms));
    }
    send_response(stream, bufs)?;
    Ok(persist.keep_alive())
}

/// `hang` mode: keeps the connection open, discarding input, until the peer
/// closes it or `duration` passes.
fn hold(stream: &TcpStream, duration: Duration) {
    let deadline = Instant::now() + duration;
    let mut scratch = [0u8; 1024];
    let mut reader = stream;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match reader.read(&mut scratch) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn build_success(
    shared: &Shared,
    request: &Request,
    persist: Persist,
    bufs: &mut Buffers,
) -> io::Result<()> {
    let route = route(request.head.path());
    let parsed: Option<Value> = match route {
        Route::Chat | Route::Messages | Route::Embeddings if !request.body.is_empty() => {
            serde_json::from_slice(&request.body).ok()
        }
        _ => None,
    };
    let field = |key: &str| parsed.as_ref().and_then(|v| v.get(key));
    let model = field("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model");
    if route == Route::Chat && field("stream").and_then(Value::as_bool) == Some(true) {
        return build_chat_stream(shared, model, request.head.http10, persist, bufs);
    }
    let body = &mut bufs.body;
    body.clear();
    match route {
        Route::Chat => write_chat_completion(body, shared, model)?,
        Route::Messages => write_message(body, shared, model)?,
        Route::Embeddings => write_embeddings(body, model)?,
        Route::Models => write_models(body, shared)?,
        Route::Other => {
            write!(
                body,
                r#"{{"ok":true,"provider":{},"path":"#,
                shared.name_json
            )?;
            json_str(body, request.head.path())?;
            body.push(b'}');
        }
    }
    start_response(&mut bufs.out, 200, JSON, shared)?;
    finish_response(&mut bufs.out, &bufs.body, persist)
}

fn write_chat_completion(body: &mut Vec<u8>, shared: &Shared, model: &str) -> io::Result<()> {
    write!(
        body,
        r#"{{"id":"chatcmpl-mock-{}","object":"chat.completion","created":{},"model":"#,
        shared.next_id(),
        unix_now()
    )?;
    json_str(body, model)?;
    write!(
        body,
        r#","choices":[{{"index":0,"message":{{"role":"assistant","content":{}}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9}}}}"#,
        shared.greeting_json
    )
}

fn write_message(body: &mut Vec<u8>, shared: &Shared, model: &str) -> io::Result<()> {
    write!(
        body,
        r#"{{"id":"msg_mock_{}","type":"message","role":"assistant","model":"#,
        shared.next_id()
    )?;
    json_str(body, model)?;
    write!(
        body,
        r#","content":[{{"type":"text","text":{}}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":5,"output_tokens":4}}}}"#,
        shared.greeting_json
    )
}

fn write_embeddings(body: &mut Vec<u8>, model: &str) -> io::Result<()> {
    body.extend_from_slice(
        br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3]}],"model":"#,
    );
    json_str(body, model)?;
    body.extend_from_slice(br#","usage":{"prompt_tokens":3,"total_tokens":3}}"#);
    Ok(())
}

fn write_models(body: &mut Vec<u8>, shared: &Shared) -> io::Result<()> {
    write!(
        body,
        r#"{{"object":"list","data":[{{"id":"mock-model","object":"model","created":1700000000,"owned_by":{0}}},{{"id":"gpt-4o-mini","object":"model","created":1700000000,"owned_by":{0}}}]}}"#,
        shared.name_json
    )
}

/// A streamed chat completion: one chunk (and one write) per server-sent event.
fn build_chat_stream(
    shared: &Shared,
    model: &str,
    http10: bool,
    persist: Persist,
    bufs: &mut Buffers,
) -> io::Result<()> {
    let mut model_json = Vec::with_capacity(model.len() + 2);
    json_str(&mut model_json, model)?;
    let model_json = String::from_utf8_lossy(&model_json);
    let prefix = format!(
        r#"data: {{"id":"chatcmpl-mock-{}","object":"chat.completion.chunk","created":{},"model":{model_json},"choices":[{{"index":0,"#,
        shared.next_id(),
        unix_now()
    );
    let events = [
        format!("{prefix}\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"finish_reason\":null}}]}}\n\n"),
        format!(
            "{prefix}\"delta\":{{\"content\":{}}},\"finish_reason\":null}}]}}\n\n",
            shared.greeting_json
        ),
        format!("{prefix}\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\n"),
        "data: [DONE]\n\n".to_owned(),
    ];
    let out = &mut bufs.out;
    start_response(out, 200, "text/event-stream", shared)?;
    out.extend_from_slice(b"cache-control: no-cache\r\n");
    if http10 {
        // HTTP/1.0 has no chunked encoding: send the events as one body.
        bufs.body.clear();
        bufs.body.extend(events.iter().flat_map(|e| e.bytes()));
        return finish_response(out, &bufs.body, persist);
    }
    out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    out.extend_from_slice(persist.header());
    out.extend_from_slice(b"\r\n");
    for event in &events {
        write!(out, "{:x}\r\n{event}\r\n", event.len())?;
        bufs.cuts.push(out.len());
    }
    out.extend_from_slice(b"0\r\n\r\n");
    bufs.cuts.pop(); // the last event goes out together with the terminator
    Ok(())
}

fn build_error(
    shared: &Shared,
    status: u16,
    error_type: &str,
    persist: Persist,
    bufs: &mut Buffers,
) -> io::Result<()> {
    let body = &mut bufs.body;
    body.clear();
    if status == 529 {
        body.extend_from_slice(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
    } else if error_type == "server_error" {
        write!(
            body,
            r#"{{"error":{{"message":"mock {status}","type":"server_error","code":{status}}}}}"#
        )?;
    } else {
        write!(
            body,
            r#"{{"error":{{"message":"mock {status}","type":"{error_type}"}}}}"#
        )?;
    }
    start_response(&mut bufs.out, status, JSON, shared)?;
    finish_response(&mut bufs.out, &bufs.body, persist)
}

fn build_rate_limit(
    shared: &Shared,
    retry_after: u64,
    persist: Persist,
    bufs: &mut Buffers,
) -> io::Result<()> {
    let body = &mut bufs.body;
    body.clear();
    write!(
        body,
        r#"{{"error":{{"message":"Rate limit reached for requests (mock). Please try again in {retry_after}s.","type":"requests","param":null,"code":"rate_limit_exceeded"}}}}"#
    )?;
    let out = &mut bufs.out;
    start_response(out, 429, JSON, shared)?;
    write!(
        out,
        "retry-after: {retry_after}\r\nx-ratelimit-reset-requests: {retry_after}s\r\nx-ratelimit-remaining-requests: 0\r\n"
    )?;
    finish_response(out, &bufs.body, persist)
}

// ---------------------------------------------------------------------------
// Control listener

fn handle_control(
    shared: &Shared,
    stream: &TcpStream,
    request: &Request,
    bufs: &mut Buffers,
) -> io::Result<bool> {
    let head = &request.head;
    let persist = Persist::of(head);
    let (status, reply) = match (head.method.as_str(), head.path()) {
        ("POST", "/mode") => set_mode(shared, &request.body),
        ("GET", "/mode") => (200, Value::Object(shared.mode().to_json())),
        ("GET", "/stats") => (200, shared.stats_json()),
        ("GET", "/requests") => {
            let filter = head.query().and_then(|q| query_param(q, "path"));
            (200, shared.requests_json(filter.as_deref()))
        }
        ("POST", "/reset") => {
            shared.reset_stats();
            (200, json!({ "ok": true }))
        }
        (_, "/mode" | "/stats" | "/requests" | "/reset") => (405, control_error("method not allowed")),
        _ => (
            404,
            control_error("unknown control path; use POST /mode, GET /mode, GET /stats, GET /requests, POST /reset"),
        ),
    };
    bufs.body.clear();
    serde_json::to_writer(&mut bufs.body, &reply).map_err(io::Error::other)?;
    bufs.cuts.clear();
    start_response(&mut bufs.out, status, JSON, shared)?;
    finish_response(&mut bufs.out, &bufs.body, persist)?;
    send_response(stream, bufs)?;
    Ok(persist.keep_alive())
}

fn control_error(message: &str) -> Value {
    json!({ "ok": false, "error": message })
}

fn set_mode(shared: &Shared, body: &[u8]) -> (u16, Value) {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => return (400, control_error(&format!("invalid JSON body: {e}"))),
    };
    let mode = match Mode::from_json(&value) {
        Ok(mode) => mode,
        Err(message) => return (400, control_error(&message)),
    };
    let mut reply = mode.to_json();
    let status = match shared.set_mode(mode) {
        Ok(()) => 200,
        Err(message) => {
            reply.insert("error".into(), message.into());
            500
        }
    };
    reply.insert("ok".into(), (status == 200).into());
    (status, Value::Object(reply))
}

/// The percent-decoded value of `key` in a query string.
fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
