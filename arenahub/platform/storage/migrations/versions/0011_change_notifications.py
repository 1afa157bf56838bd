"""change notifications

change notifications: on PostgreSQL, a commit that changes what the platform instances cache (clients,
keys, top-ups, prices, the catalogue, settings) notifies channel arenahub_changes with the table's
name; the instances LISTEN and read the change at once (cluster/changes.py). Heartbeat and usage
writes do not notify: only rows whose updated_at moves, and money entries, do.

Revision ID: 0011
Revises: 0010
"""
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

FUNCTION = """
CREATE OR REPLACE FUNCTION arenahub_notify_change() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('arenahub_changes', TG_TABLE_NAME);
  RETURN NULL;
END
$$ LANGUAGE plpgsql
"""

# (table, trigger suffix, the trigger's timing and condition)
TRIGGERS = [
    ("clients", "rows", "AFTER INSERT OR DELETE ON clients FOR EACH STATEMENT"),
    ("clients", "updates", "AFTER UPDATE ON clients FOR EACH ROW "
                           "WHEN (OLD.updated_at IS DISTINCT FROM NEW.updated_at)"),
    ("consumer_keys", "rows", "AFTER INSERT OR DELETE ON consumer_keys FOR EACH STATEMENT"),
    ("consumer_keys", "updates", "AFTER UPDATE ON consumer_keys FOR EACH ROW "
                                 "WHEN (OLD.updated_at IS DISTINCT FROM NEW.updated_at)"),
    ("ledger_entries", "money", "AFTER INSERT ON ledger_entries FOR EACH ROW "
                                "WHEN (NEW.kind IN ('topup', 'adjustment'))"),
    ("model_prices", "rows", "AFTER INSERT OR UPDATE OR DELETE ON model_prices FOR EACH STATEMENT"),
    ("model_catalogue", "rows", "AFTER INSERT OR UPDATE OR DELETE ON model_catalogue FOR EACH STATEMENT"),
    ("model_approvals", "rows", "AFTER INSERT OR UPDATE OR DELETE ON model_approvals FOR EACH STATEMENT"),
    ("platform_settings", "rows", "AFTER INSERT OR UPDATE OR DELETE ON platform_settings FOR EACH STATEMENT"),
]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite: one instance, which reads changes by polling
    op.execute(FUNCTION)
    for table, suffix, spec in TRIGGERS:
        op.execute(f"CREATE TRIGGER arenahub_{table}_{suffix} {spec} EXECUTE FUNCTION arenahub_notify_change()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, suffix, _ in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS arenahub_{table}_{suffix} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS arenahub_notify_change()")
