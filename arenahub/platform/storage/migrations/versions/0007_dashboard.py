"""dashboard

dashboard: admin sign-in sessions; request detail (routing attempts, error message); stored prompts and
answers (only when the operator turns that on)

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "admin_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
    )
    op.create_index("ix_admin_sessions_expires_at", "admin_sessions", ["expires_at"])
    op.create_table(
        "request_contents",
        sa.Column("request_id", sa.String(40), primary_key=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
    )
    op.create_index("ix_request_contents_created_at", "request_contents", ["created_at"])
    with op.batch_alter_table("request_records") as batch:
        batch.add_column(sa.Column("detail", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("request_records") as batch:
        batch.drop_column("detail")
    op.drop_index("ix_request_contents_created_at", "request_contents")
    op.drop_table("request_contents")
    op.drop_index("ix_admin_sessions_expires_at", "admin_sessions")
    op.drop_table("admin_sessions")
