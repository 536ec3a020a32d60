"""analysis: runs.sweep_id, quality flags, cost/energy per point, the leaderboard view

Revision ID: i4_analysis
Revises: i3b_server_config
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i4_analysis"
down_revision = "i3b_server_config"
branch_labels = None
depends_on = None

# One row per measured point with everything a leaderboard sorts by. Plain SQL so any client
# (psql, Grafana, a notebook) can read it; `inferbench leaderboard` reads it too. Model
# hyper-parameters come from the JSON the generator stored, so new families flow through.
LEADERBOARD_SQL = """
CREATE VIEW leaderboard AS
SELECT r.run_id, ru.name, ru.sweep_id, ru.created_at, ru.hardware,
       r.platform, r.config_index, sc.label AS server_config, r.point, m.family, m.model_name,
       (m.hyperparams ->> 'depth')::int AS depth,
       (m.hyperparams ->> 'width')::int AS width,
       r.batch_size, p.arrival, p.target_rate_rps, p.concurrency,
       r.n_ok, r.n_failed, r.throughput_rps,
       r.throughput_rps * r.batch_size AS items_per_s,
       (r.latency_ms ->> 'p50')::float AS p50_ms,
       (r.latency_ms ->> 'p99')::float AS p99_ms,
       (r.latency_ms ->> 'p99.9')::float AS p999_ms,
       r.late_send_pct, r.meets_slo, r.verdict,
       r.usd_per_hour, r.cost_per_million_usd,
       r.energy_j_per_request, r.energy_method, r.co2_g_per_request,
       ru.quality_ok
FROM results r
JOIN runs ru ON ru.run_id = r.run_id
JOIN points p ON p.run_id = r.run_id AND p.platform = r.platform
    AND p.config_index = r.config_index AND p.point = r.point
LEFT JOIN server_configs sc ON sc.run_id = r.run_id AND sc.platform = r.platform
    AND sc.config_index = r.config_index
LEFT JOIN models m ON m.run_id = r.run_id
"""


def upgrade() -> None:
    op.add_column("runs", sa.Column("sweep_id", sa.String(length=80), nullable=True))
    op.add_column("runs", sa.Column("hardware", sa.String(length=200), nullable=True))
    op.add_column("runs", sa.Column("quality_ok", sa.Boolean(), nullable=True))
    op.add_column("runs", sa.Column("quality_reasons", sa.JSON(), nullable=True))
    op.add_column("runs", sa.Column("analysis", sa.JSON(), nullable=True))
    op.create_index("ix_runs_sweep_id", "runs", ["sweep_id"])
    for name, type_ in (("usd_per_hour", sa.Float()), ("cost_per_million_usd", sa.Float()),
                        ("energy_j_per_request", sa.Float()),
                        ("energy_method", sa.String(length=32)),
                        ("co2_g_per_request", sa.Float())):
        op.add_column("results", sa.Column(name, type_, nullable=True))
    op.execute(LEADERBOARD_SQL)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS leaderboard")
    for name in ("co2_g_per_request", "energy_method", "energy_j_per_request",
                 "cost_per_million_usd", "usd_per_hour"):
        op.drop_column("results", name)
    op.drop_index("ix_runs_sweep_id", table_name="runs")
    for name in ("analysis", "quality_reasons", "quality_ok", "hardware", "sweep_id"):
        op.drop_column("runs", name)
