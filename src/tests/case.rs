//! The harness the exchange tests share: a worker over a fake host, one exchange, and
//! helpers that send events and read effects.

use std::cell::Cell;
use std::rc::Rc;

use super::fake::{worker, Bytes, Info, Map, Worker};
use crate::breaker::{StateKind, Ticket};
use crate::exchange::{Answer, Effect, Event, Exchange, Reply, Step};
use crate::host::HttpCall;
use crate::outcome::{FailureReason, Outcome};

pub(crate) const CONFIG: &str = r#"{
    "health_path": "/health",
    "defaults": {"failure_threshold": 2, "recovery_timeout": 10, "recovery_jitter": 0,
                 "success_threshold": 1},
    "upstreams": [
        {"name": "openai", "fallbacks": ["anthropic", "azure"]},
        {"name": "anthropic", "rewrite": {"model": "claude", "headers": {"x-provider": "anthropic"}}},
        {"name": "azure", "cluster": "azure-openai",
         "rewrite": {"path": "/openai/deployments/x/chat/completions", "host": "azure.example"}}
    ],
    "routes": [{"match": {"path_prefix": "/v1/"}, "upstream": "openai"}],
    "failover": {"max_attempts": 2}
}"#;

pub(crate) const MODEL_ROUTES: &str = r#"{
    "defaults": {"failure_threshold": 2},
    "upstreams": [{"name": "openai", "fallbacks": ["anthropic"]},
                  {"name": "anthropic", "rewrite": {"model": "claude", "headers": {"x-provider": "a"}}},
                  {"name": "mini"}],
    "routes": [{"match": {"model": "gpt-4o-mini"}, "upstream": "mini"},
               {"match": {"path_prefix": "/v1/"}, "upstream": "openai"}]
}"#;

pub(crate) const T0: u64 = 1_700_000_000_000;
pub(crate) const CHAT: &[u8] = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

pub(crate) struct Case {
    pub(crate) w: Worker,
    pub(crate) clock: Rc<Cell<u64>>,
    pub(crate) ex: Exchange,
}

impl Case {
    pub(crate) fn new(json: &str) -> Case {
        let (w, clock) = worker(json, T0);
        Case {
            w,
            clock,
            ex: Exchange::new(),
        }
    }

    pub(crate) fn send(&mut self, event: Event<'_>) -> Step {
        self.ex.handle(&self.w.rt, event)
    }

    pub(crate) fn request(&mut self, extra: &[(&str, &str)], end_of_stream: bool) -> Step {
        let mut h = Map::of(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "api.example"),
            ("content-type", "application/json"),
        ]);
        for (k, v) in extra {
            h.0.retain(|(n, _)| n != k);
            h.0.push((k.to_string(), v.to_string()));
        }
        self.send(Event::RequestHeaders {
            headers: &h,
            end_of_stream,
        })
    }

    pub(crate) fn body(&mut self, bytes: &[u8], end_of_stream: bool) -> Step {
        self.send(Event::RequestBody {
            len: bytes.len(),
            end_of_stream,
            body: &Bytes(bytes.to_vec()),
        })
    }

    pub(crate) fn post(&mut self, bytes: &[u8]) -> (Step, Step) {
        let len = bytes.len().to_string();
        let h = self.request(&[("content-length", &len)], false);
        let b = self.body(bytes, true);
        (h, b)
    }

    pub(crate) fn response(&mut self, status: u16, extra: &[(&str, &str)]) -> Step {
        self.response_info(status, extra, Info::default())
    }

    pub(crate) fn response_info(
        &mut self,
        status: u16,
        extra: &[(&str, &str)],
        info: Info,
    ) -> Step {
        let s = status.to_string();
        let mut h = Map::of(&[(":status", &s), ("x-mock", "primary")]);
        h.0.extend(Map::of(extra).0);
        self.send(Event::ResponseHeaders {
            headers: &h,
            info: &info,
            end_of_stream: false,
        })
    }

    /// A tick, with Envoy holding `received` body bytes of the request.
    pub(crate) fn tick(&mut self, received: Option<u64>) -> Step {
        self.send(Event::Tick {
            stream: &Info {
                received,
                ..Info::default()
            },
        })
    }

    pub(crate) fn response_body(&mut self, bytes: &[u8], end_of_stream: bool) -> Step {
        self.send(Event::ResponseBody {
            len: bytes.len(),
            end_of_stream,
            body: &Bytes(bytes.to_vec()),
        })
    }

    pub(crate) fn answer(&mut self, status: u16, body: &[u8]) -> Step {
        let s = status.to_string();
        let h = Map::of(&[
            (":status", &s),
            ("content-type", "application/json"),
            ("content-length", "999"),
        ]);
        let b = Bytes(body.to_vec());
        self.send(Event::CalloutAnswered(Some(Answer {
            headers: &h,
            body: &b,
            body_len: body.len(),
        })))
    }

    pub(crate) fn id(&self, name: &str) -> crate::config::UpstreamId {
        self.w.rt.config.upstream_id(name).expect("configured")
    }

    /// Opens `name`'s breaker with recorded failures.
    pub(crate) fn trip(&self, name: &str) {
        let u = self.id(name);
        for _ in 0..2 {
            self.w.rt.record(
                u,
                Ticket::Counted,
                T0,
                &Outcome::failure(FailureReason::Status5xx),
            );
        }
        assert_eq!(self.state(name), StateKind::Open);
    }

    pub(crate) fn state(&self, name: &str) -> StateKind {
        self.w.rt.snapshot(self.id(name), self.clock.get()).state
    }

    pub(crate) fn count(&self, key: &str) -> u64 {
        self.w.metrics().count(key)
    }
}

pub(crate) fn set_header<'a>(step: &'a Step, name: &str) -> Option<&'a str> {
    step.effects.iter().rev().find_map(|e| match e {
        Effect::SetRequestHeader(n, v) if n == name => Some(v.as_str()),
        _ => None,
    })
}

pub(crate) fn removes(step: &Step, name: &str) -> bool {
    step.effects
        .iter()
        .any(|e| matches!(e, Effect::RemoveRequestHeader(n) if n == name))
}

pub(crate) fn response_header<'a>(step: &'a Step, name: &str) -> Option<&'a str> {
    step.effects.iter().find_map(|e| match e {
        Effect::SetResponseHeader(n, v) if n == name => Some(v.as_str()),
        _ => None,
    })
}

pub(crate) fn reply(step: &Step) -> Option<&Reply> {
    step.effects.iter().find_map(|e| match e {
        Effect::Reply(r) => Some(r),
        _ => None,
    })
}

pub(crate) fn call(step: &Step) -> Option<&HttpCall> {
    step.effects.iter().find_map(|e| match e {
        Effect::Call(c) => Some(c),
        _ => None,
    })
}

pub(crate) fn new_body(step: &Step) -> Option<String> {
    step.effects.iter().find_map(|e| match e {
        Effect::ReplaceRequestBody { body, .. } => String::from_utf8(body.clone()).ok(),
        _ => None,
    })
}

pub(crate) fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
