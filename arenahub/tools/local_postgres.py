"""A private PostgreSQL cluster in a folder, for ``arenahub demo --instances N``: Debian's ``initdb`` and
``postgres`` (from /usr/lib/postgresql/VERSION/bin), on a port of its own, listening on 127.0.0.1 only, with
its Unix socket in its folder, so that it neither needs nor touches the machine's own PostgreSQL.

PostgreSQL refuses to run as root: as root it runs as the ``postgres`` user (Debian's package makes it). Its
role ``arenahub`` is trusted without a password, which only this machine's users can reach.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

ROLE = "arenahub"
DATABASE = "arenahub"
# The longest Unix socket path (sun_path, 108 bytes with its NUL) less the socket's own name.
_SOCKET_DIR_MAX = 107 - len("/.s.PGSQL.65535")


def bin_dir() -> Path | None:
    """The newest installed major version's programs, or None when PostgreSQL is not installed."""
    versions = sorted((p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return versions[-1] if versions else None


class LocalPostgres:
    """``init`` makes the cluster; ``argv`` and ``user`` run its server in the foreground (the caller owns
    the process: SIGTERM stops it); ``create_database`` waits for it and makes the database; ``close``
    removes a folder made outside ``home``."""

    def __init__(self, home: Path, port: int) -> None:
        found = bin_dir()
        if found is None:
            raise RuntimeError("PostgreSQL is not installed (sudo apt-get install postgresql)")
        self.bin = found
        self.port = port
        self.user = "postgres" if os.geteuid() == 0 else None
        self.home = home
        self.data = home
        self._elsewhere: Path | None = None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    def init(self) -> None:
        self.data = self.home
        if self.user is not None and not self._reachable(self.home.parent):
            # The postgres user cannot reach the demo's folder (under /root, say): a folder of its own in /tmp.
            self._elsewhere = Path(tempfile.mkdtemp(prefix="arenahub-demo-postgres-"))
            self.data = self._elsewhere
        self.data.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            account = pwd.getpwnam(self.user)
            os.chown(self.data, account.pw_uid, account.pw_gid)
        self.data.chmod(0o700)
        done = subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", ROLE, "-A", "trust",
                               "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                              user=self.user, cwd=self.data, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {(done.stderr or done.stdout).strip()}")

    def argv(self) -> list[str]:
        sockets = str(self.data) if len(str(self.data)) <= _SOCKET_DIR_MAX else ""  # too long: TCP only
        return [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sockets}"]

    async def create_database(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = await asyncpg.connect(user=ROLE, host="127.0.0.1", port=self.port, database="postgres",
                                             timeout=2)
                break
            except (OSError, asyncpg.CannotConnectNowError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not accept connections on port {self.port}") from None
                await asyncio.sleep(0.2)
        try:
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            await conn.close()

    def close(self) -> None:
        if self._elsewhere is not None:
            shutil.rmtree(self._elsewhere, ignore_errors=True)
            self._elsewhere = None

    def _reachable(self, folder: Path) -> bool:
        """Whether the postgres user may enter ``folder`` (and so make its cluster's folder there)."""
        return subprocess.run(["test", "-x", str(folder)], user=self.user).returncode == 0
