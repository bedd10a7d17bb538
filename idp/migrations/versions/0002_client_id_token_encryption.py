"""client metadata: ID token encryption (OIDC Registration id_token_encrypted_response_alg/enc)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 20:50:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('oidc_clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('id_token_encrypted_response_alg', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('id_token_encrypted_response_enc', sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table('oidc_clients', schema=None) as batch_op:
        batch_op.drop_column('id_token_encrypted_response_enc')
        batch_op.drop_column('id_token_encrypted_response_alg')
