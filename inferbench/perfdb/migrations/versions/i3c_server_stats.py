"""server-side statistics per point: requests the server completed during the point and
their mean queue and compute time (Triton's statistics extension, the FastAPI server's
batcher counters), so the report can split latency into transmit / queue / compute

Existing rows keep NULL: those points were measured without reading the server.

Revision ID: i3c_server_stats
Revises: i6_sched
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i3c_server_stats"
down_revision = "i6_sched"
branch_labels = None
depends_on = None

COLUMNS = (("server_requests", sa.Integer()), ("server_queue_ms", sa.Float()),
           ("server_compute_ms", sa.Float()))


def upgrade() -> None:
    for name, type_ in COLUMNS:
        op.add_column("points", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    for name, _ in COLUMNS:
        op.drop_column("points", name)
