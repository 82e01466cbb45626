"""``multipart/form-data`` request bodies (RFC 7578), as ``POST /v1/files`` receives them.

The body is already in memory (read and capped by the handler); parts are found
with ``bytes.find`` and their data returned as views into it, never copied. Header
parameters (quoting, RFC 2231 ``filename*``) are read by the standard library's
email package.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

from assisters.server.api_errors import ApiError

MAX_PARTS = 64  # a form for one file has a handful of fields; more is not a file upload
MAX_PART_HEADER_BYTES = 8192


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    data: memoryview

    def text(self) -> str:
        return bytes(self.data).decode("utf-8", "replace")


def parse_form(content_type: str, body: bytes) -> dict[str, Part]:
    """The parts of a form by name (the first of each name), or a 400 as OpenAI words it."""
    boundary = _boundary(content_type)
    delimiter = b"--" + boundary
    view = memoryview(body)
    start = body.find(delimiter)
    if start < 0:
        raise _malformed("the body does not contain its boundary")
    pos = start + len(delimiter)
    parts: dict[str, Part] = {}
    for _ in range(MAX_PARTS + 1):
        if body.startswith(b"--", pos):
            return parts  # the close delimiter
        line_end = body.find(b"\r\n", pos)  # the rest of the delimiter line (transport padding)
        end = body.find(b"\r\n" + delimiter, line_end)
        if line_end < 0 or end < 0:
            raise _malformed("the body ends inside a part")
        part = _part(body, line_end + 2, end, view)
        parts.setdefault(part.name, part)
        pos = end + 2 + len(delimiter)
    raise _malformed(f"more than {MAX_PARTS} parts")


def _boundary(content_type: str) -> bytes:
    header = Message()
    header["content-type"] = content_type
    if header.get_content_type() != "multipart/form-data":
        message = "The request must be multipart/form-data, with the file in a part named 'file'."
        raise ApiError(400, message)
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= 70:
        raise _malformed("no usable boundary in the Content-Type header")
    return boundary.encode("latin-1", "replace")


def _part(body: bytes, start: int, end: int, view: memoryview) -> Part:
    head_end = body.find(b"\r\n\r\n", start - 2, end)
    if head_end < 0 or head_end - start > MAX_PART_HEADER_BYTES:
        raise _malformed("a part has no complete header")
    headers = Message()
    for line in body[start:head_end].decode("utf-8", "replace").split("\r\n"):
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip()] = value.strip()
    disposition = headers.get("content-disposition", "")
    name = headers.get_param("name", header="content-disposition")
    if not disposition.lower().startswith("form-data") or not isinstance(name, str):
        raise _malformed("a part has no Content-Disposition form-data name")
    return Part(name, headers.get_filename(), view[max(head_end + 4, start) : end])


def _malformed(why: str) -> ApiError:
    return ApiError(400, f"The multipart/form-data body could not be parsed: {why}.")
