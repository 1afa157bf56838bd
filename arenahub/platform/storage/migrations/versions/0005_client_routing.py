"""clients: routing priority and weight, drain, and maintenance (reason and since when)

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("weight", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("draining", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("maintenance_reason", sa.String(500)))
        batch.add_column(sa.Column("maintenance_since", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        for name in ("maintenance_since", "maintenance_reason", "draining", "weight", "priority"):
            batch.drop_column(name)
