"""``DatabaseAdmin``: the admin operations (``operations.AdminOperations``) straight on the platform's
database. A running platform picks the changes up: new keys and clients at once (it looks unknown ones
up), changes to clients, prices, credit and the catalogue within a second or two. The database must
exist already: ``target.open_database`` finds it, it never makes one.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.admin import package_keys
from arenahub.platform.admin.client_views import stored_view
from arenahub.platform.admin.operations import AdminError
from arenahub.platform.billing import Account, Price, format_usd
from arenahub.platform.catalogue import ModelCatalogue, describe
from arenahub.platform.client_package import ClientPackageError, build_client_package, build_wheel
from arenahub.platform.dashboard.password import set_password
from arenahub.platform.live_settings import LiveSettings
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage import accounts, billing_store, catalogue_store


class DatabaseAdmin:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- consumer keys

    async def create_key(self, name: str, settings: dict[str, Any], credit: int | None) -> dict[str, Any]:
        settings = dict(settings)
        key_id, key = await accounts.create_key(self.engine, name=name, rpm=settings.pop("rpm", None))
        if credit is not None:
            settings["unlimited"] = False
        if settings:
            await accounts.update_key(self.engine, key_id, **settings)
        if credit:
            await billing_store.add_money(self.engine, key_id, credit, note="starting credit")
        return {"key": key, "key_id": key_id}

    async def list_keys(self) -> list[dict[str, Any]]:
        return [k.public() for k in await accounts.list_keys(self.engine)]

    async def show_key(self, key_id: str) -> dict[str, Any] | None:
        key = await accounts.get_key(self.engine, key_id)
        if key is None:
            return None
        balance, held = await billing_store.key_balance(self.engine, key_id)
        return {**key.public(), "credit": Account(key_id, key.unlimited, balance, held).public()}

    async def update_key(self, key_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        if changes and not await accounts.update_key(self.engine, key_id, **changes):
            return None
        return await self.show_key(key_id)

    async def rotate_key(self, key_id: str) -> str | None:
        return await accounts.rotate_key(self.engine, key_id)

    async def delete_key(self, key_id: str) -> bool:
        return await accounts.delete_key(self.engine, key_id)

    async def top_up(self, key_id: str, micros: int, note: str | None) -> dict[str, Any] | None:
        if await accounts.get_key(self.engine, key_id) is None:
            return None
        entry = await billing_store.add_money(self.engine, key_id, micros, note=note)
        key = await self.show_key(key_id)
        return {"entry_id": entry.entry_id, "key_id": key_id, "amount_usd": format_usd(micros),
                "amount_micros": micros, "credit": key["credit"] if key else None}

    # -- prices and usage

    async def set_price(self, model: str, price: Price) -> None:
        await billing_store.set_price(self.engine, model, price)

    async def usage(self, key: str | None, client: str | None, since: dt.datetime | None,
                    until: dt.datetime | None) -> dict[str, Any]:
        return await billing_store.usage_report(self.engine, key_id=key, client_id=client, since=since, until=until)

    # -- clients

    async def create_client(self, name: str, email: str | None, bridge_url: str, rpm: int | None,
                            max_concurrent: int) -> tuple[str, str]:
        return await accounts.create_client(self.engine, name=name, email=email, bridge_url=bridge_url, rpm=rpm,
                                            max_concurrent=max_concurrent)

    async def list_clients(self) -> list[dict[str, Any]]:
        return [stored_view(c) for c in await accounts.list_clients(self.engine)]

    async def show_client(self, client_id: str) -> dict[str, Any] | None:
        return await self.update_client(client_id, {})

    async def update_client(self, client_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        if changes and not await accounts.update_client(self.engine, client_id, **changes):
            return None
        client = await accounts.client_view(self.engine, client_id)
        return stored_view(client) if client is not None else None

    async def set_draining(self, client_id: str, draining: bool) -> dict[str, Any] | None:
        return await self.update_client(client_id, {"draining": draining})

    async def clear_maintenance(self, client_id: str) -> dict[str, Any] | None:
        return await self.update_client(client_id, {"maintenance_reason": None, "maintenance_since": None})

    async def delete_client(self, client_id: str) -> bool:
        return await accounts.delete_client(self.engine, client_id)

    async def client_package(self, client_id: str, platform_url: str, target: Path) -> str | None:
        """Made here with a new key and written beside ``target``; the key is stored only then, and the
        file moved into place: when anything fails before, the old key keeps working."""
        try:
            wheel = build_wheel()
        except (ClientPackageError, OSError) as exc:
            raise AdminError(f"cannot build the arenahub wheel: {exc}") from None

        def make(account: accounts.ClientAccount, api_key: str) -> bytes:
            return build_client_package(
                platform_url=platform_url, client_id=account.id, api_key=api_key, client_name=account.name,
                bridge_url=account.bridge_url, max_concurrent_requests=account.max_concurrent, wheel=wheel)

        try:
            package = await package_keys.build(self.engine, client_id, make)
        except ClientPackageError as exc:
            raise AdminError(f"cannot make a package for {client_id}: {exc}") from None
        if package is None:
            return None
        written = package_keys.write_beside(target, package.data)
        try:
            if not await package_keys.commit(self.engine, package):
                raise AdminError(f"the key of {client_id} changed meanwhile (another package was made, or it was "
                                 "deleted)")
            os.replace(written, target)
        finally:
            written.unlink(missing_ok=True)  # left only when the key was not stored
        return package.account.id

    # -- the model catalogue

    async def catalogue(self) -> dict[str, Any]:
        """What ``GET /api/admin/catalogue`` answers, as the database tells it: whether the catalogue is on
        comes from the setting stored from the dashboard, else this process's ARENAHUB_MODEL_CATALOGUE;
        which clients serve a model now only a platform knows (no ``serving`` here)."""
        live = LiveSettings(PlatformSettings.from_env())
        await live.load(self.engine)
        listings, refused = await catalogue_store.load(self.engine)
        view = describe(ModelCatalogue(live.current.model_catalogue, listings, refused),
                        await catalogue_store.offerers(self.engine))
        for model in view["models"]:
            del model["serving"]
        return view

    async def list_model(self, model: str, any_client: bool) -> bool:
        return await catalogue_store.list_model(self.engine, model, any_client=any_client)

    async def unlist_model(self, model: str) -> bool:
        return await catalogue_store.unlist_model(self.engine, model)

    async def decide(self, model: str, client_id: str, approved: bool) -> bool:
        if await accounts.get_client(self.engine, client_id) is None:
            return False
        await catalogue_store.decide(self.engine, model, client_id, approved=approved)
        return True

    async def forget(self, model: str, client_id: str) -> bool:
        return await catalogue_store.forget(self.engine, model, client_id)

    # -- the admin's own credentials

    async def set_dashboard_password(self, password: str | None) -> None:
        await set_password(self.engine, password)

    async def reset_admin_token(self) -> str:
        from arenahub.platform.admin.token import reset_admin_token
        return await reset_admin_token(self.engine)
