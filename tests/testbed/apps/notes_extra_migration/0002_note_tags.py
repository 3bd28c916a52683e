"""add a nullable tags column to notes

Revision ID: 0002_note_tags
Revises: 0001_initial
"""
from alembic import op
import sqlalchemy as sa

revision = "0002_note_tags"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("notes", sa.Column("tags", sa.String(200), nullable=True))


def downgrade():
    op.drop_column("notes", "tags")
