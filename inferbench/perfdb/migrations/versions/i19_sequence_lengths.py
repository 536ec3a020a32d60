"""variable-length sequences: requests.seq_len (the request's longest sample) and
requests.padded_len (the sequence axis it was sent with)

Existing rows keep NULL: their workloads sent every request at the model's full sequence.

Revision ID: i19_sequence_lengths
Revises: i18_model_registry
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i19_sequence_lengths"
down_revision = "i18_model_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("requests", sa.Column("seq_len", sa.Integer(), nullable=True))
    op.add_column("requests", sa.Column("padded_len", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("requests", "padded_len")
    op.drop_column("requests", "seq_len")
