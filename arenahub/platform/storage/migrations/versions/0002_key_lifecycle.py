"""consumer keys: owner email, expiry, allowed models, token and concurrency limits, credit, metadata

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("consumer_keys") as batch:
        batch.add_column(sa.Column("email", sa.String(320)))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("allowed_models", sa.JSON))
        batch.add_column(sa.Column("tpm", sa.Integer))
        batch.add_column(sa.Column("max_concurrent", sa.Integer))
        # False: the key spends from its credit balance; True (every key made before this): unlimited.
        batch.add_column(sa.Column("unlimited", sa.Boolean, nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("meta", sa.JSON))
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("consumer_keys") as batch:
        for name in ("deleted_at", "meta", "unlimited", "max_concurrent", "tpm", "allowed_models", "expires_at",
                     "email"):
            batch.drop_column(name)
