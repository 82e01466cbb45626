"""Text from the network made safe to show on a terminal: control characters made visible.

Anything a server sends (an error message, a header, an excerpt of a body, the
reasoning of a model) may hold escape sequences: ``\\x1b]0;title\\x07`` renames the
terminal window, ``\\x1b[31m`` turns it red, ``\\x1b[2J`` clears it, a bidirectional
override (U+202E) reorders what the line seems to say. Shown on stderr, such
characters are replaced by their escape (``\\x1b``, ``\\x07``, ``\\u202e``), so they
are seen and never executed. Which characters: C0 controls except newline and tab,
DEL, the C1 controls (U+0080-U+009F, which some terminals obey like ESC), the line
and paragraph separators, and the bidirectional formatting characters.

The two functions every such text passes through on its way to stderr:
:func:`visible` (``Streams.warn``, ``main``'s error line, reasoning) and
:func:`one_line` (every excerpt in an error message). stdout is never escaped:
the answer is the payload, byte for byte.
"""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with its control characters (all but newline and tab) shown as escapes."""
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(_escape, text)


def one_line(text: str, limit: int = 120) -> str:
    """A short single-line excerpt for a message: whitespace runs become one space,
    control characters are made visible, and the end is cut at ``limit`` characters."""
    flat = visible(" ".join(text.split()))
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
