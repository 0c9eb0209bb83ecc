//! The HTTP context: each proxy-wasm callback becomes an [`Event`] for the stream's
//! [`Stream`] (its exchange), whose effects [`Proxy`] carries out. No decision is made here.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use super::host::{self, Buffer, Map, Proxy, INFO};
use super::ProxyHost;
use crate::driver::{Driver, Stream};
use crate::exchange::{Event, Flow};

pub struct Filter {
    pub driver: Rc<Driver<ProxyHost>>,
    pub stream: Stream,
}

impl Filter {
    fn drive(&mut self, event: Event<'_>) -> Action {
        match self.stream.on_event(&self.driver, &Proxy, event) {
            Flow::Continue => Action::Continue,
            Flow::Pause => Action::Pause,
        }
    }
}

impl Context for Filter {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, _: usize) {
        let (driver, stream) = (&self.driver, &mut self.stream);
        host::with_answer(headers, body, |a| {
            stream.on_callout_answer(driver, &Proxy, token, a)
        });
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
        let (headers, info) = (&Map(MapType::HttpResponseHeaders), &INFO);
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
        self.drive(Event::Done { info: &INFO });
    }
}
