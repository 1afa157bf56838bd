"""What the bridge knows about its LMArena session: reported at /bridge/status and in heartbeats."""

from __future__ import annotations

import time
from dataclasses import dataclass

from arenahub.protocol.frames import SessionStatus


@dataclass
class SessionState:
    session_valid: bool | None = None  # unknown until the first upstream call
    needs_verification: bool = False
    rate_limited_until: float | None = None
    last_ok_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None

    def succeeded(self) -> None:
        self.session_valid = True
        self.needs_verification = False
        self.last_ok_at = time.time()

    def failed(self, message: str, *, invalid_session: bool = False, rate_limited_for: float | None = None) -> None:
        self.last_error = message
        self.last_error_at = time.time()
        if invalid_session:
            self.session_valid = False
        if rate_limited_for:
            self.rate_limited_until = time.time() + rate_limited_for

    def challenged(self) -> None:
        self.needs_verification = True
        self.last_error = "Cloudflare verification needed; the tab was asked to reload"
        self.last_error_at = time.time()

    def tab_connected(self) -> None:
        """A (re)connected tab has passed whatever check the page showed."""
        self.needs_verification = False

    def ids_captured(self) -> None:
        self.session_valid = None  # new ids: unknown until they are used
        self.last_error = None

    def rate_limited(self) -> bool:
        return self.rate_limited_until is not None and self.rate_limited_until > time.time()

    def to_status(self, tabs: int) -> SessionStatus:
        return SessionStatus(bridge_reachable=True, browser_connected=tabs > 0, session_valid=self.session_valid,
                             needs_verification=self.needs_verification,
                             rate_limited_until=self.rate_limited_until if self.rate_limited() else None,
                             last_error=self.last_error)
