"""``arenahub bridge ...`` and ``arenahub userscript``: the bridge's commands (a documented contract)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arenahub.cli import port

if TYPE_CHECKING:
    from arenahub.bridge.config import BridgeFiles

BRIDGE_URL_HELP = "the running bridge (default %(default)s)"
DEFAULT_BRIDGE = "http://127.0.0.1:5102"


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser("bridge", help="run the LMArena bridge (OpenAI API on 127.0.0.1:5102)")
    b.add_argument("--config", help="config.jsonc (models.json and model_endpoint_map.json beside it)")
    b.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: keep it local)")
    b.add_argument("--port", type=port, default=5102, help="port to listen on (default 5102)")
    b.set_defaults(run=_run_bridge)
    cmds = b.add_subparsers(dest="bridge_command", metavar="COMMAND")

    c = cmds.add_parser("capture-ids",
                        help="legacy-retry mode: capture session_id/message_id from the arena.ai tab (id_updater)")
    c.add_argument("--config", default=argparse.SUPPRESS, help="config.jsonc to write the ids into")
    c.add_argument("--mode", choices=["direct_chat", "battle"], help="default: id_updater_last_mode")
    c.add_argument("--target", type=str.upper, choices=["A", "B"],
                   help="battle target (default: id_updater_battle_target)")
    c.add_argument("--bridge-url", default=DEFAULT_BRIDGE, help=BRIDGE_URL_HELP)
    c.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the click (default 300)")
    c.set_defaults(run=_capture_ids)

    u = cmds.add_parser("update-models", help="write models.json from the models the arena.ai page offers")
    u.add_argument("--config", default=argparse.SUPPRESS, help="config.jsonc (files are written beside it)")
    u.add_argument("--bridge-url", default=DEFAULT_BRIDGE, help=BRIDGE_URL_HELP)
    u.add_argument("--write-models", action="store_true",
                   help="kept for older scripts: models.json is always written now (see --dry-run)")
    u.add_argument("--dry-run", action="store_true", help="only print what would change; write nothing")
    u.set_defaults(run=_update_models)

    d = cmds.add_parser("doctor", help="check the arena.ai tab item by item, then make one tiny real call")
    d.add_argument("--config", default=argparse.SUPPRESS, help="config.jsonc (for the bridge's api_key)")
    d.add_argument("--bridge-url", default=DEFAULT_BRIDGE, help=BRIDGE_URL_HELP)
    d.add_argument("--no-call", action="store_true", help="skip the real call (it spends one arena.ai message)")
    d.add_argument("--json", action="store_true", help="print the result as JSON")
    d.set_defaults(run=_doctor)

    s = sub.add_parser("userscript", help="print the Tampermonkey userscript")
    s.add_argument("--bridge-url", default="ws://127.0.0.1:5102/ws", help="the bridge's WebSocket (default ws://127.0.0.1:5102/ws)")
    s.set_defaults(run=_print_userscript)


def _fail(message: str, code: int = 1) -> int:
    print(f"arenahub bridge: {message}", file=sys.stderr)
    return code


def _load(config: str | None) -> BridgeFiles:
    """The bridge's files, quietly: what is missing (models.json, before update-models writes it) is the running
    bridge's to report, not this command's."""
    import logging

    from arenahub.bridge.config import load_bridge_files
    if not config:
        raise ValueError("--config is required")
    logging.getLogger("arenahub.bridge.config").setLevel(logging.ERROR)
    return load_bridge_files(Path(config))


def _run_bridge(args: argparse.Namespace) -> int:
    from arenahub import logs, serving
    from arenahub.bridge.runtime import Bridge
    from arenahub.bridge.server import create_app
    from arenahub.client.config import load_client_config_or_disabled
    from arenahub.jsonc import ConfigError

    if not args.config:
        return _fail("--config is required (the LMArenaBridge config.jsonc)", 2)
    try:
        bridge = Bridge(Path(args.config))
        client_config = load_client_config_or_disabled(args.config)
    except ConfigError as exc:
        return _fail(f"bad config: {exc}", 2)
    logs.configure_logging(client_config.log_level if client_config.enabled else "INFO")
    for warning in client_config.warnings:  # keys nothing reads: typos, most likely
        logging.getLogger("arenahub.client").warning("%s", warning)
    return serving.run(create_app(bridge, client_config, args.port), args.host, args.port, "info",
                       command="arenahub bridge")


def _call(base: str, method: str, path: str, body: dict[str, Any] | None = None, api_key: str | None = None,
          timeout: float = 40.0) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base.rstrip("/") + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code}"
        raise RuntimeError(message) from None
    except (urllib.error.URLError, OSError) as exc:
        raise RuntimeError(f"cannot reach the bridge at {base} ({exc}); is `arenahub bridge --config ...` "
                           "running?") from None


def _capture_ids(args: argparse.Namespace) -> int:
    from arenahub.bridge.config_edit import set_values
    from arenahub.jsonc import ConfigError

    try:
        files = _load(getattr(args, "config", None))
    except (ConfigError, ValueError) as exc:
        return _fail(str(exc), 2)
    mode = args.mode or files.config.id_updater_last_mode
    target = (args.target or files.config.id_updater_battle_target).upper()  # "A"/"B", as users' files have it
    key = files.config.api_key or None
    try:
        armed = _call(args.bridge_url, "POST", "/internal/start_id_capture", {"mode": mode, "target": target}, key)
        battle = mode == "battle"
        print(f"Capture armed in {armed['tabs']} tab(s), mode {mode}" + (f", target {target}" if battle else "")
              + ".\nIn the arena.ai tab, click Retry on an answer" + (f" (the {target} side)" if battle else "")
              + "; waiting...", flush=True)
        deadline = time.monotonic() + args.timeout
        result: dict[str, Any] = {"captured": False}
        while not result.get("captured") and time.monotonic() < deadline:
            wait = max(1, min(25, int(deadline - time.monotonic())))
            result = _call(args.bridge_url, "GET", f"/internal/id_capture?wait={wait}", None, key, timeout=wait + 15)
    except RuntimeError as exc:
        return _fail(str(exc))
    if not result.get("captured"):
        return _fail(f"no ids captured within {args.timeout:g} s: click Retry on an answer in the arena.ai tab")
    set_values(Path(args.config), {"session_id": result["session_id"], "message_id": result["message_id"],
                                   "id_updater_last_mode": mode, "id_updater_battle_target": target})
    try:
        _call(args.bridge_url, "POST", "/internal/reload", {}, key)
    except RuntimeError as exc:
        print(f"warning: the ids are saved, but the bridge did not reload its config: {exc}", file=sys.stderr)
    print(f"Saved to {args.config}: session_id {result['session_id']}, message_id {result['message_id']}")
    return 0


def _update_models(args: argparse.Namespace) -> int:
    from arenahub import jsonc
    from arenahub.bridge.lmarena import Model, models_json_text
    from arenahub.jsonc import ConfigError

    try:
        files = _load(getattr(args, "config", None))
    except (ConfigError, ValueError) as exc:
        return _fail(str(exc), 2)
    try:
        answer = _call(args.bridge_url, "POST", "/internal/request_model_update", {}, files.config.api_key or None)
    except RuntimeError as exc:
        return _fail(str(exc))
    offered: dict[str, str] = answer["models"]
    every: list[dict[str, Any]] = answer.get("all", [])
    folder = Path(args.config).parent
    models_path = folder / "models.json"
    current = jsonc.load(models_path) if models_path.exists() else {}
    current = current if isinstance(current, dict) else {}
    page_ids = {m["model_id"] for m in every}
    # Kept: the owner's own names for models the page still lists, and "null:..." entries; dropped: ids the
    # page no longer lists at all (arena.ai retired them: asking for them would fail).
    kept, dropped = {}, []
    for name, value in current.items():
        if name in offered:
            continue
        try:
            model = Model.parse(name, value)
        except ValueError:
            dropped.append(name)
            continue
        if model.model_id is None or model.model_id in page_ids:
            kept[name] = value
        else:
            dropped.append(name)
    added = sorted(n for n in offered if n not in current)
    changed = sorted(n for n in offered if n in current and current[n] != offered[n])
    hidden = sum(1 for m in every if not m["selectable"])
    video = sorted(m["name"] for m in every if m["selectable"] and m["kind"] is None)
    left_out = ([f"{hidden} not selectable"] if hidden else []) + (
        [f"{len(video)} that only make{'s' if len(video) == 1 else ''} video, which chat cannot serve "
         f"({', '.join(video)})"] if video else [])
    print(f"The page offers {len(offered)} model(s) a person can select and the bridge can serve"
          + (f"; left out: {'; '.join(left_out)}" if left_out else "") + ".")
    for label, names in (("new", added), ("changed id", changed), ("removed (no longer on arena.ai)", dropped)):
        if names:
            print(f"  {label}: " + ", ".join(names))
    if args.dry_run:
        print("--dry-run: nothing written.")
        return 0
    _write_whole(folder / "available_models.json", json.dumps(every, indent=2, ensure_ascii=False) + "\n")
    _write_whole(models_path, models_json_text(offered, kept))
    print(f"Wrote {models_path} ({len(offered) + len(kept)} models) and {folder / 'available_models.json'}.")
    try:  # the bridge would see the new file within a second anyway; this makes it now, and says so
        reloaded = _call(args.bridge_url, "POST", "/internal/reload", {}, files.config.api_key or None)
    except RuntimeError as exc:
        print(f"warning: the bridge did not reload its files: {exc}", file=sys.stderr)
        return 1
    print(f"The bridge at {args.bridge_url} serves {reloaded.get('models', 0)} model(s) now.")
    return 0


def _write_whole(path: Path, text: str) -> None:
    """Replace the file in one step: the running bridge never reads half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _doctor(args: argparse.Namespace) -> int:
    """Exit 0 when the bridge can work, 1 when a check fails, 2 for a bad config or no bridge."""
    from arenahub.jsonc import ConfigError

    key = None
    if getattr(args, "config", None):
        try:
            key = _load(args.config).config.api_key or None
        except (ConfigError, ValueError) as exc:
            return _fail(str(exc), 2)
    try:
        result = _call(args.bridge_url, "POST", "/internal/doctor", {"probe": not args.no_call}, key, timeout=150)
    except RuntimeError as exc:
        return _fail(str(exc), 2)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0 if result["ok"] else 1
    marks = {True: "ok  ", False: "FAIL", None: "warn"}
    items = list(result["checks"]) + ([result["call"]] if result.get("call") else [])
    for item in items:
        print(f"[{marks[item['ok']]}] {item['name']:<11} {item['detail']}")
        if item.get("ok") is not True and item.get("advice"):
            print(f"       {'':<11} -> {item['advice']}")
    if result.get("call") is None and not args.no_call and not result["ok"]:
        print("[skip] call        not made: fix the failures above first")
    print(f"\nstate: {result['state']}" + (f" - {result['action']}" if result.get("action") else ""))
    print("The bridge can work." if result["ok"] else "The bridge cannot work until the failures above are fixed.")
    return 0 if result["ok"] else 1


def _print_userscript(args: argparse.Namespace) -> int:
    from arenahub.bridge.userscript import render
    try:
        sys.stdout.write(render(args.bridge_url))
    except ValueError as exc:
        print(f"arenahub userscript: {exc}", file=sys.stderr)
        return 2
    return 0
