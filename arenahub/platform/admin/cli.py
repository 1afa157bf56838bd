"""``arenahub admin ...``: manage clients, consumer keys, credit, prices and the model catalogue, on
the platform's database or through a running platform's admin API (``target.py`` chooses; the
operations are ``operations.AdminOperations``, with ``DatabaseAdmin`` and ``RemoteAdmin``).

On the database, a running platform sees new keys and clients at once (it looks unknown keys up and
reads clients on connect), and applies changes to clients (limits, priority, drain, maintenance)
within about a second; through the admin API, changes apply at once.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from arenahub.platform.admin import fields, models_cli, package_cli
from arenahub.platform.admin.fields import flag
from arenahub.platform.admin.operations import AdminError, not_over_api
from arenahub.platform.admin.target import Connection, choose
from arenahub.platform.billing import Price, format_usd, parse_usd
from arenahub.platform.client_package import DEFAULT_BRIDGE_URL
from arenahub.platform.dashboard import password_cli

# A command: reads its arguments, checks them, then opens its target with ``await connect()``.
Work = Callable[[argparse.Namespace, Connection], Awaitable[int]]
APPLIES = {False: "a running platform applies it within a second", True: "applied at once"}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admin = sub.add_parser("admin", help="manage clients, keys, credit, prices, models, usage",
                           description="Manage clients, consumer keys, credit and prices, usage, the model catalogue "
                           "and the dashboard password: in the platform's database, or through a running platform's "
                           "admin API with --platform-url.")
    cmds = admin.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")

    # A client's flags are checked with the types the admin API checks its fields with (fields.py).
    cc = _command(cmds, "create-client", "register a client; prints its client_id and api_key once", _create_client)
    cc.add_argument("--name", required=True, type=flag(fields.Name),
                    help="the client's name, as the dashboard shows it (1 to 200 characters)")
    cc.add_argument("--email", type=flag(fields.Email), help="its owner's email (optional)")
    cc.add_argument("--bridge-url", type=flag(fields.BridgeUrl), default=DEFAULT_BRIDGE_URL,
                    help=f"where the client's bridge listens (default {DEFAULT_BRIDGE_URL})")
    cc.add_argument("--rpm", type=flag(fields.ClientRpm), help="requests per minute this client accepts")
    cc.add_argument("--max-concurrent", type=flag(fields.MaxConcurrent), default=fields.DEFAULT_MAX_CONCURRENT,
                    help=f"requests at once (default {fields.DEFAULT_MAX_CONCURRENT})")

    _command(cmds, "list-clients", "list clients (never their key hashes)", _list_clients)
    _commands(cmds, "CLIENT_ID", (
        ("show-client", "show one client as stored (the admin API adds its live state and health)", _show_client),
        ("drain-client", "the client finishes its requests in flight and gets no new ones", _drain_client),
        ("undrain-client", "let a drained client take work again", _undrain_client),
        ("clear-maintenance", "take a client out of maintenance, back into rotation", _clear_maintenance),
        ("disable-client", "refuse the client (it can be enabled again)", _disable_client),
        ("enable-client", "let a disabled client connect again", _enable_client)))
    dc = _command(cmds, "delete-client", "delete a client (its records stay); a running platform disconnects it "
                  "within a second", _delete_client, target="CLIENT_ID")
    dc.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    uc = _command(cmds, "update-client", "change a client's registration, limits, priority or weight",
                  _update_client, target="CLIENT_ID")
    uc.add_argument("--name", type=flag(fields.Name), help="a new name for the client")
    uc.add_argument("--email", type=flag(fields.Email), help="a new owner's email")
    uc.add_argument("--bridge-url", type=flag(fields.BridgeUrl), help="a new LMArenaBridge URL (default: unchanged)")
    uc.add_argument("--rpm", type=flag(fields.ClientRpm), help="requests per minute this client accepts")
    uc.add_argument("--max-concurrent", type=flag(fields.MaxConcurrent), help="requests at once")
    uc.add_argument("--priority", type=flag(fields.Priority), help="higher first (priority strategy)")
    uc.add_argument("--weight", type=flag(fields.Weight), help="share among equals (random, priority strategies)")

    # A key's flags, amounts, prices and usage filters too: the API's types, and its words when refused.
    ck = _command(cmds, "create-key", "create a consumer API key; prints it once", _create_key)
    ck.add_argument("--name", required=True, type=flag(fields.Name), help="a name to know the key by (not secret)")
    _key_settings(ck)
    ck.add_argument("--credit", type=_usd(fields.Usd), metavar="USD",
                    help="starting credit; the key then spends from its balance (default: unlimited)")

    _command(cmds, "list-keys", "list consumer keys (never their secrets)", _list_keys)
    _commands(cmds, "KEY_ID", (
        ("show-key", "show one key", _show_key),
        ("disable-key", "stop a key from working (it can be enabled again)", _disable_key),
        ("enable-key", "let a disabled key work again", _enable_key),
        ("rotate-key", "a new secret for the key, printed once; the old one stops working", _rotate_key),
        ("delete-key", "delete a key (its records stay)", _delete_key)))
    uk = _command(cmds, "update-key", "change a key's limits, models, expiry or owner", _update_key, target="KEY_ID")
    uk.add_argument("--name", type=flag(fields.Name), help="a new name for the key")
    _key_settings(uk)
    uk.add_argument("--unlimited", action=argparse.BooleanOptionalAction, default=None,
                    help="--unlimited: no credit limit; --no-unlimited: spend from the key's balance")

    tu = _command(cmds, "top-up", "add credit to a key", _top_up, target="KEY_ID")
    tu.add_argument("usd", metavar="USD", type=_usd(fields.PositiveUsd), help="amount in USD, e.g. 25 or 12.50")
    tu.add_argument("--note", type=flag(fields.Note), help="why (kept with the entry)")

    sp = _command(cmds, "set-price", "set a model's price (USD per 1M tokens, and per image)", _set_price,
                  target="MODEL", target_type=flag(fields.Name))
    sp.add_argument("--prompt", required=True, type=_usd(fields.Usd), metavar="USD_PER_1M",
                    help="USD per 1M prompt tokens")
    sp.add_argument("--completion", required=True, type=_usd(fields.Usd), metavar="USD_PER_1M",
                    help="USD per 1M completion tokens")
    sp.add_argument("--image", type=_usd(fields.Usd), default=0, metavar="USD",
                    help="USD per image in a prompt (default 0)")

    us = _command(cmds, "usage", "what keys spent and clients earned, by UTC day and model", _usage)
    us.add_argument("--key", metavar="KEY_ID", type=flag(fields.Name), help="only this key's requests")
    us.add_argument("--client", metavar="CLIENT_ID", type=flag(fields.Name), help="only requests this client served")
    us.add_argument("--since", type=_when, metavar="ISO", help="from this time (inclusive)")
    us.add_argument("--until", type=_when, metavar="ISO", help="up to this time (exclusive)")

    models = cmds.add_parser("models", help=models_cli.HELP, description=models_cli.HELP)
    models_cli.add_commands(models.add_subparsers(dest="models_command", required=True, metavar="COMMAND"), _command)

    _command(cmds, "reset-admin-token", "make a new admin token (the old one stops working); prints it once",
             _reset_admin_token)
    package_cli.add_arguments(_command(cmds, "client-package", package_cli.HELP, package_cli.run, target="CLIENT_ID",
                                       json_help=package_cli.JSON_HELP, description=package_cli.DESCRIPTION,
                                       api_flag=False))
    password_cli.add_arguments(_command(cmds, "set-dashboard-password", password_cli.HELP, password_cli.run,
                                        json_help=password_cli.JSON_HELP))


def _command(cmds: argparse._SubParsersAction[argparse.ArgumentParser], name: str, helptext: str,
             work: Work, *, target: str | None = None, target_type: Callable[[str], Any] | None = None,
             json_help: str = "print JSON", api_flag: bool = True, **parser_kw: Any) -> argparse.ArgumentParser:
    """One admin command with the flags they all take (--database-url or --platform-url, --admin-token,
    --json); ``target`` names its positional argument (``CLIENT_ID`` becomes ``args.client_id``).
    ``target_type`` checks it (an id: ``fields.Id``). ``api_flag=False``: the command has a --platform-url of
    its own (client-package)."""
    parser: argparse.ArgumentParser = cmds.add_parser(name, help=helptext, **parser_kw)
    if target:
        what = {"KEY_ID": "the key's id (key_...: list-keys shows them)",
                "CLIENT_ID": "the client's id (cl_...: list-clients shows them)"}.get(target)
        if target_type is None:  # an id is checked as the API checks its path (api.PATH_PARAMS)
            target_type = flag(fields.Id) if what else str
        parser.add_argument(target.lower(), metavar=target, type=target_type, help=what)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--database-url",
                       help="the platform's database, which must exist (default: ARENAHUB_DATABASE_URL, else "
                            "arenahub.db in the data folder: ARENAHUB_DATA_DIR, else .arenahub)")
    if api_flag:
        where.add_argument("--platform-url", dest="api_url", metavar="PLATFORM_URL",
                           help="work through this running platform's admin API instead of its database, e.g. "
                                "https://gateway.example.com (default: ARENAHUB_PLATFORM_URL, unless --database-url "
                                "is given; none: the database)")
    parser.add_argument("--admin-token", metavar="TOKEN",
                        help="the admin token for the admin API (default: ARENAHUB_ADMIN_TOKEN, which is safer: a "
                             "flag shows in ps and the shell's history)")
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.set_defaults(run=_runner(work))
    return parser


def _runner(work: Work) -> Callable[[argparse.Namespace], int]:
    """The command's ``run``: choose its target, run it, and say any failure in one line."""
    def run(args: argparse.Namespace) -> int:
        try:
            connection = Connection(choose(args.database_url, getattr(args, "api_url", None), args.admin_token))
            return asyncio.run(connection.run(lambda: work(args, connection)))
        except AdminError as exc:
            print(f"arenahub admin: {exc.message}", file=sys.stderr)
            return exc.exit_code
    return run


def _commands(cmds: argparse._SubParsersAction[argparse.ArgumentParser], target: str,
              table: tuple[tuple[str, str, Work], ...]) -> None:
    """Commands that take only ``target`` (and the common flags): (name, help, run) each."""
    for name, helptext, run in table:
        _command(cmds, name, helptext, run, target=target)


def _key_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--email", type=flag(fields.Email), help="the key owner's email")
    parser.add_argument("--rpm", type=flag(fields.PositiveInt), help="requests per minute")
    parser.add_argument("--tpm", type=flag(fields.PositiveInt), help="tokens per minute")
    parser.add_argument("--max-concurrent", type=flag(fields.PositiveInt), help="requests at once")
    parser.add_argument("--models", type=flag(fields.Models, split=","),
                        help="comma-separated models the key may use (default: all)")
    parser.add_argument("--expires", type=_when, help="ISO time the key stops working, e.g. 2026-12-31T00:00:00Z")


def _usd(kind: Any) -> Callable[[str], int]:
    """A USD flag: checked as the API checks ``kind`` (fields.Usd, PositiveUsd), in micro-USD."""
    return flag(kind, then=parse_usd)


_RFC3339 = flag(fields.When)


def _when(text: str) -> dt.datetime:
    """An RFC 3339 time with a zone, as the API takes it, or a plain date (midnight UTC)."""
    try:
        return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
    except ValueError:
        pass
    try:
        return fields.utc(_RFC3339(text))
    except argparse.ArgumentTypeError as exc:  # the API's words, and the other form the CLI takes
        raise argparse.ArgumentTypeError(f"{exc} (or a plain date, 2026-05-01: midnight UTC)") from None


def _settings_from(args: argparse.Namespace) -> dict[str, Any]:
    values = {"email": args.email, "rpm": args.rpm, "tpm": args.tpm, "max_concurrent": args.max_concurrent,
              "allowed_models": args.models, "expires_at": args.expires,
              "unlimited": getattr(args, "unlimited", None)}
    if getattr(args, "name", None):
        values["name"] = args.name
    return {k: v for k, v in values.items() if v is not None}


def _emit(args: argparse.Namespace, data: Any, text: str) -> int:
    if args.json or text:
        print(json.dumps(data) if args.json else text)
    return 0


def _fail(message: str, code: int = 1) -> int:
    print(f"arenahub admin: {message}", file=sys.stderr)
    return code


# -- consumer keys, prices, usage

async def _create_key(args: argparse.Namespace, connect: Connection) -> int:
    settings = _settings_from(args)
    settings.pop("name", None)
    made = await (await connect()).create_key(args.name, settings, args.credit)
    data: dict[str, Any] = {"key": made["key"], "key_id": made["key_id"]}
    text = f"key_id: {made['key_id']}\nkey:    {made['key']}\n(the key is shown only now)"
    if args.credit is not None:
        data["credit_usd"] = format_usd(args.credit)
        text += f"\ncredit: {format_usd(args.credit)} USD"
    return _emit(args, data, text)


def _no_key(key_id: str) -> str:
    """What a key command says of an id it did not find; a key's secret given instead is not repeated."""
    if key_id.startswith("sk-"):
        return "that is a key's secret, not its id: key commands take the id (key_...), which list-keys shows"
    return f"no key {key_id!r}"


def _print_key(args: argparse.Namespace, key: dict[str, Any] | None) -> int:
    if key is None:
        return _fail(_no_key(args.key_id))
    return _emit(args, key, "\n".join(f"{k}: {_plain(v)}" for k, v in key.items()))


async def _list_keys(args: argparse.Namespace, connect: Connection) -> int:
    keys = await (await connect()).list_keys()
    return _emit(args, keys, "\n".join(f"{k['id']}  {k['key_prefix']}...  "
                                       f"{'disabled' if k['disabled'] else 'active':8}  {k['name']}" for k in keys))


async def _show_key(args: argparse.Namespace, connect: Connection) -> int:
    return _print_key(args, await (await connect()).show_key(args.key_id))


async def _change(args: argparse.Namespace, connect: Connection, **changes: Any) -> int:
    return _print_key(args, await (await connect()).update_key(args.key_id, changes))


async def _update_key(args: argparse.Namespace, connect: Connection) -> int:
    return await _change(args, connect, **_settings_from(args))


async def _disable_key(args: argparse.Namespace, connect: Connection) -> int:
    return await _change(args, connect, disabled=True)


async def _enable_key(args: argparse.Namespace, connect: Connection) -> int:
    return await _change(args, connect, disabled=False)


async def _rotate_key(args: argparse.Namespace, connect: Connection) -> int:
    key = await (await connect()).rotate_key(args.key_id)
    if key is None:
        return _fail(_no_key(args.key_id))
    return _emit(args, {"key": key, "key_id": args.key_id}, f"key: {key}\n(shown only now; the old secret stops "
                 "working)")


async def _delete_key(args: argparse.Namespace, connect: Connection) -> int:
    if not await (await connect()).delete_key(args.key_id):
        return _fail(_no_key(args.key_id))
    return _emit(args, {"deleted": True, "key_id": args.key_id}, f"deleted {args.key_id}")


async def _top_up(args: argparse.Namespace, connect: Connection) -> int:
    result = await (await connect()).top_up(args.key_id, args.usd, args.note)
    if result is None:
        return _fail(_no_key(args.key_id))
    applies = "applied at once" if connect.remote else "a running platform applies it within a second or two"
    return _emit(args, result, f"topped up {args.key_id} by {result['amount_usd']} USD; balance "
                 f"{result['credit']['balance_usd']} USD ({applies})")


async def _set_price(args: argparse.Namespace, connect: Connection) -> int:
    model = args.model
    price = Price(args.prompt, args.completion, args.image)
    await (await connect()).set_price(model, price)
    usd = price.as_usd()
    return _emit(args, {"model": model, **{f"{k}_usd": v for k, v in usd.items()}},
                 f"{model}: {usd['prompt_per_1m']} USD per 1M prompt tokens, {usd['completion_per_1m']} USD per 1M "
                 f"completion tokens, {usd['per_image']} USD per image")


async def _usage(args: argparse.Namespace, connect: Connection) -> int:
    wrong = fields.period_problem(args.since, args.until)  # the API's check of the period
    if wrong is not None:
        print(f"arenahub admin usage: {wrong}", file=sys.stderr)
        return 2
    report = await (await connect()).usage(args.key, args.client, args.since, args.until)
    if args.json:
        return _emit(args, report, "")
    for title, field, lines in (("By key", "key_id", report["by_key"]), ("By client", "client_id",
                                                                        report["by_client"])):
        print(f"{title}:")
        if not lines:
            print("  (no served requests)")
        for ln in lines:
            print(f"  {ln[field]:24} {ln['day']}  {ln['model'][:32]:32} {ln['requests']:>8} req "
                  f"{ln['total_tokens']:>10} tok {ln['cost_usd']:>12} USD")
    t = report["total"]
    print(f"Total: {t['requests']} requests, {t['total_tokens']} tokens, {t['cost_usd']} USD")
    return 0


async def _reset_admin_token(args: argparse.Namespace, connect: Connection) -> int:
    if connect.remote:  # a lost token is what this is for: it goes to the database, where no token is needed
        raise not_over_api("reset-admin-token")
    token = await (await connect()).reset_admin_token()
    return _emit(args, {"admin_token": token}, f"admin token: {token}\n(shown only now; a running platform takes "
                 "it within a second)")


# -- clients

async def _create_client(args: argparse.Namespace, connect: Connection) -> int:
    client_id, api_key = await (await connect()).create_client(args.name, args.email, args.bridge_url, args.rpm,
                                                               args.max_concurrent)
    return _emit(args, {"client_id": client_id, "api_key": api_key}, f"client_id: {client_id}\napi_key:   "
                 f"{api_key}\n(the api_key is shown only now; store it in config.jsonc)")


async def _list_clients(args: argparse.Namespace, connect: Connection) -> int:
    found = await (await connect()).list_clients()
    lines = []
    for c in found:
        state = "disabled" if c["disabled"] else "maintenance" if c["maintenance_reason"] else (
            "draining" if c["draining"] else "active")
        version = (c["version"] or "?") + (" (outdated)" if c["outdated"] else "")
        lines.append(f"{c['id']}  {state:11}  priority {c['priority']:>5}  weight {c['weight']:>4}  version "
                     f"{version:18}  {c['name']}")
    return _emit(args, found, "\n".join(lines))


async def _delete_client(args: argparse.Namespace, connect: Connection) -> int:
    if not args.yes and not sys.stdin.isatty():
        print("arenahub admin delete-client: pass --yes to delete without a terminal to confirm on", file=sys.stderr)
        return 2
    admin = await connect()
    client = await admin.show_client(args.client_id)
    if client is None:
        return _fail(f"no client {args.client_id!r}")
    if not args.yes and not _confirm(f"Delete client {client['id']} ({client['name']})? Its request records "
                                     "stay. [y/N] "):
        print("arenahub admin delete-client: not deleted", file=sys.stderr)
        return 1
    if not await admin.delete_client(args.client_id):
        return _fail(f"no client {args.client_id!r}")
    told = "it is disconnected" if connect.remote else "a running platform disconnects it within a second"
    return _emit(args, {"deleted": True, "id": args.client_id},
                 f"deleted client {args.client_id} ({client['name']}); {told}")


def _confirm(question: str) -> bool:
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _plain(value: Any) -> str:
    """A value as a person reads it: nested ones as JSON (true, null), not as Python writes them."""
    if isinstance(value, (dict, list, bool)) or value is None:
        return json.dumps(value, default=str)
    return str(value)


def _print_client(args: argparse.Namespace, connect: Connection, client: dict[str, Any] | None,
                  changed: bool = True) -> int:
    if client is None:
        return _fail(f"no client {args.client_id!r}")
    text = "\n".join(f"{k}: {_plain(v)}" for k, v in client.items())
    return _emit(args, client, text + (f"\n({APPLIES[connect.remote]})" if changed else ""))


async def _show_client(args: argparse.Namespace, connect: Connection) -> int:
    return _print_client(args, connect, await (await connect()).show_client(args.client_id), changed=False)


async def _update_client(args: argparse.Namespace, connect: Connection) -> int:
    values = {"name": args.name, "email": args.email, "bridge_url": args.bridge_url, "rpm": args.rpm,
              "max_concurrent": args.max_concurrent, "priority": args.priority, "weight": args.weight}
    changes = {k: v for k, v in values.items() if v is not None}
    return _print_client(args, connect, await (await connect()).update_client(args.client_id, changes),
                         changed=bool(changes))


async def _drain_client(args: argparse.Namespace, connect: Connection) -> int:
    return _print_client(args, connect, await (await connect()).set_draining(args.client_id, True))


async def _undrain_client(args: argparse.Namespace, connect: Connection) -> int:
    return _print_client(args, connect, await (await connect()).set_draining(args.client_id, False))


async def _clear_maintenance(args: argparse.Namespace, connect: Connection) -> int:
    return _print_client(args, connect, await (await connect()).clear_maintenance(args.client_id))


async def _disable_client(args: argparse.Namespace, connect: Connection) -> int:
    return _print_client(args, connect, await (await connect()).update_client(args.client_id, {"disabled": True}))


async def _enable_client(args: argparse.Namespace, connect: Connection) -> int:
    return _print_client(args, connect, await (await connect()).update_client(args.client_id, {"disabled": False}))
