//! What the proxy's callbacks do with one worker's exchanges, without the proxy.
//!
//! Each HTTP stream owns a [`Stream`]: its exchange and the callout it dispatched itself. The
//! worker's [`Driver`] holds the runtime and the streams its root context must reach: those
//! waiting for a timer tick, and those whose callout was dispatched from the root (on a tick),
//! whose answer then comes to the root. Driving an event carries out its effects through a
//! [`StreamHost`]; a callout that cannot be dispatched is reported back at once, so the
//! exchange tries the next fallback. The adapter only turns callbacks into these calls.
//!
//! An exchange sits behind an `Rc<RefCell<_>>` so the root context can reach it on a tick;
//! the borrow is never held across a host call, so a callback Envoy makes from inside one (a
//! local reply entering the response path) finds it free.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use log::{error, info, warn};

use crate::config::{Config, UpstreamId};
use crate::exchange::{Answer, Effect, Event, Exchange, Flow};
use crate::host::{Host, StreamHost};
use crate::recovery::{self, ProbeAnswer, Prober};
use crate::runtime::Runtime;

type Cell = Rc<RefCell<Exchange>>;

/// One worker's runtime and the exchanges its root context must reach.
pub struct Driver<H: Host> {
    pub rt: Runtime<H>,
    watched: RefCell<Vec<Watched>>,
    prober: RefCell<Prober>,
    /// Recovery probes in flight: callout token and upstream.
    probes: RefCell<Vec<(u32, UpstreamId)>>,
}

/// An exchange the root context may have to reach: one that waits for a tick, or whose
/// callout was dispatched from the root (its answer then comes to the root).
struct Watched {
    context_id: u32,
    exchange: Weak<RefCell<Exchange>>,
    root_call: Option<u32>,
}

/// What driving one event left behind.
struct Driven {
    flow: Flow,
    /// The callout dispatched while handling it.
    token: Option<u32>,
}

/// One HTTP stream's exchange, as its own callbacks drive it.
pub struct Stream {
    context_id: u32,
    exchange: Cell,
    /// The callout dispatched from this stream's context, whose answer comes back here.
    call: Option<u32>,
}

impl Stream {
    pub fn new(context_id: u32) -> Stream {
        Stream {
            context_id,
            exchange: Rc::new(RefCell::new(Exchange::new())),
            call: None,
        }
    }

    /// Drives one of the stream's own callbacks; whether it continues or pauses.
    pub fn on_event<H: Host>(
        &mut self,
        driver: &Driver<H>,
        host: &dyn StreamHost,
        event: Event<'_>,
    ) -> Flow {
        let driven = driver.drive(host, self.context_id, &self.exchange, event);
        self.call = driven.token.or(self.call);
        driven.flow
    }

    /// A callout's answer delivered to this stream's context (`None`: the host has none). Only
    /// the answer to the stream's own callout is driven.
    pub fn on_callout_answer<H: Host>(
        &mut self,
        driver: &Driver<H>,
        host: &dyn StreamHost,
        token: u32,
        answer: Option<Answer<'_>>,
    ) {
        if self.call.take_if(|t| *t == token).is_some() {
            let event = Event::CalloutAnswered(answer);
            self.call = driver
                .drive(host, self.context_id, &self.exchange, event)
                .token;
        }
    }

    /// The exchange's phase name, for logs and tests.
    pub fn phase_name(&self) -> &'static str {
        self.exchange
            .try_borrow()
            .map_or("busy", |e| e.phase_name())
    }
}

impl<H: Host> Driver<H> {
    pub fn new(rt: Runtime<H>) -> Driver<H> {
        let worker = recovery::worker_id(rt.host.random_unit());
        let prober = RefCell::new(Prober::new(&rt, worker));
        Driver {
            rt,
            watched: RefCell::new(Vec::new()),
            prober,
            probes: RefCell::new(Vec::new()),
        }
    }

    /// Sends the recovery probes this worker's prober says are due.
    fn send_probes(&self, host: &dyn StreamHost, now: u64) {
        let Ok(mut prober) = self.prober.try_borrow_mut() else {
            return;
        };
        for p in prober.tick(&self.rt, now) {
            match host.apply(Effect::Call(p.call)) {
                Some(token) => {
                    if let Ok(mut probes) = self.probes.try_borrow_mut() {
                        probes.push((token, p.upstream));
                    }
                }
                None => {
                    prober.answered(&self.rt, p.upstream, ProbeAnswer::NotSent, now);
                }
            }
        }
    }

    /// The answer to a recovery probe, if `token` is one: handed to the prober.
    fn probe_answered(&self, token: u32, answer: Option<&Answer<'_>>) -> bool {
        let probe = self.probes.try_borrow_mut().ok().and_then(|mut p| {
            let i = p.iter().position(|x| x.0 == token)?;
            Some(p.swap_remove(i).1)
        });
        let Some(upstream) = probe else {
            return false;
        };
        let status = answer.and_then(|a| a.headers.get(":status"));
        let answer = match status.and_then(|s| s.parse().ok()) {
            Some(s) => ProbeAnswer::Status(s),
            None => ProbeAnswer::NoAnswer,
        };
        if let Ok(mut prober) = self.prober.try_borrow_mut() {
            prober.answered(&self.rt, upstream, answer, self.rt.host.now_ms());
        }
        true
    }

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

    /// Hands `event` to the exchange and carries out its effects. A callout that cannot be
    /// dispatched is reported back at once, so the exchange can try the next fallback.
    fn drive(
        &self,
        host: &dyn StreamHost,
        context_id: u32,
        cell: &Cell,
        event: Event<'_>,
    ) -> Driven {
        let handle = |event| {
            cell.try_borrow_mut()
                .ok()
                .map(|mut e| e.handle(&self.rt, event))
        };
        let Some(mut step) = handle(event) else {
            return Driven {
                flow: Flow::Continue,
                token: None,
            };
        };
        let mut token = None;
        loop {
            let mut not_sent = false;
            for effect in std::mem::take(&mut step.effects) {
                let is_call = matches!(effect, Effect::Call(_));
                match host.apply(effect) {
                    Some(t) if is_call => token = Some(t),
                    None if is_call => not_sent = true,
                    _ => {}
                }
            }
            match not_sent.then(|| handle(Event::CalloutNotSent)).flatten() {
                Some(next) => step = next,
                None => break,
            }
        }
        self.watch(context_id, cell, None);
        Driven {
            flow: step.flow,
            token,
        }
    }

    /// Drives `event` for an exchange from the root context, on its stream.
    fn drive_from_root(
        &self,
        host: &dyn StreamHost,
        context_id: u32,
        cell: &Cell,
        event: Event<'_>,
    ) {
        if host.enter(context_id) {
            let token = self.drive(host, context_id, cell, event).token;
            self.watch(context_id, cell, token);
        }
    }

    /// The root context's timer: moves the breakers forward, sends the recovery probes that
    /// are due, wakes every exchange that is due, and sends the alert webhooks decided since
    /// the last tick.
    pub fn on_tick(&self, host: &dyn StreamHost) {
        let now = self.rt.host.now_ms();
        self.rt.tick(now);
        self.send_probes(host, now);
        let due: Vec<(u32, Cell)> = match self.watched.try_borrow_mut() {
            Ok(mut watched) => {
                watched.retain(|w| w.exchange.strong_count() > 0);
                let wake = |c: &Cell| c.try_borrow().ok().and_then(|e| e.wake_at(&self.rt.config));
                watched
                    .iter()
                    .filter_map(|w| Some((w.context_id, w.exchange.upgrade()?)))
                    .filter(|(_, c)| wake(c).is_some_and(|t| t <= now))
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        for (id, cell) in due {
            let stream = host.info();
            self.drive_from_root(host, id, &cell, Event::Tick { stream });
        }
        for call in self.rt.take_alerts() {
            let cluster = call.cluster.clone();
            if host.apply(Effect::Call(call)).is_none() {
                warn!("alert webhook to cluster {cluster} could not be sent");
                self.rt.alert_answered(None);
            }
        }
    }

    /// A callout's answer delivered to the root context (`None`: the host has none): the
    /// answer to a recovery probe, to a callout an exchange dispatched from the root, or to
    /// an alert webhook. The
    /// answer to a stream that went away is dropped (its end freed what the callout held).
    pub fn on_callout_answer(&self, host: &dyn StreamHost, token: u32, answer: Option<Answer<'_>>) {
        if self.probe_answered(token, answer.as_ref()) {
            return;
        }
        let owner = self.watched.try_borrow_mut().ok().and_then(|mut w| {
            let i = w.iter().position(|x| x.root_call == Some(token))?;
            Some(w.swap_remove(i))
        });
        match owner {
            Some(w) => {
                if let Some(cell) = w.exchange.upgrade() {
                    let event = Event::CalloutAnswered(answer);
                    self.drive_from_root(host, w.context_id, &cell, event);
                }
            }
            None => {
                let status = answer.and_then(|a| a.headers.get(":status"));
                self.rt.alert_answered(status.and_then(|s| s.parse().ok()));
            }
        }
    }
}

/// Reads the plugin configuration Envoy handed over (`None`: none given) and logs the result:
/// what was configured, or why the configuration is refused (the error, also returned).
pub fn load_config(bytes: Option<&[u8]>) -> Result<Config, String> {
    let loaded = match bytes {
        None => Err("config: no plugin configuration given".to_string()),
        Some(b) => Config::from_json(&String::from_utf8_lossy(b)).map_err(|e| e.to_string()),
    };
    match &loaded {
        Ok(config) => {
            let (u, r) = (config.upstreams().len(), config.routes.len());
            info!("configured {u} upstreams, {r} routes");
        }
        Err(e) => error!("invalid configuration: {e}"),
    }
    loaded
}
