// Counts what one success-path request costs a proxy-wasm module in VM entries and host calls,
// under a minimal proxy-wasm host in Node (no Envoy), with the callbacks in Envoy's order:
//
//   node examples/bench/hostcalls.mjs MODULE.wasm 'FILTER CONFIG JSON' [REQUESTS]
//
// prints JSON: callbacks entered and host calls per request, by name, plus which headers,
// buffers and metrics the host calls touched. Why: CPU per request measured through Envoy says
// how much a module costs, not where; each VM entry and host call crosses V8's boundary, so
// their counts are the first place to look when two modules differ (make bench-before-after
// runs this on both modules it compares). It measures no time: the counts are exact and the
// same on every run.
//
// The host: the request is the benchmark's chat completion POST on /v1/chat/completions, the
// response a 200 chat completion with usage (examples/bench/harness/envoy_configs.py); headers,
// bodies and shared data (with CAS) behave like Envoy's; properties are absent; every export a
// module lacks is skipped, as Envoy skips it. 50 requests warm the module before counting.
import fs from "fs";

const [, , wasmPath, configJson, nArg = "1000"] = process.argv;
if (!wasmPath || !configJson) {
  console.error("usage: node hostcalls.mjs MODULE.wasm 'FILTER CONFIG JSON' [REQUESTS]");
  process.exit(2);
}
const N = Number(nArg);
const enc = new TextEncoder();
const dec = new TextDecoder();
const OK = 0, NOT_FOUND = 1, CAS_MISMATCH = 6;

let inst;
const u8 = () => new Uint8Array(inst.exports.memory.buffer);
const dv = () => new DataView(inst.exports.memory.buffer);
const str = (p, l) => dec.decode(u8().subarray(p, p + l));

// What a request touched: "host_calls" by import, "entries" by callback, "detail" (headers,
// buffers, metrics by name). Counted only for the measured requests.
const counts = { host_calls: {}, entries: {}, detail: {} };
let counting = false;
const bump = (group, name) => {
  if (counting) counts[group][name] = (counts[group][name] || 0) + 1;
};

// Hands bytes to the module in memory it allocates (proxy_on_memory_allocate), as Envoy does.
function give(bytes, retPtr, retSize) {
  const p = bytes.length ? inst.exports.proxy_on_memory_allocate(bytes.length) : 0;
  u8().set(bytes, p);
  dv().setUint32(retPtr, p, true);
  dv().setUint32(retSize, bytes.length, true);
  return OK;
}

const REQUEST_BODY = enc.encode(JSON.stringify({
  model: "gpt-4o-mini", messages: [{ role: "user", content: "hello" }] }));
const RESPONSE_BODY = enc.encode(JSON.stringify({
  id: "chatcmpl-bench", object: "chat.completion", created: 1700000000, model: "gpt-4o-mini",
  choices: [{ index: 0, message: { role: "assistant", content: "Hello from bench" },
              finish_reason: "stop" }],
  usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 } }));
// Buffer types of the ABI: 0 request body, 1 response body, 6 VM config, 7 plugin config.
const BUFFERS = { 0: REQUEST_BODY, 1: RESPONSE_BODY, 6: new Uint8Array(), 7: enc.encode(configJson) };
const BUFFER_NAMES = { 0: "request body", 1: "response body", 6: "VM config", 7: "plugin config" };
// Header map types: 0 request headers, 2 response headers (others empty).
const MAP_NAMES = { 0: "request header", 2: "response header" };
let maps;
function freshMaps() {
  maps = {
    0: [[":authority", "127.0.0.1"], [":path", "/v1/chat/completions"], [":method", "POST"],
        [":scheme", "http"], ["user-agent", "wrk"], ["content-type", "application/json"],
        ["content-length", String(REQUEST_BODY.length)], ["x-forwarded-proto", "http"],
        ["x-request-id", "4f1c0d2e-bench"]],
    2: [[":status", "200"], ["content-type", "application/json"],
        ["content-length", String(RESPONSE_BODY.length)],
        ["date", "Tue, 01 Dec 2026 10:00:00 GMT"], ["x-envoy-upstream-service-time", "1"]],
  };
}

function serializePairs(pairs) {
  const keys = pairs.map(([k]) => enc.encode(k));
  const vals = pairs.map(([, v]) => enc.encode(v));
  const size = 4 + 8 * pairs.length + keys.concat(vals).reduce((a, b) => a + b.length + 1, 0);
  const out = new Uint8Array(size);
  const d = new DataView(out.buffer);
  d.setUint32(0, pairs.length, true);
  let o = 4 + 8 * pairs.length;
  pairs.forEach((_, i) => {
    d.setUint32(4 + 8 * i, keys[i].length, true);
    d.setUint32(8 + 8 * i, vals[i].length, true);
    out.set(keys[i], o); o += keys[i].length + 1;
    out.set(vals[i], o); o += vals[i].length + 1;
  });
  return out;
}

const shared = new Map();
const metricNames = {};
let nextId = 1;
const HOST = {
  proxy_log: () => OK,
  proxy_get_current_time_nanoseconds: (p) => {
    dv().setBigUint64(p, BigInt(Date.now()) * 1000000n, true);
    return OK;
  },
  proxy_get_buffer_bytes: (t, start, len, rp, rs) => {
    bump("detail", `read ${BUFFER_NAMES[t] || `buffer ${t}`}`);
    const b = BUFFERS[t];
    if (!b) return NOT_FOUND;
    const s = start >>> 0;    // the SDK asks for usize::MAX bytes: -1 as an i32
    return give(b.subarray(s, s + (len >>> 0)), rp, rs);
  },
  proxy_get_header_map_pairs: (t, rp, rs) => give(serializePairs(maps[t] || []), rp, rs),
  proxy_get_header_map_value: (t, kp, kl, rp, rs) => {
    const k = str(kp, kl);
    bump("detail", `get ${MAP_NAMES[t] || `header map ${t}`} ${k}`);
    const e = (maps[t] || []).find(([a]) => a === k);
    return e ? give(enc.encode(e[1]), rp, rs) : NOT_FOUND;
  },
  proxy_add_header_map_value: (t, kp, kl, vp, vl) => {
    (maps[t] ||= []).push([str(kp, kl), str(vp, vl)]);
    return OK;
  },
  proxy_replace_header_map_value: (t, kp, kl, vp, vl) => {
    const k = str(kp, kl);
    const m = (maps[t] ||= []).filter(([a]) => a !== k);
    m.push([k, str(vp, vl)]);
    maps[t] = m;
    return OK;
  },
  proxy_remove_header_map_value: (t, kp, kl) => {
    const k = str(kp, kl);
    maps[t] = (maps[t] || []).filter(([a]) => a !== k);
    return OK;
  },
  proxy_get_property: () => NOT_FOUND,
  proxy_get_shared_data: (kp, kl, rp, rs, cp) => {
    const e = shared.get(str(kp, kl));
    if (!e) return NOT_FOUND;
    give(e.value, rp, rs);
    dv().setUint32(cp, e.cas, true);
    return OK;
  },
  proxy_set_shared_data: (kp, kl, vp, vl, cas) => {
    const k = str(kp, kl);
    const e = shared.get(k);
    if (cas && e && e.cas !== cas) return CAS_MISMATCH;
    shared.set(k, { value: u8().slice(vp, vp + vl), cas: nextId++ });
    return OK;
  },
  proxy_define_metric: (t, np, nl, rp) => {
    const id = nextId++;
    metricNames[id] = str(np, nl);
    dv().setUint32(rp, id, true);
    return OK;
  },
  proxy_increment_metric: (id) => { bump("detail", `metric ${metricNames[id]}`); return OK; },
  proxy_record_metric: (id) => { bump("detail", `metric ${metricNames[id]}`); return OK; },
};
const WASI = {
  random_get: (p, l) => { u8().fill(7, p, p + l); return OK; },
  environ_sizes_get: (a, b) => { dv().setUint32(a, 0, true); dv().setUint32(b, 0, true); return OK; },
  clock_time_get: (_id, _prec, p) => {
    dv().setBigUint64(p, BigInt(Date.now()) * 1000000n, true);
    return OK;
  },
  proc_exit: (code) => { throw new Error(`proc_exit(${code})`); },
};
// Every import counts as a host call; those not modelled above answer OK.
const counted = (table) => new Proxy({}, {
  get: (_, name) => (...args) => {
    bump("host_calls", name);
    return table[name] ? table[name](...args) : OK;
  },
});

inst = new WebAssembly.Instance(new WebAssembly.Module(fs.readFileSync(wasmPath)),
  { env: counted(HOST), wasi_snapshot_preview1: counted(WASI) });
const ex = inst.exports;
const call = (name, ...args) => {
  if (typeof ex[name] !== "function") return undefined;
  bump("entries", name);
  return ex[name](...args);
};

if (typeof ex._initialize === "function") ex._initialize();
freshMaps();
call("proxy_on_context_create", 1, 0);
call("proxy_on_vm_start", 1, 0);
if (!call("proxy_on_configure", 1, BUFFERS[7].length)) {
  console.error(`hostcalls: ${wasmPath} refused the config`);
  process.exit(1);
}

function request(id) {
  freshMaps();
  call("proxy_on_context_create", id, 1);
  call("proxy_on_request_headers", id, maps[0].length, 0);
  call("proxy_on_request_body", id, REQUEST_BODY.length, 1);
  call("proxy_on_response_headers", id, maps[2].length, 0);
  call("proxy_on_response_body", id, RESPONSE_BODY.length, 1);
  call("proxy_on_done", id);
  call("proxy_on_log", id);
  call("proxy_on_delete", id);
}

for (let i = 0; i < 50; i++) request(2 + i);
const routed = (maps[0].find(([k]) => k === "x-ai-cb-upstream") || [])[1] || null;
counting = true;
for (let i = 0; i < N; i++) request(100 + i);
counting = false;

const perRequest = (o) => Object.fromEntries(Object.entries(o).sort()
  .map(([k, v]) => [k, Number((v / N).toFixed(2))]));
const total = (o) => Number((Object.values(o).reduce((a, b) => a + b, 0) / N).toFixed(2));
console.log(JSON.stringify({
  module: wasmPath, bytes: fs.statSync(wasmPath).size, requests: N, routed_to: routed,
  callback_exports: Object.keys(ex).filter((n) => n.startsWith("proxy_on_")).length,
  entries_per_request: total(counts.entries), host_calls_per_request: total(counts.host_calls),
  entries: perRequest(counts.entries), host_calls: perRequest(counts.host_calls),
  detail: perRequest(counts.detail),
}, null, 1));
