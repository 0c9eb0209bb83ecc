//! Sockets: the two acceptors (the data port, closed and re-bound for `refuse`, and the
//! control port), one thread per connection with keep-alive, and the executor that plays a
//! response plan on the socket: writes, pauses, stalls with the connection open, an
//! orderly close, or a TCP reset (SO_LINGER 0 through `socket2`).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::control;
use crate::http::{ReadError, Request, RequestReader};
use crate::reply::{Reply, Step};
use crate::respond::{self, Ctx};
use crate::state::{warn, Shared};

const THREAD_STACK: usize = 256 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
const JSON: &str = "application/json";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Data,
    Control,
}

/// Accepts data connections; while the mode refuses, the port is closed, then bound again.
pub fn run_data_acceptor(shared: &Arc<Shared>, mut listener: Option<TcpListener>) {
    loop {
        if let Some(open) = listener.take() {
            accept_until_refused(shared, &open);
        } // the listening socket is closed here
        shared.mark_listener(false);
        shared.wait_while_refused();
        listener = Some(shared.rebind());
    }
}

fn accept_until_refused(shared: &Arc<Shared>, listener: &TcpListener) {
    for incoming in listener.incoming() {
        let refused = shared.refusing();
        match incoming {
            Ok(_) if refused => return,
            Ok(stream) => spawn_connection(shared, stream, Side::Data),
            Err(_) if refused => return,
            Err(e) => accept_failed(&e),
        }
    }
}

pub fn run_control_acceptor(shared: &Arc<Shared>, listener: &TcpListener) {
    for incoming in listener.incoming() {
        match incoming {
            Ok(stream) => spawn_connection(shared, stream, Side::Control),
            Err(e) => accept_failed(&e),
        }
    }
}

fn accept_failed(e: &io::Error) {
    if e.kind() != io::ErrorKind::ConnectionAborted {
        warn(format_args!("accept failed: {e}"));
        thread::sleep(Duration::from_millis(10));
    }
}

fn spawn_connection(shared: &Arc<Shared>, stream: TcpStream, side: Side) {
    let shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let _ = stream.set_nodelay(true);
            match side {
                Side::Data => serve_data_connection(&shared, stream),
                Side::Control => {
                    let _ = serve(&shared, &stream, Side::Control);
                }
            }
        });
    if let Err(e) = spawned {
        warn(format_args!("cannot spawn a connection thread: {e}"));
    }
}

fn serve_data_connection(shared: &Shared, stream: TcpStream) {
    let registration = shared.register(&stream);
    // Registered after the port closed and the registry was drained: close right away.
    if !shared.refusing() {
        let _ = serve(shared, &stream, Side::Data);
    }
    // The clone goes first, so that dropping `stream` really closes the socket (and sends
    // the RST that a `Step::Rst` armed).
    drop(registration);
    drop(stream);
}

/// The request loop of one keep-alive connection.
fn serve(shared: &Shared, stream: &TcpStream, side: Side) -> io::Result<()> {
    let mut reader = RequestReader::new(stream);
    let mut reply = Reply::default();
    loop {
        let request = match reader.read_request(|| send(stream, CONTINUE)) {
            Ok(request) => request,
            Err(ReadError::Closed) => return Ok(()),
            Err(ReadError::Io(e)) => return Err(e),
            Err(error) => return reject(shared, stream, &error, &mut reply),
        };
        reply.clear();
        match side {
            Side::Data => {
                let now = Instant::now();
                let active = shared.active();
                if active.refusing(now) != crate::modes::Refusing::No {
                    // Read while the port was closing: dropped uncounted.
                    return Ok(());
                }
                let (kind, shape) = active.next_request(now);
                let ctx = Ctx {
                    name: &shared.name,
                    name_json: &shared.name_json,
                    id: shared.next_id(),
                    created: unix_now(),
                    validate: shared.validate(),
                    validate_openai: shared.validate_openai(),
                };
                let rejected = respond::respond(&ctx, kind, shape, &request, &mut reply);
                shared.record(request, kind, rejected);
            }
            Side::Control => answer_control(shared, &request, &mut reply),
        }
        if !execute(stream, &reply)? {
            return Ok(());
        }
    }
}

fn answer_control(shared: &Shared, request: &Request, reply: &mut Reply) {
    let (status, body) = control::handle(shared, request);
    let body = serde_json::to_vec(&body).unwrap_or_default();
    reply.head(status, JSON, &shared.name);
    reply.body(&body, request.persist());
}

fn send(stream: &TcpStream, bytes: &[u8]) -> io::Result<()> {
    let mut writer = stream;
    writer.write_all(bytes)
}

/// Plays a response plan; returns whether the connection stays open.
fn execute(stream: &TcpStream, reply: &Reply) -> io::Result<bool> {
    let mut start = 0;
    for step in &reply.steps {
        match *step {
            Step::Flush(end) => {
                send(stream, reply.bytes.get(start..end).unwrap_or_default())?;
                start = end;
            }
            Step::Sleep(duration) => thread::sleep(duration),
            Step::Stall(duration) => {
                if !hold(stream, duration) {
                    return Ok(false);
                }
            }
            Step::Close => {
                let _ = stream.shutdown(Shutdown::Both);
                return Ok(false);
            }
            Step::Rst => {
                // Closing a socket with a zero linger time sends an RST instead of a FIN.
                let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
                return Ok(false);
            }
        }
    }
    match reply.bytes.get(start..) {
        Some(rest) if !rest.is_empty() => send(stream, rest)?,
        _ => {}
    }
    Ok(reply.keep_alive)
}

/// Keeps the connection open, discarding input, until `duration` passes (`true`) or the
/// peer closes it (`false`).
fn hold(stream: &TcpStream, duration: Duration) -> bool {
    let deadline = Instant::now() + duration;
    let mut scratch = [0u8; 1024];
    let mut reader = stream;
    let open = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break true;
        }
        if stream.set_read_timeout(Some(left)).is_err() {
            break false;
        }
        match reader.read(&mut scratch) {
            Ok(0) => break false,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break false,
        }
    };
    open && stream.set_read_timeout(None).is_ok()
}

/// Answers an unparseable request and closes the connection.
fn reject(
    shared: &Shared,
    stream: &TcpStream,
    error: &ReadError,
    reply: &mut Reply,
) -> io::Result<()> {
    let Some((status, message)) = error.status() else {
        return Ok(());
    };
    let body = format!(
        r#"{{"error":{{"message":"bad request: {message}","type":"invalid_request_error"}}}}"#
    );
    reply.clear();
    reply.head(status, JSON, &shared.name);
    reply.body(body.as_bytes(), crate::http::Persist::Close);
    execute(stream, reply).map(|_| ())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
