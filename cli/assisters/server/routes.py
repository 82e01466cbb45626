"""Which endpoint answers a request: the route table, and the small endpoints.

An endpoint is a function of the handler (a
:class:`~assisters.server.event_stream.Responder`) and the request body. A new
endpoint (``/v1/files``, ``/v1/batches``) is a module of its own, added to
:data:`ROUTES`; routes the server does not implement answer 404.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from assisters.server.api_errors import ApiError
from assisters.server.chat import chat_completions
from assisters.server.event_stream import Responder
from assisters.server.models import MODELS, model_object

Endpoint = Callable[[Responder, bytes], None]


def list_models(handler: Responder, _body: bytes) -> None:
    handler.send_json(200, {"object": "list", "data": [model_object(m) for m in MODELS]})


def get_model(handler: Responder, _body: bytes, model: str) -> None:
    if model not in MODELS:
        message = f"The model `{model}` does not exist or you do not have access to it."
        raise ApiError(404, message, param="model", code="model_not_found")
    handler.send_json(200, model_object(model))


def route(method: str, raw_path: str) -> Endpoint:
    """The endpoint for ``method raw_path``; raises ApiError 404 or 405."""
    path = api_path(raw_path)
    if path == "/chat/completions":
        return _allow(method, "POST", chat_completions)
    if path == "/models":
        return _allow(method, "GET", list_models)
    if path.startswith("/models/"):
        model = path.removeprefix("/models/")
        return _allow(method, "GET", lambda handler, body: get_model(handler, body, model))
    message = f"Invalid URL ({method} {urlsplit(raw_path).path})"
    raise ApiError(404, message)


def _allow(method: str, allowed: str, endpoint: Endpoint) -> Endpoint:
    if method != allowed:
        message = f"Method {method} is not allowed here; use {allowed}."
        raise ApiError(405, message, headers={"Allow": allowed})
    return endpoint


def api_path(raw: str) -> str:
    """The route part of a request path: no query, no trailing slash, no /v1 prefix."""
    path = urlsplit(raw).path.rstrip("/")
    if path == "/v1" or path.startswith("/v1/"):
        path = path[3:]
    return path or "/"
