"""SSEDecoder against the WHATWG event-stream rules (HTML §9.2.5-9.2.6).

Unit tests pin one rule each; the property tests check that how a body is
split into reads never changes what comes out, and that the items match a
small model of the standard computed from the generated fields.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assisters.errors import LimitError
from assisters.sse import MAX_LINE_BYTES, Comment, Event, Field, Item, SSEDecoder

BOM = b"\xef\xbb\xbf"


def decode(chunks: Iterable[bytes], *, comments: bool = False) -> list[Item]:
    """Every item the decoder returns for these reads, then close()."""
    decoder = SSEDecoder(comments=comments)
    out: list[Item] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    out += decoder.close()
    return out


def one(body: bytes, *, comments: bool = False) -> list[Item]:
    return decode([body], comments=comments)


def bytewise(body: bytes) -> list[bytes]:
    return [body[i : i + 1] for i in range(len(body))]


def msg(data: str, type: str = "message", id: str | None = None) -> Event:
    return Event(type, data, id)


# -- line ends ---------------------------------------------------------------


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_each_standard_line_end(end: str) -> None:
    body = f"event: delta{end}data: a{end}data: b{end}{end}data: c{end}{end}".encode()
    expected = [msg("a\nb", "delta"), msg("c")]
    assert one(body) == expected
    assert decode(bytewise(body)) == expected


def test_mixed_line_ends_in_one_event() -> None:
    body = b"data: a\r\ndata: b\rdata: c\ndata: d\r\n\r"
    assert one(body) == [msg("a\nb\nc\nd")]


def test_cr_at_end_of_read_and_lf_at_start_of_next_are_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    # If this LF were a line of its own it would be a blank line and dispatch "a".
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"data: b\r") == []
    assert decoder.feed(b"\ndata: c\r\n\r") == [msg("a\nb\nc")]
    # The LF of that last CRLF: no second dispatch, no empty event.
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"data: d\n\n") == [msg("d")]
    assert not decoder.pending


def test_lf_after_split_crlf_may_start_more_text() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n\r") == [msg("a")]
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [msg("b")]


def test_lone_cr_at_end_of_read_completes_the_line_at_once() -> None:
    decoder = SSEDecoder()
    # The CR that ends the blank line is the last byte of the read: the event
    # must come out of this very feed call, not wait for a possible LF.
    assert decoder.feed(b"data: now\r\r") == [msg("now")]
    assert not decoder.pending
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\n\r") == [msg("x")]
    decoder = SSEDecoder()
    assert decoder.feed(b"data: y\r") == []
    assert decoder.pending  # the data line is complete but not dispatched
    assert decoder.feed(b"\r") == [msg("y")]


def test_two_crs_are_two_line_ends() -> None:
    # "\r\r" is a line end followed by a blank line, even split across reads.
    assert decode([b"data: a\r", b"\r", b"data: b\r", b"\r"]) == [msg("a"), msg("b")]


@pytest.mark.parametrize(
    "char",
    ["\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"],
    ids=["LS", "PS", "NEL", "VT", "FF", "FS", "GS", "RS"],
)
def test_other_unicode_line_breaks_are_data(char: str) -> None:
    body = f'data: {{"content":"a{char}b"}}\ndata: {char}\n\n'.encode()
    expected = [msg(f'{{"content":"a{char}b"}}\n{char}')]
    assert one(body) == expected
    assert decode(bytewise(body)) == expected


# -- byte order mark ---------------------------------------------------------


def test_bom_at_start_is_stripped() -> None:
    assert one(BOM + b"data: x\n\n") == [msg("x")]


@pytest.mark.parametrize(
    "chunks",
    [[b"\xef", b"\xbb\xbfdata: x\n\n"], [b"\xef\xbb", b"\xbfdata: x\n\n"], bytewise(BOM + b"data: x\n\n")],
    ids=["EF|BBBF", "EFBB|BF", "every-byte"],
)
def test_bom_split_across_reads_is_stripped(chunks: list[bytes]) -> None:
    assert decode(chunks) == [msg("x")]


def test_only_one_bom_is_stripped() -> None:
    # The second BOM is part of the field name, which makes it an unknown field.
    assert one(BOM + BOM + b"data: x\n\n") == [Field("\ufeffdata", "x")]


def test_bom_after_the_start_stays() -> None:
    assert one(b"data: a\n\n" + BOM + b"data: b\n\n") == [msg("a"), Field("\ufeffdata", "b")]
    assert one(b"\n" + BOM + b"data: b\n\n") == [Field("\ufeffdata", "b")]


def test_bom_inside_a_value_stays() -> None:
    assert one(BOM + b"data: " + BOM + b"x\n\n") == [msg("\ufeffx")]


def test_empty_reads_change_nothing() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(BOM + b"data: x\r") == []
    assert decoder.feed(b"") == []
    # The empty read must not forget that a CR ended the last read.
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\n") == [msg("x")]


# -- comments and field parsing ---------------------------------------------


def test_comments_ignored_by_default() -> None:
    assert one(b": ping\n:\ndata: a\n: between\ndata: b\n\n") == [msg("a\nb")]


def test_comments_reported_when_asked() -> None:
    body = b": ping\n:\n:: x\ndata: a\n\n"
    assert one(body, comments=True) == [Comment(" ping"), Comment(""), Comment(": x"), msg("a")]


def test_comment_alone_dispatches_nothing() -> None:
    assert one(b": keep-alive\n\n", comments=True) == [Comment(" keep-alive")]


def test_field_name_is_before_the_first_colon() -> None:
    assert one(b'data: {"a": "b:c"}\ndata:x:y\n\n') == [msg('{"a": "b:c"}\nx:y')]


@pytest.mark.parametrize(
    ("line", "data"),
    [
        (b"data:x", "x"),
        (b"data: x", "x"),
        (b"data:  x", " x"),
        (b"data:   x ", "  x "),
        (b"data:\tx", "\tx"),
        (b"data: ", ""),
    ],
)
def test_exactly_one_space_after_the_colon_is_removed(line: bytes, data: str) -> None:
    assert one(line + b"\n\n") == [msg(data)]


def test_line_without_colon_is_a_field_with_empty_value() -> None:
    assert one(b"data\n\n") == [msg("")]
    assert one(b"data: a\ndata\ndata: b\n\n") == [msg("a\n\nb")]
    assert one(b"data\ndata\n\n") == [msg("\n")]
    # "event" alone sets an empty type, which dispatches as "message".
    assert one(b"event: x\nevent\ndata: a\n\n") == [msg("a")]


def test_data_lines_joined_with_lf() -> None:
    assert one(b"data: a\ndata: b\ndata: c\n\n") == [msg("a\nb\nc")]
    assert one(b"data: a\ndata:\n\n") == [msg("a\n")]
    assert one(b"data:\ndata: a\n\n") == [msg("\na")]


def test_event_type() -> None:
    assert one(b"event: error\ndata: {}\n\n") == [msg("{}", "error")]
    assert one(b"data: {}\nevent: last wins\nevent: delta\n\n") == [msg("{}", "delta")]


def test_event_type_resets_after_dispatch() -> None:
    assert one(b"event: delta\ndata: a\n\ndata: b\n\n") == [msg("a", "delta"), msg("b")]


def test_event_type_resets_after_blank_line_without_data() -> None:
    assert one(b"event: ping\n\ndata: b\n\n") == [msg("b")]


def test_id_is_kept_for_later_events_and_nul_ids_are_ignored() -> None:
    body = b"id: 1\ndata: a\n\ndata: b\n\nid: 2\0x\ndata: c\n\nid: 3\n\ndata: d\n\nid\ndata: e\n\n"
    assert one(body) == [msg("a", id="1"), msg("b", id="1"), msg("c", id="1"), msg("d", id="3"),
                         msg("e", id="")]


def test_id_with_nul_keeps_the_previous_id() -> None:
    assert one(b"id: 7\nid: \0\ndata: a\n\n") == [msg("a", id="7")]
    assert one(b"id: a\0\ndata: a\n\n") == [msg("a")]


@pytest.mark.parametrize(
    ("value", "retry"),
    [
        (b"1500", 1500),
        (b"0", 0),
        (b"007", 7),
        (b"12a", None),
        (b"-1", None),
        (b"1.5", None),
        (b" 12", None),
        (b"12 ", None),
        (b"", None),
        ("１２".encode(), None),  # fullwidth digits are digits to str.isdigit, not to SSE
        ("٣".encode(), None),  # ARABIC-INDIC DIGIT THREE
        ("²".encode(), None),
    ],
)
def test_retry_only_ascii_digits(value: bytes, retry: int | None) -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"retry: " + value + b"\n\n") == []
    assert decoder.retry == retry


def test_invalid_retry_keeps_the_previous_value() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"retry: 250\nretry: x\nretry: 12a\n\n")
    assert decoder.retry == 250


@pytest.mark.parametrize(
    "body",
    [b"\n", b"\n\n\n", b"\r\n\r\n", b"event: ping\n\n", b"id: 5\n\n", b"retry: 5\n\n", b": c\n\n",
     b"event: x\nid: 1\nretry: 1\n\n"],
)
def test_blank_line_without_data_dispatches_nothing(body: bytes) -> None:
    assert one(body) == []


def test_empty_data_dispatches_an_event_with_empty_data() -> None:
    assert one(b"data:\n\n") == [msg("")]
    assert one(b"data: \r\n\r\n") == [msg("")]


@pytest.mark.parametrize(
    ("line", "item"),
    [
        (b'error: {"code":400,"message":"too long"}', Field("error", '{"code":400,"message":"too long"}')),
        (b"Data: x", Field("Data", "x")),
        (b"DATA: x", Field("DATA", "x")),
        (b" data: x", Field(" data", "x")),
        (b"data : x", Field("data ", "x")),
        (b"foo", Field("foo", "")),
        (b"foo:", Field("foo", "")),
        (b"foo:  bar", Field("foo", " bar")),
        (b'{"error":{"message":"x"}}', Field('{"error"', '{"message":"x"}}')),
    ],
)
def test_unknown_fields_are_reported(line: bytes, item: Field) -> None:
    assert one(line + b"\n") == [item]


def test_unknown_field_does_not_touch_the_event() -> None:
    assert one(b"data: a\nData: no\nerror: e\ndata: b\n\n") == [Field("Data", "no"), Field("error", "e"),
                                                               msg("a\nb")]


def test_invalid_utf8_becomes_replacement_and_parsing_goes_on() -> None:
    body = b"data: a\xffb\n\ndata: \xe2\x82\n\nda\xc0ta: z\n\ndata: ok\n\n"
    items = one(body)
    assert items[0] == msg("a\ufffdb")
    assert items[1].type == "message"  # type: ignore[union-attr]
    assert set(items[1].data) == {"\ufffd"}  # type: ignore[union-attr]
    assert items[2] == Field("da\ufffdta", "z")
    assert items[3] == msg("ok")
    assert len(items) == 4
    assert decode(bytewise(body)) == items


@pytest.mark.parametrize("char", ["é", "€", "😀", "\u2028", "𝄞"])
def test_multibyte_character_split_across_reads(char: str) -> None:
    body = f"data: <{char}>\n\n".encode()
    start = body.index(char.encode())
    for cut in range(start + 1, start + len(char.encode())):
        assert decode([body[:cut], body[cut:]]) == [msg(f"<{char}>")], cut


def test_close_discards_an_event_without_its_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: [DONE]\n") == [msg("a")]
    assert decoder.pending
    assert decoder.close() == []
    assert not decoder.pending


def test_close_discards_an_unterminated_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: tail") == [msg("a")]
    assert decoder.pending
    assert decoder.pending_text == "data: tail"
    assert decoder.close() == []
    assert not decoder.pending


def test_nothing_pending_after_a_complete_event() -> None:
    decoder = SSEDecoder()
    decoder.feed(b": c\ndata: a\n\n")
    assert not decoder.pending
    decoder.feed(b"event: x\n")
    assert not decoder.pending  # an event type alone would dispatch nothing


def test_huge_line_in_small_reads() -> None:
    payload = ("x" * 1023 + "é") * 512  # a little over 1 MiB of UTF-8
    body = b"data: " + payload.encode() + b"\r\n\r\n"
    decoder = SSEDecoder()
    out: list[Item] = []
    for i in range(0, len(body), 1024):
        out += decoder.feed(body[i : i + 1024])
    assert out == [msg(payload)]
    assert not decoder.pending


def test_every_byte_alone_crlf_body_with_emoji() -> None:
    body = (
        'data: {"choices":[{"index":0,"delta":{"content":"Hi 😀\u2028é"}}]}\r\n\r\n'
        ": ping\r\n"
        "event: note\r\nid: 42\r\ndata: 🎉\r\ndata: two\r\n\r\n"
        "data: [DONE]\r\n\r\n"
    ).encode()
    expected = [
        msg('{"choices":[{"index":0,"delta":{"content":"Hi 😀\u2028é"}}]}'),
        Comment(" ping"),
        msg("🎉\ntwo", "note", "42"),
        msg("[DONE]", id="42"),
    ]
    assert one(body, comments=True) == expected
    assert decode(bytewise(body), comments=True) == expected


# -- known bug -----------------------------------------------------------------



def test_lf_at_start_of_read_after_cr_then_text() -> None:
    # An event ends with "\n\r" (as in the shared mixed-line-endings case), the
    # next event's data line is in the same read, and the read ends before its LF.
    chunks = [b"data: x\n\rdata: y", b"\n\n"]
    assert decode(chunks) == one(b"".join(chunks)) == [msg("x"), msg("y")]


def test_cr_line_then_partial_line_then_lf() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\rdata: b") == []
    assert decoder.feed(b"\n\n") == [msg("a\nb")]


# -- properties ----------------------------------------------------------------

_VALUE_CHARS = st.one_of(
    st.sampled_from(["a", "Z", " ", ":", "0", "é", "😀", "\u2028", "\u2029", "\u0085", "\x0b", "\x0c",
                     "\x1c", "\x1e", "\ufeff", "\t", "{", '"']),
    st.characters(exclude_categories=("Cs",), exclude_characters="\r\n"),
)
_VALUES = st.text(_VALUE_CHARS, max_size=6)
_UNKNOWN_NAMES = st.sampled_from(["error", "Data", " data", "DATA", "event ", "foo", '{"error"', "x😀"])


@dataclass(frozen=True)
class Line:
    text: str
    kind: str  # data, event, id, retry, comment, unknown, blank
    value: str = ""
    name: str = ""


@st.composite
def lines(draw: st.DrawFn) -> Line:
    kind = draw(st.sampled_from(["data", "data", "data", "event", "id", "retry", "comment", "unknown",
                                 "blank", "blank"]))
    if kind == "blank":
        return Line("", kind)
    if kind == "retry":
        value = draw(st.one_of(st.from_regex(r"[0-9]{1,4}", fullmatch=True),
                               st.sampled_from(["12a", "１２", "", "-3", "4 "]), _VALUES))
        return Line("retry: " + value, kind, value)
    value = draw(_VALUES)
    if kind == "comment":
        return Line(":" + value, kind, value)
    if kind == "unknown":
        name = draw(_UNKNOWN_NAMES)
        return Line(f"{name}: {value}", kind, value, name)
    if kind == "data" and not value and draw(st.booleans()):
        return Line("data", kind, "")  # no colon at all
    if kind == "id" and draw(st.booleans()):
        value += "\0"
    sep = draw(st.sampled_from([": ", ":"])) if not value.startswith(" ") else ": "
    return Line(kind + sep + value, kind, value)


@dataclass(frozen=True)
class Body:
    raw: bytes
    expected: list[Item]
    retry: int | None


def model(parsed: list[Line]) -> tuple[list[Item], int | None]:
    """What the standard says these lines mean (comments reported)."""
    out: list[Item] = []
    data: list[str] = []
    type_ = ""
    last_id: str | None = None
    retry: int | None = None
    for line in parsed:
        if line.kind == "blank":
            if data:
                out.append(Event(type_ or "message", "\n".join(data), last_id))
            data, type_ = [], ""
        elif line.kind == "data":
            data.append(line.value)
        elif line.kind == "event":
            type_ = line.value
        elif line.kind == "id":
            if "\0" not in line.value:
                last_id = line.value
        elif line.kind == "retry":
            if line.value and all(c in "0123456789" for c in line.value):
                retry = int(line.value)
        elif line.kind == "comment":
            out.append(Comment(line.value))
        else:
            out.append(Field(line.name, line.value))
    return out, retry


@st.composite
def bodies(draw: st.DrawFn, *, mixed: bool) -> Body:
    parsed = draw(st.lists(lines(), max_size=25))
    if mixed:
        ends = draw(st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=len(parsed),
                             max_size=len(parsed)))
    else:
        ends = [draw(st.sampled_from(["\n", "\r\n", "\r"]))] * len(parsed)
    parts = [draw(st.sampled_from(["", "\ufeff"]))]
    previous = ""
    for line, end in zip(parsed, ends, strict=True):
        if previous == "\r" and not line.text and end == "\n":
            end = "\r"  # "\r" + "\n" would be one CRLF, not two line ends
        parts.append(line.text + end)
        previous = end
    tail = draw(lines())
    if tail.text:
        parts.append(tail.text)  # an unterminated last line is discarded
    expected, retry = model(parsed)
    return Body("".join(parts).encode(), expected, retry)


def split(body: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(body)]
    return [body[a:b] for a, b in itertools.pairwise(points)]


def cut_points(data: st.DataObject, body: bytes) -> list[int]:
    """Random split points: some anywhere, and a coin toss before and after each CR and LF."""
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=6))
    edges = sorted({i + d for i, b in enumerate(body) if b in b"\r\n" for d in (0, 1)})
    if edges:
        chosen = data.draw(st.lists(st.booleans(), min_size=len(edges), max_size=len(edges)))
        cuts += [edge for edge, cut in zip(edges, chosen, strict=True) if cut]
    return cuts


def run(chunks: Iterable[bytes]) -> tuple[list[Item], int | None]:
    decoder = SSEDecoder(comments=True)
    out: list[Item] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    out += decoder.close()
    return out, decoder.retry


# ASSISTERS_SLOW_TESTS=1 runs the long fuzz variant; the default keeps the suite fast.
EXAMPLES = 5000 if os.environ.get("ASSISTERS_SLOW_TESTS") else 200
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(bodies(mixed=True))
def test_property_whole_body_matches_the_standard(body: Body) -> None:
    assert run([body.raw]) == (body.expected, body.retry)


@PROPERTY
@given(bodies(mixed=True))
def test_property_every_byte_alone_equals_whole_body(body: Body) -> None:
    assert run(bytewise(body.raw)) == run([body.raw])


@PROPERTY
@given(bodies(mixed=False), st.data())
def test_property_random_splits_equal_whole_body(body: Body, data: st.DataObject) -> None:
    cuts = cut_points(data, body.raw)
    assert run(split(body.raw, cuts)) == (body.expected, body.retry)


@PROPERTY
@given(bodies(mixed=True), st.data())
def test_property_random_splits_with_mixed_line_ends(body: Body, data: st.DataObject) -> None:
    cuts = cut_points(data, body.raw)
    assert run(split(body.raw, cuts)) == run([body.raw])


@PROPERTY
@given(st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"\r\n")) | st.lists(
    st.sampled_from([b"\n", b"\r\n", b"\r", b"data", b":", b" ", b"x", b"\xff", b"\xf0\x9f", b"\x98\x80",
                     BOM, b"id", b"\0", b"event", b"retry", b"9"]), max_size=40).map(b"".join))
def test_property_any_bytes_every_byte_alone_equals_whole(raw: bytes) -> None:
    assert run(bytewise(raw)) == run([raw])


# -- feed_data and the fast path -------------------------------------------------


def as_events(items: Iterable[bytes | Item]) -> list[Item]:
    """feed_data's output as feed's, ids aside (bytes are message events)."""
    return [Event("message", item.decode("utf-8", "replace")) if isinstance(item, bytes) else item
            for item in items]


def without_ids(items: Iterable[Item]) -> list[Item]:
    return [Event(item.type, item.data) if isinstance(item, Event) else item for item in items]


def run_data(chunks: Iterable[bytes]) -> tuple[list[Item], int | None]:
    decoder = SSEDecoder(comments=True)
    out: list[bytes | Item] = []
    for chunk in chunks:
        out += decoder.feed_data(chunk)
    out += decoder.close()
    return without_ids(as_events(out)), decoder.retry


def test_feed_data_gives_the_usual_event_as_bytes() -> None:
    decoder = SSEDecoder()
    # The first line of a stream is looked at alone (for the BOM), so its event is an Event.
    assert decoder.feed_data(b'data: {"a":1}\n\n') == [msg('{"a":1}')]
    assert decoder.feed_data(b'data: {"a":2}\n\n') == [b'{"a":2}']
    assert decoder.feed_data(b"data:x\n\ndata: \xff\n\ndata:\n\n") == [b"x", b"\xff", b""]
    # Anything else comes as items, in order.
    assert decoder.feed_data(b"event: e\ndata: a\n\ndata: b\ndata: c\n\nfoo: 1\ndata: d\n\ndata: f\n\n") == [
        msg("a", "e"), msg("b\nc"), Field("foo", "1"), msg("d"), b"f"]


def test_fast_path_reads_mixed_with_cr_reads_and_splits() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\n") == [msg("a")]
    assert decoder.feed(b"data: b\r\n\r\ndata: c\r") == [msg("b")]
    assert decoder.feed(b"\n\r\n") == [msg("c")]
    assert decoder.feed(b"data: d\n\n") == [msg("d")]
    assert decoder.feed(b"data: e\n") == []
    assert decoder.feed(b"\ndata: f\n\ndata: g") == [msg("e"), msg("f")]
    assert decoder.feed(b"h") == []
    assert decoder.feed(b"\n\n") == [msg("gh")]
    assert decoder.feed(b"data: i\n\n\n\ndata: j\n\n\n") == [msg("i"), msg("j")]
    assert not decoder.pending


def test_fast_path_keeps_the_last_id_and_the_bom_rule() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(BOM + b"data: a\n\n") == [msg("a")]
    assert decoder.feed(b"id: 7\ndata: b\n\n") == [msg("b", id="7")]
    assert decoder.feed(b"data: c\n\n") == [msg("c", id="7")]
    assert decoder.last_id == "7"
    assert decoder.feed(BOM + b"data: d\n\n") == [Field("\ufeffdata", "d")]


def test_event_in_progress_is_finished_before_the_fast_path() -> None:
    decoder = SSEDecoder()
    assert decoder.feed_data(b": start\n\ndata: a\n\n") == [b"a"]
    assert decoder.feed_data(b"event: x\n") == []
    assert decoder.feed_data(b"data: b\n\n") == [msg("b", "x")]
    assert decoder.feed_data(b"data: c\n") == []
    assert decoder.feed_data(b"data: d\n\n") == [msg("c\nd")]
    assert decoder.feed_data(b"data: e\n\n") == [b"e"]


def test_long_line_in_many_lf_only_reads() -> None:
    payload = b"x" * 300_000
    decoder = SSEDecoder()
    out: list[bytes | Item] = decoder.feed_data(b"\n")
    body = b"data: " + payload + b"\n\n"
    for i in range(0, len(body), 1000):
        out += decoder.feed_data(body[i : i + 1000])
    assert out == [payload]


@PROPERTY
@given(bodies(mixed=True), st.data())
def test_property_feed_data_equals_feed(body: Body, data: st.DataObject) -> None:
    chunks = split(body.raw, cut_points(data, body.raw))
    events, retry = run(chunks)
    assert run_data(chunks) == (without_ids(events), retry)
    assert run_data(bytewise(body.raw)) == (without_ids(body.expected), body.retry)


# ------------------------------------------------------------------ size limits

LIMIT_LINE = "a line of the event stream is longer than 16 MiB (the limit for one line)"
LIMIT_EVENT = "an event of the stream is larger than 16 MiB (the limit for one event's data)"


def feed_all(chunks: Iterable[bytes], *, data: bool = False) -> list[bytes | Item]:
    decoder = SSEDecoder()
    out: list[bytes | Item] = []
    for chunk in chunks:
        out += decoder.feed_data(chunk) if data else decoder.feed(chunk)
    return out


def pieces(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


@pytest.mark.parametrize("read_size", [65536, 1_000_003, 32 << 20], ids=["64 KiB", "1 MB", "one read"])
@pytest.mark.parametrize("data", [False, True], ids=["feed", "feed_data"])
@pytest.mark.parametrize("line", [b"data: " + b"x" * MAX_LINE_BYTES, b":" + b"x" * MAX_LINE_BYTES,
                                  b"data: " + b"x" * MAX_LINE_BYTES + b"\r"],
                         ids=["data line", "comment", "CR line end"])
def test_a_line_over_the_limit_ends_the_stream_however_it_is_split(line, data, read_size) -> None:
    body = b"data: first\n\n" + line + b"\n\n"
    with pytest.raises(LimitError) as caught:
        feed_all(pieces(body, read_size), data=data)
    assert caught.value.message == LIMIT_LINE


@pytest.mark.parametrize("read_size", [65536, 32 << 20], ids=["64 KiB", "one read"])
def test_a_line_of_exactly_the_limit_is_an_event(read_size) -> None:
    value = "x" * (MAX_LINE_BYTES - len("data: "))
    body = b"data: first\n\ndata: " + value.encode() + b"\n\n"
    assert feed_all(pieces(body, read_size)) == [msg("first"), msg(value)]


def test_many_data_lines_over_the_event_limit_end_the_stream() -> None:
    line = b"data: " + b"y" * 1_000_000 + b"\n"  # each line well under the line limit
    with pytest.raises(LimitError) as caught:
        feed_all([line] * 20)
    assert caught.value.message == LIMIT_EVENT


def test_the_event_limit_counts_one_event_at_a_time() -> None:
    event = b"data: " + b"y" * 1_000_000 + b"\ndata: z\n\n"
    assert len(feed_all([event] * 20)) == 20
