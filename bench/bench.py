"""What ``assisters`` costs per token and at start-up, against baselines in the same run.

One command (see README.md)::

    .venv/bin/python bench/bench.py [--quick] [--rounds N] [--json PATH] [--only SECTION ...]

It starts its own fast SSE server (``sse_server.py``, a thread in this process)
and runs every contender as a child process whose stdout is a pipe drained by a
thread of this process, as in a shell pipeline. Contenders alternate round-robin
(the order rotates each round) and the tables show medians; every ratio divides
two medians of the same run. Nothing asserts a timing: the target column says
met or not met, and wrong output is marked FAIL.

Contenders: ``assisters chat``, ``assisters debug``, ``assisters raw`` (body on
stdin), ``curl -N`` (the no-parse floor), ``drain_loop.py`` (httpx ``iter_raw``
only: the floor of our stack), ``copy_loop.py`` (the drain loop writing each read
to stdout: the floor of a passthrough, what ``raw`` does) and ``baseline_loop.py``
(a minimal httpx + orjson loop, flush per token: the baseline ``chat`` must beat).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import marshal
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sse_server import SSEServer, paced_tokens, stream_events, tokens

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
ASSISTERS = str(Path(PYTHON).with_name("assisters"))
CURL = shutil.which("curl")
RUN_TIMEOUT = 300.0  # seconds; a run still going then is killed and marked FAIL
MARKER = re.compile(rb"\bt(\d{4}) ")  # the paced tokens, in any contender's output
SECTIONS = ("startup", "streams", "latency")
CONTENDERS = ("chat", "debug", "raw", "curl", "drain", "copy", "baseline")
LABELS = {
    "chat": "assisters chat",
    "debug": "assisters debug",
    "raw": "assisters raw",
    "curl": "curl -N",
    "drain": "drain loop (iter_raw)",
    "copy": "copy loop (iter_raw+write)",
    "baseline": "baseline loop (httpx+orjson)",
}
# What each contender prints: the answer text, the SSE body, one line per event, nothing.
OUTPUT = {"chat": "text", "baseline": "text", "raw": "sse", "curl": "sse", "copy": "sse", "debug": "lines",
          "drain": "none"}
COMPLETE_ENV = {"_ASSISTERS_COMPLETE": "bash_complete", "COMP_WORDS": "assisters ch", "COMP_CWORD": "1"}


# ---------------------------------------------------------------------- running


@dataclass
class Run:
    """One child process: spawn to exit, its own rusage, what the server saw of it."""

    wall_s: float
    cpu_s: float  # user + sys of the child (os.wait4)
    maxrss_mb: float  # ru_maxrss of the child
    exec_to_request_s: float | None  # spawn to the request's first byte at the server
    stream_s: float | None  # request at the server to exit
    out_bytes: int
    problem: str | None
    delays_ms: list[float] = field(default_factory=list)  # paced runs: server write to stdout pipe
    bunched: int = 0  # paced runs: tokens that arrived in the same pipe read as the previous one


class PipeReader(threading.Thread):
    """Drains a FIFO: hashes and counts everything; keeps the reads and their times if asked."""

    def __init__(self, path: Path, *, keep: bool) -> None:
        super().__init__(daemon=True)
        self.path, self.keep = path, keep
        self.hasher = hashlib.sha1()
        self.size = self.lines = 0
        self.parts: list[bytes] = []
        self.read_ends: list[int] = []  # offset after each read
        self.read_ns: list[int] = []  # time.monotonic_ns() when each read returned

    def run(self) -> None:
        keep, read, now = self.keep, os.read, time.monotonic_ns
        fd = os.open(self.path, os.O_RDONLY)  # blocks until the child opens it
        try:
            while data := read(fd, 1 << 16):
                if keep:
                    self.read_ns.append(now())
                    self.parts.append(data)
                    self.read_ends.append(self.size + len(data))
                self.hasher.update(data)
                self.size += len(data)
                self.lines += data.count(b"\n")
        finally:
            os.close(fd)


@dataclass(frozen=True)
class Expect:
    """How to check a run's stdout."""

    sha1: str | None = None
    lines: int | None = None
    contains: bytes | None = None
    empty: bool = False


class Spawner:
    """The small process that starts every child and reports its rusage (see spawner.py).

    A child's stdout is a FIFO read by a :class:`PipeReader` thread of this
    process: a pipe, as in a shell pipeline. Its stderr goes to a file.
    """

    def __init__(self, tmp: Path) -> None:
        self.fifo, self.stderr = tmp / "stdout.fifo", tmp / "stderr.txt"
        os.mkfifo(self.fifo)
        self.proc = subprocess.Popen([PYTHON, "-I", "-S", str(HERE / "spawner.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def __enter__(self) -> Spawner:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait(timeout=10)

    def _send(self, value: tuple[Any, ...]) -> None:
        assert self.proc.stdin
        payload = marshal.dumps(value)
        self.proc.stdin.write(len(payload).to_bytes(4, "little") + payload)
        self.proc.stdin.flush()

    def _receive(self) -> tuple[Any, ...]:
        assert self.proc.stdout
        size = int.from_bytes(self.proc.stdout.read(4), "little")
        return marshal.loads(self.proc.stdout.read(size))  # type: ignore[no-any-return]

    def run(self, argv: list[str], env: dict[str, str], stdin: Path | None, reader: PipeReader,
            ) -> tuple[int, int, int, float, float, str | None]:
        """(exit status, start ns, end ns, CPU s, peak RSS KiB, stderr or why it did not start)."""
        reader.start()
        self._send((argv, env, str(stdin or os.devnull), str(self.fifo), str(self.stderr)))
        pid, start = self._receive()
        if pid < 0:
            while reader.is_alive():  # it may be waiting for a writer that never came
                with contextlib.suppress(OSError):
                    os.close(os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK))
                reader.join(0.01)
            return -1, 0, 0, 0.0, 0.0, start
        watchdog = threading.Timer(RUN_TIMEOUT, _kill, (pid,))
        watchdog.start()
        status, end, utime, stime, maxrss = self._receive()
        watchdog.cancel()
        reader.join()
        stderr = self.stderr.read_bytes().decode(errors="replace")
        return os.waitstatus_to_exitcode(status), start, end, utime + stime, maxrss, stderr


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def spawn(spawner: Spawner, argv: list[str], env: dict[str, str], server: SSEServer | None = None, *,
          stdin: Path | None = None, expect: Expect = Expect(), keep: bool = False,
          ) -> tuple[Run, PipeReader]:
    """Run one child to its end; the server (if any) tells when its request arrived."""
    seen = len(server.requests) if server else 0
    reader = PipeReader(spawner.fifo, keep=keep or expect.contains is not None)
    status, start, end, cpu, maxrss, stderr = spawner.run(argv, env, stdin, reader)
    arrival = None
    if server:
        new = server.requests[seen:]
        arrival = new[0].arrival_ns if len(new) == 1 else None
    run = Run(
        wall_s=(end - start) / 1e9,
        cpu_s=cpu,
        maxrss_mb=maxrss / 1024,
        exec_to_request_s=None if arrival is None else (arrival - start) / 1e9,
        stream_s=None if arrival is None else (end - arrival) / 1e9,
        out_bytes=reader.size,
        problem=_problem(status, stderr or "", reader, expect),
    )
    if server and arrival is None and not run.problem:
        run.problem = f"the server saw {len(server.requests) - seen} requests, not 1"
    return run, reader


def _problem(status: int, stderr: str, reader: PipeReader, expect: Expect) -> str | None:
    if status != 0:
        return f"exit {status}: {stderr.strip()[-200:]}"
    if expect.sha1 and reader.hasher.hexdigest() != expect.sha1:
        return f"stdout is not the expected bytes ({reader.size} bytes)"
    if expect.lines is not None and reader.lines != expect.lines:
        return f"stdout has {reader.lines} lines, expected {expect.lines}"
    if expect.empty and reader.size:
        return f"stdout should be empty, has {reader.size} bytes"
    if expect.contains and expect.contains not in b"".join(reader.parts):
        return f"stdout lacks {expect.contains!r}"
    return None


def child_env(tmp: Path, base_url: str) -> dict[str, str]:
    """Our environment without settings that could change what is measured.

    Dropped: assisters/OpenAI settings, proxies, and PYTHON* switches such as
    PYTHONDONTWRITEBYTECODE (every run would recompile the sources) or
    PYTHONUNBUFFERED. Bytecode goes to a cache in our temporary directory, filled
    by the warm-up runs, so nothing is written outside it. The config directory
    is empty, so no user config applies; the data, state and cache directories are
    ours too (``chat`` stores its conversations in the data directory).
    """
    keep = ("PYTHONPATH", "PYTHONHOME")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ASSISTERS_", "OPENAI_", "_ASSISTERS"))
        and not k.lower().endswith("_proxy")
        and (not k.startswith("PYTHON") or k in keep)
    }
    for name in ("config", "data", "state", "cache"):
        (tmp / name).mkdir(exist_ok=True)
    env.update(XDG_CONFIG_HOME=str(tmp / "config"), XDG_DATA_HOME=str(tmp / "data"),
               XDG_STATE_HOME=str(tmp / "state"), XDG_CACHE_HOME=str(tmp / "cache"),
               PYTHONPYCACHEPREFIX=str(tmp / "pycache"),
               NO_COLOR="1", NO_PROXY="*", ASSISTERS_BASE_URL=base_url, ASSISTERS_API_KEY="x")
    return env


# -------------------------------------------------------------------- contenders


@dataclass
class Bench:
    args: argparse.Namespace
    server: SSEServer
    spawner: Spawner
    env: dict[str, str]
    tmp: Path
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.base_url + "/chat/completions"

    def body_file(self, model: str) -> Path:
        path = self.tmp / f"body-{model}.json"
        if not path.exists():
            message = {"role": "user", "content": "bench"}
            path.write_bytes(orjson.dumps({"model": model, "messages": [message], "stream": True}))
        return path

    def command(self, name: str, model: str) -> tuple[list[str], Path | None]:
        """argv and stdin file of a contender streaming ``model``."""
        if name in ("chat", "debug"):
            return [ASSISTERS, name, "-m", model, "bench"], None
        if name == "raw":
            return [ASSISTERS, "raw"], self.body_file(model)
        if name == "curl":
            assert CURL
            return [CURL, "-N", "-s", "-S", "-H", "Content-Type: application/json",
                    "--data-binary", f"@{self.body_file(model)}", self.url], None
        script = {"drain": "drain_loop.py", "copy": "copy_loop.py", "baseline": "baseline_loop.py"}[name]
        return [PYTHON, str(HERE / script), self.url, model], None

    def run(self, name: str, model: str, contents: list[str], *, keep: bool = False,
            ) -> tuple[Run, PipeReader]:
        argv, stdin = self.command(name, model)
        return spawn(self.spawner, argv, self.env, self.server, stdin=stdin,
                     expect=expectation(name, model, contents), keep=keep)


_EXPECT_CACHE: dict[tuple[str, str], Expect] = {}


def expectation(name: str, model: str, contents: list[str]) -> Expect:
    key = (OUTPUT[name], model)
    if key not in _EXPECT_CACHE:
        kind = OUTPUT[name]
        if kind == "text":
            expect = Expect(sha1=hashlib.sha1("".join(contents).encode()).hexdigest())
        elif kind == "sse":
            expect = Expect(sha1=hashlib.sha1(b"".join(stream_events(model, contents))).hexdigest())
        elif kind == "lines":
            expect = Expect(lines=len(contents) + 4)  # role, tokens, finish, usage, [DONE]
        else:
            expect = Expect(empty=True)
        _EXPECT_CACHE[key] = expect
    return _EXPECT_CACHE[key]


def rotations(items: Sequence[str], rounds: int) -> Iterable[tuple[int, list[str]]]:
    """Round-robin with the starting contender rotating each round."""
    for r in range(rounds):
        shift = r % len(items)
        yield r, [*items[shift:], *items[:shift]]


# ---------------------------------------------------------------------- sections


def server_check(bench: Bench, size: int) -> dict[str, Any]:
    """curl -N into /dev/null against the largest stream: the server's own speed."""
    if not CURL:
        return {"skipped": "curl not found"}
    model = f"bench-{size}"
    bench.server.body(model)  # build it before anything is timed
    argv = [CURL, "-N", "-s", "-o", "/dev/null", "-H", "Content-Type: application/json",
            "--data-binary", f"@{bench.body_file(model)}", bench.url]
    rates = []
    for _ in range(3):
        run, _ = spawn(bench.spawner, argv, bench.env, bench.server)
        if run.stream_s:
            rates.append(size / run.stream_s)
    rate = statistics.median(rates) if rates else 0.0
    body_mb = len(bench.server.body(model)) / 1e6
    print(f"server check: curl -N -s > /dev/null drains {size:,} tokens ({body_mb:.0f} MB of chunked SSE)"
          f" at {rate / 1e6:.2f}M tokens/s, median of 3 (must be well over 1M/s)")
    return {"tokens": size, "body_mb": round(body_mb, 1), "tokens_per_s": round(rate)}


STARTUP = (
    ("python -c pass", [PYTHON, "-c", "pass"], {}, None),
    ("python -c 'import click'", [PYTHON, "-c", "import click"], {}, None),
    ("assisters --version", [ASSISTERS, "--version"], {}, b"assisters"),
    ("assisters --help", [ASSISTERS, "--help"], {}, b"Usage"),
    ("completion 'assisters ch'", [ASSISTERS], COMPLETE_ENV, b"chat"),
)


def section_startup(bench: Bench) -> None:
    rounds = bench.args.startup_rounds
    names = [name for name, *_ in STARTUP]
    spec = {name: (argv, extra, contains) for name, argv, extra, contains in STARTUP}
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for r, order in rotations(names, rounds + 1):
        for name in order:
            argv, extra, contains = spec[name]
            run, _ = spawn(bench.spawner, argv, {**bench.env, **extra}, expect=Expect(contains=contains))
            if r:  # round 0 warms the caches
                runs[name].append(run)
    reference = med(r.wall_s for r in runs["python -c pass"])
    reference_cpu = med(r.cpu_s for r in runs["python -c pass"])
    out = {}
    print(f"\n1. Start-up: spawn to exit, wall time ({rounds} rounds, medians; CPU = user+sys)")
    print(f"{'command':<28} {'median ms':>9} {'min ms':>7} {'CPU ms':>7} {'x python -c pass':>16}"
          f" {'CPU x python':>12}  check")
    for name in names:
        walls, cpus = [r.wall_s for r in runs[name]], [r.cpu_s for r in runs[name]]
        out[name] = {"median_ms": ms(med(walls)), "min_ms": ms(min(walls)), "cpu_ms": ms(med(cpus)),
                     "x_python": round(med(walls) / reference, 2),
                     "cpu_x_python": round(med(cpus) / reference_cpu, 2), "check": verdict(runs[name]),
                     "runs": [asdict(r) for r in runs[name]]}
        row = out[name]
        print(f"{name:<28} {row['median_ms']:>9.1f} {row['min_ms']:>7.1f} {row['cpu_ms']:>7.1f}"
              f" {row['x_python']:>16.2f} {row['cpu_x_python']:>12.2f}  {row['check']}")
    bench.results["startup"] = out


def section_streams(bench: Bench) -> None:
    args = bench.args
    names = args.contenders
    stream_runs: dict[int, dict[str, list[Run]]] = {}
    for index, size in enumerate(args.sizes):
        model, contents = f"bench-{size}", tokens(size)
        bench.server.body(model)  # build it before anything is timed
        rounds = args.rounds_by_size[index]
        runs: dict[str, list[Run]] = {name: [] for name in names}
        for _, order in rotations(names, rounds):
            for name in order:
                runs[name].append(bench.run(name, model, contents)[0])
        stream_runs[size] = runs
        print_streams(bench, size, rounds, runs, stream_runs)
    bench.results["exec_runs"] = {
        name: [r.exec_to_request_s for runs in stream_runs.values() for r in runs[name]] for name in names
    }


def print_streams(bench: Bench, size: int, rounds: int, runs: dict[str, list[Run]],
                  stream_runs: dict[int, dict[str, list[Run]]]) -> None:
    first = bench.args.sizes[0]
    table: dict[str, dict[str, Any]] = {}
    for name, items in runs.items():
        cpu = med(r.cpu_s for r in items)
        stream = med(r.stream_s for r in items if r.stream_s)
        row = table[name] = {
            "wall_s": round(med(r.wall_s for r in items), 4),
            "stream_s": round(stream, 4),
            "tokens_per_s": round(size / stream) if stream else None,
            "cpu_s": round(cpu, 4),
            "cpu_us_per_token": round(cpu / size * 1e6, 3),
            "maxrss_mb": round(med(r.maxrss_mb for r in items), 1),
            "check": verdict(items),
            "runs": [asdict(r) for r in items],
        }
        if size != first and name in stream_runs.get(first, {}):
            small = med(r.cpu_s for r in stream_runs[first][name])
            row["marginal_us_per_token"] = round((cpu - small) / (size - first) * 1e6, 3)
            small_rss = med(r.maxrss_mb for r in stream_runs[first][name])
            row["rss_vs_first"] = round(row["maxrss_mb"] / small_rss, 3)
    for row in table.values():
        for base in ("baseline", "drain"):
            if base in table:
                row[f"x_{base}"] = round(row["cpu_us_per_token"] / table[base]["cpu_us_per_token"], 3)
    bench.results.setdefault("streams", {})[str(size)] = table
    section = 2 if size == first else 3
    print(f"\n{section}. {size:,} tokens, unpaced ({rounds} rounds, medians). CPU = user+sys of the child;"
          f" tokens/s = tokens / (request at server to exit)")
    extra = size != first
    head = (f"{'contender':<29} {'wall s':>7} {'tokens/s':>9} {'CPU s':>7} {'CPU us/tok':>10}"
            f" {'x baseline':>10} {'x drain':>7} {'RSS MB':>7}")
    head += f" {'marg us/tok':>11} {'RSS x' + format(first, ','):>11}" if extra else ""
    print(head + "  check")
    for name, row in table.items():
        line = (f"{LABELS[name]:<29} {row['wall_s']:>7.3f} {fmt(row['tokens_per_s'], ',.0f'):>9}"
                f" {row['cpu_s']:>7.3f} {row['cpu_us_per_token']:>10.2f} {fmt(row.get('x_baseline')):>10}"
                f" {fmt(row.get('x_drain')):>7} {row['maxrss_mb']:>7.1f}")
        if extra:
            line += f" {fmt(row.get('marginal_us_per_token')):>11} {fmt(row.get('rss_vs_first'), '.3f'):>11}"
        print(line + "  " + row["check"])
    sys.stdout.flush()


def warm_up(bench: Bench) -> None:
    """One untimed run of every contender on the small stream: bytecode cache, disk cache."""
    size = bench.args.sizes[0]
    model, contents = f"bench-{size}", tokens(size)
    bench.server.body(model)
    for name in bench.args.contenders:
        bench.run(name, model, contents)


def section_latency(bench: Bench) -> None:
    """Paced stream: per token, the server's write to its arrival on the stdout pipe."""
    args = bench.args
    names = [n for n in args.contenders if n != "drain"]  # the drain loop prints nothing
    count, interval = args.paced_tokens, args.paced_ms
    model, contents = f"paced-{count}-{interval:g}", paced_tokens(count)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for _, order in rotations(names, args.latency_rounds):
        for name in order:
            run, reader = bench.run(name, model, contents, keep=True)
            if not run.problem:
                measure_delays(run, reader, bench.server.requests[-1].writes_ns, count)
            runs[name].append(run)
    bench.results["latency_runs"] = runs
    table: dict[str, dict[str, Any]] = {}
    for name, items in runs.items():
        delays = [d for r in items for d in r.delays_ms]
        table[name] = {
            "median_ms": round(med(delays), 3) if delays else None,
            "p90_ms": round(percentile(delays, 90), 3) if delays else None,
            "max_ms": round(max(delays), 3) if delays else None,
            "first_token_ms": round(med(r.delays_ms[0] for r in items if r.delays_ms), 3) if delays else None,
            "bunched": sum(r.bunched for r in items),
            "tokens": len(delays),
            "check": verdict(items),
        }
    for row in table.values():
        base = table.get("baseline")
        if base and base["median_ms"] and row["median_ms"] is not None:
            row["x_baseline_median"] = round(row["median_ms"] / base["median_ms"], 3)
            row["x_baseline_p90"] = round(row["p90_ms"] / base["p90_ms"], 3)
    bench.results["latency"] = table
    print(f"\n4. Token to stdout: {count} tokens {interval:g} ms apart, server write -> read from the"
          f" child's stdout pipe ({args.latency_rounds} rounds, all tokens pooled)")
    print(f"{'contender':<29} {'median ms':>9} {'p90 ms':>7} {'max ms':>7} {'1st tok ms':>10}"
          f" {'bunched':>8} {'x baseline med':>14} {'p90':>5}  check")
    for name, row in table.items():
        print(f"{LABELS[name]:<29} {fmt(row['median_ms'], '.3f'):>9} {fmt(row['p90_ms'], '.3f'):>7}"
              f" {fmt(row['max_ms'], '.3f'):>7} {fmt(row['first_token_ms'], '.3f'):>10}"
              f" {row['bunched']:>3}/{row['tokens']:<4} {fmt(row.get('x_baseline_median')):>14}"
              f" {fmt(row.get('x_baseline_p90')):>5}  {row['check']}")
    sys.stdout.flush()


def measure_delays(run: Run, reader: PipeReader, writes_ns: list[int], count: int) -> None:
    """Find each token's marker in the output and the pipe read that delivered it."""
    output = b"".join(reader.parts)
    read_of: dict[int, int] = {}
    for match in MARKER.finditer(output):
        read_of.setdefault(int(match.group(1)), bisect_left(reader.read_ends, match.end()))
    missing = [i for i in range(count) if i not in read_of]
    if missing or len(writes_ns) != count:
        run.problem = f"{len(missing)} paced tokens not found in stdout"
        return
    run.delays_ms = [(reader.read_ns[read_of[i]] - writes_ns[i]) / 1e6 for i in range(count)]
    run.bunched = sum(read_of[i] == read_of[i - 1] for i in range(1, count))


def print_exec_to_request(bench: Bench) -> None:
    samples: dict[str, list[float]] = {}
    for name, values in bench.results.get("exec_runs", {}).items():
        samples.setdefault(name, []).extend(v for v in values if v is not None)
    for name, items in bench.results.get("latency_runs", {}).items():
        samples.setdefault(name, []).extend(r.exec_to_request_s for r in items if r.exec_to_request_s)
    if not samples:
        return
    table = {name: {"median_ms": ms(med(v)), "min_ms": ms(min(v)), "runs": len(v)}
             for name, v in samples.items() if v}
    base = table.get("baseline")
    print("\n5. Exec to request: spawning the process to the request's first byte at the server"
          " (all stream runs)")
    print(f"{'contender':<29} {'median ms':>9} {'min ms':>7} {'runs':>5} {'x baseline':>10}")
    for name, row in table.items():
        if base:
            row["x_baseline"] = round(row["median_ms"] / base["median_ms"], 3)
        print(f"{LABELS[name]:<29} {row['median_ms']:>9.1f} {row['min_ms']:>7.1f} {row['runs']:>5}"
              f" {fmt(row.get('x_baseline')):>10}")
    bench.results["exec_to_request"] = table


# ----------------------------------------------------------------------- targets


def targets(results: dict[str, Any], sizes: list[int]) -> list[dict[str, Any]]:
    """The team's targets as ratios of this run's medians; n/a when a figure is missing."""
    small, big = (str(s) for s in (sizes[0], sizes[-1]))
    streams, startup = results.get("streams", {}), results.get("startup", {})
    latency, execs = results.get("latency", {}), results.get("exec_to_request", {})

    def get(table: dict[str, Any], *keys: str) -> float | None:
        for key in keys:
            if not isinstance(table, dict) or key not in table:
                return None
            table = table[key]
        return table  # type: ignore[return-value]

    rows = [
        (f"chat CPU/token @{int(big):,} vs baseline", "us", get(streams, big, "chat", "cpu_us_per_token"),
         get(streams, big, "baseline", "cpu_us_per_token"), 1.0),
        (f"raw CPU/token @{int(big):,} vs drain loop", "us", get(streams, big, "raw", "cpu_us_per_token"),
         get(streams, big, "drain", "cpu_us_per_token"), 1.05),
        (f"raw CPU/token @{int(big):,} vs copy loop", "us", get(streams, big, "raw", "cpu_us_per_token"),
         get(streams, big, "copy", "cpu_us_per_token"), 1.05),
        ("chat exec-to-request vs baseline", "ms", get(execs, "chat", "median_ms"),
         get(execs, "baseline", "median_ms"), 1.0),
    ]
    python = get(startup, "python -c pass", "median_ms")
    for name in ("assisters --version", "assisters --help", "completion 'assisters ch'"):
        rows.append((f"{name} vs python -c pass", "ms", get(startup, name, "median_ms"), python, 5.5))
    rows += [
        ("chat token->stdout median vs baseline", "ms", get(latency, "chat", "median_ms"),
         get(latency, "baseline", "median_ms"), 1.0),
        ("chat token->stdout p90 vs baseline", "ms", get(latency, "chat", "p90_ms"),
         get(latency, "baseline", "p90_ms"), 1.0),
        (f"chat peak RSS @{int(big):,} vs @{int(small):,} (flat)", "MB",
         get(streams, big, "chat", "maxrss_mb"), get(streams, small, "chat", "maxrss_mb"), 1.05),
        (f"chat peak RSS @{int(small):,} vs baseline", "MB", get(streams, small, "chat", "maxrss_mb"),
         get(streams, small, "baseline", "maxrss_mb"), 1.0),
        (f"chat peak RSS @{int(big):,} vs baseline", "MB", get(streams, big, "chat", "maxrss_mb"),
         get(streams, big, "baseline", "maxrss_mb"), 1.0),
    ]
    out = []
    for label, unit, value, reference, limit in rows:
        ratio = value / reference if value is not None and reference else None
        met = None if ratio is None else ratio <= limit
        out.append({"target": label, "unit": unit, "value": value, "reference": reference,
                    "ratio": None if ratio is None else round(ratio, 3), "max_ratio": limit, "met": met})
    return out


def print_targets(rows: list[dict[str, Any]]) -> None:
    print("\n6. Targets (ratios of medians from this run)")
    print(f"{'figure':<44} {'value':>10} {'reference':>10} {'ratio':>6} {'target':>7}  result")
    for row in rows:
        unit = row["unit"]
        result = {True: "met", False: "NOT MET", None: "n/a"}[row["met"]]
        print(f"{row['target']:<44} {fmt(row['value'], '.2f') + ' ' + unit:>10}"
              f" {fmt(row['reference'], '.2f') + ' ' + unit:>10} {fmt(row['ratio']):>6}"
              f" {'<= ' + format(row['max_ratio'], '.2f'):>7}  {result}")


# ------------------------------------------------------------------------ helpers


def med(values: Iterable[float]) -> float:
    items = list(values)
    return statistics.median(items) if items else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def verdict(runs: list[Run]) -> str:
    failed = [r.problem for r in runs if r.problem]
    return f"FAIL {len(failed)}/{len(runs)}: {failed[0]}" if failed else "ok"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or cpu
    versions = {}
    for package in ("httpx", "orjson", "click", "assisters"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    curl = ""
    if CURL:
        curl = subprocess.run([CURL, "--version"], capture_output=True, text=True, check=False).stdout
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "curl": curl.split("\n")[0].split(" (")[0] or None, **versions}


# ------------------------------------------------------------------------ profile


PROFILE = """\
import cProfile, sys, time
out, sys.argv = sys.argv[1], ["assisters", *sys.argv[2:]]
from assisters.commands.main import main
profiler = cProfile.Profile(time.process_time)
try:
    profiler.runcall(main)
except SystemExit:
    pass
profiler.dump_stats(out)
"""


def profile(bench: Bench, size: int) -> None:
    """CPU profile of one ``assisters chat`` at ``size`` tokens (imports excluded; stdout a
    pipe as in the tables), and ``-X importtime`` of its start-up."""
    import pstats

    model = f"bench-{size}"
    bench.server.body(model)
    out = bench.tmp / "chat.prof"
    spawn(bench.spawner, [ASSISTERS, "chat", "-m", "bench-20", "bench"], bench.env)  # bytecode cache
    argv = [PYTHON, "-c", PROFILE, str(out), "chat", "-m", model, "bench"]
    run, _ = spawn(bench.spawner, argv, bench.env, bench.server)
    print(f"\nprofile: assisters chat, {size:,} tokens ({run.problem or 'ok'}, CPU {run.cpu_s:.2f} s);"
          " top 15 by tottime, process CPU time")
    pstats.Stats(str(out)).sort_stats("tottime").print_stats(15)
    chat = [PYTHON, "-X", "importtime", "-m", "assisters", "chat", "-m", "bench-20", "bench"]
    proc = subprocess.run(chat, env=bench.env, capture_output=True, text=True, check=False)
    rows = []
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and parts[1].strip().isdigit():
            rows.append((int(parts[1]), int(parts[0].split(":")[1]), parts[2].rstrip()))
    print("importtime of assisters chat (bench-20), top 20 by cumulative us:")
    print(f"{'cumulative':>10} {'self':>8}  module")
    for cumulative, own, name in sorted(rows, reverse=True)[:20]:
        print(f"{cumulative:>10} {own:>8}  {name}")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller streams and fewer rounds (about 40 s instead of a few minutes)")
    parser.add_argument("--rounds", type=int, metavar="N",
                        help="rounds of every section (overrides the defaults)")
    parser.add_argument("--json", type=Path, default=HERE / "results.json", metavar="PATH",
                        help="where to write the results (default bench/results.json)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                        help=f"run only these sections: {', '.join(SECTIONS)}")
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS),
                        metavar="NAME", help=f"stream contenders (default all: {' '.join(CONTENDERS)})")
    parser.add_argument("--sizes", type=int, nargs=2, metavar=("SMALL", "BIG"),
                        help="token counts of the two unpaced streams (default 20000 200000)")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the tables: cProfile of chat on the big stream, and its importtime")
    args = parser.parse_args(argv)
    quick = args.quick
    args.sizes = args.sizes or ([5000, 50_000] if quick else [20_000, 200_000])
    default_rounds = (3, 1) if quick else (5, 3)
    args.rounds_by_size = [args.rounds or n for n in default_rounds]
    args.startup_rounds = args.rounds or (5 if quick else 15)
    args.latency_rounds = args.rounds or (1 if quick else 3)
    args.paced_tokens, args.paced_ms = 50, 20.0
    if "curl" in args.contenders and not CURL:
        print("note: curl not found; the curl rows are skipped")
        args.contenders.remove("curl")
    if min(args.sizes) < 1 or (args.rounds is not None and args.rounds < 1):
        parser.error("--sizes and --rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not Path(ASSISTERS).exists():
        raise SystemExit(f"bench: {ASSISTERS} not found; run with the project's .venv/bin/python")
    sections = args.only or SECTIONS
    started = time.monotonic()
    info = machine()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="assisters-bench-")))
        server = stack.enter_context(SSEServer())
        spawner = stack.enter_context(Spawner(tmp))
        bench = Bench(args, server, spawner, child_env(tmp, server.base_url), tmp)
        print(f"assisters bench: {info['cpu']}, {info['cores']} cores, Python {info['python']},"
              f" httpx {info['httpx']}, orjson {info['orjson']}, click {info['click']}, {info['curl']}")
        if args.profile:
            profile(bench, args.sizes[-1])
            return
        results: dict[str, Any] = {"machine": info, "command": sys.argv[1:] if argv is None else argv}
        floor, _ = spawn(spawner, [PYTHON, "-I", "-S", "-c", "pass"], bench.env)
        results["rss_floor_mb"] = round(floor.maxrss_mb, 1)
        print(f"peak RSS figures are floored at the spawner's own, {floor.maxrss_mb:.1f} MB (see spawner.py)")
        bench.results = results
        if "streams" in sections:
            results["server_check"] = server_check(bench, args.sizes[-1])
        if "streams" in sections or "latency" in sections:
            warm_up(bench)
        run_sections(bench, sections)
        print_exec_to_request(bench)
        results["targets"] = rows = targets(results, args.sizes)
        print_targets(rows)
    results.pop("exec_runs", None)
    latency_runs = results.pop("latency_runs", {})
    if "latency" in results:
        for name, items in latency_runs.items():
            results["latency"][name]["runs"] = [asdict(r) for r in items]
    results["seconds"] = round(time.monotonic() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"\n{results['seconds']:.0f} s; results written to {args.json}")


def run_sections(bench: Bench, sections: Sequence[str]) -> None:
    steps: dict[str, Callable[[Bench], None]] = {
        "startup": section_startup, "streams": section_streams, "latency": section_latency,
    }
    for name in SECTIONS:
        if name in sections:
            steps[name](bench)


if __name__ == "__main__":
    main()
