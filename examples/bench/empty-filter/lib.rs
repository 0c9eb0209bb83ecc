//! The benchmark's floor: a proxy-wasm filter that does nothing. The proxy-wasm Rust SDK with
//! an empty root context and an empty HTTP context, built like the real filter (release
//! profile, then binaryen; see mk/bench.mk). Envoy with this module minus bare Envoy is what
//! merely loading a Rust proxy-wasm filter costs per request: V8 entered for every callback
//! the SDK exports, with no work inside. It only exists for `wasm32-wasip1`.
#![cfg(target_os = "wasi")]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;
impl Context for Root {}
impl RootContext for Root {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Every callback keeps the SDK's default: continue.
struct Stream;
impl Context for Stream {}
impl HttpContext for Stream {}
