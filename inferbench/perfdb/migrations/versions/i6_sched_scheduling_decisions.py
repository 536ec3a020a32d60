"""scheduling decisions: sched_jobs, one row per scheduled DAG run (policy, worker pool,
predicted duration, priority weight)

Revision ID: i6_sched
Revises: i4_analysis
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i6_sched"
down_revision = "i4_analysis"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sched_jobs",
        sa.Column("dag_id", sa.String(length=250), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("policy", sa.String(length=16), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("predicted_s", sa.Float(), nullable=False),
        sa.Column("order_key", sa.Float(), nullable=False),
        sa.Column("priority_weight", sa.BigInteger(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_ref_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("loads", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("dag_id", "run_id"),
        sa.UniqueConstraint("seq"),
    )


def downgrade() -> None:
    op.drop_table("sched_jobs")
