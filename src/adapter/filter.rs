//! The HTTP context: each proxy-wasm callback becomes an [`Event`] for the stream's
//! [`Exchange`], and each returned [`Effect`] becomes a host call.
//!
//! No decision is made here. The exchange sits behind an `Rc<RefCell<_>>` so the root context
//! can reach it on a tick; the borrow is never held across a host call, so a callback Envoy
//! makes from inside one (a local reply entering the response path) finds it free.

use std::rc::Rc;

use proxy_wasm::hostcalls as hc;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use super::host::{self, Buffer, Map, Properties};
use super::{Cell, Shared};
use crate::exchange::{Answer, Effect, Event, Exchange, Flow};

pub struct Filter {
    shared: Rc<Shared>,
    context_id: u32,
    exchange: Cell,
    /// The callout dispatched from this context, whose answer comes back here.
    call_token: Option<u32>,
}

impl Filter {
    pub fn new(shared: Rc<Shared>, context_id: u32) -> Filter {
        let exchange = Rc::new(std::cell::RefCell::new(Exchange::new()));
        let call_token = None;
        Filter {
            shared,
            context_id,
            exchange,
            call_token,
        }
    }

    fn drive(&mut self, event: Event<'_>) -> Action {
        let driven = drive(&self.shared, self.context_id, &self.exchange, event);
        self.call_token = driven.token.or(self.call_token);
        match driven.flow {
            Flow::Continue => Action::Continue,
            Flow::Pause => Action::Pause,
        }
    }
}

/// What driving one event left behind.
pub struct Driven {
    pub flow: Flow,
    /// The callout dispatched while handling it.
    pub token: Option<u32>,
}

/// Hands `event` to the exchange and carries out its effects. A callout that cannot be
/// dispatched is reported back at once, so the exchange can try the next fallback.
pub fn drive(shared: &Shared, context_id: u32, cell: &Cell, event: Event<'_>) -> Driven {
    let handle = |event| {
        cell.try_borrow_mut()
            .ok()
            .map(|mut e| e.handle(&shared.rt, event))
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
            match effect {
                Effect::SetRequestHeader(n, v) => {
                    host::set_map(MapType::HttpRequestHeaders, &n, Some(&v))
                }
                Effect::RemoveRequestHeader(n) => {
                    host::set_map(MapType::HttpRequestHeaders, &n, None)
                }
                Effect::SetResponseHeader(n, v) => {
                    host::set_map(MapType::HttpResponseHeaders, &n, Some(&v))
                }
                Effect::ClearRequestBody { len } => {
                    let _ = hc::set_buffer(BufferType::HttpRequestBody, 0, len, &[]);
                }
                Effect::ReplaceResponseBody { len, body } => {
                    let _ = hc::set_buffer(BufferType::HttpResponseBody, 0, len, &body);
                }
                Effect::ClearResponseBody { len } => {
                    let _ = hc::set_buffer(BufferType::HttpResponseBody, 0, len, &[]);
                }
                Effect::ReplaceRequestBody { len, body } => {
                    let _ = hc::set_buffer(BufferType::HttpRequestBody, 0, len, &body);
                }
                Effect::Reply(r) => {
                    let headers = r
                        .headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    let _ = hc::send_http_response(u32::from(r.status), headers, Some(&r.body));
                }
                Effect::Call(call) => match host::dispatch(&call) {
                    Some(t) => token = Some(t),
                    None => not_sent = true,
                },
                Effect::ResumeRequest => drop(hc::resume_http_request()),
                Effect::ResumeResponse => drop(hc::resume_http_response()),
            }
        }
        match not_sent.then(|| handle(Event::CalloutNotSent)).flatten() {
            Some(next) => step = next,
            None => break,
        }
    }
    shared.watch(context_id, cell, None);
    Driven {
        flow: step.flow,
        token,
    }
}

/// Delivers the current callout's answer (`headers` = 0: the host has none) to `cell`.
pub fn answer(shared: &Shared, context_id: u32, cell: &Cell, headers: usize, len: usize) -> Driven {
    let (map, body) = (
        Map(MapType::HttpCallResponseHeaders),
        Buffer(BufferType::HttpCallResponseBody),
    );
    let answer = (headers > 0).then_some(Answer {
        headers: &map,
        body: &body,
        body_len: len,
    });
    drive(shared, context_id, cell, Event::CalloutAnswered(answer))
}

impl Context for Filter {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _: usize) {
        if self.call_token.take_if(|t| *t == token).is_some() {
            self.call_token = answer(
                &self.shared,
                self.context_id,
                &self.exchange,
                headers,
                body_size,
            )
            .token;
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let headers = &Map(MapType::HttpRequestHeaders);
        self.drive(Event::RequestHeaders {
            headers,
            end_of_stream,
        })
    }

    fn on_http_request_body(&mut self, len: usize, end_of_stream: bool) -> Action {
        let body = &Buffer(BufferType::HttpRequestBody);
        self.drive(Event::RequestBody {
            len,
            end_of_stream,
            body,
        })
    }

    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let (headers, info) = (&Map(MapType::HttpResponseHeaders), &Properties);
        self.drive(Event::ResponseHeaders {
            headers,
            info,
            end_of_stream,
        })
    }

    fn on_http_response_body(&mut self, len: usize, end_of_stream: bool) -> Action {
        let body = &Buffer(BufferType::HttpResponseBody);
        self.drive(Event::ResponseBody {
            len,
            end_of_stream,
            body,
        })
    }

    fn on_log(&mut self) {
        self.drive(Event::Done { info: &Properties });
    }
}
