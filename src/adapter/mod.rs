//! The proxy-wasm adapter: the thin layer between Envoy and the pure core.
//!
//! It only exists for `wasm32-wasip1`. The root context ([`Plugin`]) validates the config,
//! creates the shared state and metric ids, drives time forward on its tick and sends alert
//! webhooks; each HTTP stream gets a [`filter::Filter`].

mod envoy_metrics;
mod filter;
mod host;
mod runtime;

use std::rc::Rc;

use log::{error, info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use crate::config::Config;
use crate::metrics::{AlertResult, MetricsSink};
use filter::Filter;
use runtime::{Runtime, StopIteration};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Plugin::default()) });
}}

/// The root context of one worker's VM.
#[derive(Default)]
struct Plugin {
    rt: Option<Rc<Runtime>>,
    warned_stop_iteration: bool,
}

/// Passes everything through; only used if a stream arrives before a valid configuration.
struct Passthrough;
impl Context for Passthrough {}
impl HttpContext for Passthrough {}

impl Context for Plugin {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        _body: usize,
        _trailers: usize,
    ) {
        let Some(rt) = &self.rt else { return };
        let status = host::call_response_header(":status").and_then(|s| s.parse::<u16>().ok());
        match status {
            Some(s) if (200..300).contains(&s) => rt.sink().alert(AlertResult::Sent),
            other => {
                warn!("alert webhook failed: status {other:?}");
                rt.sink().alert(AlertResult::Failed);
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
        let text = String::from_utf8_lossy(&bytes);
        match Config::from_json(&text) {
            Ok(config) => {
                info!(
                    "configured {} upstreams, {} routes",
                    config.upstreams.len(),
                    config.routes.len()
                );
                host::set_tick_period_ms(config.tick_interval_ms);
                self.rt = Some(Rc::new(Runtime::new(config)));
                true
            }
            Err(e) => {
                error!("invalid configuration: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(rt) = self.rt.clone() else { return };
        let now = host::now_ms();
        rt.tick(now);
        let overdue = rt.take_overdue_pauses(now);
        if !overdue.is_empty() && rt.stop_iteration.get() != StopIteration::Granted {
            rt.stop_iteration.set(StopIteration::Denied);
            if !self.warned_stop_iteration {
                self.warned_stop_iteration = true;
                warn!(
                    "Envoy did not let the filter wait for the request body \
                     (set allow_on_headers_stop_iteration: true in the wasm PluginConfig); \
                     routes that match on \"model\" are skipped and requests are routed on headers alone"
                );
            }
        }
        for id in overdue {
            host::resume_request_of(id);
        }
        if let Some(cfg) = &rt.config.alerting {
            for alert in rt.take_alerts() {
                let mut headers: Vec<(&str, &str)> = vec![
                    (":method", "POST"),
                    (":path", &cfg.path),
                    (":authority", &cfg.authority),
                    ("content-type", "application/json"),
                ];
                headers.extend(cfg.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                if let Err(e) = host::dispatch(
                    &cfg.cluster,
                    &headers,
                    alert.body.as_bytes(),
                    cfg.timeout_ms,
                ) {
                    warn!("alert webhook to cluster {} failed: {e:?}", cfg.cluster);
                    rt.sink().alert(AlertResult::Failed);
                }
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(match &self.rt {
            Some(rt) => Box::new(Filter::new(Rc::clone(rt), context_id)),
            None => Box::new(Passthrough),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
