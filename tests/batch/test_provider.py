"""The Batch API client (``batch/provider.py``) against ``ChatServer``, over real
sockets: uploads, batches, downloads, retries, and every failure a user meets.

Timing is only ever checked with a generous lower bound, never an upper one.
"""

from __future__ import annotations

import socket
from contextlib import AbstractContextManager
from pathlib import Path

import orjson
import pytest
from pytest_httpserver import HTTPServer

from assisters.batch.provider import (
    BatchClient,
    FileLimits,
    NoBatchAPI,
    NotFound,
    ProviderAPI,
    check_limits,
    request_line,
)
from assisters.batch.waiting import PollPolicy, wait_for_batch
from assisters.errors import ExitStatus, HTTPStatusError, ProtocolError, RequestError, TemporaryError
from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.batch.helpers import batch_client, http_reply, input_file, raw_http_server, settings_for
from tests.conftest import SECRET, key_input

FAST = PollPolicy(first=0.01, longest=0.05)


def test_upload_create_retrieve_list_cancel(tmp_path: Path) -> None:
    path = input_file(tmp_path, "hello", "world")
    with ChatServer(ServeOptions(batch_delay=600)) as srv, batch_client(srv.base_url) as client:
        uploaded = client.upload(path, "my input.txt")
        assert uploaded["filename"] == "my_input.txt.jsonl" and uploaded["purpose"] == "batch"
        stored = srv.state.files.get(uploaded["id"])
        assert stored is not None and stored.path.read_bytes() == path.read_bytes()
        from_bytes = client.upload(path.read_bytes())
        assert from_bytes["bytes"] == uploaded["bytes"] and from_bytes["filename"] == "batch_input.jsonl"

        batch = client.create(uploaded["id"], metadata={"run": "7"})
        assert (batch["status"], batch["metadata"], batch["input_file_id"]) == ("validating", {"run": "7"},
                                                                               uploaded["id"])
        assert client.retrieve(batch["id"])["id"] == batch["id"]
        second = client.create(from_bytes["id"])
        assert [b["id"] for b in client.list()] == [second["id"], batch["id"]]
        assert [b["id"] for b in client.list(limit=1)] == [second["id"]]
        assert client.cancel(batch["id"])["status"] in ("cancelling", "cancelled")
        done = wait_for_batch(client, batch["id"], poll=FAST)
        assert done["status"] == "cancelled"


def test_list_pages_through_the_cursor(tmp_path: Path) -> None:
    with ChatServer(ServeOptions(batch_delay=600)) as srv, batch_client(srv.base_url) as client:
        file_id = client.upload(input_file(tmp_path, "x"))["id"]
        ids = [client.create(file_id)["id"] for _ in range(5)]
        assert [b["id"] for b in client.list(limit=4, page_size=2)] == ids[::-1][:4]
        assert [b["id"] for b in client.list(limit=50, page_size=2)] == ids[::-1]


def test_download_is_whole_and_scrubbed_of_the_key(tmp_path: Path) -> None:
    path = key_input(input_file(tmp_path, f"my key is {SECRET}, keep it"))
    with ChatServer(ServeOptions()) as srv, batch_client(srv.base_url) as client:
        batch = wait_for_batch(client, client.create(client.upload(path)["id"])["id"], poll=FAST)
        raw = srv.state.files.get(batch["output_file_id"]).path.read_bytes()
        assert SECRET.encode() in raw  # the echo repeated it ...
        dest = tmp_path / "out.jsonl"
        received = client.download(batch["output_file_id"], dest)
        assert received == len(raw)
        assert dest.read_bytes() == raw.replace(SECRET.encode(), b"[REDACTED]")  # ... the file does not
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def half_a_file(body: bytes) -> AbstractContextManager[str]:
    """A server that promises ``body`` and hangs up half-way, every time."""
    return raw_http_server(lambda _request: http_reply(body[: len(body) // 2], length=len(body),
                                                       content_type="application/octet-stream"))


def test_a_broken_download_is_retried_then_leaves_no_half_file(tmp_path: Path) -> None:
    dest = tmp_path / "out.jsonl"
    dest.write_bytes(b"the previous results\n")
    notices: list[str] = []
    with (half_a_file(b"x" * 100_000) as base_url,
          batch_client(base_url, retries=1, notices=notices) as client,
          pytest.raises(TemporaryError, match="broke") as caught):
        client.download("file-abc", dest)
    assert caught.value.message.endswith("(gave up after 2 attempts)")  # what the user reads
    assert caught.value.status == ExitStatus.TEMPORARY
    assert len(notices) == 1 and "retrying in" in notices[0]
    assert dest.read_bytes() == b"the previous results\n"  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temporary file left
    port = int(base_url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(ConnectionRefusedError):  # the test's server is gone, not left for later tests
        socket.create_connection(("127.0.0.1", port), timeout=5)


def test_a_server_without_the_batch_api_is_one_clear_error(tmp_path: Path) -> None:
    with ChatServer(ServeOptions(batch_api=False)) as srv, batch_client(srv.base_url) as client:
        for call in (lambda: client.upload(input_file(tmp_path, "x")), client.list,
                     lambda: client.retrieve("batch_abc"),
                     lambda: client.download("file-abc", tmp_path / "o")):
            with pytest.raises(NoBatchAPI, match="has no Batch API") as caught:
                call()
            assert caught.value.status == ExitStatus.REJECTED
            assert "assisters batch run" in caught.value.message
        assert SECRET not in caught.value.message


def test_missing_ids_are_not_found(tmp_path: Path) -> None:
    with ChatServer(ServeOptions()) as srv, batch_client(srv.base_url) as client:
        with pytest.raises(NotFound, match=r"no batch batch_nope .*No batch found with id") as caught:
            client.retrieve("batch_nope")
        assert caught.value.status == ExitStatus.REJECTED
        with pytest.raises(NotFound, match="no batch"):
            client.cancel("batch_nope")
        with pytest.raises(NotFound, match="no file file-nope"):
            client.create("file-nope")
        with pytest.raises(NotFound, match="no file file-nope"):
            client.download("file-nope", tmp_path / "out.jsonl")
        with pytest.raises(NotFound):
            client.retrieve("../files")  # an id is one path segment, never a way elsewhere
    assert not (tmp_path / "out.jsonl").exists()


def test_rate_limits_on_the_management_endpoints_wait_as_retry_after_says(tmp_path: Path) -> None:
    notices: list[str] = []
    options = ServeOptions(api_fail_status=429, api_fail_times=2, retry_after=0.2)
    with ChatServer(options) as srv, batch_client(srv.base_url, retries=2, notices=notices) as client:
        uploaded = client.upload(input_file(tmp_path, "x"))  # refused twice, then stored once
        assert [f.id for f in srv.state.files.listing()] == [uploaded["id"]]
    assert notices == [
        "assisters: HTTP 429: Injected failure: HTTP 429 (1 of 2) (retry after 0.2 s); "
        "retrying in 0.2 s (attempt 2 of 3)",
        "assisters: HTTP 429: Injected failure: HTTP 429 (2 of 2) (retry after 0.2 s); "
        "retrying in 0.2 s (attempt 3 of 3)",
    ]


def test_a_wait_longer_than_the_cap_gives_up_at_once() -> None:
    options = ServeOptions(api_fail_status=429, api_fail_times=0, retry_after=3600)
    with ChatServer(options) as srv, batch_client(srv.base_url, retries=5, max_wait=60) as client:
        with pytest.raises(TemporaryError, match="asks to retry after 3600 s, more than the 60 s limit"):
            client.list()
        assert srv.state.api_requests_seen == 1


def test_creating_is_not_resent_after_a_server_error_but_reading_is(tmp_path: Path) -> None:
    options = ServeOptions(api_fail_status=503, api_fail_times=2)
    with ChatServer(options) as srv, batch_client(srv.base_url, retries=2) as client:
        with pytest.raises(HTTPStatusError, match="HTTP 503") as caught:
            client.upload(input_file(tmp_path, "x"))  # it may have been stored: never twice
        assert caught.value.status == ExitStatus.SERVER
        assert srv.state.api_requests_seen == 1
        assert client.list() == []  # the second 503 is retried: a read is safe to repeat
        assert srv.state.api_requests_seen == 3


def test_a_post_that_never_connected_is_retried(tmp_path: Path) -> None:
    unused = socket.create_server(("127.0.0.1", 0))
    port = unused.getsockname()[1]
    unused.close()
    notices: list[str] = []
    with (batch_client(f"http://127.0.0.1:{port}/v1", retries=1, notices=notices) as client,
          pytest.raises(TemporaryError, match="cannot connect") as caught):
        client.create("file-abc")
    assert caught.value.message.endswith("(gave up after 2 attempts)")
    assert len(notices) == 1


def test_an_upload_too_large_for_the_server_says_to_split(tmp_path: Path) -> None:
    path = input_file(tmp_path, "x" * 500)
    with ChatServer(ServeOptions(max_upload_bytes=100)) as srv, batch_client(srv.base_url) as client:
        with pytest.raises(HTTPStatusError, match="File is too large") as caught:
            client.upload(path)
        assert caught.value.message.endswith(
            "up to 100 bytes; set batch_max_bytes (ASSISTERS_BATCH_MAX_BYTES) to the provider's limit and "
            "submit with --split")
        assert caught.value.status == ExitStatus.REJECTED
        assert srv.state.files.listing() == []


def test_limits_are_checked_before_uploading() -> None:
    check_limits(200_000_000, 50_000)
    with pytest.raises(RequestError, match=r"50001 requests; one batch holds at most 50000: split it into 2"):
        check_limits(10, 50_001, name="in.jsonl")
    with pytest.raises(RequestError, match=r"is 300 bytes .* at most 200: split it with --split \(or: "
                                           r"assisters batch prepare INPUT \| split -l 4 - part-, then"):
        check_limits(300, 8, FileLimits(max_bytes=200, max_requests=10))


def test_request_lines_in_each_providers_shape() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "é"}]}
    assert orjson.loads(request_line("a", body)) == {"custom_id": "a", "method": "POST",
                                                     "url": "/v1/chat/completions", "body": body}
    azure = ProviderAPI.azure("2024-10-21")
    assert orjson.loads(request_line("a", body, azure))["url"] == "/chat/completions"
    assert orjson.loads(request_line("a", body, ProviderAPI(method_and_url=False))) == {"custom_id": "a",
                                                                                       "body": body}
    assert request_line("a", body).endswith(b"}\n")


def test_azure_paths_and_query(httpserver: HTTPServer) -> None:
    batch = {"id": "batch_1", "status": "completed"}
    query = {"api-version": "2024-10-21"}
    for path, method in (("/openai/batches/batch_1", "GET"), ("/openai/batches", "POST")):
        httpserver.expect_request(path, method=method, query_string=query).respond_with_json(batch)
    base_url = httpserver.url_for("/openai")
    with BatchClient(settings_for(base_url), ProviderAPI.azure("2024-10-21")) as client:
        assert client.retrieve("batch_1") == batch
        assert client.create("file-1") == batch
    sent = orjson.loads(httpserver.log[1][0].data)
    assert sent == {"input_file_id": "file-1", "endpoint": "/chat/completions", "completion_window": "24h"}
    assert httpserver.log[0][0].headers["Authorization"] == f"Bearer {SECRET}"


def test_azure_shape_runs_end_to_end_on_the_local_server(tmp_path: Path) -> None:
    api = ProviderAPI.azure("2024-10-21")
    path = tmp_path / "in.jsonl"
    path.write_bytes(request_line("a", {"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
                                  api))
    with ChatServer(ServeOptions()) as srv, batch_client(srv.base_url.removesuffix("/v1"), api=api) as client:
        done = wait_for_batch(client, client.create(client.upload(path)["id"])["id"], poll=FAST)
    assert (done["status"], done["endpoint"]) == ("completed", "/chat/completions")


def test_a_reply_without_a_usable_id_is_a_protocol_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/batches/b").respond_with_json({"id": "two\nlines", "status": "completed"})
    with (BatchClient(settings_for(httpserver.url_for("/v1"))) as client,
          pytest.raises(ProtocolError, match="without a usable id") as caught):
        client.retrieve("b")
    assert caught.value.status == ExitStatus.PROTOCOL
