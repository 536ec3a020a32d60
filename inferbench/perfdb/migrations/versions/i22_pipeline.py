"""pre- and post-processing: the mean time per request on the client or in the server
(points), and the client's time per request (requests); the server's handling time outside
its queue, model and processing (points.server_handling_ms)

Existing rows keep NULL: they were measured without a pipeline.

Revision ID: i22_pipeline
Revises: i21_network
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i22_pipeline"
down_revision = "i21_network"
branch_labels = None
depends_on = None

POINT_COLUMNS = ("client_preprocess_ms", "client_postprocess_ms", "server_preprocess_ms",
                 "server_postprocess_ms", "server_handling_ms")
REQUEST_COLUMNS = ("client_preprocess_ms", "client_postprocess_ms")


def upgrade() -> None:
    for name in POINT_COLUMNS:
        op.add_column("points", sa.Column(name, sa.Float(), nullable=True))
    for name in REQUEST_COLUMNS:
        op.add_column("requests", sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    for name in REQUEST_COLUMNS:
        op.drop_column("requests", name)
    for name in POINT_COLUMNS:
        op.drop_column("points", name)
