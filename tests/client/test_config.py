import json

import pytest

from arenahub.client.config import load_client_config
from arenahub.jsonc import ConfigError

GOOD = """{
  // from the client package
  "platform_integration": {
    "enabled": true,
    "platform_url": "https://gw.example.com/api/",
    "client_id": "cl_123",
    "api_key": "ck-secret",
    "heartbeat_interval_seconds": 30,
    "capabilities": ["chat", "models", "images"],
    "log_level": "debug",
    "enable_request_logging": true,
  },
  "platform_features": {"max_concurrent_requests": 10, "preferred_routing_strategy": "least_load"},
  "session_id": "kept for the bridge",
  "api_key": "bridge-key",
}
"""


def write(tmp_path, text):
    path = tmp_path / "config.jsonc"
    path.write_text(text)
    return path


def test_seed_config_loads(tmp_path):
    cfg = load_client_config(write(tmp_path, GOOD))
    assert cfg.platform_url == "https://gw.example.com/api"
    assert cfg.tunnel_url == "wss://gw.example.com/api/ws"
    assert cfg.capabilities == ("chat", "models", "images")
    assert cfg.log_level == "DEBUG" and cfg.enable_request_logging
    assert cfg.max_concurrent_requests == 10
    assert cfg.lmarena_bridge_url == "http://127.0.0.1:5102"
    assert cfg.bridge_api_key == "bridge-key"


def test_platform_url_may_list_the_instances_of_a_cluster(tmp_path):
    listed = GOOD.replace('"platform_url": "https://gw.example.com/api/"',
                          '"platform_url": ["http://10.0.0.1:8080/api/", "http://10.0.0.2:8080/api", '
                          '"http://10.0.0.1:8080/api"]')
    cfg = load_client_config(write(tmp_path, listed))
    assert cfg.urls == ("http://10.0.0.1:8080/api", "http://10.0.0.2:8080/api")  # once each, in order
    assert cfg.platform_url == "http://10.0.0.1:8080/api" and cfg.public()["platform_urls"] == list(cfg.urls)
    assert load_client_config(write(tmp_path, GOOD)).urls == ("https://gw.example.com/api",)


def test_public_view_has_no_secrets(tmp_path):
    cfg = load_client_config(write(tmp_path, GOOD))
    text = json.dumps(cfg.public())
    assert "ck-secret" not in text and "bridge-key" not in text
    assert "ck-secret" not in repr(cfg)


@pytest.mark.parametrize("edit, key, reason", [
    (('"heartbeat_interval_seconds": 30', '"heartbeat_interval_seconds": "often"'),
     "platform_integration.heartbeat_interval_seconds", "must be"),
    (('"heartbeat_interval_seconds": 30', '"heartbeat_interval_seconds": 0'),
     "platform_integration.heartbeat_interval_seconds", "between"),
    (('"platform_url": "https://gw.example.com/api/"', '"platform_url": "gw.example.com"'),
     "platform_integration.platform_url", "URL"),
    (('"platform_url": "https://gw.example.com/api/"', '"platform_url": []'),
     "platform_integration.platform_url", "must list 1 to 16 URLs"),
    (('"platform_url": "https://gw.example.com/api/"', '"platform_url": ["https://a.example/api", 8]'),
     "platform_integration.platform_url", "must list URLs as strings, got int 8"),
    (('"platform_url": "https://gw.example.com/api/"', '"platform_url": ["https://a.example/api", "ftp://b"]'),
     "platform_integration.platform_url", "must be a http/https URL, got 'ftp://b'"),
    (('"platform_url": "https://gw.example.com/api/"', '"platform_url": 7'),
     "platform_integration.platform_url", "must be str or list"),
    (('"client_id": "cl_123"', '"client_id": "your-client-id"'), "platform_integration.client_id", "not filled in"),
    (('"log_level": "debug"', '"log_level": "loud"'), "platform_integration.log_level", "one of"),
    (('"enabled": true', '"enabled": "yes"'), "platform_integration.enabled", "bool"),
    (('"max_concurrent_requests": 10', '"max_concurrent_requests": 0'),
     "platform_features.max_concurrent_requests", "between"),
    (('"preferred_routing_strategy": "least_load"', '"preferred_routing_strategy": "cheapest"'),
     "platform_features.preferred_routing_strategy",
     "must be one of least_load, round_robin, random, fastest, priority, got 'cheapest'"),
    (('"preferred_routing_strategy": "least_load"', '"preferred_routing_strategy": 3'),
     "platform_features.preferred_routing_strategy", "must be str"),
    (('"preferred_routing_strategy"', '"enable_request_validation": "yes", "preferred_routing_strategy"'),
     "platform_features.enable_request_validation", "must be bool"),
    (('"preferred_routing_strategy"', '"allowed_origins": "https://a.example", "preferred_routing_strategy"'),
     "platform_features.allowed_origins", "must be a list"),
    (('"preferred_routing_strategy"', '"allowed_origins": ["https://a.example", 7], "preferred_routing_strategy"'),
     "platform_features.allowed_origins[1]", "must be a string"),
    (('"preferred_routing_strategy"', '"allowed_origins": ["https://a.example/app"], "preferred_routing_strategy"'),
     "platform_features.allowed_origins[0]", "no path"),
    (('"preferred_routing_strategy"', '"allowed_origins": ["a.example"], "preferred_routing_strategy"'),
     "platform_features.allowed_origins[0]", "scheme://host[:port]"),
    (('"preferred_routing_strategy"', '"allowed_origins": ["https://*.example.com"], "preferred_routing_strategy"'),
     "platform_features.allowed_origins[0]", "wildcard"),
    (('"preferred_routing_strategy"', '"allowed_origins": ["https://a.example:99999"], "preferred_routing_strategy"'),
     "platform_features.allowed_origins[0]", "port"),
])
def test_bad_values_name_file_key_and_reason(tmp_path, edit, key, reason):
    path = write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(ConfigError) as info:
        load_client_config(path)
    err = info.value
    assert err.key == key and reason in err.reason
    assert str(path) in str(err)
    assert err.line is not None


def test_missing_section(tmp_path):
    with pytest.raises(ConfigError, match="platform_integration: is required"):
        load_client_config(write(tmp_path, '{"session_id": "x"}'))


def test_syntax_error_points_at_the_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_client_config(write(tmp_path, '{\n "platform_integration": {\n  "enabled": true\n  "x": 1}}'))
    assert info.value.line == 4


def test_disabled_integration_needs_no_credentials(tmp_path):
    cfg = load_client_config(write(tmp_path, '{"platform_integration": {"enabled": false}}'))
    assert not cfg.enabled


SECURITY = """{
  "platform_integration": {"enabled": false},
  "platform_features": {
    "enable_request_validation": false,
    "allowed_origins": ["https://Your-Platform-Domain.com", "http://localhost:3000/", "https://b.example:443",
                        "chrome-extension://abcdef", "https://your-platform-domain.com"],
    "preferred_routing_strategy": " Round_Robin ",
  },
}"""


def test_security_and_routing_settings(tmp_path):
    cfg = load_client_config(write(tmp_path, SECURITY))
    assert cfg.enable_request_validation is False
    # As browsers send them in Origin (lower case, no default port, no trailing slash), once each.
    assert cfg.allowed_origins == ("https://your-platform-domain.com", "http://localhost:3000", "https://b.example",
                                   "chrome-extension://abcdef")
    assert cfg.preferred_routing_strategy == "round_robin"
    assert cfg.public()["allowed_origins"] == list(cfg.allowed_origins)


def test_security_and_routing_defaults(tmp_path):
    cfg = load_client_config(write(tmp_path, '{"platform_integration": {"enabled": false}}'))
    assert cfg.enable_request_validation is True
    assert cfg.allowed_origins == ()
    assert cfg.preferred_routing_strategy is None
    cfg = load_client_config(write(tmp_path, GOOD))
    assert cfg.preferred_routing_strategy == "least_load"


def test_any_origin(tmp_path):
    text = '{"platform_integration": {"enabled": false}, "platform_features": {"allowed_origins": ["*"]}}'
    assert load_client_config(write(tmp_path, text)).allowed_origins == ("*",)


def test_a_key_with_a_typo_is_named_with_the_nearest_known_key(tmp_path):
    text = GOOD.replace('"log_level": "debug",', '"log_level": "debug",\n    "heartbeat_intervall": 5,').replace(
        '"max_concurrent_requests": 10', '"max_concurent_requests": 10, "colour": "blue"')
    cfg = load_client_config(write(tmp_path, text))
    assert cfg.heartbeat_interval_seconds == 30  # the typo changes nothing ...
    assert len(cfg.warnings) == 3  # ... and is said
    typo, feature, other = cfg.warnings
    assert "line 11: platform_integration.heartbeat_intervall is not a key arenahub knows" in typo
    assert 'did you mean "heartbeat_interval_seconds"?' in typo
    assert 'platform_features.max_concurent_requests' in feature and '"max_concurrent_requests"?' in feature
    assert "platform_features.colour" in other and "did you mean" not in other


def test_the_seeds_keys_and_lmarenabridges_own_keys_give_no_warning(tmp_path):
    assert load_client_config(write(tmp_path, GOOD)).warnings == ()
