//! An in-memory [`Host`] for in-process tests: a settable clock, fixed randomness, a
//! shared-data store with real compare-and-swap semantics, and a metrics recorder.
//!
//! Several fake hosts can share one [`FakeStore`], which is how two Envoy workers are
//! simulated. The store can refuse the next writes with a CAS mismatch, and can run any
//! closure (another worker's operation) between a read and the write that follows it, which
//! is exactly the window in which real workers race.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::breaker::StateKind;
use crate::config::{Config, UpstreamId};
use crate::driver::Driver;
use crate::exchange::{Body, Effect, Headers, StreamInfo};
use crate::host::{Host, Properties, StreamHost, Versioned, WriteError};
use crate::metrics::{AlertResult, FailoverResult, MetricsSink, TranslationResult};
use crate::outcome::{FailureReason, Outcome};
use crate::runtime::Runtime;
use crate::store::probe_lease::ProbeResult;

type Hook = Box<dyn FnOnce()>;

/// Process-wide shared data, as proxy-wasm keeps it: bytes and a CAS token per key.
#[derive(Default)]
pub struct FakeStore {
    entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_token: Cell<u32>,
    /// Writes still to refuse with a CAS mismatch.
    refuse: Cell<usize>,
    /// Run before the next writes, one per write (after that write's read).
    before_write: RefCell<VecDeque<Hook>>,
    pub writes: Cell<usize>,
}

impl FakeStore {
    pub fn new() -> Rc<FakeStore> {
        Rc::new(FakeStore::default())
    }

    /// The next `n` writes fail with a CAS mismatch.
    pub fn refuse_next_writes(&self, n: usize) {
        self.refuse.set(n);
    }

    /// Runs `f` just before the next write lands: another worker acting between this
    /// worker's read and its compare-and-swap.
    pub fn before_next_write(&self, f: impl FnOnce() + 'static) {
        self.before_write.borrow_mut().push_back(Box::new(f));
    }

    fn get(&self, key: &str) -> Versioned {
        match self.entries.borrow().get(key) {
            Some((v, t)) => (Some(v.clone()), Some(*t)),
            None => (None, None),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        let hook = self.before_write.borrow_mut().pop_front();
        if let Some(hook) = hook {
            hook();
        }
        if self.refuse.get() > 0 {
            self.refuse.set(self.refuse.get() - 1);
            return Err(WriteError::CasMismatch);
        }
        let mut entries = self.entries.borrow_mut();
        if let (Some(want), Some((_, have))) = (cas, entries.get(key)) {
            if want != *have {
                return Err(WriteError::CasMismatch);
            }
        }
        let token = self.next_token.get().wrapping_add(1);
        self.next_token.set(token);
        entries.insert(key.to_string(), (value.to_vec(), token));
        self.writes.set(self.writes.get() + 1);
        Ok(())
    }
}

/// One worker's host.
pub struct FakeHost {
    pub store: Rc<FakeStore>,
    pub clock: Rc<Cell<u64>>,
    pub random: Cell<f64>,
    pub metrics: Rc<Recorder>,
}

impl FakeHost {
    pub fn new(store: Rc<FakeStore>, clock: Rc<Cell<u64>>) -> FakeHost {
        FakeHost {
            store,
            clock,
            random: Cell::new(0.5),
            metrics: Rc::new(Recorder::default()),
        }
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> u64 {
        self.clock.get()
    }

    fn random_unit(&self) -> f64 {
        self.random.get()
    }

    fn shared_get(&self, key: &str) -> Versioned {
        self.store.get(key)
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        self.store.set(key, value, cas)
    }

    fn metrics(&self) -> &dyn MetricsSink {
        &*self.metrics
    }
}

/// Counts every metric call, keyed like `requests{openai,failure}`.
#[derive(Default)]
pub struct Recorder {
    counts: RefCell<HashMap<String, u64>>,
    pub names: RefCell<Vec<String>>,
}

impl Recorder {
    /// Upstream names, so keys read `openai` instead of an index.
    pub fn name_upstreams(&self, config: &Config) {
        *self.names.borrow_mut() = config.upstreams().iter().map(|u| u.name.clone()).collect();
    }

    fn n(&self, u: UpstreamId) -> String {
        self.names
            .borrow()
            .get(u.index())
            .cloned()
            .unwrap_or_else(|| u.index().to_string())
    }

    fn bump(&self, key: String) {
        *self.counts.borrow_mut().entry(key).or_default() += 1;
    }

    /// How many times `key` was recorded.
    pub fn count(&self, key: &str) -> u64 {
        self.counts.borrow().get(key).copied().unwrap_or(0)
    }
}

impl MetricsSink for Recorder {
    fn state(&self, u: UpstreamId, state: StateKind) {
        self.bump(format!("state{{{},{}}}", self.n(u), state.as_str()));
    }
    fn request(&self, u: UpstreamId, outcome: &Outcome) {
        self.bump(format!("requests{{{},{}}}", self.n(u), outcome.label()));
    }
    fn failure(&self, u: UpstreamId, reason: FailureReason) {
        self.bump(format!("failures{{{},{}}}", self.n(u), reason.as_str()));
    }
    fn rejected(&self, u: UpstreamId) {
        self.bump(format!("rejected{{{}}}", self.n(u)));
    }
    fn fallback(&self, from: UpstreamId, to: UpstreamId) {
        self.bump(format!("fallbacks{{{},{}}}", self.n(from), self.n(to)));
    }
    fn transition(&self, u: UpstreamId, from: StateKind, to: StateKind) {
        self.bump(format!(
            "transitions{{{},{},{}}}",
            self.n(u),
            from.as_str(),
            to.as_str()
        ));
    }
    fn all_open(&self) {
        self.bump("all_open".to_string());
    }
    fn body_over_limit(&self) {
        self.bump("body_over_limit".to_string());
    }
    fn first_token(&self, u: UpstreamId, _ms: u64) {
        self.bump(format!("first_token{{{}}}", self.n(u)));
    }
    fn tokens(&self, u: UpstreamId, input: u64, output: u64) {
        for _ in 0..input {
            self.bump(format!("input_tokens{{{}}}", self.n(u)));
        }
        for _ in 0..output {
            self.bump(format!("output_tokens{{{}}}", self.n(u)));
        }
    }
    fn malformed_event(&self, u: UpstreamId) {
        self.bump(format!("malformed{{{}}}", self.n(u)));
    }
    fn probe(&self, u: UpstreamId, success: bool) {
        self.bump(format!(
            "probes{{{},{}}}",
            self.n(u),
            if success { "success" } else { "failure" }
        ));
    }
    fn recovery_probe(&self, u: UpstreamId, result: ProbeResult) {
        self.bump(format!(
            "recovery_probes{{{},{}}}",
            self.n(u),
            result.as_str()
        ));
    }
    fn open_duration(&self, u: UpstreamId, _ms: u64) {
        self.bump(format!("open_duration{{{}}}", self.n(u)));
    }
    fn failover(&self, from: UpstreamId, to: UpstreamId, result: FailoverResult) {
        self.bump(format!(
            "failovers{{{},{},{}}}",
            self.n(from),
            self.n(to),
            result.as_str()
        ));
    }
    fn alert(&self, result: AlertResult) {
        self.bump(format!("alerts{{{}}}", result.as_str()));
    }
    fn translation(&self, u: UpstreamId, result: TranslationResult) {
        self.bump(format!("translations{{{},{}}}", self.n(u), result.as_str()));
    }
}

/// A worker: a runtime over a fake host.
pub struct Worker {
    pub rt: Rc<Runtime<FakeHost>>,
}

impl Worker {
    pub fn metrics(&self) -> &Recorder {
        &self.rt.host.metrics
    }
}

/// `n` workers sharing one store and one clock, each with `config` compiled from `json`.
pub fn workers(json: &str, n: usize, now_ms: u64) -> (Vec<Worker>, Rc<FakeStore>, Rc<Cell<u64>>) {
    let store = FakeStore::new();
    let clock = Rc::new(Cell::new(now_ms));
    let workers = (0..n)
        .map(|_| {
            let config = Config::from_json(json).expect("valid config");
            let host = FakeHost::new(Rc::clone(&store), Rc::clone(&clock));
            host.metrics.name_upstreams(&config);
            Worker {
                rt: Rc::new(Runtime::new(config, host)),
            }
        })
        .collect();
    (workers, store, clock)
}

/// One worker.
pub fn worker(json: &str, now_ms: u64) -> (Worker, Rc<Cell<u64>>) {
    let (mut ws, _, clock) = workers(json, 1, now_ms);
    (ws.remove(0), clock)
}

/// One worker's driver over a fake host, with `config` compiled from `json`.
pub fn driver(json: &str, now_ms: u64) -> (Driver<FakeHost>, Rc<Cell<u64>>) {
    let (w, clock) = worker(json, now_ms);
    let rt = Rc::try_unwrap(w.rt).ok().expect("the only owner");
    (Driver::new(rt), clock)
}

/// The host calls that act on a stream, as plain data: the streams entered and the effects
/// carried out, in order. Callouts get tokens 1, 2, ... unless refused.
#[derive(Default)]
pub struct FakeProxy {
    pub entered: RefCell<Vec<u32>>,
    pub applied: RefCell<Vec<Effect>>,
    /// Callouts still to refuse (they "cannot be sent").
    pub refuse_calls: Cell<usize>,
    /// Streams the host no longer has (entering them fails).
    pub gone: RefCell<Vec<u32>>,
    pub info: Info,
    tokens: Cell<u32>,
}

impl FakeProxy {
    /// Takes the effects carried out so far.
    pub fn take(&self) -> Vec<Effect> {
        std::mem::take(&mut *self.applied.borrow_mut())
    }
}

impl StreamHost for FakeProxy {
    fn enter(&self, context_id: u32) -> bool {
        self.entered.borrow_mut().push(context_id);
        !self.gone.borrow().contains(&context_id)
    }

    fn apply(&self, effect: Effect) -> Option<u32> {
        let call = matches!(effect, Effect::Call(_));
        self.applied.borrow_mut().push(effect);
        if !call {
            return None;
        }
        if self.refuse_calls.get() > 0 {
            self.refuse_calls.set(self.refuse_calls.get() - 1);
            return None;
        }
        self.tokens.set(self.tokens.get() + 1);
        Some(self.tokens.get())
    }

    fn info(&self) -> &dyn StreamInfo {
        &self.info
    }
}

/// Envoy's raw stream properties as plain data.
#[derive(Default)]
pub struct RawProps {
    pub props: Vec<(Vec<&'static str>, Vec<u8>)>,
    pub request_headers: Option<Vec<(String, String)>>,
}

impl Properties for RawProps {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.props
            .iter()
            .find(|(p, _)| p.as_slice() == path)
            .map(|(_, v)| v.clone())
    }

    fn request_headers(&self) -> Option<Vec<(String, String)>> {
        self.request_headers.clone()
    }
}

/// A header map as plain data.
pub struct Map(pub Vec<(String, String)>);

impl Map {
    pub fn of(pairs: &[(&str, &str)]) -> Map {
        Map(pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }
}

impl Headers for Map {
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
    fn all(&self) -> Vec<(String, String)> {
        self.0.clone()
    }
}

/// A body buffer as plain data.
pub struct Bytes(pub Vec<u8>);

impl Body for Bytes {
    fn read_range(&self, start: usize, len: usize) -> Vec<u8> {
        self.0.iter().skip(start).take(len).copied().collect()
    }
}

/// Envoy's stream properties as plain data.
#[derive(Default)]
pub struct Info {
    pub flags: u64,
    pub details: Option<String>,
    pub received: Option<u64>,
}

impl StreamInfo for Info {
    fn response_flags(&self) -> u64 {
        self.flags
    }
    fn code_details(&self) -> Option<String> {
        self.details.clone()
    }
    fn request_body_received(&self) -> Option<u64> {
        self.received
    }
}
