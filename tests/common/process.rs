//! Child processes and temp dirs: the one place the harness starts, stops and cleans up.
//!
//! Every child is stopped by its own PID (never by name), also when a test panics, and every
//! temp dir is removed on drop unless `AI_CB_KEEP_TMP` is set.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A process-unique, run-unique name for temp dirs: `ai-cb-{kind}-{pid}-{n}-{nanos}`.
pub fn unique_tag(kind: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("ai-cb-{kind}-{}-{n}-{nanos:08x}", std::process::id())
}

/// A fresh directory under the system temp dir, removed on drop (kept when the
/// `AI_CB_KEEP_TMP` environment variable is set).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(kind: &str) -> TempDir {
        let dir = std::env::temp_dir().join(unique_tag(kind));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `path/name`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `path/name` atomically (a temp file renamed over it), so a watcher of the
    /// directory never sees it half-written; returns its path.
    pub fn write_atomic(&self, name: &str, contents: &str) -> PathBuf {
        let target = self.join(name);
        let tmp = self.join(&format!(".{name}.tmp"));
        fs::write(&tmp, contents).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
        fs::rename(&tmp, &target)
            .unwrap_or_else(|e| panic!("renaming to {}: {e}", target.display()));
        target
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("AI_CB_KEEP_TMP").is_none() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// Stops a child by PID: SIGTERM, up to `grace` to exit, then SIGKILL; always reaps it.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if !grace.is_zero() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `cmd` to completion with stdout and stderr captured (through files, so a chatty child
/// never blocks on a full pipe); kills it after `timeout`. Returns `(exited with 0, stdout
/// followed by stderr)`; a timeout counts as a failure and says so in the output.
pub fn run_captured(mut cmd: Command, timeout: Duration) -> (bool, String) {
    let tmp = TempDir::new("run");
    let (out, err) = (tmp.join("stdout"), tmp.join("stderr"));
    let create = |p: &Path| fs::File::create(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(create(&out))
        .stderr(create(&err))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if Instant::now() > deadline {
            stop_child(&mut child, Duration::ZERO);
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let mut log = fs::read_to_string(&out).unwrap_or_default();
    log.push_str(&fs::read_to_string(&err).unwrap_or_default());
    if status.is_none() {
        log.push_str(&format!("\n(killed after {timeout:?})"));
    }
    (status.is_some_and(|s| s.success()), log)
}

/// The last `lines` lines of `s`.
pub fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}
