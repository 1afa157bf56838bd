"""``arenahub admin`` and the admin API refuse the same values with the same words: each field's bounds are
defined once (``admin/fields.py``), and both say ``<field> must be <rule>, got <value>`` from there.

The CLI refuses before it opens any database or platform; the API answers 400 naming the field."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from arenahub.cli import main
from arenahub.platform.admin import fields
from arenahub.platform.admin.models_api import ModelName
from tests.platform.admin_api.support import TOKEN
from tests.platform.support import serving


@dataclass
class Case:
    id: str
    kind: Any  # the field's type in admin/fields.py (or where the API declares it)
    value: Any  # the refused value, as JSON
    cli: list[str]  # `arenahub admin ...`
    method: str
    path: str
    body: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)
    param: str = ""  # the API's error.param (default: the case's field, its id up to a space)


LONG = "b" * 201
CASES = [
    # consumer keys
    Case("key name", fields.Name, " k", ["create-key", "--name", " k"], "POST", "/keys", {"name": " k"}),
    Case("key name", fields.Name, LONG, ["update-key", "key_1", "--name", LONG], "PATCH", "/keys/key_1",
         {"name": LONG}),
    Case("key email", fields.Email, "nope", ["create-key", "--name", "k", "--email", "nope"], "POST", "/keys",
         {"name": "k", "email": "nope"}),
    Case("key rpm", fields.PositiveInt, 0, ["create-key", "--name", "k", "--rpm", "0"], "POST", "/keys",
         {"name": "k", "rpm": 0}, param="rpm"),
    Case("key tpm", fields.PositiveInt, 10_000_001, ["update-key", "key_1", "--tpm", "10000001"], "PATCH",
         "/keys/key_1", {"tpm": 10_000_001}, param="tpm"),
    Case("key max_concurrent", fields.PositiveInt, 0, ["create-key", "--name", "k", "--max-concurrent", "0"],
         "POST", "/keys", {"name": "k", "max_concurrent": 0}, param="max_concurrent"),
    Case("key models", fields.Name, "b\x07", ["create-key", "--name", "k", "--models", "a,b\x07"], "POST", "/keys",
         {"name": "k", "models": ["a", "b\x07"]}, param="models[1]"),
    Case("key expires_at", fields.When, "2030-01-01T00:00:00",
         ["create-key", "--name", "k", "--expires", "2030-01-01T00:00:00"], "POST", "/keys",
         {"name": "k", "expires_at": "2030-01-01T00:00:00"}, param="expires_at"),
    Case("key credit", fields.Usd, "12,50", ["create-key", "--name", "k", "--credit", "12,50"], "POST", "/keys",
         {"name": "k", "credit": "12,50"}, param="credit"),
    # credit
    Case("top-up amount", fields.PositiveUsd, "0", ["top-up", "key_1", "0"], "POST", "/keys/key_1/top-ups",
         {"amount": "0"}, param="amount"),
    Case("top-up amount", fields.PositiveUsd, "1.0000001", ["top-up", "key_1", "1.0000001"], "POST",
         "/keys/key_1/top-ups", {"amount": "1.0000001"}, param="amount"),
    Case("top-up note", fields.Note, "x" * 501, ["top-up", "key_1", "5", "--note", "x" * 501], "POST",
         "/keys/key_1/top-ups", {"amount": "5", "note": "x" * 501}, param="note"),
    # prices
    Case("price prompt", fields.Usd, "-1", ["set-price", "m", "--prompt=-1", "--completion", "1"], "PUT",
         "/prices/m", {"prompt": "-1", "completion": "1"}, param="prompt"),
    Case("price image", fields.Usd, "0.0000001",
         ["set-price", "m", "--prompt", "1", "--completion", "1", "--image", "0.0000001"], "PUT", "/prices/m",
         {"prompt": "1", "completion": "1", "image": "0.0000001"}, param="image"),
    Case("price model", fields.Name, " m", ["set-price", " m", "--prompt", "1", "--completion", "1"], "PUT",
         "/prices/%20m", {"prompt": "1", "completion": "1"}, param="model"),
    # usage
    Case("usage key", fields.Name, "", ["usage", "--key", ""], "GET", "/usage", params={"key": ""}, param="key"),
    Case("usage client", fields.Name, LONG, ["usage", "--client", LONG], "GET", "/usage", params={"client": LONG},
         param="client"),
    # clients
    Case("client max_concurrent", fields.MaxConcurrent, 10_001,
         ["create-client", "--name", "box", "--max-concurrent", "10001"], "POST", "/clients",
         {"name": "box", "max_concurrent": 10_001}, param="max_concurrent"),
    Case("client rpm", fields.ClientRpm, 0, ["update-client", "cl_1", "--rpm", "0"], "PATCH", "/clients/cl_1",
         {"rpm": 0}, param="rpm"),
    Case("client priority", fields.Priority, 1001, ["update-client", "cl_1", "--priority", "1001"], "PATCH",
         "/clients/cl_1", {"priority": 1001}, param="priority"),
    Case("client weight", fields.Weight, 0, ["update-client", "cl_1", "--weight", "0"], "PATCH", "/clients/cl_1",
         {"weight": 0}, param="weight"),
    Case("client bridge_url", fields.BridgeUrl, "ftp://x", ["create-client", "--name", "box", "--bridge-url",
                                                             "ftp://x"], "POST", "/clients",
         {"name": "box", "bridge_url": "ftp://x"}, param="bridge_url"),
    Case("client email", fields.Email, "o@x.org\r\n", ["update-client", "cl_1", "--email", "o@x.org\r\n"], "PATCH",
         "/clients/cl_1", {"email": "o@x.org\r\n"}, param="email"),
    Case("client name", fields.Name, "box\nforged", ["create-client", "--name", "box\nforged"], "POST", "/clients",
         {"name": "box\nforged"}, param="name"),
    Case("client package platform_url", fields.HttpUrl, "ftp://gw",
         ["client-package", "cl_1", "--platform-url", "ftp://gw"], "POST", "/clients/cl_1/package",
         params={"platform_url": "ftp://gw"}, param="platform_url"),
    # ids, the model catalogue
    Case("key id", fields.Id, "key 1", ["show-key", "key 1"], "GET", "/keys/key%201", param="key_id"),
    Case("catalogue model", ModelName, "m\x07", ["models", "add", "m\x07"], "PUT", "/catalogue/models",
         {"model": "m\x07"}, param="model"),
    Case("catalogue client_id", fields.Id, "cl 1", ["models", "approve", "m", "cl 1"], "PUT", "/catalogue/decisions",
         {"model": "m", "client_id": "cl 1", "approved": True}, param="client_id"),
]


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One platform for the module: every case is refused, so nothing changes in it."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('rules') / 'platform.db'}"
    with serving(url, TOKEN) as http:
        yield http


def refused_by_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]) -> str:
    """What ``arenahub admin <argv>`` says when it refuses (exit code 2); it opens no database."""
    database = tmp_path / "none.db"
    try:
        code = main(["admin", *argv, "--database-url", f"sqlite:///{database}"])
    except SystemExit as exit:
        code = exit.code  # type: ignore[assignment]
    assert code == 2 and not database.exists()
    return capsys.readouterr().err


def refused_by_api(admin: TestClient, case: Case) -> dict[str, Any]:
    r = admin.request(case.method, "/api/admin" + case.path, json=case.body, params=case.params)
    assert r.status_code == 400, r.text
    return dict(r.json()["error"])


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.id}={fields.shown(c.value, 20)}")
def test_the_cli_and_the_api_refuse_a_value_with_the_same_words(admin: TestClient, capsys: pytest.CaptureFixture[str],
                                                                tmp_path: Path, case: Case) -> None:
    words = fields.refusal(case.kind, case.value)  # "must be <rule>, got <value>"
    assert words.startswith("must be ") and "valid" != words[8:13]  # the type has a rule to say
    said = refused_by_cli(capsys, tmp_path, case.cli)
    assert words in said, said
    error = refused_by_api(admin, case)
    assert words in error["message"], error
    assert error["param"] == (case.param or case.id.split()[-1])


def test_the_cli_and_the_api_refuse_a_period_that_ends_before_it_starts(
        admin: TestClient, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    since, until = (dt.datetime(2026, 1, day, tzinfo=dt.UTC) for day in (2, 1))
    words = fields.period_problem(since, until)
    assert words == "since (2026-01-02T00:00:00+00:00) must be earlier than until (2026-01-01T00:00:00+00:00)"
    assert words in refused_by_cli(capsys, tmp_path, ["usage", "--since", "2026-01-02", "--until", "2026-01-01"])
    error = refused_by_api(admin, Case("since", None, None, [], "GET", "/usage", params={
        "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}))
    assert words in error["message"] and error["param"] == "since"
    # The same instant is an empty period: analytics and usage reports alike refuse it.
    assert fields.period_problem(since, since) == ("since (2026-01-02T00:00:00+00:00) must be earlier than until "
                                                   "(2026-01-02T00:00:00+00:00)")


def test_the_words_of_the_rules() -> None:
    """What the shared message says, for a few kinds."""
    assert fields.refusal(fields.MaxConcurrent, 10_001) == "must be a whole number from 1 to 10000, got 10001"
    assert fields.refusal(fields.PositiveInt, "60") == 'must be a whole number from 1 to 10000000, got "60"'
    assert fields.refusal(fields.Note, "x") == 'must be text of at most 500 characters, got "x"'
    assert fields.refusal(fields.Name, "a\nb").endswith('got "a\\nb"')  # control characters are escaped
    assert fields.shown("x" * 100).endswith('xxx...') and len(fields.shown("x" * 100)) == 60
