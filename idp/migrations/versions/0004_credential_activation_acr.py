"""WebAuthn credentials keep the acr proven by the login that activated them

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 20:50:00

A sign-in with a credential never yields more than its activation login proved (issue 11, attack 4).
Credentials activated before this revision have no recorded acr: they count at the password's level.
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('webauthn_credentials') as batch_op:
        batch_op.add_column(sa.Column('activation_acr', sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table('webauthn_credentials') as batch_op:
        batch_op.drop_column('activation_acr')
