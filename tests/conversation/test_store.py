"""The store: append-only lines, torn lines, two writers at once, ids, secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from assisters.conversation.store import (
    ConversationFile,
    ConversationNotFound,
    SpooledText,
    Store,
    data_dir,
    state_dir,
)
from assisters.errors import ExitStatus
from assisters.redact import Secret
from tests.conftest import SECRET


def test_the_folders_follow_xdg():
    assert data_dir({"XDG_DATA_HOME": "/d"}) == Path("/d/assisters/conversations")
    assert data_dir({"HOME": "/h"}) == Path("/h/.local/share/assisters/conversations")
    assert state_dir({"XDG_STATE_HOME": "/s"}) == Path("/s/assisters")
    assert state_dir({"HOME": "/h"}) == Path("/h/.local/state/assisters")


def test_records_are_lines_in_order_in_a_private_file(tmp_path: Path):
    file = Store(tmp_path / "conversations").new()
    assert not file.exists()  # created by the first append only
    file.append({"role": "user", "content": "one\ntwo"})
    file.append({"role": "assistant", "content": "three"})
    assert file.path.read_bytes() == (b'{"role":"user","content":"one\\ntwo"}\n'
                                      b'{"role":"assistant","content":"three"}\n')
    assert file.load().records == [{"role": "user", "content": "one\ntwo"},
                                   {"role": "assistant", "content": "three"}]
    assert file.path.stat().st_mode & 0o777 == 0o600
    assert file.path.parent.stat().st_mode & 0o777 == 0o700


def test_a_torn_last_line_is_ignored_and_the_next_append_starts_a_fresh_line(tmp_path: Path):
    file = ConversationFile(tmp_path / "c.jsonl")
    file.append({"role": "user", "content": "kept"})
    with open(file.path, "ab") as raw:
        raw.write(b'{"role":"assistant","content":"cut in the mid')  # what kill -9 leaves
    loaded = file.load()
    assert loaded.records == [{"role": "user", "content": "kept"}]
    assert loaded.damaged == 0
    file.append({"role": "user", "content": "next"})
    loaded = file.load()
    assert loaded.records == [{"role": "user", "content": "kept"}, {"role": "user", "content": "next"}]
    assert loaded.damaged == 1  # the torn line, now inside the file, is counted and skipped


def test_no_registered_secret_is_ever_stored(tmp_path: Path):
    Secret(SECRET)
    file = ConversationFile(tmp_path / "c.jsonl")
    file.append({"role": "user", "content": f"my key is {SECRET}, keep it"})
    assert SECRET.encode() not in file.path.read_bytes()
    assert file.load().records[0]["content"] == "my key is [REDACTED], keep it"


@pytest.fixture
def spooled(tmp_path: Path) -> Iterator[Callable[..., SpooledText]]:
    made: list[SpooledText] = []

    def make(*pieces: str) -> SpooledText:
        made.append(SpooledText(tmp_path))
        for piece in pieces:
            made[-1].write(piece)
        return made[-1]

    yield make
    for text in made:
        text.close()


def test_a_spooled_value_is_written_as_the_same_line_a_string_makes(tmp_path: Path, spooled):
    file = ConversationFile(tmp_path / "c.jsonl")
    pieces = ["plain ", 'quote " backslash \\ ', "new\nline\ttab\x01 ", "é 漢字 🎉 ", "x" * 70_000]
    usage = {"prompt_tokens": 3, "completion_tokens": 9}
    file.append({"role": "assistant", "content": spooled(*pieces), "usage": usage,
                 "reasoning_content": spooled("think", "ing")})
    file.append({"role": "assistant", "content": spooled()})  # an empty spool
    expected = (orjson.dumps({"role": "assistant", "content": "".join(pieces), "usage": usage,
                              "reasoning_content": "thinking"}) + b"\n"
                + b'{"role":"assistant","content":""}\n')
    assert file.path.read_bytes() == expected
    assert os.listdir(tmp_path) == ["c.jsonl"]  # the spool files have no name


def test_a_secret_split_between_spool_blocks_is_never_stored(tmp_path: Path, spooled):
    Secret(SECRET)
    file = ConversationFile(tmp_path / "c.jsonl")
    cut = SpooledText.BLOCK - 5  # the key begins 5 bytes before the first block ends
    file.append({"role": "assistant", "content": spooled("a" * cut, SECRET[:9], SECRET[9:], " end")})
    data = file.path.read_bytes()
    assert SECRET.encode() not in data
    assert file.load().records == [{"role": "assistant", "content": "a" * cut + "[REDACTED] end"}]


def test_a_spooled_line_after_a_torn_line_starts_a_fresh_line(tmp_path: Path, spooled):
    file = ConversationFile(tmp_path / "c.jsonl")
    file.path.write_bytes(b'{"role":"user","content":"kept"}\n{"role":"assis')
    file.append({"role": "assistant", "content": spooled("long " * 20_000)})
    loaded = file.load()
    assert loaded.records == [{"role": "user", "content": "kept"},
                              {"role": "assistant", "content": "long " * 20_000}]
    assert loaded.damaged == 1


APPENDER = """
import sys
from pathlib import Path
from assisters.conversation.store import ConversationFile
file = ConversationFile(Path(sys.argv[1]))
for i in range(int(sys.argv[3])):
    file.append({"role": "user", "content": sys.argv[2] * 3000 + str(i)})
"""


def test_two_processes_appending_at_once_never_interleave_lines(tmp_path: Path):
    path = tmp_path / "shared.jsonl"
    count = 150  # lines of 3 kB: far more than one pipe buffer or page in flight at once
    writers = [subprocess.Popen([sys.executable, "-c", APPENDER, str(path), letter, str(count)])
               for letter in "ab"]
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    lines = path.read_bytes().split(b"\n")
    assert lines.pop() == b""
    records = [orjson.loads(line) for line in lines]  # every line is one whole record
    for letter in "ab":
        mine = [r["content"] for r in records if r["content"].startswith(letter)]
        assert mine == [letter * 3000 + str(i) for i in range(count)]


def test_find_by_id_or_unique_prefix_and_remove(tmp_path: Path):
    store = Store(tmp_path)
    for name in ("20250101-100000-aaaa", "20250101-100000-aabb", "20250202-100000-cccc"):
        ConversationFile(tmp_path / f"{name}.jsonl").append({"role": "user", "content": name})
    assert store.find("20250202").id == "20250202-100000-cccc"
    assert store.find("20250101-100000-aaaa").id == "20250101-100000-aaaa"
    with pytest.raises(ConversationNotFound, match="could be any of 2 conversations") as ambiguous:
        store.find("20250101")
    assert ambiguous.value.status == ExitStatus.USAGE
    with pytest.raises(ConversationNotFound, match="no conversation 'nope'"):
        store.find("nope")
    with pytest.raises(ConversationNotFound, match="an id looks like"):
        store.find("../../etc/passwd")
    store.remove("2025020")
    assert [f.id for f in store.files()] == ["20250101-100000-aaaa", "20250101-100000-aabb"]


def test_latest_is_the_one_written_last(tmp_path: Path):
    store = Store(tmp_path)
    with pytest.raises(ConversationNotFound, match="no conversation is stored yet"):
        store.latest()
    older = ConversationFile(tmp_path / "20990101-000000-ffff.jsonl")
    newer = ConversationFile(tmp_path / "20000101-000000-0000.jsonl")
    older.append({"role": "user", "content": "a"})
    newer.append({"role": "user", "content": "b"})
    os.utime(older.path, (1_000_000, 1_000_000))
    assert store.latest().id == newer.id
