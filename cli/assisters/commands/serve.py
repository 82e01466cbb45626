"""``assisters serve``: the local OpenAI-compatible server, with fault injection."""

from __future__ import annotations

from typing import Any

import click

from assisters.commands.options import CONTEXT_SETTINGS


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0 picks a free one).")
@click.option("--tokens-per-second", default=50.0, show_default=True, type=click.FloatRange(min=0),
              help="Pace of the lorem model (0: no pause).")
@click.option("--replay", "replay_file", type=click.Path(exists=True, dir_okay=False),
              help="Answer every chat request with this recording.")
@click.option("--fail-status", type=click.IntRange(400, 599), help="Answer with this HTTP status ...")
@click.option("--fail-times", default=1, show_default=True, type=click.IntRange(min=0),
              help="... for the first K requests (0: always).")
@click.option("--retry-after", type=click.FloatRange(min=0), metavar="S",
              help="Send Retry-After with the failure.")
@click.option("--drop-after", type=click.IntRange(min=0), metavar="N",
              help="Cut the connection after N content chunks ...")
@click.option("--drop-after-bytes", type=click.IntRange(min=0), metavar="B",
              help="... or after exactly B bytes of the SSE body ...")
@click.option("--drop-times", default=1, show_default=True, type=click.IntRange(min=0), metavar="K",
              help="... in the first K streams (0: all).")
@click.option("--reset", is_flag=True, help="Cut with a TCP reset instead of a clean close.")
@click.option("--stall-after", type=click.IntRange(min=0), metavar="N", help="Pause after N chunks ...")
@click.option("--stall-seconds", default=0.0, type=click.FloatRange(min=0), metavar="S",
              help="... for S seconds.")
@click.option("--malformed-at", type=click.IntRange(min=1), metavar="N",
              help="Send content chunk N as invalid JSON.")
@click.option("--first-token-delay-ms", default=0.0, type=click.FloatRange(min=0), metavar="MS",
              help="Pause before the first chunk.")
@click.option("--head-delay", default=0.0, type=click.FloatRange(0, 86400), metavar="S",
              help="Pause before the response head.")
@click.option("--drip-ms", type=click.FloatRange(0, 60000), metavar="MS",
              help="Send the stream one byte per chunk, MS apart.")
@click.option("--echo-prefix", is_flag=True,
              help="Continuing an assistant message: send its text again first.")
@click.option("--latency-ms", default=0.0, type=click.FloatRange(0, 3600000), metavar="MS",
              help="Pause before answering each chat request.")
@click.option("--rate-limit", type=click.IntRange(min=1), metavar="N",
              help="Let N chat requests through per --rate-window; more get 429 with Retry-After.")
@click.option("--token-limit", type=click.IntRange(min=1), metavar="T",
              help="Let T tokens (prompt + max_tokens) through per --rate-window.")
@click.option("--rate-window", default=60.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              metavar="S", help="The sliding window of --rate-limit and --token-limit, in seconds.")
@click.option("--quota", type=click.IntRange(min=0), metavar="N",
              help="After N answered requests, answer 429 insufficient_quota.")
@click.option("--fail-ratio", default=0.0, type=click.FloatRange(0, 1), metavar="R",
              help="Answer this share of chat requests with 503 ...")
@click.option("--fail-seed", default=0, show_default=True, type=int, metavar="N",
              help="... chosen by this seed (and the request body), so runs repeat.")
@click.option("-v", "--verbose", is_flag=True, help="Log one line per request on stderr.")
def serve(**params: Any) -> None:
    """Run a local OpenAI-compatible server (models: echo, lorem) with fault injection.

    Prints its base URL on stdout, then serves until Ctrl-C (exit 0).

    \b
    Examples:
      assisters serve --port 8000 &
      ASSISTERS_BASE_URL=http://127.0.0.1:8000/v1 assisters chat -m echo "hello"
      assisters serve --port 0 --drop-after 5     # test a client against a cut stream
    """
    import signal
    from pathlib import Path

    from assisters.errors import ConfigError
    from assisters.server.app import ChatServer
    from assisters.server.options import ServeOptions

    replay_file = params.pop("replay_file")
    if replay_file:
        from assisters.recording import load_recording, looks_like_recording

        if looks_like_recording(Path(replay_file).read_bytes()):
            load_recording(Path(replay_file))  # a damaged recording is refused now, not per request
    try:
        options = ServeOptions(replay=Path(replay_file) if replay_file else None, **params)
    except ValueError as exc:  # what click's ranges let through: nan
        raise click.UsageError(str(exc)) from None
    try:
        server = ChatServer(options)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {options.host}:{options.port}: {exc.strerror}") from None
    click.echo(server.base_url)
    signal.signal(signal.SIGTERM, _stop_serving)  # `kill` ends it as cleanly as Ctrl-C
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


def _stop_serving(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
