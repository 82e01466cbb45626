"""What ``assisters batch run`` costs, against minimal loops run side by side.

    .venv/bin/python bench/batch_bench.py [--rounds N] [--requests N] [--big N] [--xargs N] [--json PATH]

A local server (``batch_server.py``, a thread here) answers every request 100 ms
after it arrives, head and body in one write on a TCP_NODELAY socket. Each
contender is a child process started by ``spawner.py`` (so its peak RSS is its own)
and sends the same requests at the same concurrency (32):

* ``assisters batch run INPUT -o OUTPUT -j 32 -q``;
* ``batch_threads.py``: a thread pool sharing one httpx.Client;
* ``batch_asyncio.py``: asyncio, one httpx.AsyncClient and a semaphore;
* ``xargs -P 32 assisters chat --no-stream``: the shell loop it replaces (fewer
  requests, reported per request, for scale).

Rounds alternate the contenders (the order rotates); the tables show medians and
every ratio divides two medians of this run. Printed: wall time against the ideal
``ceil(N/32) x 100 ms``, CPU (user+sys) against the better minimal loop, and the
peak RSS of batch run at ``--big`` requests against ``--requests``. Nothing is
asserted: the targets say met or not met.
"""

from __future__ import annotations

import argparse
import marshal
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
from batch_server import BatchServer

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
ASSISTERS = str(Path(PYTHON).with_name("assisters"))
LATENCY = 0.1
CONCURRENCY = 32


@dataclass
class Run:
    contender: str
    requests: int
    wall_s: float
    cpu_s: float
    maxrss_mb: float
    lines: int
    ok: bool


class Spawner:
    """The small process that starts each child and reports its rusage (see spawner.py)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([PYTHON, "-I", "-S", str(HERE / "spawner.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def _read(self) -> tuple:
        assert self.proc.stdout is not None
        size = int.from_bytes(self.proc.stdout.read(4), "little")
        return marshal.loads(self.proc.stdout.read(size))

    def run(self, argv: list[str], env: dict[str, str], stdin: str, stderr: str,
            ) -> tuple[int, float, float, float]:
        assert self.proc.stdin is not None
        payload = marshal.dumps((argv, env, stdin, os.devnull, stderr))
        self.proc.stdin.write(len(payload).to_bytes(4, "little") + payload)
        self.proc.stdin.flush()
        pid, start = self._read()
        if pid == -1:
            raise RuntimeError(start)
        status, end, utime, stime, maxrss = self._read()
        return os.waitstatus_to_exitcode(status), (end - start) / 1e9, utime + stime, maxrss / 1024

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def write_inputs(work: Path, count: int) -> tuple[Path, Path]:
    requests = work / f"requests-{count}.jsonl"
    prompts = work / f"prompts-{count}.txt"
    with requests.open("wb") as out:
        for i in range(count):
            body = {"model": "bench", "messages": [{"role": "user", "content": f"question {i}"}]}
            out.write(orjson.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                                    "body": body}) + b"\n")
    prompts.write_text("".join(f"question {i}\n" for i in range(count)))
    return requests, prompts


def argv_for(contender: str, requests: Path, prompts: Path, output: Path, base_url: str) -> list[str]:
    if contender == "batch run":
        return [ASSISTERS, "batch", "run", str(requests), "-o", str(output), "-j", str(CONCURRENCY), "-q"]
    if contender == "thread pool loop":
        return [PYTHON, str(HERE / "batch_threads.py"), str(requests), str(output), str(CONCURRENCY),
                base_url]
    if contender == "asyncio loop":
        return [PYTHON, str(HERE / "batch_asyncio.py"), str(requests), str(output), str(CONCURRENCY),
                base_url]
    # the shell loop: one process per prompt, stdout of each appended to the output
    return ["/bin/sh", "-c", f"xargs -P {CONCURRENCY} -d '\\n' -n 1 {ASSISTERS} chat --no-stream -m bench "
            f"< {prompts} > {output}"]


def one_run(spawner: Spawner, contender: str, count: int, work: Path, server: BatchServer,
            env: dict[str, str]) -> Run:
    requests, prompts = work / f"requests-{count}.jsonl", work / f"prompts-{count}.txt"
    if not requests.exists():
        write_inputs(work, count)
    output = work / "out.jsonl"
    output.unlink(missing_ok=True)
    before = server.answered
    argv = argv_for(contender, requests, prompts, output, server.base_url)
    status, wall, cpu, rss = spawner.run(argv, env, os.devnull, str(work / "stderr.txt"))
    produced = output.read_bytes().count(b"\n")
    if contender == "xargs -P 32 chat":  # chat prints text, not lines: count what the server answered
        produced = server.answered - before
    return Run(contender, count, wall, cpu, rss, produced, status == 0 and produced == count)


def median(runs: list[Run], field: str) -> float:
    return statistics.median(getattr(r, field) for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--big", type=int, default=10000, help="requests for the RSS comparison (0: skip)")
    parser.add_argument("--xargs", type=int, default=96, help="requests for the xargs shell loop (0: skip)")
    parser.add_argument("--json", default=str(HERE / "batch_results.json"))
    args = parser.parse_args()
    server = BatchServer(LATENCY)
    spawner = Spawner()
    env = {**os.environ, "ASSISTERS_BASE_URL": server.base_url, "ASSISTERS_API_KEY": "x"}
    contenders = ["batch run", "thread pool loop", "asyncio loop"]
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as tmp:
        work = Path(tmp)
        # The data and state directories are the bench's own: the xargs loop's chats store
        # their conversations, and nothing may be written outside the work directory.
        env.update(XDG_DATA_HOME=str(work / "data"), XDG_STATE_HOME=str(work / "state"))
        one_run(spawner, "batch run", 50, work, server, env)  # bytecode caches, warm connections
        for round_number in range(args.rounds):
            shift = round_number % len(contenders)
            for contender in contenders[shift:] + contenders[:shift]:
                runs.append(one_run(spawner, contender, args.requests, work, server, env))
                print(f"  round {round_number + 1}: {contender}: {runs[-1].wall_s:.2f} s, "
                      f"CPU {runs[-1].cpu_s:.2f} s", file=sys.stderr)
        if args.xargs:
            runs.append(one_run(spawner, "xargs -P 32 chat", args.xargs, work, server, env))
        big: list[Run] = []
        if args.big:
            big.append(one_run(spawner, "batch run", args.big, work, server, env))
    spawner.close()
    server.close()
    report(runs, big, args)


def report(runs: list[Run], big: list[Run], args: argparse.Namespace) -> None:
    ideal = math.ceil(args.requests / CONCURRENCY) * LATENCY
    print(f"\nbatch benchmark: {args.requests} requests at -j {CONCURRENCY}, {LATENCY * 1000:.0f} ms latency "
          f"each, {args.rounds} rounds (medians); ideal wall {ideal:.2f} s")
    print(f"{'contender':<22} {'wall s':>8} {'x ideal':>8} {'CPU s':>7} {'CPU ms/req':>11} "
          f"{'peak RSS MB':>12} ok")
    by: dict[str, list[Run]] = {}
    for run in runs:
        by.setdefault(run.contender, []).append(run)
    for name, group in by.items():
        count = group[0].requests
        wall, cpu, rss = median(group, "wall_s"), median(group, "cpu_s"), median(group, "maxrss_mb")
        x_ideal = wall / (math.ceil(count / CONCURRENCY) * LATENCY)
        print(f"{name:<22} {wall:>8.2f} {x_ideal:>8.2f} {cpu:>7.2f} {cpu / count * 1000:>11.2f} {rss:>12.1f} "
              f"{'yes' if all(r.ok for r in group) else 'FAIL'}")
    ours = by["batch run"]
    loops = min(median(by["thread pool loop"], "cpu_s"), median(by["asyncio loop"], "cpu_s"))
    wall_ratio = median(ours, "wall_s") / ideal
    cpu_ratio = median(ours, "cpu_s") / loops
    targets = [("wall <= 1.2x ideal", wall_ratio, 1.2), ("CPU <= 1.2x the better loop", cpu_ratio, 1.2)]
    if big:
        rss_ratio = big[0].maxrss_mb / median(ours, "maxrss_mb")
        print(f"batch run at {args.big} requests: wall {big[0].wall_s:.2f} s, CPU {big[0].cpu_s:.2f} s, "
              f"peak RSS {big[0].maxrss_mb:.1f} MB {'ok' if big[0].ok else 'FAIL'}")
        targets.append((f"RSS at {args.big} <= 1.15x at {args.requests}", rss_ratio, 1.15))
    print("\ntargets:")
    for label, ratio, limit in targets:
        print(f"  {label:<34} {ratio:5.2f}  {'met' if ratio <= limit else 'NOT met'}")
    Path(args.json).write_bytes(orjson.dumps({
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "runs": [asdict(r) for r in runs + big], "targets": {label: ratio for label, ratio, _ in targets}},
        option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
