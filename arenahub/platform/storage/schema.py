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
    sa.Index("ix_ledger_entries_key_created", "key_id", "created_at"),
    sa.Index("ix_ledger_entries_client_created", "client_id", "created_at"),
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
