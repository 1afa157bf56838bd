"""The README documents every setting, config key and command the code has."""

import dataclasses
import re
import shlex
from pathlib import Path

import pytest

from arenahub.cli import build_parser
from arenahub.client.config import ClientConfig
from arenahub.platform.settings import PlatformSettings

README = (Path(__file__).parent.parent / "README.md").read_text()


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(PlatformSettings)])
def test_every_platform_setting_is_documented(name):
    assert f"`ARENAHUB_{name.upper()}`" in README


CONFIG_KEYS = {
    "enabled": "platform_integration.enabled", "platform_url": "platform_integration.platform_url",
    "platform_urls": "platform_integration.platform_url",  # its list form
    "client_id": "platform_integration.client_id", "api_key": "platform_integration.client_id`, `.api_key",
    "heartbeat_interval_seconds": "platform_integration.heartbeat_interval_seconds",
    "capabilities": "platform_integration.capabilities", "log_level": "platform_integration.log_level",
    "enable_request_logging": "platform_integration.enable_request_logging",
    "enable_performance_monitoring": "platform_integration.enable_performance_monitoring",
    "reconnect_max_delay_seconds": "platform_integration.reconnect_max_delay_seconds",
    "lmarena_bridge_url": "lmarena_bridge_url", "bridge_api_key": "api_key` (top level",
    "max_concurrent_requests": "platform_features.max_concurrent_requests",
    "enable_request_validation": "platform_features.enable_request_validation",
    "allowed_origins": "platform_features.allowed_origins",
    "preferred_routing_strategy": "platform_features.preferred_routing_strategy",
}


def test_every_client_config_key_is_documented():
    fields = {f.name for f in dataclasses.fields(ClientConfig)} - {"path", "warnings"}  # warnings: not a key
    assert fields == set(CONFIG_KEYS)
    for doc in CONFIG_KEYS.values():
        assert f"`{doc}" in README, doc


def _documented_commands():
    rows = re.findall(r"^\| `(arenahub [^`]+)` \|", README, flags=re.M)
    assert len(rows) >= 6
    return rows


@pytest.mark.parametrize("usage", _documented_commands())
def test_documented_command_lines_parse(usage):
    # Turn "[--port 8080]" into "--port 8080" and placeholders into sample values.
    text = re.sub(r"[\[\]]", "", usage)
    argv = shlex.split(text)[1:]
    samples = {"NAME": "n", "E": "e@x", "URL": "sqlite:///x.db", "N": "3", "a,b": "a,b", "config.jsonc": "c.jsonc",
               "ISO": "2030-01-01T00:00:00Z", "KEY_ID": "key_1",
               "USD": "12.50", "USD_PER_1M": "2.50", "TEXT": "t", "MODEL": "m", "K": "key_1", "C": "cl_1",
               "PLATFORM_URL": "https://gateway.example.test"}
    argv = [samples.get(a, a) for a in argv]
    if argv[0] == "admin" and "--bridge-url" in argv:
        argv[argv.index("--bridge-url") + 1] = "http://127.0.0.1:5102"
    args = build_parser().parse_args(argv)
    assert callable(args.run)


def test_every_platform_flag_is_in_the_commands_table(capsys):
    # Not only in the settings table: the Commands table is where a reader looks for how to start it.
    with pytest.raises(SystemExit):
        build_parser().parse_args(["platform", "--help"])
    flags = set(re.findall(r"(--[a-z][a-z-]*)", capsys.readouterr().out)) - {"--help"}
    assert {"--port", "--redis-url", "--instance-id", "--advertise-url"} <= flags
    rows = " ".join(r for r in _documented_commands() if r.startswith("arenahub platform "))
    assert sorted(flags - set(re.findall(r"(--[a-z][a-z-]*)", rows))) == []


def test_every_bridge_config_key_is_documented():
    from arenahub.bridge.config import BridgeConfig
    keys = {f.name for f in dataclasses.fields(BridgeConfig)} - {"path", "ignored", "platform_integration_enabled"}
    for key in keys:
        assert f"`{key}`" in README, key
