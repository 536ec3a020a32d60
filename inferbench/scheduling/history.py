"""History of finished runs in the results database, for the predictor.

A run's actual length is `finished_at - created_at` of its `runs` row (written by the
generate stage and by analyze). Similar runs: the same spec apart from its labels (name,
sweep_id) if there are any, else the same model family on the same set of platforms.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from inferbench.perfdb import schema
from inferbench.scheduling.predictor import HISTORY_RUNS, prior
from inferbench.spec import BenchmarkSpec, parse_spec


def _pairs(rows) -> list[tuple[float, float]]:
    out = []
    for spec_json, created, finished in rows:
        try:
            past = parse_spec(spec_json, source="history")
        except Exception:  # a run from an older spec version: it tells us nothing
            continue
        out.append((prior(past).prior_s, (finished - created).total_seconds()))
    return out


# Labels that do not change what a run does: runs that differ only in them are the same job.
_LABELS = ("name", "sweep_id")


def _unlabelled(spec_json: dict) -> dict:
    return {k: v for k, v in spec_json.items() if k not in _LABELS}


def _model_kind(model: dict) -> str | None:
    """A stored spec's model kind (ModelSpec.kind): its architecture, else its family."""
    return model.get("architecture") or model.get("family")


def similar_runs(conn: Connection, spec: BenchmarkSpec,
                 limit: int = HISTORY_RUNS) -> list[tuple[float, float]]:
    """(prior_s, actual_s) of the newest finished, complete runs like `spec`: the same spec
    (apart from its name and sweep label) if there are any, else the same model family on
    the same platforms."""
    runs = schema.runs
    candidates = conn.execute(
        select(runs.c.spec, runs.c.created_at, runs.c.finished_at)
        .where(runs.c.finished_at.is_not(None), runs.c.status == "complete")
        .order_by(runs.c.finished_at.desc()).limit(limit * 20)).all()
    mine = _unlabelled(spec.model_dump(mode="json"))
    same = [r for r in candidates if _unlabelled(r[0]) == mine]
    if same:
        return _pairs(same[:limit])
    platforms = sorted(p.value for p in spec.platforms)
    like = [r for r in candidates
            if _model_kind(r[0].get("model") or {}) == spec.model.kind
            and sorted(r[0].get("platforms", [])) == platforms]
    return _pairs(like[:limit])
