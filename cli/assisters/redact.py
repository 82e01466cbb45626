"""The one choke point for secrets: what counts as one, and how it is kept out of output.

A secret is registered the moment it exists: every :class:`Secret` registers its
value (the API key from any source, a password in a base URL, the value of a
credential header given to ``raw -H``). From then on nothing the process writes
holds it:

* stdout and stderr: :mod:`assisters.terminal` wraps both (:class:`ScrubbingWriter`,
  :class:`ScrubbingText`), so every command, message and dump passes through
  :func:`scrub`; on stdout a secret split across two writes is caught too, by
  holding back a tail that could be its start until the next write;
* files: recordings, the model cache, batch output and stored conversations are
  written through :func:`scrub_bytes`;
* headers and URLs shown or stored: :func:`redact_headers` and :func:`safe_url`.

That includes text the server sends back: a 401 body quoting the key, an error
event, an echo. A secret the server splits across events is caught where the
events are joined into text (chat's answer, ``--json``, batch bodies, stored
conversations); the byte-level views of the protocol (``raw``, ``debug``) show the
events as they came, and a recording whose joined answer held a secret has its
body reads withheld (:func:`assisters.recording.withhold_body`), since a replay
would join them again.  What is scrubbed is the secret's text, its URL-encoded form and
its JSON-escaped form, each replaced by ``[REDACTED]``. Secrets shorter than
:data:`MIN_SECRET_LENGTH` characters are not scrubbed from output text (they would
match ordinary words); they are still never printed by us.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import BinaryIO, TextIO
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

REDACTED = "[REDACTED]"
REDACTED_BYTES = REDACTED.encode()
MIN_SECRET_LENGTH = 8
_SECRET_WORDS = ("auth", "key", "token", "secret", "cookie", "password", "signature", "sig")

_texts: list[str] = []  # every registered secret's forms, longest first
_forms: list[bytes] = []


class Secret:
    """A string that does not show itself; ``reveal()`` is the only way in.

    Creating one registers its value for scrubbing (see the module docstring)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def register(value: str) -> None:
    """Scrub ``value`` (and its encoded forms) from all output from now on."""
    if len(value) < MIN_SECRET_LENGTH:
        return
    json_form = value.replace("\\", "\\\\").replace('"', '\\"')
    for form in (value, quote(value, safe=""), json_form):
        if form not in _texts:
            _texts.append(form)
    _texts.sort(key=len, reverse=True)
    _forms[:] = [text.encode("utf-8", "surrogateescape") for text in _texts]


def register_credential(value: str) -> None:
    """A credential given as a header value (``raw -H 'X-Api-Key: ...'``): the whole
    value, and the part after an auth scheme (``Bearer sk-...``), are secrets."""
    Secret(value)
    scheme, space, credential = value.partition(" ")
    if space and scheme.isalpha() and credential.strip():
        Secret(credential.strip())


def active() -> bool:
    """Whether any secret is registered (else output passes untouched)."""
    return bool(_forms)


def scrub(text: str) -> str:
    for form in _texts:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def scrub_bytes(data: bytes) -> bytes:
    for form in _forms:
        if form in data:
            data = data.replace(form, REDACTED_BYTES)
    return data


class StreamScrubber:
    """Scrubs a byte stream written in pieces: a secret split across two pieces
    is caught because a tail that could be a secret's start is held back until
    the next piece (or :meth:`finish`)."""

    def __init__(self) -> None:
        self._held = b""
        self.caught = 0  # secrets replaced so far

    def feed(self, data: bytes) -> bytes:
        if self._held:
            data = self._held + data
            self._held = b""
        if not _forms:
            return data
        size = len(data)
        for form in _forms:  # usually one: the key; a read is usually shorter than it
            if size >= len(form) and form in data:
                data = data.replace(form, REDACTED_BYTES)
                self.caught += 1
        keep = _partial_tail(data)
        if keep:
            self._held = data[-keep:]
            return data[:-keep]
        return data

    def finish(self) -> bytes:
        """What is held back, to write at the end of the stream (it is no secret)."""
        held, self._held = self._held, b""
        return held


def _partial_tail(data: bytes) -> int:
    """The length of the longest tail of ``data`` that is a proper prefix of a secret.

    On the per-read path: one ``find`` of the secret's first byte in the last
    ``len(secret) - 1`` bytes, which nearly always finds nothing."""
    best = 0
    for form in _forms:
        first = form[0]
        pos = data.find(first, 1 - len(form))
        while pos != -1:
            if form.startswith(data[pos:]):
                if len(data) - pos > best:
                    best = len(data) - pos
                break
            pos = data.find(first, pos + 1)
    return best


_writers: weakref.WeakSet[ScrubbingWriter] = weakref.WeakSet()


class ScrubbingWriter:
    """A binary output (the process's stdout) whose bytes never hold a secret.

    ``write`` and ``flush`` behave as the wrapped stream's; a tail that may be the
    start of a secret stays held across writes and flushes until more bytes show
    it is not, or :meth:`release` (called on every way out by ``main``).
    """

    def __init__(self, out: BinaryIO) -> None:
        self.wrapped = out
        self._scrubber = StreamScrubber()
        _writers.add(self)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        data = bytes(data)
        if _forms or self._scrubber._held:
            self.wrapped.write(self.scrubbed(data))
        else:
            self.wrapped.write(data)
        return len(data)

    def scrubbed(self, data: bytes) -> bytes:
        """``data`` as it may go out now, for a writer that writes the file itself."""
        return self._scrubber.feed(data)

    def flush(self) -> None:
        self.wrapped.flush()

    def fileno(self) -> int:
        return self.wrapped.fileno()

    def isatty(self) -> bool:
        return self.wrapped.isatty()

    def release(self) -> None:
        """Write what is held back: the stream ends here."""
        held = self._scrubber.finish()
        if held:
            self.wrapped.write(held)
            self.wrapped.flush()


def release_all() -> None:
    """End every scrubbed output of the process (``main`` does this once, at exit)."""
    for writer in list(_writers):
        writer.release()


class ScrubbingText:
    """A text output (the process's stderr) whose writes never hold a secret.

    Messages are written whole, so each write is scrubbed on its own."""

    def __init__(self, out: TextIO) -> None:
        self.wrapped = out

    def write(self, text: str) -> int:
        self.wrapped.write(scrub(text) if _texts else text)
        return len(text)

    def flush(self) -> None:
        self.wrapped.flush()

    def fileno(self) -> int:
        return self.wrapped.fileno()

    def isatty(self) -> bool:
        return self.wrapped.isatty()

    def __getattr__(self, name: str) -> object:  # encoding, errors, buffer, ...
        return getattr(self.wrapped, name)


def is_secret_header(name: str) -> bool:
    """A header whose value is a credential (Authorization, api-key, X-Api-Key, Cookie, ...)."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def redact_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers as they may be shown or stored: the value of a credential header, and
    of any header that holds a registered secret (the key under a custom
    ``auth_header``), is ``[REDACTED]``."""
    return [(k, REDACTED if is_secret_header(k) or _holds_secret(v) else v) for k, v in headers]


def _holds_secret(value: str) -> bool:
    return any(form in value for form in _texts)


def safe_url(url: str) -> str:
    """The URL as it may be shown or stored: no ``user:password@``, and the values of
    query parameters that look like credentials (``api-key``, ``sig``, ``token``)
    replaced by ``[REDACTED]``; the rest (``api-version``) stays, it is the request."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL Python can split: show it as an error message would
        return redact_url(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_header(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if is_secret_header(k) else v) for k, v in pairs], safe="[]")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact_url(url: str) -> str:
    """The URL for an error message: no user info, no query string or fragment (they
    may carry credentials). Works on text that is not a valid URL too."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    rest = rest.split("#", 1)[0].split("?", 1)[0]
    authority, slash, path = rest.partition("/")
    authority = authority.rpartition("@")[2]  # "user:pass@host", with or without a scheme
    return f"{scheme}{sep}{authority}{slash}{path}"
