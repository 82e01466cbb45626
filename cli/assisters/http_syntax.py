"""What may go on an HTTP request's lines: the one check for methods, header names
and header values, wherever they come from (the API key, ``auth_header``, ``raw -X``
and ``raw -H``).

Standard library only, and nothing imported at all: the click parameter types
call it while the command line is parsed (shell completion included).

The rules are RFC 9110's, made a little stricter where a laxer value would only
ever be a mistake:

* a method and a header name are *tokens*: letters, digits and
  ``!#$%&'*+-.^_`|~``, at least one;
* a header value is printable ASCII, spaces and tabs: no line break (it would end
  the header and start another, which is how headers are smuggled), no other
  control character, and no character beyond ASCII (httpx sends ASCII only, and
  whether the bytes should be Latin-1 or UTF-8 would be a guess);
* an API key is a header value without spaces or tabs (no key has them; a key
  with one was pasted with something else).
"""

from __future__ import annotations

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

# Headers the HTTP client writes itself from the request: a value given by the
# user would contradict the body or the URL the client sends.
CLIENT_HEADERS = {"content-length": "Content-Length", "transfer-encoding": "Transfer-Encoding",
                  "host": "Host"}


def is_token(text: str) -> bool:
    return bool(text) and all(char in _TOKEN_CHARS for char in text)


def value_problem(value: str) -> str | None:
    """Why ``value`` cannot be a header value, in a few words (never quoting it), or None."""
    for char in value:
        code = ord(char)
        if char in "\r\n":
            return "a line break"
        if 0xD800 <= code <= 0xDFFF:
            return "bytes that are not UTF-8"  # an argument Python decoded with surrogateescape
        if code > 0x7E:
            return "a character that is not ASCII" if code != 0x7F else "a control character"
        if code < 0x20 and char != "\t":
            return "a control character"
    return None


def key_problem(key: str) -> str | None:
    """Why ``key`` (already stripped) cannot be sent as an API key, or None."""
    if not key:
        return "it is empty"
    problem = value_problem(key)
    if problem is None and (" " in key or "\t" in key):
        problem = "a space"
    return f"it holds {problem}" if problem else None


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a header name (or a method), or None."""
    if not name:
        return "it is empty"
    if is_token(name):
        return None
    bad = next(char for char in name if char not in _TOKEN_CHARS)
    if bad in "\r\n":
        return "it holds a line break"
    if 0xD800 <= ord(bad) <= 0xDFFF:
        return "it holds bytes that are not UTF-8"
    shown = repr(bad) if bad.isprintable() and ord(bad) < 0x80 else f"U+{ord(bad):04X}"
    return f"it holds {shown} (letters, digits and !#$%&'*+-.^_`|~ only)"


def parse_header(text: str) -> tuple[str, str]:
    """``'Name: value'`` as (name, value), both stripped; :class:`ValueError` says
    what is wrong without quoting the value (it may be a credential)."""
    name, sep, value = text.partition(":")
    name, value = name.strip(" \t"), value.strip(" \t")
    if not sep:
        raise ValueError("a header must look like 'Name: value' (no ':' found)")
    problem = name_problem(name)
    if problem:
        raise ValueError(f"bad header name {name!r}: {problem}" if name else
                         "a header must look like 'Name: value' (no name before ':')")
    if name.lower() in CLIENT_HEADERS:
        raise ValueError(f"{CLIENT_HEADERS[name.lower()]} is set by the client from the request; "
                         "leave it out")
    problem = value_problem(value)
    if problem:
        raise ValueError(f"the value of header {name!r} holds {problem}")
    return name, value
