"""Start-up of the interactive chat, and of one-shot chat with and without the store.

    .venv/bin/python bench/prompt_startup.py [--rounds N]

Side by side in each round (order rotated), medians over the rounds:

* ``python -c pass``: spawn to exit, the baseline;
* ``assisters chat`` in a pseudo-terminal: spawn to the first prompt drawn on the
  terminal (the first ``>`` after the banner), the process then killed;
* ``assisters chat -m echo hi`` (stored, the default) and ``--no-store``: spawn to exit
  against a local server, stdin ``/dev/null``, stdout a pipe.

Every child gets an empty ``XDG_*`` home in a temporary folder (no user config, a
fresh store and history) and its bytecode cache there. CPU is user+sys of the
child (steadier than wall time on a busy machine). The target: the first prompt
within 12x ``python -c pass`` (prompt_toolkit is a large import), and one-shot chat
with the store within 1.05x of ``--no-store`` in CPU (storing costs two appends).
"""

from __future__ import annotations

import argparse
import os
import pty
import resource
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "cli"))

from assisters.server.app import ChatServer  # noqa: E402
from assisters.server.options import ServeOptions  # noqa: E402

PROMPT_TARGET = 12.0
STORE_TARGET = 1.05


def child_env(tmp: Path, base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ASSISTERS_", "OPENAI_", "PYTHON", "XDG_"))}
    env.update(XDG_CONFIG_HOME=str(tmp / "config"), XDG_DATA_HOME=str(tmp / "data"),
               XDG_STATE_HOME=str(tmp / "state"), PYTHONPYCACHEPREFIX=str(tmp / "pycache"),
               ASSISTERS_BASE_URL=base_url, TERM="xterm")
    return env


def run_to_exit(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=True)
    return time.perf_counter() - start


def run_to_prompt(argv: list[str], env: dict[str, str]) -> float:
    """Spawn on a pty; the time until the prompt is drawn (cursor position requests answered)."""
    controller, follower = pty.openpty()
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    seen = b""
    try:
        while True:
            ready, _, _ = select.select([controller], [], [], 30)
            if not ready:
                raise RuntimeError(f"no prompt within 30 s: {seen[-300:]!r}")
            data = os.read(controller, 65536)
            seen += data
            if b"\x1b[6n" in data:
                os.write(controller, b"\x1b[1;1R")
            banner = seen.find(b"Ctrl-D ends.")
            if banner >= 0 and b">" in seen[banner:]:
                return time.perf_counter() - start
    finally:
        process.kill()
        process.wait()
        os.close(controller)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    python = sys.executable
    assisters = [python, "-m", "assisters"]
    results: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}  # user+sys of the child: steadier than wall time on a busy machine
    with tempfile.TemporaryDirectory() as folder, \
            ChatServer(ServeOptions(tokens_per_second=0)) as server:
        tmp = Path(folder)
        env = child_env(tmp, server.base_url)
        env["PYTHONPATH"] = str(ROOT / "cli")
        contenders = {
            "python -c pass": lambda: run_to_exit([python, "-c", "pass"], env),
            "chat: first prompt (pty)": lambda: run_to_prompt([*assisters, "chat", "-m", "echo"], env),
            "chat -m echo hi (stored)": lambda: run_to_exit([*assisters, "chat", "-m", "echo", "hi"], env),
            "chat -m echo hi --no-store": lambda: run_to_exit(
                [*assisters, "chat", "--no-store", "-m", "echo", "hi"], env),
        }
        for run in contenders.values():  # untimed: fills the bytecode cache
            run()
        names = list(contenders)
        for round_number in range(args.rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                before = _children_cpu()
                results.setdefault(name, []).append(contenders[name]())
                cpu.setdefault(name, []).append(_children_cpu() - before)
    base = statistics.median(results["python -c pass"])
    base_cpu = statistics.median(cpu["python -c pass"])
    print(f"{'contender':<30} {'median ms':>10} {'min ms':>8} {'x python':>9} {'CPU ms':>7} {'CPU x':>6}")
    for name, times in results.items():
        median, cpu_median = statistics.median(times), statistics.median(cpu[name])
        print(f"{name:<30} {median * 1000:>10.1f} {min(times) * 1000:>8.1f} {median / base:>9.2f} "
              f"{cpu_median * 1000:>7.1f} {cpu_median / base_cpu:>6.2f}")
    prompt = statistics.median(results["chat: first prompt (pty)"]) / base
    store = (statistics.median(cpu["chat -m echo hi (stored)"])
             / statistics.median(cpu["chat -m echo hi --no-store"]))
    print(f"first prompt vs python -c pass: {prompt:.2f} (target <= {PROMPT_TARGET:g}: "
          f"{'met' if prompt <= PROMPT_TARGET else 'NOT MET'})")
    print(f"one-shot chat stored vs --no-store, CPU: {store:.3f} (target <= {STORE_TARGET:g}: "
          f"{'met' if store <= STORE_TARGET else 'NOT MET'})")


if __name__ == "__main__":
    main()
