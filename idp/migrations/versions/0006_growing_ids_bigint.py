"""growing ids as bigint

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 19:55:00

``audit_events.id``, ``oidc_refresh_tokens.id`` and ``trusted_browsers.id`` (one row per audit event, per
refresh-token rotation, per browser trusted at a login) become int8 on PostgreSQL, with their sequences: an
int4 column or sequence stops at 2 147 483 647, which the national rates of docs/CAPACITY.md reach within
months (the audit trail and the rotations) or years (trusted browsers). The column change rewrites the table
under an exclusive lock, so run it while the tables are small (or in a maintenance window); it gives up
after ``lock_timeout`` (10 s) rather than queue every login behind it on a busy database (run it again
later). SQLite's INTEGER PRIMARY KEY is already 64-bit: nothing to do there.
"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

TABLES = ("audit_events", "oidc_refresh_tokens", "trusted_browsers")


def _retype(kind: str) -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("SET LOCAL lock_timeout = '10s'")
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN id TYPE {kind}")
        # The sequence that numbers the rows has its own type (PostgreSQL 10+), int4 for a SERIAL column;
        # none when a restore left the default without its owned sequence (then the column alone changes).
        op.execute(f"DO $$ DECLARE seq text := pg_get_serial_sequence('{table}', 'id'); BEGIN "
                   f"IF seq IS NOT NULL THEN EXECUTE format('ALTER SEQUENCE %s AS {kind}', seq); END IF; END $$")


def upgrade():
    _retype("bigint")


def downgrade():
    _retype("integer")
