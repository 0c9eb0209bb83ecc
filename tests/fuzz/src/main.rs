//! The fuzz driver: one binary for every target, the target named by the first argument.
//!
//! - `fuzz TARGET` under `afl-fuzz` (the instrumented build, `cargo afl build`): AFL++'s
//!   persistent loop feeds the target one input after another.
//! - `fuzz TARGET FILE|DIR...` (either build): replays those inputs once each, printing each
//!   file's name before running it, so a crash names its input. `make fuzz-smoke` replays the
//!   seeds and every kept crash this way before fuzzing.
//! - `fuzz --list`: the target names, one a line (the Makefile reads them from here).
//!
//! A target is a function over bytes that panics when the code under test misbehaves: a
//! panic of the library itself, or a property of its answer that does not hold. AFL++ counts
//! a panic (abort), a run over its time limit (a hang) or over its memory limit as a crash.

mod targets;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(name) = args.first() else {
        eprintln!("usage: fuzz TARGET [FILE|DIR...] | fuzz --list");
        return ExitCode::from(2);
    };
    if name == "--list" {
        for t in targets::ALL {
            println!("{}", t.name);
        }
        return ExitCode::SUCCESS;
    }
    let Some(target) = targets::ALL.iter().find(|t| t.name == name) else {
        let names: Vec<&str> = targets::ALL.iter().map(|t| t.name).collect();
        eprintln!("unknown target {name:?}; targets: {}", names.join(", "));
        return ExitCode::from(2);
    };
    let paths = &args[1..];
    if paths.is_empty() {
        return fuzz(target.run);
    }
    replay(target, paths)
}

#[cfg(fuzzing)]
fn fuzz(run: fn(&[u8])) -> ExitCode {
    // `true`: a panic aborts the process, which is what AFL++ records as a crash.
    afl::fuzz(true, |data: &[u8]| run(data));
    ExitCode::SUCCESS
}

#[cfg(not(fuzzing))]
fn fuzz(run: fn(&[u8])) -> ExitCode {
    // Without AFL++, one input from stdin (what afl-fuzz would have fed).
    let mut data = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut data) {
        eprintln!("stdin: {e}");
        return ExitCode::from(2);
    }
    run(&data);
    ExitCode::SUCCESS
}

fn replay(target: &targets::Target, paths: &[String]) -> ExitCode {
    let mut files = Vec::new();
    for p in paths {
        if let Err(e) = collect(Path::new(p), &mut files) {
            eprintln!("{p}: {e}");
            return ExitCode::from(2);
        }
    }
    files.sort();
    for f in &files {
        let data = match std::fs::read(f) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                return ExitCode::from(2);
            }
        };
        eprintln!("{}: {} ({} bytes)", target.name, f.display(), data.len());
        (target.run)(&data);
    }
    println!("{}: replayed {} inputs", target.name, files.len());
    ExitCode::SUCCESS
}

/// `path` itself, or every file under it (AFL++'s README.txt in a crashes directory aside).
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            collect(&entry?.path(), out)?;
        }
    } else if path.file_name().is_some_and(|n| n != "README.txt") {
        out.push(path.to_path_buf());
    }
    Ok(())
}
