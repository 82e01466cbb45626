"""The Batches API (``/v1/batches``), driven by the official ``openai`` SDK as an
independent client: every state a batch can reach, its files, and the errors.

Over real loopback sockets. Timing is only ever checked with a generous lower
bound, never an upper one, so a slow machine cannot make them flaky.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import time
from typing import Any

import httpx
import pytest

from assisters.server.app import ChatServer
from assisters.server.models import lorem_tokens
from assisters.server.options import ServeOptions
from tests.server.helpers import KEY, assert_openai_error, batch_lines, request_line, user, wait_for_batch

openai = pytest.importorskip("openai")

CHAT = "/v1/chat/completions"


def sdk_for(srv: ChatServer) -> openai.OpenAI:
    return openai.OpenAI(api_key=KEY, base_url=srv.base_url, max_retries=0)


def submit(sdk: openai.OpenAI, data: bytes, endpoint: str = CHAT, **fields: Any) -> Any:
    upload = sdk.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    return sdk.batches.create(input_file_id=upload.id, endpoint=endpoint, completion_window="24h", **fields)


def lines_of(sdk: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [json.loads(line) for line in sdk.files.content(file_id).text.splitlines()]


def same_but_ids(a: dict[str, Any], b: dict[str, Any]) -> bool:
    drop = {"id", "created"}
    return {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}


def test_a_batch_runs_through_its_states_and_writes_both_files() -> None:
    bad_body = {"custom_id": "no-messages", "method": "POST", "url": CHAT, "body": {"model": "echo"}}
    data = batch_lines(request_line("one", "hello there"), request_line("two", "x", model="nope"),
                       request_line("three", "general kenobi", max_tokens=1), bad_body)
    with ChatServer(ServeOptions(batch_delay=0.4)) as srv, sdk_for(srv) as sdk:
        created = submit(sdk, data, metadata={"job": "nightly"})
        raw = httpx.get(f"{srv.base_url}/batches/{created.id}").json()
        assert set(raw) == set(openai.types.Batch.model_fields)
        assert re.fullmatch(r"batch_[0-9a-f]{32}", created.id)
        assert (created.status, created.endpoint, created.completion_window) == ("validating", CHAT, "24h")
        assert created.expires_at == created.created_at + 86400
        assert created.request_counts.total == 0 and created.metadata == {"job": "nightly"}
        seen: list[str] = []
        done = wait_for_batch(sdk, created.id, seen=seen)
        assert seen[0] == "validating" and "in_progress" in seen and seen[-1] == "completed"
        assert done.created_at <= done.in_progress_at <= done.finalizing_at <= done.completed_at
        assert (done.failed_at, done.cancelled_at, done.expired_at, done.errors) == (None, None, None, None)
        counts = done.request_counts
        assert (counts.total, counts.completed, counts.failed) == (4, 2, 2)
        assert done.model is None  # the requests name more than one model

        output = lines_of(sdk, done.output_file_id)
        assert [line["custom_id"] for line in output] == ["one", "three"]
        for line in output:
            assert re.fullmatch(r"batch_req_[0-9a-f]{32}", line["id"]) and line["error"] is None
            assert line["response"]["status_code"] == 200
            assert re.fullmatch(r"[0-9a-f]{32}", line["response"]["request_id"])
        # Each body is what the chat endpoint answers to the same request.
        asked = ({"model": "echo", "messages": user("hello there")},
                 {"model": "echo", "messages": user("general kenobi"), "max_tokens": 1})
        for line, body in zip(output, asked, strict=True):
            direct = httpx.post(f"{srv.base_url}/chat/completions", json=body).json()
            assert same_but_ids(line["response"]["body"], direct)
        assert output[1]["response"]["body"]["choices"][0]["finish_reason"] == "length"

        errors = {line["custom_id"]: line for line in lines_of(sdk, done.error_file_id)}
        assert list(errors) == ["two", "no-messages"]
        for custom_id, body in (("two", request_line("two", "x", model="nope")["body"]),
                                ("no-messages", {"model": "echo"})):
            direct = httpx.post(f"{srv.base_url}/chat/completions", json=body)
            response = errors[custom_id]["response"]
            assert (response["status_code"], response["body"]) == (direct.status_code, direct.json())
            assert errors[custom_id]["error"] is None
        assert errors["two"]["response"]["status_code"] == 404

        usage = done.usage
        assert usage.input_tokens == 4 and usage.output_tokens == 3  # "hello there" + "general"
        assert usage.total_tokens == usage.input_tokens + usage.output_tokens
        files = {f.id: f for f in sdk.files.list(purpose="batch_output")}
        assert files[done.output_file_id].filename == f"{done.id}_output.jsonl"


def test_one_model_is_named_and_no_error_file_when_all_succeed() -> None:
    with ChatServer(ServeOptions()) as srv, sdk_for(srv) as sdk:
        done = wait_for_batch(sdk, submit(sdk, batch_lines(request_line("a", "hi"))).id)
        assert (done.status, done.model, done.error_file_id) == ("completed", "echo", None)
        assert [line["custom_id"] for line in lines_of(sdk, done.output_file_id)] == ["a"]


def test_a_bad_input_file_fails_the_batch_naming_each_line() -> None:
    data = (batch_lines(request_line("a", "fine"))
            + b'{"custom_id": "b", "method": "POST"\n'
            + batch_lines({"method": "POST", "url": CHAT, "body": {}},
                          request_line("a", "again"),
                          request_line("c", "elsewhere", url="/v1/embeddings"),
                          {**request_line("d", "get"), "method": "GET"},
                          {"custom_id": "e", "method": "POST", "url": CHAT, "body": "text"})
            + b"[1, 2]\n")
    with ChatServer(ServeOptions()) as srv, sdk_for(srv) as sdk:
        done = wait_for_batch(sdk, submit(sdk, data).id)
        assert done.status == "failed" and done.failed_at is not None and done.in_progress_at is None
        assert (done.output_file_id, done.error_file_id) == (None, None)
        problems = [(e.line, e.code, e.param) for e in done.errors.data]
        assert problems == [
            (2, "invalid_json_line", None),
            (3, "missing_required_parameter", "custom_id"),
            (4, "duplicate_custom_id", "custom_id"),
            (5, "invalid_url", "url"),
            (6, "invalid_request", "method"),
            (7, "invalid_request", "body"),
            (8, "invalid_request", None),
        ]
        assert "also used on line 1" in done.errors.data[2].message
        assert done.errors.object == "list"


@pytest.mark.parametrize(("data", "code"), [(b"", "empty_file"), (b"\n \n", "empty_file"),
                                             (batch_lines(*(request_line(str(i), "x") for i in range(3))),
                                              "too_many_requests")])
def test_empty_or_oversized_input_fails(data: bytes, code: str) -> None:
    with ChatServer(ServeOptions(max_batch_requests=2)) as srv, sdk_for(srv) as sdk:
        done = wait_for_batch(sdk, submit(sdk, data).id)
        assert done.status == "failed"
        assert [e.code for e in done.errors.data] == [code]


def test_cancel_while_validating_ends_cancelled_with_no_results() -> None:
    with ChatServer(ServeOptions(batch_delay=600)) as srv, sdk_for(srv) as sdk:
        batch = submit(sdk, batch_lines(request_line("a", "hi")))
        cancelling = sdk.batches.cancel(batch.id)
        assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at is not None
        done = wait_for_batch(sdk, batch.id)
        assert done.status == "cancelled" and done.cancelled_at is not None
        assert (done.in_progress_at, done.output_file_id, done.error_file_id) == (None, None, None)
        assert sdk.batches.cancel(batch.id).status == "cancelled"  # again: harmless


def test_cancel_in_progress_keeps_the_partial_results() -> None:
    # 2.4 s validating, then one request every 0.8 s: the cancel lands after the first.
    data = batch_lines(*(request_line(f"r{i}", f"text {i}") for i in range(3)))
    with ChatServer(ServeOptions(batch_delay=2.4)) as srv, sdk_for(srv) as sdk:
        batch = submit(sdk, data)
        while (current := sdk.batches.retrieve(batch.id)).request_counts.completed < 1:
            assert current.status in ("validating", "in_progress")
            time.sleep(0.01)
        sdk.batches.cancel(batch.id)
        done = wait_for_batch(sdk, batch.id)
        assert done.status == "cancelled" and done.in_progress_at <= done.cancelling_at <= done.cancelled_at
        counts = done.request_counts
        assert counts.total == 3 and 1 <= counts.completed < 3 and counts.failed == 0
        output = lines_of(sdk, done.output_file_id)
        assert [line["custom_id"] for line in output] == [f"r{i}" for i in range(counts.completed)]
        assert done.error_file_id is None


def test_a_batch_past_its_window_expires_with_the_rest_in_the_error_file() -> None:
    data = batch_lines(*(request_line(f"r{i}", "x") for i in range(3)))
    with ChatServer(ServeOptions(batch_delay=600, batch_window=0.3)) as srv, sdk_for(srv) as sdk:
        batch = submit(sdk, data)
        assert batch.expires_at == batch.created_at + 1
        done = wait_for_batch(sdk, batch.id)
        assert done.status == "expired" and done.expired_at is not None and done.output_file_id is None
        assert (done.request_counts.completed, done.request_counts.failed) == (0, 3)
        errors = lines_of(sdk, done.error_file_id)
        assert [line["custom_id"] for line in errors] == ["r0", "r1", "r2"]
        assert all(line["response"] is None and line["error"]["code"] == "batch_expired" for line in errors)


def test_cancel_of_an_ended_batch_and_unknown_ids_are_refused() -> None:
    with ChatServer(ServeOptions()) as srv, sdk_for(srv) as sdk:
        done = wait_for_batch(sdk, submit(sdk, batch_lines(request_line("a", "hi"))).id)
        with pytest.raises(openai.BadRequestError, match="Cannot cancel a batch with status 'completed'"):
            sdk.batches.cancel(done.id)
        missing = "batch_" + "0" * 32
        with pytest.raises(openai.NotFoundError, match=f"No batch found with id '{missing}'"):
            sdk.batches.retrieve(missing)
        with pytest.raises(openai.NotFoundError):
            sdk.batches.cancel(missing)
        assert sdk.batches.retrieve(done.id).status == "completed"


def test_list_pages_newest_first() -> None:
    with ChatServer(ServeOptions(batch_delay=600)) as srv, sdk_for(srv) as sdk:
        upload = sdk.files.create(file=("in.jsonl", io.BytesIO(batch_lines(request_line("a", "hi")))),
                                  purpose="batch")
        ids = [sdk.batches.create(input_file_id=upload.id, endpoint=CHAT, completion_window="24h").id
               for _ in range(3)]
        first = sdk.batches.list(limit=2)
        assert [b.id for b in first.data] == [ids[2], ids[1]] and first.has_more
        body = httpx.get(f"{srv.base_url}/batches", params={"limit": 2}).json()
        assert (body["object"], body["first_id"], body["last_id"]) == ("list", ids[2], ids[1])
        assert [b.id for b in sdk.batches.list(limit=2)] == ids[::-1]  # the SDK pages on with `after`
        last = httpx.get(f"{srv.base_url}/batches", params={"after": ids[1]}).json()
        assert ([b["id"] for b in last["data"]], last["has_more"]) == ([ids[0]], False)
        assert_openai_error(httpx.get(f"{srv.base_url}/batches", params={"limit": 101}), 400, "limit")
        assert_openai_error(httpx.get(f"{srv.base_url}/batches", params={"after": "batch_x"}), 404,
                            "No batch found")


def test_create_checks_its_parameters() -> None:
    with ChatServer(ServeOptions()) as srv, sdk_for(srv) as sdk, httpx.Client(timeout=10) as client:
        batch_file = sdk.files.create(file=("in.jsonl", io.BytesIO(b"{}\n")), purpose="batch").id
        other_file = sdk.files.create(file=("x.txt", io.BytesIO(b"x")), purpose="user_data").id
        url = f"{srv.base_url}/batches"
        good = {"input_file_id": batch_file, "endpoint": CHAT, "completion_window": "24h"}
        cases = [
            ({**good, "input_file_id": None}, 400, "Missing required parameter: 'input_file_id'"),
            ({**good, "input_file_id": "file-nope"}, 404, "No such File object: file-nope"),
            ({**good, "input_file_id": other_file}, 400, "purpose 'batch'"),
            ({**good, "endpoint": "/v1/embeddings"}, 400, "Invalid value for 'endpoint'"),
            ({**good, "completion_window": "48h"}, 400, "completion_window"),
            ({**good, "metadata": {str(i): "v" for i in range(17)}}, 400, "at most 16 pairs"),
            ({**good, "metadata": {"k": 1}}, 400, "metadata"),
            ({**good, "output_expires_after": {"anchor": "created_at", "seconds": 5}}, 400,
             "output_expires_after"),
        ]
        for body, status, fragment in cases:
            assert_openai_error(client.post(url, json=body), status, fragment)
        assert_openai_error(client.post(url, content=b"not json"), 400, "could not parse the JSON")
        assert client.get(url).json()["data"] == []  # none was created
        assert_openai_error(client.delete(f"{url}/batch_x"), 405, "not allowed")


def test_azure_endpoint_spelling_works_and_must_match_every_line() -> None:
    azure = "/chat/completions"
    with ChatServer(ServeOptions()) as srv, sdk_for(srv) as sdk:
        done = wait_for_batch(sdk, submit(sdk, batch_lines(request_line("a", "hi", url=azure)), azure).id)
        assert (done.status, done.endpoint) == ("completed", azure)
        mixed = batch_lines(request_line("a", "hi", url=azure), request_line("b", "hi"))
        failed = wait_for_batch(sdk, submit(sdk, mixed, azure).id)
        assert [(e.line, e.code) for e in failed.errors.data] == [(2, "invalid_url")]


def test_a_deleted_input_file_fails_the_batch() -> None:
    with ChatServer(ServeOptions(batch_delay=0.3)) as srv, sdk_for(srv) as sdk:
        batch = submit(sdk, batch_lines(request_line("a", "hi")))
        sdk.files.delete(batch.input_file_id)
        done = wait_for_batch(sdk, batch.id)
        assert done.status == "failed"
        assert [(e.code, e.param) for e in done.errors.data] == [("invalid_request", "input_file_id")]


def test_shutdown_stops_running_batches() -> None:
    with ChatServer(ServeOptions(batch_delay=600)) as srv, sdk_for(srv) as sdk:
        batch = submit(sdk, batch_lines(request_line("a", "hi")))
        record = srv.state.batches.get(batch.id)
    assert record is not None and record.runner is not None
    assert not record.runner.is_alive()
    assert record.status == "validating"  # left as it was: nothing is written after shutdown


def test_lorem_runs_unpaced_and_a_streaming_body_is_an_error_line() -> None:
    data = batch_lines(request_line("l", "x", model="lorem", seed=3, max_tokens=5),
                       request_line("s", "x", stream=True))
    with ChatServer(ServeOptions(tokens_per_second=0.001)) as srv, sdk_for(srv) as sdk:
        done = wait_for_batch(sdk, submit(sdk, data).id)  # at that pace, one paced token takes 1000 s
        [line] = lines_of(sdk, done.output_file_id)
        body = line["response"]["body"]
        assert body["choices"][0]["message"]["content"] == "".join(itertools.islice(lorem_tokens(3), 5))
        assert body["choices"][0]["finish_reason"] == "length"
        [error] = lines_of(sdk, done.error_file_id)
        assert error["custom_id"] == "s" and error["response"]["status_code"] == 400
        assert error["response"]["body"]["error"]["message"] == "Streaming is not supported in a batch."
