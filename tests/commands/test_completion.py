"""Shell completion: the checked-in scripts, ``assisters completion SHELL``, ``--model``
completion from the cache (never the network), and a start-up without the HTTP stack."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assisters.commands.main import COMMANDS
from tests.conftest import SECRET, run_cli

ROOT = Path(__file__).resolve().parents[2]
SHELLS = ("bash", "zsh", "fish")


def cache_file(cache_home: Path, base_url: str) -> Path:
    digest = hashlib.sha256(base_url.encode("utf-8")).hexdigest()[:16]
    return cache_home / "assisters" / f"models-{digest}.json"


def seed_cache(cache_home: Path, base_url: str, models: list[str]) -> None:
    """A cache file in the documented format, as ``assisters models`` leaves it."""
    path = cache_file(cache_home, base_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"base_url": base_url, "fetched_at": "2025-01-01T00:00:00Z",
                                "models": models}))


@pytest.fixture
def cache_home(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def silent_port() -> Iterator[tuple[str, socket.socket]]:
    """A base URL whose port listens but is never served: any connection attempt
    stays queued in the backlog, where the test can see it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", sock


def assert_never_connected(sock: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        sock.accept()[0].close()


def complete(words: str, cache_home: Path, shell: str = "bash", **env: str,
             ) -> subprocess.CompletedProcess[bytes]:
    """Ask for completions the way the bash and zsh scripts do: the words typed so
    far, the index of the word being completed (the last one)."""
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    result = run_cli(env={"_ASSISTERS_COMPLETE": f"{shell}_complete", "COMP_WORDS": words,
                          "COMP_CWORD": str(cword), "XDG_CACHE_HOME": str(cache_home), **env},
                     timeout=30)
    assert result.stderr == b"", result.stderr
    return result


def plain(*values: str) -> bytes:
    return "".join(f"plain,{v}\n" for v in values).encode()


# ------------------------------------------------------------------- the scripts


@pytest.mark.parametrize("shell", SHELLS)
def test_checked_in_script_is_what_the_completion_command_prints(shell: str):
    result = run_cli("completion", shell)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (ROOT / "completions" / f"assisters.{shell}").read_bytes(), (
        f"completions/assisters.{shell} is stale: run "
        f"`assisters completion {shell} > completions/assisters.{shell}`")


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_command_prints_clicks_own_script(shell: str):
    result = run_cli(env={"_ASSISTERS_COMPLETE": f"{shell}_source"})
    assert result.returncode == 0
    assert run_cli("completion", shell).stdout == result.stdout
    assert f"_ASSISTERS_COMPLETE={shell}_complete".encode() in result.stdout


def test_an_unknown_shell_is_a_usage_error():
    result = run_cli("completion", "tcsh")
    assert result.returncode == 2
    assert result.stdout == b""
    assert b"'tcsh' is not one of 'bash', 'zsh', 'fish'" in result.stderr


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


def bash_completions(words: list[str], cache_home: Path, tmp_path: Path, **env: str) -> list[str]:
    """Source the checked-in bash script and press Tab after ``words``."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "assisters").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m assisters "$@"\n')
    (bindir / "assisters").chmod(0o755)
    script = (f"source {ROOT / 'completions' / 'assisters.bash'}\n"
              f"COMP_WORDS=({' '.join(map(repr, words))}); COMP_CWORD={len(words) - 1}\n"
              '_assisters_completion assisters\nprintf "%s\\n" "${COMPREPLY[@]}"\n')
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script], capture_output=True, timeout=60,
        env={**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
             "XDG_CACHE_HOME": str(cache_home), **env})
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.decode().splitlines() if line]


@needs_bash
def test_the_bash_script_completes_commands_and_cached_models(
        cache_home: Path, tmp_path: Path, silent_port: tuple[str, socket.socket]):
    base_url, sock = silent_port
    seed_cache(cache_home, base_url, ["echo", "lorem"])
    assert bash_completions(["assisters", "mo"], cache_home, tmp_path) == ["models"]
    assert bash_completions(["assisters", "chat", "--model", ""], cache_home, tmp_path,
                            ASSISTERS_BASE_URL=base_url) == ["echo", "lorem"]
    assert_never_connected(sock)


# -------------------------------------------------------------- --model completion


def test_model_completion_lists_what_assisters_models_cached_without_asking_again(
        cache_home: Path, httpserver: Any):
    httpserver.expect_request("/v1/models").respond_with_json(
        {"object": "list", "data": [{"id": "zeta"}, {"id": "alpha"}]})
    env = {"ASSISTERS_BASE_URL": httpserver.url_for("/v1"), "ASSISTERS_API_KEY": SECRET}
    assert run_cli("models", env={"XDG_CACHE_HOME": str(cache_home), **env}).returncode == 0
    result = complete("assisters chat --model ", cache_home, **env)
    assert (result.returncode, result.stdout) == (0, plain("zeta", "alpha"))
    assert len(httpserver.log) == 1  # the models run; completion sent nothing


def test_model_completion_never_touches_the_network(
        cache_home: Path, silent_port: tuple[str, socket.socket]):
    base_url, sock = silent_port
    seed_cache(cache_home, base_url, ["echo", "lorem"])
    result = complete("assisters chat --model ", cache_home, ASSISTERS_BASE_URL=base_url)
    assert (result.returncode, result.stdout) == (0, plain("echo", "lorem"))
    assert_never_connected(sock)


def test_model_completion_without_a_cache_prints_nothing(
        cache_home: Path, silent_port: tuple[str, socket.socket]):
    base_url, sock = silent_port
    seed_cache(cache_home, "http://elsewhere.example/v1", ["not-this-one"])
    result = complete("assisters chat --model ", cache_home, ASSISTERS_BASE_URL=base_url)
    assert result.returncode == 0
    assert result.stdout.strip() == b""
    assert_never_connected(sock)


def test_model_completion_keeps_only_models_starting_with_the_typed_text(cache_home: Path):
    seed_cache(cache_home, "local", ["llama-3.1-8b", "lorem", "echo", "llama-3.3-70b"])
    result = complete("assisters debug -m lla", cache_home, ASSISTERS_BASE_URL="local")
    assert result.stdout == plain("llama-3.1-8b", "llama-3.3-70b")


@pytest.mark.parametrize(("shell", "expected"), [
    ("zsh", b"plain\necho\n_\nplain\nlorem\n_\n"),
    ("fish", b"plain,echo\nplain,lorem\n"),
])
def test_model_completion_speaks_each_shells_format(cache_home: Path, shell: str, expected: bytes):
    seed_cache(cache_home, "local", ["echo", "lorem"])
    if shell == "fish":  # fish passes the whole line and the word being completed
        result = run_cli(env={"_ASSISTERS_COMPLETE": "fish_complete", "COMP_WORDS": "assisters chat -m ",
                              "COMP_CWORD": "", "XDG_CACHE_HOME": str(cache_home),
                              "ASSISTERS_BASE_URL": "local"})
    else:
        result = complete("assisters chat -m ", cache_home, shell, ASSISTERS_BASE_URL="local")
    assert result.stdout == expected


def test_base_url_typed_on_the_line_wins_over_the_environment(cache_home: Path):
    seed_cache(cache_home, "http://typed.example/v1", ["typed-model"])
    seed_cache(cache_home, "http://env.example/v1", ["env-model"])
    result = complete("assisters chat --base-url http://typed.example/v1/ --model ", cache_home,
                      ASSISTERS_BASE_URL="http://env.example/v1")
    assert result.stdout == plain("typed-model")


def test_openai_base_url_is_the_fallback_as_for_the_commands(cache_home: Path):
    seed_cache(cache_home, "http://openai-env.example/v1", ["from-openai-env"])
    result = complete("assisters chat --model ", cache_home, OPENAI_BASE_URL="http://openai-env.example/v1")
    assert result.stdout == plain("from-openai-env")


def test_the_config_file_and_its_profiles_pick_the_cache(cache_home: Path, tmp_path: Path):
    config = tmp_path / "xdg-config" / "assisters" / "config.toml"
    config.parent.mkdir(parents=True)
    marker = tmp_path / "key-command-ran"
    config.write_text(
        'base_url = "http://top.example/v1"\n'
        f'api_key_command = "touch {marker}"\n'
        '[profiles.work]\nbase_url = "http://work.example/v1"\n')
    seed_cache(cache_home, "http://top.example/v1", ["top-model"])
    seed_cache(cache_home, "http://work.example/v1", ["work-model"])
    assert complete("assisters chat --model ", cache_home).stdout == plain("top-model")
    assert complete("assisters chat --profile work --model ", cache_home).stdout == plain("work-model")
    assert complete("assisters chat --model ", cache_home,
                    ASSISTERS_PROFILE="work").stdout == plain("work-model")
    assert not marker.exists()  # a Tab press never runs the key command (a password prompt)


@pytest.mark.parametrize("problem", ["broken-config", "broken-cache", "bad-url"])
def test_a_problem_means_no_completions_never_an_error(cache_home: Path, tmp_path: Path, problem: str):
    env = {"ASSISTERS_BASE_URL": "local"}
    seed_cache(cache_home, "local", ["echo"])
    if problem == "broken-config":
        env = {}
        config = tmp_path / "xdg-config" / "assisters" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text('base_url = "local"\nnot toml at all [[[\n')
    elif problem == "broken-cache":
        cache_file(cache_home, "local").write_text('{"models": ["ech')
    else:
        env = {"ASSISTERS_BASE_URL": "ftp://nowhere"}
    result = complete("assisters chat --model ", cache_home, **env)
    assert result.returncode == 0
    assert result.stdout.strip() == b""


# ------------------------------------------------------------------------ start-up


def imported_modules(*args: str, env: dict[str, str] | None = None) -> set[str]:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "assisters", *args],
                            capture_output=True, env={**os.environ, **(env or {})}, timeout=60)
    assert result.returncode == 0, result.stderr
    names = re.findall(rb"^import time:\s*\d+ \|\s*\d+ \|\s*(\S+)$", result.stderr, flags=re.M)
    assert names, result.stderr  # the pattern still matches Python's importtime format
    return {name.decode() for name in names}


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in ("httpx", "httpcore", "orjson"))


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["models", "--help"]])
def test_version_and_help_do_not_import_the_http_stack(args: list[str]):
    assert heavy(imported_modules(*args)) == []


def test_model_completion_does_not_import_the_http_stack(cache_home: Path):
    seed_cache(cache_home, "local", ["echo"])
    modules = imported_modules(env={"_ASSISTERS_COMPLETE": "bash_complete",
                                    "COMP_WORDS": "assisters chat --model ", "COMP_CWORD": "3",
                                    "XDG_CACHE_HOME": str(cache_home), "ASSISTERS_BASE_URL": "local"})
    assert "assisters.model_list" in modules
    assert heavy(modules) == []


def test_the_completion_modules_themselves_stay_light():
    code = ("import sys, assisters.model_list, assisters.commands.completion; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'orjson')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout == "[]\n"


def commands_loaded(modules: set[str]) -> list[str]:
    return sorted(m.rsplit(".", 1)[1] for m in modules
                  if m.startswith("assisters.commands.") and m.rsplit(".", 1)[1] in COMMANDS)


def test_a_command_loads_only_its_own_module():
    assert commands_loaded(imported_modules("--version")) == []
    assert commands_loaded(imported_modules("models", "--help")) == ["models"]
    assert commands_loaded(imported_modules("batch", "run", "--help")) == ["batch"]
    assert commands_loaded(imported_modules("--help")) == sorted(COMMANDS)  # each one's short help
