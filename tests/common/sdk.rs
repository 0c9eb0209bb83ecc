//! The official OpenAI and Anthropic Python SDKs as clients: runs tests/clients/llm_client.py
//! with the project venv's Python (`make sdk` installs the pinned SDKs there) and returns
//! what the SDK reported, as JSON.

use std::time::Duration;

use serde_json::Value;

use super::process::run_captured;

/// Runs one SDK request described by `spec` (see the script's docstring), with a deadline.
pub fn sdk_request(spec: &Value, deadline: Duration) -> Value {
    let root = env!("CARGO_MANIFEST_DIR");
    let python = format!("{root}/.venv/bin/python");
    let script = format!("{root}/tests/clients/llm_client.py");
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(&script).arg(spec.to_string());
    let (_, out) = run_captured(cmd, deadline);
    let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!("the SDK client printed no JSON ({e}; is `make sdk` done?): {out}")
    })
}
