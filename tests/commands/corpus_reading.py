"""Reading a corpus case independently of the code under test: the reference
the debug and raw tests compare the CLI's output with."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.conftest import (
    SECRET,
    corpus_server,
    run_cli,
)


@contextmanager
def served(name: str) -> Iterator[dict[str, str]]:
    """Serve one corpus case; yields the environment pointing the CLI at it."""
    with corpus_server(name) as base_url:
        yield {"ASSISTERS_BASE_URL": base_url, "ASSISTERS_API_KEY": SECRET}


def run_case(name: str, *args: str, input: bytes = b"",
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    with served(name) as case_env:
        result = run_cli(*args, input=input, env={**case_env, **(env or {})})
    assert SECRET.encode() not in result.stdout + result.stderr
    assert b"Traceback" not in result.stderr
    return result


def reference_items(body: bytes) -> list[tuple[Any, ...]]:
    """An independent WHATWG reading of an SSE body (as debug should report it).

    ("event", type, id, data) for each dispatched event, ("field", name, value) for
    each line with an unknown field name, ("comment", text) for each comment.
    """
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    lines = re.split(rb"\r\n|\r|\n", body)[:-1]  # the last piece has no line end
    items: list[tuple[Any, ...]] = []
    data: list[str] = []
    kind = ""
    last_id: str | None = None
    for raw_line in lines:
        line = raw_line.decode("utf-8", "replace")
        if not line:
            if data:
                items.append(("event", kind or "message", last_id, "\n".join(data)))
            data, kind = [], ""
            continue
        if line.startswith(":"):
            items.append(("comment", line[1:]))
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            kind = value
        elif name == "id":
            if "\0" not in value:
                last_id = value
        elif name != "retry":
            items.append(("field", name, value))
    return items
