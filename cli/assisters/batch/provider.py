"""The provider's Batch API, client side: upload a file, create, retrieve, list and
cancel batches, download a file, on the core (``client.make_client``,
``exchange.open_exchange``, the :class:`~assisters.errors.AssistersError` family).

Where the API lives and the shape of a request line are a :class:`ProviderAPI`
(OpenAI's by default; :meth:`ProviderAPI.azure` puts ``api-version`` in every
query string and names the endpoint ``/chat/completions``, without ``/v1``; some
providers want lines without ``method`` and ``url``). The config profile says which
(:meth:`ProviderAPI.from_settings`: ``batch_api``, ``batch_endpoint``,
``batch_line_url``; there Azure's ``api-version`` stays in the base URL's query
string), and how large a file may be (:meth:`FileLimits.from_settings`).

Failures, as a script meets them:

* transient ones (connection failures, timeouts, HTTP 408/409/429/5xx: the
  statuses of :data:`~assisters.errors.RETRYABLE_HTTP`) are retried per the
  :class:`~assisters.retry.RetryPolicy`, waiting the server's ``Retry-After``
  (:func:`~assisters.http_errors.retry_after_seconds`) or a jittered backoff
  (:func:`~assisters.retry.backoff_delay`); a request that creates something (an
  upload, a batch) is sent again only when it surely did not arrive (no
  connection) or was refused with 429, so a lost answer never makes two batches;
* a server without the Batch API (404 on ``/files`` or ``/batches``) is one
  :class:`NoBatchAPI` error saying so; a missing or expired batch or file id is
  :class:`NotFound` (both exit 65), told apart by asking the list endpoint once;
* a file over the provider's limits is refused before uploading
  (:func:`check_limits`, saying how to split it); one the provider refuses for its
  size keeps the provider's words and says how to go under its limit
  (``batch_max_bytes`` and ``--split``).

The ``assisters batch`` subcommands use it through
:mod:`~assisters.batch.remote` (``submit``, ``status``, ``results``, ``cancel``,
``list``) and :mod:`~assisters.batch.prepare` (the request lines, and the files
``submit`` uploads).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import orjson

from assisters.batch.atomic import atomic_file
from assisters.client import make_client
from assisters.config import Settings
from assisters.errors import AssistersError, HTTPStatusError, ProtocolError, RequestError
from assisters.exchange import ACCEPT_ENCODING, Exchange, OutgoingRequest, open_exchange
from assisters.redact import redact_url
from assisters.retry import RetryPolicy, retry_delay, wait_for_retry
from assisters.stream import check_status, read_whole_body
from assisters.timing import Timing

T = TypeVar("T")
MAX_OBJECT_BYTES = 16 * 1024 * 1024  # a batch or a list page; far above any real one
UPLOAD_CHUNK = 1024 * 1024
OPENAI_MAX_BYTES = 200 * 1000 * 1000
OPENAI_MAX_REQUESTS = 50_000
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ProviderAPI:
    """Where a provider's Batch API is, under the base URL, and what its lines look like."""

    files_path: str = "files"
    batches_path: str = "batches"
    query: tuple[tuple[str, str], ...] = ()  # added to every request, e.g. Azure's api-version
    endpoint: str = "/v1/chat/completions"  # the batch's endpoint, and each line's url
    method_and_url: bool = True  # each line carries "method" and "url"
    completion_window: str = "24h"

    @classmethod
    def azure(cls, api_version: str) -> ProviderAPI:
        """Azure OpenAI (base URL ``https://NAME.openai.azure.com/openai``)."""
        return cls(query=(("api-version", api_version),), endpoint="/chat/completions")

    @classmethod
    def from_settings(cls, settings: Settings) -> ProviderAPI:
        """The profile's Batch API: the ``batch_api`` preset, then ``batch_endpoint`` and
        ``batch_line_url``. Azure's ``api-version`` stays in the base URL's query string,
        which :meth:`Settings.url <assisters.config.Settings.url>` keeps on every path."""
        preset = PRESETS[settings.batch_api]
        return cls(endpoint=settings.batch_endpoint or preset.endpoint,
                   method_and_url=settings.batch_line_url)


@dataclass(frozen=True)
class FileLimits:
    """A provider's limits on one batch input file (OpenAI's by default)."""

    max_bytes: int = OPENAI_MAX_BYTES
    max_requests: int = OPENAI_MAX_REQUESTS

    @classmethod
    def from_settings(cls, settings: Settings) -> FileLimits:
        return cls(max_bytes=settings.batch_max_bytes, max_requests=settings.batch_max_requests)


# The ``batch_api`` presets of the config profile.
PRESETS: dict[str, ProviderAPI] = {
    "openai": ProviderAPI(),
    "azure": ProviderAPI(endpoint="/chat/completions"),  # api-version: in the base URL's query string
}


def request_line(custom_id: str, body: Mapping[str, Any], api: ProviderAPI = ProviderAPI()) -> bytes:
    """One Batch request line, in the provider's shape, ending with a newline."""
    line: dict[str, Any] = {"custom_id": custom_id}
    if api.method_and_url:
        line.update(method="POST", url=api.endpoint)
    line["body"] = body
    return orjson.dumps(line) + b"\n"


def check_limits(size: int, requests: int, limits: FileLimits = FileLimits(),
                 name: str = "the input") -> None:
    """Refuse, before any upload, a file the provider would refuse; say how to split it.

    The advice splits the normalised lines (``batch prepare``), whose custom_ids are
    fixed, rather than INPUT itself: a bare body's ``line-N`` would repeat in every
    part."""
    if requests > limits.max_requests:
        parts = -(-requests // limits.max_requests)
        raise RequestError(
            f"{name} has {requests} requests; one batch holds at most {limits.max_requests}: split it into "
            f"{parts} batches with --split (or: assisters batch prepare INPUT | split -l "
            f"{limits.max_requests} - part-, then submit each part); nothing was sent")
    if size > limits.max_bytes:
        lines = max(1, requests * limits.max_bytes // max(size, 1) * 9 // 10)
        raise RequestError(
            f"{name} is {size} bytes as Batch request lines; one batch file may be at most "
            f"{limits.max_bytes}: split it with --split (or: assisters batch prepare INPUT | "
            f"split -l {lines} - part-, then submit each part); nothing was sent")


class NoBatchAPI(AssistersError):
    """The server answers 404 for the Batch API itself (llama.cpp, vLLM's server, ...)."""

    status = RequestError.status


class NotFound(AssistersError):
    """A batch or file id the provider does not know (never existed, expired, another key's)."""

    status = RequestError.status


class BatchClient:
    """One connection pool to a provider's Batch API; use it as a context manager."""

    def __init__(self, settings: Settings, api: ProviderAPI = ProviderAPI(), *,
                 policy: RetryPolicy | None = None, notify: Callable[[str], None] | None = None,
                 stdout_fd: int | None = None) -> None:
        self.settings = settings
        self.api = api
        self.policy = policy or RetryPolicy.from_settings(settings)
        self._notify = notify or (lambda line: None)
        self._stdout_fd = stdout_fd  # waits end at once if stdout's reader goes away
        self._client = make_client(settings)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> BatchClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def upload(self, content: bytes | Path, filename: str = "batch_input.jsonl") -> dict[str, Any]:
        """``POST /files`` (multipart, ``purpose=batch``): the file object. A path is sent
        from disk in pieces, never read whole; its name gets a ``.jsonl`` suffix, which
        OpenAI requires."""
        name = _SAFE_NAME.sub("_", Path(filename).name).removesuffix(".jsonl")[:200] + ".jsonl"
        boundary = uuid.uuid4().hex
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        try:
            size = len(content) if isinstance(content, bytes) else content.stat().st_size
        except OSError as exc:
            raise RequestError(f"cannot read {content}: {exc.strerror}") from None
        headers = [("Content-Type", f"multipart/form-data; boundary={boundary}"),
                   ("Content-Length", str(len(head) + size + len(tail))), ("Accept", "application/json")]
        url = self._url(self.api.files_path)

        def request() -> OutgoingRequest:
            return OutgoingRequest("POST", url, headers, None, stream=_pieces(head, content, tail))

        try:
            return _with_id(self._send(request, _read_object, idempotent=False), "file")
        except HTTPStatusError as exc:
            if exc.http_status == 404:
                raise self._missing_api(exc, "POST", self.api.files_path) from None
            if exc.http_status in (400, 413) and "too large" in exc.message.lower():
                exc.message = (exc.message.rstrip(". ") + "; set batch_max_bytes (ASSISTERS_BATCH_MAX_BYTES) "
                               "to the provider's limit and submit with --split")
            raise

    def create(self, input_file_id: str, *, metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
        """``POST /batches``: the new batch (``validating``)."""
        body: dict[str, Any] = {"input_file_id": input_file_id, "endpoint": self.api.endpoint,
                                "completion_window": self.api.completion_window}
        if metadata:
            body["metadata"] = dict(metadata)
        try:
            batch = self._json("POST", self.api.batches_path, body=orjson.dumps(body), idempotent=False)
        except HTTPStatusError as exc:
            if exc.http_status == 404:
                raise self._missing(exc, "file", input_file_id) from None
            raise
        return _with_id(batch, "batch")

    def retrieve(self, batch_id: str) -> dict[str, Any]:
        """``GET /batches/ID``."""
        return self._batch_call("GET", batch_id)

    def cancel(self, batch_id: str) -> dict[str, Any]:
        """``POST /batches/ID/cancel``: the batch, now ``cancelling`` (or already ended)."""
        return self._batch_call("POST", batch_id, "cancel")

    def list(self, limit: int = 20, *, page_size: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` batches, asking page after page (OpenAI gives up to 100 a page)."""
        batches: list[dict[str, Any]] = []
        after: str | None = None
        while len(batches) < limit:
            params = {"limit": str(min(page_size, limit - len(batches)))}
            if after:
                params["after"] = after
            try:
                page = self._json("GET", self.api.batches_path, params=params)
            except HTTPStatusError as exc:
                if exc.http_status == 404:
                    raise self._missing_api(exc, "GET", self.api.batches_path) from None
                raise
            data = page.get("data")
            if not isinstance(data, list) or not all(isinstance(b, dict) for b in data):
                raise ProtocolError('the batch list has no "data" array of batches')
            batches += data
            after = page.get("last_id") or (data[-1].get("id") if data else None)
            if not data or not page.get("has_more") or not isinstance(after, str):
                break
        return batches[:limit]

    def delete_file(self, file_id: str) -> None:
        """``DELETE /files/ID``: tidying up an upload no batch will use."""
        self._json("DELETE", self.api.files_path, file_id)

    def download(self, file_id: str, dest: Path) -> int:
        """``GET /files/ID/content`` into ``dest``, atomically and scrubbed of secrets:
        a broken download leaves no half file (it is retried from the start, as the
        content is immutable). The bytes received."""
        url = self._url(self.api.files_path, file_id, "content")
        headers = [("Accept", "*/*"), ("Accept-Encoding", ACCEPT_ENCODING)]

        def save(exchange: Exchange) -> int:
            decoder = check_status(exchange)
            with atomic_file(dest) as out:
                for data in exchange.reads():
                    out.write(decoder.decode(data))
            return out.written

        try:
            return self._send(lambda: OutgoingRequest("GET", url, headers, None), save)
        except HTTPStatusError as exc:
            if exc.http_status == 404:
                raise self._missing(exc, "file", file_id) from None
            raise

    # -- the requests ------------------------------------------------------------------

    def _batch_call(self, method: str, batch_id: str, *action: str) -> dict[str, Any]:
        try:
            return _with_id(self._json(method, self.api.batches_path, batch_id, *action), "batch")
        except HTTPStatusError as exc:
            if exc.http_status == 404:
                raise self._missing(exc, "batch", batch_id) from None
            raise

    def _url(self, *segments: str, params: Mapping[str, str] | None = None) -> str:
        """The URL of an API path; the base URL's own query (Azure's ``api-version``) stays."""
        path = "/".join(quote(s, safe="") if i else s.strip("/") for i, s in enumerate(segments))
        query = [*self.api.query, *(params or {}).items()]
        return self.settings.url(path + (f"?{urlencode(query)}" if query else ""))

    def _json(self, method: str, *segments: str, body: bytes | None = None,
              params: Mapping[str, str] | None = None, idempotent: bool = True) -> dict[str, Any]:
        url = self._url(*segments, params=params)
        headers = [("Accept", "application/json"), ("Accept-Encoding", ACCEPT_ENCODING)]
        if body is not None:
            headers.append(("Content-Type", "application/json"))
        return self._send(lambda: OutgoingRequest(method, url, headers, body), _read_object,
                          idempotent=idempotent)

    def _send(self, request: Callable[[], OutgoingRequest], read: Callable[[Exchange], T], *,
              idempotent: bool = True) -> T:
        """One request, sent again per the policy while it fails transiently."""
        policy = self.policy
        retries = 0
        waited = 0.0
        while True:
            try:
                with open_exchange(self._client, request(), timing=Timing()) as exchange:
                    return read(exchange)
            except AssistersError as exc:
                safe = idempotent or exc.unsent or getattr(exc, "http_status", None) == 429
                if not (exc.retryable and safe) or retries >= policy.max_retries:
                    if retries:
                        exc.message += f" (gave up after {retries + 1} attempts)"
                    raise
                retries += 1
                delay = retry_delay(policy, retries, exc, waited)
                self._notify(f"assisters: {exc.message}; retrying in {delay:.1f} s "
                             f"(attempt {retries + 1} of {policy.max_retries + 1})")
                wait_for_retry(delay, None, self._stdout_fd)
                waited += delay

    def _missing(self, exc: HTTPStatusError, kind: str, ident: str) -> AssistersError:
        """A 404 for one object: the object is missing, unless the whole API is."""
        collection = self.api.files_path if kind == "file" else self.api.batches_path
        try:
            self._json("GET", collection, params={"limit": "1"}, idempotent=False)
        except HTTPStatusError as probe:
            if probe.http_status == 404:
                return self._missing_api(exc, "GET", collection)
        except AssistersError:
            pass  # cannot tell: say what is known
        return NotFound(f"no {kind} {ident} at {redact_url(self.settings.base_url)} (it may never have "
                        f"existed, have expired, or belong to another key): {exc.message}")

    def _missing_api(self, exc: HTTPStatusError, method: str, path: str) -> NoBatchAPI:
        where = redact_url(self.settings.base_url)
        return NoBatchAPI(f"the server at {where} has no Batch API ({method} /{path} answered 404: "
                          f"{exc.message}); send the requests from this machine with `assisters batch run`")


def _read_object(exchange: Exchange) -> dict[str, Any]:
    """A JSON object reply (a batch, a file, a list page), or the server's error."""
    body = read_whole_body(exchange.reads(), check_status(exchange), "a Batch API reply", MAX_OBJECT_BYTES)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ProtocolError("the Batch API reply is not JSON") from None
    if not isinstance(payload, dict):
        raise ProtocolError("the Batch API reply is not a JSON object")
    return payload


def _with_id(payload: dict[str, Any], kind: str) -> dict[str, Any]:
    """The object, if its id is one a script can use (``id=$(assisters batch submit ...)``)."""
    ident = payload.get("id")
    if not isinstance(ident, str) or not ident or any(c.isspace() or ord(c) < 32 for c in ident):
        raise ProtocolError(f"the Batch API answered a {kind} without a usable id")
    if kind == "batch" and not isinstance(payload.get("status"), str):
        raise ProtocolError("the Batch API answered a batch without a status")
    return payload


def _pieces(head: bytes, content: bytes | Path, tail: bytes) -> Iterator[bytes]:
    yield head
    if isinstance(content, bytes):
        yield content
    else:
        try:
            with content.open("rb") as source:
                while data := source.read(UPLOAD_CHUNK):
                    yield data
        except OSError as exc:
            raise RequestError(f"cannot read {content}: {exc.strerror}") from None
    yield tail
