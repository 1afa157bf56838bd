"""Statements: what each consumer key spent and each client earned, by day (UTC) and model. Pure.

Only settle entries count: they are the served requests. ``cost`` is what the key was charged
(micro-USD), which is also what the serving client earned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from arenahub.platform.billing.ledger import Entry, Kind


@dataclass(frozen=True, slots=True)
class StatementLine:
    account: str  # the key id, or the client id
    day: date
    model: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    cost: int = 0
    uncharged: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def key_statement(entries: Iterable[Entry], *, key_id: str | None = None, since: datetime | None = None,
                  until: datetime | None = None) -> list[StatementLine]:
    """Per key, day and model; only ``key_id`` if given; ``since`` inclusive, ``until`` exclusive."""
    return _aggregate(entries, "key_id", key_id, since, until)


def client_statement(entries: Iterable[Entry], *, client_id: str | None = None, since: datetime | None = None,
                     until: datetime | None = None) -> list[StatementLine]:
    """Per serving client, day and model; only ``client_id`` if given; ``since`` inclusive, ``until`` exclusive."""
    return _aggregate(entries, "client_id", client_id, since, until)


def totals(lines: Iterable[StatementLine], account: str = "") -> StatementLine:
    """One line summing ``lines`` (its day and model are placeholders)."""
    out = StatementLine(account, date.min, "*")
    for ln in lines:
        out = _add(out, ln.requests, ln.prompt_tokens, ln.completion_tokens, ln.images, ln.cost, ln.uncharged)
    return out


def _aggregate(entries: Iterable[Entry], field: str, only: str | None, since: datetime | None,
               until: datetime | None) -> list[StatementLine]:
    lines: dict[tuple[str, date, str], StatementLine] = {}
    for e in entries:
        account = getattr(e, field)
        if e.kind is not Kind.SETTLE or account is None or (only is not None and account != only):
            continue
        if (since is not None and e.created_at < since) or (until is not None and e.created_at >= until):
            continue
        day = e.created_at.astimezone(UTC).date()
        model = e.model or ""
        key = (account, day, model)
        line = lines.get(key) or StatementLine(account, day, model)
        lines[key] = _add(line, 1, e.prompt_tokens, e.completion_tokens, e.images, e.charge, e.uncharged)
    return [lines[k] for k in sorted(lines)]


def _add(line: StatementLine, requests: int, prompt: int, completion: int, images: int, cost: int,
         uncharged: int) -> StatementLine:
    return StatementLine(line.account, line.day, line.model, line.requests + requests,
                         line.prompt_tokens + prompt, line.completion_tokens + completion, line.images + images,
                         line.cost + cost, line.uncharged + uncharged)
