"""Settings: flag > environment > config file profile > default, in one place.

Environment: ``ASSISTERS_API_KEY``, ``ASSISTERS_BASE_URL``, ``ASSISTERS_MODEL``,
``ASSISTERS_AUTH_HEADER``, ``ASSISTERS_CONFIG`` (the config file),
``ASSISTERS_PROFILE``, then ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` as fallbacks
for the first two, and one variable per timeout, retry and Batch API setting
(:data:`RULES`).

The config file is TOML, by default ``$XDG_CONFIG_HOME/assisters/config.toml``
(``~/.config/assisters/config.toml``). Top-level keys apply to every profile;
``[profiles.NAME]`` tables override them; ``profile = "NAME"`` at the top picks
the default profile. The keys are those of :data:`RULES` (plus ``timeout``, the
idle timeout's older name, and ``profile``).

**Every value is checked by one table, :data:`RULES`** (key → type, range,
parser), wherever it comes from. A config file value must have the TOML type of
its setting (``idle_timeout = true`` and ``max_retries = "3"`` are refused); an
environment variable is text and is parsed; a flag arrives typed from click. A
refused value is a :class:`ConfigError` (exit 78) whose message names where it
came from: the flag, the environment variable, or the key and the file (and the
profile), never a place it did not come from. Every config value of the chosen
profile is checked, even one a flag or a variable overrides.

**The key.** It is held in a :class:`~assisters.redact.Secret`, whose ``repr`` and
``str`` never show it, and which registers it with :mod:`assisters.redact`, so
that no output of the process can hold it. A key must be able to go in an HTTP
header (:func:`assisters.http_syntax.key_problem`: visible ASCII, no line break,
no control character, no space); any other is a :class:`ConfigError` that names
the source and never the key, and nothing is sent. It is sent as
``Authorization: Bearer KEY``, or, when ``auth_header`` names another header
(Azure OpenAI's ``api-key``), as that header's bare value.

**api_key_command** runs only when a key is needed and no flag, variable or
``api_key`` gave one: never for ``--base-url local``, never for shell completion,
and for a loopback base URL only when the config file sets that URL in the same
table (top level or profile) as the command (a local server that wants a key);
a loopback URL from a flag or a variable needs no key, and an offline run must
not depend on a password manager. A string runs through ``/bin/sh``; a TOML list runs as
argv, without a shell. The key is the *first line* of its output, stripped:
``pass show`` prints the password on line 1 and metadata after it, and the rest
is never read. A first line that cannot be a key is refused (exit 78).

Timeout defaults, chosen for slow reasoning models: connect 10 s (a reachable
server accepts in milliseconds); response head 60 s for a streamed request (a
streaming server sends its status line at once and thinks afterwards, so a server
silent for a minute is dead, and three attempts end within about three minutes);
first byte 300 s (a model may think for minutes before its first event when it
hides its reasoning); idle 120 s (once a stream
has started, servers send tokens or keep-alive comments far more often, so two
minutes of silence is a dead connection or a stuck proxy); no total limit.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from assisters.errors import ConfigError
from assisters.http_syntax import key_problem, name_problem
from assisters.redact import Secret, redact_url

DEFAULT_BASE_URL = "https://api.assisters.dev/v1"
LOCAL_BASE_URL = "local"  # the built-in server, started for the duration of a command
DEFAULT_MODEL = "llama-3.1-8b"
DEFAULT_AUTH_HEADER = "Authorization"  # sent as "Bearer KEY"; any other header gets the bare key
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_FIRST_BYTE_TIMEOUT = 300.0
DEFAULT_RESPONSE_HEAD_TIMEOUT = 60.0  # streamed requests; see assisters.deadline
DEFAULT_IDLE_TIMEOUT = 120.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_MAX_RETRY_WAIT = 60.0  # the longest single backoff or Retry-After we accept
DEFAULT_MAX_TOTAL_WAIT = 120.0  # all backoff sleeps of one run together
DEFAULT_MAX_RESUMES = 3
# vLLM's names; llama.cpp continues a final assistant message without them.
DEFAULT_RESUME_BODY: dict[str, Any] = {"continue_final_message": True, "add_generation_prompt": False}
KEY_COMMAND_TIMEOUT = 30.0
MAX_TIMEOUT = 86400.0 * 7  # also rejects inf and nan, which socket timeouts refuse
MAX_COUNT = 100
BATCH_APIS = ("openai", "azure")
DEFAULT_BATCH_MAX_REQUESTS = 50_000  # OpenAI's limits on one batch input file
DEFAULT_BATCH_MAX_BYTES = 200 * 1000 * 1000
MAX_BATCH_LIMIT = 2**53  # whole numbers TOML, JSON and a float all carry exactly
MAX_ENDPOINT_LENGTH = 200
MAX_HOST_LENGTH = 253  # RFC 1035, without the trailing dot
MAX_LABEL_LENGTH = 63


@dataclass(frozen=True)
class Settings:
    base_url: str
    model: str
    api_key: Secret | None
    connect_timeout: float
    idle_timeout: float
    stream_usage: bool | None  # None: ask for usage only when it will be shown
    profile: str | None = None
    first_byte_timeout: float = DEFAULT_FIRST_BYTE_TIMEOUT
    response_head_timeout: float = DEFAULT_RESPONSE_HEAD_TIMEOUT
    total_timeout: float | None = None
    max_retries: int = DEFAULT_MAX_RETRIES
    max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT
    max_total_wait: float = DEFAULT_MAX_TOTAL_WAIT
    resume: bool = False
    max_resumes: int = DEFAULT_MAX_RESUMES
    resume_body: Mapping[str, Any] = dataclasses.field(default_factory=lambda: dict(DEFAULT_RESUME_BODY))
    auth_header: str = DEFAULT_AUTH_HEADER
    store: bool = True  # keep chats in the conversation store (assisters.conversation.store)
    context: str = "error"  # a conversation too long for the model: "error" or "drop-oldest"
    # The provider's Batch API (assisters.batch.provider.ProviderAPI.from_settings):
    batch_api: str = "openai"  # the preset: "openai" or "azure"
    batch_endpoint: str | None = None  # None: the preset's
    batch_line_url: bool = True  # each request line carries "method" and "url"
    batch_max_requests: int = DEFAULT_BATCH_MAX_REQUESTS
    batch_max_bytes: int = DEFAULT_BATCH_MAX_BYTES

    def url(self, path: str) -> str:
        """An endpoint under the base URL (``chat/completions``, ``/models``).

        A query string in the base URL (Azure's ``?api-version=2024-10-21``) stays
        after the joined path, behind the path's own query if it has one."""
        base, _, base_query = self.base_url.partition("?")
        path, _, path_query = path.partition("?")
        url = base + "/" + path.lstrip("/")
        query = "&".join(part for part in (path_query, base_query) if part)
        return f"{url}?{query}" if query else url

    def auth(self) -> tuple[str, str] | None:
        """The header that carries the key, or None without a key."""
        if not self.api_key:
            return None
        if self.auth_header.lower() == "authorization":
            return "Authorization", f"Bearer {self.api_key.reveal()}"
        return self.auth_header, self.api_key.reveal()


@dataclass(frozen=True)
class Overrides:
    """Values given on the command line; ``None`` means not given."""

    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    timeout: float | None = None  # the idle timeout's older name
    connect_timeout: float | None = None
    first_byte_timeout: float | None = None
    response_head_timeout: float | None = None
    idle_timeout: float | None = None
    total_timeout: float | None = None
    stream_usage: bool | None = None
    profile: str | None = None
    max_retries: int | None = None
    max_retry_wait: float | None = None
    max_total_wait: float | None = None
    resume: bool | None = None
    max_resumes: int | None = None
    store: bool | None = None
    context: str | None = None


# -- the checks: one parser per kind of value ------------------------------------------


class Invalid(Exception):
    """A value a rule refuses; the text follows the setting's label in the message
    (``the idle timeout`` + ``must be ...``, ``the base URL`` + ``'...' has no host``)."""


_UNSET = object()  # a parser's answer for a value that counts as not given ("" for a key)


def shown(value: Any) -> str:
    """A refused value as the message quotes it (TOML spelling for booleans, short)."""
    text = ("true" if value else "false") if isinstance(value, bool) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _number(value: Any, from_file: bool, expected: str) -> float:
    """A finite number: a TOML int or float from a file, text from the environment."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)) or (
            from_file and isinstance(value, str)):
        raise Invalid(f"must be {expected}, not {shown(value)}")
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (ValueError, OverflowError):
        raise Invalid(f"must be {expected}, not {shown(value)}") from None
    if not math.isfinite(number):
        raise Invalid(f"must be {expected}, not {shown(value)}")
    return number


def parse_seconds(value: Any, from_file: bool) -> float:
    expected = f"a number of seconds, more than 0 and at most {MAX_TIMEOUT:g}"
    seconds = _number(value, from_file, expected)
    if not 0 < seconds <= MAX_TIMEOUT:
        raise Invalid(f"must be {expected}, not {shown(value)}")
    return seconds


def parse_optional_seconds(value: Any, from_file: bool) -> float | None:
    """Seconds, or none at all: ``off``, ``none`` or 0."""
    if isinstance(value, str) and value.strip().lower() in ("", "0", "none", "off"):
        return None
    if not isinstance(value, bool) and isinstance(value, (int, float)) and value == 0:
        return None
    try:
        return parse_seconds(value, from_file)
    except Invalid:
        raise Invalid(f"must be a number of seconds, more than 0 and at most {MAX_TIMEOUT:g} "
                      f"(or off), not {shown(value)}") from None


def parse_count(value: Any, from_file: bool) -> int:
    expected = f"a whole number from 0 to {MAX_COUNT}"
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (from_file and isinstance(value, str)):
        raise Invalid(f"must be {expected}, not {shown(value)}")
    try:
        count = int(value.strip()) if isinstance(value, str) else value
    except ValueError:
        raise Invalid(f"must be {expected}, not {shown(value)}") from None
    if not 0 <= count <= MAX_COUNT:
        raise Invalid(f"must be {expected}, not {shown(value)}")
    return count


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_bool(value: Any, from_file: bool) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and not from_file:
        text = value.strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
    raise Invalid(f"must be {'true or false' if from_file else '1 or 0 (true/false, yes/no, on/off)'}, "
                  f"not {shown(value)}")


def parse_bool_or_auto(value: Any, from_file: bool) -> bool | None:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        return parse_bool(value, from_file)
    except Invalid:
        choices = 'true, false or "auto"' if from_file else "1, 0 or auto"
        raise Invalid(f"must be {choices}, not {shown(value)}") from None


def parse_name(value: Any, from_file: bool) -> str:
    """A model or profile name: text, not empty, no control characters."""
    if not isinstance(value, str):
        raise Invalid(f"must be a string, not {shown(value)}")
    if not value.strip():
        raise Invalid(f"must be a non-empty name, not {shown(value)}")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise Invalid(f"must be valid UTF-8 text, not {shown(value)}")
    if not value.isprintable():
        raise Invalid(f"must be a name without control characters, not {shown(value)}")
    return value


CONTEXT_POLICIES = ("error", "drop-oldest")


def parse_context(value: Any, from_file: bool) -> str:
    """What a conversation does when the server finds it too long (``--context``)."""
    text = value.strip() if isinstance(value, str) and not from_file else value
    if text not in CONTEXT_POLICIES:
        raise Invalid(f"must be one of {', '.join(CONTEXT_POLICIES)}, not {shown(value)}")
    return str(text)


def parse_batch_api(value: Any, from_file: bool) -> str:
    """The Batch API preset: where its endpoint is, how its lines look."""
    text = value.strip().lower() if isinstance(value, str) and not from_file else value
    if text not in BATCH_APIS:
        raise Invalid(f"must be one of {', '.join(BATCH_APIS)}, not {shown(value)}")
    return str(text)


def parse_endpoint_path(value: Any, from_file: bool) -> str:
    """An endpoint path as a provider's Batch API names it (``/v1/chat/completions``)."""
    text = value.strip() if isinstance(value, str) and not from_file else value
    if not isinstance(text, str) or not text.startswith("/") or len(text) > MAX_ENDPOINT_LENGTH \
            or any(c in "?#" or c.isspace() or not c.isprintable() or not c.isascii() for c in text):
        raise Invalid(f"must be a path such as /v1/chat/completions (ASCII, no spaces, query or "
                      f"fragment, at most {MAX_ENDPOINT_LENGTH} characters), not {shown(value)}")
    return text


def parse_batch_limit(value: Any, from_file: bool) -> int:
    """A provider's limit on one batch file: a whole number from 1."""
    expected = f"a whole number from 1 to {MAX_BATCH_LIMIT}"
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (from_file and isinstance(value, str)):
        raise Invalid(f"must be {expected}, not {shown(value)}")
    try:
        number = int(value.strip().replace("_", "")) if isinstance(value, str) else value
    except ValueError:
        raise Invalid(f"must be {expected}, not {shown(value)}") from None
    if not 1 <= number <= MAX_BATCH_LIMIT:
        raise Invalid(f"must be {expected}, not {shown(value)}")
    return number


def parse_header_name(value: Any, from_file: bool) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be a header name, not {shown(value)}")
    problem = name_problem(value.strip())
    if problem:
        raise Invalid(f"must be a header name (such as api-key), but {problem}: {shown(value)}")
    return value.strip()


def parse_api_key(value: Any, from_file: bool) -> Any:
    """A :class:`Secret`, or unset for an empty value; the key is never quoted."""
    if not isinstance(value, str):
        raise Invalid(f"must be a string (the key itself), not a TOML {type(value).__name__}")
    key = value.strip()
    if not key:
        return _UNSET
    secret = Secret(key)  # registered at once: even a refused key is scrubbed from output
    problem = key_problem(key)
    if problem:
        raise Invalid(f"cannot go in an HTTP header: {problem} (the key is not shown; nothing was sent)")
    return secret


def parse_key_command(value: Any, from_file: bool) -> str | tuple[str, ...]:
    """A shell command line (a string), or argv run without a shell (a list of strings)."""
    if isinstance(value, str) and value.strip():
        return value
    if (isinstance(value, list) and value and all(isinstance(arg, str) for arg in value)
            and value[0].strip()):
        return tuple(value)
    raise Invalid("must be a command: a string (run by the shell) or a list of strings "
                  f"(run without one), not {shown(value)}")


def parse_body_fields(value: Any, from_file: bool) -> dict[str, Any]:
    """A TOML table of extra JSON body fields."""
    if not isinstance(value, dict):
        raise Invalid(f"must be a table of body fields (e.g. {{}}), not {shown(value)}")
    problem = _json_problem(value)
    if problem:
        raise Invalid(f"must be a table of JSON values, but {problem}")
    return dict(value)


def _json_problem(value: Any, where: str = "") -> str | None:
    """Why ``value`` cannot be sent as JSON (``where`` is its path in the table), or None."""
    if isinstance(value, dict):
        inner = (_json_problem(v, f"{where}.{k}".lstrip(".")) for k, v in value.items())
        return next((problem for problem in inner if problem), None)
    if isinstance(value, list):
        inner = (_json_problem(v, f"{where}[{i}]") for i, v in enumerate(value))
        return next((problem for problem in inner if problem), None)
    if isinstance(value, (bool, str)):
        return None
    if isinstance(value, int):
        return None if -(2**63) <= value < 2**64 else f"{where} is beyond 64 bits"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} is not a finite number"
    return f"{where} is a {type(value).__name__}, which JSON has no type for"


def parse_base_url(value: Any, from_file: bool) -> str:
    """``local``, or an http(s) URL whose host, port and characters can be sent;
    returned without trailing slashes and fragment, its query string kept."""
    if not isinstance(value, str):
        raise Invalid(f"must be a URL string, not {shown(value)}")
    url = value.strip()
    if url == LOCAL_BASE_URL:
        return url
    problem = _url_problem(url)
    if problem:
        raise Invalid(f"{redact_url(url)!r} {problem}")
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), parts.query, ""))


def _url_problem(url: str) -> str | None:
    if any(0xD800 <= ord(c) <= 0xDFFF for c in url):
        return "holds bytes that are not UTF-8"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "holds a space or a control character"
    scheme, sep, rest = url.partition("://")
    if not sep:
        return f"has no http:// or https:// in front; did you mean {_suggestion(url)}?"
    if scheme.lower() not in ("http", "https"):
        return "must start with http:// or https://"
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in authority:
        return ("holds a user name or password before the host (user:password@, not shown), "
                "which would be sent as Basic auth in place of the API key; remove it and give "
                "the key with ASSISTERS_API_KEY or --api-key")
    problem = _authority_problem(authority)
    if problem:
        return problem
    try:
        urlsplit(url).port  # noqa: B018 - the standard library's own checks, as a last word
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    return None


def _authority_problem(authority: str) -> str | None:
    """What is wrong with ``host[:port]`` (user info already refused), or None."""
    import ipaddress  # only when a URL is checked

    if authority.startswith("["):
        end = authority.find("]")
        if end == -1:
            return "has an IPv6 address without its closing ']'"
        host, rest = authority[1:end], authority[end + 1:]
        try:
            ipaddress.IPv6Address(host.replace("%25", "%"))
        except ValueError:
            return f"has a bad IPv6 address: [{host}]"
        if rest and not rest.startswith(":"):
            return "has something after the IPv6 address that is not a :port"
        port = rest[1:] if rest else ""
    else:
        host, _, port = authority.partition(":")
        if ":" in port:
            return "has an IPv6 address without [brackets] (write http://[::1]:8000/v1)"
        problem = _host_problem(host)
        if problem:
            return problem
    if port and not (port.isascii() and port.isdigit()):
        return f"has a port that is not a number: {port!r}"
    if port and not 1 <= int(port) <= 65535:
        return f"has a port out of range (1 to 65535): {port}"
    return None


def _host_problem(host: str) -> str | None:
    if not host:
        return "names no host"
    if host.replace(".", "").isdigit():
        import ipaddress

        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"has a bad IPv4 address: {host}"
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return "has a host name that cannot be written in ASCII (IDNA)"
    name = host[:-1] if host.endswith(".") else host
    if len(name) > MAX_HOST_LENGTH:
        return f"has a host name longer than {MAX_HOST_LENGTH} characters ({len(name)})"
    for label in name.split("."):
        if not label:
            return "has a host name with an empty label (two dots in a row)"
        if len(label) > MAX_LABEL_LENGTH:
            return f"has a host name label longer than {MAX_LABEL_LENGTH} characters ({len(label)})"
        if not all(c.isalnum() or c in "-_" for c in label):
            bad = next(c for c in label if not (c.isalnum() or c in "-_"))
            return f"has {bad!r} in its host name (letters, digits, '-', '_' and '.' only)"
    return None


def _suggestion(url: str) -> str:
    """``localhost:8000`` → ``http://localhost:8000/v1``; a remote host gets https."""
    host = url.split("/", 1)[0].rpartition("@")[2]
    hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    local = hostname == "localhost" or hostname.startswith("127.") or hostname in ("[::1]", "0.0.0.0")
    guess = ("http://" if local else "https://") + redact_url("x://" + url).removeprefix("x://")
    return guess if "/" in url else guess + "/v1"


# -- the table -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One setting: where it comes from (highest first in each tuple) and its parser."""

    name: str  # the Settings field
    label: str  # how messages call it
    parse: Callable[[Any, bool], Any]
    default: Any = None
    flags: tuple[str, ...] = ()  # Overrides attributes
    env: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()  # config file keys


RULES: tuple[Rule, ...] = (
    Rule("base_url", "the base URL", parse_base_url, DEFAULT_BASE_URL, ("base_url",),
         ("ASSISTERS_BASE_URL", "OPENAI_BASE_URL"), ("base_url",)),
    Rule("model", "the model", parse_name, DEFAULT_MODEL, ("model",), ("ASSISTERS_MODEL",), ("model",)),
    Rule("api_key", "the API key", parse_api_key, None, ("api_key",),
         ("ASSISTERS_API_KEY", "OPENAI_API_KEY"), ("api_key",)),
    Rule("api_key_command", "api_key_command", parse_key_command, None, keys=("api_key_command",)),
    Rule("auth_header", "the auth header", parse_header_name, DEFAULT_AUTH_HEADER,
         env=("ASSISTERS_AUTH_HEADER",), keys=("auth_header",)),
    Rule("connect_timeout", "the connect timeout", parse_seconds, DEFAULT_CONNECT_TIMEOUT,
         ("connect_timeout",), ("ASSISTERS_CONNECT_TIMEOUT",), ("connect_timeout",)),
    Rule("first_byte_timeout", "the first-byte timeout", parse_seconds, DEFAULT_FIRST_BYTE_TIMEOUT,
         ("first_byte_timeout",), ("ASSISTERS_FIRST_BYTE_TIMEOUT",), ("first_byte_timeout",)),
    Rule("response_head_timeout", "the response-head timeout", parse_seconds, DEFAULT_RESPONSE_HEAD_TIMEOUT,
         ("response_head_timeout",), ("ASSISTERS_RESPONSE_HEAD_TIMEOUT",), ("response_head_timeout",)),
    Rule("idle_timeout", "the idle timeout", parse_seconds, DEFAULT_IDLE_TIMEOUT,
         ("idle_timeout", "timeout"), ("ASSISTERS_IDLE_TIMEOUT", "ASSISTERS_TIMEOUT"),
         ("idle_timeout", "timeout")),
    Rule("total_timeout", "the total timeout", parse_optional_seconds, None,
         ("total_timeout",), ("ASSISTERS_TOTAL_TIMEOUT",), ("total_timeout",)),
    Rule("max_retries", "the number of retries", parse_count, DEFAULT_MAX_RETRIES,
         ("max_retries",), ("ASSISTERS_MAX_RETRIES",), ("max_retries",)),
    Rule("max_retry_wait", "the longest retry wait", parse_seconds, DEFAULT_MAX_RETRY_WAIT,
         ("max_retry_wait",), ("ASSISTERS_MAX_RETRY_WAIT",), ("max_retry_wait",)),
    Rule("max_total_wait", "the longest wait in all", parse_seconds, DEFAULT_MAX_TOTAL_WAIT,
         ("max_total_wait",), ("ASSISTERS_MAX_TOTAL_WAIT",), ("max_total_wait",)),
    Rule("resume", "resume", parse_bool, False, ("resume",), ("ASSISTERS_RESUME",), ("resume",)),
    Rule("max_resumes", "the number of resumes", parse_count, DEFAULT_MAX_RESUMES,
         ("max_resumes",), ("ASSISTERS_MAX_RESUMES",), ("max_resumes",)),
    Rule("resume_body", "resume_body", parse_body_fields, DEFAULT_RESUME_BODY, keys=("resume_body",)),
    Rule("stream_usage", "stream_usage", parse_bool_or_auto, None,
         ("stream_usage",), ("ASSISTERS_STREAM_USAGE",), ("stream_usage",)),
    Rule("store", "store", parse_bool, True, ("store",), ("ASSISTERS_STORE",), ("store",)),
    Rule("context", "the context policy", parse_context, "error", ("context",), ("ASSISTERS_CONTEXT",),
         ("context",)),
    Rule("batch_api", "the Batch API", parse_batch_api, "openai", env=("ASSISTERS_BATCH_API",),
         keys=("batch_api",)),
    Rule("batch_endpoint", "the batch endpoint", parse_endpoint_path, None, env=("ASSISTERS_BATCH_ENDPOINT",),
         keys=("batch_endpoint",)),
    Rule("batch_line_url", "batch_line_url", parse_bool, True, env=("ASSISTERS_BATCH_LINE_URL",),
         keys=("batch_line_url",)),
    Rule("batch_max_requests", "the most requests in a batch", parse_batch_limit, DEFAULT_BATCH_MAX_REQUESTS,
         env=("ASSISTERS_BATCH_MAX_REQUESTS",), keys=("batch_max_requests",)),
    Rule("batch_max_bytes", "the largest batch file", parse_batch_limit, DEFAULT_BATCH_MAX_BYTES,
         env=("ASSISTERS_BATCH_MAX_BYTES",), keys=("batch_max_bytes",)),
)
PROFILE_RULE = Rule("profile", "the profile", parse_name, None, ("profile",), ("ASSISTERS_PROFILE",),
                    ("profile",))
KNOWN_KEYS = frozenset(key for rule in RULES for key in rule.keys)


def _checked(rule: Rule, value: Any, where: str, from_file: bool) -> Any:
    try:
        return rule.parse(value, from_file)
    except Invalid as exc:
        raise ConfigError(f"{where}: {rule.label} {exc}" if where else f"{rule.label} {exc}") from None


def flag_name(attribute: str) -> str:
    return "--" + attribute.replace("_", "-")


# -- loading -----------------------------------------------------------------------------


def config_path(environ: Mapping[str, str]) -> Path:
    if environ.get("ASSISTERS_CONFIG"):
        return Path(environ["ASSISTERS_CONFIG"]).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / "assisters" / "config.toml"


def load_settings(flags: Overrides, environ: Mapping[str, str], *, need_key: bool = True) -> Settings:
    """Resolve and check every setting once; raises :class:`ConfigError` (exit 78).

    ``need_key=False`` (shell completion) never runs ``api_key_command`` and
    never asks for a key."""
    path = config_path(environ)
    profile_name = _profile_name(flags, environ)
    entries = read_entries(path, profile_name, explicit=bool(environ.get("ASSISTERS_CONFIG")))
    values: dict[str, Any] = {}
    wheres: dict[str, str] = {}
    for rule in RULES:
        values[rule.name], wheres[rule.name] = _resolve(rule, flags, environ, entries)
    command = values.pop("api_key_command")
    key = values["api_key"]
    if key is None and need_key and _key_wanted(values["base_url"], wheres):
        if command is None:
            raise ConfigError(
                "no API key: set ASSISTERS_API_KEY (or pass --api-key, or api_key_command "
                f"in {path})"
            )
        values["api_key"] = Secret(run_key_command(command, wheres["api_key_command"]))
    if values["resume_body"] is DEFAULT_RESUME_BODY:
        values["resume_body"] = dict(DEFAULT_RESUME_BODY)
    return Settings(profile=profile_name, **values)


def _key_wanted(base_url: str, wheres: dict[str, str]) -> bool:
    """Whether a key must be found (``api_key_command`` run, or its absence an error).

    Not for ``local``. Not for a loopback URL either, unless the config file pairs
    that URL with an ``api_key_command`` in the same table (top level or profile):
    writing both together asks for the key, while a loopback URL from a flag or a
    variable (an offline run) must not depend on a password manager."""
    if base_url == LOCAL_BASE_URL:
        return False
    if not is_loopback(base_url):
        return True
    url_table = wheres["base_url"].removeprefix("base_url in ")
    command_table = wheres["api_key_command"].removeprefix("api_key_command in ")
    return url_table != wheres["base_url"] and url_table == command_table


def _resolve(rule: Rule, flags: Overrides, environ: Mapping[str, str],
             entries: dict[str, tuple[Any, str]]) -> tuple[Any, str]:
    """The rule's value and where it came from: the first flag, then the first
    environment variable, then the first config key that gives one, else the default.

    Every config file value is checked, even one that a flag or a variable overrides
    (the file is broken either way); a variable or flag that is not used is not."""
    from_file: list[tuple[Any, str]] = []
    for key in rule.keys:
        if key in entries:
            raw, where = entries[key]
            parsed = _checked(rule, raw, where, True)
            if parsed is not _UNSET:
                from_file.append((parsed, where))
    given = [(getattr(flags, a), flag_name(a)) for a in rule.flags if getattr(flags, a) is not None]
    given += [(environ[name], name) for name in rule.env if environ.get(name)]
    for value, where in given:
        parsed = _checked(rule, value, where, False)
        if parsed is not _UNSET:
            return parsed, where
    if from_file:
        return from_file[0]
    return rule.default, "the default"


def _profile_name(flags: Overrides, environ: Mapping[str, str]) -> str | None:
    if flags.profile is not None:
        return str(_checked(PROFILE_RULE, flags.profile, "--profile", False))
    if environ.get("ASSISTERS_PROFILE"):
        return str(_checked(PROFILE_RULE, environ["ASSISTERS_PROFILE"], "ASSISTERS_PROFILE", False))
    return None


def run_key_command(command: str | tuple[str, ...], where: str) -> str:
    """Run ``api_key_command``; the key is the first line of its output, stripped.

    A string goes through the shell, a tuple runs as argv without one. Its stdout
    is never shown (it is the secret) and only its first line is used (``pass
    show`` puts metadata after it); its stderr passes through to the user's
    terminal so a password manager can prompt or complain.
    """
    import subprocess

    try:
        result = subprocess.run(list(command) if isinstance(command, tuple) else command,
                                shell=isinstance(command, str), stdout=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, timeout=KEY_COMMAND_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{where} took longer than {KEY_COMMAND_TIMEOUT:g} s") from None
    except OSError as exc:
        raise ConfigError(f"{where} could not run: {exc.strerror}") from None
    if result.returncode != 0:
        raise ConfigError(f"{where} failed with exit status {result.returncode}")
    first_line = result.stdout.split(b"\n", 1)[0].strip()
    try:
        key = first_line.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: the first line of its output is not UTF-8 text, "
                          "so it cannot be an API key (nothing was sent)") from None
    if not key:
        raise ConfigError(f"{where} printed no key on the first line of its output")
    Secret(key)  # scrubbed from output from now on, even when refused below
    problem = key_problem(key)
    if problem:
        raise ConfigError(f"{where}: the first line of its output cannot go in an HTTP header: {problem} "
                          "(the key is not shown; nothing was sent)")
    return key


# -- the config file ---------------------------------------------------------------------


def read_entries(path: Path, name: str | None, *, explicit: bool) -> dict[str, tuple[Any, str]]:
    """The merged top-level and profile keys of the config file ({} when absent),
    each with where it is written (``max_retries in [profiles.work] of FILE``)."""
    data = _read_toml(path, name, explicit=explicit)
    if data is None:
        return {}
    profiles = data.pop("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}: 'profiles' must be a table of [profiles.NAME] tables")
    if "profile" in data:
        default = _checked(PROFILE_RULE, data.pop("profile"), f"profile in {path}", True)
        name = name or default
    merged = {key: (value, f"{key} in {path}") for key, value in data.items()}
    if name:
        chosen = profiles.get(name)
        if not isinstance(chosen, dict):
            known = ", ".join(sorted(k for k, v in profiles.items() if isinstance(v, dict))) or "none"
            raise ConfigError(f"{path}: no profile '{name}' (profiles: {known})")
        # A profile's own way to get a key replaces the inherited one.
        if "api_key" in chosen or "api_key_command" in chosen:
            merged.pop("api_key", None)
            merged.pop("api_key_command", None)
        merged.update({key: (value, f"{key} in [profiles.{name}] of {path}")
                       for key, value in chosen.items()})
    unknown = sorted(set(merged) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{merged[unknown[0]][1]}: unknown key '{unknown[0]}' "
                          f"(known: {', '.join(sorted(KNOWN_KEYS))})")
    return merged


def read_profile(path: Path, name: str | None, *, explicit: bool) -> dict[str, Any]:
    """The merged top-level and profile values of the config file ({} when absent)."""
    return {key: value for key, (value, _) in read_entries(path, name, explicit=explicit).items()}


def _read_toml(path: Path, name: str | None, *, explicit: bool) -> dict[str, Any] | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{path}: config file not found (from ASSISTERS_CONFIG)") from None
        if name:
            raise ConfigError(
                f"profile '{name}' requested but there is no config file at {path}"
            ) from None
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


# -- URLs ----------------------------------------------------------------------------------


def check_base_url(url: str, where: str = "") -> None:
    """Raise :class:`ConfigError` when ``url`` cannot be a base URL (the message
    never shows a password or a query string)."""
    _checked(RULES[0], url, where, False)


def is_loopback(url: str) -> bool:
    if url == LOCAL_BASE_URL:
        return True
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    import ipaddress  # only for a host that is not "localhost"

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_key_warning(settings: Settings) -> str | None:
    """A warning when the key would cross the network unencrypted."""
    parts = urlsplit(settings.base_url)
    if settings.api_key and parts.scheme.lower() == "http" and not is_loopback(settings.base_url):
        host = parts.hostname
        return f"warning: sending the API key over plain http to {host}; use https"
    return None
