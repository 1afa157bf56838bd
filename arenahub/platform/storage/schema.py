"""Tables. Changes go through an Alembic migration in ``migrations/versions``."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

TS = sa.DateTime(timezone=True)

clients = sa.Table(
    "clients", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(320)),
    sa.Column("bridge_url", sa.String(500), nullable=False),
    sa.Column("api_key_hash", sa.String(64), nullable=False),
    sa.Column("rpm", sa.Integer),
    sa.Column("max_concurrent", sa.Integer, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("models", sa.JSON, nullable=False, default=list),
    sa.Column("client_version", sa.String(64)),
    sa.Column("last_stats", sa.JSON),
    sa.Column("last_seen_at", TS),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    # Routing: operator-set priority (higher first) and weight; drain and maintenance states.
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("weight", sa.Integer, nullable=False, server_default="1"),
    sa.Column("draining", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("maintenance_reason", sa.String(500)),
    sa.Column("maintenance_since", TS),
)

consumer_keys = sa.Table(
    "consumer_keys", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_prefix", sa.String(16), nullable=False),
    sa.Column("rpm", sa.Integer),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("email", sa.String(320)),
    sa.Column("expires_at", TS),
    sa.Column("allowed_models", sa.JSON),  # None: every model
    sa.Column("tpm", sa.Integer),
    sa.Column("max_concurrent", sa.Integer),
    sa.Column("unlimited", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("meta", sa.JSON),
    sa.Column("deleted_at", TS),
    sa.Index("ix_consumer_keys_updated_at", "updated_at"),
)

request_records = sa.Table(
    "request_records", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("key_id", sa.String(40), nullable=False),
    sa.Column("client_id", sa.String(40)),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("stream", sa.Boolean, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("error_code", sa.String(64)),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("ttft_ms", sa.Float),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("cost", sa.BigInteger),  # micro-USD charged to the key (None: records from before billing)
    # {"attempts": [{"client_id", "outcome", "error", "ms"}...], "error": message}; None when there is nothing to add
    sa.Column("detail", sa.JSON),
    # Images billed: in a chat request's prompt, or made by an image request (/v1/images/generations)
    sa.Column("images", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_request_records_created_at", "created_at"),
    sa.Index("ix_request_records_key_created", "key_id", "created_at"),
    sa.Index("ix_request_records_client_created", "client_id", "created_at"),
    sa.Index("ix_request_records_model_created", "model", "created_at"),
)

platform_settings = sa.Table(
    "platform_settings", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.JSON, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

# Dashboard sign-ins: the cookie holds the session id, the table only its SHA-256.
admin_sessions = sa.Table(
    "admin_sessions", metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),  # "token" or "password"
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Column("last_seen_at", TS, nullable=False),
    sa.Index("ix_admin_sessions_expires_at", "expires_at"),
)

# Prompts and answers, written only when the operator turns storing them on (off by default).
request_contents = sa.Table(
    "request_contents", metadata,
    sa.Column("request_id", sa.String(40), primary_key=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Index("ix_request_contents_created_at", "created_at"),
)

# The append-only book of consumer keys' credit (see billing/ledger.py). Money in micro-USD.
ledger_entries = sa.Table(
    "ledger_entries", metadata,
    sa.Column("entry_id", sa.String(40), primary_key=True),
    sa.Column("key_id", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("hold", sa.BigInteger, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("request_id", sa.String(40)),
    sa.Column("client_id", sa.String(40)),
    sa.Column("model", sa.String(200)),
    sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("images", sa.Integer, nullable=False, server_default="0"),
    sa.Column("uncharged", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("note", sa.String(500)),
    # One reserve and one closing entry per request, whatever retries a writer makes.
    sa.UniqueConstraint("request_id", "kind", name="uq_ledger_entries_request_kind"),
    # With the kind: a key's or client's settles of a period are one range (statements' ragged ends).
    sa.Index("ix_ledger_entries_key_kind_created", "key_id", "kind", "created_at"),
    sa.Index("ix_ledger_entries_client_kind_created", "client_id", "kind", "created_at"),
    sa.Index("ix_ledger_entries_kind_created", "kind", "created_at"),
)

# Admin-set prices, on top of billing.pricing.DEFAULT_PRICES (micro-USD).
model_prices = sa.Table(
    "model_prices", metadata,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("prompt_per_1m", sa.BigInteger, nullable=False),
    sa.Column("completion_per_1m", sa.BigInteger, nullable=False),
    sa.Column("per_image", sa.BigInteger, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Index("ix_model_prices_updated_at", "updated_at"),
)

# Aggregates of request_records, kept up to date by the record writer in the same transaction as
# the records (see records.py), so pages read these, not raw logs. Four shapes of the same sums:
# request_minutes per minute, client, key and model (the detail: filtered charts, exports);
# request_totals per minute (the overview's charts); request_hours per hour and one client, key
# or model (a week's chart of one of them); request_days per UTC day and one of client, key or
# model (summaries over long periods). With many clients and keys the minute rows hardly merge,
# hence the coarser ones. Latency of answered requests (status 200) is counted
# in fixed buckets: column lat_<B> counts latencies in (previous bound, B] ms, lat_inf those above
# the last bound. The bounds are part of the stored data: add columns in a migration, never move one.
LATENCY_BUCKETS_MS: tuple[int, ...] = (10, 25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000,
                                       7500, 10000, 15000, 20000, 30000, 60000, 120000)
LATENCY_COLUMNS: tuple[str, ...] = (*(f"lat_{b}" for b in LATENCY_BUCKETS_MS), "lat_inf")
# What every aggregate row adds up (an upsert adds these; the other columns are the row's identity).
COUNTERS: tuple[str, ...] = (
    "requests", "successes", "errors_4xx", "errors_429", "errors_499", "errors_5xx",
    "latency_sum_ms", "ttft_sum_ms", "ttft_count", "prompt_tokens", "completion_tokens", "cost",
    *LATENCY_COLUMNS)
SUMMARY_DIMENSIONS = ("client", "key", "model")  # request_hours.dimension, request_days.dimension


def _counter_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("successes", sa.Integer, nullable=False),  # status 200
        # Errors by kind: 429 (rate limits, queue full), 499 (the consumer went away), other 4xx, 5xx.
        sa.Column("errors_4xx", sa.Integer, nullable=False),
        sa.Column("errors_429", sa.Integer, nullable=False),
        sa.Column("errors_499", sa.Integer, nullable=False),
        sa.Column("errors_5xx", sa.Integer, nullable=False),
        sa.Column("latency_sum_ms", sa.Float, nullable=False),  # of successes, like the histogram
        sa.Column("ttft_sum_ms", sa.Float, nullable=False),  # of every request that had a first byte
        sa.Column("ttft_count", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost", sa.BigInteger, nullable=False),  # micro-USD
        *(sa.Column(name, sa.Integer, nullable=False) for name in LATENCY_COLUMNS),
    ]


# SQLite: these tables are clustered by their primary key (WITHOUT ROWID), so what a query reads
# (a period; one client's, key's or model's hours) is one sequential range.
request_minutes = sa.Table(
    "request_minutes", metadata,
    sa.Column("minute", TS, primary_key=True),  # UTC, truncated to the minute
    sa.Column("client_id", sa.String(40), primary_key=True),  # "" for requests no client served
    sa.Column("key_id", sa.String(40), primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),
    *_counter_columns(),
    sa.Index("ix_request_minutes_client_minute", "client_id", "minute"),
    sa.Index("ix_request_minutes_key_minute", "key_id", "minute"),
    sqlite_with_rowid=False,
)

request_totals = sa.Table(
    "request_totals", metadata,
    sa.Column("minute", TS, primary_key=True),
    *_counter_columns(),
    sqlite_with_rowid=False,
)

request_hours = sa.Table(
    "request_hours", metadata,
    sa.Column("dimension", sa.String(8), primary_key=True),  # one of SUMMARY_DIMENSIONS
    sa.Column("value", sa.String(200), primary_key=True),  # the client ("" for none), key or model
    sa.Column("hour", TS, primary_key=True),  # UTC, truncated to the hour
    *_counter_columns(),
    sqlite_with_rowid=False,
)

request_days = sa.Table(
    "request_days", metadata,
    sa.Column("day", TS, primary_key=True),  # UTC midnight
    sa.Column("dimension", sa.String(8), primary_key=True),  # one of SUMMARY_DIMENSIONS
    sa.Column("value", sa.String(200), primary_key=True),  # the client ("" for none), key or model
    *_counter_columns(),
    sqlite_with_rowid=False,
)

# Filters of the request log and its exports that the indexes above do not cover.
sa.Index("ix_request_records_status_created", request_records.c.status, request_records.c.created_at)
sa.Index("ix_request_records_error_created", request_records.c.error_code, request_records.c.created_at)

# The ledger's settle entries (served requests) summed per UTC day, in several shapes (which of key,
# client and model a row keeps; the others are ""), kept up to date by the entries' writer in the
# same transaction as the entries (see ledger_days.py), so statements read these for whole days:
# "key+model" and "client+model" are the statements' lines; "key", "client" and "model" the usage
# page's totals per key, client and model. Settles with no client are only in the shapes without one.
ledger_days = sa.Table(
    "ledger_days", metadata,
    sa.Column("shape", sa.String(16), primary_key=True),  # one of ledger_days.SHAPES
    sa.Column("day", TS, primary_key=True),  # UTC midnight
    sa.Column("key_id", sa.String(40), primary_key=True),
    sa.Column("client_id", sa.String(40), primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
    sa.Column("completion_tokens", sa.BigInteger, nullable=False),
    sa.Column("images", sa.BigInteger, nullable=False),
    sa.Column("cost", sa.BigInteger, nullable=False),  # micro-USD charged (-amount)
    sa.Column("uncharged", sa.BigInteger, nullable=False),
    sa.Index("ix_ledger_days_key", "shape", "key_id", "day"),
    sa.Index("ix_ledger_days_client", "shape", "client_id", "day"),
    sqlite_with_rowid=False,
)

# The operator's model catalogue (platform/catalogue.py): the models the platform offers, and for
# each, which clients the operator approved or refused to serve it.
model_catalogue = sa.Table(
    "model_catalogue", metadata,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("any_client", sa.Boolean, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

model_approvals = sa.Table(
    "model_approvals", metadata,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("client_id", sa.String(40), primary_key=True),  # deleted with the client (accounts.delete_client)
    sa.Column("approved", sa.Boolean, nullable=False),
    sa.Column("decided_at", TS, nullable=False),
    sa.Index("ix_model_approvals_client", "client_id"),
)
