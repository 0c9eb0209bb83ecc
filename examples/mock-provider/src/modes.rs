//! The failure modes and their parameters, as data: parsed from the JSON that `POST /mode`
//! and `--mode` take, printed back by `GET /mode`, and resolved per request for the two
//! composite modes (`fail_next`, `down_for`). Keeping this pure lets the parameter scheme be
//! tested without a socket, and gives every typo in a parameter name a 400 instead of a
//! silent default.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// Upper bound of every duration parameter (one day), so a typo cannot park a thread forever.
pub const MAX_DURATION_MS: u64 = 86_400_000;
/// Upper bound of `tokens` and `after_tokens`.
pub const MAX_TOKENS: u64 = 100_000;
/// Upper bound of `large_error`'s `bytes` (64 MiB).
pub const MAX_LARGE_BODY: u64 = 64 * 1024 * 1024;
/// Upper bound of `respond`'s body (8 MiB).
pub const MAX_RESPOND_BODY: usize = 8 * 1024 * 1024;

/// Every mode name a request can be answered with, in the order `GET /stats` lists them.
/// The composite modes (`fail_next`, `down_for`) are not here: their requests count under
/// the mode that actually answered them.
pub const LEAF_NAMES: [&str; 20] = [
    "healthy",
    "error",
    "status",
    "rate_limit",
    "hang",
    "slow",
    "reset",
    "refuse",
    "stream_error",
    "stream_cut",
    "stream_no_marker",
    "stream_no_done",
    "stream_stall",
    "stream_first_token_delay",
    "stream_malformed",
    "quota",
    "context_length",
    "content_policy",
    "large_error",
    "respond",
];

/// Whether usage is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// As the real APIs: always, except OpenAI streams, which carry a usage chunk only when
    /// the request sets `stream_options.include_usage`.
    Auto,
    /// Always, including an OpenAI usage chunk the request did not ask for.
    On,
    /// Never: no `usage` object anywhere (unlike the real APIs).
    Off,
}

/// How a streamed answer is shaped, whatever the mode: accepted by every mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Content chunks (OpenAI `delta.content`, Anthropic `text_delta`) per streamed answer.
    pub tokens: u32,
    /// Pause before each content chunk.
    pub chunk_delay_ms: u64,
    pub usage: Usage,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            tokens: 3,
            chunk_delay_ms: 0,
            usage: Usage::Auto,
        }
    }
}

/// How `stream_cut` ends the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseHow {
    /// An orderly close (FIN).
    Fin,
    /// A TCP reset (RST).
    Rst,
}

/// `quota` on an Anthropic path: the two shapes Anthropic uses for an exhausted balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaVariant {
    /// 402 `billing_error`.
    BillingError,
    /// 400 `invalid_request_error` "Your credit balance is too low ...".
    CreditBalance,
}

/// `content_policy` on an OpenAI path: OpenAI's or Azure OpenAI's rejection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyCode {
    /// OpenAI 400 `content_policy_violation`.
    ContentPolicyViolation,
    /// Azure OpenAI 400 `content_filter` with its `innererror`.
    ContentFilter,
}

/// What a mode does; see the README for each one's exact behaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Healthy,
    Error {
        status: u16,
    },
    Status {
        status: u16,
    },
    RateLimit {
        retry_after: u64,
    },
    Hang {
        hang_ms: u64,
    },
    Slow {
        delay_ms: u64,
    },
    Reset,
    Refuse,
    StreamError {
        after_tokens: u32,
        preamble: bool,
        error_type: Option<String>,
    },
    StreamCut {
        after_tokens: u32,
        close: CloseHow,
    },
    StreamNoMarker {
        after_tokens: u32,
    },
    StreamNoDone,
    StreamStall {
        after_tokens: u32,
        stall_ms: u64,
    },
    StreamFirstTokenDelay {
        delay_ms: u64,
        delay_headers: bool,
    },
    StreamMalformed {
        after_tokens: u32,
    },
    Quota {
        variant: QuotaVariant,
    },
    ContextLength,
    ContentPolicy {
        code: PolicyCode,
    },
    LargeError {
        status: u16,
        bytes: u64,
    },
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    FailNext {
        count: u64,
        with: Box<Mode>,
    },
    DownFor {
        down_ms: u64,
        with: Box<Mode>,
    },
}

/// A mode and the stream shape it answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mode {
    pub kind: Kind,
    pub shape: Shape,
}

/// The healthy answer of a composite mode once its failures are over.
static HEALTHY: Kind = Kind::Healthy;

impl Mode {
    pub fn healthy() -> Mode {
        Mode {
            kind: Kind::Healthy,
            shape: Shape::default(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// Parses `--mode`: a mode name, or a JSON object as `POST /mode` takes.
    pub fn from_cli(value: &str) -> Result<Mode, String> {
        if value.trim_start().starts_with('{') {
            let json: Value = serde_json::from_str(value).map_err(|e| format!("--mode: {e}"))?;
            Mode::from_json(&json)
        } else {
            let mut object = Map::new();
            object.insert("mode".into(), value.into());
            Mode::from_json(&Value::Object(object))
        }
    }

    /// Parses `{"mode": NAME, ...parameters}`, applying defaults; unknown keys are errors.
    pub fn from_json(value: &Value) -> Result<Mode, String> {
        let object = value
            .as_object()
            .ok_or(r#"expected a JSON object such as {"mode":"healthy"}"#)?;
        let mut params = Params::new(object);
        let name = params
            .string("mode")?
            .ok_or(r#"missing string field "mode""#)?;
        let kind = parse_kind(&name, &mut params)?;
        let shape = Shape {
            tokens: params.count("tokens", 3)?,
            chunk_delay_ms: params.duration("chunk_delay_ms", 0)?,
            usage: match params.take("usage") {
                None | Some(Value::Null) => Usage::Auto,
                Some(Value::Bool(true)) => Usage::On,
                Some(Value::Bool(false)) => Usage::Off,
                Some(other) => {
                    return Err(format!(
                        "\"usage\" must be true, false or null, got {other}"
                    ))
                }
            },
        };
        params.finish()?;
        Ok(Mode { kind, shape })
    }

    /// The mode and its parameters as `GET /mode` shows them (stream shape only when it
    /// differs from the default).
    pub fn to_json(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("mode".into(), self.name().into());
        let mut put = |key: &str, value: Value| {
            map.insert(key.into(), value);
        };
        match &self.kind {
            Kind::Healthy
            | Kind::Reset
            | Kind::Refuse
            | Kind::StreamNoDone
            | Kind::ContextLength => {}
            Kind::Error { status } | Kind::Status { status } => put("status", (*status).into()),
            Kind::RateLimit { retry_after } => put("retry_after", (*retry_after).into()),
            Kind::Hang { hang_ms } => put("hang_ms", (*hang_ms).into()),
            Kind::Slow { delay_ms } => put("delay_ms", (*delay_ms).into()),
            Kind::StreamError {
                after_tokens,
                preamble,
                error_type,
            } => {
                put("after_tokens", (*after_tokens).into());
                put("preamble", (*preamble).into());
                put("error_type", error_type.clone().into());
            }
            Kind::StreamCut {
                after_tokens,
                close,
            } => {
                put("after_tokens", (*after_tokens).into());
                let close = match close {
                    CloseHow::Fin => "fin",
                    CloseHow::Rst => "rst",
                };
                put("close", close.into());
            }
            Kind::StreamNoMarker { after_tokens } | Kind::StreamMalformed { after_tokens } => {
                put("after_tokens", (*after_tokens).into());
            }
            Kind::StreamStall {
                after_tokens,
                stall_ms,
            } => {
                put("after_tokens", (*after_tokens).into());
                put("stall_ms", (*stall_ms).into());
            }
            Kind::StreamFirstTokenDelay {
                delay_ms,
                delay_headers,
            } => {
                put("delay_ms", (*delay_ms).into());
                put("delay_headers", (*delay_headers).into());
            }
            Kind::Quota { variant } => {
                let variant = match variant {
                    QuotaVariant::BillingError => "billing_error",
                    QuotaVariant::CreditBalance => "credit_balance",
                };
                put("variant", variant.into());
            }
            Kind::ContentPolicy { code } => {
                let code = match code {
                    PolicyCode::ContentPolicyViolation => "content_policy_violation",
                    PolicyCode::ContentFilter => "content_filter",
                };
                put("code", code.into());
            }
            Kind::LargeError { status, bytes } => {
                put("status", (*status).into());
                put("bytes", (*bytes).into());
            }
            Kind::Respond {
                status,
                headers,
                body,
            } => {
                put("status", (*status).into());
                let headers: Map<String, Value> = headers
                    .iter()
                    .map(|(name, value)| (name.clone(), Value::from(value.as_str())))
                    .collect();
                put("headers", Value::Object(headers));
                put("body", body.as_str().into());
            }
            Kind::FailNext { count, with } => {
                put("count", (*count).into());
                put("with", Value::Object(with.to_json()));
            }
            Kind::DownFor { down_ms, with } => {
                put("down_ms", (*down_ms).into());
                put("with", Value::Object(with.to_json()));
            }
        }
        let defaults = Shape::default();
        if self.shape.tokens != defaults.tokens {
            map.insert("tokens".into(), self.shape.tokens.into());
        }
        if self.shape.chunk_delay_ms != defaults.chunk_delay_ms {
            map.insert("chunk_delay_ms".into(), self.shape.chunk_delay_ms.into());
        }
        match self.shape.usage {
            Usage::Auto => {}
            Usage::On => {
                map.insert("usage".into(), true.into());
            }
            Usage::Off => {
                map.insert("usage".into(), false.into());
            }
        }
        map
    }
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::FailNext { .. } => "fail_next",
            Kind::DownFor { .. } => "down_for",
            leaf => LEAF_NAMES
                .get(leaf.leaf_index())
                .copied()
                .unwrap_or("unknown"),
        }
    }

    /// Index in [`LEAF_NAMES`] (composite modes map past its end).
    pub fn leaf_index(&self) -> usize {
        match self {
            Kind::Healthy => 0,
            Kind::Error { .. } => 1,
            Kind::Status { .. } => 2,
            Kind::RateLimit { .. } => 3,
            Kind::Hang { .. } => 4,
            Kind::Slow { .. } => 5,
            Kind::Reset => 6,
            Kind::Refuse => 7,
            Kind::StreamError { .. } => 8,
            Kind::StreamCut { .. } => 9,
            Kind::StreamNoMarker { .. } => 10,
            Kind::StreamNoDone => 11,
            Kind::StreamStall { .. } => 12,
            Kind::StreamFirstTokenDelay { .. } => 13,
            Kind::StreamMalformed { .. } => 14,
            Kind::Quota { .. } => 15,
            Kind::ContextLength => 16,
            Kind::ContentPolicy { .. } => 17,
            Kind::LargeError { .. } => 18,
            Kind::Respond { .. } => 19,
            Kind::FailNext { .. } | Kind::DownFor { .. } => LEAF_NAMES.len(),
        }
    }
}

/// A mode as installed: when it was set, and how many requests it has answered (for
/// `fail_next`).
#[derive(Debug)]
pub struct Active {
    pub mode: Mode,
    pub since: Instant,
    pub answered: std::sync::atomic::AtomicU64,
}

impl Active {
    pub fn new(mode: Mode, since: Instant) -> Active {
        Active {
            mode,
            since,
            answered: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The mode that answers the next request, counting it for `fail_next`. The stream
    /// shape is the inner mode's while failing and the outer one's once healthy again.
    pub fn next_request(&self, now: Instant) -> (&Kind, Shape) {
        match &self.mode.kind {
            Kind::FailNext { count, with } => {
                let seen = self
                    .answered
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if seen < *count {
                    (&with.kind, with.shape)
                } else {
                    (&HEALTHY, self.mode.shape)
                }
            }
            Kind::DownFor { down_ms, with } => {
                if self.down_until(*down_ms).is_some_and(|end| now < end) {
                    (&with.kind, with.shape)
                } else {
                    (&HEALTHY, self.mode.shape)
                }
            }
            kind => (kind, self.mode.shape),
        }
    }

    /// Whether the data port must be closed at `now`, and until when if that ends by itself.
    pub fn refusing(&self, now: Instant) -> Refusing {
        match &self.mode.kind {
            Kind::Refuse => Refusing::Indefinitely,
            Kind::DownFor { down_ms, with } if with.kind == Kind::Refuse => {
                match self.down_until(*down_ms) {
                    Some(end) if now < end => Refusing::Until(end),
                    _ => Refusing::No,
                }
            }
            _ => Refusing::No,
        }
    }

    fn down_until(&self, down_ms: u64) -> Option<Instant> {
        self.since.checked_add(Duration::from_millis(down_ms))
    }

    /// `GET /mode`: the mode plus, for composite modes, where it stands.
    pub fn to_json(&self, now: Instant) -> Map<String, Value> {
        let mut map = self.mode.to_json();
        match &self.mode.kind {
            Kind::FailNext { count, .. } => {
                let seen = self.answered.load(std::sync::atomic::Ordering::Relaxed);
                map.insert("remaining".into(), count.saturating_sub(seen).into());
            }
            Kind::DownFor { down_ms, .. } => {
                let left = self
                    .down_until(*down_ms)
                    .map(|end| end.saturating_duration_since(now).as_millis())
                    .and_then(|ms| u64::try_from(ms).ok())
                    .unwrap_or(0);
                map.insert("remaining_ms".into(), left.into());
            }
            _ => {}
        }
        map
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusing {
    No,
    Indefinitely,
    Until(Instant),
}

fn parse_kind(name: &str, params: &mut Params<'_>) -> Result<Kind, String> {
    let kind = match name {
        "healthy" => Kind::Healthy,
        "error" => Kind::Error {
            status: params.status("status", 500)?,
        },
        "status" => Kind::Status {
            status: params.status("status", 400)?,
        },
        "rate_limit" => Kind::RateLimit {
            retry_after: params.u64("retry_after", 1, u64::from(u32::MAX))?,
        },
        "hang" => Kind::Hang {
            hang_ms: params.duration("hang_ms", 30_000)?,
        },
        "slow" => Kind::Slow {
            delay_ms: params.duration("delay_ms", 1_000)?,
        },
        "reset" => Kind::Reset,
        "refuse" => Kind::Refuse,
        "stream_error" => Kind::StreamError {
            after_tokens: params.count("after_tokens", 0)?,
            preamble: params.bool("preamble", true)?,
            error_type: match params.string("error_type")? {
                Some(t) if valid_error_type(&t) => Some(t),
                Some(t) => return Err(format!("\"error_type\" must be 1-64 characters of [a-z0-9_], got {t:?}")),
                None => None,
            },
        },
        "stream_cut" => Kind::StreamCut {
            after_tokens: params.count("after_tokens", 0)?,
            close: match params.string("close")?.as_deref() {
                None | Some("fin") => CloseHow::Fin,
                Some("rst") => CloseHow::Rst,
                Some(other) => return Err(format!("\"close\" must be \"fin\" or \"rst\", got {other:?}")),
            },
        },
        "stream_no_marker" => Kind::StreamNoMarker {
            after_tokens: params.count("after_tokens", 0)?,
        },
        "stream_no_done" => Kind::StreamNoDone,
        "stream_stall" => Kind::StreamStall {
            after_tokens: params.count("after_tokens", 0)?,
            stall_ms: params.duration("stall_ms", 30_000)?,
        },
        "stream_first_token_delay" => Kind::StreamFirstTokenDelay {
            delay_ms: params.duration("delay_ms", 5_000)?,
            delay_headers: params.bool("delay_headers", false)?,
        },
        "stream_malformed" => Kind::StreamMalformed {
            after_tokens: params.count("after_tokens", 0)?,
        },
        "quota" => Kind::Quota {
            variant: match params.string("variant")?.as_deref() {
                None | Some("billing_error") => QuotaVariant::BillingError,
                Some("credit_balance") => QuotaVariant::CreditBalance,
                Some(other) => {
                    return Err(format!(
                        "\"variant\" must be \"billing_error\" or \"credit_balance\", got {other:?}"
                    ))
                }
            },
        },
        "context_length" => Kind::ContextLength,
        "content_policy" => Kind::ContentPolicy {
            code: match params.string("code")?.as_deref() {
                None | Some("content_policy_violation") => PolicyCode::ContentPolicyViolation,
                Some("content_filter") => PolicyCode::ContentFilter,
                Some(other) => {
                    return Err(format!(
                        "\"code\" must be \"content_policy_violation\" or \"content_filter\", got {other:?}"
                    ))
                }
            },
        },
        "large_error" => Kind::LargeError {
            status: params.status("status", 500)?,
            bytes: params.u64("bytes", 2 * 1024 * 1024, MAX_LARGE_BODY)?,
        },
        "respond" => Kind::Respond {
            status: params.status("status", 200)?,
            headers: params.headers("headers")?,
            body: match params.string("body")? {
                Some(body) if body.len() > MAX_RESPOND_BODY => {
                    return Err(format!("\"body\" is larger than {MAX_RESPOND_BODY} bytes"))
                }
                Some(body) => body,
                None => String::new(),
            },
        },
        "fail_next" => Kind::FailNext {
            count: params.u64("count", 1, u64::MAX)?,
            with: Box::new(params.inner_mode("with")?),
        },
        "down_for" => Kind::DownFor {
            down_ms: params.duration("down_ms", 10_000)?,
            with: Box::new(params.inner_mode("with")?),
        },
        other => {
            return Err(format!(
                "unknown mode {other:?}; expected one of {}, fail_next, down_for",
                LEAF_NAMES.join(", ")
            ))
        }
    };
    Ok(kind)
}

fn valid_error_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Reads parameters out of a JSON object, remembering which keys were used so that
/// [`Params::finish`] can reject the rest.
struct Params<'a> {
    object: &'a Map<String, Value>,
    used: Vec<&'static str>,
}

impl<'a> Params<'a> {
    fn new(object: &'a Map<String, Value>) -> Self {
        Params {
            object,
            used: Vec::new(),
        }
    }

    fn take(&mut self, key: &'static str) -> Option<&'a Value> {
        self.used.push(key);
        self.object.get(key)
    }

    fn u64(&mut self, key: &'static str, default: u64, max: u64) -> Result<u64, String> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(default),
            Some(value) => value.as_u64().filter(|n| *n <= max).ok_or_else(|| {
                format!("{key:?} must be an integer between 0 and {max}, got {value}")
            }),
        }
    }

    fn duration(&mut self, key: &'static str, default: u64) -> Result<u64, String> {
        self.u64(key, default, MAX_DURATION_MS)
    }

    fn count(&mut self, key: &'static str, default: u32) -> Result<u32, String> {
        let n = self.u64(key, u64::from(default), MAX_TOKENS)?;
        u32::try_from(n).map_err(|_| format!("{key:?} is too large"))
    }

    fn status(&mut self, key: &'static str, default: u16) -> Result<u16, String> {
        let status = self.u64(key, u64::from(default), u64::MAX)?;
        match u16::try_from(status) {
            Ok(s) if (200..=599).contains(&s) && !matches!(s, 204 | 205 | 304) => Ok(s),
            _ => Err(format!(
                "{key:?} must be 200-599 (and not 204, 205 or 304), got {status}"
            )),
        }
    }

    fn bool(&mut self, key: &'static str, default: bool) -> Result<bool, String> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(format!("{key:?} must be true or false, got {other}")),
        }
    }

    fn string(&mut self, key: &'static str) -> Result<Option<String>, String> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("{key:?} must be a string, got {other}")),
        }
    }

    /// `{"name": "value", ...}`: response headers the mock may send as given.
    fn headers(&mut self, key: &'static str) -> Result<Vec<(String, String)>, String> {
        let object = match self.take(key) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Object(object)) => object,
            Some(other) => {
                return Err(format!("{key:?} must be an object of strings, got {other}"))
            }
        };
        let mut headers = Vec::with_capacity(object.len());
        for (name, value) in object {
            let value = value
                .as_str()
                .ok_or_else(|| format!("{key}.{name} must be a string, got {value}"))?;
            let lower = name.to_ascii_lowercase();
            if name.is_empty() || !name.bytes().all(is_token_char) {
                return Err(format!("{key}: invalid header name {name:?}"));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(format!(
                    "{key}.{name}: the value must not contain CR, LF or NUL"
                ));
            }
            if matches!(
                lower.as_str(),
                "content-length" | "transfer-encoding" | "connection"
            ) {
                return Err(format!(
                    "{key}.{name}: the mock sets the message framing itself"
                ));
            }
            headers.push((name.clone(), value.to_owned()));
        }
        Ok(headers)
    }

    /// The failing mode of a composite mode: any mode but a composite one (and, for
    /// `fail_next`, whose count is per request, not `refuse`).
    fn inner_mode(&mut self, key: &'static str) -> Result<Mode, String> {
        let composite = self.object.get("mode").and_then(Value::as_str);
        let inner = match self.take(key) {
            None | Some(Value::Null) => {
                let mut object = Map::new();
                object.insert("mode".into(), "error".into());
                object.insert("status".into(), 500.into());
                Value::Object(object)
            }
            Some(value) => value.clone(),
        };
        let mode = Mode::from_json(&inner).map_err(|e| format!("{key}: {e}"))?;
        match (&mode.kind, composite) {
            (Kind::FailNext { .. } | Kind::DownFor { .. }, _) => {
                Err(format!("{key}: composite modes cannot be nested"))
            }
            (Kind::Refuse, Some("fail_next")) => Err(format!(
                "{key}: fail_next counts requests, and a refused connection carries none; use down_for"
            )),
            _ => Ok(mode),
        }
    }

    fn finish(self) -> Result<(), String> {
        let unknown: Vec<&str> = self
            .object
            .keys()
            .map(String::as_str)
            .filter(|key| *key != "mode" && !self.used.contains(key))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "unknown parameter(s) {} for mode {:?}",
                unknown.join(", "),
                self.object
                    .get("mode")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            ))
        }
    }
}

pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Mode, String> {
        Mode::from_json(&v)
    }

    #[test]
    fn existing_modes_parse_with_their_defaults_and_print_back_unchanged() {
        for (input, printed) in [
            (json!({"mode":"healthy"}), json!({"mode":"healthy"})),
            (
                json!({"mode":"error"}),
                json!({"mode":"error","status":500}),
            ),
            (
                json!({"mode":"status"}),
                json!({"mode":"status","status":400}),
            ),
            (
                json!({"mode":"rate_limit"}),
                json!({"mode":"rate_limit","retry_after":1}),
            ),
            (
                json!({"mode":"hang"}),
                json!({"mode":"hang","hang_ms":30000}),
            ),
            (
                json!({"mode":"slow"}),
                json!({"mode":"slow","delay_ms":1000}),
            ),
            (json!({"mode":"reset"}), json!({"mode":"reset"})),
            (json!({"mode":"refuse"}), json!({"mode":"refuse"})),
            (
                json!({"mode":"error","status":529}),
                json!({"mode":"error","status":529}),
            ),
        ] {
            let mode = parse(input.clone()).unwrap();
            assert_eq!(Value::Object(mode.to_json()), printed, "{input}");
            // What GET /mode prints is accepted by POST /mode and means the same mode.
            assert_eq!(Mode::from_json(&printed).unwrap(), mode);
        }
    }

    #[test]
    fn every_mode_round_trips_through_get_mode() {
        let inputs = [
            json!({"mode":"stream_error","after_tokens":2,"preamble":false,"error_type":"api_error"}),
            json!({"mode":"stream_cut","after_tokens":3,"close":"rst"}),
            json!({"mode":"stream_no_marker","after_tokens":1}),
            json!({"mode":"stream_no_done","tokens":7,"usage":true}),
            json!({"mode":"stream_stall","after_tokens":1,"stall_ms":2000}),
            json!({"mode":"stream_first_token_delay","delay_ms":1500,"delay_headers":true}),
            json!({"mode":"stream_malformed","after_tokens":2,"chunk_delay_ms":5}),
            json!({"mode":"quota","variant":"credit_balance"}),
            json!({"mode":"context_length"}),
            json!({"mode":"content_policy","code":"content_filter"}),
            json!({"mode":"large_error","status":503,"bytes":10}),
            json!({"mode":"respond","status":401,"headers":{"www-authenticate":"Bearer"},"body":"no"}),
            json!({"mode":"fail_next","count":2,"with":{"mode":"rate_limit","retry_after":3}}),
            json!({"mode":"down_for","down_ms":500,"with":{"mode":"refuse"},"usage":false}),
        ];
        for input in inputs {
            let mode = parse(input.clone()).unwrap();
            let printed = Value::Object(mode.to_json());
            assert_eq!(
                Mode::from_json(&printed).unwrap(),
                mode,
                "{input} -> {printed}"
            );
            assert_eq!(printed["mode"], input["mode"]);
        }
    }

    #[test]
    fn cli_takes_a_bare_name_or_a_json_object() {
        assert_eq!(Mode::from_cli("healthy").unwrap(), Mode::healthy());
        let m = Mode::from_cli(r#"{"mode":"error","status":503}"#).unwrap();
        assert_eq!(m.kind, Kind::Error { status: 503 });
        assert!(Mode::from_cli("nope").unwrap_err().contains("unknown mode"));
    }

    #[test]
    fn typos_and_bad_values_are_rejected_with_the_key_named() {
        let err = parse(json!({"mode":"stream_cut","after_token":3})).unwrap_err();
        assert!(err.contains("after_token"), "{err}");
        let err = parse(json!({"mode":"error","status":204})).unwrap_err();
        assert!(err.contains("status"), "{err}");
        let err = parse(json!({"mode":"hang","hang_ms":-1})).unwrap_err();
        assert!(err.contains("hang_ms"), "{err}");
        let err = parse(json!({"mode":"healthy","tokens":100001})).unwrap_err();
        assert!(err.contains("tokens"), "{err}");
        let err = parse(json!({"mode":"healthy","usage":"yes"})).unwrap_err();
        assert!(err.contains("usage"), "{err}");
        let err = parse(json!({"mode":"stream_cut","close":"slam"})).unwrap_err();
        assert!(err.contains("close"), "{err}");
        let err = parse(json!({"mode":"respond","headers":{"content-length":"3"}})).unwrap_err();
        assert!(err.contains("framing"), "{err}");
        let err = parse(json!({"mode":"respond","headers":{"x-a":"b\r\nc: d"}})).unwrap_err();
        assert!(err.contains("CR"), "{err}");
        let err = parse(json!({"mode":"fail_next","with":{"mode":"refuse"}})).unwrap_err();
        assert!(err.contains("down_for"), "{err}");
        let err = parse(json!({"mode":"down_for","with":{"mode":"fail_next"}})).unwrap_err();
        assert!(err.contains("nested"), "{err}");
        let err =
            parse(json!({"mode":"fail_next","with":{"mode":"error","sttus":500}})).unwrap_err();
        assert!(err.starts_with("with: ") && err.contains("sttus"), "{err}");
        assert!(parse(json!(["healthy"])).is_err());
        assert!(parse(json!({"status":500}))
            .unwrap_err()
            .contains("\"mode\""));
    }

    #[test]
    fn fail_next_fails_exactly_count_requests_then_answers_healthy() {
        let mode = parse(json!({"mode":"fail_next","count":2,"tokens":9,
            "with":{"mode":"rate_limit","retry_after":2}}))
        .unwrap();
        let now = Instant::now();
        let active = Active::new(mode, now);
        let names: Vec<&str> = (0..4).map(|_| active.next_request(now).0.name()).collect();
        assert_eq!(names, ["rate_limit", "rate_limit", "healthy", "healthy"]);
        // The healthy phase answers with the outer mode's stream shape.
        assert_eq!(active.next_request(now).1.tokens, 9);
        assert_eq!(active.to_json(now)["remaining"], 0);
    }

    #[test]
    fn down_for_fails_until_the_deadline_and_reports_what_is_left() {
        let mode = parse(json!({"mode":"down_for","down_ms":1000})).unwrap();
        let start = Instant::now();
        let active = Active::new(mode, start);
        assert_eq!(active.next_request(start).0, &Kind::Error { status: 500 });
        let later = start + Duration::from_millis(999);
        assert_eq!(active.next_request(later).0.name(), "error");
        assert_eq!(active.to_json(later)["remaining_ms"], 1);
        let after = start + Duration::from_millis(1000);
        assert_eq!(active.next_request(after).0.name(), "healthy");
        assert_eq!(active.refusing(start), Refusing::No);
    }

    #[test]
    fn down_for_refuse_closes_the_port_until_the_deadline_only() {
        let mode =
            parse(json!({"mode":"down_for","down_ms":1000,"with":{"mode":"refuse"}})).unwrap();
        let start = Instant::now();
        let active = Active::new(mode, start);
        let end = start + Duration::from_millis(1000);
        assert_eq!(active.refusing(start), Refusing::Until(end));
        assert_eq!(active.refusing(end), Refusing::No);
        let refuse = Active::new(Mode::from_cli("refuse").unwrap(), start);
        assert_eq!(refuse.refusing(end), Refusing::Indefinitely);
    }

    #[test]
    fn stats_names_cover_every_leaf_mode_once() {
        let mut sorted = LEAF_NAMES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), LEAF_NAMES.len());
        for name in LEAF_NAMES {
            let mode = Mode::from_cli(name).unwrap();
            assert_eq!(mode.name(), name);
            assert_eq!(LEAF_NAMES[mode.kind.leaf_index()], name);
        }
    }
}
