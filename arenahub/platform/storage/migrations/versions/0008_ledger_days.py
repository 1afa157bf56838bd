"""ledger_days

ledger_days: the ledger's served requests (settle entries) summed per UTC day, per key, client and model in
several shapes, so usage statements and the usage page read whole days from it; the ledger's key and client
indexes gain the kind (a key's or client's settles of a period: one range)

Revision ID: 0008
Revises: 0007
"""
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
# Frozen copy of ledger_days.SHAPES and SUMS as of this revision.
SHAPES = {"model": ("model",), "client": ("client_id",), "key": ("key_id",), "key+model": ("key_id", "model"),
          "client+model": ("client_id", "model")}
ACCOUNTS = ("key_id", "client_id", "model")
SUMS = ("requests", "prompt_tokens", "completion_tokens", "images", "cost", "uncharged")


def upgrade() -> None:
    op.create_table(
        "ledger_days",
        sa.Column("shape", sa.String(16), primary_key=True),
        sa.Column("day", TS, primary_key=True),
        sa.Column("key_id", sa.String(40), primary_key=True),
        sa.Column("client_id", sa.String(40), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in SUMS),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_ledger_days_key", "ledger_days", ["shape", "key_id", "day"])
    op.create_index("ix_ledger_days_client", "ledger_days", ["shape", "client_id", "day"])
    for account in ("key", "client"):
        op.drop_index(f"ix_ledger_entries_{account}_created", "ledger_entries")
        op.create_index(f"ix_ledger_entries_{account}_kind_created", "ledger_entries",
                        [f"{account}_id", "kind", "created_at"])
    _backfill()


def _backfill() -> None:
    """The same sums as ledger_days.day_rows, in SQL, over the settle entries already stored."""
    e = sa.table("ledger_entries", *(sa.column(n) for n in (
        "kind", "created_at", "key_id", "client_id", "model", "amount", "prompt_tokens", "completion_tokens",
        "images", "uncharged")))
    day: sa.ColumnElement[Any]
    if op.get_bind().dialect.name == "postgresql":  # truncated in UTC, whatever the session's time zone
        day = sa.func.timezone("UTC", sa.func.date_trunc("day", sa.func.timezone("UTC", e.c.created_at)))
    else:  # SQLAlchemy keeps SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff' text
        day = sa.func.substr(e.c.created_at, 1, 10).concat(" 00:00:00.000000")
    values = {"key_id": e.c.key_id, "client_id": e.c.client_id, "model": sa.func.coalesce(e.c.model, "")}
    sums = [sa.func.count(), *(sa.func.coalesce(sa.func.sum(c), 0) for c in (
        e.c.prompt_tokens, e.c.completion_tokens, e.c.images, -e.c.amount, e.c.uncharged))]
    days = sa.table("ledger_days", *(sa.column(n) for n in ("shape", "day", *ACCOUNTS, *SUMS)))
    for shape, kept in SHAPES.items():
        accounts = [values[a] if a in kept else sa.literal("", sa.String) for a in ACCOUNTS]
        where = [e.c.kind == "settle"] + ([e.c.client_id.is_not(None)] if "client_id" in kept else [])
        op.execute(days.insert().from_select(
            ["shape", "day", *ACCOUNTS, *SUMS],
            sa.select(sa.literal(shape, sa.String), day, *accounts, *sums).where(*where)
            .group_by(day, *(values[a] for a in kept))))


def downgrade() -> None:
    for account in ("key", "client"):
        op.drop_index(f"ix_ledger_entries_{account}_kind_created", "ledger_entries")
        op.create_index(f"ix_ledger_entries_{account}_created", "ledger_entries", [f"{account}_id", "created_at"])
    op.drop_index("ix_ledger_days_client", "ledger_days")
    op.drop_index("ix_ledger_days_key", "ledger_days")
    op.drop_table("ledger_days")
