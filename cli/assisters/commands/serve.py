"""``assisters serve``: the local OpenAI-compatible server, with fault injection."""

from __future__ import annotations

from typing import Any

import click

from assisters.commands.options import CONTEXT_SETTINGS, NAME


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--host", type=NAME, metavar="HOST", default="127.0.0.1", show_default=True,
              help="Address to listen on.")
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
@click.option("--batch-api/--no-batch-api", default=True, show_default=True,
              help="Serve the Files and Batches API (/v1/files, /v1/batches).")
@click.option("--batch-delay", default=0.0, type=click.FloatRange(0, 86400), metavar="S",
              help="Hold each batch S seconds in validating, then S more in in_progress.")
@click.option("--batch-window", default=86400.0, type=click.FloatRange(0, 86400 * 30, min_open=True),
              metavar="S", help="A batch not done S seconds after creation expires.  [default: 86400]")
@click.option("--max-upload-bytes", default=16 * 1024 * 1024, show_default=True,
              type=click.IntRange(1, 1024**3), metavar="N", help="The largest file upload accepted.")
@click.option("--max-batch-requests", default=50_000, show_default=True, type=click.IntRange(min=1),
              metavar="N", help="The most requests one batch input file may hold.")
@click.option("--api-fail-status", type=click.IntRange(400, 599), metavar="CODE",
              help="Answer the Files/Batches API with this HTTP status ...")
@click.option("--api-fail-times", default=1, show_default=True, type=click.IntRange(min=0), metavar="K",
              help="... for its first K requests (0: always); --retry-after applies.")
@click.option("--context-length", type=click.IntRange(min=1), metavar="N",
              help="Refuse prompts over N tokens (words) with 400 context_length_exceeded.")
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

    It speaks chat completions, models, and the Files and Batches API (batches run
    in the background through echo and lorem). Prints its base URL on stdout, then
    serves until Ctrl-C (exit 0).

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
        from assisters.errors import RequestError
        from assisters.recording import load_recording, looks_like_recording

        try:
            data = Path(replay_file).read_bytes()
        except OSError as exc:
            raise RequestError(f"cannot read {replay_file}: {exc.strerror}") from None
        if looks_like_recording(data):
            load_recording(Path(replay_file))  # a damaged recording is refused now, not per request
    try:
        options = ServeOptions(replay=Path(replay_file) if replay_file else None, **params)
    except ValueError as exc:  # what click's ranges let through: nan
        raise click.UsageError(str(exc)) from None
    try:
        server = ChatServer(options)
    except (OSError, UnicodeError) as exc:  # UnicodeError: a host name IDNA cannot encode
        reason = exc.strerror if isinstance(exc, OSError) else "the host name cannot be encoded"
        raise ConfigError(f"cannot listen on {options.host}:{options.port}: {reason}") from None
    try:
        click.echo(server.base_url)  # an unwritable stdout (exit 74) still closes the socket
        signal.signal(signal.SIGTERM, _stop_serving)  # `kill` ends it as cleanly as Ctrl-C
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


def _stop_serving(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
