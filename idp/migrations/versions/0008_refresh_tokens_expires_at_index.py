"""oidc_refresh_tokens.expires_at indexed: the daily retention purge (idp tokens purge) finds the expired
families without reading the whole table

On PostgreSQL the index is built CONCURRENTLY (outside the migration's transaction): refresh grants keep
being written while it builds, on a national table. A concurrent build that was cancelled (a timeout, a
killed deployment) leaves an INVALID index of that name: it is dropped and built again, and the migration
fails rather than record 0008 over an index that is not valid.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 19:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

INDEX = 'ix_oidc_refresh_tokens_expires_at'
_VALID = sa.text("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                 "WHERE c.relname = :name")


def upgrade():
    if op.get_context().dialect.name != "postgresql":
        op.create_index(INDEX, 'oidc_refresh_tokens', ['expires_at'], unique=False)
        return
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        if bind.execute(_VALID, {"name": INDEX}).scalar() is False:  # a cancelled concurrent build
            op.drop_index(INDEX, table_name='oidc_refresh_tokens', postgresql_concurrently=True)
        op.create_index(INDEX, 'oidc_refresh_tokens', ['expires_at'], unique=False,
                        postgresql_concurrently=True, if_not_exists=True)
        if bind.execute(_VALID, {"name": INDEX}).scalar() is not True:
            raise RuntimeError(f"{INDEX} was not built (run the migration again)")


def downgrade():
    if op.get_context().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.drop_index(INDEX, table_name='oidc_refresh_tokens', postgresql_concurrently=True, if_exists=True)
    else:
        op.drop_index(INDEX, table_name='oidc_refresh_tokens')
