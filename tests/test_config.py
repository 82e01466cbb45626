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


LOOPBACK_URLS = ["http://localhost:8080/v1", "http://127.0.0.1:9/v1", "http://[::1]/v1"]


@pytest.mark.parametrize("url", ["local", *LOOPBACK_URLS])
@pytest.mark.parametrize("how", ["flag", "env", "file"])
def test_api_key_command_is_not_run_for_an_offline_run(environ: dict[str, str], xdg: Path, tmp_path: Path,
                                                        url: str, how: str) -> None:
    """``local`` never needs a key; a loopback URL from a flag or a variable, or from
    another table than the command, neither: an offline run must not depend on a
    password manager."""
    marker = tmp_path / "command-ran"
    command = f'api_key_command = ["touch", "{marker}"]\n'
    env, flags = dict(environ), Overrides()
    if how == "flag":
        write_config(xdg, command)
        flags = Overrides(base_url=url)
    elif how == "env":
        write_config(xdg, command)
        env["ASSISTERS_BASE_URL"] = url
    else:  # the command at the top level, the URL in the chosen profile
        write_config(xdg, f'{command}profile = "p"\n[profiles.p]\nbase_url = "{url}"\n')
    assert load(env, flags).api_key is None
    assert not marker.exists()
    # a key given another way is still sent to a loopback server
    assert key_of(load({**env, "ASSISTERS_API_KEY": KEY}, flags)) == KEY


@pytest.mark.parametrize("url", LOOPBACK_URLS)
def test_api_key_command_runs_for_a_loopback_url_set_beside_it(environ: dict[str, str], xdg: Path,
                                                               url: str) -> None:
    """A profile that names a local server and a key command asks for that key."""
    write_config(xdg, f'[profiles.proxy]\nbase_url = "{url}"\napi_key_command = "echo sk-local-proxy"\n')
    assert key_of(load({**environ, "ASSISTERS_PROFILE": "proxy"})) == "sk-local-proxy"
    write_config(xdg, 'base_url = "local"\napi_key_command = "echo sk-local-proxy"\n')
    assert load(environ).api_key is None  # local: never


def test_api_key_command_is_not_run_when_no_key_is_needed(environ: dict[str, str], xdg: Path,
                                                          tmp_path: Path) -> None:
    """Shell completion asks with need_key=False: the command never runs."""
    marker = tmp_path / "command-ran"
    write_config(xdg, f'api_key_command = ["touch", "{marker}"]\n')
    assert load(environ, need_key=False).api_key is None
    assert not marker.exists()


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


@pytest.mark.parametrize(("flags", "name"), [(Overrides(timeout=0), "--timeout"),
                                             (Overrides(connect_timeout=-1.0), "--connect-timeout"),
                                             (Overrides(idle_timeout=float("inf")), "--idle-timeout")])
def test_bad_timeout_from_flags_names_the_flag(environ: dict[str, str], flags: Overrides, name: str) -> None:
    message = load_error({**environ, "ASSISTERS_API_KEY": KEY}, flags).message
    assert message.startswith(f"{name}: ")
    assert "config.toml" not in message


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


# -- every value is type-checked, and the message names where it came from --------------

BAD_CONFIG_VALUES = [
    ('profile = ["a"]', "profile"),
    ("model = {a = 1}", "model"),
    ("model = 5", "model"),
    ('model = ""', "model"),
    ('model = "a\\nb"', "model"),
    ("idle_timeout = true", "idle_timeout"),
    ('idle_timeout = "60"', "idle_timeout"),
    ("timeout = inf", "timeout"),
    ("connect_timeout = 1e400", "connect_timeout"),
    ("first_byte_timeout = nan", "first_byte_timeout"),
    ("total_timeout = true", "total_timeout"),
    ("max_retries = 1.5", "max_retries"),
    ("max_retries = true", "max_retries"),
    ('max_resumes = "2"', "max_resumes"),
    ("max_retry_wait = 604801", "max_retry_wait"),
    ("max_total_wait = -1", "max_total_wait"),
    ("resume = 3", "resume"),
    ('resume = "yes"', "resume"),
    ("resume_body = 3", "resume_body"),
    ("resume_body = {a = nan}", "resume_body"),
    ("resume_body = {when = 1979-05-27}", "resume_body"),
    ('stream_usage = "maybe"', "stream_usage"),
    ("stream_usage = 1", "stream_usage"),
    ("api_key = 5", "api_key"),
    ("api_key_command = 5", "api_key_command"),
    ("api_key_command = []", "api_key_command"),
    ("api_key_command = [1]", "api_key_command"),
    ('api_key_command = ""', "api_key_command"),
    ('auth_header = "api key"', "auth_header"),
    ("auth_header = 3", "auth_header"),
    ("base_url = 5", "base_url"),
    ('base_url = "http://[::1/v1"', "base_url"),
    ('batch_api = "bedrock"', "batch_api"),
    ('batch_api = "OpenAI"', "batch_api"),  # a file spells it exactly; a variable may not
    ('batch_endpoint = "v1/chat/completions"', "batch_endpoint"),
    ('batch_endpoint = "/v1/chat completions"', "batch_endpoint"),
    ('batch_endpoint = "/chat/completions?api-version=1"', "batch_endpoint"),
    ("batch_line_url = 1", "batch_line_url"),
    ("batch_max_requests = 0", "batch_max_requests"),
    ('batch_max_bytes = "200MB"', "batch_max_bytes"),
    ("batch_max_bytes = 2.5", "batch_max_bytes"),
]


@pytest.mark.parametrize(("line", "key", "in_profile"), [
    pytest.param(line, key, in_profile, id=f"{line} ({'profile' if in_profile else 'top'})")
    for line, key in BAD_CONFIG_VALUES for in_profile in (False, True)
    if not (in_profile and key == "profile")  # profile is a top-level key only
])
def test_a_config_value_of_the_wrong_type_names_the_file_and_the_key(
        environ: dict[str, str], xdg: Path, line: str, key: str, in_profile: bool) -> None:
    text = f'profile = "p"\n[profiles.p]\n{line}\n' if in_profile else line + "\n"
    path = write_config(xdg, text)
    message = load_error({**environ, "ASSISTERS_API_KEY": KEY}).message
    where = f"{key} in [profiles.p] of {path}" if in_profile else f"{key} in {path}"
    assert message.startswith(f"{where}: "), message
    assert "\n" not in message


def test_every_config_key_refuses_a_value_of_no_setting_type(environ: dict[str, str], xdg: Path) -> None:
    """The class, not the examples: an array of numbers and a TOML date are wrong for
    every key, so a key added without a check fails here."""
    from assisters.config import KNOWN_KEYS

    for key in sorted(KNOWN_KEYS):
        for value in ("[1, 2]", "2024-01-01"):
            path = write_config(xdg, f"{key} = {value}\n")
            message = load_error({**environ, "ASSISTERS_API_KEY": KEY}).message
            assert message.startswith(f"{key} in {path}: "), (key, value, message)


def test_every_config_value_is_checked_even_when_overridden(environ: dict[str, str], xdg: Path) -> None:
    path = write_config(xdg, "max_retries = 1.5\n")
    message = load_error({**environ, "ASSISTERS_API_KEY": KEY, "ASSISTERS_MAX_RETRIES": "1"}).message
    assert str(path) in message


def _env_names() -> list[str]:
    from assisters.config import RULES

    return [name for rule in RULES for name in rule.env] + ["ASSISTERS_PROFILE"]


@pytest.mark.parametrize("name", _env_names())
def test_a_bad_environment_variable_names_the_variable_not_a_config_file(
        environ: dict[str, str], name: str) -> None:
    """``ASSISTERS_MAX_RETRIES=abc`` once named a config file that did not exist."""
    env = {**environ, name: "bad\x01value"}
    if name not in ("ASSISTERS_API_KEY", "OPENAI_API_KEY"):
        env["ASSISTERS_API_KEY"] = KEY
    message = load_error(env).message
    assert message.startswith(f"{name}: "), message
    assert "config.toml" not in message


def _flag_attributes() -> list[str]:
    from assisters.config import RULES

    return [attribute for rule in RULES for attribute in rule.flags]


@pytest.mark.parametrize("attribute", _flag_attributes())
def test_a_bad_flag_value_names_the_flag(environ: dict[str, str], attribute: str) -> None:
    flags = Overrides(**{attribute: "bad\x01value"})
    message = load_error({**environ, "ASSISTERS_API_KEY": KEY}, flags).message
    assert message.startswith("--" + attribute.replace("_", "-") + ": "), message


def test_a_bad_profile_flag_names_the_flag(environ: dict[str, str]) -> None:
    assert load_error(environ, Overrides(profile="a\nb")).message.startswith("--profile: ")


def test_profile_key_must_be_a_name(environ: dict[str, str], xdg: Path) -> None:
    path = write_config(xdg, 'profile = ["a"]\n[profiles.a]\nmodel = "m"\n')
    message = load_error({**environ, "ASSISTERS_API_KEY": KEY}).message
    assert message == f"profile in {path}: the profile must be a string, not ['a']"


def test_wrong_values_are_shown_in_toml_spelling(environ: dict[str, str], xdg: Path) -> None:
    path = write_config(xdg, "idle_timeout = true\n")
    assert load_error({**environ, "ASSISTERS_API_KEY": KEY}).message == (
        f"idle_timeout in {path}: the idle timeout must be a number of seconds, more than 0 "
        "and at most 604800, not true")


def test_model_values_are_sent_as_given(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, 'model = "gpt-4o-mini"\n')
    assert load({**environ, "ASSISTERS_API_KEY": KEY}).model == "gpt-4o-mini"


def test_total_timeout_off_in_every_spelling(environ: dict[str, str], xdg: Path) -> None:
    env = {**environ, "ASSISTERS_API_KEY": KEY}
    for line in ('total_timeout = "off"', "total_timeout = 0", 'total_timeout = "none"'):
        write_config(xdg, line + "\n")
        assert load(env).total_timeout is None, line


# -- keys that cannot go in a header -------------------------------------------------------

BAD_KEYS = {
    "newline": f"{KEY}\nlogin: someone",
    "carriage return": f"{KEY}\rx",
    "control character": f"{KEY}\x01",
    "escape": f"\x1b[31m{KEY}",
    "space": f"{KEY} {KEY}",
    "non-ASCII": f"{KEY}é",
    "non-latin-1": f"{KEY}😀",
}


@pytest.mark.parametrize("where", ["flag", "ASSISTERS_API_KEY", "OPENAI_API_KEY", "file", "profile"])
@pytest.mark.parametrize("kind", list(BAD_KEYS))
def test_a_key_that_cannot_go_in_a_header_is_a_config_error_that_never_shows_it(
        environ: dict[str, str], xdg: Path, where: str, kind: str) -> None:
    bad = BAD_KEYS[kind]
    env = dict(environ)
    flags = Overrides()
    if where == "flag":
        flags = Overrides(api_key=bad)
    elif where in ("ASSISTERS_API_KEY", "OPENAI_API_KEY"):
        env[where] = bad
    else:
        table = "" if where == "file" else "[profiles.p]\n"
        env["ASSISTERS_PROFILE"] = "p" if where == "profile" else ""
        write_config(xdg, table + f"api_key = {json.dumps(bad, ensure_ascii=False)}\n")
    error = load_error(env, flags)
    assert "HTTP header" in error.message and "\n" not in error.message
    assert KEY not in error.message and KEY not in repr(error)
    expected = {"flag": "--api-key: ", "file": "api_key in ", "profile": "api_key in [profiles.p]"}
    assert error.message.startswith(expected.get(where, f"{where}: "))


def test_the_key_is_stripped_of_surrounding_whitespace_only(environ: dict[str, str]) -> None:
    assert key_of(load({**environ, "ASSISTERS_API_KEY": f"\t {KEY} \r\n"})) == KEY


def test_a_key_of_only_whitespace_is_not_a_key(environ: dict[str, str]) -> None:
    assert key_of(load({**environ, "ASSISTERS_API_KEY": "  ", "OPENAI_API_KEY": KEY})) == KEY


# -- api_key_command: first line, argv or shell --------------------------------------------


def test_api_key_command_uses_the_first_line_of_its_output(environ: dict[str, str], xdg: Path) -> None:
    """``pass show`` prints the password, then metadata lines: only line 1 is the key."""
    write_config(xdg, f"api_key_command = \"printf '{KEY}\\\\nlogin: someone\\\\nurl: x\\\\n'\"\n")
    assert key_of(load(environ)) == KEY


@pytest.mark.parametrize(("output", "what"), [
    (f"{KEY}\\\\rlogin", "line break"),
    (f"{KEY} and more", "space"),
    (f"\\\\033[0m{KEY}", "control character"),
    ("\\\\n" + KEY, "no key"),
])
def test_api_key_command_first_line_that_is_not_a_key_is_refused(
        environ: dict[str, str], xdg: Path, output: str, what: str) -> None:
    path = write_config(xdg, f"api_key_command = \"printf '{output}'\"\n")
    error = load_error(environ)
    assert what in error.message
    assert error.message.startswith(f"api_key_command in {path}")
    assert KEY not in error.message


def test_api_key_command_output_that_is_not_utf8_is_refused(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, "api_key_command = \"printf 'sk-\\\\377\\\\376-key'\"\n")
    assert "not UTF-8" in load_error(environ).message


def test_api_key_command_list_runs_without_a_shell(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, 'api_key_command = ["printf", "%s", "sk-$HOME;`x`|y"]\n')
    assert key_of(load(environ)) == "sk-$HOME;`x`|y"


def test_api_key_command_string_runs_through_the_shell(environ: dict[str, str], xdg: Path) -> None:
    write_config(xdg, "api_key_command = \"printf 'sk-%s' $((40 + 2))\"\n")
    assert key_of(load(environ)) == "sk-42"


def test_api_key_command_list_that_cannot_run(environ: dict[str, str], xdg: Path) -> None:
    path = write_config(xdg, 'api_key_command = ["/nonexistent/pass", "show", "x"]\n')
    message = load_error(environ).message
    assert message.startswith(f"api_key_command in {path} could not run")


# -- auth_header (Azure's api-key) ----------------------------------------------------------


def test_the_key_goes_in_authorization_as_a_bearer_token_by_default(environ: dict[str, str]) -> None:
    assert load({**environ, "ASSISTERS_API_KEY": KEY}).auth() == ("Authorization", f"Bearer {KEY}")


@pytest.mark.parametrize("how", ["file", "env"])
def test_auth_header_sends_the_bare_key_in_that_header(environ: dict[str, str], xdg: Path, how: str) -> None:
    env = {**environ, "ASSISTERS_API_KEY": KEY}
    if how == "file":
        write_config(xdg, 'auth_header = "api-key"\n')
    else:
        env["ASSISTERS_AUTH_HEADER"] = " api-key "
    settings = load(env)
    assert settings.auth_header == "api-key"
    assert settings.auth() == ("api-key", KEY)


def test_auth_header_authorization_in_any_case_is_bearer(environ: dict[str, str]) -> None:
    settings = load({**environ, "ASSISTERS_API_KEY": KEY, "ASSISTERS_AUTH_HEADER": "authorization"})
    assert settings.auth() == ("Authorization", f"Bearer {KEY}")


def test_no_auth_header_without_a_key(environ: dict[str, str]) -> None:
    assert load({**environ, "ASSISTERS_BASE_URL": "http://127.0.0.1:1/v1"}).auth() is None


# -- the base URL: its query string, and the URLs that cannot be one -------------------------


@pytest.mark.parametrize(("base", "path", "url"), [
    ("http://h/v1", "chat/completions", "http://h/v1/chat/completions"),
    ("http://h/v1", "/models", "http://h/v1/models"),
    ("http://h/v1?api-version=2024-10-21", "chat/completions",
     "http://h/v1/chat/completions?api-version=2024-10-21"),
    ("http://h/v1?api-version=2024-10-21", "/models", "http://h/v1/models?api-version=2024-10-21"),
    ("http://h/v1?a=1&b=2", "/models?limit=5", "http://h/v1/models?limit=5&a=1&b=2"),
    ("http://h/v1", "/models?limit=5", "http://h/v1/models?limit=5"),
])
def test_url_keeps_the_query_after_the_joined_path(base: str, path: str, url: str) -> None:
    assert with_key(base).url(path) == url


@pytest.mark.parametrize(("given", "kept"), [
    ("https://x.example/v1/?api-version=1", "https://x.example/v1?api-version=1"),
    ("https://x.example/v1#frag", "https://x.example/v1"),
    ("  https://x.example/v1\n", "https://x.example/v1"),
    ("https://x.example", "https://x.example"),
])
def test_base_url_is_normalised_once(environ: dict[str, str], given: str, kept: str) -> None:
    assert load({**environ, "ASSISTERS_API_KEY": KEY, "ASSISTERS_BASE_URL": given}).base_url == kept


BAD_BASE_URLS = {
    "http://[::1/v1": "closing ']'",
    "http://[zz]/v1": "bad IPv6 address",
    "http://::1/v1": "[brackets]",
    "http://host:abc/v1": "port that is not a number",
    "http://host:0/v1": "port out of range",
    "http://host:65536/v1": "port out of range",
    "http://" + "a" * 250 + ".example/v1": "longer than 253",
    "http://" + "a" * 64 + ".example/v1": "label longer than 63",
    "http://a..b/v1": "empty label",
    "http://a$b/v1": "'$'",
    "http://1.2.3.999/v1": "bad IPv4 address",
    "http://a b/v1": "space or a control character",
    "http://h/v1\x1b[31m": "space or a control character",
    "http://h/\udcffv1": "not UTF-8",
    "localhost:8000": "did you mean http://localhost:8000/v1?",
    "127.0.0.1:8080/v1": "did you mean http://127.0.0.1:8080/v1?",
    "api.example.com/v1": "did you mean https://api.example.com/v1?",
    "ftp://h/v1": "http:// or https://",
    "http://": "names no host",
    "https://user:sk-url-password@h/v1": "user name or password",
    "https://sk-url-token@h/v1": "user name or password",
}


@pytest.mark.parametrize("url", list(BAD_BASE_URLS))
def test_a_base_url_that_cannot_be_one_is_a_config_error(environ: dict[str, str], url: str) -> None:
    error = load_error({**environ, "ASSISTERS_API_KEY": KEY, "ASSISTERS_BASE_URL": url})
    assert error.message.startswith("ASSISTERS_BASE_URL: the base URL ")
    assert BAD_BASE_URLS[url] in error.message
    assert "sk-url" not in error.message
    assert "\n" not in error.message and "\x1b" not in error.message


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/v1", "https://api.example.com/v1", "http://[::1]:8000/v1", "http://my_host/v1",
    "https://bücher.example/v1", "http://h:/v1", "https://h.example./v1", "http://[fe80::1%25eth0]:8/v1",
    "https://r.openai.azure.com/openai/deployments/d?api-version=2024-10-21",
])
def test_every_base_url_that_is_accepted_can_be_sent(environ: dict[str, str], url: str) -> None:
    """What the check lets through, httpx can send (no InvalidURL half-way)."""
    import httpx

    settings = load({**environ, "ASSISTERS_API_KEY": KEY, "ASSISTERS_BASE_URL": url})
    for path in ("chat/completions", "/models"):
        sent = httpx.URL(settings.url(path))
        assert sent.host and sent.scheme in ("http", "https")
        assert not sent.userinfo


def test_the_readme_config_example_is_valid(environ: dict[str, str], tmp_path: Path) -> None:
    """Every profile of README's example passes the checks (without running pass)."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    example, = re.findall(r"^```toml\n(.*?)^```", readme, flags=re.M | re.S)
    path = tmp_path / "readme.toml"
    path.write_text(example, encoding="utf-8")
    env = {**environ, "ASSISTERS_CONFIG": str(path)}
    azure = load(env, Overrides(profile="azure"), need_key=False)
    assert azure.auth_header == "api-key"
    assert azure.url("chat/completions") == ("https://myresource.openai.azure.com/openai/deployments/gpt-4o"
                                             "/chat/completions?api-version=2024-10-21")
    azure_batch = load(env, Overrides(profile="azure-batch"), need_key=False)
    assert (azure_batch.batch_api, azure_batch.auth_header, azure_batch.model) == ("azure", "api-key",
                                                                                    "gpt-4o-batch")
    assert azure_batch.url("files") == "https://myresource.openai.azure.com/openai/files?api-version=2024-10-21"
    assert load(env, Overrides(profile="local"), need_key=False).resume_body == {}
    assert load(env, need_key=False).idle_timeout == 60


def test_the_batch_api_settings(environ: dict[str, str], xdg: Path) -> None:
    defaults = load({**environ, "ASSISTERS_API_KEY": KEY})
    assert (defaults.batch_api, defaults.batch_endpoint, defaults.batch_line_url) == ("openai", None, True)
    assert (defaults.batch_max_requests, defaults.batch_max_bytes) == (50_000, 200_000_000)
    write_config(xdg, 'batch_api = "azure"\nbatch_line_url = false\nbatch_max_requests = 100_000\n')
    azure = load({**environ, "ASSISTERS_API_KEY": KEY})
    assert (azure.batch_api, azure.batch_line_url, azure.batch_max_requests) == ("azure", False, 100_000)
    env = {**environ, "ASSISTERS_API_KEY": KEY, "ASSISTERS_BATCH_API": " OpenAI ",
           "ASSISTERS_BATCH_LINE_URL": "1", "ASSISTERS_BATCH_ENDPOINT": "/v1/chat/completions",
           "ASSISTERS_BATCH_MAX_BYTES": "1_000"}
    overridden = load(env)
    assert (overridden.batch_api, overridden.batch_endpoint, overridden.batch_line_url,
            overridden.batch_max_bytes) == ("openai", "/v1/chat/completions", True, 1000)
    message = load_error({**env, "ASSISTERS_BATCH_MAX_REQUESTS": "0"}).message
    assert message == ("ASSISTERS_BATCH_MAX_REQUESTS: the most requests in a batch must be a whole number "
                       "from 1 to 9007199254740992, not '0'")


def test_the_flags_bound_on_seconds_is_the_configs() -> None:
    """commands/options.py cannot import config (it loads click only): the two must agree."""
    from assisters.commands.options import MAX_SECONDS
    from assisters.config import MAX_TIMEOUT

    assert MAX_SECONDS == MAX_TIMEOUT
