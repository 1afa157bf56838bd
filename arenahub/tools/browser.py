"""Debian's Chromium, headless, driven by Playwright: the tab that runs the userscript in the demo.

Playwright's own browser download does not work offline; Debian's ``chromium`` package does.
"""

from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = os.environ.get("ARENAHUB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def missing() -> str | None:
    """Why a headless tab cannot be opened here, or None when it can."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install playwright; `make demo` installs it)"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (as root: apt-get install chromium)"
    return None


def host_rules(port: int) -> str:
    """The flag that makes Chromium reach arena.ai (and lmarena.ai) on the local simulator's ``port``."""
    return (f"--host-resolver-rules=MAP arena.ai 127.0.0.1:{port}, MAP lmarena.ai 127.0.0.1:{port}, "
            f"MAP www.lmarena.ai 127.0.0.1:{port}")
