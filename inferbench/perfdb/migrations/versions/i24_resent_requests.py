"""requests sent again per point: a request lost to a server closing an idle keep-alive
connection goes once more on a new connection (inferbench/load/http.py); the point counts
them, since their latency includes the lost attempt

Existing rows keep NULL: those points did not count them.

Revision ID: i24_resent_requests
Revises: i23_request_timing
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i24_resent_requests"
down_revision = "i23_request_timing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("points", sa.Column("resent_requests", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("points", "resent_requests")
