"""Settings: flag > environment > config file profile > default, in one place.

Environment: ``ASSISTERS_API_KEY``, ``ASSISTERS_BASE_URL``, ``ASSISTERS_MODEL``,
``ASSISTERS_CONFIG`` (the config file), ``ASSISTERS_PROFILE``, then
``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` as fallbacks for the first two.

The config file is TOML, by default ``$XDG_CONFIG_HOME/assisters/config.toml``
(``~/.config/assisters/config.toml``). Top-level keys apply to every profile;
``[profiles.NAME]`` tables override them; ``profile = "NAME"`` at the top picks
the default profile. Keys: ``base_url``, ``model``, ``api_key``,
``api_key_command``, ``connect_timeout``, ``first_byte_timeout``, ``idle_timeout``
(``timeout`` is its older name), ``total_timeout``, ``stream_usage``,
``max_retries``, ``max_retry_wait``, ``max_total_wait``, ``resume``,
``max_resumes``, ``resume_body`` (a table of extra body fields sent with a
resumed request), ``store`` (keep chats in the conversation store) and
``context`` (what a conversation does when the server finds it too long:
``error`` or ``drop-oldest``).

Timeout defaults, chosen for slow reasoning models: connect 10 s (a reachable
server accepts in milliseconds); first byte 300 s (a model may think for minutes
before its first event when it hides its reasoning); idle 120 s (once a stream
has started, servers send tokens or keep-alive comments far more often, so two
minutes of silence is a dead connection or a stuck proxy); no total limit.

The key is held in a :class:`~assisters.redact.Secret`, whose ``repr`` and ``str``
never show it, and which registers it with :mod:`assisters.redact`, so that no
output of the process can hold it.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from assisters.errors import ConfigError
from assisters.redact import Secret, redact_url

DEFAULT_BASE_URL = "https://api.assisters.dev/v1"
LOCAL_BASE_URL = "local"  # the built-in server, started for the duration of a command
DEFAULT_MODEL = "llama-3.1-8b"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_FIRST_BYTE_TIMEOUT = 300.0
DEFAULT_IDLE_TIMEOUT = 120.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_MAX_RETRY_WAIT = 60.0  # the longest single backoff or Retry-After we accept
DEFAULT_MAX_TOTAL_WAIT = 120.0  # all backoff sleeps of one run together
DEFAULT_MAX_RESUMES = 3
# vLLM's names; llama.cpp continues a final assistant message without them.
DEFAULT_RESUME_BODY: dict[str, Any] = {"continue_final_message": True, "add_generation_prompt": False}
KEY_COMMAND_TIMEOUT = 30.0
MAX_TIMEOUT = 86400.0 * 7  # also rejects inf and nan, which socket timeouts refuse

_KNOWN_KEYS = {
    "base_url",
    "model",
    "api_key",
    "api_key_command",
    "timeout",
    "connect_timeout",
    "first_byte_timeout",
    "idle_timeout",
    "total_timeout",
    "stream_usage",
    "max_retries",
    "max_retry_wait",
    "max_total_wait",
    "resume",
    "max_resumes",
    "resume_body",
    "store",
    "context",
}
CONTEXT_POLICIES = ("error", "drop-oldest")


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
    total_timeout: float | None = None
    max_retries: int = DEFAULT_MAX_RETRIES
    max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT
    max_total_wait: float = DEFAULT_MAX_TOTAL_WAIT
    resume: bool = False
    max_resumes: int = DEFAULT_MAX_RESUMES
    resume_body: Mapping[str, Any] = dataclasses.field(default_factory=lambda: dict(DEFAULT_RESUME_BODY))
    store: bool = True  # keep chats in the conversation store (assisters.conversation.store)
    context: str = "error"  # a conversation too long for the model: "error" or "drop-oldest"

    def url(self, path: str) -> str:
        """An endpoint under the base URL (``chat/completions``, ``/models``)."""
        return self.base_url + "/" + path.lstrip("/")


@dataclass(frozen=True)
class Overrides:
    """Values given on the command line; ``None`` means not given."""

    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    timeout: float | None = None  # the idle timeout's older name
    connect_timeout: float | None = None
    first_byte_timeout: float | None = None
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


def config_path(environ: Mapping[str, str]) -> Path:
    if environ.get("ASSISTERS_CONFIG"):
        return Path(environ["ASSISTERS_CONFIG"]).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / "assisters" / "config.toml"


def load_settings(flags: Overrides, environ: Mapping[str, str], *, need_key: bool = True) -> Settings:
    """Resolve every setting once; raises :class:`ConfigError` (exit 78)."""
    path = config_path(environ)
    profile_name = flags.profile or environ.get("ASSISTERS_PROFILE") or None
    profile = read_profile(path, profile_name, explicit=bool(environ.get("ASSISTERS_CONFIG")))

    def pick(flag: Any, *env_names: str, key: str, default: Any = None) -> Any:
        if flag is not None:
            return flag
        for name in env_names:
            if environ.get(name):
                return environ[name]
        return profile.get(key, default)

    base_url = str(pick(flags.base_url, "ASSISTERS_BASE_URL", "OPENAI_BASE_URL",
                        key="base_url", default=DEFAULT_BASE_URL)).rstrip("/")
    check_base_url(base_url)
    settings = Settings(
        base_url=base_url,
        model=str(pick(flags.model, "ASSISTERS_MODEL", key="model", default=DEFAULT_MODEL)),
        api_key=None,
        idle_timeout=_seconds(pick(_first(flags.idle_timeout, flags.timeout), "ASSISTERS_IDLE_TIMEOUT",
                                   "ASSISTERS_TIMEOUT", key="idle_timeout",
                                   default=profile.get("timeout", DEFAULT_IDLE_TIMEOUT)),
                              "idle_timeout", path),
        connect_timeout=_seconds(pick(flags.connect_timeout, "ASSISTERS_CONNECT_TIMEOUT",
                                      key="connect_timeout", default=DEFAULT_CONNECT_TIMEOUT),
                                 "connect_timeout", path),
        first_byte_timeout=_seconds(pick(flags.first_byte_timeout, "ASSISTERS_FIRST_BYTE_TIMEOUT",
                                         key="first_byte_timeout", default=DEFAULT_FIRST_BYTE_TIMEOUT),
                                    "first_byte_timeout", path),
        total_timeout=_optional_seconds(pick(flags.total_timeout, "ASSISTERS_TOTAL_TIMEOUT",
                                             key="total_timeout"), "total_timeout", path),
        max_retries=_count(pick(flags.max_retries, "ASSISTERS_MAX_RETRIES", key="max_retries",
                                default=DEFAULT_MAX_RETRIES), "max_retries", path),
        max_retry_wait=_seconds(pick(flags.max_retry_wait, "ASSISTERS_MAX_RETRY_WAIT", key="max_retry_wait",
                                     default=DEFAULT_MAX_RETRY_WAIT), "max_retry_wait", path),
        max_total_wait=_seconds(pick(flags.max_total_wait, "ASSISTERS_MAX_TOTAL_WAIT", key="max_total_wait",
                                     default=DEFAULT_MAX_TOTAL_WAIT), "max_total_wait", path),
        resume=bool(_flag(pick(flags.resume, "ASSISTERS_RESUME", key="resume", default=False),
                          "resume", path)),
        max_resumes=_count(pick(flags.max_resumes, "ASSISTERS_MAX_RESUMES", key="max_resumes",
                                default=DEFAULT_MAX_RESUMES), "max_resumes", path),
        resume_body=_table(profile.get("resume_body", DEFAULT_RESUME_BODY), "resume_body", path),
        stream_usage=_flag(pick(flags.stream_usage, "ASSISTERS_STREAM_USAGE", key="stream_usage"),
                           "stream_usage", path),
        profile=profile_name,
        store=bool(_flag(pick(flags.store, "ASSISTERS_STORE", key="store", default=True), "store", path)
                   is not False),
        context=_choice(pick(flags.context, "ASSISTERS_CONTEXT", key="context", default="error"),
                        CONTEXT_POLICIES, "context", path),
    )
    key = _resolve_key(flags, environ, profile, path)
    if key is None and need_key and not is_loopback(base_url):
        raise ConfigError(
            "no API key: set ASSISTERS_API_KEY (or pass --api-key, or api_key_command "
            f"in {path})"
        )
    return dataclasses.replace(settings, api_key=key)


def _resolve_key(
    flags: Overrides, environ: Mapping[str, str], profile: dict[str, Any], path: Path
) -> Secret | None:
    for value in (flags.api_key, environ.get("ASSISTERS_API_KEY"), environ.get("OPENAI_API_KEY"),
                  profile.get("api_key")):
        if value:
            return Secret(str(value).strip())
    command = profile.get("api_key_command")
    if command:
        return Secret(run_key_command(str(command), path))
    return None


def run_key_command(command: str, path: Path) -> str:
    """Run ``api_key_command`` through the shell; its output is the key.

    Its stdout is never shown (it is the secret); its stderr passes through to
    the user's terminal so a password manager can prompt or complain.
    """
    import subprocess

    try:
        result = subprocess.run(command, shell=True, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                timeout=KEY_COMMAND_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{path}: api_key_command took longer than {KEY_COMMAND_TIMEOUT:g} s") from None
    except OSError as exc:
        raise ConfigError(f"{path}: api_key_command could not run: {exc.strerror}") from None
    if result.returncode != 0:
        raise ConfigError(f"{path}: api_key_command failed with exit status {result.returncode}")
    key = result.stdout.decode("utf-8", "replace").strip()
    if not key:
        raise ConfigError(f"{path}: api_key_command printed no key")
    return key


def read_profile(path: Path, name: str | None, *, explicit: bool) -> dict[str, Any]:
    """The merged top-level and profile keys of the config file ({} when absent)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{path}: config file not found (from ASSISTERS_CONFIG)") from None
        if name:
            raise ConfigError(
                f"profile '{name}' requested but there is no config file at {path}"
            ) from None
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    profiles = data.pop("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}: 'profiles' must be a table of [profiles.NAME] tables")
    name = name or data.pop("profile", None)
    data.pop("profile", None)
    merged = dict(data)
    if name:
        chosen = profiles.get(name)
        if not isinstance(chosen, dict):
            known = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(f"{path}: no profile '{name}' (profiles: {known})")
        # A profile's own way to get a key replaces the inherited one.
        if "api_key" in chosen or "api_key_command" in chosen:
            merged.pop("api_key", None)
            merged.pop("api_key_command", None)
        merged.update(chosen)
    unknown = sorted(set(merged) - _KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key '{unknown[0]}' (known: {', '.join(sorted(_KNOWN_KEYS))})")
    return merged


def _seconds(value: Any, name: str, path: Path) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number of seconds, not {value!r} ({path})") from None
    if not 0 < seconds <= MAX_TIMEOUT:
        raise ConfigError(
            f"{name} must be more than 0 and at most {MAX_TIMEOUT:g} seconds, not {value!r} ({path})"
        )
    return seconds


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _optional_seconds(value: Any, name: str, path: Path) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "0", "none", "off")):
        return None
    return _seconds(value, name, path)


def _count(value: Any, name: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{name} must be a whole number from 0 to 100, not {value!r} ({path})")
    try:
        count = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number from 0 to 100, not {value!r} ({path})") from None
    if not 0 <= count <= 100:
        raise ConfigError(f"{name} must be a whole number from 0 to 100, not {value!r} ({path})")
    return count


def _table(value: Any, name: str, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a table of body fields, e.g. {name} = {{}} ({path})")
    return dict(value)


def _choice(value: Any, choices: tuple[str, ...], name: str, path: Path) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r} ({path})")
    return str(value)


def _flag(value: Any, name: str, path: Path) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    if text == "auto":
        return None
    raise ConfigError(f"{name} must be true, false or auto, not {value!r} ({path})")


def check_base_url(url: str) -> None:
    if url == LOCAL_BASE_URL:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"base URL must start with http:// or https:// and name a host: {redact_url(url)!r}"
        )


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
