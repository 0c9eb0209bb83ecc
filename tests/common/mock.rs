//! The mock AI provider (`examples/mock-provider`) as a test fixture: started on free ports,
//! driven through its control API (modes, stats, request log), killed on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

use super::client::{http, Response};
use super::process::stop_child;

/// The mock provider (`examples/mock-provider`, its own crate in the workspace, so tests get
/// no `CARGO_BIN_EXE_` for it): `target/release/mock-provider`, which the demo and the bench
/// use too. Built here on first use with `cargo build --release -p mock-provider`, a no-op
/// after `make mock`, so a plain `cargo test` never runs a stale mock.
pub fn mock_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--quiet", "-p", "mock-provider"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build the mock provider: {e}"));
        assert!(
            status.success(),
            "building the mock provider failed: {status}"
        );
        // CARGO_TARGET_TMPDIR is <target dir>/tmp, wherever the target dir is.
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap_or(Path::new("target"));
        target.join("release").join("mock-provider")
    })
}

/// What stays unescaped in a query value: letters, digits and `/-_.~`.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A running `mock-provider` (see `examples/mock-provider/README.md`), killed on drop.
pub struct Mock {
    child: Child,
    name: String,
    port: u16,
    control: u16,
}

impl Mock {
    /// Starts a healthy mock named `name` on free ports.
    pub fn start(name: &str) -> Mock {
        Mock::spawn(name, None)
    }

    /// Starts a mock in the given mode (a mode name or a JSON object, as `--mode` takes).
    pub fn start_with_mode(name: &str, mode: &str) -> Mock {
        Mock::spawn(name, Some(mode))
    }

    fn spawn(name: &str, mode: Option<&str>) -> Mock {
        let mut cmd = Command::new(mock_bin());
        cmd.arg("--name").arg(name);
        if let Some(m) = mode {
            cmd.arg("--mode").arg(m);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", mock_bin().display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let res = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(res);
            // The mock writes nothing else; dropping the pipe here is fine.
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(line)) if !line.trim().is_empty() => line,
            other => {
                stop_child(&mut child, Duration::ZERO);
                panic!("mock-provider {name} did not announce its ports: {other:?}");
            }
        };
        let v: Value = match serde_json::from_str(line.trim()) {
            Ok(v) => v,
            Err(e) => {
                stop_child(&mut child, Duration::ZERO);
                panic!("mock-provider {name}: bad port line {line:?}: {e}");
            }
        };
        let port = |k: &str| v[k].as_u64().and_then(|p| u16::try_from(p).ok());
        match (port("listen"), port("control")) {
            (Some(port), Some(control)) => Mock {
                child,
                name: name.to_string(),
                port,
                control,
            },
            _ => {
                stop_child(&mut child, Duration::ZERO);
                panic!("mock-provider {name}: port line without ports: {line:?}");
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The data port (what Envoy's cluster points at).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT` of the data listener, to call the mock directly.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn control_port(&self) -> u16 {
        self.control
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn control(&self, method: &str, path: &str, body: &[u8]) -> Response {
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("content-type", "application/json")]
        };
        http(
            method,
            &format!("127.0.0.1:{}{path}", self.control),
            headers,
            body,
        )
    }

    /// `POST /mode`, e.g. `{"mode":"error","status":500}`; panics unless the mock answers 200.
    pub fn set_mode(&self, json: &str) {
        let r = self.control("POST", "/mode", json.as_bytes());
        assert_eq!(
            r.status,
            200,
            "mock {}: POST /mode {json} answered {}: {}",
            self.name,
            r.status,
            r.text()
        );
    }

    /// Shorthand for the common modes: `mode("healthy")`, `mode("refuse")`, ...
    pub fn mode(&self, name: &str) {
        self.set_mode(&serde_json::json!({ "mode": name }).to_string());
    }

    /// `GET /mode`.
    pub fn get_mode(&self) -> Value {
        self.control("GET", "/mode", b"").json()
    }

    /// `GET /stats`: `{"name","mode","mode_config","total","by_mode","by_path"}`.
    pub fn stats(&self) -> Value {
        let r = self.control("GET", "/stats", b"");
        assert_eq!(
            r.status,
            200,
            "mock {}: GET /stats: {}",
            self.name,
            r.text()
        );
        r.json()
    }

    /// Every request that reached the data listener since start or the last [`Mock::reset`].
    pub fn hits(&self) -> u64 {
        self.stats()["total"].as_u64().unwrap_or(0)
    }

    /// Requests to exactly this path (query string excluded).
    pub fn hits_on(&self, path: &str) -> u64 {
        self.stats()["by_path"][path].as_u64().unwrap_or(0)
    }

    /// The logged requests (last 200), oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.requests_at(None)
    }

    /// The logged requests to exactly `path`.
    pub fn requests_on(&self, path: &str) -> Vec<Value> {
        self.requests_at(Some(path))
    }

    fn requests_at(&self, path: Option<&str>) -> Vec<Value> {
        let target = match path {
            Some(p) => format!("/requests?path={}", utf8_percent_encode(p, QUERY_VALUE)),
            None => "/requests".to_string(),
        };
        let r = self.control("GET", &target, b"");
        assert_eq!(
            r.status,
            200,
            "mock {}: GET {target}: {}",
            self.name,
            r.text()
        );
        match r.json()["requests"].take() {
            Value::Array(a) => a,
            other => panic!("mock {}: /requests without a list: {other}", self.name),
        }
    }

    /// `POST /settings`, e.g. `{"validate_openai":true}`; panics unless the mock answers 200.
    pub fn settings(&self, json: &str) {
        let r = self.control("POST", "/settings", json.as_bytes());
        assert_eq!(
            r.status,
            200,
            "mock {}: POST /settings {json} answered {}: {}",
            self.name,
            r.status,
            r.text()
        );
    }

    /// `POST /reset`: zero the counters and clear the request log.
    pub fn reset(&self) {
        let r = self.control("POST", "/reset", b"");
        assert_eq!(
            r.status,
            200,
            "mock {}: POST /reset: {}",
            self.name,
            r.text()
        );
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::ZERO);
    }
}
