"""Streaming overhead of ``assisters chat`` against baselines run side by side.

Every tool is a separate process that writes to a pipe read by this script, exactly
as in a shell pipeline; the wall time is from spawn to exit. The tools of a scenario
run round-robin (one run of each, then the next round) after one untimed warm-up
run each, so drift on the machine hits them all alike. Nothing here asserts a
timing: the script prints tables and marks wrong output with FAIL.

Servers (in a child process, so serving never competes with this script for the GIL):

* the project's own :class:`assisters.server.ChatServer` for the short answer and
  the paced time-to-first-token scenario (model ``lorem``);
* a tiny canned server for the big streams: it sends a pre-built SSE body, one HTTP
  chunk per event as real servers frame it, in a single ``sendall``, so the server
  costs next to nothing and the numbers measure the client.

Usage (with the project's virtualenv, which has httpx and orjson)::

    .venv/bin/python bench/bench.py [--repeat N] [--quick] [--profile SCENARIO]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pstats
import re
import shutil
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson

from assisters.server import ChatServer, ServeOptions, lorem_tokens

PYTHON = sys.executable
ASSISTERS = str(Path(PYTHON).with_name("assisters"))
CURL = shutil.which("curl")
RUN_TIMEOUT = 120.0  # seconds; a run still going then is killed and counted as a failure

# The baselines. Both flush stdout per piece httpx yields (one per HTTP chunk, so one per
# event from these servers), as assisters does.
HTTPX_LOOP = """\
import sys, httpx
url, body = sys.argv[1], open(sys.argv[2], "rb").read()
out = sys.stdout.buffer
headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
with httpx.Client(timeout=300) as client:
    with client.stream("POST", url, content=body, headers=headers) as response:
        for chunk in response.iter_bytes():
            out.write(chunk)
            out.flush()
"""

NAIVE_PARSER = """\
import sys, httpx, orjson
url, body = sys.argv[1], open(sys.argv[2], "rb").read()
headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
with httpx.Client(timeout=300) as client:
    with client.stream("POST", url, content=body, headers=headers) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            for choice in orjson.loads(data).get("choices") or ():
                if choice.get("index", 0) == 0:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        sys.stdout.write(text)
                        sys.stdout.flush()
"""

_FIRST_CONTENT = re.compile(rb'"content":\s*"[^"]')  # a non-empty content delta


# ------------------------------------------------------------------------- payloads


def chat_body(max_tokens: int) -> bytes:
    """The request body assisters sends for ``chat -m lorem --max-tokens N bench``."""
    messages = [{"role": "user", "content": "bench"}]
    return orjson.dumps({"model": "lorem", "messages": messages, "max_tokens": max_tokens, "stream": True})


def lorem_text(max_tokens: int) -> str:
    """What the ChatServer's lorem model answers with (seed 0, choice 0)."""
    return "".join(itertools.islice(lorem_tokens(0, 0), max_tokens))


def _event(delta: dict[str, str], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "lorem",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def sse_events(contents: Sequence[str]) -> list[bytes]:
    """A complete stream: role chunk, one event per content piece, finish, [DONE]."""
    events = [_event({"role": "assistant", "content": ""})]
    events += [_event({"content": text}) for text in contents]
    events += [_event({}, "stop"), b"data: [DONE]\n\n"]
    return events


def many_tokens(count: int) -> list[str]:
    return list(itertools.islice(lorem_tokens(2, 0), count))


def huge_text(size: int) -> str:
    """``size`` characters of ASCII prose with a newline after each sentence."""
    parts: list[str] = []
    length = 0
    for token in lorem_tokens(1, 0):
        parts.append(token)
        length += len(token)
        if token.endswith("."):
            parts.append("\n")
            length += 1
        if length >= size:
            break
    return "".join(parts)[:size]


def chunked(events: Sequence[bytes]) -> bytes:
    """The events framed as an HTTP/1.1 chunked body, one chunk per event."""
    return b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"


# --------------------------------------------------------------------------- server


class _CannedHandler(BaseHTTPRequestHandler):
    """Any POST to /NAME/... gets the pre-framed body NAME, as fast as the socket takes it."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _CannedServer

    def do_POST(self) -> None:  # the name http.server looks for
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = self.server.bodies.get(self.path.strip("/").split("/")[0])
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        pass


class _CannedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, bodies: dict[str, bytes]) -> None:
        self.bodies = bodies
        super().__init__(("127.0.0.1", 0), _CannedHandler)

    def server_bind(self) -> None:  # skip HTTPServer's reverse DNS lookup
        socketserver.TCPServer.server_bind(self)


def serve(bodies: dict[str, Path], paced_tps: float) -> None:
    """The server child: print the URLs as one JSON line, serve until stdin closes."""
    canned = _CannedServer({name: path.read_bytes() for name, path in bodies.items()})
    threading.Thread(target=canned.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    fast = ChatServer(ServeOptions(tokens_per_second=0))
    paced = ChatServer(ServeOptions(tokens_per_second=paced_tps))
    with fast, paced:
        port = canned.server_address[1]
        urls = {"fast": fast.base_url, "paced": paced.base_url, "canned": f"http://127.0.0.1:{port}"}
        print(json.dumps(urls), flush=True)
        sys.stdin.read()
    canned.shutdown()
    canned.server_close()


class ServerProcess:
    def __init__(self, bodies: dict[str, Path], paced_tps: float) -> None:
        args = [PYTHON, __file__, "--serve", "--paced-tps", str(paced_tps)]
        for name, path in bodies.items():
            args += ["--body", f"{name}={path}"]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            self.close()
            raise SystemExit("bench: the server process did not start")
        self.urls: dict[str, str] = json.loads(line)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------------------------ measuring


@dataclass
class Tool:
    name: str
    argv: list[str]
    expect: bytes | None = None  # exact stdout required
    must_contain: bytes | None = None  # or at least this
    startup: str | None = None  # the startup row whose median this tool pays before streaming


@dataclass
class Runs:
    tool: Tool
    times: list[float] = field(default_factory=list)
    first_token: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)


def child_env(tmp: Path) -> dict[str, str]:
    """Our environment without settings that could change what is measured.

    Dropped: assisters/OpenAI settings, proxies, and PYTHON* switches such as
    PYTHONDONTWRITEBYTECODE (without .pyc files every run would recompile the edited
    sources) or PYTHONUNBUFFERED. Bytecode goes to a cache in our temporary directory,
    filled by the warm-up runs, so nothing is written into the repository.
    """
    keep = ("PYTHONPATH", "PYTHONHOME")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ASSISTERS_", "OPENAI_"))
        and not k.lower().endswith("_proxy")
        and (not k.startswith("PYTHON") or k in keep)
    }
    (tmp / "config").mkdir(exist_ok=True)
    env.update(XDG_CONFIG_HOME=str(tmp / "config"), PYTHONPYCACHEPREFIX=str(tmp / "pycache"),
               NO_COLOR="1", NO_PROXY="*")
    return env


def check(tool: Tool, returncode: int, out: bytes, err: bytes) -> str | None:
    """Why this run's output is wrong, or None."""
    if returncode != 0:
        return f"exit {returncode}: {err.decode(errors='replace').strip()[-200:]}"
    if tool.expect is not None and out != tool.expect:
        return f"stdout differs from the expected text ({len(out)} bytes, expected {len(tool.expect)})"
    if tool.must_contain is not None and tool.must_contain not in out:
        return f"stdout lacks {tool.must_contain!r}"
    return None


def run_once(
    tool: Tool, env: dict[str, str], *, stream_timing: bool
) -> tuple[float, float | None, str | None]:
    """One run: (spawn to exit, spawn to first content or None, what was wrong or None)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        tool.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    watchdog = threading.Timer(RUN_TIMEOUT, proc.kill)
    watchdog.start()
    first = None
    if stream_timing:
        assert proc.stdout is not None and proc.stderr is not None
        fd = proc.stdout.fileno()
        parts: list[bytes] = []
        seen = b""
        while piece := os.read(fd, 65536):
            parts.append(piece)
            if first is None:
                seen += piece
                # assisters and the parser print text only; raw tools print SSE first
                if tool.expect is not None or _FIRST_CONTENT.search(seen):
                    first = time.perf_counter() - start
        out = b"".join(parts)
        err = proc.stderr.read()  # a few lines at most: cannot have blocked the child
        proc.wait()
    else:
        out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    if not watchdog.is_alive():
        return elapsed, first, f"killed after {RUN_TIMEOUT:g} s"
    watchdog.cancel()
    return elapsed, first, check(tool, proc.returncode, out, err)


def measure(
    tools: list[Tool], env: dict[str, str], repeat: int, *, stream_timing: bool = False
) -> list[Runs]:
    """One untimed warm-up run per tool (disk cache, .pyc files), then ``repeat`` rounds."""
    results = [Runs(tool) for tool in tools]
    for round_number in range(repeat + 1):
        for runs in results:
            elapsed, first, problem = run_once(runs.tool, env, stream_timing=stream_timing)
            if problem:
                runs.failures.append(problem)
            if round_number == 0:
                continue
            runs.times.append(elapsed)
            if first is not None:
                runs.first_token.append(first)
    return results


# ------------------------------------------------------------------------ reporting


def _ratio(value: float, results: list[Runs], name: str) -> str:
    """value / the median of the row called name, or - when there is no such row."""
    for runs in results:
        if runs.tool.name == name and runs.times:
            return f"{value / runs.median:.2f}"
    return "-"


def print_table(
    title: str,
    results: list[Runs],
    bases: list[tuple[str, str]],
    startups: dict[str, float] | None = None,
    short: dict[str, float] | None = None,
    rate: Callable[[float], str] | None = None,
) -> None:
    """One scenario: times, ratios, and for the streams the costs left after subtracting
    the tool's startup (net s) and its whole short-answer run (stream s)."""
    print(f"\n== {title}")
    head = f"{'tool':<31} {'median s':>9} {'min s':>8}"
    head += "".join(f" {label:>8}" for label, _ in bases)
    head += f" {'net s':>8}" if startups else ""
    head += f" {'stream s':>8}" if short else ""
    head += f" {'rate':>14} {'rate (stream)':>14}" if rate else ""
    print(head + "  check")
    for runs in results:
        line = f"{runs.tool.name:<31} {runs.median:>9.4f} {runs.best:>8.4f}"
        line += "".join(f" {_ratio(runs.median, results, base):>8}" for _, base in bases)
        if startups:
            startup = startups.get(runs.tool.startup or "")
            line += f" {runs.median - startup:>8.4f}" if startup is not None else f" {'-':>8}"
        stream = None
        if short:
            reference = short.get(runs.tool.name)
            stream = None if reference is None else runs.median - reference
            line += f" {stream:>8.4f}" if stream is not None else f" {'-':>8}"
        if rate:
            # below 2 ms a difference of two medians is noise, not a rate
            tiny = stream is None or stream < 0.002
            line += f" {rate(runs.median):>14} {'n/a (<2 ms)' if tiny else rate(stream):>14}"
        print(line + "  " + verdict(runs))
    print_failures(results)
    sys.stdout.flush()


def print_ttft_table(title: str, results: list[Runs]) -> None:
    print(f"\n== {title}")
    print(
        f"{'tool':<31} {'1st token med':>13} {'min':>7} {'total med':>10} {'1st/total':>9}"
        f" {'x curl':>7} {'1st->end':>9}  check"
    )
    curl = next((r for r in results if r.tool.name.startswith("curl") and r.first_token), None)
    for runs in results:
        if not runs.first_token:
            print(f"{runs.tool.name:<31} {'-':>13}  {verdict(runs)}")
            continue
        first = statistics.median(runs.first_token)
        ratio = f"{first / statistics.median(curl.first_token):.2f}" if curl else "-"
        # from the first token to exit: about 0 if the output were buffered to the end
        gap = statistics.median(t - f for t, f in zip(runs.times, runs.first_token, strict=True))
        print(
            f"{runs.tool.name:<31} {first:>13.4f} {min(runs.first_token):>7.4f} {runs.median:>10.4f}"
            f" {first / runs.median:>9.2f} {ratio:>7} {gap:>9.4f}  {verdict(runs)}"
        )
    print_failures(results)
    sys.stdout.flush()


def verdict(runs: Runs) -> str:
    """FAIL, ok (stdout exactly as expected), ok ([DONE] seen) or ok (exit 0, nothing to check)."""
    tool = runs.tool
    if runs.failures:
        return f"FAIL ({len(runs.failures)}/{len(runs.times) + 1} runs)"
    if tool.expect is not None:
        return "ok"
    return "ok ([DONE] seen)" if tool.must_contain == b"data: [DONE]" else "ok (exit 0)"


def print_failures(results: list[Runs]) -> None:
    for runs in results:
        if runs.failures:
            print(f"   FAIL {runs.tool.name}: {runs.failures[0]}")


# ------------------------------------------------------------------------ scenarios


@dataclass
class Setup:
    args: argparse.Namespace
    env: dict[str, str]
    tmp: Path
    urls: dict[str, str]
    startups: dict[str, float] = field(default_factory=dict)  # startup row -> median
    short: dict[str, float] = field(default_factory=dict)  # tool -> median of scenario 2


def stream_tools(setup: Setup, base_url: str, body: bytes, text: str, raw: bytes | None,
                 assisters_args: list[str]) -> list[Tool]:
    """The four contenders for one stream: assisters, curl, the httpx loop, the naive parser.

    ``text`` is what assisters and the parser must print; ``raw`` the SSE bytes curl and
    the httpx loop must print when known (canned server), else they must show [DONE].
    """
    body_file = setup.tmp / f"body-{len(list(setup.tmp.glob('body-*')))}.json"
    body_file.write_bytes(body)
    url = base_url + "/chat/completions"
    contain = b"data: [DONE]" if raw is None else None
    py_start = "python -c 'import httpx,orjson'"
    tools = [Tool("assisters chat", [ASSISTERS, "chat", "--base-url", base_url, *assisters_args, "bench"],
                  expect=text.encode(), startup="assisters --version")]
    if CURL:
        curl = [CURL, "-N", "-s", "-S", "-H", "Content-Type: application/json",
                "-H", "Accept: text/event-stream", "--data-binary", f"@{body_file}", url]
        tools.append(Tool("curl -N", curl, expect=raw, must_contain=contain, startup="curl --version"))
    return [
        *tools,
        Tool("httpx loop (iter_bytes)", [PYTHON, "-c", HTTPX_LOOP, url, str(body_file)],
             expect=raw, must_contain=contain, startup=py_start),
        Tool("naive parser (iter_lines)", [PYTHON, "-c", NAIVE_PARSER, url, str(body_file)],
             expect=text.encode(), startup=py_start),
    ]


BASES = [("x curl", "curl -N"), ("x httpx", "httpx loop (iter_bytes)")]


def scenario_startup(setup: Setup) -> None:
    tools = [
        Tool("assisters --version", [ASSISTERS, "--version"], must_contain=b"assisters"),
        Tool("python -c pass", [PYTHON, "-c", "pass"]),
        Tool("python -c 'import httpx,orjson'", [PYTHON, "-c", "import httpx, orjson"]),
    ]
    if CURL:
        tools.append(Tool("curl --version", [CURL, "--version"], must_contain=b"curl"))
    results = measure(tools, setup.env, setup.args.repeat)
    setup.startups = {r.tool.name: r.median for r in results}
    print_table("1. startup (process spawn to exit)", results,
                [("x python", "python -c pass"), ("x +httpx", "python -c 'import httpx,orjson'")])


def scenario_short(setup: Setup) -> None:
    tokens = 20
    tools = stream_tools(setup, setup.urls["fast"], chat_body(tokens), lorem_text(tokens), None,
                         ["-m", "lorem", "--max-tokens", str(tokens)])
    results = measure(tools, setup.env, setup.args.repeat)
    setup.short = {r.tool.name: r.median for r in results}
    print_table(f"2. short answer: {tokens} tokens from ChatServer (lorem, no pacing), full process",
                results, BASES, setup.startups)


def canned_scenario(setup: Setup, name: str, title: str, contents: list[str],
                    rate: Callable[[float], str]) -> None:
    events = sse_events(contents)
    base_url = f"{setup.urls['canned']}/{name}/v1"
    tools = stream_tools(setup, base_url, chat_body(16), "".join(contents), b"".join(events),
                         ["-m", "lorem"])
    results = measure(tools, setup.env, setup.args.repeat)
    print_table(title, results, BASES, setup.startups, setup.short, rate)


def scenario_ttft(setup: Setup) -> None:
    tps, tokens = setup.args.paced_tps, setup.args.paced_tokens
    tools = stream_tools(setup, setup.urls["paced"], chat_body(tokens), lorem_text(tokens), None,
                         ["-m", "lorem", "--max-tokens", str(tokens)])
    results = measure(tools, setup.env, setup.args.ttft_repeat, stream_timing=True)
    print_ttft_table(
        f"5. time to first token on stdout, from spawn: ChatServer lorem paced at {tps:g} tokens/s,"
        f" {tokens} tokens\n   (raw tools: time of the first non-empty content delta in their output)",
        results,
    )


# ------------------------------------------------------------------------- profile


def profile(setup: Setup, scenario: str, events: int, huge: int) -> None:
    """Run assisters once under cProfile for one scenario and print where the time goes."""
    if scenario == "short":
        base_url, extra = setup.urls["fast"], ["--max-tokens", "20"]
    else:
        base_url, extra = f"{setup.urls['canned']}/{scenario}/v1", []
    out = setup.tmp / "profile.out"
    chat = ["-m", "assisters", "chat", "--base-url", base_url, "-m", "lorem", *extra, "bench"]
    for argv in ([PYTHON, *chat], [PYTHON, "-m", "cProfile", "-o", str(out), *chat]):  # warm-up, profile
        proc = subprocess.run(argv, env=setup.env, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    print(f"\n== profile of assisters chat, scenario {scenario!r} (exit {proc.returncode}, "
          f"{len(proc.stdout)} bytes out; events={events}, huge={huge})")
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime").print_stats(18)
    stats.sort_stats("cumulative").print_stats(25)


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, help="timed runs per tool (default 7, --quick 3)")
    parser.add_argument("--quick", action="store_true", help="small sizes and few runs (< 30 s)")
    parser.add_argument("--events", type=int, help="events in scenario 3 (default 10000, --quick 2000)")
    parser.add_argument("--huge-kib", type=int,
                        help="KiB in the event of scenario 4 (default 1024, --quick 256)")
    parser.add_argument("--profile", choices=["short", "many", "huge"],
                        help="instead of the tables, profile one assisters run of this scenario")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--body", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--paced-tps", type=float, default=20.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    args.repeat = args.repeat or (3 if quick else 7)
    args.events = args.events or (2000 if quick else 10_000)
    args.huge_kib = args.huge_kib or (256 if quick else 1024)
    args.paced_tokens = 10 if quick else 20
    args.ttft_repeat = max(1, min(args.repeat, 2 if quick else 3))
    if args.repeat < 1 or args.events < 1 or args.huge_kib < 1:
        parser.error("--repeat, --events and --huge-kib must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.serve:
        bodies = dict(item.split("=", 1) for item in args.body)
        serve({name: Path(path) for name, path in bodies.items()}, args.paced_tps)
        return
    if not Path(ASSISTERS).exists():
        raise SystemExit(f"bench: {ASSISTERS} not found; run with the project's .venv/bin/python")
    many = many_tokens(args.events)
    huge = huge_text(args.huge_kib * 1024)
    with tempfile.TemporaryDirectory(prefix="assisters-bench-") as tmp_name:
        tmp = Path(tmp_name)
        bodies = {"many": tmp / "many.sse", "huge": tmp / "huge.sse"}
        bodies["many"].write_bytes(chunked(sse_events(many)))
        bodies["huge"].write_bytes(chunked(sse_events([huge])))
        server = ServerProcess(bodies, args.paced_tps)
        try:
            setup = Setup(args, child_env(tmp), tmp, server.urls)
            if args.profile:
                profile(setup, args.profile, args.events, len(huge))
                return
            run_all(setup, many, huge)
        finally:
            server.close()


def run_all(setup: Setup, many: list[str], huge: str) -> None:
    args = setup.args
    started = time.perf_counter()
    print(f"assisters bench: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"{args.repeat} timed runs per tool (+1 warm-up), median and min wall time")
    if not CURL:
        print("note: curl not found; the curl rows and the 'x curl' ratios are skipped")
    scenario_startup(setup)
    scenario_short(setup)
    canned_scenario(
        setup, "many",
        f"3. many events: {len(many):,} one-token events, canned server, one HTTP chunk per event",
        many, lambda s: f"{len(many) / s:,.0f} ev/s",
    )
    size = len(huge.encode())
    canned_scenario(
        setup, "huge",
        f"4. one huge event: a single {size / 1024:,.0f} KiB content delta, canned server",
        [huge], lambda s: f"{size / s / 1e6:,.1f} MB/s",
    )
    scenario_ttft(setup)
    print("\nratios: median / median of the baseline row. net s: median minus the tool's startup row"
          " (assisters --version,\npython -c 'import httpx,orjson', curl --version). stream s: median minus"
          " the tool's short-answer median\n(startup, client setup and request excluded); rate (stream)"
          f" divides by it. Total {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
