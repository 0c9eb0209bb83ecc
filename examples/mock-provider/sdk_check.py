#!/usr/bin/env python3
"""The mock provider against the official `openai` and `anthropic` Python SDKs, no proxy in
between: every mode is answered in a shape the SDKs parse as they parse the real APIs, and each
fault reaches the client as the real fault would (an exception, a truncated answer, a timeout).

    python3 examples/mock-provider/sdk_check.py [--mock target/release/mock-provider]

Needs `openai` and `anthropic` importable (`make mock-sdk-check` installs them into .venv).
Prints one line per check and `sdk-check: N passed, M failed`; exits 1 on any failure.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

import anthropic
import openai

try:  # the HTTP client the SDKs are built on (httpx, renamed httpx2 in recent releases)
    import httpx2 as httpx
except ImportError:
    import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 10.0


class Mock:
    """One mock-provider process on free loopback ports, stopped by PID on close."""

    def __init__(self, binary, name):
        self.proc = subprocess.Popen([binary, "--name", name], stdout=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        line = json.loads(self.proc.stdout.readline())
        self.port, self.control = line["listen"], line["control"]

    def mode(self, **mode):
        return self._call("POST", "/mode", mode)

    def stats(self):
        return self._call("GET", "/stats")

    def reset(self):
        return self._call("POST", "/reset", {})

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.control}{path}", data=data,
                                     method=method)
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.load(r)

    def close(self):
        self.proc.kill()
        self.proc.wait(timeout=5)


RESULTS = []


def check(name, fn):
    try:
        fn()
    except AssertionError as e:
        RESULTS.append(False)
        print(f"FAIL {name}: {e}")
        return
    except Exception as e:  # anything else is a failure of the check, reported as such
        RESULTS.append(False)
        print(f"FAIL {name}: unexpected {type(e).__name__}: {e}")
        return
    RESULTS.append(True)
    print(f"ok   {name}")


def raises(fn, *classes):
    """Runs fn; returns the exception, which must be one of `classes`."""
    try:
        fn()
    except classes as e:
        return e
    except Exception as e:
        raise AssertionError(f"expected {[c.__name__ for c in classes]}, got "
                             f"{type(e).__name__}: {e}") from e
    raise AssertionError(f"expected {[c.__name__ for c in classes]}, nothing raised")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mock", default=os.path.join(ROOT, "target", "release", "mock-provider"))
    args = parser.parse_args()
    mock = Mock(args.mock, "mock")
    try:
        run(mock)
    finally:
        mock.close()
    passed = sum(RESULTS)
    failed = len(RESULTS) - passed
    print(f"sdk-check: {passed} passed, {failed} failed "
          f"(openai {openai.__version__}, anthropic {anthropic.__version__})")
    return 1 if failed else 0


def run(mock):
    oa = openai.OpenAI(base_url=f"http://127.0.0.1:{mock.port}/v1", api_key="sk-mock",
                       max_retries=0, timeout=TIMEOUT)
    an = anthropic.Anthropic(base_url=f"http://127.0.0.1:{mock.port}", api_key="sk-mock",
                             max_retries=0, timeout=TIMEOUT)
    msgs = [{"role": "user", "content": "hi"}]

    def chat_stream(client=oa, **extra):
        """Iterates a streamed chat completion: (text, finish_reason, usage, chunks)."""
        text, finish, usage, n = "", None, None, 0
        for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=msgs,
                                                   stream=True, **extra):
            n += 1
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
        return text, finish, usage, n

    def claude_stream(client=an, **extra):
        """Accumulates a streamed message with the SDK's helper: the final Message."""
        with client.messages.stream(model="claude-x", max_tokens=64, messages=msgs,
                                    **extra) as stream:
            for _ in stream.text_stream:
                pass
            return stream.get_final_message()

    def claude_events(**extra):
        """Raw `create(stream=True)` events, as the SDK types them."""
        return [e.type for e in an.messages.create(model="claude-x", max_tokens=64,
                                                   messages=msgs, stream=True, **extra)]

    # ---- healthy, both APIs, streamed and not ---------------------------------------------
    def healthy_openai():
        mock.mode(mode="healthy")
        r = oa.chat.completions.create(model="gpt-4o-mini", messages=msgs)
        assert r.choices[0].message.content == "Hello from mock", r
        assert r.usage.total_tokens == 8, r.usage
        text, finish, usage, _ = chat_stream()
        assert (text, finish, usage) == ("Hello from mock", "stop", None)
        text, finish, usage, _ = chat_stream(stream_options={"include_usage": True})
        assert usage.completion_tokens == 3 and usage.prompt_tokens == 5, usage
        mock.mode(mode="healthy", tokens=200)
        text, _, _, n = chat_stream()
        assert n == 202 and text.endswith(" 199 200"), (n, text[-20:])
        mock.mode(mode="healthy", usage=False)
        assert chat_stream(stream_options={"include_usage": True})[2] is None
        assert oa.chat.completions.create(model="m", messages=msgs).usage is None

    def healthy_anthropic():
        mock.mode(mode="healthy")
        m = an.messages.create(model="claude-x", max_tokens=64, messages=msgs)
        assert m.content[0].text == "Hello from mock" and m.stop_reason == "end_turn", m
        assert (m.usage.input_tokens, m.usage.output_tokens) == (5, 3), m.usage
        m = claude_stream()
        assert m.content[0].text == "Hello from mock", m
        assert m.stop_reason == "end_turn" and m.usage.output_tokens == 3, m

    def tool_calls():
        mock.mode(mode="healthy")
        tools = [{"type": "function", "function": {
            "name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]
        r = oa.chat.completions.create(model="m", messages=msgs, tools=tools)
        call = r.choices[0].message.tool_calls[0]
        assert r.choices[0].finish_reason == "tool_calls", r
        assert call.function.name == "get_weather", call
        assert json.loads(call.function.arguments) == {"query": "Hello from mock"}, call
        with oa.chat.completions.stream(model="m", messages=msgs, tools=tools) as stream:
            for _ in stream:
                pass
            final = stream.get_final_completion()
        call = final.choices[0].message.tool_calls[0]
        assert json.loads(call.function.arguments) == {"query": "Hello from mock"}, call
        a_tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
        m = an.messages.create(model="c", max_tokens=9, messages=msgs, tools=a_tools)
        assert m.stop_reason == "tool_use" and m.content[0].input == {"query": "Hello from mock"}
        m = claude_stream(tools=a_tools)
        assert m.stop_reason == "tool_use", m
        assert (m.content[0].name, m.content[0].input) == ("get_weather",
                                                           {"query": "Hello from mock"}), m

    check("healthy: OpenAI chat completion, stream, usage chunk, 200 chunks", healthy_openai)
    check("healthy: Anthropic message, stream accumulated by the SDK", healthy_anthropic)
    check("tool calls: both SDKs assemble the mock's call, streamed and not", tool_calls)

    # ---- stream faults -----------------------------------------------------------------
    def stream_error():
        for after, preamble in ((0, False), (0, True), (2, True)):
            mock.mode(mode="stream_error", after_tokens=after, preamble=preamble)
            got = []

            def consume():
                for chunk in oa.chat.completions.create(model="m", messages=msgs, stream=True):
                    got.extend(c.delta.content for c in chunk.choices if c.delta.content)
            e = raises(consume, openai.APIError)
            assert "server had an error" in str(e), e
            assert len(got) == after, (after, got)
        mock.mode(mode="stream_error", after_tokens=1)
        e = raises(claude_stream, anthropic.APIStatusError)
        assert "overloaded_error" in str(e), e
        mock.mode(mode="stream_error", preamble=False)
        raises(claude_events, anthropic.APIStatusError)

    def stream_cut():
        for close in ("fin", "rst"):
            mock.mode(mode="stream_cut", after_tokens=2, close=close)
            raises(chat_stream, openai.APIConnectionError, httpx.HTTPError)
            raises(claude_stream, anthropic.APIConnectionError, httpx.HTTPError)

    def stream_no_marker():
        # Nothing raises: the SDKs take a stream that ends cleanly without its end for a whole
        # one; that is exactly what the filter has to catch.
        mock.mode(mode="stream_no_marker", after_tokens=2)
        assert chat_stream()[:2] == ("Hello from", None)
        assert claude_events() == ["message_start", "content_block_start",
                                   "content_block_delta", "content_block_delta"]

    def stream_no_done():
        mock.mode(mode="stream_no_done")
        assert chat_stream()[:2] == ("Hello from mock", "stop")
        assert claude_events()[-1] == "message_delta"

    def stream_stall():
        mock.mode(mode="stream_stall", after_tokens=1, stall_ms=1500)
        fast = openai.OpenAI(base_url=f"http://127.0.0.1:{mock.port}/v1", api_key="sk-mock",
                             max_retries=0, timeout=httpx.Timeout(5.0, read=0.5))
        raises(lambda: chat_stream(fast), openai.APITimeoutError)
        started = time.monotonic()
        assert chat_stream()[0] == "Hello from mock"
        assert time.monotonic() - started >= 1.4

    def first_token_delay():
        for delay_headers in (False, True):
            mock.mode(mode="stream_first_token_delay", delay_ms=800, delay_headers=delay_headers)
            started = time.monotonic()
            stream = oa.chat.completions.create(model="m", messages=msgs, stream=True)
            headers_at = time.monotonic() - started
            first = None
            for chunk in stream:
                if first is None and any(c.delta.content for c in chunk.choices):
                    first = time.monotonic() - started
            assert first is not None and first >= 0.75, first
            if delay_headers:
                assert headers_at >= 0.75, headers_at
            else:
                assert headers_at < 0.5, headers_at

    def malformed():
        mock.mode(mode="stream_malformed", after_tokens=1)
        raises(chat_stream, ValueError)  # json.JSONDecodeError
        raises(claude_stream, ValueError)

    def anthropic_usage_off():
        mock.mode(mode="healthy", usage=False)
        assert claude_events()[-1] == "message_stop"

    check("stream_error: OpenAI APIError after N tokens, Anthropic overloaded_error", stream_error)
    check("stream_cut: FIN and RST both raise a connection error", stream_cut)
    check("stream_no_marker: the SDKs return a truncated answer silently", stream_no_marker)
    check("stream_no_done: finish_reason without [DONE] is complete for the SDK", stream_no_done)
    check("stream_stall: a read timeout fires during the stall; without one, it completes",
          stream_stall)
    check("stream_first_token_delay: late first token, with and without late headers",
          first_token_delay)
    check("stream_malformed: the SDKs fail on the invalid JSON line", malformed)
    check("usage off: Anthropic raw events still parse", anthropic_usage_off)

    # ---- status modes --------------------------------------------------------------------
    def status_modes():
        mock.mode(mode="rate_limit", retry_after=2)
        e = raises(lambda: chat_stream(), openai.RateLimitError)
        assert e.response.headers["retry-after"] == "2" and e.code == "rate_limit_exceeded", e
        raises(claude_stream, anthropic.RateLimitError)
        mock.mode(mode="quota")
        e = raises(lambda: chat_stream(), openai.RateLimitError)
        assert e.code == "insufficient_quota", e.body
        e = raises(claude_stream, anthropic.APIStatusError)
        assert e.status_code == 402 and e.body["error"]["type"] == "billing_error", e.body
        mock.mode(mode="quota", variant="credit_balance")
        e = raises(claude_stream, anthropic.BadRequestError)
        assert "credit balance is too low" in e.message, e
        mock.mode(mode="context_length")
        e = raises(lambda: chat_stream(), openai.BadRequestError)
        assert e.code == "context_length_exceeded" and e.param == "messages", e.body
        e = raises(claude_stream, anthropic.BadRequestError)
        assert "prompt is too long" in e.message, e
        mock.mode(mode="content_policy")
        e = raises(lambda: chat_stream(), openai.BadRequestError)
        assert e.code == "content_policy_violation", e.body
        mock.mode(mode="content_policy", code="content_filter")
        e = raises(lambda: chat_stream(), openai.BadRequestError)
        assert e.code == "content_filter", e.body
        mock.mode(mode="content_policy")
        assert claude_stream().stop_reason == "refusal"
        assert an.messages.create(model="c", max_tokens=9, messages=msgs).stop_reason == "refusal"
        mock.mode(mode="error", status=529)
        raises(claude_stream, anthropic.APIStatusError)
        mock.mode(mode="error", status=500)
        e = raises(claude_stream, anthropic.InternalServerError)
        assert e.body["error"]["type"] == "api_error", e.body
        mock.mode(mode="respond", status=401, body='{"error":{"message":"key rotated",'
                  '"type":"invalid_request_error","code":"invalid_api_key"}}')
        e = raises(lambda: chat_stream(), openai.AuthenticationError)
        assert e.code == "invalid_api_key", e.body
        mock.mode(mode="large_error", bytes=2 * 1024 * 1024)
        e = raises(lambda: chat_stream(), openai.InternalServerError)
        assert len(e.response.content) == 2 * 1024 * 1024

    def fail_next_then_ok():
        retrying = openai.OpenAI(base_url=f"http://127.0.0.1:{mock.port}/v1", api_key="sk-mock",
                                 max_retries=1, timeout=TIMEOUT)
        mock.mode(mode="fail_next", count=1, **{"with": {"mode": "rate_limit", "retry_after": 1}})
        mock.reset()
        started = time.monotonic()
        r = retrying.chat.completions.create(model="m", messages=msgs)
        assert r.choices[0].message.content == "Hello from mock"
        assert time.monotonic() - started >= 0.9, "the SDK honoured Retry-After"
        by_mode = mock.stats()["by_mode"]
        assert (by_mode["rate_limit"], by_mode["healthy"]) == (1, 1), by_mode

    def validation():
        mock.mode(mode="healthy")
        e = raises(lambda: an.messages.create(
            model="c", max_tokens=9,
            messages=[{"role": "system", "content": "x"}, *msgs]), anthropic.BadRequestError)
        assert 'Unexpected role "system"' in e.message, e
        e = raises(lambda: an.messages.create(model="c", max_tokens=9, messages=msgs,
                                              extra_body={"stream_options": {}}),
                   anthropic.BadRequestError)
        assert "Extra inputs are not permitted" in e.message, e

    check("status modes: each error maps to the SDK's exception class and fields", status_modes)
    check("fail_next: 429 with Retry-After once, then OK (the SDK's own retry)", fail_next_then_ok)
    check("validation: /v1/messages rejects what Anthropic rejects", validation)


if __name__ == "__main__":
    sys.exit(main())
