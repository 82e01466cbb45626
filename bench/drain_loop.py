"""The floor of the Python stack: the same request as the baseline, the body
drained with ``iter_raw`` and thrown away (no decoding, no parsing, no output).
Usage: ``python drain_loop.py URL MODEL``.
"""

from __future__ import annotations

import sys

import httpx


def main() -> None:
    url, model = sys.argv[1], sys.argv[2]
    body = {"model": model, "messages": [{"role": "user", "content": "bench"}], "stream": True}
    with httpx.Client() as client, client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        for _ in response.iter_raw():
            pass


if __name__ == "__main__":
    main()
