"""A batch's results as one file (``batch/results.py``): output and error files
downloaded from ``ChatServer`` and merged, one line per ``custom_id``, atomically."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from assisters.batch.results import ResultsNotReady, custom_ids_of, download_results, merge_results
from assisters.batch.waiting import PollPolicy, wait_for_batch
from assisters.errors import ExitStatus, ProtocolError, RequestError
from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.batch.helpers import batch_client, input_file
from tests.server.helpers import batch_lines, request_line

FAST = PollPolicy(first=0.01, longest=0.05)


def result(custom_id: str, text: str = "ok", status: int = 200) -> dict[str, object]:
    return {"id": f"batch_req_{custom_id}", "custom_id": custom_id,
            "response": {"status_code": status, "request_id": "r", "body": {"text": text}}, "error": None}


def test_results_merge_the_output_and_error_files_as_the_provider_wrote_them(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(batch_lines(request_line("a", "one"), request_line("b", "two", model="nope"),
                                 request_line("c", "three")))
    with ChatServer(ServeOptions()) as srv, batch_client(srv.base_url) as client:
        done = wait_for_batch(client, client.create(client.upload(path)["id"])["id"], poll=FAST)
        provider = {kind: srv.state.files.get(done[f"{kind}_file_id"]).path.read_bytes().splitlines()
                    for kind in ("output", "error")}
        dest = tmp_path / "results.jsonl"
        report = download_results(client, [done], dest)
        lines = dest.read_bytes().splitlines()
        assert lines == provider["output"] + provider["error"]  # byte for byte
        assert [orjson.loads(line)["custom_id"] for line in lines] == ["a", "c", "b"]
        assert (report.lines, report.from_output, report.from_errors) == (3, 2, 1)

        ordered = download_results(client, [done], dest, order=custom_ids_of(path))
        assert [orjson.loads(line)["custom_id"] for line in dest.read_bytes().splitlines()] == ["a", "b", "c"]
        assert (ordered.lines, ordered.filled, ordered.unexpected) == (3, [], 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "results.jsonl"]  # no scratch left


def test_a_cancelled_batch_gives_a_line_for_every_request_when_ordered(tmp_path: Path) -> None:
    path = input_file(tmp_path, "a", "b")
    with ChatServer(ServeOptions(batch_delay=600)) as srv, batch_client(srv.base_url) as client:
        batch = client.create(client.upload(path)["id"])
        client.cancel(batch["id"])
        done = wait_for_batch(client, batch["id"], poll=FAST)
        dest = tmp_path / "results.jsonl"
        report = download_results(client, [done], dest, order=custom_ids_of(path))
    assert report.filled == ["q0", "q1"]
    lines = [orjson.loads(line) for line in dest.read_bytes().splitlines()]
    assert lines == [{"id": None, "custom_id": f"q{i}", "response": None,
                      "error": {"code": "batch_cancelled",
                                "message": "This request was not run: the batch was cancelled."}}
                     for i in range(2)]


def test_results_are_refused_while_running_and_after_failing(tmp_path: Path) -> None:
    with ChatServer(ServeOptions(batch_delay=600)) as srv, batch_client(srv.base_url) as client:
        running = client.create(client.upload(input_file(tmp_path, "a"))["id"])
        waiting = r"is still validating: wait for it with `assisters batch results batch_\w+ --wait`, or ask"
        with pytest.raises(ResultsNotReady, match=waiting) as caught:
            download_results(client, [running], tmp_path / "out.jsonl")
        assert caught.value.status == ExitStatus.TEMPORARY
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"custom_id": "a"\n')
    with ChatServer(ServeOptions()) as srv, batch_client(srv.base_url) as client:
        failed = wait_for_batch(client, client.create(client.upload(bad)["id"])["id"], poll=FAST)
        reason = r"failed, so it has no results: line 1: This line is not parseable as valid JSON\."
        with pytest.raises(ResultsNotReady, match=reason + r" \(invalid_json_line\)") as caught:
            download_results(client, [failed], tmp_path / "out.jsonl")
        assert caught.value.status == ExitStatus.REJECTED
    assert not (tmp_path / "out.jsonl").exists()


def test_merge_drops_duplicates_fills_gaps_and_keeps_strangers_last(tmp_path: Path) -> None:
    output, errors = tmp_path / "output", tmp_path / "errors"
    output.write_bytes(batch_lines(result("b"), result("x"), result("a")) + b"\n")
    crlf = batch_lines(result("a", "again", 500), result("d", "bad", 400)).replace(b"\n", b"\r\n")
    errors.write_bytes(crlf)
    dest = tmp_path / "merged.jsonl"
    report = merge_results([("output", output), ("error", errors)], dest, order=["a", "b", "c", "d"])
    ids = [orjson.loads(line)["custom_id"] for line in dest.read_bytes().splitlines()]
    assert ids == ["a", "b", "c", "d", "x"]
    assert (report.filled, report.duplicates, report.unexpected) == (["c"], 1, 1)
    assert orjson.loads(dest.read_bytes().splitlines()[2])["error"]["code"] == "result_missing"
    assert b"\r" not in dest.read_bytes()

    report = merge_results([("error", errors)], dest)  # only an error file; the provider's order
    assert [orjson.loads(line)["custom_id"] for line in dest.read_bytes().splitlines()] == ["a", "d"]
    assert (report.from_output, report.from_errors) == (0, 2)
    merge_results([], dest)
    assert dest.read_bytes() == b""


def test_a_line_that_is_not_a_result_leaves_the_old_file(tmp_path: Path) -> None:
    output = tmp_path / "output"
    output.write_bytes(batch_lines(result("a")) + b"not json\n")
    dest = tmp_path / "merged.jsonl"
    dest.write_bytes(b"old\n")
    with pytest.raises(ProtocolError, match="line 2 of the output file is not a Batch output line"):
        merge_results([("output", output)], dest)
    assert dest.read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged.jsonl", "output"]


def test_custom_ids_of_an_input_file(tmp_path: Path) -> None:
    path = input_file(tmp_path, "a", "b", "c")
    assert custom_ids_of(path) == ["q0", "q1", "q2"]
    path.write_bytes(b'{"custom_id": "a"}\n\n{"body": {}}\n')
    with pytest.raises(RequestError, match=r"in\.jsonl:3: not a Batch request line"):
        custom_ids_of(path)
    with pytest.raises(RequestError, match="cannot read"):
        custom_ids_of(tmp_path / "missing.jsonl")


def test_an_unwritable_destination_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RequestError, match=r"cannot write .*nowhere/merged\.jsonl"):
        merge_results([], tmp_path / "nowhere" / "merged.jsonl")
