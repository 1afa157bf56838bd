"""``arenahub admin ...``: create clients and consumer keys straight in the platform's database.

A running platform sees them at once (it looks unknown keys up and reads clients on connect).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from arenahub.platform.storage import accounts
from arenahub.platform.storage.db import create_engine, migrate


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    admin = sub.add_parser("admin", help="manage clients and consumer keys")
    cmds = admin.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")

    cc = cmds.add_parser("create-client", help="register a client; prints its client_id and api_key once")
    cc.add_argument("--name", required=True)
    cc.add_argument("--email")
    cc.add_argument("--bridge-url", default="http://127.0.0.1:5102")
    cc.add_argument("--rpm", type=_positive_int, help="requests per minute this client accepts")
    cc.add_argument("--max-concurrent", type=_positive_int, default=4, help="requests at once (default 4)")
    cc.add_argument("--database-url")
    cc.add_argument("--json", action="store_true", help="print JSON")
    cc.set_defaults(run=_create_client)

    ck = cmds.add_parser("create-key", help="create a consumer API key; prints it once")
    ck.add_argument("--name", required=True)
    ck.add_argument("--rpm", type=_positive_int, help="requests per minute")
    ck.add_argument("--database-url")
    ck.add_argument("--json", action="store_true", help="print JSON")
    ck.set_defaults(run=_create_key)

    rt = cmds.add_parser("reset-admin-token", help="make a new admin token (the old one stops working); prints it once")
    rt.add_argument("--database-url")
    rt.add_argument("--json", action="store_true", help="print JSON")
    rt.set_defaults(run=_reset_admin_token)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


async def _with_engine(database_url: str | None, work: Any) -> Any:
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        return await work(engine)
    finally:
        await engine.dispose()


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data) if args.json else text)


def _create_client(args: argparse.Namespace) -> int:
    name = args.name.strip()
    if not name:
        print("arenahub admin create-client: --name must not be empty", file=sys.stderr)
        return 2
    client_id, api_key = asyncio.run(_with_engine(args.database_url, lambda engine: accounts.create_client(
        engine, name=name, email=args.email, bridge_url=args.bridge_url, rpm=args.rpm,
        max_concurrent=args.max_concurrent)))
    _emit(args, {"client_id": client_id, "api_key": api_key},
          f"client_id: {client_id}\napi_key:   {api_key}\n(the api_key is shown only now; store it in config.jsonc)")
    return 0


def _create_key(args: argparse.Namespace) -> int:
    name = args.name.strip()
    if not name:
        print("arenahub admin create-key: --name must not be empty", file=sys.stderr)
        return 2
    key_id, key = asyncio.run(_with_engine(args.database_url, lambda engine: accounts.create_key(
        engine, name=name, rpm=args.rpm)))
    _emit(args, {"key": key, "key_id": key_id}, f"key_id: {key_id}\nkey:    {key}\n(the key is shown only now)")
    return 0


def _reset_admin_token(args: argparse.Namespace) -> int:
    from arenahub.platform.admin.token import reset_admin_token
    token = asyncio.run(_with_engine(args.database_url, reset_admin_token))
    _emit(args, {"admin_token": token}, f"admin token: {token}\n(shown only now; a running platform takes it "
          "within a second)")
    return 0
