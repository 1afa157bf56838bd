"""The bridge's files as the existing LMArenaBridge keeps them: config.jsonc, and beside it models.json
and model_endpoint_map.json. A user's existing files work unchanged; a broken one is an error naming
the file, the line and the key, never a silently empty list.
"""

from __future__ import annotations

import json
import logging
import random
from bisect import bisect_right
from dataclasses import dataclass, field, replace
from json.decoder import scanstring  # type: ignore[attr-defined]  # there at run time; typeshed leaves it out
from pathlib import Path
from typing import Any

from arenahub import jsonc
from arenahub.bridge.lmarena import MODES, POSITIONS, Endpoint, Mode, Model, Position, is_uuid
from arenahub.bridge.lmarena.task import ArenaSettings
from arenahub.client.config import read_allowed_origins
from arenahub.jsonc import ConfigError
from arenahub.protocol.errors import ApiError

MODELS_FILE = "models.json"
ENDPOINT_MAP_FILE = "model_endpoint_map.json"
CAPTURE = "`arenahub bridge capture-ids --config config.jsonc`"
log = logging.getLogger("arenahub.bridge.config")

_NO_FILE_BED = "attachments go to LMArena as data URIs or URLs; arenahub has no file bed"
_NO_RESTART = "arenahub does not restart itself; tabs reconnect on their own"
_NO_LOG_SWITCH = "arenahub logs through Python logging; this switch does nothing here"
_NO_HANGING = "arenahub keeps no keep-alive pool"
# Keys of the existing bridge (current and older versions) that arenahub reads but does not act on.
IGNORED_KEYS = {
    "version": "the existing bridge's own version, used by its updater",
    "enable_auto_update": "arenahub never updates itself from GitHub; a new client package brings a new version",
    "file_bed_enabled": _NO_FILE_BED, "file_bed_upload_url": _NO_FILE_BED, "file_bed_api_key": _NO_FILE_BED,
    "enable_idle_restart": _NO_RESTART, "idle_restart_timeout_seconds": _NO_RESTART,
    "api_port": "give the port as `arenahub bridge --port`",
    "worker_ports": "one bridge serves any number of tabs; there are no worker ports",
    "enable_anti_bot_hanging": _NO_HANGING, "hanging_interval_seconds": _NO_HANGING,
    "log_hanging_pool_activity": _NO_HANGING,
    "enable_comprehensive_logging": _NO_LOG_SWITCH, "log_server_requests": _NO_LOG_SWITCH,
    "log_tampermonkey_debug": _NO_LOG_SWITCH,
}
# Read by the client from the same file (arenahub.client.config); of these the bridge itself acts
# only on platform_features.allowed_origins (CORS on its HTTP endpoints).
CLIENT_KEYS = ("platform_integration", "platform_features", "lmarena_bridge_url")


UPSTREAM_APIS = ("create-evaluation", "legacy-retry")
ARENA_MODES = ("direct", "direct-battle", "side-by-side", "battle")


class SessionNotCaptured(ApiError):
    status = 503
    type = "service_unavailable_error"
    code = "session_not_captured"


class ModelNotMapped(ApiError):
    status = 503
    type = "service_unavailable_error"
    code = "model_not_mapped"


@dataclass(frozen=True)
class BridgeConfig:
    """config.jsonc, with every key of the existing bridge. Battle targets are kept lower-case."""

    path: Path
    session_id: str = ""
    message_id: str = ""
    id_updater_last_mode: Mode = "direct_chat"
    id_updater_battle_target: Position = "a"
    bypass_enabled: bool = False
    tavern_mode_enabled: bool = False
    use_default_ids_if_mapping_not_found: bool = True
    stream_response_timeout_seconds: float = 360.0
    api_key: str = field(default="", repr=False)
    # arena.ai 2026: how conversations start (see README, "The bridge's config.jsonc").
    upstream_api: str = "create-evaluation"  # or "legacy-retry": the 2025 retry of session_id/message_id
    arena_mode: str = "direct"  # direct, direct-battle, side-by-side, battle
    side_by_side_model: str = ""  # side b's model (a models.json name) in side-by-side
    follow_up: bool = True  # continue a conversation this bridge answered with post-to-evaluation
    allow_private_image_urls: bool = False
    platform_integration_enabled: bool = False
    allowed_origins: tuple[str, ...] = ()  # platform_features.allowed_origins, shared with the client
    # Read, never acted on (see IGNORED_KEYS):
    version: str = ""
    enable_auto_update: bool = True
    file_bed_enabled: bool = False
    file_bed_upload_url: str = ""
    file_bed_api_key: str = field(default="", repr=False)
    enable_idle_restart: bool = False
    idle_restart_timeout_seconds: float = 300.0
    ignored: tuple[tuple[str, str], ...] = ()  # (key, why) for keys in the file that change nothing

    @property
    def models_path(self) -> Path:
        return self.path.parent / MODELS_FILE

    @property
    def endpoint_map_path(self) -> Path:
        return self.path.parent / ENDPOINT_MAP_FILE

    @property
    def legacy(self) -> bool:
        """The 2025 retry path of captured ids, asked for with ``"upstream_api": "legacy-retry"``."""
        return self.upstream_api == "legacy-retry"

    @property
    def ids_captured(self) -> bool:
        return is_uuid(self.session_id) and is_uuid(self.message_id)

    def captured_endpoint(self) -> Endpoint:
        """config.jsonc's own ids; SessionNotCaptured while they are placeholders."""
        if not self.ids_captured:
            shown = self.session_id if not is_uuid(self.session_id) else self.message_id
            raise SessionNotCaptured(
                f"No LMArena session captured yet ({self.path.name} has {shown or 'an empty id'!r}): run {CAPTURE}, "
                "then click Retry on an answer in the arena.ai tab.")
        return Endpoint(self.session_id, self.message_id, self.id_updater_last_mode, self.id_updater_battle_target)

    def public(self) -> dict[str, Any]:
        """The settings without secrets, for status pages."""
        return {"config_file": str(self.path), "upstream_api": self.upstream_api, "arena_mode": self.arena_mode,
                "side_by_side_model": self.side_by_side_model or None, "follow_up": self.follow_up,
                "allow_private_image_urls": self.allow_private_image_urls, "ids_captured": self.ids_captured,
                "mode": self.id_updater_last_mode, "battle_target": self.id_updater_battle_target.upper(),
                "bypass_enabled": self.bypass_enabled, "tavern_mode_enabled": self.tavern_mode_enabled,
                "use_default_ids_if_mapping_not_found": self.use_default_ids_if_mapping_not_found,
                "stream_response_timeout_seconds": self.stream_response_timeout_seconds,
                "api_key_set": bool(self.api_key), "platform_integration_enabled": self.platform_integration_enabled,
                "allowed_origins": list(self.allowed_origins),
                "ignored_keys": [key for key, _ in self.ignored]}


@dataclass(frozen=True)
class MappedEndpoint:
    """One model_endpoint_map.json entry; mode and target fall back to config.jsonc's when absent."""

    session_id: str
    message_id: str
    mode: Mode | None = None
    battle_target: Position | None = None
    line: int | None = None


# --- Reading files, with the line of every key ---------------------------------------------------

class _Located:
    """A JSONC document with the line of every key and array element, by path (``("a", 0, "b")``)."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = path, text
        self.data = jsonc.loads(text, path)
        self.lines: dict[tuple[Any, ...], int] = {}
        self.duplicates: list[tuple[tuple[Any, ...], int, int]] = []  # (path, first line, later line)
        self._s = jsonc.strip(text)
        self._newlines = [i for i, c in enumerate(self._s) if c == "\n"]
        self._value(self._ws(0), ())

    def line(self, *path: Any) -> int | None:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path)

    def fail(self, reason: str, *path: Any, key: str | None = None) -> ConfigError:
        if key is None and path:
            key = str(path[0]) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[1:])
        return ConfigError(self.path, reason, key=key, line=self.line(*path) if path else 1)

    def check_duplicates(self, depth: int = 1) -> None:
        for path, first, later in self.duplicates:
            if len(path) <= depth:
                raise self.fail(f"appears twice (lines {first} and {later}); the later one would silently "
                                "replace the first: keep one", *path)

    def _ws(self, i: int) -> int:
        while i < len(self._s) and self._s[i] in " \t\r\n\ufeff":
            i += 1
        return i

    def _value(self, i: int, path: tuple[Any, ...]) -> int:
        s = self._s
        if s[i] == '"':
            return scanstring(s, i + 1)[1]
        if s[i] not in "{[":
            while i < len(s) and s[i] not in ",]} \t\r\n":
                i += 1
            return i
        closer, n, i = ("}" if s[i] == "{" else "]"), 0, self._ws(i + 1)
        while s[i] != closer:
            if closer == "}":
                key, j = scanstring(s, i + 1)
                member = (*path, key)
                line = bisect_right(self._newlines, i) + 1
                if member in self.lines:
                    self.duplicates.append((member, self.lines[member], line))
                self.lines[member] = line
                i = self._ws(self._ws(j) + 1)  # past the colon
            else:
                member = (*path, n)
                self.lines[member] = bisect_right(self._newlines, i) + 1
                n += 1
            i = self._ws(self._value(i, member))
            if s[i] == ",":
                i = self._ws(i + 1)
        return i + 1


def _read(path: Path, missing_hint: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(path, f"file not found: {missing_hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, f"cannot read it ({exc})") from None


# --- config.jsonc ------------------------------------------------------------------------------------

def load_bridge_config(path: Path | str) -> BridgeConfig:
    path = Path(path)
    doc = _Located(path, _read(path, "copy the existing LMArenaBridge's config.jsonc here, or write one"))
    data = doc.data
    if not isinstance(data, dict):
        raise ConfigError(path, "the file must hold a JSON object", line=1)
    for key, first, later in doc.duplicates:
        if len(key) == 1 and key[0] not in IGNORED_KEYS:
            raise doc.fail(f"appears twice (lines {first} and {later}); the later one would silently replace "
                           "the first: keep one", *key)

    def get(key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        value = data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
            names: dict[object, str] = {bool: "true or false", str: "a string"}
            wanted = names.get(kind, "a number")
            raise doc.fail(f"must be {wanted}, got {json.dumps(value, ensure_ascii=False)}", key)
        return value

    mode = get("id_updater_last_mode", str, "direct_chat").strip().lower()
    if mode not in MODES:
        raise doc.fail(f"must be 'direct_chat' or 'battle', got {mode!r}", "id_updater_last_mode")
    target = get("id_updater_battle_target", str, "A").strip().lower()
    if target not in ("a", "b"):
        raise doc.fail(f"must be 'A' or 'B', got {target.upper()!r}", "id_updater_battle_target")
    timeout = get("stream_response_timeout_seconds", (int, float), 360.0)
    if not 0 < timeout <= 86_400:
        raise doc.fail(f"must be more than 0 and at most 86400 seconds, got {timeout}",
                       "stream_response_timeout_seconds")
    upstream_api = get("upstream_api", str, "create-evaluation").strip().lower()
    if upstream_api not in UPSTREAM_APIS:
        raise doc.fail(f"must be 'create-evaluation' (the default) or 'legacy-retry', got {upstream_api!r}",
                       "upstream_api")
    arena_mode = get("arena_mode", str, "direct").strip().lower()
    if arena_mode not in ARENA_MODES:
        raise doc.fail(f"must be one of {', '.join(ARENA_MODES)}, got {arena_mode!r}", "arena_mode")
    side_by_side = get("side_by_side_model", str, "").strip()
    if arena_mode == "side-by-side" and not side_by_side:
        raise doc.fail("side-by-side needs \"side_by_side_model\": the models.json name of the model answering on "
                       "side B", "arena_mode")
    section = data.get("platform_integration")
    if section is not None and not isinstance(section, dict):
        raise doc.fail("must be an object ({\"enabled\": true, \"platform_url\": ...})", "platform_integration")
    features = data.get("platform_features")
    if features is not None and not isinstance(features, dict):
        raise doc.fail("must be an object ({\"allowed_origins\": [...], ...})", "platform_features")
    raw_origins = (features or {}).get("allowed_origins")
    origins, problem = read_allowed_origins([] if raw_origins is None else raw_origins)
    if problem is not None:
        index, reason = problem
        raise doc.fail(reason, "platform_features", "allowed_origins", *([index] if index >= 0 else []))

    def lenient(key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        value = data.get(key)
        return value if isinstance(value, kind) and isinstance(value, bool) == (kind is bool) else default

    known = {"session_id", "message_id", "id_updater_last_mode", "id_updater_battle_target", "bypass_enabled",
             "tavern_mode_enabled", "use_default_ids_if_mapping_not_found", "stream_response_timeout_seconds",
             "api_key", "upstream_api", "arena_mode", "side_by_side_model", "follow_up", "allow_private_image_urls",
             *CLIENT_KEYS}
    ignored = tuple((key, IGNORED_KEYS.get(key, "not a key of the LMArena bridge (a typo?)"))
                    for key in data if key not in known)
    return BridgeConfig(
        path=path, session_id=get("session_id", str, "").strip(), message_id=get("message_id", str, "").strip(),
        id_updater_last_mode=mode, id_updater_battle_target=target,
        bypass_enabled=get("bypass_enabled", bool, False), tavern_mode_enabled=get("tavern_mode_enabled", bool, False),
        use_default_ids_if_mapping_not_found=get("use_default_ids_if_mapping_not_found", bool, True),
        stream_response_timeout_seconds=float(timeout), api_key=get("api_key", str, ""),
        upstream_api=upstream_api, arena_mode=arena_mode, side_by_side_model=side_by_side,
        follow_up=get("follow_up", bool, True), allow_private_image_urls=get("allow_private_image_urls", bool, False),
        platform_integration_enabled=section is not None and section.get("enabled", True) is True,
        allowed_origins=origins,
        version=lenient("version", str, ""), enable_auto_update=lenient("enable_auto_update", bool, True),
        file_bed_enabled=lenient("file_bed_enabled", bool, False),
        file_bed_upload_url=lenient("file_bed_upload_url", str, ""),
        file_bed_api_key=lenient("file_bed_api_key", str, ""),
        enable_idle_restart=lenient("enable_idle_restart", bool, False),
        idle_restart_timeout_seconds=float(lenient("idle_restart_timeout_seconds", (int, float), 300)),
        ignored=ignored)


# --- models.json -------------------------------------------------------------------------------------

def load_models(path: Path | str, *, allow_empty: bool = False) -> dict[str, Model]:
    """models.json: model name -> ``"<uuid>"``, ``"<uuid>:image"`` or ``"null:image"``, in file order."""
    path = Path(path)
    doc = _Located(path, _read(path, "write it beside config.jsonc ({\"model name\": \"<model uuid>\"}) or run "
                                     "`arenahub bridge update-models` with an arena.ai tab connected"))
    if not isinstance(doc.data, dict):
        raise ConfigError(path, 'must hold a JSON object: {"model name": "<model uuid>", ...}', line=1)
    doc.check_duplicates()
    if not doc.data and not allow_empty:
        raise ConfigError(path, 'holds no models: add "model name": "<model uuid>" entries, or run '
                                "`arenahub bridge update-models` with an arena.ai tab connected", line=1)
    models = {}
    for name, value in doc.data.items():
        if not name.strip():
            raise doc.fail("a model name is empty", name)
        try:
            models[name] = Model.parse(name, value)
        except ValueError as exc:
            raise doc.fail(str(exc), name) from None
    return models


# --- model_endpoint_map.json ---------------------------------------------------------------------

def load_endpoint_map(path: Path | str) -> dict[str, tuple[MappedEndpoint, ...]]:
    """model_endpoint_map.json: model name -> one entry or a list of them (a pool). Optional: absent is {}."""
    path = Path(path)
    if not path.exists():
        return {}
    text = _read(path, "")
    if not text.strip():
        return {}
    doc = _Located(path, text)
    if not isinstance(doc.data, dict):
        raise ConfigError(path, 'must hold a JSON object: {"model name": {"session_id": ..., "message_id": ...}}',
                          line=1)
    doc.check_duplicates()
    out: dict[str, tuple[MappedEndpoint, ...]] = {}
    for name, value in doc.data.items():
        if isinstance(value, dict):
            out[name] = (_entry(doc, value, name),)
        elif isinstance(value, list) and value:
            out[name] = tuple(_entry(doc, item, name, i) for i, item in enumerate(value))
        else:
            got = "an empty list" if value == [] else json.dumps(value, ensure_ascii=False)
            raise doc.fail(f"must be an object {{\"session_id\", \"message_id\", \"mode\", \"battle_target\"}} or a "
                           f"non-empty list of them (a pool), got {got}", name)
    return out


def _entry(doc: _Located, item: Any, *path: Any) -> MappedEndpoint:
    if not isinstance(item, dict):
        raise doc.fail(f"must be an object with session_id and message_id, got {json.dumps(item)}", *path)
    ids = []
    for key in ("session_id", "message_id"):
        value = item.get(key)
        if not isinstance(value, str) or not value.strip():
            raise doc.fail("is missing: every entry needs session_id and message_id (strings)", *path, key)
        ids.append(value.strip())
    mode: Mode | None = None
    if (raw := item.get("mode")) is not None:
        name = raw.strip().lower() if isinstance(raw, str) else None
        if name not in MODES:
            raise doc.fail(f"must be 'direct_chat' or 'battle', got {json.dumps(raw)}", *path, "mode")
        mode = name
    target: Position | None = None
    if (raw := item.get("battle_target")) is not None:
        side = raw.strip().lower() if isinstance(raw, str) else None
        if side not in POSITIONS:
            raise doc.fail(f"must be 'A' or 'B', got {json.dumps(raw)}", *path, "battle_target")
        target = side
    return MappedEndpoint(ids[0], ids[1], mode, target, doc.line(*path))


# --- The three files together, and which endpoint serves a model ---------------------------------

@dataclass
class BridgeFiles:
    """config.jsonc with models.json and model_endpoint_map.json from beside it."""

    config: BridgeConfig
    models: dict[str, Model]
    endpoint_map: dict[str, tuple[MappedEndpoint, ...]]
    problems: tuple[str, ...] = ()  # loud, not fatal: e.g. no models.json yet (update-models writes it)
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def arena_settings(self) -> ArenaSettings:
        """How new conversations start (create-evaluation mode)."""
        c = self.config
        other = self.models.get(c.side_by_side_model) if c.arena_mode == "side-by-side" else None
        return ArenaSettings(mode=c.arena_mode, target=c.id_updater_battle_target,  # type: ignore[arg-type]
                             side_by_side_model=other, tavern_mode=c.tavern_mode_enabled)

    @property
    def default_endpoint(self) -> Endpoint | None:
        """config.jsonc's ids, or None while they are not captured."""
        return self.config.captured_endpoint() if self.config.ids_captured else None

    def use_default_ids(self, session_id: str, message_id: str, mode: str | None = None,
                        target: str | None = None) -> None:
        """Serve with freshly captured ids at once (config.jsonc is written separately, by config_edit)."""
        mode = (mode or self.config.id_updater_last_mode).strip().lower()
        target = (target or self.config.id_updater_battle_target).strip().lower()
        if mode not in MODES or target not in ("a", "b"):
            raise ValueError(f"mode must be direct_chat or battle and target A or B, got {mode!r}, {target!r}")
        self.config = replace(self.config, session_id=session_id.strip(), message_id=message_id.strip(),
                              id_updater_last_mode=mode, id_updater_battle_target=target)  # type: ignore[arg-type]

    def endpoint_for(self, model_name: str) -> Endpoint:
        """The model's map entry (a random usable one from a pool), else config.jsonc's ids when
        use_default_ids_if_mapping_not_found allows; a named error that says how to fix it otherwise."""
        config = self.config
        pool = self.endpoint_map.get(model_name)
        if pool:
            usable = [e for e in pool if is_uuid(e.session_id) and is_uuid(e.message_id)]
            if not usable:
                first = pool[0]
                raise SessionNotCaptured(
                    f"{ENDPOINT_MAP_FILE} maps {model_name!r} only to ids that were never captured "
                    f"({first.session_id!r}, line {first.line}): put real ids there (run {CAPTURE}, click Retry in "
                    "the arena.ai tab, and copy session_id and message_id from config.jsonc), or remove the entry.")
            e = self.rng.choice(usable)
            return Endpoint(e.session_id, e.message_id, e.mode or config.id_updater_last_mode,
                            e.battle_target or config.id_updater_battle_target)
        if not config.use_default_ids_if_mapping_not_found:
            raise ModelNotMapped(
                f"Model {model_name!r} has no entry in {ENDPOINT_MAP_FILE} and use_default_ids_if_mapping_not_found "
                f"is false in {config.path.name}: add an entry for it "
                '({"session_id": ..., "message_id": ..., "mode": "direct_chat"}), or set that key to true to use '
                f"the session_id and message_id of {config.path.name}.")
        return config.captured_endpoint()


def load_bridge_files(config_path: Path | str) -> BridgeFiles:
    """Read all three files. A broken one raises ConfigError; a missing or empty models.json is a
    problem that is logged and listed (the bridge must run for `update-models` to write it)."""
    config = load_bridge_config(config_path)
    problems = []
    if not config.models_path.exists():
        models: dict[str, Model] = {}
        problems.append(f"{config.models_path}: not there yet, so no models to serve until it is: "
                        "`arenahub bridge update-models` writes it from a connected arena.ai tab (or write it by hand)")
    else:
        models = load_models(config.models_path, allow_empty=True)
        if not models:
            problems.append(f"{config.models_path}: holds no models: add \"name\": \"<model uuid>\" entries or run "
                            "`arenahub bridge update-models`")
    # Without models nothing is served yet, and the bridge must run for update-models to write them.
    if config.arena_mode == "side-by-side" and models and config.side_by_side_model not in models:
        line = _Located(config.path, _read(config.path, "")).line("side_by_side_model")
        raise ConfigError(config.path, f"names {config.side_by_side_model!r}, which is not in {MODELS_FILE}: give the "
                                       "name of a text model there", key="side_by_side_model", line=line)
    files = BridgeFiles(config, models, load_endpoint_map(config.endpoint_map_path), tuple(problems))
    for problem in problems:
        log.warning("%s", problem)
    if config.ignored:
        log.info("%s: keys read but not acted on: %s", config.path.name,
                 "; ".join(f"{key} ({why})" for key, why in config.ignored))
    return files


__all__ = [
    "CLIENT_KEYS",
    "ENDPOINT_MAP_FILE",
    "IGNORED_KEYS",
    "MODELS_FILE",
    "BridgeConfig",
    "BridgeFiles",
    "MappedEndpoint",
    "ModelNotMapped",
    "SessionNotCaptured",
    "load_bridge_config",
    "load_bridge_files",
    "load_endpoint_map",
    "load_models",
]
