"""The state table (``batch/states.py``): complete against the official SDK's list of
states, and the status line and errors a user reads."""

from __future__ import annotations

import typing

import pytest

from assisters.batch.states import STATES, error_summary, state_of, status_line
from assisters.errors import ExitStatus


def test_every_state_the_sdk_knows_is_in_the_table() -> None:
    openai = pytest.importorskip("openai")
    sdk_states = set(typing.get_args(openai.types.Batch.model_fields["status"].annotation))
    assert set(STATES) == sdk_states


@pytest.mark.parametrize(("status", "phase", "has_results", "exit_status"), [
    ("validating", "running", False, ExitStatus.TEMPORARY),
    ("in_progress", "running", False, ExitStatus.TEMPORARY),
    ("finalizing", "running", False, ExitStatus.TEMPORARY),
    ("cancelling", "running", False, ExitStatus.TEMPORARY),
    ("completed", "done", True, ExitStatus.OK),
    ("expired", "done", True, ExitStatus.SERVER),
    ("cancelled", "done", True, ExitStatus.SERVER),
    ("failed", "failed", False, ExitStatus.REJECTED),
    ("queued", "running", False, ExitStatus.TEMPORARY),  # a provider's own: still running
])
def test_what_each_state_means(status: str, phase: str, has_results: bool, exit_status: ExitStatus) -> None:
    state = state_of({"status": status})
    assert (state.phase, state.has_results, state.exit_status) == (phase, has_results, exit_status)
    assert state.ended == (phase != "running")


def test_status_line() -> None:
    batch = {"id": "batch_1", "status": "in_progress", "created_at": 1_767_225_600,
             "expires_at": 1_767_312_000, "request_counts": {"total": 100, "completed": 11, "failed": 1}}
    assert status_line(batch) == ("batch_1 in_progress 12/100 done, 1 failed; "
                                  "created 2026-01-01 00:00Z, expires 2026-01-02 00:00Z")
    ended = {**batch, "status": "completed", "completed_at": 1_767_229_200,
             "request_counts": {"total": 2, "completed": 2, "failed": 0}}
    assert status_line(ended).endswith("2/2 done; created 2026-01-01 00:00Z, expires 2026-01-02 00:00Z, "
                                       "ended 2026-01-01 01:00Z")
    assert status_line({"id": "b\x1b[31m", "status": "odd", "created_at": 10**20}) == \
        "b\\x1b[31m odd 0/0 done; created 100000000000000000000"


def test_error_summary_names_lines_and_codes() -> None:
    batch = {"errors": {"object": "list", "data": [
        {"code": "invalid_json_line", "message": "This line is not parseable as valid JSON.", "line": 2},
        {"code": None, "message": "no\nline here", "line": None},
        *({"code": "x", "message": "m", "line": n} for n in range(3, 10)),
    ]}}
    assert error_summary(batch, limit=3) == [
        "line 2: This line is not parseable as valid JSON. (invalid_json_line)",
        "no line here",
        "line 3: m (x)",
        "... and 6 more",
    ]
    assert error_summary({"errors": None}) == []
