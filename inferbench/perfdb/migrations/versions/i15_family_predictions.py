"""predicted latency per family and per point: the `family_predictions` table and
points.predicted_mean_ms / predicted_p99_ms

Before a Poisson search, the load stage profiles each family lightly (1..c + 1 requests in
flight) and predicts its latency curve with a queueing model (analysis/prediction.py). The
table keeps, per family (platform x server configuration x batch size), the profile's levels
(each with its latency law, so the curve can be recomputed), the service model, the rate
predicted within the SLO and where the search started because of it; each point keeps the
mean and p99 predicted at its offered rate.

Existing rows keep NULL and runs collected before have no prediction rows: those runs were
measured without a prediction.

Revision ID: i15_family_predictions
Revises: i14_issuer_nice
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i15_family_predictions"
down_revision = "i14_issuer_nice"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("points", sa.Column("predicted_mean_ms", sa.Float(), nullable=True))
    op.add_column("points", sa.Column("predicted_p99_ms", sa.Float(), nullable=True))
    op.create_table(
        "family_predictions",
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("config_index", sa.Integer(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("parallelism", sa.Integer(), nullable=False),
        sa.Column("dynamic_batching", sa.Boolean(), nullable=False),
        sa.Column("profile_s", sa.Float(), nullable=True),
        sa.Column("levels", sa.JSON(), nullable=False),
        sa.Column("model", sa.JSON(), nullable=True),
        sa.Column("model_name", sa.Text(), nullable=True),
        sa.Column("unmodelled", sa.Text(), nullable=True),
        sa.Column("capacity_rps", sa.Float(), nullable=True),
        sa.Column("slo_capacity_rps", sa.Float(), nullable=True),
        sa.Column("guided_start", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "platform", "config_index", "batch_size"),
    )


def downgrade() -> None:
    op.drop_table("family_predictions")
    op.drop_column("points", "predicted_p99_ms")
    op.drop_column("points", "predicted_mean_ms")
