"""``assisters models`` as a real process: what it prints, its exit status, what it
asks the server, and the cache file it leaves for ``--model`` completion."""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.conftest import SECRET, run_cli


def listing(*ids: str) -> dict[str, Any]:
    return {"object": "list",
            "data": [{"id": i, "object": "model", "created": 1, "owned_by": "someone"} for i in ids]}


def cache_file(cache_home: Path, base_url: str) -> Path:
    """Where the README says the cache for ``base_url`` lives."""
    digest = hashlib.sha256(base_url.encode("utf-8")).hexdigest()[:16]
    return cache_home / "assisters" / f"models-{digest}.json"


@pytest.fixture
def cache_home(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def local_server() -> Any:
    with ChatServer(ServeOptions(tokens_per_second=0)) as server:
        yield server


def models(cache_home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    result = run_cli("models", *args, env={"XDG_CACHE_HOME": str(cache_home), **env})
    assert b"Traceback" not in result.stderr, result.stderr
    assert SECRET.encode() not in result.stdout + result.stderr
    return result


def test_plain_lists_the_served_models_one_per_line(cache_home: Path, local_server: ChatServer):
    result = models(cache_home, ASSISTERS_BASE_URL=local_server.base_url)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"echo\nlorem\n", b"")


def test_json_prints_the_servers_list_object_on_one_line(cache_home: Path, local_server: ChatServer):
    with urllib.request.urlopen(local_server.base_url + "/models") as response:
        served = json.loads(response.read())
    result = models(cache_home, "--json", ASSISTERS_BASE_URL=local_server.base_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(b"\n") and result.stdout.count(b"\n") == 1
    assert json.loads(result.stdout) == served


def test_sends_one_get_models_with_the_key_and_keeps_the_server_order(
        cache_home: Path, httpserver: Any, key_env: dict[str, str]):
    httpserver.expect_request("/v1/models", method="GET").respond_with_json(listing("zeta", "alpha", "mid"))
    result = models(cache_home, **key_env)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"zeta\nalpha\nmid\n", b"")
    (request, _), = httpserver.log
    assert (request.method, request.path) == ("GET", "/v1/models")
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.get_data() == b""


def test_writes_the_cache_for_the_base_url_without_the_key(
        cache_home: Path, httpserver: Any, key_env: dict[str, str]):
    httpserver.expect_request("/v1/models").respond_with_json(listing("zeta", "alpha"))
    assert models(cache_home, **key_env).returncode == 0
    path = cache_file(cache_home, key_env["ASSISTERS_BASE_URL"])
    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["base_url"] == key_env["ASSISTERS_BASE_URL"]
    assert record["models"] == ["zeta", "alpha"]
    assert isinstance(record["fetched_at"], str) and record["fetched_at"].endswith("Z")
    assert [p.name for p in (cache_home / "assisters").iterdir()] == [path.name]
    assert SECRET.encode() not in path.read_bytes()


def test_each_run_refreshes_the_cache(cache_home: Path, httpserver: Any, key_env: dict[str, str]):
    httpserver.expect_request("/v1/models").respond_with_json(listing("old-model"))
    assert models(cache_home, **key_env).returncode == 0
    httpserver.clear()
    httpserver.expect_request("/v1/models").respond_with_json(listing("new-a", "new-b"))
    assert models(cache_home, **key_env).stdout == b"new-a\nnew-b\n"
    record = json.loads(cache_file(cache_home, key_env["ASSISTERS_BASE_URL"]).read_text())
    assert record["models"] == ["new-a", "new-b"]
    assert len(list((cache_home / "assisters").iterdir())) == 1  # no temporary file left behind


def test_base_url_local_lists_the_built_in_models_and_caches_them_under_local(cache_home: Path):
    result = models(cache_home, "--base-url", "local")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"echo\nlorem\n", b"")
    assert json.loads(cache_file(cache_home, "local").read_text())["models"] == ["echo", "lorem"]


def test_a_gzip_body_is_decoded(cache_home: Path, httpserver: Any, key_env: dict[str, str]):
    body = gzip.compress(json.dumps(listing("packed")).encode())
    httpserver.expect_request("/v1/models").respond_with_data(
        body, content_type="application/json", headers={"Content-Encoding": "gzip"})
    result = models(cache_home, "--json", **key_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == listing("packed")


def test_an_empty_list_prints_nothing_and_succeeds(cache_home: Path, httpserver: Any,
                                                   key_env: dict[str, str]):
    httpserver.expect_request("/v1/models").respond_with_json(listing())
    result = models(cache_home, **key_env)
    assert (result.returncode, result.stdout) == (0, b"")
    assert json.loads(cache_file(cache_home, key_env["ASSISTERS_BASE_URL"]).read_text())["models"] == []


@pytest.mark.parametrize(("status", "exit_status"), [(401, 77), (403, 77), (404, 65)])
def test_http_errors_map_to_exit_statuses_and_keep_the_old_cache(
        cache_home: Path, httpserver: Any, key_env: dict[str, str], status: int, exit_status: int):
    path = cache_file(cache_home, key_env["ASSISTERS_BASE_URL"])
    path.parent.mkdir(parents=True)
    path.write_text('{"models": ["kept"]}')
    httpserver.expect_request("/v1/models").respond_with_json(
        {"error": {"message": "no models for you", "type": "invalid_request_error"}}, status=status)
    result = models(cache_home, **key_env)
    assert result.returncode == exit_status
    assert result.stdout == b""
    assert result.stderr == f"assisters: error: HTTP {status}: no models for you\n".encode()
    assert path.read_text() == '{"models": ["kept"]}'


@pytest.mark.parametrize("body", [
    b"<html>not json</html>",
    b"[]",
    b'{"object": "list"}',
    b'{"data": {"id": "x"}}',
    b'{"data": [{"name": "no-id"}]}',
    b'{"data": [{"id": 7}]}',
    b'{"data": [{"id": ""}]}',
    b'{"data": [{"id": "two\\nlines"}]}',
], ids=["html", "array", "no-data", "data-object", "no-id", "numeric-id", "empty-id", "newline-id"])
def test_a_body_that_is_not_a_model_list_is_a_protocol_error(
        cache_home: Path, httpserver: Any, key_env: dict[str, str], body: bytes):
    httpserver.expect_request("/v1/models").respond_with_data(body, content_type="application/json")
    result = models(cache_home, **key_env)
    assert result.returncode == 76
    assert result.stdout == b""
    assert result.stderr.startswith(b"assisters: error: the /models response ")
    assert result.stderr.count(b"\n") == 1
    assert not (cache_home / "assisters").exists()


def test_no_server_listening_is_a_temporary_failure(cache_home: Path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = models(cache_home, "--connect-timeout", "5", ASSISTERS_BASE_URL=f"http://127.0.0.1:{port}/v1")
    assert result.returncode == 75
    assert result.stdout == b""
    assert b"cannot connect to http://127.0.0.1:" in result.stderr


def test_no_key_for_a_remote_server_is_a_config_error_before_any_request(cache_home: Path):
    result = models(cache_home, ASSISTERS_BASE_URL="https://models.invalid/v1")
    assert result.returncode == 78
    assert result.stdout == b""
    assert b"no API key" in result.stderr


def test_a_cache_that_cannot_be_written_is_a_warning_not_a_failure(
        tmp_path: Path, local_server: ChatServer):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("in the way")
    result = models(not_a_dir, ASSISTERS_BASE_URL=local_server.base_url)
    assert (result.returncode, result.stdout) == (0, b"echo\nlorem\n")
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"warning: cannot update the model cache at {not_a_dir}")


def test_cache_location_defaults_to_home_dot_cache(tmp_path: Path, local_server: ChatServer):
    home = tmp_path / "home"
    result = run_cli("models", env={"HOME": str(home), "XDG_CACHE_HOME": "",
                                    "ASSISTERS_BASE_URL": local_server.base_url})
    assert result.returncode == 0, result.stderr
    assert cache_file(home / ".cache", local_server.base_url).is_file()
