"""clients, consumer keys and request records

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("bridge_url", sa.String(500), nullable=False),
        sa.Column("api_key_hash", sa.String(64), nullable=False),
        sa.Column("rpm", sa.Integer),
        sa.Column("max_concurrent", sa.Integer, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("models", sa.JSON, nullable=False),
        sa.Column("client_version", sa.String(64)),
        sa.Column("last_stats", sa.JSON),
        sa.Column("last_seen_at", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "consumer_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("rpm", sa.Integer),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_consumer_keys_updated_at", "consumer_keys", ["updated_at"])
    op.create_table(
        "request_records",
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
    )
    op.create_index("ix_request_records_created_at", "request_records", ["created_at"])
    op.create_index("ix_request_records_key_created", "request_records", ["key_id", "created_at"])
    op.create_index("ix_request_records_client_created", "request_records", ["client_id", "created_at"])
    op.create_index("ix_request_records_model_created", "request_records", ["model", "created_at"])


def downgrade() -> None:
    op.drop_table("request_records")
    op.drop_table("consumer_keys")
    op.drop_table("clients")
