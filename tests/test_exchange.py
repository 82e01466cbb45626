"""BodyDecoder: gzip and deflate undone read by read, with memory bounded.

Real compressed streams of every shape pass whatever the read split; a
decompression bomb is refused after at most about a mebibyte of output, whatever
the read split, and a ``limit`` caps a whole body.
"""

from __future__ import annotations

import gzip
import zlib

import orjson
import pytest

from assisters.errors import LimitError, ProtocolError
from assisters.exchange import EXPANSION_FLOOR, MAX_EXPANSION, BodyDecoder


def event(content: str) -> bytes:
    return b"data: " + orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                                     "model": "m", "choices": [{"index": 0, "delta": {"content": content},
                                                                "finish_reason": None}]}) + b"\n\n"


def decode_all(decoder: BodyDecoder, body: bytes, read_size: int) -> bytes:
    return b"".join(decoder.decode(body[i : i + read_size]) for i in range(0, len(body), read_size))


IDENTICAL = event("a") * 200_000  # a degenerate answer: the most compressible real stream
WORDS = b"".join(event(f"word{i % 97} ") for i in range(100_000))


@pytest.mark.parametrize("body", [IDENTICAL, WORDS], ids=["identical events", "varied events"])
@pytest.mark.parametrize("read_size", [1, 1000, 65536], ids=["1 byte", "1000 bytes", "64 KiB"])
def test_real_streams_compressed_as_a_whole_body_pass(body, read_size):
    compressed = gzip.compress(body, 9)
    assert len(body) / len(compressed) < MAX_EXPANSION  # the margin this limit leaves
    if read_size == 1:
        compressed, body = compressed[:20000], None  # a byte at a time: the first part is enough
    out = decode_all(BodyDecoder("gzip"), compressed, read_size)
    if body is not None:
        assert out == body


def test_a_stream_flushed_per_event_passes():
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    reads = [compressor.compress(event(f"t{i} ")) + compressor.flush(zlib.Z_SYNC_FLUSH) for i in range(20000)]
    decoder = BodyDecoder("gzip")
    assert b"".join(decoder.decode(r) for r in reads) == b"".join(event(f"t{i} ") for i in range(20000))


BOMB = gzip.compress(b":" + b"x" * 50_000_000, 9)  # a comment line of 50 MB in 49 KB


@pytest.mark.parametrize("read_size", [100, 16384, len(BOMB)], ids=["100 bytes", "16 KiB", "one read"])
def test_a_decompression_bomb_is_refused_before_its_output_grows(read_size):
    decoder = BodyDecoder("gzip")
    made = 0
    with pytest.raises(LimitError) as caught:
        for i in range(0, len(BOMB), read_size):
            made += len(decoder.decode(BOMB[i : i + read_size]))
    assert made <= EXPANSION_FLOOR
    message = caught.value.message
    assert message.startswith(f"the compressed response expands more than {MAX_EXPANSION} times (")
    assert message.endswith("; the limit on the compression ratio): a decompression bomb or a broken server")


def test_a_limit_caps_the_whole_decompressed_body():
    body = WORDS[:3_000_000]
    decoder = BodyDecoder("gzip", limit=1024 * 1024, what="the HTTP 500 error body")
    with pytest.raises(LimitError) as caught:
        decode_all(decoder, gzip.compress(body), 65536)
    assert caught.value.message == ("the HTTP 500 error body is larger than 1 MiB once decompressed "
                                    "(the limit for the HTTP 500 error body)")


def test_stacked_encodings_are_undone_in_order():
    body = WORDS[:500_000]
    twice = gzip.compress(zlib.compress(body))
    assert decode_all(BodyDecoder("deflate, gzip"), twice, 4096) == body


def test_identity_and_corrupt_bodies():
    assert not BodyDecoder("identity").decodes
    with pytest.raises(ProtocolError, match="the compressed response body is corrupt"):
        BodyDecoder("gzip").decode(b"not gzip at all")
