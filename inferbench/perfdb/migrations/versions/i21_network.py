"""network conditions: points.transmit_up_ms and points.transmit_down_ms (the mean transmit
time each way through the emulated link) and points.link_wait_ms (the mean time a request
waited for the link)

Existing rows keep NULL: they were measured on the host's loopback.

Revision ID: i21_network
Revises: i20_capacity_utilisation
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i21_network"
down_revision = "i20_capacity_utilisation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("points", sa.Column("transmit_up_ms", sa.Float(), nullable=True))
    op.add_column("points", sa.Column("transmit_down_ms", sa.Float(), nullable=True))
    op.add_column("points", sa.Column("link_wait_ms", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("points", "link_wait_ms")
    op.drop_column("points", "transmit_down_ms")
    op.drop_column("points", "transmit_up_ms")
