"""config_edit.set_values: only the values change; comments, order and formatting stay."""

import os
import stat

import pytest

from arenahub import jsonc
from arenahub.bridge import config_edit
from arenahub.bridge.config import load_bridge_config
from arenahub.bridge.config_edit import set_values
from arenahub.jsonc import ConfigError

S_OLD, M_OLD = "cebc557a-3f35-4794-beaf-6e33d947e0cd", "562414bc-0ea8-412a-bd15-8ec1cc61f4af"
S_NEW, M_NEW = "11111111-2222-4333-8444-555555555555", "66666666-7777-4888-9999-000000000000"

FIXTURE = f"""{{
  // 版本号 —— 请不要手动修改
  "version": "2.7.6",

  /* 会话设置: "session_id": "in-a-block-comment" 不能被改 */
  // "session_id": "in-a-line-comment"
  "session_id": "{S_OLD}", // 运行 capture-ids 更新
  "message_id":"{M_OLD}",

  // 模式 ('direct_chat' 或 'battle')
  "id_updater_last_mode"  :  "battle",
  "id_updater_battle_target": "B",
  "note": "a string with \\"session_id\\": \\"x\\" and // not a comment",
  "file_bed_upload_url": "http:\\/\\/127.0.0.1:5180/upload", // 转义的斜杠
  "nested": {{"session_id": "inner", "list": [1, {{"message_id": "deep"}},],}},
  "api_key": "",
}}
"""
VALUES = {"session_id": S_NEW, "message_id": M_NEW, "id_updater_last_mode": "direct_chat",
          "id_updater_battle_target": "A"}


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "config.jsonc"
    path.write_text(FIXTURE, encoding="utf-8")
    return path


def test_only_the_values_change(config):
    set_values(config, VALUES)
    expected = (FIXTURE.replace(f'"session_id": "{S_OLD}"', f'"session_id": "{S_NEW}"')
                .replace(f'"message_id":"{M_OLD}"', f'"message_id":"{M_NEW}"')
                .replace('"id_updater_last_mode"  :  "battle"', '"id_updater_last_mode"  :  "direct_chat"')
                .replace('"id_updater_battle_target": "B"', '"id_updater_battle_target": "A"'))
    assert expected != FIXTURE
    assert config.read_text(encoding="utf-8") == expected


def test_the_bridge_reads_what_was_written(config):
    set_values(config, VALUES)
    loaded = load_bridge_config(config)
    assert (loaded.session_id, loaded.message_id) == (S_NEW, M_NEW)
    assert (loaded.id_updater_last_mode, loaded.id_updater_battle_target) == ("direct_chat", "a")
    data = jsonc.loads(config.read_text(encoding="utf-8"))
    assert data["nested"] == {"session_id": "inner", "list": [1, {"message_id": "deep"}]}
    assert data["file_bed_upload_url"] == "http://127.0.0.1:5180/upload"


def test_setting_the_same_values_twice_changes_nothing(config):
    set_values(config, VALUES)
    once = config.read_bytes()
    set_values(config, VALUES)
    assert config.read_bytes() == once


@pytest.mark.parametrize("value", ['quote " and \\ backslash', "中文 ✅", "", "line\nbreak", 5, True, None])
def test_values_are_written_as_json(config, value):
    set_values(config, {"session_id": value})
    assert jsonc.loads(config.read_text(encoding="utf-8"))["session_id"] == value


@pytest.mark.parametrize("old", ["null", "42", "true", '{"a": [1, "}"]}', '["x", // c\n  "y"]'])
def test_any_old_value_token_is_replaced(tmp_path, old):
    path = tmp_path / "c.jsonc"
    path.write_text(f'{{\n  "session_id": {old}, // 注释\n  "b": 1\n}}\n')
    set_values(path, {"session_id": S_NEW})
    assert path.read_text() == f'{{\n  "session_id": "{S_NEW}", // 注释\n  "b": 1\n}}\n'


def test_a_key_written_twice_is_set_everywhere(tmp_path):
    path = tmp_path / "c.jsonc"
    path.write_text('{"session_id": "a", "x": 1, "session_id": "b"}')
    set_values(path, {"session_id": "c"})
    assert path.read_text() == '{"session_id": "c", "x": 1, "session_id": "c"}'


@pytest.mark.parametrize("before, after", [
    # closing brace on its own line: the new keys go above it, with the last key's indentation
    ('{\n    "api_key": "" // 最后一个\n}\n',
     '{\n    "api_key": "", // 最后一个\n    "session_id": "S",\n    "message_id": "M"\n}\n'),
    ('{\n  "api_key": "",\n}\n', '{\n  "api_key": "",\n  "session_id": "S",\n  "message_id": "M"\n}\n'),
    ('{\n  "api_key": ""\n  // 结尾注释\n}',
     '{\n  "api_key": "",\n  // 结尾注释\n  "session_id": "S",\n  "message_id": "M"\n}'),
    ('{\r\n  "api_key": ""\r\n}\r\n', '{\r\n  "api_key": "",\r\n  "session_id": "S",\r\n  "message_id": "M"\r\n}\r\n'),
    ('{\n}\n', '{\n  "session_id": "S",\n  "message_id": "M"\n}\n'),
    # brace on the same line as content
    ('{"api_key": ""}', '{"api_key": "", "session_id": "S", "message_id": "M"}'),
    ('{"api_key": "",}', '{"api_key": "", "session_id": "S", "message_id": "M"}'),
    ("{}", '{"session_id": "S", "message_id": "M"}'),
])
def test_missing_keys_are_added_before_the_closing_brace(tmp_path, before, after):
    path = tmp_path / "c.jsonc"
    path.write_bytes(before.encode())
    set_values(path, {"session_id": "S", "message_id": "M"})
    assert path.read_bytes().decode() == after


def test_present_and_missing_keys_together(config):
    set_values(config, {"session_id": S_NEW, "brand_new": "v"})
    text = config.read_text(encoding="utf-8")
    assert text.endswith('  "api_key": "",\n  "brand_new": "v"\n}\n')
    assert f'"session_id": "{S_NEW}", // 运行 capture-ids 更新' in text


def test_byte_order_mark_is_kept(tmp_path):
    path = tmp_path / "c.jsonc"
    path.write_bytes(b'\xef\xbb\xbf{"session_id": "a"}')
    set_values(path, {"session_id": "b"})
    assert path.read_bytes() == b'\xef\xbb\xbf{"session_id": "b"}'


@pytest.mark.parametrize("text, line", [('{\n  "a": 1\n  "b": 2\n}', 3), ("[1]", 1), ('{\n  "a": \n', 3)])
def test_a_broken_file_is_not_touched(tmp_path, text, line):
    path = tmp_path / "c.jsonc"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        set_values(path, {"session_id": "x"})
    assert info.value.line == line
    assert path.read_text() == text


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        set_values(tmp_path / "nope.jsonc", {"session_id": "x"})


@pytest.mark.parametrize("value", [{"a": 1}, [1], object()])
def test_only_scalars_can_be_written(config, value):
    with pytest.raises(TypeError, match="session_id"):
        set_values(config, {"session_id": value})
    assert config.read_text(encoding="utf-8") == FIXTURE


def test_write_is_atomic_and_leaves_no_temp_files(config, monkeypatch):
    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(config_edit.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        set_values(config, VALUES)
    assert config.read_text(encoding="utf-8") == FIXTURE
    assert os.listdir(config.parent) == ["config.jsonc"]


def test_permissions_are_kept_and_no_temp_files_remain(config):
    config.chmod(0o600)
    set_values(config, VALUES)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert os.listdir(config.parent) == ["config.jsonc"]


def test_a_symlinked_config_stays_a_link(tmp_path, config):
    link = tmp_path / "link.jsonc"
    link.symlink_to(config)
    set_values(link, {"session_id": S_NEW})
    assert link.is_symlink()
    assert jsonc.loads(config.read_text(encoding="utf-8"))["session_id"] == S_NEW


def test_a_result_that_reads_back_wrong_is_never_written(config, monkeypatch):
    monkeypatch.setattr(config_edit, "_edit", lambda text, values: text.replace(S_OLD, "something else"))
    with pytest.raises(ConfigError, match="edit the file by hand"):
        set_values(config, {"session_id": S_NEW})
    assert config.read_text(encoding="utf-8") == FIXTURE
