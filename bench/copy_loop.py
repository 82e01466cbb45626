"""The floor of a byte-exact passthrough: the drain loop's request, each read of the
body written to stdout at once with ``os.write`` (no decoding, no parsing, no error
handling). ``assisters raw`` does this much and must not cost much more.
Usage: ``python copy_loop.py URL MODEL``.
"""

from __future__ import annotations

import os
import sys

import httpx


def main() -> None:
    url, model = sys.argv[1], sys.argv[2]
    body = {"model": model, "messages": [{"role": "user", "content": "bench"}], "stream": True}
    write = os.write
    with httpx.Client() as client, client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        for data in response.iter_raw():
            written = write(1, data)
            while written < len(data):  # a short write (a signal): the rest
                data = data[written:]
                written = write(1, data)


if __name__ == "__main__":
    main()
