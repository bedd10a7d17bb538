"""accounts.grants_not_before: the cut-off of an account's grants

Grants (browser sessions, codes, refresh-token families) from a login before it are refused. A password
change sets it (as it set password_changed_at, which was the cut-off until now), and so does disabling the
account. Null (every existing account: the column is added without rewriting the table, instant on a
national table) reads as the last password change, which was the cut-off until now: nothing honoured
before is refused now.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 08:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_context().dialect.name == "postgresql":
        # Instant, but it needs the table's exclusive lock: give up rather than queue every login behind a
        # long transaction (run it again later).
        op.execute("SET LOCAL lock_timeout = '10s'")
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('grants_not_before', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('grants_not_before')
