"""``assisters models`` and the model cache that completing ``--model`` reads.

``assisters models`` asks the server (``GET /models``) and rewrites one cache file
per base URL: ``$XDG_CACHE_HOME/assisters/models-<first 16 hex digits of
sha256(base URL)>.json`` (``~/.cache/assisters/`` by default), holding
``{"base_url": ..., "fetched_at": ..., "models": [...]}``. The key is never
written (the file goes through :func:`assisters.redact.scrub`); the stored
``base_url`` is redacted too, in case it carries credentials.

Completion imports this module, so at the top it uses the standard library only:
the HTTP stack and orjson are imported by :func:`fetch_models` when it runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assisters.config import Overrides, load_settings
from assisters.errors import ProtocolError
from assisters.redact import redact_url, scrub

if TYPE_CHECKING:
    from assisters.config import Settings
    from assisters.exchange import OutgoingRequest
    from assisters.runner import ExchangeOpener
    from assisters.terminal import Streams

CACHE_VERSION = 1
MAX_LIST_BYTES = 16 * 1024 * 1024  # far above any real list; a bound on a runaway body


@dataclass(frozen=True)
class ModelList:
    """A ``GET /models`` answer: the ids in server order, and the decoded object."""

    ids: list[str]
    payload: dict[str, Any]


def cache_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CACHE_HOME") or ""
    if not os.path.isabs(base):  # the XDG spec says to ignore a relative value
        base = str(Path(environ.get("HOME", "~")) / ".cache")
    return Path(base).expanduser() / "assisters"


def cache_path(base_url: str, environ: Mapping[str, str]) -> Path:
    digest = hashlib.sha256(base_url.encode("utf-8")).hexdigest()[:16]
    return cache_dir(environ) / f"models-{digest}.json"


def write_cache(base_url: str, ids: list[str], environ: Mapping[str, str]) -> Path:
    """Replace the cache file for ``base_url``; raises :class:`OSError`.

    Written to a temporary file and renamed, so a completion running at the same
    moment reads the old list or the new one, never half of one.
    """
    path = cache_path(base_url, environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "version": CACHE_VERSION,
        "base_url": redact_url(base_url),
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "models": ids,
    }
    fd, temp = tempfile.mkstemp(prefix=".models-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(scrub(json.dumps(record, ensure_ascii=False, indent=1)) + "\n")
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return path


def read_cache(base_url: str, environ: Mapping[str, str]) -> list[str]:
    """The cached ids for ``base_url``; [] when there is no usable cache."""
    try:
        record = json.loads(cache_path(base_url, environ).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    models = record.get("models") if isinstance(record, dict) else None
    if not isinstance(models, list):
        return []
    return [m for m in models if isinstance(m, str)]


def completion_base_url(params: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    """The base URL the command being typed would use (flag > env > config > default)."""
    flags = Overrides(base_url=params.get("base_url"), profile=params.get("profile"))
    # need_key=False never runs api_key_command, which may be a password manager
    # prompting: a Tab press must never run it.
    return load_settings(flags, environ, need_key=False).base_url


def parse_model_list(body: bytes) -> ModelList:
    """The OpenAI list shape, ``{"data": [{"id": ...}, ...]}``, or :class:`ProtocolError`."""
    import orjson

    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ProtocolError("the /models response is not JSON") from None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise ProtocolError('the /models response is not a model list (no "data" array)')
    ids: list[str] = []
    for entry in data:
        model = entry.get("id") if isinstance(entry, dict) else None
        # One id per output line is the contract scripts rely on.
        if not isinstance(model, str) or not model.strip() or "\n" in model or "\r" in model:
            raise ProtocolError(f"the /models response has an entry without a usable id: {entry!r:.80}")
        ids.append(model)
    return ModelList(ids, payload)


def fetch_models(open_exchange: ExchangeOpener) -> ModelList:
    """Send the request and read the list; HTTP and transport failures raise
    the usual :class:`~assisters.errors.AssistersError` subclasses."""
    from assisters.stream import check_status, read_whole_body
    from assisters.timing import Timing

    with open_exchange(Timing()) as exchange:
        decoder = check_status(exchange)
        body = read_whole_body(exchange.reads(), decoder, "the /models response", MAX_LIST_BYTES)
    return parse_model_list(body)


def models_request(settings: Settings) -> OutgoingRequest:
    from assisters.exchange import ACCEPT_ENCODING, OutgoingRequest

    headers = [("Accept", "application/json"), ("Accept-Encoding", ACCEPT_ENCODING)]
    return OutgoingRequest("GET", settings.url("models"), headers, None)


def list_models(settings: Settings, streams: Streams, environ: Mapping[str, str], *,
                as_json: bool = False) -> None:
    """``assisters models``: fetch, refresh the cache, then print the list."""
    import orjson

    from assisters.runner import live, local_server

    with local_server(settings) as served:
        listing = fetch_models(live(served, models_request(served), "models", streams))
    # Keyed by the base URL as configured ("local", not the port of this run), so
    # completion finds it the way it resolves the URL.
    try:
        write_cache(settings.base_url, listing.ids, environ)
    except OSError as exc:
        # The list is still right; only completion misses out.
        where = exc.filename or cache_path(settings.base_url, environ)
        streams.warn(f"warning: cannot update the model cache at {where}: {exc.strerror or exc}")
    if as_json:
        output = orjson.dumps(listing.payload) + b"\n"
    else:
        output = "".join(f"{model}\n" for model in listing.ids).encode("utf-8")
    streams.stdout.write(output)
    streams.stdout.flush()
