"""``batch status``, ``results``, ``cancel`` and ``list`` as real processes: every
state a batch reaches (against ``ChatServer``, and each state of the table against a
server that answers it), what each exits with, partial results, the order of the
results, atomic downloads, polling through rate limits, and the failures a user meets."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from pytest_httpserver import HTTPServer

from assisters.batch.states import STATES
from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.batch.helpers import (
    FAST,
    batch_cli,
    batch_client,
    batch_run,
    http_reply,
    input_file,
    output_lines,
    prompts_file,
    raw_http_server,
)
from tests.conftest import SECRET, cli_command

CREATED = 1_767_225_600  # 2026-01-01 00:00Z


def batch_object(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": "batch_1", "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
            "input_file_id": "file-in", "completion_window": "24h", "status": status,
            "output_file_id": None, "error_file_id": None, "created_at": CREATED,
            "expires_at": CREATED + 86400, "request_counts": {"total": 2, "completed": 1, "failed": 0},
            "metadata": None, **fields}


def result_line(custom_id: str, text: str = "ok") -> bytes:
    body = {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
                                                      "message": {"role": "assistant", "content": text}}]}
    line = {"id": f"batch_req_{custom_id}", "custom_id": custom_id,
            "response": {"status_code": 200, "request_id": "r", "body": body}, "error": None}
    return orjson.dumps(line) + b"\n"


def stub_env(httpserver: HTTPServer) -> dict[str, str]:
    return {"ASSISTERS_BASE_URL": httpserver.url_for("/v1"), "ASSISTERS_API_KEY": SECRET,
            "ASSISTERS_MAX_RETRIES": "0"}


def cli(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(cli_command("batch", *args), capture_output=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, **env}, cwd=cwd, timeout=120)


# The table of states, each answered by a server (finalizing and cancelling pass too
# quickly on the local server to be caught there).
STATUS_EXITS = {"validating": 75, "in_progress": 75, "finalizing": 75, "cancelling": 75, "completed": 0,
                "expired": 69, "cancelled": 69, "failed": 65, "queued": 75}
RESULTS_EXITS = {"validating": 75, "in_progress": 75, "finalizing": 75, "cancelling": 75, "completed": 0,
                 "expired": 69, "cancelled": 69, "failed": 65, "queued": 75}


def test_the_tables_cover_every_state() -> None:
    assert set(STATUS_EXITS) == set(RESULTS_EXITS) == {*STATES, "queued"}


@pytest.mark.parametrize("state", list(STATUS_EXITS))
def test_status_and_results_in_every_state(httpserver: HTTPServer, tmp_path: Path, state: str) -> None:
    fields: dict[str, Any] = {}
    if state in ("completed", "expired", "cancelled"):
        fields = {"output_file_id": "file-out", f"{state}_at": CREATED + 3600}
    if state == "failed":
        fields = {"errors": {"object": "list", "data": [
            {"code": "invalid_json_line", "message": "This line is not parseable as valid JSON.",
             "line": 2}]}}
    httpserver.expect_request("/v1/batches/batch_1").respond_with_json(batch_object(state, **fields))
    httpserver.expect_request("/v1/files/file-out/content").respond_with_data(result_line("a"))
    env = stub_env(httpserver)
    status = cli(env, "status", "batch_1")
    as_json = cli(env, "status", "--json", "batch_1")
    results = cli(env, "results", "batch_1", "-o", str(tmp_path / "out.jsonl"))

    assert status.returncode == as_json.returncode == STATUS_EXITS[state]
    line = f"batch_1 {state} 1/2 done; created 2026-01-01 00:00Z, expires 2026-01-02 00:00Z"
    if "output_file_id" in fields:
        line += ", ended 2026-01-01 01:00Z"
    assert status.stdout.decode() == line + "\n"
    assert orjson.loads(as_json.stdout) == batch_object(state, **fields)
    if state == "failed":
        expected = ("assisters: batch batch_1 failed: line 2: This line is not parseable as valid JSON. "
                    "(invalid_json_line)\n")
        assert status.stderr.decode() == as_json.stderr.decode() == expected
    else:
        assert status.stderr == as_json.stderr == b""  # the state on stdout says it all

    assert results.returncode == RESULTS_EXITS[state], results.stderr
    [message] = results.stderr.decode().splitlines() or [""]
    if state in ("completed", "expired", "cancelled"):
        assert (tmp_path / "out.jsonl").read_bytes() == result_line("a")
    else:
        assert not (tmp_path / "out.jsonl").exists()
    if STATUS_EXITS[state] == 75:
        assert message == (f"assisters: error: batch batch_1 is still {state}: wait for it with "
                           "`assisters batch results batch_1 --wait`, or ask again once "
                           "`assisters batch status batch_1` no longer exits 75")
    elif state == "failed":
        assert message == ("assisters: error: batch batch_1 failed, so it has no results: line 2: This line "
                           "is not parseable as valid JSON. (invalid_json_line)")
    elif state in ("expired", "cancelled"):
        assert message == (f"assisters: error: batch batch_1 ended {state} before every request ran: "
                           f"1 result lines in {tmp_path / 'out.jsonl'}, 0 of them errors")
    else:
        assert message == ""


def test_a_batch_through_validating_cancelling_and_cancelled(tmp_path: Path) -> None:
    source = input_file(tmp_path, "a", "b")
    with ChatServer(ServeOptions(batch_delay=600)) as srv:
        batch_id = batch_cli(srv, "submit", str(source)).stdout.decode().strip()
        validating = batch_cli(srv, "status", batch_id)
        early = batch_cli(srv, "results", batch_id, "-o", str(tmp_path / "out.jsonl"))
        cancelled = batch_cli(srv, "cancel", batch_id)
        waited = batch_cli(srv, "results", batch_id, "--wait", *FAST, "--ordered", "-o",
                           str(tmp_path / "out.jsonl"))
        after = batch_cli(srv, "status", batch_id)
        again = batch_cli(srv, "cancel", batch_id)
    assert (validating.returncode, validating.stderr) == (75, b"")
    assert validating.stdout.decode().startswith(f"{batch_id} validating 0/0 done; created ")
    assert (early.returncode, early.stdout) == (75, b"")
    assert early.stderr.decode() == (f"assisters: error: batch {batch_id} is still validating: wait for it "
                                     f"with `assisters batch results {batch_id} --wait`, or ask again once "
                                     f"`assisters batch status {batch_id}` no longer exits 75\n")
    assert (cancelled.returncode, cancelled.stderr) == (0, b"")
    assert cancelled.stdout.decode().startswith(f"{batch_id} cancelling ")
    assert waited.returncode == 69
    assert [line["error"]["code"] for line in output_lines(tmp_path / "out.jsonl")] == ["batch_cancelled"] * 2
    assert (after.returncode, after.stderr) == (69, b"")
    assert after.stdout.decode().startswith(f"{batch_id} cancelled ")
    assert (again.returncode, again.stdout, again.stderr) == (0, after.stdout, b"")  # again: harmless


def test_a_batch_seen_in_progress_then_completed(tmp_path: Path) -> None:
    source = prompts_file(tmp_path / "q.txt", 20)
    with ChatServer(ServeOptions(batch_delay=1.0)) as srv:
        batch_id = batch_cli(srv, "submit", "--prompts", str(source), "-m", "echo").stdout.decode().strip()
        seen: dict[str, int] = {}
        while "completed" not in seen:
            result = batch_cli(srv, "status", batch_id)
            seen[result.stdout.decode().split()[1]] = result.returncode
            time.sleep(0.05)
        done = batch_cli(srv, "results", batch_id)
    assert seen["completed"] == 0 and all(seen[state] == 75 for state in seen if state != "completed")
    assert set(seen) <= {"validating", "in_progress", "finalizing", "completed"}
    assert (done.returncode, done.stderr) == (0, b"")
    assert sorted(orjson.loads(line)["custom_id"] for line in done.stdout.splitlines()) == sorted(
        f"line-{n}" for n in range(1, 21))


def test_an_expired_batch_keeps_what_ran_and_says_so(tmp_path: Path) -> None:
    source = input_file(tmp_path, "a", "b")
    with ChatServer(ServeOptions(batch_delay=600, batch_window=0.3)) as srv:
        batch_id = batch_cli(srv, "submit", str(source)).stdout.decode().strip()
        results = batch_cli(srv, "results", batch_id, "--wait", *FAST, "-o", str(tmp_path / "out.jsonl"))
        status = batch_cli(srv, "status", batch_id)
    assert status.returncode == 69 and f"{batch_id} expired 2/2 done, 2 failed" in status.stdout.decode()
    assert results.returncode == 69
    assert results.stderr.decode() == (f"assisters: error: batch {batch_id} ended expired before every "
                                       f"request ran: 2 result lines in {tmp_path / 'out.jsonl'}, 2 of them "
                                       "errors\n")
    assert [line["error"]["code"] for line in output_lines(tmp_path / "out.jsonl")] == ["batch_expired"] * 2


def test_a_failed_batch_shows_the_providers_errors(tmp_path: Path) -> None:
    source = prompts_file(tmp_path / "q.txt", 2)
    with ChatServer(ServeOptions(max_batch_requests=1)) as srv:
        batch_id = batch_cli(srv, "submit", "--prompts", str(source), "-m", "echo", "--wait", *FAST) \
            .stdout.decode().strip()
        status = batch_cli(srv, "status", batch_id)
        results = batch_cli(srv, "results", batch_id, "-o", str(tmp_path / "out.jsonl"))
    reason = ("line 2: The input file has more than 1 requests, the most one batch may hold; split it into "
              "several files. (too_many_requests)")
    assert status.returncode == 65
    assert status.stderr.decode() == f"assisters: batch {batch_id} failed: {reason}\n"
    assert (results.returncode, results.stdout) == (65, b"")
    assert results.stderr.decode() == \
        f"assisters: error: batch {batch_id} failed, so it has no results: {reason}\n"
    assert not (tmp_path / "out.jsonl").exists()


def test_results_in_input_order_from_the_input_or_from_the_batch(tmp_path: Path) -> None:
    source = prompts_file(tmp_path / "q.txt", 6)
    with ChatServer(ServeOptions(tokens_per_second=0)) as srv:
        batch_id = batch_cli(srv, "submit", "--prompts", str(source), "-m", "echo", "--wait", *FAST) \
            .stdout.decode().strip()
        given = batch_cli(srv, "results", batch_id, "--ordered", "--input", str(source), "--prompts")
        own = batch_cli(srv, "results", batch_id, "--ordered")  # the batch's own input file
        bad = batch_cli(srv, "results", batch_id, "--input", str(source))
    ids = [f"line-{n}" for n in range(1, 7)]
    assert (given.returncode, given.stderr) == (own.returncode, own.stderr) == (0, b"")
    assert [orjson.loads(line)["custom_id"] for line in given.stdout.splitlines()] == ids
    assert own.stdout == given.stdout
    assert (bad.returncode, bad.stdout) == (2, b"")
    assert b"--input gives the order of --ordered: add --ordered" in bad.stderr


def test_several_ids_the_least_finished_decides(tmp_path: Path) -> None:
    with ChatServer(ServeOptions(batch_delay=600)) as srv, batch_client(srv.base_url) as client:
        file_id = client.upload(input_file(tmp_path, "a"))["id"]
        running, stopped = client.create(file_id)["id"], client.create(file_id)["id"]
        client.cancel(stopped)
        while client.retrieve(stopped)["status"] != "cancelled":
            time.sleep(0.01)
        both = batch_cli(srv, "status", stopped, running)
        one = batch_cli(srv, "status", stopped)
        listed = batch_cli(srv, "list")
        limited = batch_cli(srv, "list", "--limit", "1", "--json")
    assert both.returncode == 75 and [line.split()[:2] for line in both.stdout.decode().splitlines()] == [
        [stopped, "cancelled"], [running, "validating"]]
    assert one.returncode == 69
    assert (listed.returncode, listed.stderr) == (0, b"")
    assert [line.split()[0] for line in listed.stdout.decode().splitlines()] == [stopped, running]  # newest
    assert [orjson.loads(line)["id"] for line in limited.stdout.splitlines()] == [stopped]


def test_a_missing_id_and_a_server_without_the_batch_api(tmp_path: Path) -> None:
    with ChatServer(ServeOptions()) as srv:
        missing = [batch_cli(srv, command, "batch_nope") for command in ("status", "results", "cancel")]
    with ChatServer(ServeOptions(batch_api=False)) as srv:
        absent = [batch_cli(srv, *args)
                  for args in (("status", "batch_x"), ("list",), ("results", "batch_x"))]
    for result in missing:
        assert (result.returncode, result.stdout) == (65, b"")
        [line] = result.stderr.decode().splitlines()
        assert line.startswith("assisters: error: no batch batch_nope at http://127.0.0.1:")
        assert line.endswith("(it may never have existed, have expired, or belong to another key): "
                             "HTTP 404: No batch found with id 'batch_nope'.")
    for result in absent:
        assert (result.returncode, result.stdout) == (65, b"")
        [line] = result.stderr.decode().splitlines()
        assert "has no Batch API" in line and line.endswith("send the requests from this machine with "
                                                            "`assisters batch run`")


def test_polling_waits_out_rate_limits_as_retry_after_says(tmp_path: Path) -> None:
    source = input_file(tmp_path, "a")
    with ChatServer(ServeOptions(batch_delay=0.3)) as srv, batch_client(srv.base_url) as client:
        batch_id = client.create(client.upload(source)["id"])["id"]
        options = srv.state.options  # from now on, the next two Batch API requests get 429
        options.api_fail_times, options.retry_after = srv.state.api_requests_seen + 2, 0.2
        options.api_fail_status = 429
        result = batch_cli(srv, "results", batch_id, "--wait", *FAST, "-o", str(tmp_path / "out.jsonl"))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 2
    assert all(" (retry after 0.2 s); retrying in 0.2 s (attempt " in line for line in lines)
    assert [line["custom_id"] for line in output_lines(tmp_path / "out.jsonl")] == ["q0"]


def test_an_interrupted_download_leaves_no_half_file(tmp_path: Path) -> None:
    batch = orjson.dumps(batch_object("completed", output_file_id="file-out", completed_at=CREATED))
    content = result_line("a") * 2000

    def answer(request: bytes) -> bytes:
        if request.startswith(b"GET /v1/batches/"):
            return http_reply(batch)
        return http_reply(content[: len(content) // 2], length=len(content))  # hangs up half-way

    out = tmp_path / "out.jsonl"
    out.write_bytes(b"the previous results\n")
    with raw_http_server(answer) as base_url:
        env = {"ASSISTERS_BASE_URL": base_url, "ASSISTERS_API_KEY": SECRET, "ASSISTERS_MAX_RETRIES": "1"}
        result = cli(env, "results", "batch_1", "-o", str(out))
        to_stdout = cli(env, "results", "batch_1", cwd=tmp_path)
    assert result.returncode == 75
    assert result.stderr.decode().splitlines()[-1].endswith("(gave up after 2 attempts)")
    assert out.read_bytes() == b"the previous results\n"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # no temporary file left
    assert (to_stdout.returncode, to_stdout.stdout) == (75, b"")  # nothing half-written to stdout either


def test_batch_run_finishes_what_an_expired_batch_left(tmp_path: Path) -> None:
    """One output format on both roads: ``batch run --retry-failed`` sends again, from
    this machine, the requests a provider's batch did not run, and completes its file."""
    source = input_file(tmp_path, "a", "b", "c")
    out = tmp_path / "out.jsonl"
    with ChatServer(ServeOptions(batch_delay=600, batch_window=0.3, tokens_per_second=0)) as srv:
        batch_id = batch_cli(srv, "submit", str(source)).stdout.decode().strip()
        assert batch_cli(srv, "results", batch_id, "--wait", *FAST, "-o", str(out)).returncode == 69
        finished = batch_run(srv, str(source), "-o", str(out), "--retry-failed")
    assert finished.returncode == 0, finished.stderr
    lines = output_lines(out)
    assert sorted(line["custom_id"] for line in lines) == ["q0", "q1", "q2"]
    assert all(line["response"]["status_code"] == 200 for line in lines)
