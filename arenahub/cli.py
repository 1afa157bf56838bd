"""The ``arenahub`` command. Subcommands and flags are a documented contract (README, tests/test_cli.py)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from arenahub import __version__

DESCRIPTION = ("arenahub: an OpenAI-compatible AI API gateway (platform), the clients that serve it, and the "
               "LMArena bridge. Run `arenahub COMMAND --help` for a command's options; the README has the rest.")


class FromEnvironment(str):
    """A flag's default read from an ``ARENAHUB_*`` variable: a bad one is then named in the error."""

    variable = ""


def _env(name: str, default: str | None = None) -> str | None:
    raw = os.environ.get("ARENAHUB_" + name)
    if raw is None:
        return default
    value = FromEnvironment(raw)
    value.variable = "ARENAHUB_" + name
    return value


def port(value: str) -> int:
    """An argparse type: a TCP port, 1 to 65535 (99999 would listen on a port the system picks)."""
    where = f"{value.variable}: " if isinstance(value, FromEnvironment) else ""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{where}{value!r} is not a port number") from None
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{where}{number} is not a port: ports are 1 to 65535")
    return number


def instances(value: str) -> int:
    """An argparse type: how many platform instances the demo runs, 1 to 9."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 1 <= number <= 9:
        raise argparse.ArgumentTypeError(f"{number} instances: the demo runs 1 to 9")
    return number


SIMULATOR_EPILOG = """\
Attaching a browser tab (the userscript only runs on https://arena.ai, so the simulator must be
served under that name):
  1. arenahub simulate-lmarena --tls              (HTTPS with a self-signed certificate for
                                                  arena.ai; needs: pip install cryptography)
  2. arenahub bridge --config config.jsonc       (the bridge, on 127.0.0.1:5102)
  3. install the userscript in the browser: arenahub userscript > arenahub.user.js, then add it to
     Tampermonkey (or inject it, as Playwright's page.add_init_script does)
  4. start Chromium with arena.ai resolving to the simulator, and open it:
       chromium --host-resolver-rules="MAP arena.ai 127.0.0.1:5180" --ignore-certificate-errors \\
         https://arena.ai/
  The bridge logs "tab ... connected"; GET http://127.0.0.1:5102/bridge/status shows its checks.
  `arenahub demo` does all of this in a headless Chromium.

GET /__sim/ on the running simulator describes the site and its control API (scripted answers,
sign-out, Cloudflare, reCAPTCHA, builds)."""


class _CommandList(argparse.HelpFormatter):
    """Each command's name and its one-line help side by side, the longest name ("simulate-lmarena") too
    (argparse measures the names one indent short)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=26)
        self._action_max_length = 22


# Commands whose parser needs nothing heavy: a run of one of them skips building the admin and bridge commands'
# parsers (importing them costs most of a second, paid by every start of a client or a local upstream).
LIGHT_COMMANDS = ("platform", "client", "local-upstream", "demo", "simulate-lmarena")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser; ``only``: one of LIGHT_COMMANDS, when that is the command being run."""
    parser = argparse.ArgumentParser(prog="arenahub", description=DESCRIPTION, formatter_class=_CommandList)
    parser.add_argument("--version", action="version", version=f"arenahub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("platform", help="run the platform (the central gateway)")
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"),
                   help="address to listen on (default: ARENAHUB_HOST, else 127.0.0.1)")
    p.add_argument("--port", type=port, default=_env("PORT", "8080") or "8080",
                   help="port to listen on (default: ARENAHUB_PORT, else 8080)")
    p.add_argument("--database-url", default=_env("DATABASE_URL"),
                   help="sqlite:///path.db or postgresql+asyncpg://... (default: ARENAHUB_DATABASE_URL, else "
                        "arenahub.db in the data folder: ARENAHUB_DATA_DIR, else .arenahub)")
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "info"),
                   help="debug, info, warning or error (default: ARENAHUB_LOG_LEVEL, else info)")
    p.add_argument("--redis-url", default=_env("REDIS_URL"),
                   help="redis://HOST:PORT/DB: join the cluster of instances sharing this Redis and a PostgreSQL "
                        "--database-url (default: ARENAHUB_REDIS_URL, else none: one instance)")
    p.add_argument("--instance-id", default=_env("INSTANCE_ID"),
                   help="this instance's name in logs, health and the dashboard (default: ARENAHUB_INSTANCE_ID, "
                        "else host-pid-xxxx)")
    p.add_argument("--advertise-url", default=_env("ADVERTISE_URL"),
                   help="where the other instances of a cluster reach this one (default: ARENAHUB_ADVERTISE_URL, "
                        "else http://HOST:PORT)")
    p.set_defaults(run=_run_platform)

    c = sub.add_parser("client", help="run a client: connect a bridge to the platform")
    c.add_argument("--config", required=True, help="config.jsonc with a platform_integration section")
    c.add_argument("--host", default="127.0.0.1", help="address of the local endpoints (default 127.0.0.1)")
    c.add_argument("--port", type=port, default=5103, help="port of the local endpoints (default 5103)")
    c.set_defaults(run=_run_client)

    u = sub.add_parser("local-upstream", help="run a local OpenAI-compatible echo upstream (tests)")
    u.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    u.add_argument("--port", type=port, default=5102, help="port to listen on (default 5102, the bridge's)")
    u.add_argument("--models", default="arena-echo", help="comma-separated model names (default arena-echo)")
    u.add_argument("--name", default="local-upstream",
                   help="the name it gives on /health and as the models' owner (default local-upstream)")
    u.set_defaults(run=_run_local_upstream)

    d = sub.add_parser("demo", help="everything on this machine, then a streamed answer")
    d.add_argument("--port", type=port, default=8080, help="platform port (default 8080)")
    d.add_argument("--upstream", choices=["real", "local"], default="real",
                   help="real: bridge + userscript in headless Chromium + LMArena simulator (default); "
                        "local: the fast local upstream")
    d.add_argument("--bridge-port", type=port, default=5102, help="the bridge's port (default 5102)")
    d.add_argument("--simulator-port", type=port, default=5180, help="the arena.ai simulator's port (default 5180)")
    d.add_argument("--client-port", type=port, default=5103,
                   help="with --upstream local: the client's local endpoints (default 5103)")
    d.add_argument("--upstream-port", type=port, default=5102,
                   help="with --upstream local: the local upstream, in the bridge's place (default 5102)")
    d.add_argument("--instances", type=instances, default=1,
                   help="2 to 9: the platform as a cluster of that many instances (ports --port+1 on) on a "
                        "private PostgreSQL and Redis, behind HAProxy on --port (default 1: one platform)")
    d.add_argument("--once", action="store_true", help="exit after the first streamed answer")
    d.set_defaults(run=_run_demo)

    s = sub.add_parser("simulate-lmarena", help="a local arena.ai simulator, to try the bridge on",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SIMULATOR_EPILOG)
    s.add_argument("--protocol", choices=["2026", "2025"], default="2026",
                   help="2026: arena.ai as of late 2026 (default); 2025: the older lmarena.ai retry-only simulator")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=port, default=5180, help="port (default 5180)")
    s.add_argument("--tls", action="store_true",
                   help="serve HTTPS with a self-signed certificate for arena.ai, lmarena.ai, localhost, 127.0.0.1")
    s.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (with --tls-key)")
    s.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert")
    s.add_argument("--models", metavar="FILE", help="a JSON model list (a list, or {\"models\": [...]})")
    s.set_defaults(run=_run_simulate_lmarena)

    if only in LIGHT_COMMANDS:
        return parser
    from arenahub.bridge import cli as bridge_cli
    from arenahub.platform.admin import cli as admin_cli
    admin_cli.add_parser(sub)
    bridge_cli.add_parsers(sub)
    return parser


def _run_platform(args: argparse.Namespace) -> int:
    import asyncio

    from arenahub import connections, logs, serving
    from arenahub.platform import preflight
    from arenahub.platform.app import create_app
    from arenahub.platform.runtime import Platform
    from arenahub.platform.settings import PlatformSettings
    from arenahub.protocol import frames

    try:
        settings = PlatformSettings.from_env(host=args.host, port=args.port, database_url=args.database_url,
                                             log_level=args.log_level, redis_url=args.redis_url,
                                             instance_id=args.instance_id, advertise_url=args.advertise_url)
        settings.resolved_database_url  # noqa: B018 - validate the URL before starting
        limits = connections.ServerLimits(
            header_timeout_seconds=settings.header_timeout_seconds, body_timeout_seconds=settings.body_timeout_seconds,
            body_min_bytes_per_second=settings.body_min_bytes_per_second,
            max_connections_per_address=settings.max_connections_per_address, max_connections=settings.max_connections,
            # A cluster's peer link carries whole consumer requests (cluster/peers.py); the tunnel keeps its
            # own limit on what a client sends (tunnel._receive_message).
            max_message_bytes=max(frames.MAX_FRAME_BYTES, settings.max_body_bytes + 64 * 1024) if settings.redis_url
            else frames.MAX_FRAME_BYTES)
    except ValueError as exc:
        print(f"arenahub platform: {exc}", file=sys.stderr)
        return 2
    if (problem := asyncio.run(preflight.problem(settings))) is not None:
        print(f"arenahub platform: {problem}", file=sys.stderr)
        return 1
    platform = Platform(settings)
    logs.configure_logging(settings.log_level, platform.instance_id if settings.redis_url else "")

    async def drain() -> None:
        await platform.drain()

    return serving.run(create_app(settings, platform), settings.host, settings.port, settings.log_level, drain,
                       limits, command="arenahub platform")


def _run_client(args: argparse.Namespace) -> int:
    from arenahub.client.app import serve
    from arenahub.client.config import load_client_config
    from arenahub.jsonc import ConfigError

    try:
        config = load_client_config(args.config)
    except ConfigError as exc:
        print(f"arenahub client: bad config: {exc}", file=sys.stderr)
        return 2
    return serve(config, args.host, args.port)


def _run_local_upstream(args: argparse.Namespace) -> int:
    from arenahub import logs, serving
    from arenahub.tools.local_upstream import create_app

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        print("arenahub local-upstream: --models must name at least one model", file=sys.stderr)
        return 2
    logs.configure_logging("info")
    announce = (f"arenahub local-upstream: an OpenAI-compatible API at http://{args.host}:{args.port}/v1 "
                f"answering {', '.join(models)} (a scripted echo, for demos, tests and the benchmark)")
    return serving.run(create_app(models, args.name, announce), args.host, args.port, "warning",
                       command="arenahub local-upstream", graceful_seconds=1.0)


def _run_demo(args: argparse.Namespace) -> int:
    from arenahub.tools.demo import run_demo
    return run_demo(args)


def _run_simulate_lmarena(args: argparse.Namespace) -> int:
    from arenahub.tools.arena_sim import run
    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
