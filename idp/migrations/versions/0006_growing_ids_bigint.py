"""growing ids as bigint

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 19:55:00

``audit_events.id`` and ``oidc_refresh_tokens.id`` (one row per audit event, per refresh-token rotation)
become int8 on PostgreSQL, with their sequences: an int4 column or sequence stops at 2 147 483 647,
which the national rates of docs/CAPACITY.md reach within months. The column change rewrites the table
under an exclusive lock, so run it while the tables are small (or in a maintenance window). SQLite's
INTEGER PRIMARY KEY is already 64-bit: nothing to do there.
"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

TABLES = ("audit_events", "oidc_refresh_tokens")


def _retype(kind: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN id TYPE {kind}")
        # The sequence that numbers the rows has its own type (PostgreSQL 10+), int4 for a SERIAL column.
        op.execute(f"DO $$ BEGIN EXECUTE format('ALTER SEQUENCE %s AS {kind}', "
                   f"pg_get_serial_sequence('{table}', 'id')); END $$")


def upgrade():
    _retype("bigint")


def downgrade():
    _retype("integer")
