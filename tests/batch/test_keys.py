"""The key never appears in what the Batch API commands print or write, even from a
provider that quotes it back in every object, every result line, every error and
every file name: a property over each command, each way of sending the key
(``Authorization: Bearer``, Azure's ``api-key``), and each outcome."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.conftest import SECRET, find_key, run_cli, scan_tree, sse
from tests.test_key_leaks import quoted_key


def batch(batch_id: str, status: str, key: str) -> dict[str, Any]:
    errors = None
    if status == "failed":
        errors = {"object": "list", "data": [{"code": "bad", "message": f"refused {key}", "line": 1}]}
    files = {"output_file_id": "file-out", "error_file_id": "file-err"} if status != "failed" else {}
    return {"id": batch_id, "object": "batch", "status": status, "endpoint": "/v1/chat/completions",
            "input_file_id": "file-in", "completion_window": "24h", "created_at": 0, "errors": errors,
            "metadata": {"echo": key}, "request_counts": {"total": 2, "completed": 1, "failed": 1}, **files}


def quoting_api(request: Request) -> Response:
    """A Batch API that repeats the credential it was sent wherever it can."""
    key = quoted_key(request)
    path = re.sub(r"^.*?/(files|batches)", r"/\1", request.path)
    if path == "/files" and request.method == "POST":
        body = {"id": "file-in", "object": "file", "bytes": 1, "created_at": 0, "purpose": "batch",
                "filename": f"input-{key}.jsonl", "status": "processed"}
    elif path == "/files/file-out/content":
        message = {"role": "assistant", "content": f"your key is {key}"}
        line = {"id": "batch_req_1", "custom_id": "line-1", "error": None, "response": {
            "status_code": 200, "request_id": key, "body": {"choices": [{"index": 0, "message": message}]}}}
        return Response(orjson.dumps(line) + b"\n", content_type="application/octet-stream")
    elif path == "/files/file-err/content":
        line = {"id": "batch_req_2", "custom_id": "line-2", "response": None,
                "error": {"code": "x", "message": f"failed for {key}"}}
        return Response(orjson.dumps(line) + b"\n", content_type="application/octet-stream")
    elif path == "/files/file-in/content":
        return Response(b'{"custom_id": "line-1"}\n{"custom_id": "line-2"}\n')
    elif path == "/batches" and request.method == "POST":
        body = batch("batch_ok", "validating", key)
    elif path == "/batches":
        body = {"object": "list", "data": [batch("batch_ok", "completed", key),
                                           batch("batch_failed", "failed", key)], "has_more": False}
    elif path.endswith("/cancel"):
        body = batch(path.split("/")[2], "cancelling", key)
    elif path.startswith("/batches/batch_missing"):
        return Response(orjson.dumps({"error": {"message": f"No batch for {key}"}}), status=404,
                        content_type="application/json")
    elif path.startswith("/batches/"):
        batch_id = path.split("/")[2]
        body = batch(batch_id, "failed" if batch_id == "batch_failed" else "completed", key)
    else:
        return Response(sse({"error": key}), status=404)
    return Response(orjson.dumps(body), content_type="application/json", headers={"X-Echo": key})


COMMANDS = {
    "submit --wait -o": (["submit", "--wait", "--poll-interval", "0.01", "-o", "{out}", "--ordered"], 3),
    "prepare": (["prepare"], 0),
    "status": (["status", "batch_ok", "batch_failed"], 65),
    "status --json": (["status", "--json", "batch_ok"], 0),
    "status of a missing batch": (["status", "batch_missing"], 65),
    "results -o": (["results", "batch_ok", "-o", "{out}"], 3),
    "results --ordered": (["results", "batch_ok", "--ordered"], 3),
    "results of a failed batch": (["results", "batch_failed"], 65),
    "cancel": (["cancel", "batch_ok"], 0),
    "list --json": (["list", "--json"], 0),
    "list": (["list"], 0),
}


@pytest.mark.parametrize("auth", ["bearer", "azure api-key"])
@pytest.mark.parametrize("name", list(COMMANDS))
def test_no_batch_command_shows_or_writes_the_key(httpserver: HTTPServer, tmp_path: Path, name: str,
                                                  auth: str) -> None:
    httpserver.expect_request(re.compile(".*")).respond_with_handler(quoting_api)
    env = {"ASSISTERS_BASE_URL": httpserver.url_for("/v1"), "ASSISTERS_API_KEY": SECRET,
           "ASSISTERS_MAX_RETRIES": "0"}
    if auth == "azure api-key":
        env.update(ASSISTERS_BASE_URL=httpserver.url_for("/openai") + "?api-version=2024-10-21",
                   ASSISTERS_AUTH_HEADER="api-key", ASSISTERS_BATCH_API="azure")
    args, status = COMMANDS[name]
    args = [arg.replace("{out}", str(tmp_path / "out.jsonl")) for arg in args]
    bodies = b"".join(orjson.dumps({"messages": [{"role": "user", "content": text}]}) + b"\n"
                      for text in ("hi", "x"))
    result = run_cli("batch", *args, input=bodies, env=env)
    assert result.returncode == status, result.stderr
    assert find_key(result.stdout) == [] and find_key(result.stderr) == []
    assert b"Traceback" not in result.stderr
    assert scan_tree(tmp_path) == []
    if status and name != "status":
        assert len(result.stderr.splitlines()) == 1  # one clear line
    if "-o" in args:
        assert b"[REDACTED]" in (tmp_path / "out.jsonl").read_bytes()  # written, scrubbed
    if httpserver.log:
        sent = httpserver.log[0][0]
        assert (sent.headers.get("api-key") == SECRET) == (auth == "azure api-key")
