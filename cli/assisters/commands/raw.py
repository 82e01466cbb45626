"""``assisters raw``: a request body in, the response bytes out."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from assisters.commands.inputs import settings_from, warn_insecure
from assisters.commands.options import (
    CONTEXT_SETTINGS,
    NAME,
    Header,
    Method,
    connection_options,
    save_option,
    verbose_option,
)

if TYPE_CHECKING:
    from assisters.terminal import Streams


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--path", "api_path", type=NAME, metavar="PATH", default="/chat/completions", show_default=True,
              help="Path relative to the base URL (its query goes before the base URL's).")
@click.option("-X", "--method", type=Method(), default="POST", show_default=True, help="HTTP method.")
@click.option("-H", "--header", "headers", type=Header(), multiple=True, metavar="'NAME: VALUE'",
              help="Extra request header (repeatable); Content-Length, Transfer-Encoding and Host "
                   "are the client's.")
@click.option("--events", is_flag=True, help="Print each SSE data payload on its own line instead.")
@click.option("--no-validate", is_flag=True, help="Send the body even if it is not valid JSON.")
@verbose_option
@save_option
@connection_options
def raw(**params: Any) -> None:
    """Send a request body as-is and print the response body exactly as received.

    The body comes from FILE, or from stdin when FILE is - or omitted. A GET
    (or HEAD, DELETE) sends no body. A non-2xx response still goes to stdout;
    its status goes to stderr and sets the exit status.

    \b
    Examples:
      echo '{"model":"llama-3.1-8b","messages":[{"role":"user","content":"hi"}],"stream":true}' \\
        | assisters raw --events | jq -r '.choices[0].delta.content // empty'
      assisters raw -X GET --path /models | jq -r '.data[].id'
    """
    from assisters.passthrough import raw_request
    from assisters.runner import live, local_server, render_raw
    from assisters.terminal import system_streams

    streams = system_streams(os.environ)
    body = raw_body(params, streams)
    settings = settings_from(params)
    warn_insecure(settings, streams)
    with local_server(settings) as settings:
        request = raw_request(params["method"], settings.url(params["api_path"]), list(params["headers"]),
                              body)
        render_raw(live(settings, request, "raw", streams, save=params["save"],
                        verbose=params["verbose"]),
                   streams, events=params["events"])


def raw_body(params: dict[str, Any], streams: Streams) -> bytes | None:
    if params["method"].upper() in ("GET", "HEAD", "DELETE", "OPTIONS") and not params["file"]:
        return None
    source = params["file"] or "-"
    if source == "-":
        if streams.stdin_is_tty:
            raise click.UsageError("no request body: give FILE, or pipe the body to stdin")
        body, name = streams.stdin.read(), "stdin"
    else:
        try:
            with open(source, "rb") as file:
                body, name = file.read(), source
        except OSError as exc:
            from assisters.errors import RequestError

            raise RequestError(f"cannot read {source}: {exc.strerror}") from None
    if not params["no_validate"]:
        from assisters.passthrough import validate_json

        validate_json(body, name)
    return body
