import json
import subprocess
import sys

import pytest

from arenahub.cli import build_parser, main


def run(*argv, env=None):
    return subprocess.run([sys.executable, "-m", "arenahub", *argv], capture_output=True, text=True, timeout=60,
                          env=env)


def test_admin_commands_print_secrets_once_as_json(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    out = run("admin", "create-client", "--name", "c", "--max-concurrent", "2", "--database-url", url, "--json")
    assert out.returncode == 0, out.stderr
    client = json.loads(out.stdout)
    assert client["client_id"].startswith("cl_") and client["api_key"].startswith("ck-")
    out = run("admin", "create-key", "--name", "k", "--rpm", "5", "--database-url", url, "--json")
    assert out.returncode == 0, out.stderr
    key = json.loads(out.stdout)["key"]
    assert key.startswith("sk-")
    raw = (tmp_path / "a.db").read_bytes()
    assert key.encode() not in raw and client["api_key"].encode() not in raw


@pytest.mark.parametrize("argv, fragment", [
    (["admin", "create-key", "--name", "k", "--rpm", "0"], "at least 1"),
    (["admin", "create-key", "--name", "k", "--rpm", "x"], "not a whole number"),
    (["admin", "create-client"], "--name"),
    (["client"], "--config"),
])
def test_bad_arguments_are_refused_clearly(argv, fragment, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    assert fragment in capsys.readouterr().err


def test_bad_database_url_is_refused(capsys):
    assert main(["platform", "--database-url", "mysql://x/y"]) == 2
    assert "unsupported database URL" in capsys.readouterr().err


def test_client_with_bad_config_stops_with_file_key_and_reason(tmp_path):
    cfg = tmp_path / "config.jsonc"
    cfg.write_text('{"platform_integration": {"enabled": true, "platform_url": "http://x/api",\n'
                   ' "client_id": "cl_1", "api_key": "k", "heartbeat_interval_seconds": -1}}')
    out = run("client", "--config", str(cfg))
    assert out.returncode == 2
    assert str(cfg) in out.stderr and "heartbeat_interval_seconds" in out.stderr and "between" in out.stderr
