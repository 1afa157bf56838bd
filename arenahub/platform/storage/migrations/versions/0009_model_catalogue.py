"""model catalogue

model catalogue: the models the operator offers, and which clients may serve each (approvals and refusals)

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "model_catalogue",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("any_client", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "model_approvals",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("client_id", sa.String(40), primary_key=True),  # deleted with the client (accounts.delete_client)
        sa.Column("approved", sa.Boolean, nullable=False),
        sa.Column("decided_at", TS, nullable=False),
    )
    op.create_index("ix_model_approvals_client", "model_approvals", ["client_id"])


def downgrade() -> None:
    op.drop_index("ix_model_approvals_client", "model_approvals")
    op.drop_table("model_approvals")
    op.drop_table("model_catalogue")
