"""capacity at SLO per family: the `capacities` table, the `capacity_leaderboard` view, and
results.sent_rps

A family is one platform x server configuration x batch size of a run; its points are the
rungs of a load ladder. analyze stores, per family, the highest offered load whose rung is
VALID and holds under the run's SLO (analysis/capacity.py), its bracket (the lowest failing
load above it, and why), and cost and energy at that capacity. results.sent_rps is the rate
an open-loop schedule really sent (a Poisson count strays from its nominal rate by about
1/sqrt(n)): whether a rung kept up is judged against it. Runs analysed before this revision
have no capacity rows and no sent_rps until `inferbench stage analyze --run ID` runs again.

Revision ID: i13_capacities
Revises: i3d_version_text
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i13_capacities"
down_revision = "i3d_version_text"
branch_labels = None
depends_on = None

# One row per family, ranked by what `inferbench leaderboard` shows by default. Plain SQL so
# any client (psql, Grafana, a notebook) reads the same numbers.
CAPACITY_LEADERBOARD_SQL = """
CREATE VIEW capacity_leaderboard AS
SELECT c.run_id, ru.name, ru.sweep_id, ru.created_at, ru.hardware,
       c.platform, c.config_index, sc.label AS server_config, m.family, m.model_name,
       (m.hyperparams ->> 'depth')::int AS depth,
       (m.hyperparams ->> 'width')::int AS width,
       c.batch_size, c.open_loop, c.n_rungs, c.slo_percentile, c.slo_ms,
       c.capacity_rps, c.capacity_items_per_s, c.capacity_offered, c.latency_at_slo_ms,
       c.search_cap_reached,
       (c.capacity_bracket ->> 'offered')::float AS bracket_offered,
       c.capacity_bracket ->> 'reason' AS bracket_reason,
       c.usd_per_hour, c.cost_per_million_usd, c.cost_per_million_items_usd,
       c.energy_j_per_request, c.energy_method, c.answer,
       ru.verdict AS run_verdict, ru.quality_ok
FROM capacities c
JOIN runs ru ON ru.run_id = c.run_id
LEFT JOIN server_configs sc ON sc.run_id = c.run_id AND sc.platform = c.platform
    AND sc.config_index = c.config_index
LEFT JOIN models m ON m.run_id = c.run_id
"""


def upgrade() -> None:
    op.add_column("results", sa.Column("sent_rps", sa.Float(), nullable=True))
    op.create_table(
        "capacities",
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("config_index", sa.Integer(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("slo_percentile", sa.Float(), nullable=False),
        sa.Column("slo_ms", sa.Float(), nullable=False),
        sa.Column("open_loop", sa.Boolean(), nullable=False),
        sa.Column("n_rungs", sa.Integer(), nullable=False),
        sa.Column("capacity_point", sa.Integer(), nullable=True),
        sa.Column("capacity_offered", sa.Float(), nullable=True),
        sa.Column("capacity_rps", sa.Float(), nullable=True),
        sa.Column("capacity_items_per_s", sa.Float(), nullable=True),
        sa.Column("latency_at_slo_ms", sa.Float(), nullable=True),
        sa.Column("search_cap_reached", sa.Boolean(), nullable=False),
        sa.Column("capacity_bracket", sa.JSON(), nullable=True),
        sa.Column("usd_per_hour", sa.Float(), nullable=True),
        sa.Column("cost_per_million_usd", sa.Float(), nullable=True),
        sa.Column("cost_per_million_items_usd", sa.Float(), nullable=True),
        sa.Column("energy_j_per_request", sa.Float(), nullable=True),
        sa.Column("energy_method", sa.String(length=32), nullable=True),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "platform", "config_index", "batch_size"),
    )
    op.execute(CAPACITY_LEADERBOARD_SQL)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS capacity_leaderboard")
    op.drop_table("capacities")
    op.drop_column("results", "sent_rps")
