"""The configuration schema: defaults, validation with file/key/reason, and its documentation."""

import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config, ConfigError, documented_defaults, load, parse

REPO = Path(__file__).resolve().parent.parent


def test_docs_show_exactly_what_gateway_config_prints() -> None:
    text = (REPO / "docs" / "configuration.md").read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    assert block == documented_defaults(), "docs/configuration.md is stale: regenerate it from `gateway config`"


def test_documented_defaults_parse_back_to_the_defaults() -> None:
    parsed = parse(tomllib.loads(documented_defaults()), "defaults.toml")
    assert parsed.gateway == Config().gateway
    assert parsed.mqtt == Config().mqtt


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[mqtt]\nportt = 1\n", "unknown key 'portt' in [mqtt]"),
        ("[mqt]\nport = 1\n", "unknown table [mqt]"),
        ('[mqtt]\nport = "1883"\n', "[mqtt] port: expected int, got str"),
        ("[mqtt]\nport = true\n", "[mqtt] port: expected int, got bool"),
        ("[mqtt]\nallow_anonymous = 1\n", "[mqtt] allow_anonymous: expected bool, got int"),
        ("[mqtt]\nport = 70000\n", "[mqtt] port: 70000 is above the maximum of 65535"),
        ("[mqtt]\nmax_queued_messages = 0\n", "[mqtt] max_queued_messages: 0 is below the minimum of 1"),
        ('[gateway]\nlog_level = "loud"\n', "[gateway] log_level: 'loud' is not one of debug, info"),
        ("mqtt = 3\n", "mqtt must be a table"),
        ("[mqtt]\ntls = true\n", "tls = true needs certfile and keyfile"),
        ("[mqtt]\nport = \n", "not valid TOML"),
        ('[mqttsn]\npredefined_topics = "a"\n', "[mqttsn] predefined_topics: expected dict, got str"),
        ('[mqttsn]\npredefined_topics = { x = "a/b" }\n', "predefined_topics 'x': a topic id is a number from 1"),
        ('[mqttsn]\npredefined_topics = { 65535 = "a/b" }\n', "a topic id is a number from 1 to 65534"),
        ('[mqttsn]\npredefined_topics = { 1 = "a/#" }\n', "give a topic name (no wildcards)"),
        ("[mqttsn]\npredefined_topics = { 1 = 2 }\n", "give a topic name (no wildcards)"),
        ('[mqttsn]\nclient_topics = { boiler = "a/b" }\n', "client_topics 'boiler': give the client's topic ids as"),
        ('[mqttsn]\nclient_topics = { boiler = { 0 = "a/b" } }\n', "client_topics 'boiler' '0': a topic id is a"),
        ('[mqttsn]\nclient_topics = { boiler = { 1 = "a/+" } }\n', "give a topic name (no wildcards)"),
        ('[uplink]\nurl = "http://hub"\n', "[uplink] url 'http://hub': the scheme must be mqtt or mqtts"),
        ('[uplink]\nurl = "mqtt://hub:0x"\n', "[uplink] url 'mqtt://hub:0x' is not a URL"),
        ('[uplink]\nversion = "3"\n', "[uplink] version: '3' is not one of 3.1.1, 5"),
        ('[uplink]\ncertfile = "c.pem"\n', "[uplink] certfile and keyfile go together"),
        ('[uplink]\ntopic_prefix = "site/+/"\n', "[uplink] topic_prefix 'site/+/': no wildcards"),
        ('[uplink]\nbridge = ["a/#/b"]\n', "[uplink] bridge 'a/#/b':"),
        ('[uplink]\ncompress = "zstd"\n', "[uplink] compress: 'zstd' is not one of none, gzip"),
        ("[uplink]\nbatch_size = 0\n", "[uplink] batch_size: 0 is below the minimum of 1"),
    ],
)
def test_bad_values_are_refused_naming_file_key_and_reason(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_integers_are_accepted_for_float_options(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[mqtt]\nsys_interval = 2\n")
    assert load(path).mqtt.sys_interval == 2.0


def test_missing_file_is_an_error_and_none_means_defaults(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load(tmp_path / "absent.toml")
    assert load(None).mqtt.port == 1883


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "gateway.toml"
    path.parent.mkdir()
    path.write_text('[mqtt]\nacl_file = "acl"\n')
    config = load(path)
    assert config.resolve(config.mqtt.acl_file) == tmp_path / "etc" / "acl"


def test_data_dir_follows_systemd_state_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    assert Config().data_path() == tmp_path / "state"
    config = Config()
    config.gateway.data_dir = str(tmp_path / "explicit")
    assert config.data_path() == tmp_path / "explicit"


def test_config_check_says_a_file_is_valid_or_what_is_wrong(tmp_path: Path, capsys: Any) -> None:
    from gateway.cli import main

    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text("[http]\nport = 80\n")
    bad.write_text('[http]\nport = "eighty"\n')
    assert main(["config", "--check", str(good)]) == 0
    assert "is valid" in capsys.readouterr().out
    assert main(["config", "--check", str(bad)]) == 2
    assert "[http] port: expected int" in capsys.readouterr().err
    assert main(["config", "--check", str(tmp_path / "absent.toml")]) == 2
