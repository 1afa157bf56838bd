"""the credit ledger, admin-set model prices, and the cost of each request

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ledger_entries",
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
        sa.UniqueConstraint("request_id", "kind", name="uq_ledger_entries_request_kind"),
    )
    op.create_index("ix_ledger_entries_key_created", "ledger_entries", ["key_id", "created_at"])
    op.create_index("ix_ledger_entries_client_created", "ledger_entries", ["client_id", "created_at"])
    op.create_index("ix_ledger_entries_kind_created", "ledger_entries", ["kind", "created_at"])
    op.create_table(
        "model_prices",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("prompt_per_1m", sa.BigInteger, nullable=False),
        sa.Column("completion_per_1m", sa.BigInteger, nullable=False),
        sa.Column("per_image", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_model_prices_updated_at", "model_prices", ["updated_at"])
    with op.batch_alter_table("request_records") as batch:
        batch.add_column(sa.Column("cost", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("request_records") as batch:
        batch.drop_column("cost")
    op.drop_table("model_prices")
    op.drop_table("ledger_entries")
