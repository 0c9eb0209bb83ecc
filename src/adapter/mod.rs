//! The proxy-wasm adapter: the thin layer between Envoy and the pure core.
//!
//! It only exists for `wasm32-wasip1`. The root context ([`Plugin`]) compiles the config into
//! a [`Runtime`] over the proxy's [`ProxyHost`], moves breakers and waiting exchanges forward
//! on its tick and sends alert webhooks; each HTTP stream gets a [`filter::Filter`] that feeds
//! its exchange.
//!
//! `exports.txt` lists the module exports these callbacks need: a trimmed build keeps only
//! those (a new callback must be added there; `tests/wasm_exports.rs` checks it).

mod filter;
mod host;

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use log::{error, info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel, MapType};

use crate::config::{Config, UpstreamId};
use crate::exchange::{Event, Exchange, Headers};
use crate::host::Host;
use crate::metrics::StatSink;
use crate::recovery::{self, ProbeAnswer, Prober};
use crate::runtime::Runtime;
use filter::{drive, Filter};
use host::{EnvoyStats, Map, ProxyHost};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Plugin::default()) });
}}

type Cell = Rc<RefCell<Exchange>>;

/// An exchange the root context may have to reach: one that waits for a tick, or whose
/// callout was dispatched from the root (its answer then comes to the root).
struct Watched {
    context_id: u32,
    exchange: Weak<RefCell<Exchange>>,
    root_call: Option<u32>,
}

/// What one worker's streams and its root context share.
pub struct Shared {
    rt: Runtime<ProxyHost>,
    watched: RefCell<Vec<Watched>>,
    prober: RefCell<Prober>,
    /// Recovery probes in flight: callout token and upstream.
    probes: RefCell<Vec<(u32, UpstreamId)>>,
}

impl Shared {
    /// Keeps an exchange listed while it waits for a tick or a root-dispatched callout.
    fn watch(&self, context_id: u32, cell: &Cell, root_call: Option<u32>) {
        let Ok(mut watched) = self.watched.try_borrow_mut() else {
            return;
        };
        let wakes = cell
            .try_borrow()
            .ok()
            .and_then(|e| e.wake_at(&self.rt.config))
            .is_some();
        watched.retain(|w| w.context_id != context_id || w.root_call.is_some());
        if wakes || root_call.is_some() {
            watched.push(Watched {
                context_id,
                exchange: Rc::downgrade(cell),
                root_call,
            });
        }
    }

    /// Drives `event` for an exchange from the root context, on its stream.
    fn drive_from_root(&self, context_id: u32, cell: &Cell, event: Event<'_>) {
        if host::enter(context_id) {
            let token = drive(self, context_id, cell, event).token;
            self.watch(context_id, cell, token);
        }
    }
}

/// Sends the recovery probes this worker's prober says are due.
fn send_probes(shared: &Shared, now: u64) {
    let Ok(mut prober) = shared.prober.try_borrow_mut() else {
        return;
    };
    for p in prober.tick(&shared.rt, now) {
        match host::dispatch(&p.call) {
            Some(token) => {
                if let Ok(mut probes) = shared.probes.try_borrow_mut() {
                    probes.push((token, p.upstream));
                }
            }
            None => {
                prober.answered(&shared.rt, p.upstream, ProbeAnswer::NotSent, now);
            }
        }
    }
}

/// The root context of one worker's VM.
#[derive(Default)]
struct Plugin {
    shared: Option<Rc<Shared>>,
}

/// Passes everything through; only used if a stream arrives before a valid configuration.
struct Passthrough;
impl Context for Passthrough {}
impl HttpContext for Passthrough {}

impl Context for Plugin {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, _: usize) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let probe = shared.probes.try_borrow_mut().ok().and_then(|mut p| {
            let i = p.iter().position(|x| x.0 == token)?;
            Some(p.swap_remove(i).1)
        });
        if let Some(u) = probe {
            let map = Map(MapType::HttpCallResponseHeaders);
            let status = (headers > 0).then_some(map).and_then(|m| m.get(":status"));
            let answer = match status.and_then(|s| s.parse().ok()) {
                Some(s) => ProbeAnswer::Status(s),
                None => ProbeAnswer::NoAnswer,
            };
            if let Ok(mut prober) = shared.prober.try_borrow_mut() {
                prober.answered(&shared.rt, u, answer, shared.rt.host.now_ms());
            }
            return;
        }
        let owner = shared.watched.try_borrow_mut().ok().and_then(|mut w| {
            let i = w.iter().position(|x| x.root_call == Some(token))?;
            let x = w.swap_remove(i);
            Some((x.context_id, x.exchange.upgrade()?))
        });
        match owner {
            Some((id, cell)) => {
                if host::enter(id) {
                    let token = filter::answer(&shared, id, &cell, headers, body).token;
                    shared.watch(id, &cell, token);
                }
            }
            None => {
                let map = Map(MapType::HttpCallResponseHeaders);
                let status = (headers > 0).then_some(map).and_then(|m| m.get(":status"));
                shared
                    .rt
                    .alert_answered(status.and_then(|s| s.parse().ok()));
            }
        }
    }
}

impl RootContext for Plugin {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = host::plugin_configuration() else {
            error!("invalid configuration: config: no plugin configuration given");
            return false;
        };
        match Config::from_json(&String::from_utf8_lossy(&bytes)) {
            Ok(config) => {
                let (u, r) = (config.upstreams().len(), config.routes.len());
                info!("configured {u} upstreams, {r} routes");
                host::set_tick_period_ms(config.tick_interval_ms);
                let stats = StatSink::define(&config, EnvoyStats);
                let rt = Runtime::new(config, ProxyHost { stats });
                let worker = recovery::worker_id(rt.host.random_unit());
                let prober = RefCell::new(Prober::new(&rt, worker));
                self.shared = Some(Rc::new(Shared {
                    rt,
                    watched: RefCell::new(Vec::new()),
                    prober,
                    probes: RefCell::new(Vec::new()),
                }));
                true
            }
            Err(e) => {
                error!("invalid configuration: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let now = shared.rt.host.now_ms();
        shared.rt.tick(now);
        send_probes(&shared, now);
        let due: Vec<(u32, Cell)> = match shared.watched.try_borrow_mut() {
            Ok(mut watched) => {
                watched.retain(|w| w.exchange.strong_count() > 0);
                let wake = |c: &Cell| {
                    c.try_borrow()
                        .ok()
                        .and_then(|e| e.wake_at(&shared.rt.config))
                };
                watched
                    .iter()
                    .filter_map(|w| Some((w.context_id, w.exchange.upgrade()?)))
                    .filter(|(_, c)| wake(c).is_some_and(|t| t <= now))
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        for (id, cell) in due {
            shared.drive_from_root(
                id,
                &cell,
                Event::Tick {
                    stream: &host::Properties,
                },
            );
        }
        for call in shared.rt.take_alerts() {
            if host::dispatch(&call).is_none() {
                warn!(
                    "alert webhook to cluster {} could not be sent",
                    call.cluster
                );
                shared.rt.alert_answered(None);
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(match &self.shared {
            Some(shared) => Box::new(Filter::new(Rc::clone(shared), context_id)),
            None => Box::new(Passthrough),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
