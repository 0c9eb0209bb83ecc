//! Mock AI provider: a small HTTP/1.1 server that stands in for OpenAI, Anthropic and
//! Azure OpenAI behind Envoy in the integration tests, the demo and the benchmark. It fails
//! on command, in every way a real provider fails and the circuit breaker must judge:
//! status errors with the providers' exact bodies (rate limits, quota, context length,
//! content policy), hangs, resets, refused connections, and failures inside 200-OK SSE
//! streams (error events, cuts, stalls, a late first token, malformed events). A separate
//! control port switches the mode at run time and reports what the data port received, so
//! the same binary also serves as the webhook receiver in alerting tests.
//!
//! The CLI, the startup line, the control API and every mode with its parameters are
//! documented in `examples/mock-provider/README.md`.
//!
//! Modules: [`cli`] (command line), [`modes`] (modes and parameters as data), [`state`]
//! (what connections share), [`server`] (sockets and plan execution), [`http`] (request
//! parsing on `httparse`), [`reply`] (response plans and framing), [`respond`] (what each
//! mode answers), [`payloads`] (provider JSON shapes), [`stream`] (SSE streams and their
//! faults), [`control`] (the control API).

mod cli;
mod control;
mod http;
mod modes;
mod payloads;
mod reply;
mod respond;
mod server;
mod state;
mod stream;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;

use state::{warn, Shared};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            warn(format_args!("{msg}"));
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let Some(config) = cli::parse_args(std::env::args().skip(1))? else {
        return Ok(());
    };
    let data = bind(config.listen, "data")?;
    let control = bind(config.control, "control")?;
    let listen_addr = data.local_addr().map_err(|e| e.to_string())?;
    let control_addr = control.local_addr().map_err(|e| e.to_string())?;

    let shared = Arc::new(Shared::new(
        config.name,
        listen_addr,
        config.mode,
        config.validate,
    ));
    let initial = if shared.refusing() {
        drop(data);
        shared.mark_listener(false);
        None
    } else {
        Some(data)
    };
    announce(&shared, listen_addr.port(), control_addr.port())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;

    let acceptor = Arc::clone(&shared);
    thread::Builder::new()
        .name("data-acceptor".into())
        .spawn(move || server::run_data_acceptor(&acceptor, initial))
        .map_err(|e| format!("cannot start the data acceptor: {e}"))?;
    server::run_control_acceptor(&shared, &control);
    Ok(())
}

fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr).map_err(|e| format!("cannot bind the {what} listener on {addr}: {e}"))
}

/// The one line on stdout, once both ports are bound: `{"name":...,"listen":P,"control":P}`.
fn announce(shared: &Shared, listen: u16, control: u16) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(
        out,
        r#"{{"name":{},"listen":{listen},"control":{control}}}"#,
        shared.name_json
    )?;
    out.flush()
}
