#!/usr/bin/env python3
"""Uploads one large chat request through httpx2, the HTTP stack of the official SDKs, and
reports the answer as JSON: what a client sending a big prompt (an image) gets.

    upload.py '{"url": "http://127.0.0.1:10000/v1/chat/completions", "model": "gpt-4o",
                "bytes": 5242880, "chunked": true, "times": 3}'

`bytes` of prompt text; `chunked` streams the body (`transfer-encoding: chunked`, as a
client uploading from a generator does) instead of sending its `content-length`; `times`
uploads, one after another. Prints a JSON list with one result per upload: status, headers
and body, or the exception (a reset instead of an answer) as {"error": ...}.
"""

import json
import sys

import httpx2


def main():
    spec = json.loads(sys.argv[1])
    body = json.dumps({"model": spec["model"],
                       "messages": [{"role": "user", "content": "A" * spec["bytes"]}]}).encode()

    def pieces():
        for i in range(0, len(body), 64 * 1024):
            yield body[i:i + 64 * 1024]

    results = []
    for _ in range(spec.get("times", 1)):
        try:
            r = httpx2.post(spec["url"], content=pieces() if spec.get("chunked") else body,
                            headers={"content-type": "application/json"}, timeout=10)
            results.append({"status": r.status_code, "headers": dict(r.headers),
                            "body": r.text})
        except Exception as e:  # noqa: BLE001 -- the exception is what the test looks at
            results.append({"error": f"{type(e).__name__}: {e}"})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
