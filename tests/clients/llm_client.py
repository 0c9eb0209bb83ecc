#!/usr/bin/env python3
"""One request through the official `openai` or `anthropic` Python SDK, reported as JSON.

The Rust integration tests (tests/common/sdk.rs) run it to check what a real client gets
through Envoy and the filter: the answer's text, tool calls and usage, the exception class
it raised, the arrival time of each streamed content piece, and the response headers.

    llm_client.py '{"api": "openai", "base_url": "http://127.0.0.1:10000/v1", "stream": true}'

Spec keys: api (openai | anthropic), base_url, model, stream, include_usage, tools,
max_tokens, timeout (seconds, default 10), prompt, prompt_bytes (a prompt of that many
bytes, e.g. the size of an image: too large for a command line), system (a system prompt: a `system`
message for OpenAI, the top-level `system` for Anthropic). Prints one JSON line and exits 0,
whatever the SDK did (an exception is a result to report, not a failure of this script).

A JSON list of specs runs them one after another in this one process (the SDKs take seconds
to import on a busy machine) and prints a JSON list of the results, in order.
"""

import json
import sys
import time

import anthropic
import openai

TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}


def openai_call(spec, out, started):
    client = openai.OpenAI(base_url=spec["base_url"], api_key="sk-test",
                           max_retries=0, timeout=spec.get("timeout", 10))
    kwargs = {
        "model": spec.get("model", "gpt-4o-mini"),
        "messages": [{"role": "user", "content": spec.get("prompt", "hello")}],
    }
    if spec.get("system"):
        kwargs["messages"].insert(0, {"role": "system", "content": spec["system"]})
    if spec.get("max_tokens"):
        kwargs["max_tokens"] = spec["max_tokens"]
    if spec.get("tools"):
        kwargs["tools"] = [{"type": "function", "function": TOOL}]
    if spec.get("stream"):
        kwargs["stream"] = True
        if spec.get("include_usage"):
            kwargs["stream_options"] = {"include_usage": True}
        raw = client.chat.completions.with_raw_response.create(**kwargs)
        out["headers"] = dict(raw.headers)
        text, calls = [], {}
        for chunk in raw.parse():
            out["model"] = chunk.model
            if chunk.usage:
                out["usage"] = {"input": chunk.usage.prompt_tokens,
                                "output": chunk.usage.completion_tokens}
            for choice in chunk.choices:
                d = choice.delta
                if d.content:
                    text.append(d.content)
                    out["pieces"].append(round(time.monotonic() - started, 4))
                for tc in d.tool_calls or []:
                    c = calls.setdefault(tc.index, {"name": "", "arguments": ""})
                    if tc.function and tc.function.name:
                        c["name"] += tc.function.name
                    if tc.function and tc.function.arguments:
                        c["arguments"] += tc.function.arguments
                if choice.finish_reason:
                    out["finish"] = choice.finish_reason
        out["text"] = "".join(text)
        out["tool_calls"] = [calls[i] for i in sorted(calls)]
    else:
        raw = client.chat.completions.with_raw_response.create(**kwargs)
        out["headers"] = dict(raw.headers)
        r = raw.parse()
        msg = r.choices[0].message
        out["text"] = msg.content or ""
        out["finish"] = r.choices[0].finish_reason
        out["tool_calls"] = [{"name": t.function.name, "arguments": t.function.arguments}
                             for t in (msg.tool_calls or [])]
        if r.usage:
            out["usage"] = {"input": r.usage.prompt_tokens, "output": r.usage.completion_tokens}
        out["model"] = r.model


def anthropic_call(spec, out, started):
    client = anthropic.Anthropic(base_url=spec["base_url"], api_key="sk-ant-test",
                                 max_retries=0, timeout=spec.get("timeout", 10))
    kwargs = {
        "model": spec.get("model", "claude-3-5-sonnet-20241022"),
        "max_tokens": spec.get("max_tokens", 64),
        "messages": [{"role": "user", "content": spec.get("prompt", "hello")}],
    }
    if spec.get("system"):
        kwargs["system"] = spec["system"]
    if spec.get("tools"):
        kwargs["tools"] = [{"name": TOOL["name"], "description": TOOL["description"],
                            "input_schema": TOOL["parameters"]}]
    if spec.get("stream"):
        kwargs["stream"] = True
        raw = client.messages.with_raw_response.create(**kwargs)
        out["headers"] = dict(raw.headers)
        text, calls, usage = [], [], {}
        for ev in raw.parse():
            if ev.type == "message_start":
                usage["input"] = ev.message.usage.input_tokens
                out["model"] = ev.message.model
            elif ev.type == "content_block_start" and ev.content_block.type == "tool_use":
                calls.append({"name": ev.content_block.name, "arguments": ""})
            elif ev.type == "content_block_delta":
                if ev.delta.type == "text_delta":
                    text.append(ev.delta.text)
                    out["pieces"].append(round(time.monotonic() - started, 4))
                elif ev.delta.type == "input_json_delta" and calls:
                    calls[-1]["arguments"] += ev.delta.partial_json
            elif ev.type == "message_delta":
                out["finish"] = ev.delta.stop_reason
                usage["output"] = ev.usage.output_tokens
                # message_delta may carry the input count too (a translated OpenAI stream
                # learns it only at the end).
                if getattr(ev.usage, "input_tokens", None):
                    usage["input"] = ev.usage.input_tokens
        out["text"] = "".join(text)
        out["tool_calls"] = calls
        if usage:
            out["usage"] = usage
    else:
        raw = client.messages.with_raw_response.create(**kwargs)
        out["headers"] = dict(raw.headers)
        r = raw.parse()
        out["text"] = "".join(b.text for b in r.content if b.type == "text")
        out["tool_calls"] = [{"name": b.name, "arguments": json.dumps(b.input)}
                             for b in r.content if b.type == "tool_use"]
        out["finish"] = r.stop_reason
        out["usage"] = {"input": r.usage.input_tokens, "output": r.usage.output_tokens}
        out["model"] = r.model


def run(spec):
    if spec.get("prompt_bytes"):
        spec["prompt"] = "A" * spec["prompt_bytes"]
    out = {"ok": False, "pieces": [], "error": None}
    started = time.monotonic()
    try:
        (anthropic_call if spec["api"] == "anthropic" else openai_call)(spec, out, started)
        out["ok"] = True
    except Exception as e:  # noqa: BLE001 -- the exception is what the test looks at
        body = getattr(e, "body", None)
        out["error"] = {"class": type(e).__name__, "message": str(e)[:300],
                        "status": getattr(e, "status_code", None),
                        "body": body if isinstance(body, (dict, list, str)) else None}
    out["elapsed"] = round(time.monotonic() - started, 4)
    return out


def main():
    spec = json.loads(sys.argv[1])
    if isinstance(spec, list):
        print(json.dumps([run(s) for s in spec]))
    else:
        print(json.dumps(run(spec)))


if __name__ == "__main__":
    main()
