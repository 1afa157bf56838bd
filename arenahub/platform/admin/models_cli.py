"""``arenahub admin models list|add|remove|approve|refuse|forget``: the operator's model catalogue
(``platform/catalogue.py``), in the database (a running platform applies a change within about a
second) or through a running platform's admin API (at once). Names are checked with the admin API's
types (``models_api.ModelName``, ``fields.Id``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from arenahub.platform.admin import fields
from arenahub.platform.admin.fields import flag
from arenahub.platform.admin.models_api import ModelName
from arenahub.platform.admin.target import Connection

HELP = "the model catalogue: which models the platform offers, and which clients may serve each"

Command = Callable[..., argparse.ArgumentParser]  # admin/cli.py's _command: adds the common flags


def add_commands(cmds: argparse._SubParsersAction[argparse.ArgumentParser], command: Command) -> None:
    command(cmds, "list", "the listed models, the offers waiting for approval and the refused ones", _list)
    add = command(cmds, "add", "list a model: only the clients approved for it serve it (--any-client: every "
                  "client that offers it)", _add)
    _model(add)
    add.add_argument("--any-client", action="store_true", help="every client that offers it may serve it")
    _model(command(cmds, "remove", "unlist a model: its approvals go (its refusals stay)", _remove))
    for name, helptext, run in (
            ("approve", "let a client serve a model (listing the model if it is not)", _approve),
            ("refuse", "refuse a client's offer of a model: it never waits for approval again", _refuse),
            ("forget", "take back a decision: the client's offer of the model waits for approval again", _forget)):
        parser = command(cmds, name, helptext, run)
        _model(parser)
        parser.add_argument("client_id", metavar="CLIENT_ID", type=flag(fields.Id),
                            help="the client's id (cl_...: list-clients shows them)")


def _model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", type=flag(ModelName), help="the model's name, as clients offer it")


def _applies(connect: Connection) -> str:
    return "applied at once" if connect.remote else "a running platform applies it within a second"


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> int:
    print(json.dumps(data) if args.json else text)
    return 0


def _fail(message: str) -> int:
    print(f"arenahub admin models: {message}", file=sys.stderr)
    return 1


async def _list(args: argparse.Namespace, connect: Connection) -> int:
    view = await (await connect()).catalogue()
    if args.json:
        return _emit(args, view, "")
    names = view["client_names"]

    def who(ids: list[str]) -> str:
        return ", ".join(f"{names.get(i, '?')} ({i})" for i in ids) or "none"

    lines = [f"model catalogue: {'on' if view['enabled'] else 'off (every model a client offers is served)'}",
             "listed models:" if view["models"] else "listed models: none"]
    for m in view["models"]:
        allowed = "any client" if m["any_client"] else f"approved: {who(m['approved'])}"
        serving = f"; serving now: {who(m['serving'])}" if "serving" in m else ""
        lines.append(f"  {m['model']}  {allowed}" + (f"; refused: {who(m['refused'])}" if m["refused"] else "")
                     + serving)
    waiting = "waiting for approval" if view["enabled"] else "would wait for approval once it is on"
    lines.append(f"{waiting}: {view['pending_total']}")
    lines += [f"  {p['model']}  {p['client_name']} ({p['client_id']})" for p in view["pending"]]
    if view["refused"]:
        lines.append("refused offers of models not listed:")
        lines += [f"  {r['model']}  {r['client_name'] or '?'} ({r['client_id']})" for r in view["refused"]]
    return _emit(args, view, "\n".join(lines))


async def _add(args: argparse.Namespace, connect: Connection) -> int:
    created = await (await connect()).list_model(args.model, args.any_client)
    who = "every client that offers it" if args.any_client else "the clients approved for it"
    return _emit(args, {"model": args.model, "any_client": args.any_client, "created": created},
                 f"{args.model} is {'listed' if created else 'changed'}: {who} may serve it ({_applies(connect)})")


async def _remove(args: argparse.Namespace, connect: Connection) -> int:
    if not await (await connect()).unlist_model(args.model):
        return _fail(f"the model {args.model!r} is not listed")
    return _emit(args, {"removed": True, "model": args.model},
                 f"{args.model} is no longer listed ({_applies(connect)})")


async def _decide(args: argparse.Namespace, connect: Connection, approved: bool) -> int:
    if not await (await connect()).decide(args.model, args.client_id, approved):
        return _fail(f"no client {args.client_id!r}")
    return _emit(args, {"model": args.model, "client_id": args.client_id, "approved": approved},
                 f"{args.client_id} {'may serve' if approved else 'is refused for'} {args.model} "
                 f"({_applies(connect)})")


async def _approve(args: argparse.Namespace, connect: Connection) -> int:
    return await _decide(args, connect, True)


async def _refuse(args: argparse.Namespace, connect: Connection) -> int:
    return await _decide(args, connect, False)


async def _forget(args: argparse.Namespace, connect: Connection) -> int:
    if not await (await connect()).forget(args.model, args.client_id):
        return _fail(f"no decision about client {args.client_id!r} and the model {args.model!r}")
    return _emit(args, {"forgotten": True, "model": args.model, "client_id": args.client_id},
                 f"{args.client_id}'s offer of {args.model} waits for approval again ({_applies(connect)})")
