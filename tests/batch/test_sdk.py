"""The official ``openai`` SDK as an independent client of the same batches: what
``assisters batch submit`` creates, the SDK reads as a batch of its own; what the SDK
creates from ``batch prepare``'s lines, ``assisters batch status/results/list``
read. Both sides against ``ChatServer``, so each checks the other's view of the API."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from pytest_httpserver import HTTPServer

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.batch.helpers import FAST, batch_cli, prompts_file
from tests.conftest import SECRET, run_cli

openai = pytest.importorskip("openai")


def test_the_sdk_reads_what_submit_made(tmp_path: Path) -> None:
    source = prompts_file(tmp_path / "q.txt", 3)
    with ChatServer(ServeOptions(tokens_per_second=0)) as srv, \
            openai.OpenAI(api_key=SECRET, base_url=srv.base_url, max_retries=0) as sdk:
        submitted = batch_cli(srv, "submit", "--prompts", str(source), "-m", "echo", "--metadata", "job=7",
                              "--wait", *FAST)
        batch = sdk.batches.retrieve(submitted.stdout.decode().strip())
        prepared = batch_cli(srv, "prepare", "--prompts", str(source), "-m", "echo")
        uploaded = sdk.files.retrieve(batch.input_file_id)
        sent = sdk.files.content(batch.input_file_id).content
        output = sdk.files.content(batch.output_file_id).content
        ours = batch_cli(srv, "results", batch.id)
        status = batch_cli(srv, "status", "--json", batch.id)
    assert (submitted.returncode, submitted.stderr) == (0, b"")
    assert (batch.status, batch.endpoint, batch.completion_window, batch.metadata) == (
        "completed", "/v1/chat/completions", "24h", {"job": "7"})
    assert batch.request_counts is not None and batch.request_counts.completed == 3
    assert (uploaded.purpose, uploaded.filename) == ("batch", "q.txt.jsonl")
    assert sent == prepared.stdout  # the upload is prepare's lines, byte for byte
    assert (ours.returncode, ours.stdout) == (0, output)  # the provider's lines as they are
    assert orjson.loads(status.stdout) == batch.to_dict(mode="json")


def test_assisters_reads_what_the_sdk_made(tmp_path: Path) -> None:
    source = prompts_file(tmp_path / "q.txt", 4)
    with ChatServer(ServeOptions(tokens_per_second=0, batch_delay=0.2)) as srv, \
            openai.OpenAI(api_key=SECRET, base_url=srv.base_url, max_retries=0) as sdk:
        requests = tmp_path / "requests.jsonl"
        requests.write_bytes(batch_cli(srv, "prepare", "--prompts", str(source), "-m", "echo").stdout)
        with requests.open("rb") as handle:
            uploaded = sdk.files.create(file=handle, purpose="batch")
        created = sdk.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                     completion_window="24h")
        results = batch_cli(srv, "results", created.id, "--wait", *FAST, "--ordered")
        listed = batch_cli(srv, "list", "--json")
        sdk_listed = [batch.id for batch in sdk.batches.list()]
        done = sdk.batches.retrieve(created.id)
    assert (results.returncode, results.stderr) == (0, b"")
    lines = [orjson.loads(line) for line in results.stdout.splitlines()]
    assert [line["custom_id"] for line in lines] == ["line-1", "line-2", "line-3", "line-4"]
    assert [line["response"]["body"]["choices"][0]["message"]["content"] for line in lines] == [
        f"prompt {n}" for n in range(1, 5)]
    assert [orjson.loads(line)["id"] for line in listed.stdout.splitlines()] == sdk_listed == [created.id]
    assert done.status == "completed"


def test_azure_requests_are_the_ones_the_sdks_azure_client_sends(httpserver: HTTPServer) -> None:
    """The same calls by ``openai.AzureOpenAI`` and by ``assisters batch`` with the
    ``azure`` preset: the same paths, query strings and key header."""
    batch = {"id": "batch_az", "object": "batch", "endpoint": "/chat/completions", "input_file_id": "file-in",
             "completion_window": "24h", "status": "cancelling", "created_at": 0}
    httpserver.expect_request(re.compile(".*")).respond_with_json(batch)

    def requests() -> list[tuple[str, str, str, str | None]]:
        seen = [(r.method, r.path, r.query_string.decode(), r.headers.get("api-key"))
                for r, _ in httpserver.log]
        httpserver.clear_log()
        return seen

    with openai.AzureOpenAI(azure_endpoint=httpserver.url_for(""), api_version="2024-10-21", api_key=SECRET,
                            max_retries=0) as sdk:
        sdk.batches.retrieve("batch_az")
        sdk.batches.cancel("batch_az")
    by_sdk = requests()
    env = {"ASSISTERS_BASE_URL": httpserver.url_for("/openai") + "?api-version=2024-10-21",
           "ASSISTERS_AUTH_HEADER": "api-key", "ASSISTERS_BATCH_API": "azure", "ASSISTERS_API_KEY": SECRET}
    assert run_cli("batch", "status", "batch_az", env=env).returncode == 75
    assert run_cli("batch", "cancel", "batch_az", env=env).returncode == 0
    by_us = requests()
    assert by_us == by_sdk == [("GET", "/openai/batches/batch_az", "api-version=2024-10-21", SECRET),
                               ("POST", "/openai/batches/batch_az/cancel", "api-version=2024-10-21", SECRET)]
