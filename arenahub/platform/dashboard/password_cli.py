"""``arenahub admin set-dashboard-password``: set or clear the dashboard password, in the database or
(setting it only) through a running platform's admin API.

Read from the terminal (asked twice) or, with ``--password-stdin``, from the first line of standard
input, never from an argument (arguments show in ``ps`` and shell history). Ends every dashboard session.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import TYPE_CHECKING

from arenahub.platform.admin.operations import not_over_api
from arenahub.platform.dashboard.password import WeakPassword, check_strength

if TYPE_CHECKING:
    from arenahub.platform.admin.target import Connection

HELP = "set (or --clear) the password for signing in to the dashboard; ends every dashboard session"
JSON_HELP = 'print JSON: {"password_set": bool}'


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's own flags (``admin/cli.py`` adds --database-url, --platform-url, --admin-token and --json)."""
    how = p.add_mutually_exclusive_group()
    how.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input instead of asking twice")
    how.add_argument("--clear", action="store_true", help="remove the password: only the admin token signs in (in "
                     "the database only: the admin API has no way to)")


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


async def run(args: argparse.Namespace, connect: Connection) -> int:
    password: str | None = None
    if args.clear and connect.remote:
        raise not_over_api("set-dashboard-password --clear")
    if not args.clear:
        try:
            password = _read_password(args.password_stdin)
            check_strength(password)
        except WeakPassword as exc:
            return _fail(str(exc), 2)
        except (ValueError, EOFError, KeyboardInterrupt) as exc:
            return _fail(str(exc) or "no password given", 2)
    await (await connect()).set_dashboard_password(password)
    if args.json:
        print(json.dumps({"password_set": password is not None}))
    else:
        print("dashboard password " + ("set" if password is not None else "removed") +
              "; every dashboard session has ended")
    return 0
