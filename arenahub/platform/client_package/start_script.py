"""start_client.sh: makes a venv beside itself, installs the package's wheel and its dependencies
when something is missing, then runs the bridge with the client inside it."""

from __future__ import annotations

import re

from arenahub.platform.client_package.inputs import PackageInputs
from arenahub.platform.client_package.wheel import Wheel

_START_SCRIPT = r"""#!/bin/sh
# Starts arenahub client @@CLIENT_ID@@ of @@PLATFORM_URL@@: the LMArena bridge on this machine,
# with the platform integration inside it. The first run creates a Python virtual environment beside
# this script and installs arenahub @@VERSION@@ (the wheel in this folder) with its dependencies from
# PyPI; later runs install only what is missing. See README.txt.
#
# Environment:
#   PYTHON                the Python (@@MIN_PYTHON@@ or newer) that makes the venv  (default: python3)
#   ARENAHUB_VENV         where the venv is                     (default: .venv beside this script)
#   ARENAHUB_BRIDGE_HOST  the address the bridge listens on     (default: 127.0.0.1)
#   ARENAHUB_BRIDGE_PORT  the port the bridge listens on        (default: @@BRIDGE_PORT@@)
#   PIP_INDEX_URL and pip's other PIP_* settings apply as usual.
set -eu

say() { printf 'start_client: %s\n' "$*"; }
die() { printf 'start_client: error: %s\n' "$*" >&2; exit 1; }

HERE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd) || die "cannot find the folder of $0"
cd "$HERE"

CLIENT_ID='@@CLIENT_ID@@'
VERSION='@@VERSION@@'
WHEEL='@@WHEEL@@'
WHEEL_SHA256='@@WHEEL_SHA256@@'
USERSCRIPT_PORT='@@BRIDGE_PORT@@'
PYTHON=${PYTHON:-python3}
VENV=${ARENAHUB_VENV:-$HERE/.venv}
HOST=${ARENAHUB_BRIDGE_HOST:-127.0.0.1}
PORT=${ARENAHUB_BRIDGE_PORT:-$USERSCRIPT_PORT}
CHECK='import arenahub.bridge.server, arenahub.client.app'

for file in config.jsonc requirements_platform.txt "$WHEEL"; do
  [ -f "$file" ] || die "$file is missing from $HERE: unzip all of lmarena-client-$CLIENT_ID.zip here"
done
case $PORT in
  '' | *[!0-9]*) die "ARENAHUB_BRIDGE_PORT must be a port number, got '$PORT'" ;;
esac
[ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || die "ARENAHUB_BRIDGE_PORT must be 1-65535, got $PORT"

# 1. The virtual environment, made once.
if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PYTHON" >/dev/null 2>&1 || die "no '$PYTHON' here: install Python @@MIN_PYTHON@@ or newer \
(Debian/Ubuntu: sudo apt-get install python3 python3-venv), or name one: PYTHON=/path/to/python3 $0"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (@@MIN_PYTHON_TUPLE@@))' || die "$PYTHON is Python \
$("$PYTHON" -c 'import platform; print(platform.python_version())' 2>/dev/null); arenahub needs @@MIN_PYTHON@@ \
or newer: name another one with PYTHON=/path/to/python3 $0"
  existed=no
  [ -e "$VENV" ] && existed=yes
  say "creating a virtual environment in $VENV with $PYTHON"
  if ! "$PYTHON" -m venv "$VENV"; then
    [ "$existed" = no ] && rm -rf "$VENV"
    die "$PYTHON could not create a virtual environment; on Debian/Ubuntu: sudo apt-get install python3-venv"
  fi
fi

# 2. arenahub and its dependencies, when something is missing or this package brings another build.
if [ "$(cat "$VENV/.arenahub-package" 2>/dev/null || true)" != "$WHEEL $WHEEL_SHA256" ] \
    || ! "$VENV/bin/python" -c "$CHECK" >/dev/null 2>&1; then
  say "installing arenahub $VERSION and its dependencies into $VENV (the first time takes a minute or two)"
  # The wheel with its dependencies (requirements_platform.txt names it), then the wheel again with
  # --force-reinstall: an older package may have installed a different build of the same version.
  "$VENV/bin/python" -m pip install --disable-pip-version-check -r requirements_platform.txt \
    || die "pip could not install the dependencies (see its messages above): does this machine reach PyPI \
(https://pypi.org)? A mirror can be named with PIP_INDEX_URL. Then run $0 again"
  "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet --no-deps --force-reinstall "./$WHEEL" \
    || die "pip could not install $WHEEL (see its messages above)"
  "$VENV/bin/python" -c "$CHECK" || die "arenahub does not import in $VENV (see above): delete $VENV and run $0 again"
  printf '%s\n' "$WHEEL $WHEEL_SHA256" >"$VENV/.arenahub-package"
fi

# 3. The bridge; config.jsonc's platform_integration section runs the client inside it.
if [ "$PORT" != "$USERSCRIPT_PORT" ]; then
  say "note: userscript.js connects to port $USERSCRIPT_PORT; make one for port $PORT with:"
  say "  $VENV/bin/arenahub userscript --bridge-url ws://127.0.0.1:$PORT/ws > userscript.js"
fi
say "starting the bridge on http://$HOST:$PORT with client $CLIENT_ID (Ctrl-C stops it)"
say "check it: curl http://$HOST:$PORT/health   and   curl http://$HOST:$PORT/platform/status"
exec "$VENV/bin/python" -m arenahub bridge --config "$HERE/config.jsonc" --host "$HOST" --port "$PORT"
"""


def start_script(c: PackageInputs, wheel: Wheel) -> str:
    low = wheel.min_python
    values = {"CLIENT_ID": c.client_id, "PLATFORM_URL": c.platform_url, "VERSION": wheel.version,
              "WHEEL": wheel.filename, "WHEEL_SHA256": wheel.sha256, "BRIDGE_PORT": str(c.bridge_port),
              "MIN_PYTHON": f"{low[0]}.{low[1]}", "MIN_PYTHON_TUPLE": f"{low[0]}, {low[1]}"}
    text = re.sub(r"@@([A-Z0-9_]+)@@", lambda m: values[m.group(1)], _START_SCRIPT)
    for value in values.values():  # each lands in single quotes or plain text: no quote may end them
        assert "'" not in value, value
    return text
