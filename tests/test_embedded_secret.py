"""The embedded Airflow's JWT secret: owner-only from its creation, stable across starts."""

from __future__ import annotations

import stat

from inferbench.embedded.airflow import _secret


def test_the_jwt_secret_is_created_owner_only_and_kept(tmp_path):
    first = _secret(tmp_path)
    files = list((tmp_path / "airflow").iterdir())
    assert [f.name for f in files] == ["jwt_secret"]  # no temporary file left behind
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert len(first) >= 32 and _secret(tmp_path) == first
