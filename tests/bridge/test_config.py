"""config.jsonc, models.json and model_endpoint_map.json: the existing bridge's files, read strictly."""

import json
import logging
import random

import pytest

from arenahub.bridge.config import (
    IGNORED_KEYS,
    BridgeFiles,
    MappedEndpoint,
    ModelNotMapped,
    SessionNotCaptured,
    load_bridge_config,
    load_bridge_files,
    load_endpoint_map,
    load_models,
)
from arenahub.bridge.lmarena import Endpoint, Model
from arenahub.jsonc import ConfigError

S1, M1 = "cebc557a-3f35-4794-beaf-6e33d947e0cd", "562414bc-0ea8-412a-bd15-8ec1cc61f4af"
S2, M2 = "b2096d33-2651-4802-97c1-c9b788c01c7a", "151968ec-b43f-4d0b-a655-e508156af578"
GEMINI = "e2d9d353-6dbe-4414-bf87-bd289d523726"

CONFIG = f"""{{
  // 版本号：请不要手动修改
  "version": "2.7.6",

  /* 会话设置
     由 capture-ids 更新 */
  "session_id": "{S1}",
  "message_id": "{M1}",
  "id_updater_last_mode": "Battle", // 'direct_chat' 或 'battle'
  "id_updater_battle_target": "b",
  "enable_auto_update": true,
  "bypass_enabled": true,
  "tavern_mode_enabled": false,
  "file_bed_enabled": false,
  "file_bed_upload_url": "http:\\/\\/127.0.0.1:5180/upload", // 转义的 \\/\\/
  "file_bed_api_key": "bed-secret",
  "use_default_ids_if_mapping_not_found": false,
  "stream_response_timeout_seconds": 120.5,
  "enable_idle_restart": true,
  "idle_restart_timeout_seconds": -1,
  "log_server_requests": false,
  "tavern_mode_enable": true,
  "platform_integration": {{"enabled": true, "api_key": "platform-secret"}},
  "api_key": "bridge-secret",
}}
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(loader, tmp_path, name, text):
    with pytest.raises(ConfigError) as info:
        loader(write(tmp_path, name, text))
    return info.value


# --- config.jsonc ---

def test_full_config(tmp_path):
    config = load_bridge_config(write(tmp_path, "config.jsonc", CONFIG))
    assert (config.session_id, config.message_id) == (S1, M1)
    assert (config.id_updater_last_mode, config.id_updater_battle_target) == ("battle", "b")
    assert config.bypass_enabled and not config.tavern_mode_enabled
    assert config.use_default_ids_if_mapping_not_found is False
    assert config.stream_response_timeout_seconds == 120.5
    assert config.api_key == "bridge-secret"  # the top-level one, not platform_integration's
    assert config.platform_integration_enabled
    assert (config.version, config.enable_auto_update, config.file_bed_enabled) == ("2.7.6", True, False)
    assert config.file_bed_upload_url == "http://127.0.0.1:5180/upload"
    assert (config.enable_idle_restart, config.idle_restart_timeout_seconds) == (True, -1)
    assert config.ids_captured
    assert config.captured_endpoint() == Endpoint(S1, M1, "battle", "b")
    assert config.models_path == tmp_path / "models.json"
    assert config.endpoint_map_path == tmp_path / "model_endpoint_map.json"


def test_keys_not_acted_on_are_reported_not_refused(tmp_path):
    config = load_bridge_config(write(tmp_path, "config.jsonc", CONFIG))
    ignored = dict(config.ignored)
    assert set(ignored) == {"version", "enable_auto_update", "file_bed_enabled", "file_bed_upload_url",
                            "file_bed_api_key", "enable_idle_restart", "idle_restart_timeout_seconds",
                            "log_server_requests", "tavern_mode_enable"}
    assert "typo" in ignored["tavern_mode_enable"]
    assert ignored["file_bed_enabled"] == IGNORED_KEYS["file_bed_enabled"]


def test_defaults_are_the_existing_bridges(tmp_path):
    config = load_bridge_config(write(tmp_path, "config.jsonc", "{}"))
    assert (config.id_updater_last_mode, config.id_updater_battle_target) == ("direct_chat", "a")
    assert (config.bypass_enabled, config.tavern_mode_enabled) == (False, False)
    assert config.use_default_ids_if_mapping_not_found is True
    assert config.stream_response_timeout_seconds == 360
    assert (config.api_key, config.platform_integration_enabled, config.ignored) == ("", False, ())
    assert not config.ids_captured


def test_secrets_stay_out_of_repr_and_public(tmp_path):
    config = load_bridge_config(write(tmp_path, "config.jsonc", CONFIG))
    shown = repr(config) + json.dumps(config.public())
    assert "bridge-secret" not in shown and "bed-secret" not in shown
    assert config.public()["api_key_set"] is True
    assert config.public()["battle_target"] == "B"


@pytest.mark.parametrize("key, value, words", [
    ("bypass_enabled", '"true"', 'must be true or false, got "true"'),
    ("tavern_mode_enabled", "1", "must be true or false"),
    ("use_default_ids_if_mapping_not_found", '"yes"', "must be true or false"),
    ("stream_response_timeout_seconds", '"360"', "must be a number"),
    ("stream_response_timeout_seconds", "true", "must be a number"),
    ("stream_response_timeout_seconds", "0", "more than 0"),
    ("stream_response_timeout_seconds", "-1", "more than 0"),
    ("stream_response_timeout_seconds", "100000", "at most 86400"),
    ("id_updater_last_mode", '"direct"', "must be 'direct_chat' or 'battle'"),
    ("id_updater_last_mode", "3", "must be a string"),
    ("id_updater_battle_target", '"C"', "must be 'A' or 'B', got 'C'"),
    ("session_id", "123", "must be a string"),
    ("message_id", "[]", "must be a string"),
    ("api_key", "false", "must be a string"),
    ("platform_integration", '"yes"', "must be an object"),
])
def test_bad_values_name_file_line_and_key(tmp_path, key, value, words):
    # "api_key" also appears nested before the bad value: the line must be the top-level one.
    text = ('{\n  // 说明\n  "platform_integration": {"api_key": "k", "enabled": false},\n'
            f'  "{key}": {value}, // 这里\n}}\n')
    if key == "platform_integration":
        text = f'{{\n  // 说明\n  "x": 1,\n  "{key}": {value}, // 这里\n}}\n'
    error = error_of(load_bridge_config, tmp_path, "config.jsonc", text)
    assert (error.key, error.line) == (key, 4)
    assert words in error.reason
    assert str(error).startswith(f"{tmp_path / 'config.jsonc'}:4: {key}: ")


@pytest.mark.parametrize("key, value", [("enable_idle_restart", '"yes"'), ("idle_restart_timeout_seconds", '"x"'),
                                        ("file_bed_enabled", "1"), ("version", "2.7"), ("worker_ports", "{}"),
                                        ("something_new", "null")])
def test_keys_not_acted_on_never_fail(tmp_path, key, value):
    config = load_bridge_config(write(tmp_path, "config.jsonc", f'{{"{key}": {value}}}'))
    assert [k for k, _ in config.ignored] == [key]


@pytest.mark.parametrize("text, line, words", [
    ('{\n  "session_id": "x"\n  "message_id": "y"\n}', 3, "Expecting ',' delimiter"),
    ('{\n  "a": 1,\n', 3, "Expecting"),
    ('[1, 2]', 1, "must hold a JSON object"),
    (f'{{\n  "session_id": "{S1}",\n  // 又一次\n  "session_id": "{S2}"\n}}', 4, "appears twice (lines 2 and 4)"),
])
def test_broken_config(tmp_path, text, line, words):
    error = error_of(load_bridge_config, tmp_path, "config.jsonc", text)
    assert error.line == line and words in error.reason


def test_duplicate_keys_not_acted_on_are_fine(tmp_path):
    assert load_bridge_config(write(tmp_path, "config.jsonc", '{"version": "1", "version": "2"}')).version == "2"


def test_missing_config(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_bridge_config(tmp_path / "config.jsonc")


@pytest.mark.parametrize("section, enabled", [(None, False), ('{"enabled": false}', False), ('{"enabled": true}', True),
                                              ("{}", True), ('{"enabled": "yes"}', False)])
def test_platform_integration_switch(tmp_path, section, enabled):
    text = "{}" if section is None else f'{{"platform_integration": {section}}}'
    assert load_bridge_config(write(tmp_path, "config.jsonc", text)).platform_integration_enabled is enabled


@pytest.mark.parametrize("session_id, message_id", [
    ("YOUR_SESSION_ID", "YOUR_MESSAGE_ID"), ("", ""), (S1, "YOUR_MESSAGE_ID"), ("session_for_battle_A", M1),
    (None, None),
])
def test_placeholder_ids_are_not_captured(tmp_path, session_id, message_id):
    config = load_bridge_config(write(tmp_path, "config.jsonc", json.dumps(
        {"session_id": session_id, "message_id": message_id})))
    assert not config.ids_captured
    with pytest.raises(SessionNotCaptured) as info:
        config.captured_endpoint()
    assert "arenahub bridge capture-ids" in info.value.message
    assert info.value.status == 503


# --- models.json ---

MODELS = f"""{{
  // 文本模型
  "gemini-2.5-pro": "{GEMINI}",
  "imagen": "{GEMINI}:image",
  "nano-banana": "null:image", // 没有模型 ID
}}
"""


def test_models(tmp_path):
    models = load_models(write(tmp_path, "models.json", MODELS))
    assert list(models) == ["gemini-2.5-pro", "imagen", "nano-banana"]
    assert models["gemini-2.5-pro"] == Model("gemini-2.5-pro", GEMINI, "text")
    assert models["imagen"] == Model("imagen", GEMINI, "image")
    assert models["nano-banana"] == Model("nano-banana", None, "image")


@pytest.mark.parametrize("text, key, line, words", [
    ('{\n  "a": "x"\n  "b": "y"\n}', None, 3, "Expecting ',' delimiter"),
    ("[]", None, 1, "must hold a JSON object"),
    ("{}", None, 1, "holds no models"),
    ("{\n // 空\n}", None, 1, "update-models"),
    (f'{{\n  "ok": "{GEMINI}",\n  "bad": "YOUR_MODEL_ID",\n}}', "bad", 3, "not an arena.ai model id"),
    (f'{{\n  "ok": "{GEMINI}",\n\n  "vid": "{GEMINI}:video"\n}}', "vid", 4, "has type 'video'"),
    ('{\n  "n": 5\n}', "n", 2, "must be a string"),
    (f'{{\n  "": "{GEMINI}"\n}}', "", 2, "name is empty"),
    (f'{{\n  "m": "{GEMINI}",\n  "x": "{GEMINI}",\n  "m": "null:image"\n}}', "m", 4,
     "appears twice (lines 2 and 4)"),
])
def test_broken_models_file(tmp_path, text, key, line, words):
    error = error_of(load_models, tmp_path, "models.json", text)
    assert (error.key, error.line) == (key, line)
    assert words in error.reason


def test_missing_models_file_says_how_to_get_one(tmp_path):
    with pytest.raises(ConfigError, match="update-models"):
        load_models(tmp_path / "models.json")


# --- model_endpoint_map.json ---

MAP = f"""{{
  // 一个池：随机选一个
  "o3": [
    {{"session_id": "{S1}", "message_id": "{M1}", "mode": "direct_chat"}},
    {{
      "session_id": "{S2}",
      "message_id": "{M2}",
      "mode": "BATTLE",
      "battle_target": "A",
    }},
  ],
  "gemini": {{"session_id": "{S2}", "message_id": "{M2}"}},
}}
"""


def test_endpoint_map(tmp_path):
    mapping = load_endpoint_map(write(tmp_path, "model_endpoint_map.json", MAP))
    assert mapping == {
        "o3": (MappedEndpoint(S1, M1, "direct_chat", None, 4), MappedEndpoint(S2, M2, "battle", "a", 5)),
        "gemini": (MappedEndpoint(S2, M2, None, None, 12),),
    }


@pytest.mark.parametrize("text", ["", "  \n", None])
def test_absent_or_empty_map_is_empty(tmp_path, text):
    path = tmp_path / "model_endpoint_map.json"
    if text is not None:
        path.write_text(text)
    assert load_endpoint_map(path) == {}


ENTRY = f'"session_id": "{S1}", "message_id": "{M1}"'


@pytest.mark.parametrize("text, key, line, words", [
    ('{\n  "m": "abc"\n}', "m", 2, "must be an object"),
    ('{\n  "m": []\n}', "m", 2, "an empty list"),
    (f'{{\n  "m": [\n    {{{ENTRY}}},\n    "x"\n  ]\n}}', "m[1]", 4, "must be an object"),
    (f'{{\n  "m": [\n    {{{ENTRY}}},\n    {{"message_id": "{M1}"}}\n  ]\n}}', "m[1].session_id", 4, "is missing"),
    (f'{{\n  "m": {{\n    "session_id": "{S1}",\n    "message_id": 7\n  }}\n}}', "m.message_id", 4, "is missing"),
    (f'{{\n  "m": [\n    {{{ENTRY}, "mode": "battle"}},\n    {{{ENTRY},\n      "mode": "chat"}}\n  ]\n}}',
     "m[1].mode", 5, "must be 'direct_chat' or 'battle'"),
    (f'{{\n  "m": {{{ENTRY},\n  "battle_target": "C"}}\n}}', "m.battle_target", 3, "must be 'A' or 'B'"),
    (f'{{\n  "m": {{{ENTRY}}},\n  "m": {{{ENTRY}}}\n}}', "m", 3, "appears twice"),
    ('{\n  "m": {"session_id": "s",}\n  "n": 1\n}', None, 3, "Expecting ',' delimiter"),
    ("[]", None, 1, "must hold a JSON object"),
])
def test_broken_endpoint_map(tmp_path, text, key, line, words):
    error = error_of(load_endpoint_map, tmp_path, "model_endpoint_map.json", text)
    assert (error.key, error.line) == (key, line)
    assert words in error.reason
    assert "model_endpoint_map.json" in str(error)


# --- the three files together, and which endpoint serves a model ---

def files_with(tmp_path, mapping=None, **values):
    base = {"session_id": S1, "message_id": M1, "id_updater_last_mode": "battle", "id_updater_battle_target": "B"}
    config = load_bridge_config(write(tmp_path, "config.jsonc", json.dumps(base | values)))
    return BridgeFiles(config, {}, mapping or {}, rng=random.Random(7))


def test_mapped_model_uses_its_entry(tmp_path):
    files = files_with(tmp_path, {"m": (MappedEndpoint(S2, M2, "direct_chat", None),)})
    assert files.endpoint_for("m") == Endpoint(S2, M2, "direct_chat", "b")


def test_entry_without_mode_takes_the_configs(tmp_path):
    assert files_with(tmp_path, {"m": (MappedEndpoint(S2, M2),)}).endpoint_for("m") == Endpoint(S2, M2, "battle", "b")


def test_a_pool_is_spread_and_skips_placeholders(tmp_path):
    pool = (MappedEndpoint(S1, M1, "direct_chat"), MappedEndpoint("session_for_battle_A", "x", "battle", "a"),
            MappedEndpoint(S2, M2, "battle", "a"))
    files = files_with(tmp_path, {"m": pool})
    picked = {files.endpoint_for("m") for _ in range(200)}
    assert picked == {Endpoint(S1, M1, "direct_chat", "b"), Endpoint(S2, M2, "battle", "a")}


def test_a_pool_of_placeholders_names_the_fix(tmp_path):
    files = files_with(tmp_path, {"m": (MappedEndpoint("YOUR_SESSION_ID", "x", line=3),)})
    with pytest.raises(SessionNotCaptured) as info:
        files.endpoint_for("m")
    assert "model_endpoint_map.json" in info.value.message and "line 3" in info.value.message
    assert "capture-ids" in info.value.message


def test_unmapped_model_uses_the_config_ids(tmp_path):
    files = files_with(tmp_path, {"other": (MappedEndpoint(S2, M2),)})
    assert files.endpoint_for("m") == Endpoint(S1, M1, "battle", "b") == files.default_endpoint


def test_unmapped_model_without_captured_ids(tmp_path):
    files = files_with(tmp_path, session_id="YOUR_SESSION_ID")
    assert files.default_endpoint is None
    with pytest.raises(SessionNotCaptured, match="YOUR_SESSION_ID.*capture-ids"):
        files.endpoint_for("m")


def test_unmapped_model_when_defaults_are_off(tmp_path):
    files = files_with(tmp_path, use_default_ids_if_mapping_not_found=False)
    with pytest.raises(ModelNotMapped) as info:
        files.endpoint_for("gpt-x")
    assert "'gpt-x'" in info.value.message
    assert "model_endpoint_map.json" in info.value.message
    assert "use_default_ids_if_mapping_not_found" in info.value.message
    assert info.value.status == 503


@pytest.mark.parametrize("mode, target, expected", [
    ("direct_chat", "A", Endpoint(S2, M2, "direct_chat", "a")),
    ("battle", "B", Endpoint(S2, M2, "battle", "b")),
    (None, None, Endpoint(S2, M2, "battle", "b")),  # keeps the config's mode and target
])
def test_freshly_captured_ids_serve_at_once(tmp_path, mode, target, expected):
    files = files_with(tmp_path, session_id="YOUR_SESSION_ID")
    files.use_default_ids(S2, M2, mode, target)
    assert files.default_endpoint == expected
    assert files.endpoint_for("m") == expected


@pytest.mark.parametrize("mode, target", [("direct", "A"), ("battle", "C")])
def test_captured_ids_with_a_bad_mode_or_target(tmp_path, mode, target):
    files = files_with(tmp_path)
    with pytest.raises(ValueError):
        files.use_default_ids(S2, M2, mode, target)
    assert files.default_endpoint == Endpoint(S1, M1, "battle", "b")


def test_load_bridge_files(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="arenahub.bridge.config")
    write(tmp_path, "models.json", MODELS)
    write(tmp_path, "model_endpoint_map.json", MAP)
    files = load_bridge_files(write(tmp_path, "config.jsonc", CONFIG))
    assert files.config.session_id == S1
    assert list(files.models) == ["gemini-2.5-pro", "imagen", "nano-banana"]
    assert set(files.endpoint_map) == {"o3", "gemini"}
    assert files.problems == ()
    assert "tavern_mode_enable (not a key of the LMArena bridge (a typo?))" in caplog.text


@pytest.mark.parametrize("models, words", [(None, "not there yet"), ("{}", "holds no models"),
                                           ("// 还没有模型\n{\n}\n", "holds no models")])
def test_no_models_yet_is_loud_but_lets_the_bridge_start(tmp_path, caplog, models, words):
    if models is not None:
        write(tmp_path, "models.json", models)
    files = load_bridge_files(write(tmp_path, "config.jsonc", "{}"))
    assert files.models == {} and files.endpoint_map == {}
    (problem,) = files.problems
    assert words in problem and "update-models" in problem
    assert problem in caplog.text


@pytest.mark.parametrize("name, text, line", [("models.json", '{\n  "a": "x" "b"\n}', 2),
                                              ("model_endpoint_map.json", '{\n  "m": "x"\n}', 2),
                                              ("config.jsonc", '{\n  "bypass_enabled": 1\n}', 2)])
def test_load_bridge_files_refuses_a_broken_file(tmp_path, name, text, line):
    write(tmp_path, "config.jsonc", "{}")
    write(tmp_path, "models.json", MODELS)
    write(tmp_path, name, text)
    with pytest.raises(ConfigError) as info:
        load_bridge_files(tmp_path / "config.jsonc")
    assert info.value.path == str(tmp_path / name) and info.value.line == line


# --- arena.ai 2026: how conversations start ---

def test_an_lmarenabridge_config_stays_on_the_new_default_until_asked(tmp_path):
    config = load_bridge_config(write(tmp_path, "config.jsonc", CONFIG))
    assert (config.upstream_api, config.arena_mode, config.side_by_side_model) == ("create-evaluation", "direct", "")
    assert (config.follow_up, config.allow_private_image_urls, config.legacy) == (True, False, False)
    assert config.ids_captured
    legacy = load_bridge_config(write(tmp_path, "config.jsonc", CONFIG.replace(
        '"api_key"', '"upstream_api": " Legacy-Retry ",\n  "api_key"')))
    assert legacy.legacy and legacy.upstream_api == "legacy-retry"
    assert legacy.captured_endpoint() == Endpoint(S1, M1, "battle", "b")


def test_new_keys_are_read(tmp_path):
    text = json.dumps({"arena_mode": "Side-By-Side", "side_by_side_model": " claude ", "follow_up": False,
                       "allow_private_image_urls": True, "id_updater_battle_target": "B"})
    config = load_bridge_config(write(tmp_path, "config.jsonc", text))
    assert (config.arena_mode, config.side_by_side_model) == ("side-by-side", "claude")
    assert (config.follow_up, config.allow_private_image_urls) == (False, True)
    public = config.public()
    assert {k: public[k] for k in ("upstream_api", "arena_mode", "side_by_side_model", "follow_up",
                                   "allow_private_image_urls")} == {
        "upstream_api": "create-evaluation", "arena_mode": "side-by-side", "side_by_side_model": "claude",
        "follow_up": False, "allow_private_image_urls": True}
    assert load_bridge_config(write(tmp_path, "config.jsonc", "{}")).public()["side_by_side_model"] is None


@pytest.mark.parametrize("key, value, words", [
    ("upstream_api", '"v3"', "must be 'create-evaluation' (the default) or 'legacy-retry', got 'v3'"),
    ("upstream_api", "1", "must be a string"),
    ("arena_mode", '"duel"', "must be one of direct, direct-battle, side-by-side, battle, got 'duel'"),
    ("arena_mode", '"direct_chat"', "must be one of"),
    ("arena_mode", "true", "must be a string"),
    ("side_by_side_model", "5", "must be a string"),
    ("follow_up", '"yes"', 'must be true or false, got "yes"'),
    ("allow_private_image_urls", "1", "must be true or false, got 1"),
])
def test_bad_new_keys_name_file_line_and_key(tmp_path, key, value, words):
    error = error_of(load_bridge_config, tmp_path, "config.jsonc",
                     f'{{\n  // 2026\n  "tavern_mode_enabled": true,\n  "{key}": {value}, // here\n}}\n')
    assert (error.key, error.line) == (key, 4) and words in error.reason
    assert str(error).startswith(f"{tmp_path / 'config.jsonc'}:4: {key}: ")


@pytest.mark.parametrize("extra", ["", ',\n  "side_by_side_model": "  "'])
def test_side_by_side_needs_the_other_model(tmp_path, extra):
    error = error_of(load_bridge_config, tmp_path, "config.jsonc",
                     f'{{\n  "follow_up": true,\n  "arena_mode": "side-by-side"{extra}\n}}')
    assert (error.key, error.line) == ("arena_mode", 3) and "side_by_side_model" in error.reason


SIDE_BY_SIDE = '{\n  "arena_mode": "side-by-side",\n  // side B\n  "side_by_side_model": "%s"\n}'


def test_side_by_side_model_must_be_in_models_json(tmp_path):
    write(tmp_path, "models.json", MODELS)
    with pytest.raises(ConfigError) as info:
        load_bridge_files(write(tmp_path, "config.jsonc", SIDE_BY_SIDE % "claude"))
    error = info.value
    assert (error.path, error.key, error.line) == (str(tmp_path / "config.jsonc"), "side_by_side_model", 4)
    assert "'claude', which is not in models.json" in error.reason


def test_side_by_side_starts_before_models_json_exists(tmp_path):
    files = load_bridge_files(write(tmp_path, "config.jsonc", SIDE_BY_SIDE % "claude"))
    assert files.models == {} and "update-models" in files.problems[0]  # update-models needs a running bridge


@pytest.mark.parametrize("values, mode, target, other, tavern", [
    ({}, "direct", "a", None, False),
    ({"arena_mode": "battle", "id_updater_battle_target": "B", "tavern_mode_enabled": True}, "battle", "b", None,
     True),
    ({"arena_mode": "side-by-side", "side_by_side_model": "imagen"}, "side-by-side", "a", "imagen", False),
    ({"arena_mode": "direct-battle", "side_by_side_model": "imagen"}, "direct-battle", "a", None, False),
    ({"arena_mode": "BATTLE"}, "battle", "a", None, False),
])
def test_arena_settings(tmp_path, values, mode, target, other, tavern):
    write(tmp_path, "models.json", MODELS)
    settings = load_bridge_files(write(tmp_path, "config.jsonc", json.dumps(values))).arena_settings()
    assert (settings.mode, settings.target, settings.tavern_mode) == (mode, target, tavern)
    assert (settings.side_by_side_model.name if settings.side_by_side_model else None) == other


def test_search_models(tmp_path):
    models = load_models(write(tmp_path, "models.json", f'{{"sonar": "{GEMINI}:Search"}}'))
    assert models["sonar"] == Model("sonar", GEMINI, "search") and models["sonar"].modality == "search"
