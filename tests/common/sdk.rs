//! The official OpenAI and Anthropic Python SDKs as clients: runs tests/clients/llm_client.py
//! (or tests/clients/upload.py, their HTTP stack alone) with the project venv's Python
//! (`make sdk` installs the pinned SDKs there) and returns what the client reported, as JSON.

use std::time::Duration;

use serde_json::Value;

use super::process::run_captured;

/// Runs one SDK request described by `spec` (see the script's docstring), with a deadline.
pub fn sdk_request(spec: &Value, deadline: Duration) -> Value {
    run_client(spec, deadline, '{')
}

/// Runs several SDK requests one after another in one Python process (importing the SDKs
/// takes seconds on a busy machine), returning one result per spec, in order.
pub fn sdk_requests(specs: &[Value], deadline: Duration) -> Vec<Value> {
    let list = Value::Array(specs.to_vec());
    match run_client(&list, deadline, '[') {
        Value::Array(results) if results.len() == specs.len() => results,
        other => panic!("the SDK client answered {other} for {} specs", specs.len()),
    }
}

/// Runs tests/clients/upload.py (httpx2, the SDKs' HTTP stack) with `spec`: one large
/// chat upload or several, with its length or chunked; one result per upload.
pub fn uploads(spec: &Value, deadline: Duration) -> Vec<Value> {
    match run_script("upload.py", spec, deadline, '[') {
        Value::Array(results) => results,
        other => panic!("the upload client answered {other}"),
    }
}

fn run_client(spec: &Value, deadline: Duration, opening: char) -> Value {
    run_script("llm_client.py", spec, deadline, opening)
}

fn run_script(name: &str, spec: &Value, deadline: Duration, opening: char) -> Value {
    let root = env!("CARGO_MANIFEST_DIR");
    let python = format!("{root}/.venv/bin/python");
    let script = format!("{root}/tests/clients/{name}");
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(&script).arg(spec.to_string());
    let (_, out) = run_captured(cmd, deadline);
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with(opening))
        .unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!("the SDK client printed no JSON ({e}; is `make sdk` done?): {out}")
    })
}
