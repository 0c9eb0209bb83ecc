//! Provider translation on an exchange's paths: a request served by an upstream that speaks
//! another format than its client (a reroute, a failover callout, a retry) goes out translated
//! and its answer comes back in the client's format.
//!
//! The request: its body is held (as for a model rewrite), translated by
//! [`translate::request`], then given the fallback's `rewrite.model`; `:path` becomes the
//! target format's path unless the rewrite sets one, an Anthropic target gets its
//! `anthropic-version`, and the rewrite's headers are applied after those. A request the
//! target cannot take ([`Refused`]) skips that upstream, never reaching it. The answer: a JSON
//! answer or an error is read whole (bounded by `body_buffer_limit`) and replaced by its
//! translation, a stream is translated chunk by chunk while the judge keeps reading the
//! upstream's own bytes, and a callout's answer is translated before it replaces the held
//! response.

use log::{info, warn};

use super::body::{with_model, NotRewritable};
use super::event::{Body, Effect, Step};
use super::{Exchange, Phase};
use crate::config::{Config, UpstreamId};
use crate::host::Host;
use crate::metrics::TranslationResult;
use crate::runtime::Runtime;
use crate::translate::{self, Api, StreamTranslator};

/// The header that tells the client its request was translated, e.g. `openai->anthropic`.
pub const TRANSLATED_HEADER: &str = "x-ai-cb-translated";

/// Why a request body cannot go to an upstream.
#[derive(Debug, Clone, Copy)]
pub(super) enum Unsendable {
    /// The upstream's format cannot express it: the upstream is skipped.
    Refused,
    /// Its `model` cannot be rewritten (not a JSON object).
    Model(NotRewritable),
}

/// A JSON answer or an error read whole to be translated.
#[derive(Debug)]
pub(super) struct Translating {
    pub upstream: UpstreamId,
    pub status: u16,
}

impl Exchange {
    /// `(client, served)` when a request served by `u` is translated.
    pub(super) fn xlate(&self, cfg: &Config, u: UpstreamId) -> Option<(Api, Api)> {
        let client = self.client.api?;
        let served = cfg.upstream(u).api;
        (client != served).then_some((client, served))
    }

    /// Whether `u`, serving a request for `primary`, needs the request body rewritten: its
    /// `model` (a fallback's rewrite) or its format.
    pub(super) fn needs_body(&self, cfg: &Config, primary: UpstreamId, u: UpstreamId) -> bool {
        (u != primary && cfg.upstream(u).rewrite_model().is_some()) || self.xlate(cfg, u).is_some()
    }

    /// The request headers a translation for `u` sets, before `u`'s rewrite (whose own
    /// `path` wins): the target's path, `anthropic-version` for Anthropic, and
    /// `accept-encoding: identity` (the filter does not decode bodies).
    pub(super) fn translation_headers<'c>(
        &self,
        cfg: &'c Config,
        primary: UpstreamId,
        u: UpstreamId,
    ) -> Vec<(&'static str, &'c str)> {
        let Some((_, served)) = self.xlate(cfg, u) else {
            return Vec::new();
        };
        let target = cfg.upstream(u);
        let mut out = Vec::new();
        let rewrites_path =
            u != primary && target.rewrite.as_ref().is_some_and(|r| r.path.is_some());
        if !rewrites_path {
            out.push((":path", served.path()));
        }
        if served == Api::Anthropic {
            out.push(("anthropic-version", target.anthropic_version.as_str()));
        }
        // The answer is read to be translated: it must come uncompressed.
        out.push(("accept-encoding", "identity"));
        out
    }

    /// The body `u` receives serving a request for `primary`: translated into `u`'s format,
    /// then given `u`'s `rewrite.model` when `u` is a fallback. `None`: the body goes as is.
    pub(super) fn body_for<H: Host>(
        &self,
        rt: &Runtime<H>,
        primary: UpstreamId,
        u: UpstreamId,
        bytes: &[u8],
    ) -> Result<Option<Vec<u8>>, Unsendable> {
        let cfg = &rt.config;
        let target = cfg.upstream(u);
        let translated = match self.xlate(cfg, u) {
            Some((client, served)) => {
                let metrics = rt.host.metrics();
                let t = translate::request(client, &target.target(), bytes).map_err(|r| {
                    metrics.translation(u, TranslationResult::Refused);
                    info!(
                        "{} skipped for this request: it speaks {} and {}",
                        target.name,
                        served.name(),
                        r.reason()
                    );
                    Unsendable::Refused
                })?;
                metrics.translation(u, TranslationResult::Translated);
                self.client.usage_chunk.set(t.usage_chunk);
                if !t.dropped.is_empty() {
                    metrics.translation(u, TranslationResult::Dropped);
                    // Joined by hand: `join` would link its own copy of the joining code.
                    let mut list = String::new();
                    for d in &t.dropped {
                        if !list.is_empty() {
                            list.push_str(", ");
                        }
                        list.push_str(d);
                    }
                    info!(
                        "request to {} translated to {}: dropped {list}",
                        target.name,
                        served.name(),
                    );
                }
                Some(t.body)
            }
            None => None,
        };
        match (u != primary).then(|| target.rewrite_model()).flatten() {
            Some(model) => match with_model(translated.as_deref().unwrap_or(bytes), model) {
                Ok(b) => Ok(Some(b)),
                Err(e) if translated.is_none() => Err(Unsendable::Model(e)),
                Err(_) => Ok(translated),
            },
            None => Ok(translated),
        }
    }

    /// The response header effects for `u`'s answer when it is translated: the note, and
    /// no `content-length` (the body changes length).
    pub(super) fn translated_headers(&self, cfg: &Config, u: UpstreamId) -> Vec<Effect> {
        match self.xlate(cfg, u) {
            Some(pair) => vec![
                Effect::SetResponseHeader(TRANSLATED_HEADER.to_string(), label(pair)),
                Effect::RemoveResponseHeader("content-length".to_string()),
            ],
            None => Vec::new(),
        }
    }

    /// An answer of `u` that goes to the client as it is read: a JSON success or an error
    /// (`status`) is read whole and translated when `u`'s format is not the client's.
    pub(super) fn translate_answer(
        &mut self,
        cfg: &Config,
        u: UpstreamId,
        status: u16,
        json: bool,
        step: &mut Step,
    ) {
        if self.xlate(cfg, u).is_none() || !(json || status >= 400) {
            return;
        }
        if status >= 400 {
            step.effects.push(Effect::SetResponseHeader(
                "content-type".to_string(),
                "application/json".to_string(),
            ));
        }
        self.phase = Phase::Translating(Translating {
            upstream: u,
            status,
        });
    }

    /// A chunk of a JSON answer or error being translated: Envoy buffers it until its end
    /// (up to `body_buffer_limit`, past which it goes untranslated), then it is replaced.
    pub(super) fn on_translated_body<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        len: usize,
        end_of_stream: bool,
        body: &dyn Body,
    ) -> Step {
        let Phase::Translating(t) = &self.phase else {
            return Step::go();
        };
        let (upstream, status) = (t.upstream, t.status);
        if len > rt.config.body_buffer_limit {
            warn!("answer over body_buffer_limit ({len} bytes): passed on untranslated");
            self.phase = Phase::Delivering;
            return Step::go();
        }
        if !end_of_stream {
            return Step::pause();
        }
        self.phase = Phase::Delivering;
        let bytes = body.read(len);
        let Some((client, served)) = self.xlate(&rt.config, upstream) else {
            return Step::go();
        };
        let new = if status >= 400 {
            translate::error(client, served, status, &bytes)
        } else {
            if let Some((input, output)) = super::usage::usage_in_tail(&bytes) {
                rt.host.metrics().tokens(upstream, input, output);
            }
            match translate::response(client, served, &bytes) {
                Some(b) => b,
                None => return Step::go(),
            }
        };
        Step::go().with(Effect::ReplaceResponseBody { len, body: new })
    }
}

impl Exchange {
    /// A read error answer of `u` that goes to the client: translated once whole.
    pub(super) fn pass_read_error<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        u: UpstreamId,
        status: u16,
        len: usize,
        end_of_stream: bool,
        body: &dyn Body,
    ) -> Step {
        if self.xlate(&rt.config, u).is_none() {
            return Step::go();
        }
        self.phase = Phase::Translating(Translating {
            upstream: u,
            status,
        });
        self.on_translated_body(rt, len, end_of_stream, body)
    }
}

/// `openai->anthropic`: the client's format, then the upstream's.
pub(super) fn label((client, served): (Api, Api)) -> String {
    let mut label = String::from(client.name());
    label.push_str("->");
    label.push_str(served.name());
    label
}

/// A whole SSE answer of `served`'s format in `client`'s.
pub(super) fn translate_stream(
    client: Api,
    served: Api,
    usage_chunk: bool,
    bytes: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    if let Some(t) = StreamTranslator::new(client, served) {
        let mut t = t.with_usage_chunk(usage_chunk);
        t.feed(bytes, &mut out);
        t.finish(&mut out);
    }
    out
}
