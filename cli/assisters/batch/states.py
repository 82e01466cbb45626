"""Every state a provider's batch can reach, what it means, and what ``batch status``
exits with.

| state | phase | ended | results downloadable | ``status`` exits |
|---|---|---|---|---|
| validating | running | no | no | 75 (ask again later) |
| in_progress | running | no | no | 75 |
| finalizing | running | no | no | 75 |
| cancelling | running | no | no | 75 |
| completed | done | yes | yes | 0 |
| expired | done | yes | the partial results | 69 |
| cancelled | done | yes | the partial results | 69 |
| failed | failed | yes | no (the input was refused: see ``errors``) | 65 |

So a script tells apart "done" (0), "still running" (75, the status a retry loop
waits on), "it will not complete, but what ran is there" (69) and "the provider
refused the input" (65). A state this table does not know (a provider's own) counts
as running, and ``status`` says so. For several batches (the parts of a ``submit
--split``) the least finished one decides (:func:`combined_state`). The statuses are those of
:class:`~assisters.errors.ExitStatus`; ``commands/main.py`` stays the one place
that maps outcomes to them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from assisters.errors import ExitStatus
from assisters.visible import one_line


@dataclass(frozen=True)
class BatchState:
    name: str
    phase: str  # "running", "done" or "failed"
    has_results: bool  # an output or error file may be downloaded
    exit_status: ExitStatus

    @property
    def ended(self) -> bool:
        return self.phase != "running"


STATES: dict[str, BatchState] = {
    state.name: state
    for state in (
        BatchState("validating", "running", False, ExitStatus.TEMPORARY),
        BatchState("in_progress", "running", False, ExitStatus.TEMPORARY),
        BatchState("finalizing", "running", False, ExitStatus.TEMPORARY),
        BatchState("cancelling", "running", False, ExitStatus.TEMPORARY),
        BatchState("completed", "done", True, ExitStatus.OK),
        BatchState("expired", "done", True, ExitStatus.SERVER),
        BatchState("cancelled", "done", True, ExitStatus.SERVER),
        BatchState("failed", "failed", False, ExitStatus.REJECTED),
    )
}


def state_of(batch: Mapping[str, Any]) -> BatchState:
    """The batch's state; one this table does not know is taken as still running."""
    name = str(batch.get("status"))
    return STATES.get(name) or BatchState(name, "running", False, ExitStatus.TEMPORARY)


def status_line(batch: Mapping[str, Any]) -> str:
    """One line for ``batch status``: id, state, counts, created and expiry times.

    ``batch_abc in_progress 12/100 done, 1 failed; created 2026-01-02 03:04Z, expires 2026-01-03 03:04Z``
    """
    total, completed, failed = counts_of(batch)
    text = one_line(f"{batch.get('id')} {batch.get('status')}", 300) + f" {completed + failed}/{total} done"
    if failed:
        text += f", {failed} failed"
    times = [f"{word} {_when(batch.get(key))}" for word, key in
             (("created", "created_at"), ("expires", "expires_at"), ("ended", _ended_key(batch)))
             if isinstance(batch.get(key), int)]
    return text + ("; " + ", ".join(times) if times else "")


def counts_of(batch: Mapping[str, Any]) -> tuple[int, int, int]:
    """``request_counts`` as (total, completed, failed); what is not a count is 0."""
    counts = batch.get("request_counts")
    counts = counts if isinstance(counts, dict) else {}
    values = (counts.get(key) for key in ("total", "completed", "failed"))
    total, completed, failed = (v if isinstance(v, int) and not isinstance(v, bool) else 0 for v in values)
    return total, completed, failed


def combined_state(batches: Sequence[Mapping[str, Any]]) -> BatchState:
    """The state that decides the exit status of a command about several batches (the
    parts of one ``submit --split``): one still running, else one that failed, else
    one that ended early (expired, cancelled), else completed."""
    def rank(state: BatchState) -> int:
        if state.phase == "running":
            return 0
        if state.phase == "failed":
            return 1
        return 2 if state.exit_status != ExitStatus.OK else 3

    return min((state_of(batch) for batch in batches), key=rank, default=STATES["completed"])


def error_summary(batch: Mapping[str, Any], limit: int = 5) -> list[str]:
    """The provider's reasons for a failed batch, one line each (``line N: message (code)``)."""
    errors = batch.get("errors")
    data = errors.get("data") if isinstance(errors, dict) else None
    data = [error for error in data if isinstance(error, dict)] if isinstance(data, list) else []
    lines = []
    for error in data[:limit]:
        where = f"line {error['line']}: " if isinstance(error.get("line"), int) else ""
        code = f" ({error['code']})" if error.get("code") else ""
        lines.append(one_line(f"{where}{error.get('message') or 'no message'}{code}", 300))
    if len(data) > limit:
        lines.append(f"... and {len(data) - limit} more")
    return lines


def _ended_key(batch: Mapping[str, Any]) -> str:
    status = batch.get("status")
    return f"{status}_at" if status in ("completed", "expired", "cancelled", "failed") else ""


def _when(timestamp: int) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%MZ", time.gmtime(timestamp))
    except (OverflowError, OSError, ValueError):  # a provider's odd number
        return str(timestamp)
