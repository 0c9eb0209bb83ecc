"""The Envoy bootstraps a benchmark runs, built as dicts (written as JSON by the launcher), and
the filter's own config.

Why a module: every case compares Envoys that differ in one thing only (the filter, its
config, the number of upstreams); building them from the same few functions is what makes
that true. Every listener and the admin bind 127.0.0.1 port 0; the route contract is the
project's: the filter writes `x-ai-cb-upstream`, a `cluster_header` route follows it.
"""

import json

from . import procs

ROUTE_HEADER = "x-ai-cb-upstream"
STATS_TAGS = [{"tag_name": t, "regex": f"({t}=\\.=(.*?);\\.;)"}
              for t in ("upstream", "outcome", "reason", "from", "to", "result")]
CHAT_RESPONSE = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from bench"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}},
    separators=(",", ":"))
ERROR_RESPONSE = json.dumps({"error": {"message": "The server had an error",
                                       "type": "server_error", "code": None}})


def sock(port):
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def cluster(name, port):
    return {"name": name, "type": "STATIC", "connect_timeout": "0.25s",
            "load_assignment": {"cluster_name": name, "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": sock(port)}}]}]}}


def listener(name, routes, http_filters):
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": name, "codec_type": "AUTO",
        "route_config": {"name": name, "virtual_hosts": [
            {"name": name, "domains": ["*"], "routes": routes}]},
        "http_filters": http_filters + [{
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http."
                                      "router.v3.Router"}}],
    }
    return {"name": name, "address": sock(0), "filter_chains": [{"filters": [
        {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}


def wasm_filter(filter_cfg, wasm=None):
    """The filter, loading this run's snapshot of the release module (or `wasm`)."""
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {
            "name": "ai_circuit_breaker", "root_id": "ai_circuit_breaker",
            "allow_on_headers_stop_iteration": True, "failure_policy": "FAIL_OPEN",
            "vm_config": {"vm_id": "ai_circuit_breaker", "runtime": "envoy.wasm.runtime.v8",
                          "code": {"local": {"filename": wasm or procs.wasm_under_test()}}},
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                              "value": json.dumps(filter_cfg)}}}}


def bootstrap(listeners, clusters):
    return {"admin": {"address": sock(0)},
            "stats_config": {"stats_tags": STATS_TAGS},
            "static_resources": {"listeners": listeners,
                                 "clusters": [cluster(n, p) for n, p in clusters]}}


def bare_proxy(clusters, routes=None):
    """Envoy with the router only: the default route goes straight to the first cluster."""
    routes = routes or [{"match": {"prefix": "/"}, "route": {"cluster": clusters[0][0]}}]
    return bootstrap([listener("bench", routes, [])], clusters)


def filter_proxy(clusters, filter_cfg, wasm=None):
    """Envoy with the filter (or another module, `wasm`): the route reads the filter's route
    header (the project's routing contract); a request the filter leaves alone goes to the
    first cluster."""
    routes = [{"match": {"prefix": "/", "headers": [
                  {"name": ROUTE_HEADER, "present_match": True}]},
               "route": {"cluster_header": ROUTE_HEADER}},
              {"match": {"prefix": "/"}, "route": {"cluster": clusters[0][0]}}]
    return bootstrap([listener("bench", routes, [wasm_filter(filter_cfg, wasm)])], clusters)


def upstream_server():
    """The other upstream candidate: Envoy direct_response listeners, `ok` (200 chat
    completion) and `err` (500, an OpenAI server_error)."""
    def direct(status, body):
        return [{"match": {"prefix": "/"},
                 "direct_response": {"status": status, "body": {"inline_string": body}},
                 "response_headers_to_add": [
                     {"header": {"key": "content-type", "value": "application/json"}}]}]
    return bootstrap([listener("ok", direct(200, CHAT_RESPONSE), []),
                      listener("err", direct(500, ERROR_RESPONSE), [])], [])


# ---------------------------------------------------------------------------------------------
# The filter's config
# ---------------------------------------------------------------------------------------------

V1 = [{"match": {"path_prefix": "/v1/"}, "upstream": "openai"}]
FO_OFF = {"enabled": False}
FO_ON = {"enabled": True}


def filter_config(upstreams, routes, policy=None, **extra):
    cfg = {"upstreams": upstreams, "routes": routes}
    if policy:
        cfg["defaults"] = policy
    cfg.update(extra)
    return cfg


def two_upstreams(mode=None, fallback_rewrite=None):
    """openai (primary, falls back to anthropic) and anthropic."""
    primary = {"name": "openai", "fallbacks": ["anthropic"]}
    if mode:
        primary["mode"] = mode
    fallback = {"name": "anthropic"}
    if fallback_rewrite:
        fallback["rewrite"] = fallback_rewrite
    return [primary, fallback]


def outage_filter_config(policy, failover, recovery_probe=None):
    """The outage scenario's filter: two upstreams, `policy`, failover on or off, and the
    primary's `recovery_probe` when given."""
    ups = two_upstreams()
    if recovery_probe:
        ups[0]["recovery_probe"] = recovery_probe
    return filter_config(ups, V1, policy=policy, failover=FO_ON if failover else FO_OFF)


def spread_routes(n):
    """n upstreams u0..u(n-1), each on its own path prefix /u/<i>/: (Envoy routes for bare
    Envoy, filter upstreams, filter routes)."""
    bare = [{"match": {"prefix": f"/u/{i}/"}, "route": {"cluster": f"u{i}"}} for i in range(n)]
    ups = [{"name": f"u{i}"} for i in range(n)]
    routes = [{"match": {"path_prefix": f"/u/{i}/"}, "upstream": f"u{i}"} for i in range(n)]
    return bare, ups, routes
