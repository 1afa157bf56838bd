"""request aggregates

request aggregates (per minute, client, key and model; per minute; per hour and per day and client, key or
model) and indexes for the request log's filters

Revision ID: 0006
Revises: 0005
"""
from itertools import pairwise

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
# Frozen copy of schema.LATENCY_BUCKETS_MS and schema.COUNTERS as of this revision.
LATENCY_BUCKETS_MS = (10, 25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 15000,
                      20000, 30000, 60000, 120000)
LATENCY_COLUMNS = (*(f"lat_{b}" for b in LATENCY_BUCKETS_MS), "lat_inf")
COUNTERS = ("requests", "successes", "errors_4xx", "errors_429", "errors_499", "errors_5xx", "latency_sum_ms",
            "ttft_sum_ms", "ttft_count", "prompt_tokens", "completion_tokens", "cost", *LATENCY_COLUMNS)


def _counters() -> list[sa.Column]:
    types = {"latency_sum_ms": sa.Float, "ttft_sum_ms": sa.Float, "prompt_tokens": sa.BigInteger,
             "completion_tokens": sa.BigInteger, "cost": sa.BigInteger}
    return [sa.Column(name, types.get(name, sa.Integer), nullable=False) for name in COUNTERS]


def upgrade() -> None:
    op.create_table(
        "request_minutes",
        sa.Column("minute", TS, primary_key=True),
        sa.Column("client_id", sa.String(40), primary_key=True),
        sa.Column("key_id", sa.String(40), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        *_counters(),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_request_minutes_client_minute", "request_minutes", ["client_id", "minute"])
    op.create_index("ix_request_minutes_key_minute", "request_minutes", ["key_id", "minute"])
    op.create_table("request_totals", sa.Column("minute", TS, primary_key=True), *_counters(),
                    sqlite_with_rowid=False)
    op.create_table(
        "request_hours",
        sa.Column("dimension", sa.String(8), primary_key=True),
        sa.Column("value", sa.String(200), primary_key=True),
        sa.Column("hour", TS, primary_key=True),
        *_counters(),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "request_days",
        sa.Column("day", TS, primary_key=True),
        sa.Column("dimension", sa.String(8), primary_key=True),
        sa.Column("value", sa.String(200), primary_key=True),
        *_counters(),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_request_records_status_created", "request_records", ["status", "created_at"])
    op.create_index("ix_request_records_error_created", "request_records", ["error_code", "created_at"])
    # Records written before this revision are not in the aggregates: add them up once.
    _backfill()


def _backfill() -> None:
    """The same sums as records.aggregate, in SQL (it runs once, on whatever the table holds)."""
    postgres = op.get_bind().dialect.name == "postgresql"
    r = sa.table("request_records", *(sa.column(n) for n in (
        "created_at", "client_id", "key_id", "model", "status", "latency_ms", "ttft_ms",
        "prompt_tokens", "completion_tokens", "cost")))
    if postgres:  # truncated in UTC, whatever the session's time zone
        minute = _utc_trunc("minute", r.c.created_at)
    else:  # SQLAlchemy keeps SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff' text
        minute = sa.func.substr(r.c.created_at, 1, 16).concat(":00.000000")

    def count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
        return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

    def total(column: sa.ColumnElement) -> sa.ColumnElement:
        return sa.func.coalesce(sa.func.sum(column), 0)

    ok = r.c.status == 200
    histogram = [count(ok & (r.c.latency_ms <= high) & (r.c.latency_ms > low if low else sa.true()))
                 for low, high in pairwise((None, *LATENCY_BUCKETS_MS))]
    histogram.append(count(ok & (r.c.latency_ms > LATENCY_BUCKETS_MS[-1])))
    status = r.c.status
    sums = [sa.func.count(), count(ok), count((status >= 400) & (status < 500) & status.not_in((429, 499))),
            count(status == 429), count(status == 499), count(status >= 500),
            total(sa.case((ok, r.c.latency_ms), else_=0.0)), total(r.c.ttft_ms), sa.func.count(r.c.ttft_ms),
            total(r.c.prompt_tokens), total(r.c.completion_tokens), total(r.c.cost), *histogram]
    client = sa.func.coalesce(r.c.client_id, "")
    identity = ["minute", "client_id", "key_id", "model"]
    op.execute(_table("request_minutes", identity).insert().from_select(
        [*identity, *COUNTERS],
        sa.select(minute, client, r.c.key_id, r.c.model, *sums).group_by(minute, client, r.c.key_id, r.c.model)))

    m = _table("request_minutes", identity)
    added = [total(m.c[name]) for name in COUNTERS]
    op.execute(_table("request_totals", ["minute"]).insert().from_select(
        ["minute", *COUNTERS], sa.select(m.c.minute, *added).group_by(m.c.minute)))
    if postgres:
        hour, day = _utc_trunc("hour", m.c.minute), _utc_trunc("day", m.c.minute)
    else:
        hour = sa.func.substr(m.c.minute, 1, 13).concat(":00:00.000000")
        day = sa.func.substr(m.c.minute, 1, 10).concat(" 00:00:00.000000")
    for name, span in (("request_hours", "hour"), ("request_days", "day")):
        start = hour if span == "hour" else day
        for dimension, column in (("client", m.c.client_id), ("key", m.c.key_id), ("model", m.c.model)):
            op.execute(_table(name, [span, "dimension", "value"]).insert().from_select(
                [span, "dimension", "value", *COUNTERS],
                sa.select(start, sa.literal(dimension, sa.String), column, *added).group_by(start, column)))


def _utc_trunc(unit: str, column: sa.ColumnElement) -> sa.ColumnElement:
    return sa.func.timezone("UTC", sa.func.date_trunc(unit, sa.func.timezone("UTC", column)))


def _table(name: str, identity: list[str]) -> sa.TableClause:
    return sa.table(name, *(sa.column(n) for n in (*identity, *COUNTERS)))


def downgrade() -> None:
    op.drop_index("ix_request_records_error_created", "request_records")
    op.drop_index("ix_request_records_status_created", "request_records")
    op.drop_table("request_days")
    op.drop_table("request_hours")
    op.drop_table("request_totals")
    op.drop_table("request_minutes")
