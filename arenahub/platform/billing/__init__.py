"""Billing: prices and costs (``pricing``), the ledger of consumer keys and client earnings
(``ledger``), and statements over its entries (``statements``). Pure: no sockets, no database."""

from arenahub.platform.billing.ledger import (
    Account,
    ClientEarnings,
    DuplicateRequest,
    Entry,
    InsufficientQuota,
    Kind,
    Ledger,
    LedgerError,
    LedgerMismatch,
    Reservation,
    ReservationClosed,
    UnknownReservation,
    Usage,
)
from arenahub.platform.billing.pricing import (
    DEFAULT_PRICE,
    DEFAULT_PRICES,
    MICROS_PER_USD,
    InvalidAmount,
    Price,
    PriceTable,
    cost,
    estimate_reservation,
    format_usd,
    parse_usd,
)
from arenahub.platform.billing.statements import (
    StatementLine,
    client_statement,
    key_statement,
    totals,
)

__all__ = [
    "DEFAULT_PRICE", "DEFAULT_PRICES", "MICROS_PER_USD", "Account", "ClientEarnings", "DuplicateRequest",
    "Entry", "InsufficientQuota", "InvalidAmount", "Kind", "Ledger", "LedgerError", "LedgerMismatch",
    "Price", "PriceTable", "Reservation", "ReservationClosed", "StatementLine", "UnknownReservation",
    "Usage", "client_statement", "cost", "estimate_reservation", "format_usd", "key_statement",
    "parse_usd", "totals",
]
