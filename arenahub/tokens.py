"""Counting tokens offline (arena.ai reports its own, but a platform believes only what it counts), with
the o200k tokenizer shipped in bpe-openai.

``count_tokens`` never raises, whatever the text: the tokenizer refuses inputs of a million characters
or more, so long text is counted in pieces cut at whitespace (a piece of 100,000 characters or less;
a run with no whitespace is cut where it must be). A cut can only split what would have been one token
into two, so the count of the pieces is the exact count or a little more: never less than what was said.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import bpe_openai

log = logging.getLogger("arenahub.tokens")
PIECE_CHARS = 100_000


@lru_cache(maxsize=1)
def _encoding() -> bpe_openai.Encoding:
    return bpe_openai.get_encoding("o200k_base")


def _pieces(text: str) -> list[str]:
    pieces, start, n = [], 0, len(text)
    while n - start > PIECE_CHARS:
        end = start + PIECE_CHARS
        space = text.rfind(" ", start + PIECE_CHARS // 2, end)
        cut = space + 1 if space > 0 else end
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


def count_tokens(text: str) -> int:
    """The number of o200k tokens in ``text`` (see the module docstring for long text); never raises."""
    if not text:
        return 0
    encoding = _encoding()
    total = 0
    for piece in _pieces(text) if len(text) > PIECE_CHARS else (text,):
        try:
            total += len(encoding.encode_ordinary(piece))
        except (ValueError, UnicodeError) as exc:  # the tokenizer's own limits: count what it would not
            log.info("counting %d characters by size (%s)", len(piece), exc)
            total += len(piece) // 4 + 1  # about four characters a token, as for English text
    return total


def token_prefix(text: str, tokens: int) -> str:
    """The first ``tokens`` o200k tokens of ``text`` as text: a cut between tokens, never inside one
    (a character split between two tokens is left out whole); never raises."""
    if tokens <= 0 or not text:
        return ""
    head = text[: (tokens + 1) * 64]  # no token is longer than a few dozen characters
    try:
        encoding = _encoding()
        ids = encoding.encode_ordinary(head)
        return encoding.decode_bytes(ids[:tokens]).decode("utf-8", "ignore")
    except (ValueError, UnicodeError, KeyError) as exc:
        log.info("cutting %d characters by size (%s)", len(head), exc)
        return text[: tokens * 4]  # about four characters a token, as count_tokens counts what it cannot
