"""resource use at each family's capacity rung: the `capacity_utilisation` view (server CPU
and RSS, client CPU, GPU utilisation over the capacity point's measurement window), which
`inferbench leaderboard` shows beside the capacity

Revision ID: i20_capacity_utilisation
Revises: i19_sequence_lengths
"""

from __future__ import annotations

from alembic import op

revision = "i20_capacity_utilisation"
down_revision = "i19_sequence_lengths"
branch_labels = None
depends_on = None

# Plain SQL, like capacity_leaderboard: any client reads the same numbers. CPU in percent
# of one core; a family with no holding rung (capacity_point NULL) gets NULLs.
CAPACITY_UTILISATION_SQL = """
CREATE VIEW capacity_utilisation AS
SELECT c.run_id, c.platform, c.config_index, c.batch_size,
       avg(s.cpu_pct) FILTER (WHERE s.source = 'server') AS server_cpu_pct,
       max(s.rss_bytes) FILTER (WHERE s.source = 'server') / 1e6 AS server_rss_mb,
       avg(s.cpu_pct) FILTER (WHERE s.source = 'client') AS client_cpu_pct,
       avg(s.gpu_util_pct) FILTER (WHERE s.source LIKE 'gpu%') AS gpu_util_pct
FROM capacities c
LEFT JOIN points p ON p.run_id = c.run_id AND p.platform = c.platform
    AND p.config_index = c.config_index AND p.point = c.capacity_point
LEFT JOIN resource_samples s ON s.run_id = c.run_id AND s.platform = c.platform
    AND s.config_index = c.config_index AND s.t_ns BETWEEN p.started_ns AND p.ended_ns
GROUP BY c.run_id, c.platform, c.config_index, c.batch_size
"""


def upgrade() -> None:
    op.execute(CAPACITY_UTILISATION_SQL)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS capacity_utilisation")
