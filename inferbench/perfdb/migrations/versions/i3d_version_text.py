"""free-length provenance strings: deployments.platform_version and conversions.tool as TEXT

A platform's version string names its components (TorchServe's is 50-odd characters, a
Triton image reference can be longer), and a 64-character column made the collect stage
fail on it, losing the platform's measurements from the database.

Revision ID: i3d_version_text
Revises: i3c_server_stats
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i3d_version_text"
down_revision = "i3c_server_stats"
branch_labels = None
depends_on = None

COLUMNS = (("deployments", "platform_version", True), ("conversions", "tool", False))


def upgrade() -> None:
    for table, column, nullable in COLUMNS:
        op.alter_column(table, column, type_=sa.Text(), existing_type=sa.String(64),
                        existing_nullable=nullable)


def downgrade() -> None:
    for table, column, nullable in COLUMNS:
        op.alter_column(table, column, type_=sa.String(64), existing_type=sa.Text(),
                        existing_nullable=nullable)
