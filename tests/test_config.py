"""load_settings: flag > ASSISTERS_* > OPENAI_* > config profile > default.

Every test passes an explicit environ dict whose config locations point into
tmp_path, so the developer's real home and environment are never read.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from assisters.config import (
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    Overrides,
    Secret,
    Settings,
    check_base_url,
    insecure_key_warning,
    is_loopback,
    load_settings,
    read_profile,
    redact_url,
)
from assisters.errors import ConfigError, ExitStatus

KEY = "sk-test-config-7f3a-never-shown"


@pytest.fixture
def xdg(tmp_path: Path) -> Path:
    return tmp_path / "xdg"


@pytest.fixture
def environ(tmp_path: Path, xdg: Path) -> dict[str, str]:
    """A minimal environment with no key and config under tmp_path."""
    return {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(xdg)}


def write_config(xdg: Path, text: str) -> Path:
    path = xdg / "assisters" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(environ: dict[str, str], flags: Overrides | None = None, **kw: bool) -> Settings:
    return load_settings(flags or Overrides(), environ, **kw)


def load_error(environ: dict[str, str], flags: Overrides | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(environ, flags)
    assert info.value.status == ExitStatus.CONFIG
    return info.value


def key_of(settings: Settings) -> str | None:
    return settings.api_key.reveal() if settings.api_key is not None else None


# -- defaults and precedence -----------------------------------------------------


def test_defaults(environ: dict[str, str]) -> None:
    settings = load({**environ, "ASSISTERS_API_KEY": KEY})
    assert settings.base_url == DEFAULT_BASE_URL == "https://api.assisters.dev/v1"
    assert settings.model == DEFAULT_MODEL == "llama-3.1-8b"
    assert settings.idle_timeout == 120.0
    assert settings.first_byte_timeout == 300.0
    assert settings.total_timeout is None
    assert settings.connect_timeout == 10.0
    assert (settings.max_retries, settings.max_retry_wait, settings.max_total_wait) == (2, 60.0, 120.0)
    assert (settings.resume, settings.max_resumes) == (False, 3)
    assert settings.resume_body == {"continue_final_message": True, "add_generation_prompt": False}
    assert settings.stream_usage is None
    assert settings.profile is None
    assert key_of(settings) == KEY


LAYERS = ["flag", "ASSISTERS", "OPENAI", "profile", "top", "default"]


@pytest.mark.parametrize("top", LAYERS)
def test_base_url_precedence(environ: dict[str, str], xdg: Path, top: str) -> None:
    """Each layer wins over every layer below it."""
    layers = LAYERS[LAYERS.index(top):]
    write_config(xdg, "\n".join([
        'base_url = "https://top.example/v1"' if "top" in layers else "",
        'profile = "p"',
        "[profiles.p]",
        'base_url = "https://profile.example/v1"' if "profile" in layers else "",
    ]))
    env = {**environ, "ASSISTERS_API_KEY": KEY}
    if "ASSISTERS" in layers:
        env["ASSISTERS_BASE_URL"] = "https://assisters-env.example/v1"
    if "OPENAI" in layers:
        env["OPENAI_BASE_URL"] = "https://openai-env.example/v1"
    flags = Overrides(base_url="https://flag.example/v1" if "flag" in layers else None)
    expected = {
        "flag": "https://flag.example/v1",
        "ASSISTERS": "https://assisters-env.example/v1",
        "OPENAI": "https://openai-env.example/v1",
        "profile": "https://profile.example/v1",
        "top": "https://top.example/v1",
        "default": DEFAULT_BASE_URL,
    }[top]
    assert load(env, flags).base_url == expected


@pytest.mark.parametrize("top", LAYERS)
def test_api_key_precedence(environ: dict[str, str], xdg: Path, top: str) -> None:
    layers = LAYERS[LAYERS.index(top):]
    write_config(xdg, "\n".join([
        'api_key = "sk-top"' if "top" in layers else "",
        'profile = "p"',
        "[profiles.p]",
        'api_key = "sk-profile"' if "profile" in layers else "",
    ]))
    env = dict(environ)
    if "ASSISTERS" in layers:
        env["ASSISTERS_API_KEY"] = "sk-assisters-env"
    if "OPENAI" in layers:
        env["OPENAI_API_KEY"] = "sk-openai-env"
    flags = Overrides(api_key="sk-flag" if "flag" in layers else None)
    if top == "default":
        error = load_error(env, flags)
        assert "ASSISTERS_API_KEY" in error.message
        return
    expected = {"flag": "sk-flag", "ASSISTERS": "sk-assisters-env", "OPENAI": "sk-openai-env",
                "profile": "sk-profile", "top": "sk-top"}[top]
    assert key_of(load(env, flags)) == expected


def test_model_precedence(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, 'model = "top-model"\n')
    env = {**environ, "ASSISTERS_API_KEY": KEY}
    assert load(env).model == "top-model"
    assert load({**env, "ASSISTERS_MODEL": "env-model"}).model == "env-model"
    assert load({**env, "ASSISTERS_MODEL": "env-model"}, Overrides(model="flag-model")).model == "flag-model"


def test_empty_environment_values_are_not_set(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, 'base_url = "https://file.example/v1"\napi_key = "sk-file"\nmodel = "file-model"\n')
    env = {**environ, "ASSISTERS_BASE_URL": "", "OPENAI_BASE_URL": "", "ASSISTERS_API_KEY": "",
           "OPENAI_API_KEY": "", "ASSISTERS_MODEL": "", "ASSISTERS_PROFILE": ""}
    settings = load(env)
    assert (settings.base_url, settings.model, key_of(settings)) == (
        "https://file.example/v1", "file-model", "sk-file")


def test_base_url_trailing_slash_removed(environ: dict[str, str]) -> None:
    settings = load({**environ, "ASSISTERS_API_KEY": KEY, "ASSISTERS_BASE_URL": "https://x.example/v1/"})
    assert settings.base_url == "https://x.example/v1"


def test_key_whitespace_is_stripped(environ: dict[str, str]) -> None:
    assert key_of(load({**environ, "ASSISTERS_API_KEY": f"  {KEY}\n"})) == KEY


# -- config file and profiles ----------------------------------------------------


def test_config_found_through_xdg_config_home(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, 'model = "from-xdg"\napi_key = "sk-xdg"\n')
    assert load(environ).model == "from-xdg"


def test_assisters_config_points_at_the_file(environ: dict[str, str], xdg: Path, tmp_path: Path) -> None:
    write_config(xdg, 'model = "from-xdg"\n')
    other = tmp_path / "elsewhere.toml"
    other.write_text('model = "from-explicit"\napi_key = "sk-x"\n')
    assert load({**environ, "ASSISTERS_CONFIG": str(other)}).model == "from-explicit"


def test_missing_explicit_config_is_an_error(environ: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    error = load_error({**environ, "ASSISTERS_CONFIG": str(missing), "ASSISTERS_API_KEY": KEY})
    assert str(missing) in error.message


def test_missing_default_config_is_fine(environ: dict[str, str]) -> None:
    assert load({**environ, "ASSISTERS_API_KEY": KEY}).model == DEFAULT_MODEL


PROFILES = """\
model = "top-model"
base_url = "https://top.example/v1"
api_key = "sk-top"
timeout = 42

[profiles.work]
model = "work-model"
base_url = "https://work.example/v1"

[profiles.local]
base_url = "http://127.0.0.1:8080/v1"
"""


def test_top_level_keys_without_profile(environ: dict[str, str], xdg: Path) -> None:
    settings = load({**environ, "ASSISTERS_CONFIG": str(write_config(xdg, PROFILES))})
    assert (settings.model, settings.base_url, settings.idle_timeout, settings.profile) == (
        "top-model", "https://top.example/v1", 42.0, None)


def test_profile_overrides_top_level_keys(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, PROFILES)
    settings = load({**environ, "ASSISTERS_PROFILE": "work"})
    assert settings.profile == "work"
    assert settings.model == "work-model"
    assert settings.base_url == "https://work.example/v1"
    assert settings.idle_timeout == 42.0  # inherited from the top level
    assert key_of(settings) == "sk-top"


def test_profile_key_in_file_chooses_the_default_profile(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, 'profile = "work"\n' + PROFILES)
    assert load(environ).model == "work-model"
    # ASSISTERS_PROFILE beats the file's choice, and the flag beats ASSISTERS_PROFILE.
    assert load({**environ, "ASSISTERS_PROFILE": "local"}).base_url == "http://127.0.0.1:8080/v1"
    settings = load({**environ, "ASSISTERS_PROFILE": "local"}, Overrides(profile="work"))
    assert (settings.base_url, settings.profile) == ("https://work.example/v1", "work")


def test_env_still_beats_the_chosen_profile(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, PROFILES)
    settings = load({**environ, "ASSISTERS_PROFILE": "work", "ASSISTERS_MODEL": "env-model"})
    assert settings.model == "env-model"
    assert settings.base_url == "https://work.example/v1"


def test_unknown_profile_is_named(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, PROFILES)
    error = load_error({**environ, "ASSISTERS_PROFILE": "wrok"})
    assert "'wrok'" in error.message
    assert "local" in error.message and "work" in error.message  # the known ones are listed
    error = load_error(environ, Overrides(profile="ghost"))
    assert "'ghost'" in error.message


def test_unknown_default_profile_in_file_is_named(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, 'profile = "missing"\n' + PROFILES)
    assert "'missing'" in load_error(environ).message


def test_profile_without_config_file_is_an_error(environ: dict[str, str]) -> None:
    error = load_error({**environ, "ASSISTERS_API_KEY": KEY}, Overrides(profile="work"))
    assert "'work'" in error.message


def test_invalid_toml_names_the_file(environ: dict[str, str], xdg: Path) -> None:
    path = write_config(xdg, 'model = "unterminated\n')
    error = load_error({**environ, "ASSISTERS_API_KEY": KEY})
    assert str(path) in error.message
    assert "TOML" in error.message


def test_non_utf8_config_is_a_config_error(environ: dict[str, str], xdg: Path) -> None:
    path = write_config(xdg, "")
    path.write_bytes(b'model = "\xff"\n')
    assert str(path) in load_error({**environ, "ASSISTERS_API_KEY": KEY}).message


@pytest.mark.parametrize(
    "text",
    ['modle = "x"\n', '[profiles.p]\nbase_ur = "https://x"\n', 'api-key = "x"\n'],
)
def test_unknown_key_is_an_error(environ: dict[str, str], xdg: Path, text: str) -> None:
    path = write_config(xdg, text)
    env = {**environ, "ASSISTERS_API_KEY": KEY, "ASSISTERS_PROFILE": "p" if "profiles" in text else ""}
    error = load_error(env)
    assert "unknown key" in error.message
    assert str(path) in error.message
    bad = text.split("\n")[-2].split(" ")[0]
    assert f"'{bad}'" in error.message


def test_profiles_must_be_tables(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, "profiles = 3\n")
    assert "profiles" in load_error({**environ, "ASSISTERS_API_KEY": KEY}).message


def test_read_profile_merges(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(PROFILES)
    assert read_profile(path, "local", explicit=True) == {
        "model": "top-model", "base_url": "http://127.0.0.1:8080/v1", "api_key": "sk-top", "timeout": 42}
    assert read_profile(tmp_path / "absent.toml", None, explicit=False) == {}


# -- api_key_command ---------------------------------------------------------------


def test_api_key_command_output_is_the_key(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, "api_key_command = \"printf '  sk-from-cmd\\\\n'\"\n")
    assert key_of(load(environ)) == "sk-from-cmd"


def test_api_key_command_in_a_profile(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, "[profiles.p]\napi_key_command = \"echo sk-profile-cmd\"\n")
    assert key_of(load({**environ, "ASSISTERS_PROFILE": "p"})) == "sk-profile-cmd"


@pytest.mark.parametrize(
    ("where", "value"),
    [("flag", "sk-flag"), ("ASSISTERS_API_KEY", "sk-env"), ("OPENAI_API_KEY", "sk-openai"),
     ("file", "sk-file")],
)
def test_api_key_command_not_run_when_a_higher_level_gives_a_key(
    environ: dict[str, str], xdg: Path, tmp_path: Path, where: str, value: str
) -> None:
    marker = tmp_path / "command-ran"
    command = f"touch {shlex.quote(str(marker))}; echo sk-from-cmd"
    lines = [f"api_key_command = {json.dumps(command)}"]  # a JSON string is a TOML basic string
    if where == "file":
        lines.append(f'api_key = "{value}"')
    write_config(xdg, "\n".join(lines) + "\n")
    env = dict(environ)
    if where in ("ASSISTERS_API_KEY", "OPENAI_API_KEY"):
        env[where] = value
    flags = Overrides(api_key=value if where == "flag" else None)
    assert key_of(load(env, flags)) == value
    assert not marker.exists()
    # The same config without the higher-level key does run the command.
    write_config(xdg, lines[0] + "\n")
    assert key_of(load(environ)) == "sk-from-cmd"
    assert marker.exists()


def test_failing_api_key_command_reports_status_not_output(environ: dict[str, str], xdg: Path) -> None:
    path = write_config(xdg, "api_key_command = \"printf 'sk-leaked-by-command'; exit 3\"\n")
    error = load_error(environ)
    assert "exit status 3" in error.message
    assert str(path) in error.message
    assert "sk-leaked-by-command" not in error.message
    assert "sk-leaked-by-command" not in repr(error)


def test_api_key_command_printing_nothing_is_an_error(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, "api_key_command = \"printf '  \\\\n'\"\n")
    assert "no key" in load_error(environ).message


def test_api_key_command_runs_even_for_loopback(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, 'base_url = "http://localhost:8080/v1"\napi_key_command = "echo sk-local"\n')
    assert key_of(load(environ)) == "sk-local"


def test_profile_api_key_command_overrides_top_level_api_key(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, 'api_key = "sk-default-service"\n[profiles.other]\n'
                      'base_url = "https://other.example/v1"\napi_key_command = "echo sk-other"\n')
    assert key_of(load({**environ, "ASSISTERS_PROFILE": "other"})) == "sk-other"


# -- keys and loopback -----------------------------------------------------------


@pytest.mark.parametrize("url", ["https://api.example.com/v1", "http://10.0.0.5:8000/v1",
                                 "http://localhost.example.com/v1", "http://127.0.0.1.nip.io/v1"])
def test_no_key_for_remote_url_is_an_error(environ: dict[str, str], url: str) -> None:
    error = load_error({**environ, "ASSISTERS_BASE_URL": url})
    assert "ASSISTERS_API_KEY" in error.message


def test_no_key_is_fine_when_not_needed(environ: dict[str, str]) -> None:
    assert load(environ, need_key=False).api_key is None


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/v1", "http://localhost:11434/v1", "http://[::1]:8000/v1", "http://127.9.9.9/v1",
     "http://LOCALHOST/v1", "https://api.localhost/v1"],
)
def test_loopback_needs_no_key(environ: dict[str, str], url: str) -> None:
    settings = load({**environ, "ASSISTERS_BASE_URL": url})
    assert settings.api_key is None
    assert is_loopback(url)


@pytest.mark.parametrize("url", ["http://example.com", "http://0.0.0.0:8080", "http://[::2]/", "http://10.1.1.1",
                                 "http://localhostx/v1"])
def test_not_loopback(url: str) -> None:
    assert not is_loopback(url)


def test_secret_never_shows_its_value() -> None:
    secret = Secret(KEY)
    assert KEY not in repr(secret)
    assert KEY not in str(secret)
    assert KEY not in f"{secret} {secret!r}"
    assert secret.reveal() == KEY
    assert secret
    assert not Secret("")


def test_settings_repr_hides_the_key(environ: dict[str, str]) -> None:
    settings = load({**environ, "ASSISTERS_API_KEY": KEY})
    assert KEY not in repr(settings)
    assert KEY not in str(settings)
    assert key_of(settings) == KEY


# -- URLs ------------------------------------------------------------------------


def with_key(url: str, key: str | None = KEY) -> Settings:
    return Settings(base_url=url, model="m", api_key=Secret(key) if key else None, connect_timeout=1.0,
                    idle_timeout=1.0, stream_usage=None)


def test_insecure_key_warning_for_plain_http() -> None:
    warning = insecure_key_warning(with_key("http://example.com/v1"))
    assert warning is not None
    assert "warning" in warning and "example.com" in warning
    assert KEY not in warning


@pytest.mark.parametrize(
    "settings",
    [with_key("https://example.com/v1"), with_key("http://127.0.0.1:8080/v1"),
     with_key("http://localhost/v1"), with_key("http://[::1]:8080/v1"),
     with_key("http://example.com/v1", None), with_key("http://example.com", "")],
    ids=["https", "127.0.0.1", "localhost", "::1", "no-key", "empty-key"],
)
def test_no_insecure_key_warning(settings: Settings) -> None:
    assert insecure_key_warning(settings) is None


def test_insecure_key_warning_from_loaded_settings(environ: dict[str, str]) -> None:
    settings = load({**environ, "ASSISTERS_API_KEY": KEY, "ASSISTERS_BASE_URL": "http://example.com/v1"})
    assert insecure_key_warning(settings) is not None


def test_insecure_key_warning_is_case_insensitive_about_the_scheme(environ: dict[str, str]) -> None:
    settings = load({**environ, "ASSISTERS_API_KEY": KEY, "ASSISTERS_BASE_URL": "HTTP://example.com/v1"})
    assert insecure_key_warning(settings) is not None


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://user:sk-pass@api.example.com/v1?api_key=sk-query", "https://api.example.com/v1"),
        ("http://token@localhost:8080/v1/chat/completions?x=1#frag", "http://localhost:8080/v1/chat/completions"),
        ("https://api.example.com/v1", "https://api.example.com/v1"),
        ("/relative/redirect?token=sk-q", "/relative/redirect"),
    ],
)
def test_redact_url_drops_user_info_and_query(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_redact_url_keeps_ipv6_brackets() -> None:
    assert redact_url("http://user:pw@[::1]:8080/v1?k=s") == "http://[::1]:8080/v1"


@pytest.mark.parametrize("url", ["ftp://user:sk-secret@example.com/?key=sk-q", "api.example.com/v1", "http://",
                                 "file:///etc/passwd"])
def test_bad_base_url_is_a_config_error_without_secrets(environ: dict[str, str], url: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_base_url(url)
    assert "sk-secret" not in info.value.message and "sk-q" not in info.value.message
    error = load_error({**environ, "ASSISTERS_API_KEY": KEY, "ASSISTERS_BASE_URL": url})
    assert "base URL" in error.message


# -- timeouts and stream_usage -----------------------------------------------------


@pytest.mark.parametrize("env_name", ["ASSISTERS_TIMEOUT", "ASSISTERS_CONNECT_TIMEOUT"])
@pytest.mark.parametrize("value", ["0", "-1", "-0.5", "abc", "1s", "0.0"])
def test_bad_timeout_from_env(environ: dict[str, str], env_name: str, value: str) -> None:
    error = load_error({**environ, "ASSISTERS_API_KEY": KEY, env_name: value})
    assert ("timeout" in error.message) and (repr(value) in error.message)


@pytest.mark.parametrize("line", ["timeout = 0", "timeout = -3", 'timeout = "fast"', "connect_timeout = 0",
                                  "connect_timeout = []"])
def test_bad_timeout_from_config(environ: dict[str, str], xdg: Path, line: str) -> None:
    path = write_config(xdg, line + "\n")
    error = load_error({**environ, "ASSISTERS_API_KEY": KEY})
    assert str(path) in error.message


@pytest.mark.parametrize(("flags", "name"), [(Overrides(timeout=0), "timeout"),
                                             (Overrides(connect_timeout=-1.0), "connect_timeout")])
def test_bad_timeout_from_flags(environ: dict[str, str], flags: Overrides, name: str) -> None:
    assert name in load_error({**environ, "ASSISTERS_API_KEY": KEY}, flags).message


def test_timeouts_from_each_level(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, "timeout = 30\nconnect_timeout = 2.5\n")
    env = {**environ, "ASSISTERS_API_KEY": KEY}
    settings = load(env)
    assert (settings.idle_timeout, settings.connect_timeout) == (30.0, 2.5)
    settings = load({**env, "ASSISTERS_TIMEOUT": "7.5", "ASSISTERS_CONNECT_TIMEOUT": "1"})
    assert (settings.idle_timeout, settings.connect_timeout) == (7.5, 1.0)
    settings = load({**env, "ASSISTERS_TIMEOUT": "7.5"}, Overrides(timeout=0.25, connect_timeout=0.5))
    assert (settings.idle_timeout, settings.connect_timeout) == (0.25, 0.5)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_timeout_is_a_config_error(environ: dict[str, str], value: str) -> None:
    load_error({**environ, "ASSISTERS_API_KEY": KEY, "ASSISTERS_TIMEOUT": value})


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("0", False), ("auto", None), ("true", True), ("FALSE", False), ("on", True), ("no", False),
     (" Auto ", None)],
)
def test_stream_usage_from_env(environ: dict[str, str], value: str, expected: bool | None) -> None:
    settings = load({**environ, "ASSISTERS_API_KEY": KEY, "ASSISTERS_STREAM_USAGE": value})
    assert settings.stream_usage is expected


def test_stream_usage_bad_value(environ: dict[str, str]) -> None:
    error = load_error({**environ, "ASSISTERS_API_KEY": KEY, "ASSISTERS_STREAM_USAGE": "maybe"})
    assert "stream_usage" in error.message and "'maybe'" in error.message


def test_stream_usage_precedence(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, "stream_usage = true\n")
    env = {**environ, "ASSISTERS_API_KEY": KEY}
    assert load(env).stream_usage is True
    assert load({**env, "ASSISTERS_STREAM_USAGE": "0"}).stream_usage is False
    assert load({**env, "ASSISTERS_STREAM_USAGE": "0"}, Overrides(stream_usage=True)).stream_usage is True
    assert load({**env, "ASSISTERS_STREAM_USAGE": "1"}, Overrides(stream_usage=False)).stream_usage is False


def test_reliability_settings_from_each_level(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, "idle_timeout = 30\nfirst_byte_timeout = 600\ntotal_timeout = 900\nmax_retries = 5\n"
                      "max_retry_wait = 10\nmax_total_wait = 20\nresume = true\nmax_resumes = 1\n"
                      "[profiles.llama]\nresume_body = {}\n")
    env = {**environ, "ASSISTERS_API_KEY": KEY}
    settings = load(env)
    timeouts = (settings.idle_timeout, settings.first_byte_timeout, settings.total_timeout)
    assert timeouts == (30.0, 600.0, 900.0)
    assert (settings.max_retries, settings.max_retry_wait, settings.max_total_wait) == (5, 10.0, 20.0)
    assert (settings.resume, settings.max_resumes) == (True, 1)
    assert settings.resume_body == {"continue_final_message": True, "add_generation_prompt": False}
    assert load({**env, "ASSISTERS_PROFILE": "llama"}).resume_body == {}
    settings = load({**env, "ASSISTERS_IDLE_TIMEOUT": "7", "ASSISTERS_FIRST_BYTE_TIMEOUT": "8",
                     "ASSISTERS_TOTAL_TIMEOUT": "off", "ASSISTERS_MAX_RETRIES": "0", "ASSISTERS_RESUME": "0",
                     "ASSISTERS_MAX_RESUMES": "9"})
    assert (settings.idle_timeout, settings.first_byte_timeout, settings.total_timeout) == (7.0, 8.0, None)
    assert (settings.max_retries, settings.resume, settings.max_resumes) == (0, False, 9)
    settings = load(env, Overrides(idle_timeout=1.5, first_byte_timeout=2.5, total_timeout=3.5, max_retries=1,
                                   resume=False, max_resumes=2))
    assert (settings.idle_timeout, settings.first_byte_timeout, settings.total_timeout) == (1.5, 2.5, 3.5)
    assert (settings.max_retries, settings.resume, settings.max_resumes) == (1, False, 2)


@pytest.mark.parametrize("line", ["max_retries = -1", "max_retries = 1.5", 'max_retries = "many"',
                                  "max_retries = 101", "max_resumes = true", "resume = 3", "resume_body = 1",
                                  "total_timeout = -1",
                                  "first_byte_timeout = 0", "max_retry_wait = nan"])
def test_bad_reliability_setting_is_a_config_error(environ: dict[str, str], xdg: Path, line: str) -> None:
    path = write_config(xdg, line + "\n")
    error = load_error({**environ, "ASSISTERS_API_KEY": KEY})
    assert str(path) in error.message and line.split(" =")[0] in error.message
