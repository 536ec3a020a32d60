"""NVML's total-energy counter per GPU sample: resource_samples.gpu_energy_mj, so a point's
GPU energy is the counter's difference where the GPU has one

Existing rows keep NULL: their energy stays the integral of the power samples.

Revision ID: i17_gpu_energy
Revises: i16_issuer_realtime
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i17_gpu_energy"
down_revision = "i16_issuer_realtime"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("resource_samples", sa.Column("gpu_energy_mj", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("resource_samples", "gpu_energy_mj")
