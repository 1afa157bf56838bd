"""The request log (``GET /__sim/requests``): every stream call, server action and storage call.

A record is opened when the call arrives and filled in as it is checked and answered, so a test
can see a stream still running (``stream: "streaming"``) and how far it got (``lines_sent``).
Tokens and cookie values never reach it: the body's ``recaptchaV3Token`` is replaced by
``"<token>"`` and only cookie names are kept.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from starlette.requests import Request

CREATE_PATH = "/nextjs-api/stream/create-evaluation"
FOLLOW_UP_PREFIX = "/nextjs-api/stream/post-to-evaluation/"
RETRY_PREFIX = "/nextjs-api/stream/retry-evaluation-session-message/"
STORAGE_PREFIX = "/__storage/"


@dataclass
class RequestRecord:
    method: str
    path: str
    kind: str  # create | follow_up | retry | action | storage
    headers: dict[str, str]
    at: float
    json: Any = None
    status: int | None = None
    error: str | None = None
    outcome: str | None = None
    stream: str | None = None  # streaming | complete | aborted
    lines_sent: int = 0
    action: str | None = None  # the server action's name, for kind "action"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def set_body(self, body: Any) -> None:
        if isinstance(body, dict) and "recaptchaV3Token" in body:
            body = {**body, "recaptchaV3Token": "<token>"}
        self.json = body


def kind_of(method: str, path: str, next_action: str | None) -> str | None:
    """Which logged kind a request is, or None for calls the log leaves out (pages, chunks, control)."""
    if path == CREATE_PATH:
        return "create"
    if path.startswith(FOLLOW_UP_PREFIX):
        return "follow_up"
    if path.startswith(RETRY_PREFIX):
        return "retry"
    if path.startswith(STORAGE_PREFIX):
        return "storage"
    if method == "POST" and next_action is not None:
        return "action"
    return None


def open_record(request: Request, kind: str, at: float) -> RequestRecord:
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "cookie"}
    if request.cookies:
        headers["cookie"] = "; ".join(request.cookies)
    return RequestRecord(request.method, request.url.path, kind, headers, at)
