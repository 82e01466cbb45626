"""Transport failures as the user meets them: which are worth a retry, and what they say.

A reply that is not HTTP (76, not retried) against a connection that broke (75,
retried before any text); a host that does not exist (68, not retried) against a
resolver that is down for now (75). Real sockets throughout: a small server that
answers every connection with fixed bytes.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import httpx
import pytest

from assisters.client import transport_error
from assisters.errors import ExitStatus
from tests.conftest import SECRET, read_request, run_cli


@contextmanager
def answering(reply: bytes) -> Iterator[tuple[str, list[int]]]:
    """A loopback server that reads a request and answers each connection with
    ``reply``, then closes it; yields its base URL and the count of connections."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    connections = [0]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                connections[0] += 1
                with suppress(OSError):  # the client may have given up already
                    read_request(conn)  # all of it: a close with unread bytes would be a reset
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1", connections
    finally:
        listener.close()


NOT_HTTP = {
    "no status line": (b"data: hi\n\n", "illegal status line: bytearray(b'data: hi')"),
    "a status that is not a number": (b"HTTP/1.1 abc OK\r\n\r\n",
                                      "illegal status line: bytearray(b'HTTP/1.1 abc OK')"),
    "a 200 KB header": (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
                        "the response head is too long"),
}


@pytest.mark.parametrize("command", ["chat", "debug", "raw"])
@pytest.mark.parametrize("case", NOT_HTTP)
def test_a_reply_that_is_not_http_is_a_protocol_error_and_not_retried(case, command):
    reply, reason = NOT_HTTP[case]
    with answering(reply) as (base_url, connections):
        args = ["raw", "-"] if command == "raw" else [command, "hi"]
        result = run_cli(*args, "--base-url", base_url, input=b"{}" if command == "raw" else b"",
                         env={"ASSISTERS_API_KEY": SECRET})
    assert (result.returncode, result.stdout) == (76, b"")
    assert result.stderr.decode() == (
        f"assisters: error: the server at {base_url}/chat/completions did not send a valid HTTP "
        f"response ({reason}); check the base URL\n")
    assert connections[0] == 1


def test_a_connection_closed_before_any_reply_is_still_temporary_and_retried():
    with answering(b"") as (base_url, connections):
        result = run_cli("chat", "--base-url", base_url, "--max-retries", "1", "--max-retry-wait", "0.1",
                         "hi", env={"ASSISTERS_API_KEY": SECRET})
    assert result.returncode == 75
    assert "Server disconnected without sending a response" in result.stderr.decode()
    assert connections[0] == 2


def test_a_body_cut_after_a_valid_head_is_a_broken_connection_not_a_protocol_error():
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 1000\r\n\r\n"
    body = b'data: {"choices":[{"index":0,"delta":{"content":"partial"}}]}\n\n'
    with answering(head + body) as (base_url, connections):
        result = run_cli("chat", "--base-url", base_url, "hi", env={"ASSISTERS_API_KEY": SECRET})
    assert (result.returncode, result.stdout) == (75, b"partial")
    assert "the stream broke before the answer was complete" in result.stderr.decode()
    assert connections[0] == 1


# ------------------------------------------------------------ name resolution


def _lookup_failure(code: int, text: str) -> httpx.ConnectError:
    """An httpx ConnectError as httpx raises it for a failed lookup: the resolver's
    gaierror is its cause (httpcore wraps it the same way)."""
    try:
        try:
            raise socket.gaierror(code, text)
        except socket.gaierror as cause:
            raise httpx.ConnectError(f"[Errno {code}] {text}") from cause
    except httpx.ConnectError as error:
        return error


@pytest.mark.parametrize(("code", "text"), [
    (socket.EAI_NONAME, "Name or service not known"),
    *([(socket.EAI_NODATA, "No address associated with hostname")] if hasattr(socket, "EAI_NODATA") else []),
])
def test_a_host_that_does_not_exist_is_68_and_not_retried(code, text):
    error = transport_error(_lookup_failure(code, text), "https://api.assisters.dve/v1/chat/completions")
    assert (error.status, error.retryable) == (ExitStatus.NO_HOST, False)
    assert error.message == f"cannot find the host 'api.assisters.dve' ({text}); check the base URL"


def test_a_resolver_that_is_down_for_now_stays_temporary():
    error = transport_error(_lookup_failure(socket.EAI_AGAIN, "Temporary failure in name resolution"),
                            "https://api.assisters.dev/v1/chat/completions")
    assert (error.status, error.retryable) == (ExitStatus.TEMPORARY, True)
    assert error.message.startswith("cannot connect to https://api.assisters.dev/v1/chat/completions: ")


def _resolves_as_unknown(host: str) -> bool:
    try:
        socket.getaddrinfo(host, 443)
    except socket.gaierror as exc:
        return exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
    return False


def test_a_mistyped_host_end_to_end_is_one_attempt_and_exit_68():
    host = "no-such-host.invalid"  # RFC 6761: never resolves
    if not _resolves_as_unknown(host):
        pytest.skip("this machine's resolver does not answer NXDOMAIN for .invalid")
    result = run_cli("chat", "--base-url", f"https://{host}/v1", "hi", env={"ASSISTERS_API_KEY": SECRET})
    assert (result.returncode, result.stdout) == (68, b"")
    [line] = result.stderr.decode().splitlines()  # no retry notices: it was tried once
    assert line.startswith(f"assisters: error: cannot find the host '{host}' (")
    assert line.endswith("); check the base URL")
