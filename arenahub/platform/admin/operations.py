"""What ``arenahub admin`` commands do, as one interface with two implementations: ``DatabaseAdmin``
(``database_admin.py``, straight on the platform's database) and ``RemoteAdmin`` (``remote_admin.py``,
through a running platform's admin API). The commands (``cli.py``, ``models_cli.py``,
``package_cli.py``, ``dashboard/password_cli.py``) are written once against this interface.

Values are plain JSON-able dicts in the shapes the admin API answers; a thing that is not there is
None (or False), and every other failure is an ``AdminError``: one line, and an exit code.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Protocol

from arenahub.platform.billing import Price


class AdminError(Exception):
    """A failure an admin command reports as one line, ``arenahub admin: <message>``, exiting ``exit_code``
    (2: the command was given wrongly; 1: it could not be done)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def not_over_api(command: str) -> AdminError:
    """What a command with no admin API equivalent says when it is sent to a platform's admin API."""
    return AdminError(f"{command} has no admin API equivalent: run it where the platform's database is "
                      "(--database-url, or ARENAHUB_DATA_DIR), without --platform-url or ARENAHUB_PLATFORM_URL", 2)


class AdminOperations(Protocol):
    """``changes`` and ``settings`` use the stored field names (``accounts.update_key`` and
    ``accounts.update_client``): ``allowed_models``, ``expires_at`` (a datetime with a zone), ..."""

    # -- consumer keys
    async def create_key(self, name: str, settings: dict[str, Any], credit: int | None) -> dict[str, Any]:
        """``{"key", "key_id"}``: the secret, shown once. With ``credit`` (micro-USD) the key spends from it."""
    async def list_keys(self) -> list[dict[str, Any]]: ...
    async def show_key(self, key_id: str) -> dict[str, Any] | None:
        """The key (never its secret) with its ``credit``."""
    async def update_key(self, key_id: str, changes: dict[str, Any]) -> dict[str, Any] | None: ...
    async def rotate_key(self, key_id: str) -> str | None:
        """The new secret; the old one stops working."""
    async def delete_key(self, key_id: str) -> bool: ...
    async def top_up(self, key_id: str, micros: int, note: str | None) -> dict[str, Any] | None:
        """``{"entry_id", "key_id", "amount_usd", "amount_micros", "credit", ...}``."""

    # -- prices and usage
    async def set_price(self, model: str, price: Price) -> None: ...
    async def usage(self, key: str | None, client: str | None, since: dt.datetime | None,
                    until: dt.datetime | None) -> dict[str, Any]: ...

    # -- clients
    async def create_client(self, name: str, email: str | None, bridge_url: str, rpm: int | None,
                            max_concurrent: int) -> tuple[str, str]:
        """(client_id, api_key): the key, shown once."""
    async def list_clients(self) -> list[dict[str, Any]]: ...
    async def show_client(self, client_id: str) -> dict[str, Any] | None: ...
    async def update_client(self, client_id: str, changes: dict[str, Any]) -> dict[str, Any] | None: ...
    async def set_draining(self, client_id: str, draining: bool) -> dict[str, Any] | None: ...
    async def clear_maintenance(self, client_id: str) -> dict[str, Any] | None: ...
    async def delete_client(self, client_id: str) -> bool: ...
    async def client_package(self, client_id: str, platform_url: str, target: Path) -> str | None:
        """Write the client's package, with a new API key, to ``target``; the client's id, or None when
        there is no such client. ``AdminError`` when it cannot be made (the old key then keeps working)."""

    # -- the model catalogue
    async def catalogue(self) -> dict[str, Any]: ...
    async def list_model(self, model: str, any_client: bool) -> bool:
        """True when it was not listed before."""
    async def unlist_model(self, model: str) -> bool: ...
    async def decide(self, model: str, client_id: str, approved: bool) -> bool:
        """False when there is no such client."""
    async def forget(self, model: str, client_id: str) -> bool: ...

    # -- the admin's own credentials
    async def set_dashboard_password(self, password: str | None) -> None:
        """None removes it; every dashboard session ends either way."""
    async def reset_admin_token(self) -> str: ...
