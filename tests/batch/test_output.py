"""OUTPUT: whole lines, torn-line repair, the resume index, atomic rewrites, input order."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from assisters import redact
from assisters.batch.output import OutputWriter, ReorderBuffer, drop_lines, scan_output
from assisters.errors import AssistersError, RequestError


def ok(custom_id: str) -> bytes:
    return orjson.dumps({"id": "batch_req_1", "custom_id": custom_id,
                         "response": {"status_code": 200, "request_id": None, "body": {}},
                         "error": None}) + b"\n"


def bad(custom_id: str) -> bytes:
    return orjson.dumps({"id": "batch_req_2", "custom_id": custom_id, "response": None,
                         "error": {"code": "temporary", "message": "x"}}) + b"\n"


def http_bad(custom_id: str) -> bytes:
    return orjson.dumps({"id": "batch_req_3", "custom_id": custom_id,
                         "response": {"status_code": 400, "request_id": None, "body": {}},
                         "error": None}) + b"\n"


def test_the_index_splits_done_and_failed(tmp_path: Path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(ok("a") + bad("b") + http_bad("c") + b"\n")
    index = scan_output(str(path))
    assert (index.done, index.failed, index.lines, index.repaired) == ({"a", "b", "c"}, {"b", "c"}, 3, False)
    assert scan_output(str(tmp_path / "absent.jsonl")).done == set()


@pytest.mark.parametrize("cut", [1, 10, len(ok("z")) - 2])
def test_a_torn_last_line_is_cut_away(tmp_path: Path, cut: int):
    path = tmp_path / "out.jsonl"
    path.write_bytes(ok("a") + ok("z")[:cut])
    assert scan_output(str(path), repair=False).repaired
    assert path.read_bytes() == ok("a") + ok("z")[:cut]  # --dry-run changes nothing
    index = scan_output(str(path))
    assert index.repaired and index.done == {"a"}
    assert path.read_bytes() == ok("a")


def test_a_whole_last_line_without_its_newline_is_kept(tmp_path: Path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(ok("a") + ok("b")[:-1])
    assert scan_output(str(path)).done == {"a", "b"}
    assert path.read_bytes() == ok("a") + ok("b")


def test_a_line_that_is_not_an_output_line_is_refused(tmp_path: Path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(ok("a") + b'{"messages": []}\n')
    with pytest.raises(RequestError, match=r"out.jsonl:2: not a batch output line"):
        scan_output(str(path))


def test_drop_lines_rewrites_atomically_and_keeps_the_rest_in_order(tmp_path: Path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(ok("a") + bad("b") + ok("c") + bad("d"))
    before = path.stat().st_ino
    assert drop_lines(str(path), {"b", "d"}) == 2
    assert path.read_bytes() == ok("a") + ok("c")
    assert path.stat().st_ino != before  # a new file renamed over the old one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_the_writer_appends_whole_scrubbed_lines_and_locks_the_file(tmp_path: Path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(ok("a"))
    redact.register("sk-output-test-key-123456")
    with OutputWriter(str(path), io.BytesIO()) as writer:
        writer.write({"custom_id": "b", "echo": "sk-output-test-key-123456"})
        with pytest.raises(AssistersError, match="being written by another batch run"):
            OutputWriter(str(path), io.BytesIO())
    assert path.read_bytes() == ok("a") + b'{"custom_id":"b","echo":"[REDACTED]"}\n'
    stdout = io.BytesIO()
    OutputWriter(None, stdout).write({"custom_id": "c"})
    assert stdout.getvalue() == b'{"custom_id":"c"}\n'


def test_the_reorder_buffer_writes_in_order_and_holds_no_more_than_its_capacity():
    written: list[int] = []
    buffer = ReorderBuffer(lambda line: written.append(line["n"]), capacity=3)
    buffer.add(2, {"n": 2})
    buffer.add(1, None)  # ended without a line
    assert not buffer.full and written == []
    buffer.add(3, {"n": 3})
    assert buffer.full
    buffer.add(0, {"n": 0})
    assert written == [0, 2, 3] and not buffer.full
    buffer.add(5, {"n": 5})
    buffer.flush()
    assert written == [0, 2, 3, 5]
