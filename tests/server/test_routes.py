"""Which endpoint answers: ``/v1/models`` with and without the prefix.

Over real loopback sockets. Timing is only ever checked with a generous lower
bound, never an upper one, so a slow machine cannot make them flaky.
"""

from __future__ import annotations

import httpx

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions


def test_models_with_and_without_prefix(client: httpx.Client) -> None:
    with ChatServer(ServeOptions()) as srv:
        for url in (f"{srv.base_url}/models", srv.base_url.removesuffix("/v1") + "/models"):
            r = client.get(url)
            assert r.status_code == 200
            body = r.json()
            assert body["object"] == "list"
            assert [m["id"] for m in body["data"]] == ["echo", "lorem"]
            assert all(
                m["object"] == "model" and m["owned_by"] == "assisters" for m in body["data"]
            )
        assert client.get(f"{srv.base_url}/models/lorem").json()["id"] == "lorem"
        assert client.get(f"{srv.base_url}/models/nope").status_code == 404
