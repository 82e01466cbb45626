"""The baseline: a minimal httpx + orjson streaming chat loop.

What anyone would write in a few lines: a default ``httpx.Client``, the stream
read with ``iter_bytes``, lines split on LF, each ``data:`` payload parsed with
orjson, and each token written to stdout and flushed. ``assisters chat`` has to
beat this. Usage: ``python baseline_loop.py URL MODEL``.
"""

from __future__ import annotations

import sys

import httpx
import orjson


def main() -> None:
    url, model = sys.argv[1], sys.argv[2]
    body = {"model": model, "messages": [{"role": "user", "content": "bench"}], "stream": True}
    out = sys.stdout.buffer
    with httpx.Client() as client, client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        rest = b""
        for data in response.iter_bytes():
            *lines, rest = (rest + data).split(b"\n")
            for line in lines:
                if line.startswith(b"data: ") and line != b"data: [DONE]":
                    choices = orjson.loads(line[6:]).get("choices")
                    if choices:
                        content = choices[0]["delta"].get("content")
                        if content:
                            out.write(content.encode())
                            out.flush()


if __name__ == "__main__":
    main()
