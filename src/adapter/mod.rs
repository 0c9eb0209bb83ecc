//! The proxy-wasm adapter: the thin layer between Envoy and the pure core.
//!
//! It only exists for `wasm32-wasip1`. The root context ([`Plugin`]) builds the worker's
//! [`Driver`] from the plugin configuration and hands it its ticks and callout answers; each
//! HTTP stream gets a [`filter::Filter`] that hands its callbacks to its [`Stream`]. What they
//! do is decided in the core ([`crate::driver`]).
//!
//! `exports.txt` lists the module exports these callbacks need: a trimmed build keeps only
//! those (a new callback must be added there; `tests/wasm_exports.rs` checks it).

mod filter;
mod host;

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use crate::driver::{load_config, Driver, Stream};
use crate::metrics::StatSink;
use crate::runtime::Runtime;
use filter::Filter;
use host::{EnvoyStats, Proxy, ProxyHost};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Plugin::default()) });
}}

/// The root context of one worker's VM.
#[derive(Default)]
struct Plugin {
    driver: Option<Rc<Driver<ProxyHost>>>,
}

/// Passes everything through; only used if a stream arrives before a valid configuration.
struct Passthrough;
impl Context for Passthrough {}
impl HttpContext for Passthrough {}

impl Context for Plugin {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, _: usize) {
        if let Some(driver) = &self.driver {
            host::with_answer(headers, body, |a| {
                driver.on_callout_answer(&Proxy, token, a)
            });
        }
    }
}

impl RootContext for Plugin {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Ok(config) = load_config(host::plugin_configuration().as_deref()) else {
            return false;
        };
        host::set_tick_period_ms(config.tick_interval_ms);
        let stats = StatSink::define(&config, EnvoyStats);
        let rt = Runtime::new(config, ProxyHost { stats });
        self.driver = Some(Rc::new(Driver::new(rt)));
        true
    }

    fn on_tick(&mut self) {
        if let Some(driver) = &self.driver {
            driver.on_tick(&Proxy);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(match &self.driver {
            Some(driver) => Box::new(Filter {
                driver: Rc::clone(driver),
                stream: Stream::new(context_id),
            }),
            None => Box::new(Passthrough),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
