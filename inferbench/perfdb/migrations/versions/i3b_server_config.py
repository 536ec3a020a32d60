"""server configurations: a table of the run's configurations (label + knobs) and a
config_index in the key of every per-deployment measurement table

A sweep over batching and instances starts one server per configuration, so deployments,
points, requests, resource samples, provenance and results are keyed by
(run_id, platform, config_index, ...). Existing rows get config_index 0: the one
configuration a spec without a server section has.

Revision ID: i3b_server_config
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i3b_server_config"
down_revision = "0001"
branch_labels = None
depends_on = None

# table -> its primary key after the change (config_index right after platform)
KEYS = {
    "deployments": ["run_id", "platform", "config_index"],
    "points": ["run_id", "platform", "config_index", "point"],
    "requests": ["run_id", "platform", "config_index", "point", "seq"],
    "resource_samples": ["run_id", "platform", "config_index", "source", "t_ns"],
    "provenance": ["run_id", "platform", "config_index"],
    "results": ["run_id", "platform", "config_index", "point"],
}


def upgrade() -> None:
    op.create_table(
        "server_configs",
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("config_index", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("knobs", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "platform", "config_index"),
    )
    for table, key in KEYS.items():
        op.add_column(table, sa.Column("config_index", sa.Integer(), nullable=False,
                                       server_default="0"))
        # PostgreSQL's default name for the key 0001 created without naming it.
        op.drop_constraint(f"{table}_pkey", table, type_="primary")
        op.create_primary_key(f"{table}_pkey", table, key)


def downgrade() -> None:
    for table, key in KEYS.items():
        op.drop_constraint(f"{table}_pkey", table, type_="primary")
        op.execute(sa.text(f"DELETE FROM {table} WHERE config_index <> 0"))
        op.create_primary_key(f"{table}_pkey", table, [k for k in key if k != "config_index"])
        op.drop_column(table, "config_index")
    op.drop_table("server_configs")
