"""The Files API (``/v1/files``), driven by the official ``openai`` SDK as an
independent client, plus the requests the SDK would never send.

Over real loopback sockets.
"""

from __future__ import annotations

import io
import re
import socket

import httpx
import pytest

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.server.helpers import KEY, assert_openai_error, batch_lines, request_line

openai = pytest.importorskip("openai")

INPUT = batch_lines(request_line("a", "hello"), request_line("b", "world"))


def sdk_for(srv: ChatServer) -> openai.OpenAI:
    return openai.OpenAI(api_key=KEY, base_url=srv.base_url, max_retries=0)


def test_upload_retrieve_content_delete_as_the_sdk_sees_them() -> None:
    with ChatServer(ServeOptions()) as srv, sdk_for(srv) as sdk:
        created = sdk.files.create(file=("in.jsonl", io.BytesIO(INPUT)), purpose="batch")
        raw = httpx.get(f"{srv.base_url}/files/{created.id}").json()
        assert set(raw) == set(openai.types.FileObject.model_fields)
        assert re.fullmatch(r"file-[A-Za-z0-9]{22}", created.id)
        assert (created.object, created.purpose, created.status) == ("file", "batch", "processed")
        assert (created.bytes, created.filename) == (len(INPUT), "in.jsonl")
        assert created.expires_at == created.created_at + 30 * 86400  # batch files expire after 30 days
        assert sdk.files.retrieve(created.id) == created
        assert sdk.files.content(created.id).content == INPUT
        deleted = sdk.files.delete(created.id)
        assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "file")
        with pytest.raises(openai.NotFoundError, match=f"No such File object: {created.id}"):
            sdk.files.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            sdk.files.content(created.id)
        with pytest.raises(openai.NotFoundError):
            sdk.files.delete(created.id)


def test_content_is_byte_exact_for_any_purpose() -> None:
    data = bytes(range(256)) * 1000 + b"\r\n\r\n--not-a-boundary\r\n"
    with ChatServer(ServeOptions()) as srv, sdk_for(srv) as sdk:
        created = sdk.files.create(file=("blob.bin", io.BytesIO(data)), purpose="user_data")
        assert created.expires_at is None
        response = httpx.get(f"{srv.base_url}/files/{created.id}/content")
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.content == data


def test_list_orders_filters_and_pages() -> None:
    with ChatServer(ServeOptions()) as srv, sdk_for(srv) as sdk:
        ids = [sdk.files.create(file=(f"{i}.jsonl", io.BytesIO(INPUT)), purpose="batch").id for i in range(3)]
        other = sdk.files.create(file=("x.txt", io.BytesIO(b"x")), purpose="user_data").id
        assert [f.id for f in sdk.files.list()] == [other, *reversed(ids)]  # newest first
        assert [f.id for f in sdk.files.list(order="asc", purpose="batch")] == ids
        first = sdk.files.list(limit=2, purpose="batch")
        assert [f.id for f in first.data] == [ids[2], ids[1]] and first.has_more
        assert [f.id for f in sdk.files.list(limit=2, purpose="batch")] == ids[::-1]  # the SDK pages on
        body = httpx.get(f"{srv.base_url}/files", params={"limit": 1, "after": other}).json()
        assert (body["first_id"], body["last_id"], body["has_more"]) == (ids[2], ids[2], True)
        for params, fragment in (({"limit": 0}, "limit"), ({"order": "up"}, "order"),
                                 ({"after": "file-nope"}, "No such File object")):
            assert_openai_error(httpx.get(f"{srv.base_url}/files", params=params),
                                404 if "after" in params else 400, fragment)


def test_upload_over_the_size_limit_is_refused_as_openai_does() -> None:
    limit = 1000
    with ChatServer(ServeOptions(max_upload_bytes=limit)) as srv, sdk_for(srv) as sdk:
        sdk.files.create(file=("ok.jsonl", io.BytesIO(b"x" * limit)), purpose="batch")
        with pytest.raises(openai.BadRequestError, match="File is too large") as caught:
            sdk.files.create(file=("big.jsonl", io.BytesIO(b"x" * (limit + 1))), purpose="batch")
        assert caught.value.status_code == 400
        # Far over the limit: the client still sees the answer.
        files = {"file": ("huge.jsonl", b"x" * (4 * 1024 * 1024))}
        r = httpx.post(f"{srv.base_url}/files", data={"purpose": "batch"}, files=files, timeout=30)
        assert_openai_error(r, 400, "File is too large")


def test_a_too_large_upload_is_read_to_its_end_so_the_connection_stays_usable() -> None:
    size = 4 * 1024 * 1024
    head = (f"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n\r\n").encode()
    with ChatServer(ServeOptions(max_upload_bytes=1000)) as srv, \
            socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        sock.sendall(head + b"x" * size)
        reply = sock.makefile("rb")
        assert reply.readline().startswith(b"HTTP/1.1 400")
        headers = list(iter(reply.readline, b"\r\n"))
        length = next(int(h.split(b":")[1]) for h in headers if h.lower().startswith(b"content-length"))
        assert b"File is too large" in reply.read(length)
        sock.sendall(b"GET /v1/files HTTP/1.1\r\nHost: x\r\n\r\n")  # the same connection
        assert reply.readline().startswith(b"HTTP/1.1 200")


def test_bad_uploads_get_openai_errors() -> None:
    with ChatServer(ServeOptions()) as srv, httpx.Client(timeout=10) as client:
        url = f"{srv.base_url}/files"
        jsonl = {"file": ("in.jsonl", INPUT)}
        cases = [
            ({"data": {"purpose": "batch"}, "files": {"file": ("in.csv", INPUT)}}, "Must be .jsonl"),
            ({"data": {"purpose": "nonsense"}, "files": jsonl}, "Invalid value for 'purpose'"),
            ({"files": jsonl}, "Missing required parameter: 'purpose'"),
            ({"data": {"purpose": "batch"}, "files": {"other": ("in.jsonl", INPUT)}},
             "Missing required parameter: 'file'"),
            ({"json": {"purpose": "batch"}}, "must be multipart/form-data"),
            ({"content": b"--x\r\nno end", "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
             "could not be parsed"),
            ({"data": {"purpose": "batch", "expires_after[anchor]": "created_at",
                       "expires_after[seconds]": "10"}, "files": jsonl}, "expires_after[seconds]"),
        ]
        for request, fragment in cases:
            assert_openai_error(client.post(url, **request), 400, fragment)
        assert client.get(url).json()["data"] == []  # nothing was stored
        r = client.put(url)
        assert_openai_error(r, 405, "not allowed")
        assert r.headers["allow"] == "GET, POST"
        assert_openai_error(client.get(f"{url}/file-x/content/more"), 404, "Invalid URL")


def test_expires_after_sets_the_expiry() -> None:
    with ChatServer(ServeOptions()) as srv, sdk_for(srv) as sdk:
        created = sdk.files.create(file=("in.jsonl", io.BytesIO(INPUT)), purpose="batch",
                                   expires_after={"anchor": "created_at", "seconds": 3600})
        assert created.expires_at - created.created_at in (3600, 3601)


def test_without_the_batch_api_files_are_an_unknown_route() -> None:
    with ChatServer(ServeOptions(batch_api=False)) as srv, sdk_for(srv) as sdk:
        with pytest.raises(openai.NotFoundError, match=r"Invalid URL \(POST /v1/files\)"):
            sdk.files.create(file=("in.jsonl", io.BytesIO(INPUT)), purpose="batch")
        with pytest.raises(openai.NotFoundError, match="Invalid URL"):
            sdk.batches.list()


def test_files_live_in_a_temp_dir_removed_at_shutdown() -> None:
    with ChatServer(ServeOptions()) as srv, sdk_for(srv) as sdk:
        assert srv.state.files.directory is None  # nothing on disk until a file exists
        sdk.files.create(file=("in.jsonl", io.BytesIO(INPUT)), purpose="batch")
        directory = srv.state.files.directory
        assert directory is not None and len(list(directory.iterdir())) == 1
    assert not directory.exists()
