"""The ``batch`` group's wiring: every subcommand is there, its help says what it
exits with and loads only click, and what click refuses is one line and exit 2.
(What the subcommands do is in tests/batch/.)"""

from __future__ import annotations

import pytest

from tests.commands.test_completion import heavy, imported_modules
from tests.conftest import run_cli

SUBCOMMANDS = ["run", "submit", "prepare", "status", "results", "cancel", "list"]


def test_the_group_lists_every_subcommand() -> None:
    result = run_cli("batch", "--help")
    assert result.returncode == 0
    listed = result.stdout.decode().split("Commands:")[1].split()
    assert all(name in listed for name in SUBCOMMANDS)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_help_names_its_exit_statuses_and_loads_only_click(name: str) -> None:
    result = run_cli("batch", name, "--help")
    assert (result.returncode, result.stderr) == (0, b"")
    text = " ".join(result.stdout.decode().split())
    assert "Exit status" in text or name == "list"
    if name == "status":
        assert "0 completed, 75 still running" in text and "69 expired or cancelled" in text
        assert "65 failed" in text
    assert heavy(imported_modules("batch", name, "--help")) == []


@pytest.mark.parametrize(("args", "message"), [
    (["status"], "Missing argument 'ID...'"),
    (["results"], "Missing argument 'ID...'"),
    (["cancel"], "Missing argument 'ID...'"),
    (["status", "bad\x01id"], "holds a control character"),
    (["list", "--limit", "0"], "0 is not in the range 1<=x<=10000"),
    (["submit", "--metadata", "x"], "'x' is not KEY=VALUE"),
    (["submit", "--poll-interval", "0"], "0 is not more than 0"),
    (["submit", "--poll-interval", "0.001"], "0.001 is less than 0.01 s"),
])
def test_what_click_refuses_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = run_cli("batch", *args)
    assert (result.returncode, result.stdout) == (2, b"")
    [line] = result.stderr.decode().splitlines()
    assert line.startswith(f"assisters batch {args[0]}: error: ") and message in line
