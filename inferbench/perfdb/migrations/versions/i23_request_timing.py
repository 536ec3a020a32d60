"""a request's time on the wire and in the client: the server's wait for a request's body
after its head (points.server_receive_ms), the client's time from the scheduled send to the
bytes written (points.client_send_ms) and from the answer's first byte to its last
(points.client_receive_ms)

Existing rows keep NULL: they were measured before these were timed.

Revision ID: i23_request_timing
Revises: i22_pipeline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i23_request_timing"
down_revision = "i22_pipeline"
branch_labels = None
depends_on = None

POINT_COLUMNS = ("server_receive_ms", "client_send_ms", "client_receive_ms")


def upgrade() -> None:
    for name in POINT_COLUMNS:
        op.add_column("points", sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    for name in POINT_COLUMNS:
        op.drop_column("points", name)
