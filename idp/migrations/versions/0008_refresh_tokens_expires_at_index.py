"""oidc_refresh_tokens.expires_at indexed: the daily retention purge (idp tokens purge) finds the expired
families without reading the whole table

On PostgreSQL the index is built CONCURRENTLY (outside the migration's transaction): refresh grants keep
being written while it builds, on a national table.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 19:30:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

INDEX = 'ix_oidc_refresh_tokens_expires_at'


def upgrade():
    if op.get_context().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.create_index(INDEX, 'oidc_refresh_tokens', ['expires_at'], unique=False,
                            postgresql_concurrently=True, if_not_exists=True)
    else:
        op.create_index(INDEX, 'oidc_refresh_tokens', ['expires_at'], unique=False)


def downgrade():
    if op.get_context().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.drop_index(INDEX, table_name='oidc_refresh_tokens', postgresql_concurrently=True, if_exists=True)
    else:
        op.drop_index(INDEX, table_name='oidc_refresh_tokens')
