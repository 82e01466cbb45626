"""``batch submit`` and ``batch prepare`` as real processes against ``ChatServer``:
what is uploaded, the limits, --split, --wait and -o (the same results as ``batch
run``), Ctrl-C while waiting, retries, and every refusal a user meets."""

from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.batch.helpers import (
    FAST,
    batch_cli,
    batch_run,
    env_for,
    on_terminal,
    output_lines,
    prompts_file,
)
from tests.conftest import SECRET, cli_command, run_cli
from tests.server.helpers import batch_lines, request_line, user


def uploaded_lines(srv: ChatServer) -> list[list[dict[str, Any]]]:
    """The request lines of each batch the server holds, oldest first."""
    files = []
    for record in reversed(srv.state.batches.newest_first()):
        stored = srv.state.files.get(record.input_file_id)
        assert stored is not None
        files.append([orjson.loads(line) for line in stored.path.read_bytes().splitlines()])
    return files


def test_submit_uploads_what_prepare_prints_and_prints_the_id_alone(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(batch_lines(
        request_line("q1", "one"),
        {"custom_id": "q2", "body": {"messages": user("two"), "stream": True,  # no method, no url
                                     "stream_options": {"include_usage": True}}},
        {"messages": user("three"), "temperature": 1.5},  # a bare body: custom_id line-3
    ))
    chat = ("-m", "echo", "-s", "be brief", "-t", "0.2")
    with ChatServer(ServeOptions(batch_delay=600)) as srv:
        prepared = batch_cli(srv, "prepare", str(source), *chat)
        submitted = batch_cli(srv, "submit", str(source), *chat, "--metadata", "job=nightly",
                              "--metadata", "note=a=b")
        [record] = srv.state.batches.newest_first()
        stored = srv.state.files.get(record.input_file_id)
        assert stored is not None
        content = stored.path.read_bytes()
    assert (submitted.returncode, submitted.stderr) == (0, b"")
    assert submitted.stdout == record.id.encode() + b"\n"  # id=$(assisters batch submit ...) works
    assert (prepared.returncode, prepared.stderr) == (0, b"")
    assert content == prepared.stdout
    system = {"role": "system", "content": "be brief"}

    def line(custom_id: str, text: str, temperature: float) -> dict[str, Any]:
        body = {"model": "echo", "messages": [system, *user(text)], "temperature": temperature}
        return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}

    assert [orjson.loads(raw) for raw in content.splitlines()] == [
        line("q1", "one", 0.2), line("q2", "two", 0.2), line("line-3", "three", 1.5)]  # no stream fields
    assert (record.endpoint, record.completion_window, record.metadata) == (
        "/v1/chat/completions", "24h", {"job": "nightly", "note": "a=b"})
    assert (stored.purpose, stored.filename) == ("batch", "in.jsonl")


def test_prompts_on_stdin(tmp_path: Path) -> None:
    with ChatServer(ServeOptions(batch_delay=600)) as srv:
        result = batch_cli(srv, "submit", "--prompts", "-m", "echo", input=b"first\n\nthird\n")
        assert result.returncode == 0, result.stderr
        assert [[line["custom_id"] for line in part] for part in uploaded_lines(srv)] == [
            ["line-1", "line-3"]]
        [record] = srv.state.batches.newest_first()
        assert srv.state.files.get(record.input_file_id).filename == "stdin.jsonl"


def test_a_bad_input_sends_nothing(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(batch_lines(request_line("a", "x"), {"custom_id": "a", "body": {}},
                                   request_line("b", "y", url="/v1/embeddings")) + b"oops\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n\n")
    with ChatServer(ServeOptions()) as srv:
        bad = batch_cli(srv, "submit", str(source), "--wait", "-o", str(tmp_path / "out.jsonl"))
        nothing = batch_cli(srv, "submit", str(empty))
        prepared = batch_cli(srv, "prepare", str(source))
        assert srv.state.api_requests_seen == 0
        assert srv.state.files.listing() == []
    assert bad.returncode == 65 and bad.stdout == b""
    assert bad.stderr.decode().splitlines() == [
        f"{source}:2: the body has no messages",
        f"{source}:3: url '/v1/embeddings' is not supported; "
        "supported: /v1/chat/completions, /chat/completions",
        f"{source}:4: not JSON: unexpected character, expected a JSON value: line 1 column 1 (char 0)",
        f"assisters: error: {source}: 3 problems in the input; nothing was sent",
    ]
    assert (prepared.returncode, prepared.stdout, prepared.stderr) == (65, b"", bad.stderr)
    assert (nothing.returncode, nothing.stderr) == (
        65, f"assisters: error: {empty}: the input has no requests; nothing was sent\n".encode())
    assert not (tmp_path / "out.jsonl").exists()


def test_the_limits_are_checked_before_uploading_and_split_submits_parts(tmp_path: Path) -> None:
    source = prompts_file(tmp_path / "q.txt", 5)
    with ChatServer(ServeOptions(batch_delay=600)) as srv:
        refused = batch_cli(srv, "submit", "--prompts", str(source), ASSISTERS_BATCH_MAX_REQUESTS="2")
        assert srv.state.api_requests_seen == 0
        split = batch_cli(srv, "submit", "--prompts", str(source), "-m", "echo", "--split",
                          ASSISTERS_BATCH_MAX_REQUESTS="2")
        ids = [record.id for record in reversed(srv.state.batches.newest_first())]
        parts = uploaded_lines(srv)
        names = [srv.state.files.get(r.input_file_id).filename
                 for r in reversed(srv.state.batches.newest_first())]
    assert refused.returncode == 65 and refused.stdout == b""
    assert refused.stderr == (
        f"assisters: error: {source} has 5 requests; one batch holds at most 2: split it into 3 batches "
        "with --split (or: assisters batch prepare INPUT | split -l 2 - part-, then submit each part); "
        "nothing was sent\n").encode()
    assert (split.returncode, split.stderr) == (0, b"")
    assert split.stdout.decode().splitlines() == ids  # one id a line, in input order
    assert [[line["custom_id"] for line in part] for part in parts] == [
        ["line-1", "line-2"], ["line-3", "line-4"], ["line-5"]]  # ids of the whole input
    assert names == ["q.txt.part-1-of-3.jsonl", "q.txt.part-2-of-3.jsonl", "q.txt.part-3-of-3.jsonl"]


def test_split_by_size_keeps_every_part_within_the_byte_limit(tmp_path: Path) -> None:
    source = prompts_file(tmp_path / "q.txt", 6, prefix="a question of some length")
    limit = 300
    with ChatServer(ServeOptions(batch_delay=600)) as srv:
        refused = batch_cli(srv, "submit", "--prompts", str(source), ASSISTERS_BATCH_MAX_BYTES=str(limit))
        split = batch_cli(srv, "submit", "--prompts", str(source), "--split",
                          ASSISTERS_BATCH_MAX_BYTES=str(limit))
        sizes = [srv.state.files.get(r.input_file_id).bytes for r in srv.state.batches.newest_first()]
        lines = sum(len(part) for part in uploaded_lines(srv))
        tiny = batch_cli(srv, "submit", "--prompts", str(source), "--split", ASSISTERS_BATCH_MAX_BYTES="50")
    assert refused.returncode == 65
    assert b"bytes as Batch request lines; one batch file may be at most 300: split it with --split" in \
        refused.stderr
    assert split.returncode == 0, split.stderr
    assert len(sizes) > 1 and all(size <= limit for size in sizes) and lines == 6
    assert tiny.returncode == 65
    assert tiny.stderr.startswith(f"assisters: error: {source}:1: this request is ".encode())
    assert b"more than one batch file may hold (50); nothing was sent" in tiny.stderr


def masked(line: dict[str, Any]) -> dict[str, Any]:
    """A result line without what legitimately differs between two runs of the same
    request: the ids, the request id and the creation time; and the ``"logprobs": null``
    that a provider's non-streamed body carries and a body assembled from a stream has not."""
    line = copy.deepcopy(line)
    line["id"] = "batch_req"
    response = line.get("response")
    if response is not None:
        response["request_id"] = "req"
        body = response["body"]
        if "choices" in body:
            body["id"], body["created"] = "chatcmpl", 0
            for choice in body["choices"]:
                if "logprobs" in choice and choice["logprobs"] is None:
                    del choice["logprobs"]
    return line


def test_submit_wait_writes_the_results_batch_run_writes_for_the_same_input(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(batch_lines(
        request_line("hello", "hello batch world"),
        request_line("short", "one two three four five six", max_tokens=3),
        request_line("unknown", "x", model="no-such-model"),  # the server refuses it: an error line
        {"custom_id": "lorem", "body": {"model": "lorem", "seed": 7, "max_tokens": 12,
                                        "messages": user("anything")}},
        {"messages": user("a bare body")},
    ))
    chat = ("-m", "echo", "-s", "answer briefly")
    with ChatServer(ServeOptions(tokens_per_second=0)) as srv:
        local = batch_run(srv, str(source), *chat, "--ordered", "-o", str(tmp_path / "run.jsonl"), "-q")
        remote = batch_cli(srv, "submit", str(source), *chat, "--wait", "-o", str(tmp_path / "api.jsonl"),
                           "--ordered", *FAST)
    assert local.returncode == remote.returncode == 3  # one request failed, on either road
    api = tmp_path / "api.jsonl"
    assert remote.stderr.decode() == \
        f"assisters: error: 1 of 5 requests failed; their lines in {api} hold the errors\n"
    assert remote.stdout.startswith(b"batch_") and remote.stdout.count(b"\n") == 1
    run_lines, api_lines = output_lines(tmp_path / "run.jsonl"), output_lines(tmp_path / "api.jsonl")
    assert [line["custom_id"] for line in api_lines] == ["hello", "short", "unknown", "lorem", "line-5"]
    assert [masked(line) for line in api_lines] == [masked(line) for line in run_lines]
    assert api_lines[0]["response"]["body"]["choices"][0]["message"]["content"] == "hello batch world"
    assert api_lines[2]["response"]["status_code"] == 404


def test_submit_wait_without_output_ends_as_status_would(tmp_path: Path) -> None:
    source = prompts_file(tmp_path / "q.txt", 2)
    with ChatServer(ServeOptions(max_batch_requests=1)) as srv:  # a limit the client does not know
        done = batch_cli(srv, "submit", "--prompts", str(source), "-m", "echo", "--wait", "--split", *FAST,
                         ASSISTERS_BATCH_MAX_REQUESTS="1")
        failed = batch_cli(srv, "submit", "--prompts", str(source), "-m", "echo", "--wait", *FAST)
    assert (done.returncode, done.stderr, done.stdout.count(b"\n")) == (0, b"", 2)
    assert failed.returncode == 65 and failed.stdout.startswith(b"batch_")
    batch_id = failed.stdout.decode().strip()
    assert failed.stderr.decode() == (
        f"assisters: error: batch {batch_id} failed, so it has no results: line 2: The input file has more "
        "than 1 requests, the most one batch may hold; split it into several files. (too_many_requests)\n")


@pytest.mark.parametrize(("signum", "status", "how"), [(signal.SIGINT, 130, "interrupted"),
                                                     (signal.SIGTERM, 143, "terminated by SIGTERM")])
def test_ctrl_c_or_sigterm_while_waiting_leaves_the_batch_running_and_says_how_to_go_on(
        tmp_path: Path, signum: int, status: int, how: str) -> None:
    source = prompts_file(tmp_path / "q.txt", 2)
    out = tmp_path / "out.jsonl"
    with ChatServer(ServeOptions(batch_delay=600)) as srv:
        process = subprocess.Popen(cli_command("batch", "submit", "--prompts", str(source), "--wait", "-o",
                                               str(out), *FAST),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env={**os.environ, **env_for(srv)})
        assert process.stdout is not None
        batch_id = process.stdout.readline().decode().strip()  # flushed at once: the batch exists
        seen = srv.state.api_requests_seen
        while srv.state.api_requests_seen < seen + 2 and process.poll() is None:  # until it is polling
            time.sleep(0.01)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
        record = srv.state.batches.get(batch_id)
        assert record is not None and record.status == "validating"  # still running at the provider
    assert process.returncode == status
    assert stdout == b""
    assert stderr.decode() == (
        f"batch: {how}; batch {batch_id} keeps running at the provider: wait again with "
        f"`assisters batch results {batch_id} --wait -o {out}`, or look with "
        f"`assisters batch status {batch_id}`\n")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["q.txt"]


@pytest.mark.parametrize(("signum", "status", "how"), [(signal.SIGINT, 130, "interrupted"),
                                                     (signal.SIGTERM, 143, "terminated by SIGTERM")])
def test_a_signal_while_uploading_names_the_batches_already_created(
        httpserver: HTTPServer, tmp_path: Path, signum: int, status: int, how: str) -> None:
    stalled, release = threading.Event(), threading.Event()
    uploads: list[int] = []

    def provider(request: Request) -> Response:
        if request.path == "/v1/files":
            uploads.append(len(uploads) + 1)
            if len(uploads) == 2:  # the second part's upload hangs: the user gives up
                stalled.set()
                release.wait(30)
            return Response(orjson.dumps({"id": f"file-{len(uploads)}", "object": "file"}),
                            content_type="application/json")
        batch = {"id": f"batch_{len(uploads)}", "object": "batch", "status": "validating"}
        return Response(orjson.dumps(batch), content_type="application/json")

    httpserver.expect_request(re.compile(".*")).respond_with_handler(provider)
    source = prompts_file(tmp_path / "q.txt", 4)
    process = subprocess.Popen(cli_command("batch", "submit", "--prompts", str(source), "--split"),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "ASSISTERS_BASE_URL": httpserver.url_for("/v1"),
                                    "ASSISTERS_API_KEY": SECRET, "ASSISTERS_BATCH_MAX_REQUESTS": "2"})
    try:
        assert stalled.wait(30)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        release.set()
    assert (process.returncode, stdout) == (status, b"batch_1\n")
    assert stderr.decode() == (
        f"batch: {how} while submitting part 2 of 2; batch batch_1 keeps running at the provider: wait "
        "again with `assisters batch results batch_1 --wait -o FILE`, or look with "
        "`assisters batch status batch_1`\n")


def test_waiting_shows_a_bar_on_a_terminal_only(tmp_path: Path) -> None:
    source = prompts_file(tmp_path / "q.txt", 8)
    with ChatServer(ServeOptions(batch_delay=0.4)) as srv:
        args = cli_command("batch", "submit", "--prompts", str(source), "-m", "echo", "--wait", *FAST)
        status, screen = on_terminal(args, env_for(srv))
        _, plain = on_terminal(args, {**env_for(srv), "NO_COLOR": "1"})
        piped = batch_cli(srv, "submit", "--prompts", str(source), "-m", "echo", "--wait", *FAST)
    assert status == 0
    text = screen.decode()
    assert "batch_" in text and "/8 [" in text and "in_progress, failed 0" in text  # tqdm's bar, our postfix
    assert "\r" in text.replace("\r\n", "")  # redrawn in place
    assert plain == b"" and (piped.returncode, piped.stderr) == (0, b"")


def test_rate_limits_on_the_batch_api_are_waited_out(tmp_path: Path) -> None:
    source = prompts_file(tmp_path / "q.txt", 1)
    options = ServeOptions(api_fail_status=429, api_fail_times=2, retry_after=0.2)
    with ChatServer(options) as srv:
        result = batch_cli(srv, "submit", "--prompts", str(source), "-m", "echo")
        assert [f.purpose for f in srv.state.files.listing()] == ["batch", "batch_output"]  # uploaded once
    with ChatServer(options) as srv:
        quiet = batch_cli(srv, "submit", "--prompts", str(source), "-m", "echo", "-q")
    assert result.returncode == 0 and result.stdout.startswith(b"batch_")
    assert result.stderr.decode().splitlines() == [
        f"assisters: HTTP 429: Injected failure: HTTP 429 ({n} of 2) (retry after 0.2 s); "
        f"retrying in 0.2 s (attempt {n + 1} of 3)" for n in (1, 2)]
    assert (quiet.returncode, quiet.stderr) == (0, b"")


@pytest.mark.parametrize(("options", "message"), [
    (ServeOptions(max_upload_bytes=100),
     "HTTP 400: File is too large. This server accepts files up to 100 bytes; set batch_max_bytes "
     "(ASSISTERS_BATCH_MAX_BYTES) to the provider's limit and submit with --split"),
    (ServeOptions(batch_api=False), "has no Batch API (POST /files answered 404: HTTP 404: Invalid URL "
                                    "(POST /v1/files)); send the requests from this machine with "
                                    "`assisters batch run`"),
])
def test_what_the_provider_refuses_is_one_line(tmp_path: Path, options: ServeOptions, message: str) -> None:
    source = prompts_file(tmp_path / "q.txt", 3)
    with ChatServer(options) as srv:
        result = batch_cli(srv, "submit", "--prompts", str(source))
        assert srv.state.batches.newest_first() == []
    assert (result.returncode, result.stdout) == (65, b"")
    [line] = result.stderr.decode().splitlines()
    assert line.startswith("assisters: error: ") and line.endswith(message)


def test_an_upload_no_batch_will_use_is_deleted(tmp_path: Path) -> None:
    source = prompts_file(tmp_path / "q.txt", 1)
    with ChatServer(ServeOptions()) as srv:
        result = batch_cli(srv, "submit", "--prompts", str(source), ASSISTERS_BATCH_ENDPOINT="/v1/embeddings")
        assert srv.state.files.listing() == []
    assert (result.returncode, result.stdout) == (65, b"")
    assert b"HTTP 400" in result.stderr and b"endpoint" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["-o", "out.jsonl"], "-o OUTPUT writes the results, which exist once the batch has ended: add --wait"),
    (["--wait", "-o", "-"], "'-' would be stdout, which carries the batch id"),
    (["--wait", "--ordered"], "--ordered orders the results that -o OUTPUT writes: add -o OUTPUT"),
    (["--metadata", "novalue"], "'novalue' is not KEY=VALUE"),
    (["--metadata", "a=1", "--metadata", "a=2"], "the key 'a' is given twice"),
    ([arg for n in range(17) for arg in ("--metadata", f"k{n}=v")], "at most 16 pairs, not 17"),
    (["--metadata", "k=" + "v" * 513], "a key may have at most 64 characters and a value 512"),
    (["--wait", "--poll-interval", "5", "--max-poll-interval", "1"], "--poll-interval (5) is longer than"),
    (["--wait", "-o", "no/such/dir/out.jsonl"],
     "cannot write no/such/dir/out.jsonl: No such file or directory"),
])
def test_usage_errors_send_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    source = prompts_file(tmp_path / "q.txt", 1)
    with ChatServer(ServeOptions()) as srv:
        result = subprocess.run(cli_command("batch", "submit", "--prompts", str(source), *args), cwd=tmp_path,
                                capture_output=True, env={**os.environ, **env_for(srv)}, timeout=60)
        assert srv.state.api_requests_seen == 0
    assert result.returncode == 2 and result.stdout == b""
    [line] = result.stderr.decode().splitlines()
    assert message in line


def test_prepare_warns_when_the_lines_are_more_than_one_batch_holds(tmp_path: Path) -> None:
    source = prompts_file(tmp_path / "q.txt", 3)
    result = subprocess.run(cli_command("batch", "prepare", "--prompts", str(source)), capture_output=True,
                            env={**os.environ, "ASSISTERS_BATCH_MAX_REQUESTS": "2"}, timeout=60)
    assert result.returncode == 0 and result.stdout.count(b"\n") == 3  # no key, no server: nothing is sent
    assert result.stderr.decode().startswith("batch: note: these 3 requests (")
    assert result.stderr.decode().endswith(
        "`assisters batch submit --split` submits them as several batches\n")


def test_azure_through_the_profile(httpserver: HTTPServer, tmp_path: Path) -> None:
    """What Azure OpenAI expects, checked on every request: no /v1, api-version in every
    query string, the key in api-key, the endpoint and each line's url without /v1."""
    seen: list[Request] = []
    batch = {"id": "batch_az", "object": "batch", "status": "completed", "output_file_id": "file-out",
             "error_file_id": None, "request_counts": {"total": 1, "completed": 1, "failed": 0}}

    def azure(request: Request) -> Response:
        seen.append(request)
        if request.path == "/openai/files":
            return Response(b'{"id": "file-in", "object": "file"}', content_type="application/json")
        if request.path == "/openai/files/file-out/content":
            line = {"id": "r", "custom_id": "line-1", "response": {"status_code": 200, "body": {}},
                    "error": None}
            return Response(orjson.dumps(line) + b"\n")
        return Response(orjson.dumps(batch), content_type="application/json")

    httpserver.expect_request(re.compile(".*")).respond_with_handler(azure)
    config = tmp_path / "config.toml"
    base_url = httpserver.url_for("/openai") + "?api-version=2024-10-21"
    config.write_text(f'[profiles.azure-batch]\nbase_url = "{base_url}"\nauth_header = "api-key"\n'
                      'batch_api = "azure"\nmodel = "gpt-4o-batch"\n')
    source = prompts_file(tmp_path / "q.txt", 1)
    env = {"ASSISTERS_CONFIG": str(config), "ASSISTERS_API_KEY": SECRET}
    result = run_cli("batch", "submit", "--profile", "azure-batch", "--prompts", str(source), "--wait", *FAST,
                     "-o", str(tmp_path / "out.jsonl"), env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"batch_az\n", b"")
    paths = [request.path for request in seen]
    assert paths[:2] == ["/openai/files", "/openai/batches"] and paths[-1] == "/openai/files/file-out/content"
    assert all(request.args.get("api-version") == "2024-10-21" for request in seen)
    assert all(request.headers.get("api-key") == SECRET and "Authorization" not in request.headers
               for request in seen)
    upload = seen[0].get_data()
    assert b'{"custom_id":"line-1","method":"POST","url":"/chat/completions","body":{"messages":' in upload
    assert b'"model":"gpt-4o-batch"' in upload
    assert orjson.loads(seen[1].get_data()) == {"input_file_id": "file-in", "endpoint": "/chat/completions",
                                                "completion_window": "24h"}


def test_azure_shape_end_to_end_on_the_local_server(tmp_path: Path) -> None:
    source = prompts_file(tmp_path / "q.txt", 2)
    with ChatServer(ServeOptions(tokens_per_second=0)) as srv:
        env = env_for(srv, ASSISTERS_BASE_URL=srv.base_url.removesuffix("/v1") + "?api-version=2024-10-21",
                      ASSISTERS_BATCH_API="azure", ASSISTERS_AUTH_HEADER="api-key")
        result = run_cli("batch", "submit", "--prompts", str(source), "-m", "echo", "--wait", *FAST, "-o",
                         str(tmp_path / "out.jsonl"), "--ordered", env=env)
        [record] = srv.state.batches.newest_first()
    assert (result.returncode, result.stderr) == (0, b"")
    assert record.endpoint == "/chat/completions"
    assert [line["response"]["body"]["choices"][0]["message"]["content"]
            for line in output_lines(tmp_path / "out.jsonl")] == ["prompt 1", "prompt 2"]


def test_lines_without_method_and_url(tmp_path: Path) -> None:
    source = prompts_file(tmp_path / "q.txt", 1)
    result = run_cli("batch", "prepare", "--prompts", str(source), "-m", "m",
                     env={"ASSISTERS_BATCH_LINE_URL": "0"})
    assert (result.returncode, result.stderr) == (0, b"")
    assert orjson.loads(result.stdout) == {"custom_id": "line-1", "body": {"messages": user("prompt 1"),
                                                                           "model": "m"}}
