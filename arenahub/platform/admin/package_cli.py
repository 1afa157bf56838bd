"""``arenahub admin client-package``: a client's package ``lmarena-client-<CLIENT_ID>.zip``.

The platform stores only hashes of client keys, so a package with a usable key needs a new one. On
the database, this command makes the package with a new API key, writes it, and only then stores the
key (the old one stops working); when anything fails before, the old key keeps working
(``package_keys``). Through the admin API (``ARENAHUB_PLATFORM_URL`` set: this command's own
``--platform-url`` is the address written into the package), the platform makes it and stores the key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from arenahub.platform.admin.fields import HttpUrl, flag, with_api_path
from arenahub.platform.admin.operations import AdminError
from arenahub.platform.admin.target import Connection
from arenahub.platform.client_package import ClientPackageError, package_filename

HELP = ("regenerate a client's API key and write its package lmarena-client-<CLIENT_ID>.zip "
        "(the old key stops working)")


DESCRIPTION = ("Write the client package (config.jsonc with a new API key, start_client.sh, README.txt, "
               "userscript.js, requirements_platform.txt, lmarena_platform_integration.py and a wheel of this "
               "arenahub). Keys are stored only as hashes, so the only way to put a usable key in a package is to "
               "make a new one: this REGENERATES the client's API key, and the key the client uses now stops "
               "working.")
JSON_HELP = 'print JSON: {"path", "client_id"}'


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's own flags (``admin/cli.py`` adds CLIENT_ID, --database-url, --admin-token and --json)."""
    # Checked as the API checks its platform_url (clients_api.PackageQuery).
    p.add_argument("--platform-url", required=True, type=flag(HttpUrl, then=with_api_path), metavar="PLATFORM_URL",
                   help="the platform as the client reaches it, e.g. https://gateway.example.com (a URL without a "
                        "path gets /api, the platform's API base); written into the package. The command goes "
                        "through the admin API when ARENAHUB_PLATFORM_URL is set (default: the database)")
    p.add_argument("--output", metavar="PATH",
                   help="the ZIP file to write, or a folder for it (default: ./lmarena-client-<CLIENT_ID>.zip)")


def _fail(message: str, code: int = 1) -> int:
    print(f"arenahub admin client-package: {message}", file=sys.stderr)
    return code


def _target(output: str | None, client_id: str) -> Path:
    name = package_filename(client_id)
    if output is None:
        return Path.cwd() / name
    path = Path(output).expanduser()
    return path / name if path.is_dir() else path


async def run(args: argparse.Namespace, connect: Connection) -> int:
    try:
        target = _target(args.output, args.client_id)
    except ClientPackageError as exc:
        return _fail(str(exc), 2)
    if not target.parent.is_dir() or not os.access(target.parent, os.W_OK):
        return _fail(f"cannot write into {target.parent}: no such folder, or not writable", 2)
    admin = await connect()
    # The key is stored only once the package holding it is made (and, here, written): a failure before
    # leaves the old key working.
    try:
        client_id = await admin.client_package(args.client_id, args.platform_url, target)
    except AdminError as exc:
        return _fail(exc.message)
    except OSError as exc:
        return _fail(f"cannot write {target}: {exc}")
    if client_id is None:
        return _fail(f"no client {args.client_id!r}")
    result: dict[str, Any] = {"path": str(target.resolve()), "client_id": client_id}
    print(json.dumps(result) if args.json else
          f"{result['path']}\n(client {client_id} has a new API key, inside this file only; its old key no "
          "longer works)")
    return 0
