"""``arenahub admin set-dashboard-password``: set or clear the dashboard password, offline.

Read from the terminal (asked twice) or, with ``--password-stdin``, from the first line of standard
input, never from an argument (arguments show in ``ps`` and shell history). Ends every dashboard session.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys

from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.dashboard.password import (
    WeakPassword,
    check_strength,
    set_password,
)
from arenahub.platform.storage.db import create_engine, migrate

HELP = "set (or --clear) the password for signing in to the dashboard; ends every dashboard session"
JSON_HELP = 'print JSON: {"password_set": bool}'


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's own flags (``admin/cli.py`` adds --database-url and --json)."""
    how = p.add_mutually_exclusive_group()
    how.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input instead of asking twice")
    how.add_argument("--clear", action="store_true", help="remove the password: only the admin token signs in")


def _fail(message: str, code: int = 1) -> int:
    print(f"arenahub admin set-dashboard-password: {message}", file=sys.stderr)
    return code


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ValueError("standard input is not a terminal: pipe the password in with --password-stdin")
    first = getpass.getpass("New dashboard password: ")
    if getpass.getpass("Again: ") != first:
        raise ValueError("the two passwords differ; nothing changed")
    return first


async def _store(database_url: str | None, password: str | None) -> None:
    engine: AsyncEngine = create_engine(database_url)
    try:
        await migrate(engine)
        await set_password(engine, password)
    finally:
        await engine.dispose()


def run(args: argparse.Namespace) -> int:
    password: str | None = None
    if not args.clear:
        try:
            password = _read_password(args.password_stdin)
            check_strength(password)
        except WeakPassword as exc:
            return _fail(str(exc), 2)
        except (ValueError, EOFError, KeyboardInterrupt) as exc:
            return _fail(str(exc) or "no password given", 2)
    asyncio.run(_store(args.database_url, password))
    if args.json:
        print(json.dumps({"password_set": password is not None}))
    else:
        print("dashboard password " + ("set" if password is not None else "removed") +
              "; every dashboard session has ended")
    return 0
