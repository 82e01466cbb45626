"""README.md is the front door: its commands must work as written.

Every ```sh block is run by bash as one script (errexit, pipefail) against the local
test server (unknown model names are served by ``echo``), inside a scratch git repository so that examples
like ``git diff | assisters chat ...`` have something to show. ```console blocks
(install, environment setup) are not run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from assisters.server.app import ChatServer
from assisters.server.options import ServeOptions
from tests.conftest import SECRET

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.M | re.S)


SH_BLOCKS = blocks("sh")


def test_readme_shows_the_test_command_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    command = ci.strip().splitlines()[-1]
    assert command == "python -m pytest"
    assert command in blocks("console")[2]


@pytest.mark.parametrize("block", SH_BLOCKS, ids=[b.split(maxsplit=2)[1] for b in SH_BLOCKS])
def test_readme_commands_work_as_written(block: str, tmp_path: Path):
    """Each block runs as one script, line after line, stopping at the first failure."""
    for tool in re.findall(r"\b(jq|git|cmp)\b", block):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "assisters").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m assisters "$@"\n')
    (bindir / "assisters").chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    (work / "README.md").write_text("# demo\n")
    (work / "notes.md").write_text("some notes\n")
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    (work / "README.md").write_text("# demo, changed\n")
    with ChatServer(ServeOptions(tokens_per_second=0, default_model="echo")) as server:
        env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
               "ASSISTERS_BASE_URL": server.base_url, "ASSISTERS_API_KEY": SECRET}
        script = "set -e -o pipefail\n" + block
        result = subprocess.run(["bash", "-c", script], cwd=work, env=env,
                                stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert b"Traceback" not in result.stderr
    assert SECRET.encode() not in result.stdout + result.stderr



ARCHITECTURE = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
PATH_LIKE = re.compile(r"^(?:\.\./)?[\w/.-]+?(?:\.py|\.md|/)(?::\w+)?$")
ATTRIBUTE = re.compile(r"^([a-z_]+(?:/[a-z_]+)?)(?:\.py)?[.:]([A-Za-z_]\w*)$")


def spans(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


def test_architecture_names_only_paths_that_exist():
    """Every file, folder and ``module.name`` that ARCHITECTURE.md names is real."""
    package = ROOT / "cli" / "assisters"
    every_file = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*") if ".git" not in p.parts]
    checked = 0
    for span in spans(ARCHITECTURE):
        if "NAME" in span or "MODULE" in span:
            continue  # a placeholder in "where to add"
        attribute = ATTRIBUTE.match(span)
        if attribute and not span.endswith((".py", ".md")):
            module, name = attribute.groups()
            path = package / (module + ".py")
            if path.is_file():
                checked += 1
                defined = rf"^\s*(?:def|class) {name}\b|^{name}(?:: [^=]+)? = "
                assert re.search(defined, path.read_text(), re.M), span
                continue
        if PATH_LIKE.match(span):
            path = span.split(":")[0].rstrip("/")
            if path.startswith("../"):
                assert (ROOT / path).resolve().exists() or not (ROOT.parent / "shared").exists(), span
            else:
                assert any(f == path or f.endswith("/" + path) for f in every_file), span
            checked += 1
    assert checked > 40  # the patterns still find the names
