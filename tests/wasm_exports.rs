#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `src/adapter/exports.txt`, the callback exports a trimmed module keeps (mk/wasm-post.sh,
//! binaryen's wasm-metadce; the benchmark's `exports_kept` cases, or `make build
//! WASM_EXPORTS=src/adapter/exports.txt`), has every callback the adapter implements, and names
//! only exports the release module has.
//!
//! Envoy enters the V8 VM for each callback a module exports, on every stream, so a trimmed
//! module drops the ones nothing implements. A callback the adapter implements but the list
//! leaves out would silently never be called; these tests name it. The adapter's trait impls
//! are read with `syn`, the module's exports with `wasmparser`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const RELEASE_WASM: &str = "target/wasm32-wasip1/release/ai_circuit_breaker.wasm";

/// Exports the module needs whatever callbacks it implements: its memory, the WASI reactor's
/// start-up, the ABI version Envoy reads, the allocator the host hands data through, and the
/// SDK's bookkeeping (each context is created in on_context_create and freed in on_delete).
const ALWAYS: [&str; 6] = [
    "memory",
    "_initialize",
    "proxy_abi_version_0_2_1",
    "proxy_on_memory_allocate",
    "proxy_on_context_create",
    "proxy_on_delete",
];

/// The proxy-wasm 0.2.5 SDK's trait methods (Context, RootContext, HttpContext,
/// StreamContext) and the exports through which the host reaches them (its dispatcher.rs).
const SDK_CALLBACKS: &[(&str, &[&str])] = &[
    ("on_http_call_response", &["proxy_on_http_call_response"]),
    (
        "on_grpc_call_response",
        &["proxy_on_grpc_receive", "proxy_on_grpc_close"],
    ),
    (
        "on_grpc_stream_initial_metadata",
        &["proxy_on_grpc_receive_initial_metadata"],
    ),
    ("on_grpc_stream_message", &["proxy_on_grpc_receive"]),
    (
        "on_grpc_stream_trailing_metadata",
        &["proxy_on_grpc_receive_trailing_metadata"],
    ),
    ("on_grpc_stream_close", &["proxy_on_grpc_close"]),
    ("on_foreign_function", &["proxy_on_foreign_function"]),
    ("on_done", &["proxy_on_done"]),
    ("on_vm_start", &["proxy_on_vm_start"]),
    ("on_configure", &["proxy_on_configure"]),
    ("on_tick", &["proxy_on_tick"]),
    ("on_queue_ready", &["proxy_on_queue_ready"]),
    ("on_log", &["proxy_on_log"]),
    ("create_http_context", &["proxy_on_context_create"]),
    ("create_stream_context", &["proxy_on_context_create"]),
    ("on_new_connection", &["proxy_on_new_connection"]),
    ("on_downstream_data", &["proxy_on_downstream_data"]),
    (
        "on_downstream_close",
        &["proxy_on_downstream_connection_close"],
    ),
    ("on_upstream_data", &["proxy_on_upstream_data"]),
    ("on_upstream_close", &["proxy_on_upstream_connection_close"]),
    ("on_http_request_headers", &["proxy_on_request_headers"]),
    ("on_http_request_body", &["proxy_on_request_body"]),
    ("on_http_request_trailers", &["proxy_on_request_trailers"]),
    ("on_http_response_headers", &["proxy_on_response_headers"]),
    ("on_http_response_body", &["proxy_on_response_body"]),
    ("on_http_response_trailers", &["proxy_on_response_trailers"]),
];

const SDK_TRAITS: [&str; 4] = ["Context", "RootContext", "HttpContext", "StreamContext"];

/// The names in exports.txt (one per line, `#` comments).
fn kept_exports() -> BTreeSet<String> {
    let text = fs::read_to_string(Path::new(ROOT).join("src/adapter/exports.txt")).unwrap();
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// (file, type, method) for every method of an SDK trait implemented in src/adapter/.
fn adapter_callbacks() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let dir = Path::new(ROOT).join("src/adapter");
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let file = syn::parse_file(&fs::read_to_string(&path).unwrap()).unwrap();
        for item in file.items {
            let syn::Item::Impl(imp) = item else { continue };
            let Some((_, trait_path, _)) = &imp.trait_ else {
                continue;
            };
            let trait_name = trait_path.segments.last().unwrap().ident.to_string();
            if !SDK_TRAITS.contains(&trait_name.as_str()) {
                continue;
            }
            let self_ty = match &*imp.self_ty {
                syn::Type::Path(p) => p.path.segments.last().unwrap().ident.to_string(),
                _ => "?".to_owned(),
            };
            for it in &imp.items {
                if let syn::ImplItem::Fn(f) = it {
                    out.push((
                        path.file_name().unwrap().to_string_lossy().into_owned(),
                        format!("{trait_name} for {self_ty}"),
                        f.sig.ident.to_string(),
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn every_callback_the_adapter_implements_is_kept() {
    let kept = kept_exports();
    let callbacks = adapter_callbacks();
    // The adapter's root and HTTP contexts are found at all (the scan would pass vacuously).
    for m in [
        "on_configure",
        "create_http_context",
        "on_http_request_headers",
    ] {
        assert!(
            callbacks.iter().any(|(_, _, name)| name == m),
            "no `fn {m}` found in an SDK trait impl in src/adapter/: {callbacks:?}"
        );
    }
    for (file, imp, method) in &callbacks {
        if method == "get_type" {
            continue; // asked by the SDK itself, not a callback of the host
        }
        let Some((_, exports)) = SDK_CALLBACKS.iter().find(|(m, _)| m == method) else {
            panic!(
                "src/adapter/{file}: `impl {imp}` implements `{method}`, which this test does not \
                 know: add it to SDK_CALLBACKS with the export the host calls it through"
            );
        };
        for export in *exports {
            assert!(
                kept.contains(*export),
                "src/adapter/{file}: `impl {imp}` implements `{method}`, but \
                 src/adapter/exports.txt does not keep `{export}`: `make build` removes it and \
                 Envoy would never call `{method}`"
            );
        }
    }
}

#[test]
fn the_sdk_bookkeeping_exports_are_kept() {
    let kept = kept_exports();
    for export in ALWAYS {
        assert!(
            kept.contains(export),
            "src/adapter/exports.txt must keep `{export}`"
        );
    }
}

/// The export names of the release module `make build` wrote.
fn release_exports() -> BTreeSet<String> {
    let path = Path::new(ROOT).join(RELEASE_WASM);
    let bytes =
        fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run `make build`", path.display()));
    let mut exports = BTreeSet::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::ExportSection(section) = payload.unwrap() {
            for export in section {
                exports.insert(export.unwrap().name.to_owned());
            }
        }
    }
    exports
}

#[test]
fn every_kept_export_is_one_the_release_module_has() {
    // A name the module lacks is a typo or an SDK change (say, a new ABI version marker): a
    // trimmed module would lack it too, and Envoy would not load it or never call it.
    let exports = release_exports();
    let unknown: Vec<_> = kept_exports()
        .into_iter()
        .filter(|k| !exports.contains(k))
        .collect();
    assert!(
        unknown.is_empty(),
        "src/adapter/exports.txt lists {unknown:?}, which {RELEASE_WASM} does not export \
         (it has {exports:?})"
    );
}

/// The size budget of the release module (README, "Development"): 400 KiB.
const WASM_BUDGET_BYTES: u64 = 400 * 1024;

#[test]
fn the_release_module_fits_the_400_kib_budget() {
    let path = Path::new(ROOT).join(RELEASE_WASM);
    let size = fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make build`", path.display()))
        .len();
    assert!(
        size <= WASM_BUDGET_BYTES,
        "{RELEASE_WASM} is {size} bytes, over the {WASM_BUDGET_BYTES}-byte budget by {}",
        size - WASM_BUDGET_BYTES
    );
}
