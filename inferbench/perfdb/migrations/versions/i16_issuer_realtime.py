"""the load generator's real-time policy per point: the issuer runs at SCHED_FIFO while it
measures where the host allows it (inferbench/load/priority.py) and records the priority it
really ran at, so a point measured at the normal policy can be told apart

Existing rows keep NULL: those points were measured at the normal policy.

Revision ID: i16_issuer_realtime
Revises: i15_family_predictions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i16_issuer_realtime"
down_revision = "i15_family_predictions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("points", sa.Column("issuer_realtime", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("points", "issuer_realtime")
