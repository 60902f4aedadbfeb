"""Settings of ``pydds serve``: options over environment over file over defaults."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pydds.logs import JsonFormatter
from pydds.serve_config import ConfigError, ServeConfig, load_config


def test_defaults_are_the_embedded_node() -> None:
    config = load_config({}, {})
    assert config == ServeConfig()
    assert (config.host, config.port, config.data_dir) == ("127.0.0.1", 7400, "./pydds-data")


def test_precedence(tmp_path: Path) -> None:
    file = tmp_path / "pydds.toml"
    file.write_text(
        'name = "from-file"\nport = 7001\njoin = ["h:1", "h:2"]\nlog-format = "json"\n'
        'modules = ["a.b:C?x=1"]\n'
    )
    env = {"PYDDS_PORT": "7002", "PYDDS_HOST": "0.0.0.0", "PYDDS_CONFIG": str(file)}
    config = load_config({"port": 7003, "join": (), "name": None}, env)
    assert config.port == 7003  # the option wins
    assert config.host == "0.0.0.0"  # the environment beats the default
    assert config.name == "from-file"  # the file beats the default
    assert config.join == ("h:1", "h:2")  # an empty option is "not given"
    assert config.log_format == "json"
    assert config.modules == ("a.b:C?x=1",)
    assert config.loop == "auto"
    assert load_config({}, {"PYDDS_LOOP": "asyncio"}).loop == "asyncio"
    assert load_config({}, {"PYDDS_PORT": "7002"}, str(file)).port == 7002


def test_database_staleness_from_each_source(tmp_path: Path) -> None:
    file = tmp_path / "pydds.toml"
    file.write_text("[stale_after]\ncache = 300\nsessions = 1.5\n")
    assert load_config({}, {}, str(file)).stale_after == (("cache", 300.0), ("sessions", 1.5))
    env = {"PYDDS_STALE_AFTER": "cache=60, sessions=5"}
    assert load_config({}, env).stale_after == (("cache", 60.0), ("sessions", 5.0))
    assert load_config({"stale_after": ("cache=7",)}, env).stale_after == (("cache", 7.0),)
    assert load_config({"stale_after": ()}, env).stale_after == (("cache", 60.0), ("sessions", 5.0))
    file.write_text("stale-after = {cache = true}\n")
    with pytest.raises(ConfigError, match="positive number"):
        load_config({}, {}, str(file))


def test_expire_is_the_former_name_of_stale_after_in_each_source(tmp_path: Path) -> None:
    """It still works where it worked (file, environment, options), with a warning."""
    file = tmp_path / "pydds.toml"
    file.write_text("[expire]\ncache = 300\n")
    with pytest.warns(DeprecationWarning, match="expire is deprecated"):
        assert load_config({}, {}, str(file)).stale_after == (("cache", 300.0),)
    with pytest.warns(DeprecationWarning, match="expire is deprecated"):
        assert load_config({}, {"PYDDS_EXPIRE": "cache=60"}).stale_after == (("cache", 60.0),)
    with pytest.warns(DeprecationWarning, match="expire is deprecated"):
        assert load_config({"expire": ("cache=7",)}, {}).stale_after == (("cache", 7.0),)
    both = {"PYDDS_EXPIRE": "cache=60", "PYDDS_STALE_AFTER": "cache=5"}
    with pytest.warns(DeprecationWarning, match="expire is deprecated"):
        assert load_config({}, both).stale_after == (("cache", 5.0),)  # the name now wins


def test_lists_from_the_environment() -> None:
    config = load_config({}, {"PYDDS_JOIN": "a:1, b:2,,", "PYDDS_MODULES": "x.y:Z"})
    assert config.join == ("a:1", "b:2")
    assert config.modules == ("x.y:Z",)


@pytest.mark.parametrize(
    ("options", "env", "message"),
    [
        ({"port": 70000}, {}, "port"),
        ({}, {"PYDDS_PORT": "seven"}, "PYDDS_PORT"),
        ({"log_format": "xml"}, {}, "log_format"),
        ({}, {"PYDDS_LOG_LEVEL": "loud"}, "log_level"),
        ({}, {"PYDDS_LOOP": "trio"}, "loop"),
        ({"stale_after": ("cache",)}, {}, "DATABASE=SECONDS"),
        ({"stale_after": ("cache=-5",)}, {}, "positive number"),
        ({"stale_after": ("cache=soon",)}, {}, "stale_after"),
        ({}, {"PYDDS_STALE_AFTER": "bad name=5"}, "database name"),
        ({"colour": "red"}, {}, "unknown setting"),
    ],
)
def test_bad_settings(options: dict[str, object], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(options, env)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = [1]", "port"),
        ("join = 'a:1'\nunknown = 1", "unknown setting 'unknown'"),
        ("name = ", "not valid TOML"),
        ("join = [1, 2]", "list of strings"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config({}, {}, str(file))


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config({}, {}, str(tmp_path / "nope.toml"))


def test_json_log_lines() -> None:
    record = logging.LogRecord("pydds", logging.WARNING, __file__, 1, "a %s", ("b",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "warning"
    assert entry["logger"] == "pydds"
    assert entry["message"] == "a b"
    assert entry["time"].endswith("Z")


@pytest.mark.parametrize(
    ("options", "env"),
    [
        ({"port": "\N{ARABIC-INDIC DIGIT THREE}\N{ARABIC-INDIC DIGIT FOUR}"}, {}),
        ({}, {"PYDDS_PORT": "\N{SUPERSCRIPT TWO}"}),
        ({"stale_after": ("cache=\N{ARABIC-INDIC DIGIT THREE}",)}, {}),
        ({"stale_after": ("cache=1e400",)}, {}),
        ({}, {"PYDDS_HTTP_IDLE_TIMEOUT": "\N{ARABIC-INDIC DIGIT THREE}"}),
        ({"http_header_timeout": "0"}, {}),
        ({"http_header_timeout": "1_0"}, {}),
    ],
)
def test_numbers_are_ascii_digits(options: dict[str, object], env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"port|seconds"):
        load_config(options, env)


def test_an_int_too_large_for_a_float_is_a_config_error(tmp_path: Path) -> None:
    file = tmp_path / "pydds.toml"
    file.write_text("[stale_after]\ncache = 1" + "0" * 400 + "\n")  # TOML ints have no bound
    with pytest.raises(ConfigError, match="positive number of seconds"):
        load_config({}, {}, str(file))


def test_connection_timeouts_and_ipv6_addresses() -> None:
    config = load_config({}, {})
    assert (config.http_idle_timeout, config.http_header_timeout) == (15.0, 10.0)
    config = load_config(
        {"host": "[::1]", "advertise": "[::1]:7401", "http_idle_timeout": "2.5"},
        {"PYDDS_JOIN": "[::1]:7400,wss://[fe80::1]:7400", "PYDDS_HTTP_HEADER_TIMEOUT": "0.5"},
    )
    assert config.host == "::1"  # bracketed or not, as the bind takes it
    assert config.advertise == "[::1]:7401"
    assert config.join == ("[::1]:7400", "wss://[fe80::1]:7400")
    assert (config.http_idle_timeout, config.http_header_timeout) == (2.5, 0.5)
    for options in ({"join": ("::1:7400",)}, {"advertise": "::1:7400"}, {"host": "[nope]"}):
        with pytest.raises(ConfigError, match=r"\[::1\]|IPv6"):
            load_config(options, {})


def test_the_memory_limit_from_each_source(tmp_path: Path) -> None:
    file = tmp_path / "pydds.toml"
    file.write_text('max_memory = "1GiB"\neviction = "lfu"\n')
    assert load_config({}, {}, str(file)).max_memory == 1 << 30
    assert load_config({}, {}, str(file)).eviction == "lfu"
    file.write_text("max_memory = 1048576\n")
    assert load_config({}, {}, str(file)).max_memory == 1 << 20
    env = {"PYDDS_MAX_MEMORY": "100MB", "PYDDS_EVICTION": "lfu"}
    assert load_config({}, env).max_memory == 100_000_000
    config = load_config({"max_memory": "512MiB", "eviction": "lru"}, env)
    assert (config.max_memory, config.eviction) == (512 << 20, "lru")
    assert load_config({}, {}).max_memory is None
    for bad in ("lots", "-5MiB", "0"):
        with pytest.raises(ConfigError, match="max_memory"):
            load_config({"max_memory": bad}, {})
    with pytest.raises(ConfigError, match="eviction"):
        load_config({}, {"PYDDS_EVICTION": "random"})


def test_the_tombstone_horizon_from_each_source(tmp_path: Path) -> None:
    assert load_config({}, {}).tombstone_horizon == 6 * 3600.0
    file = tmp_path / "pydds.toml"
    file.write_text("tombstone_horizon = 3600\n")
    assert load_config({}, {}, str(file)).tombstone_horizon == 3600.0
    env = {"PYDDS_TOMBSTONE_HORIZON": "600"}
    assert load_config({}, env, str(file)).tombstone_horizon == 600.0
    assert load_config({"tombstone_horizon": "60"}, env, str(file)).tombstone_horizon == 60.0
    for bad in ("0", "-5", "soon"):
        with pytest.raises(ConfigError, match="tombstone_horizon"):
            load_config({"tombstone_horizon": bad}, {})
