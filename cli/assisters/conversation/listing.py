"""What ``assisters conversations`` prints: the list, one conversation, removals.

``list`` and ``show`` print on stdout (the payload), the most recent first;
``show --json`` prints the request body that continues the conversation (model
and messages, as :meth:`History.export <assisters.conversation.history.History.export>`
gives them), so ``assisters raw`` can send it after a question is added.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from assisters.conversation.history import History, summarize
from assisters.conversation.store import Store
from assisters.terminal import Streams, system_streams


def _out(streams: Streams, data: bytes) -> None:
    streams.stdout.write(data)
    streams.stdout.flush()


def local_time(stamp: str) -> str:
    """A stored UTC time as local ``YYYY-MM-DD HH:MM``."""
    try:
        moment = time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return stamp or "-"
    import calendar

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(calendar.timegm(moment)))


def list_conversations(environ: Mapping[str, str], *, as_json: bool, limit: int | None = None) -> None:
    """The ``limit`` most recent (None: all). Only those files are read: every chat is
    stored, so a store grows to thousands of conversations, and listing the newest
    must not read them all."""
    streams = system_streams(environ)
    store = Store.from_environ(environ)
    files = store.files()
    shown = files[::-1] if limit is None else files[: -limit - 1 : -1]
    rows = []
    for file in shown:
        summary = summarize(file.id, file.load().records)
        rows.append({"id": summary.id, "time": summary.time, "model": summary.model, "turns": summary.turns,
                     "first_words": summary.first_words, "path": str(file.path)})
    if as_json:
        _out(streams, orjson.dumps(rows) + b"\n")
        return
    lines = [f"{r['id']}  {local_time(r['time'])}  {r['model'] or '-'}  {r['turns']}  {r['first_words']}"
             for r in rows]
    _out(streams, "".join(line + "\n" for line in lines).encode())
    if len(shown) < len(files) and streams.stdout_is_tty:  # a person reading; a script knows its --limit
        streams.warn(f"({len(shown)} of {len(files)} conversations; --limit 0 lists them all)")


def show_conversation(environ: Mapping[str, str], wanted: str | None, *, as_json: bool) -> None:
    streams = system_streams(environ)
    store = Store.from_environ(environ)
    file = store.find(wanted) if wanted is not None else store.latest()
    loaded = file.load()
    if loaded.damaged:
        streams.warn(f"warning: {loaded.damaged} damaged line(s) in conversation {file.id} were skipped")
    history = History.from_records(loaded.records)
    if as_json:
        body = {"model": history.model or "", "messages": history.export()}
        _out(streams, orjson.dumps(body) + b"\n")
        return
    _out(streams, "".join(_blocks(history)).encode("utf-8", "replace"))


def _blocks(history: History) -> Iterable[str]:
    if history.system:
        yield f"[system]\n{history.system}\n\n"
    for exchange in history.exchanges:
        question = exchange.question
        yield f"[user {local_time(str(question.get('time', '')))}]\n{_text(question)}\n\n"
        answer = exchange.answer
        if answer is None:
            yield "[no answer]\n\n"
            continue
        marks = [str(answer.get("model") or "")]
        if answer.get("interrupted"):
            marks.append("interrupted")
        if answer.get("incomplete"):
            marks.append(f"incomplete: {answer.get('error') or 'the stream broke'}")
        head = " ".join(m for m in ["assistant", *marks] if m)
        yield f"[{head}]\n{_text(answer)}\n\n"


def _text(record: dict[str, Any]) -> str:
    content = record.get("content")
    return content.rstrip("\n") if isinstance(content, str) else ""


def remove_conversations(environ: Mapping[str, str], wanted: Iterable[str]) -> None:
    store = Store.from_environ(environ)
    files = [store.find(one) for one in wanted]  # every id checked before anything is removed
    for file in files:
        store.remove(file.id)
