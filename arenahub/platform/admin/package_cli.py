"""``arenahub admin client-package``: a client's package ``lmarena-client-<CLIENT_ID>.zip``, offline.

The platform stores only hashes of client keys, so a package with a usable key needs a new one:
this command makes the package with a new API key, writes it, and only then stores the key (the old
one stops working); when anything fails before, the old key keeps working (``package_keys``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from arenahub.platform.admin import package_keys
from arenahub.platform.client_package import (
    ClientPackageError,
    build_client_package,
    build_wheel,
    package_filename,
)
from arenahub.platform.storage.accounts import ClientAccount
from arenahub.platform.storage.db import create_engine, migrate

HELP = ("regenerate a client's API key and write its package lmarena-client-<CLIENT_ID>.zip "
        "(the old key stops working)")


DESCRIPTION = ("Write the client package (config.jsonc with a new API key, start_client.sh, README.txt, "
               "userscript.js, requirements_platform.txt, lmarena_platform_integration.py and a wheel of this "
               "arenahub). Keys are stored only as hashes, so the only way to put a usable key in a package is to "
               "make a new one: this REGENERATES the client's API key, and the key the client uses now stops "
               "working.")
JSON_HELP = 'print JSON: {"path", "client_id"}'


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's own flags (``admin/cli.py`` adds CLIENT_ID, --database-url and --json)."""
    p.add_argument("--platform-url", required=True, type=_platform_url, metavar="PLATFORM_URL",
                   help="the platform as the client reaches it, e.g. https://gateway.example.com "
                        "(a URL without a path gets /api, the platform's API base)")
    p.add_argument("--output", metavar="PATH",
                   help="the ZIP file to write, or a folder for it (default: ./lmarena-client-<CLIENT_ID>.zip)")


def _platform_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL")
    url = text.strip().rstrip("/")
    return url + "/api" if parts.path in ("", "/") else url


def _fail(message: str, code: int = 1) -> int:
    print(f"arenahub admin client-package: {message}", file=sys.stderr)
    return code


def _target(output: str | None, client_id: str) -> Path:
    name = package_filename(client_id)
    if output is None:
        return Path.cwd() / name
    path = Path(output).expanduser()
    return path / name if path.is_dir() else path


def _write_beside(path: Path, data: bytes) -> Path:
    """``data`` in a new file beside ``path``, readable by the owner only (the ZIP holds the client's key)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o600)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


async def _deliver(database_url: str | None, client_id: str, make: package_keys.Make,
                   target: Path) -> ClientAccount | str:
    """Make the package with a new key and write it beside ``target``, store the key, then move the file
    to ``target``; or why not, with the key unchanged and nothing written."""
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        try:
            package = await package_keys.build(engine, client_id, make)
        except ClientPackageError as exc:
            return f"cannot make a package for {client_id}: {exc}"
        if package is None:
            return f"no client {client_id!r}"
        written = _write_beside(target, package.data)
        try:
            if not await package_keys.commit(engine, package):
                return f"the key of {client_id} changed meanwhile (another package was made, or it was deleted)"
            os.replace(written, target)
        finally:
            written.unlink(missing_ok=True)  # left only when the key was not stored
        return package.account
    finally:
        await engine.dispose()


def run(args: argparse.Namespace) -> int:
    try:
        target = _target(args.output, args.client_id)
    except ClientPackageError as exc:
        return _fail(str(exc), 2)
    if not target.parent.is_dir() or not os.access(target.parent, os.W_OK):
        return _fail(f"cannot write into {target.parent}: no such folder, or not writable", 2)
    try:
        wheel = build_wheel()
    except (ClientPackageError, OSError) as exc:
        return _fail(f"cannot build the arenahub wheel: {exc}")

    def make(account: ClientAccount, api_key: str) -> bytes:
        return build_client_package(
            platform_url=args.platform_url, client_id=account.id, api_key=api_key, client_name=account.name,
            bridge_url=account.bridge_url, max_concurrent_requests=account.max_concurrent, wheel=wheel)

    # The key is stored only once the package holding it is written: a failure before leaves the old key working.
    found = asyncio.run(_deliver(args.database_url, args.client_id, make, target))
    if isinstance(found, str):
        return _fail(found)
    result: dict[str, Any] = {"path": str(target.resolve()), "client_id": found.id}
    print(json.dumps(result) if args.json else
          f"{result['path']}\n(client {found.id} has a new API key, inside this file only; its old key no "
          "longer works)")
    return 0
