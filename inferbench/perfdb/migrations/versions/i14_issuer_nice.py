"""the load generator's CPU niceness per point: the issuer asks for a higher priority while
it measures (inferbench/load/priority.py) and records the niceness it really ran at, so a
point measured without that privilege can be told apart

Existing rows keep NULL: those points were measured at the stage process's own niceness.

Revision ID: i14_issuer_nice
Revises: i13_capacities
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i14_issuer_nice"
down_revision = "i13_capacities"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("points", sa.Column("issuer_nice", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("points", "issuer_nice")
