"""Prices and the cost of one request, in integer micro-USD. Pure: no database.

Money is an ``int`` of micro-USD (1 USD = 1,000,000) everywhere: floats never enter the
arithmetic, so sums over millions of requests are exact.

Rounding rule: a request's cost is computed exactly, as a fraction of a micro-dollar, and
rounded UP to the next whole micro-dollar once per request (never per component, never
per token). A non-free request therefore always costs at least 1 micro-USD.

``DEFAULT_PRICES`` is only the starting table. Admins override any model's price
(``arenahub admin set-price MODEL --prompt USD_PER_1M --completion USD_PER_1M [--image USD]``);
the platform builds a ``PriceTable`` with those overrides on top of these defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from arenahub.protocol.errors import InvalidRequest

MICROS_PER_USD = 1_000_000
TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are quoted per 1M tokens
# One billion USD: any amount above is a typo, and every sum stays far inside a 64-bit column.
MAX_USD = 1_000_000_000
MAX_MICROS = MAX_USD * MICROS_PER_USD


class InvalidAmount(InvalidRequest, ValueError):
    """A USD amount or price that cannot be used, with what is wrong with it."""

    code = "invalid_amount"


def check_micros(value: object, field: str = "amount", *, signed: bool = False) -> int:
    """``value`` if it is a whole number of micro-USD within bounds, else InvalidAmount saying why."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmount(f"{field} must be a whole number of micro-USD, got {value!r}", param=field)
    if value < 0 and not signed:
        raise InvalidAmount(f"{field} must not be negative, got {format_usd(value)} USD", param=field)
    if abs(value) > MAX_MICROS:
        raise InvalidAmount(f"{field} is too large: at most {MAX_USD:,} USD", param=field)
    return value


_USD = re.compile(r"(-?)(\d+)(?:\.(\d+))?")


def parse_usd(text: str, *, field: str = "amount", signed: bool = False) -> int:
    """``"12.50"`` -> ``12_500_000``. Plain decimal USD, at most 6 decimals; ``$`` and ``,`` are refused.

    Negative amounts are refused unless ``signed`` (adjustments). Errors say what is wrong.
    """
    if not isinstance(text, str):
        raise InvalidAmount(f"{field} must be a string like \"12.50\", got {text!r}", param=field)
    s = text.strip()
    if not s:
        raise InvalidAmount(f"{field} is empty: expected a USD amount like \"12.50\"", param=field)
    m = _USD.fullmatch(s)
    if m is None:
        raise InvalidAmount(f"{field} {text!r} is not a USD amount: expected digits with an optional "
                            "decimal point, like \"12.50\" (no currency sign, commas or exponent)",
                            param=field)
    sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    if sign and not signed:
        raise InvalidAmount(f"{field} {text!r} is negative: it must be zero or more", param=field)
    if len(frac) > 6:
        raise InvalidAmount(f"{field} {text!r} has {len(frac)} decimals: the smallest unit is "
                            "0.000001 USD (6 decimals)", param=field)
    if len(whole) > len(str(MAX_USD)):
        raise InvalidAmount(f"{field} {text!r} is too large: at most {MAX_USD:,} USD", param=field)
    micros = int(whole) * MICROS_PER_USD + int(frac.ljust(6, "0"))
    return check_micros(-micros if sign else micros, field, signed=signed)


def format_usd(micros: int) -> str:
    """``12_500_000`` -> ``"12.50"``: at least 2 decimals, more only when needed; ``parse_usd`` reverses it."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_USD)
    digits = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}{whole}.{digits}"


@dataclass(frozen=True, slots=True)
class Price:
    """One model's price, each part in micro-USD: per 1M prompt tokens, per 1M completion tokens, per image."""

    prompt_per_1m: int
    completion_per_1m: int
    per_image: int = 0

    def __post_init__(self) -> None:
        for name in ("prompt_per_1m", "completion_per_1m", "per_image"):
            check_micros(getattr(self, name), name)

    @classmethod
    def from_usd(cls, prompt_per_1m: str, completion_per_1m: str, per_image: str = "0") -> Price:
        """A price from USD strings, as the admin types them: ``Price.from_usd("2.50", "10")``."""
        return cls(parse_usd(prompt_per_1m, field="prompt price"),
                   parse_usd(completion_per_1m, field="completion price"),
                   parse_usd(per_image, field="image price"))

    def as_usd(self) -> dict[str, str]:
        return {"prompt_per_1m": format_usd(self.prompt_per_1m),
                "completion_per_1m": format_usd(self.completion_per_1m),
                "per_image": format_usd(self.per_image)}


# Used for any model with no entry of its own: mid-range, so an unknown model is neither free nor a shock.
DEFAULT_PRICE = Price(prompt_per_1m=1_000_000, completion_per_1m=3_000_000, per_image=40_000)

# List prices of a few well-known models (USD per 1M tokens), as a starting point for admins.
DEFAULT_PRICES: Mapping[str, Price] = {
    "gpt-4o": Price(2_500_000, 10_000_000),
    "gpt-4o-mini": Price(150_000, 600_000),
    "gpt-4.1": Price(2_000_000, 8_000_000),
    "o3": Price(2_000_000, 8_000_000),
    "claude-3-5-sonnet": Price(3_000_000, 15_000_000),
    "claude-3-5-haiku": Price(800_000, 4_000_000),
    "gemini-2.5-pro": Price(1_250_000, 10_000_000),
    "gemini-2.0-flash": Price(100_000, 400_000),
    "dall-e-3": Price(0, 0, per_image=40_000),
}


class PriceTable:
    """Prices by model: admin overrides on top of the defaults, and a fallback for unknown models."""

    def __init__(self, overrides: Mapping[str, Price] | None = None, *,
                 defaults: Mapping[str, Price] = DEFAULT_PRICES, fallback: Price = DEFAULT_PRICE) -> None:
        self._prices = {**defaults, **(overrides or {})}
        self.fallback = fallback

    def price(self, model: str) -> Price:
        return self._prices.get(model, self.fallback)

    def set(self, model: str, price: Price) -> None:
        if not model:
            raise InvalidAmount("the model name is empty", param="model")
        self._prices[model] = price

    def items(self) -> list[tuple[str, Price]]:
        return sorted(self._prices.items())


def cost(price: Price, prompt_tokens: int, completion_tokens: int, images: int = 0) -> int:
    """The cost of one request in micro-USD, rounded up to the micro-dollar (see the module docstring)."""
    for name, n in (("prompt_tokens", prompt_tokens), ("completion_tokens", completion_tokens),
                    ("images", images)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    token_part = prompt_tokens * price.prompt_per_1m + completion_tokens * price.completion_per_1m
    return -(-token_part // TOKENS_PER_PRICE_UNIT) + images * price.per_image


# Reserved for the completion when the request sets no max_tokens, and the most ever reserved for it:
# a request asking for 100k tokens must not lock a whole balance. Settling charges what was used.
DEFAULT_COMPLETION_ESTIMATE = 1_024
COMPLETION_ESTIMATE_CAP = 4_096


def estimate_reservation(price: Price, prompt_tokens: int, max_tokens: int | None, *, images: int = 0,
                         default_completion: int = DEFAULT_COMPLETION_ESTIMATE,
                         cap: int = COMPLETION_ESTIMATE_CAP) -> int:
    """What to reserve at admission: the prompt plus ``min(max_tokens or default_completion, cap)``
    completion tokens."""
    completion = default_completion if max_tokens is None else max_tokens
    return cost(price, prompt_tokens, min(completion, cap), images)
