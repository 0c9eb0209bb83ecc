//! Every fuzz target, by name. Adding one is one module here and one line in [`ALL`], plus
//! a seed directory `corpus/NAME/` (the runner refuses a target without seeds).

mod config;
mod hints;
mod model_rewrite;
mod sse_framing;
mod state_codec;
mod translate_body;
mod translate_stream;

/// A named fuzz target: `run` panics when the code under test misbehaves on `data`.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// The targets, in the order `make fuzz` runs them.
pub const ALL: &[Target] = &[
    Target {
        name: "config",
        run: config::run,
    },
    Target {
        name: "state_codec",
        run: state_codec::run,
    },
    Target {
        name: "model_rewrite",
        run: model_rewrite::run,
    },
    Target {
        name: "hints",
        run: hints::run,
    },
    Target {
        name: "sse_framing",
        run: sse_framing::run,
    },
    Target {
        name: "translate_body",
        run: translate_body::run,
    },
    Target {
        name: "translate_stream",
        run: translate_stream::run,
    },
];
