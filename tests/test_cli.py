import contextlib
import io
import json
import os
import subprocess
import sys

import pytest

from arenahub.cli import build_parser, main
from tests.conftest import initialised


def run(*argv, env=None):
    return subprocess.run([sys.executable, "-m", "arenahub", *argv], capture_output=True, text=True, timeout=60,
                          env=env)


def run_here(*argv):
    """The command in this process (``python -m arenahub`` costs a second or more to start; the tests above
    run that path)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse refused the arguments
            code = exc.code
    return subprocess.CompletedProcess(list(argv), code, out.getvalue(), err.getvalue())


def test_admin_commands_print_secrets_once_as_json(tmp_path):
    url = initialised(f"sqlite:///{tmp_path / 'a.db'}")
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
    (["admin", "create-key", "--name", "k", "--rpm", "0"], "must be a whole number from 1 to 10000000, got 0"),
    (["admin", "create-key", "--name", "k", "--rpm", "x"], "must be a whole number from 1 to 10000000, got \"x\""),
    (["admin", "create-client"], "--name"),
    (["client"], "--config"),
    (["platform", "--port", "99999"], "99999 is not a port: ports are 1 to 65535"),
    (["bridge", "--port", "0"], "0 is not a port"),
    (["demo", "--bridge-port", "http"], "'http' is not a port number"),
])
def test_bad_arguments_are_refused_clearly(argv, fragment, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    assert fragment in capsys.readouterr().err


def test_a_bad_port_in_the_environment_is_one_clean_line(monkeypatch, capsys):
    monkeypatch.setenv("ARENAHUB_PORT", "99999")
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["platform"])
    assert info.value.code == 2 and "99999 is not a port" in capsys.readouterr().err


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


def test_key_lifecycle_from_the_cli(tmp_path):
    url = initialised(f"sqlite:///{tmp_path / 'k.db'}")
    out = run("admin", "create-key", "--name", "k", "--tpm", "500", "--models", "a,b", "--email", "o@x.org",
              "--expires", "2030-01-01T00:00:00Z", "--database-url", url, "--json")
    assert out.returncode == 0, out.stderr
    key_id = json.loads(out.stdout)["key_id"]
    shown = json.loads(run_here("admin", "show-key", key_id, "--database-url", url, "--json").stdout)
    assert shown["tpm"] == 500 and shown["allowed_models"] == ["a", "b"] and shown["expires_at"].startswith("2030")
    assert json.loads(run_here("admin", "disable-key", key_id, "--database-url", url, "--json").stdout)["disabled"]
    updated = json.loads(run_here("admin", "update-key", key_id, "--rpm", "7", "--database-url", url, "--json").stdout)
    assert updated["rpm"] == 7 and updated["tpm"] == 500
    rotated = json.loads(run_here("admin", "rotate-key", key_id, "--database-url", url, "--json").stdout)
    assert rotated["key"].startswith("sk-")
    listed = json.loads(run_here("admin", "list-keys", "--database-url", url, "--json").stdout)
    assert [k["id"] for k in listed] == [key_id] and rotated["key"] not in str(listed)
    assert run_here("admin", "delete-key", key_id, "--database-url", url, "--json").returncode == 0
    missing = run_here("admin", "show-key", key_id, "--database-url", url)
    assert missing.returncode == 1 and "no key" in missing.stderr
    # The secret given where the id goes: said so, and not repeated on the screen.
    secret = run_here("admin", "show-key", rotated["key"], "--database-url", url)
    assert secret.returncode == 1 and "not its id" in secret.stderr and rotated["key"] not in secret.stderr
    bad = run_here("admin", "create-key", "--name", "k", "--expires", "tomorrow", "--database-url", url)
    assert bad.returncode == 2
    assert "must be an RFC 3339 date-time with a zone" in bad.stderr and "(or a plain date, 2026-05-01" in bad.stderr


def test_a_first_start_that_cannot_listen_keeps_the_admin_token_for_the_next(tmp_path):
    """The port is taken: one clean line, and no admin token made (it would be shown once, then lost)."""
    import socket
    import time

    import httpx

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    env = {**os.environ, "ARENAHUB_DATA_DIR": str(tmp_path)}
    env.pop("ARENAHUB_ADMIN_TOKEN", None)
    try:
        failed = subprocess.run([sys.executable, "-m", "arenahub", "platform", "--port", str(port)], env=env,
                                capture_output=True, text=True, timeout=60)
    finally:
        taken.close()
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        f"arenahub platform: cannot listen on 127.0.0.1:{port}: Address already in use (another program has it: is "
        "a copy of this one running already? Stop it, or choose another port)"], failed.stderr
    assert "admin token" not in failed.stderr and "adm-" not in failed.stderr

    platform = subprocess.Popen([sys.executable, "-m", "arenahub", "platform", "--port", str(port)], env=env,
                                stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
    finally:
        platform.terminate()
        _, err = platform.communicate(timeout=30)
    assert "the admin token (shown once" in err and "\n  adm-" in err
    assert f"the dashboard at http://127.0.0.1:{port}/dashboard" in err


@pytest.mark.parametrize(("args", "env", "said"), [
    (["--port", "abc"], {}, "argument --port: 'abc' is not a port number"),
    ([], {"ARENAHUB_PORT": "abc"}, "argument --port: ARENAHUB_PORT: 'abc' is not a port number"),
    ([], {"ARENAHUB_PORT": "99999"}, "argument --port: ARENAHUB_PORT: 99999 is not a port: ports are 1 to 65535"),
    (["--log-level", "bogus"], {}, "arenahub platform: --log-level: log_level 'bogus' is not one of"),
    ([], {"ARENAHUB_LOG_LEVEL": "bogus"}, "arenahub platform: ARENAHUB_LOG_LEVEL: log_level 'bogus' is not one of"),
])
def test_a_bad_flag_or_variable_is_named_in_one_line(tmp_path, args, env, said) -> None:
    done = subprocess.run([sys.executable, "-m", "arenahub", "platform", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "ARENAHUB_DATA_DIR": str(tmp_path), **env})
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_running_a_server_command_does_not_load_the_admin_and_bridge_commands():
    """Every client and local upstream start would pay most of a second for parsers it never uses."""
    probe = ("import sys; from arenahub.cli import build_parser; build_parser('client').parse_args("
             "['client', '--config', 'x.jsonc']); print(sorted(m for m in ('arenahub.platform.admin.cli', "
             "'arenahub.bridge.cli', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert "admin" in build_parser().format_help()  # the full list for --help


def test_a_platform_whose_postgresql_is_unreachable_says_so_in_one_line(tmp_path):
    out = run("platform", "--port", "1", "--database-url", "postgresql+asyncpg://someone:s3cret@127.0.0.1:1/db",
              env={**os.environ, "ARENAHUB_DATA_DIR": str(tmp_path)})
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "arenahub platform: cannot reach the database postgresql+asyncpg://someone:***@127.0.0.1:1/db: [Errno 111] "
        "Connect call failed ('127.0.0.1', 1) (is PostgreSQL running there?)"]


@pytest.mark.postgres
def test_a_cluster_instance_whose_redis_is_unreachable_says_so_in_one_line(tmp_path):
    from tests.conftest import PG_URL_ENV
    out = run("platform", "--port", "1", "--database-url", os.environ[PG_URL_ENV], "--redis-url",
              "redis://:s3cret@127.0.0.1:1/0", env={**os.environ, "ARENAHUB_DATA_DIR": str(tmp_path)})
    assert out.returncode == 1
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("arenahub platform: cannot reach Redis at redis://:***@127.0.0.1:1/0: ")
    assert "s3cret" not in line and line.endswith("(is redis-server running there?)")
