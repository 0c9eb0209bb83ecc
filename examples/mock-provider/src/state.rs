//! What every connection thread shares: the active mode, the request-validation switch,
//! the counters and request log behind `GET /stats` and `GET /requests`, and the state of
//! the data port that `refuse` closes and re-binds.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::http::Request;
use crate::modes::{Active, Kind, Mode, Refusing, LEAF_NAMES};

/// The request log keeps the last 200 requests, bodies cut at 256 KiB.
pub const LOG_CAPACITY: usize = 200;
pub const MAX_LOGGED_BODY: usize = 256 * 1024;
/// How long `POST /mode` waits for the data port to close or re-open.
const LISTENER_WAIT: Duration = Duration::from_secs(3);

pub struct Shared {
    pub name: String,
    pub name_json: String,
    listen_addr: SocketAddr,
    active: RwLock<Arc<Active>>,
    /// Anthropic request validation on `/v1/messages`.
    validate: AtomicBool,
    /// OpenAI request validation on `/chat/completions` (off unless asked for).
    validate_openai: AtomicBool,
    /// Whether the data port is bound; guarded together with `listener_cv`.
    listener_open: Mutex<bool>,
    listener_cv: Condvar,
    /// Clones of open data connections, shut down when the port closes.
    connections: Mutex<HashMap<u64, TcpStream>>,
    next_connection: AtomicU64,
    next_response_id: AtomicU64,
    stats: Mutex<Stats>,
}

#[derive(Default)]
struct Stats {
    total: u64,
    by_mode: [u64; LEAF_NAMES.len()],
    by_path: HashMap<String, u64>,
    rejected: u64,
    seq: u64,
    log: VecDeque<LoggedRequest>,
}

struct LoggedRequest {
    seq: u64,
    /// When the request was complete, in ms since the Unix epoch.
    unix_ms: u64,
    mode: &'static str,
    request: Request,
    rejected: Option<String>,
}

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes one line to stderr, ignoring failures (stderr may be closed).
pub fn warn(msg: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "mock-provider: {msg}");
}

impl Shared {
    pub fn new(name: String, listen_addr: SocketAddr, mode: Mode, validate: bool) -> Shared {
        Shared {
            name_json: Value::from(name.as_str()).to_string(),
            name,
            listen_addr,
            active: RwLock::new(Arc::new(Active::new(mode, Instant::now()))),
            validate: AtomicBool::new(validate),
            validate_openai: AtomicBool::new(false),
            listener_open: Mutex::new(true),
            listener_cv: Condvar::new(),
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(0),
            next_response_id: AtomicU64::new(0),
            stats: Mutex::new(Stats::default()),
        }
    }

    pub fn active(&self) -> Arc<Active> {
        Arc::clone(&self.active.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn refusing(&self) -> bool {
        self.active().refusing(Instant::now()) != Refusing::No
    }

    pub fn validate(&self) -> bool {
        self.validate.load(Ordering::Relaxed)
    }

    pub fn set_validate(&self, on: bool) {
        self.validate.store(on, Ordering::Relaxed);
    }

    pub fn validate_openai(&self) -> bool {
        self.validate_openai.load(Ordering::Relaxed)
    }

    pub fn set_validate_openai(&self, on: bool) {
        self.validate_openai.store(on, Ordering::Relaxed);
    }

    pub fn next_id(&self) -> u64 {
        self.next_response_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts and logs a request that reached the data port, under the mode that answered.
    pub fn record(&self, mut request: Request, kind: &Kind, rejected: Option<String>) {
        request.body.truncate(MAX_LOGGED_BODY);
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_millis()).ok())
            .unwrap_or_default();
        let mut guard = lock(&self.stats);
        let stats = &mut *guard;
        stats.total += 1;
        if let Some(count) = stats.by_mode.get_mut(kind.leaf_index()) {
            *count += 1;
        }
        if rejected.is_some() {
            stats.rejected += 1;
        }
        let path = request.path();
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
            unix_ms,
            mode: kind.name(),
            request,
            rejected,
        });
    }

    pub fn reset_stats(&self) {
        let old = std::mem::take(&mut *lock(&self.stats));
        drop(old);
    }

    /// Installs a mode and waits until the data port matches it (closed while refusing).
    pub fn set_mode(&self, mode: Mode) -> Result<(), String> {
        let active = Arc::new(Active::new(mode, Instant::now()));
        *self.active.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&active);
        {
            let _open = lock(&self.listener_open);
            self.listener_cv.notify_all();
        }
        let refusing = active.refusing(Instant::now()) != Refusing::No;
        if refusing {
            self.close_data_connections();
            self.wake_acceptor();
        }
        // A `down_for` refusal may be over before the port has even closed: wait for the
        // port to match the mode as it is when we look.
        let guard = lock(&self.listener_open);
        let (guard, _) = self
            .listener_cv
            .wait_timeout_while(guard, LISTENER_WAIT, |open| {
                *open == (active.refusing(Instant::now()) != Refusing::No)
            })
            .unwrap_or_else(PoisonError::into_inner);
        let want_open = active.refusing(Instant::now()) == Refusing::No;
        match (*guard == want_open, want_open) {
            (true, _) => Ok(()),
            (false, false) => Err("the data listener did not close in time".to_owned()),
            (false, true) => Err(format!(
                "could not re-bind the data listener on {} (still retrying)",
                self.listen_addr
            )),
        }
    }

    pub fn mark_listener(&self, open: bool) {
        *lock(&self.listener_open) = open;
        self.listener_cv.notify_all();
    }

    /// Blocks the acceptor while the data port must stay closed.
    pub fn wait_while_refused(&self) {
        let mut guard = lock(&self.listener_open);
        loop {
            let now = Instant::now();
            guard = match self.active().refusing(now) {
                Refusing::No => return,
                Refusing::Indefinitely => self
                    .listener_cv
                    .wait(guard)
                    .unwrap_or_else(PoisonError::into_inner),
                Refusing::Until(end) => {
                    self.listener_cv
                        .wait_timeout(guard, end.saturating_duration_since(now))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// Keeps a clone of a data connection so that closing the port can shut it down.
    pub fn register(&self, stream: &TcpStream) -> Option<Registration<'_>> {
        let clone = stream.try_clone().ok()?;
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        lock(&self.connections).insert(id, clone);
        Some(Registration { shared: self, id })
    }

    fn close_data_connections(&self) {
        for (_, stream) in lock(&self.connections).drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Unblocks the acceptor's `accept()` so that it notices the port must close.
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

    /// Binds the data port again, retrying every 50 ms (the old socket may linger).
    pub fn rebind(&self) -> TcpListener {
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

    pub fn mode_json(&self) -> Value {
        Value::Object(self.active().to_json(Instant::now()))
    }

    pub fn stats_json(&self) -> Value {
        let active = self.active();
        let stats = lock(&self.stats);
        let by_mode: Map<String, Value> = LEAF_NAMES
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
            "mode": active.mode.name(),
            "mode_config": active.to_json(Instant::now()),
            "total": stats.total,
            "by_mode": by_mode,
            "by_path": by_path,
            "rejected": stats.rejected,
        })
    }

    pub fn requests_json(&self, path: Option<&str>) -> Value {
        let stats = lock(&self.stats);
        let requests: Vec<Value> = stats
            .log
            .iter()
            .filter(|entry| path.map_or(true, |path| entry.request.path() == path))
            .map(LoggedRequest::to_json)
            .collect();
        json!({ "requests": requests })
    }
}

/// A registered data connection; dropping it forgets the clone.
pub struct Registration<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        lock(&self.shared.connections).remove(&self.id);
    }
}

impl LoggedRequest {
    fn to_json(&self) -> Value {
        let request = &self.request;
        let mut headers = Map::new();
        for (name, value) in &request.headers {
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
            "unix_ms": self.unix_ms,
            "method": request.method,
            "path": request.path(),
            "target": request.target,
            "headers": headers,
            "body": String::from_utf8_lossy(&request.body),
            "mode": self.mode,
            "rejected": self.rejected,
        })
    }
}
