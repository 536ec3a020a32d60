"""Single-file offline HTML report of a benchmark run.

:func:`render_report` renders ``templates/report.html`` (Jinja2, autoescape on)
into ``out_dir/report.html``: one self-contained file with inline CSS and the
PNG plots embedded as base64 ``data:`` URIs, no external references, so it can
be mailed or archived and opened without network access.

The ``report`` dict (missing optional keys render as "–"; the aliases in
brackets are accepted too, so rows straight from the results database fit)::

    {
      "answer": str,                      # optional one-line answer, shown as a banner on
                                          # top (analysis.capacity.answer)
      "run": {
        "run_id": str | int,
        "name": str,
        "status": str,                    # e.g. "complete", "partial"
        "verdict": "VALID" | "INVALID" | None,
        "verdict_reasons": list[str],
        "created_at": str | datetime,
        "spec": dict,                     # the run spec, shown as pretty JSON
                                          # (a JSON string is parsed first)
      },
      "results": [                        # one dict per point, in display order
        {
          "label": str,                   # optional, e.g. "onnxruntime batch 8"
          "platform": str,
          "batch_size": int,
          "arrival": str,                 # "poisson" | "constant" | "closed" ...
          "target_rate_rps": float | None,  # open loop: target rate [target_rps]
          "concurrency": int | None,      # closed loop: number of clients
          "n_ok": int,
          "n_failed": int,
          "throughput_rps": float,
          "latency_ms": dict,             # analysis.percentiles.exact_percentiles keys:
                                          # mean, p50, p90, p95, p99, p99.9, max
          "p99_ci_ms": (float | None, float | None),   # [latency_ms["p99_ci"]]
          "late_send_pct": float,
          "meets_slo": bool | None,
          "verdict": "VALID" | "INVALID",
          "reasons": list[str],           # [verdict_reasons]
          "rung": str | None,             # optional: "holds" or why the point fails as a
                                          # rung of its family's load ladder
        },
      ],
      "conversions": [                    # model format conversions and their checks
        {"format": str, "max_abs_diff": float | None,
         "tolerance": float | str | None,  # [atol / rtol]
         "passed": bool | None, "error": str | None},
      ],
      "deployments": [
        {"platform": str, "version": str,  # [platform_version]
         "cold_start_s": float | None, "status": str, "error": str | None},
      ],
      "provenance": dict[str, Any],       # key -> value (lists / dicts shown as JSON)
      "images": [(caption: str, png_path: str | Path)],
      "sections": [                       # optional analysis sections, shown after Results
        {"id": str, "title": str, "notes": list[str],
         "tables": [{"columns": list[str], "rows": list[list[str]]}],
         "images": [(caption, png_path)],
         "parts": [                       # optional sub-sections (e.g. one per family),
           {"id": str, "title": str,      # each under its own heading, with the same
            "notes": ..., "tables": ..., "images": ...},  # keys as a section
         ]},
      ],
    }

:func:`result_row` builds one ``results`` entry from a
:class:`~analysis.summary.PointSummary` and its verdict.
"""

from __future__ import annotations

import base64
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from analysis.summary import PointSummary

_TEMPLATES = Path(__file__).parent / "templates"
_DASH = "\u2013"  # shown for missing / not applicable values


def _num(value: Any, digits: int = 2) -> str:
    """Fixed-point number, or a dash for None / NaN / non-numbers."""
    if value is None or isinstance(value, bool):
        return _DASH
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return _DASH
    return f"{x:.{digits}f}"


def _sci(value: Any) -> str:
    """Three significant digits (numerical differences like 1.2e-06), or a dash."""
    if value is None or isinstance(value, bool):
        return _DASH
    try:
        return f"{float(value):.3g}"
    except (TypeError, ValueError):
        return str(value)


def _ci(pair: Any, digits: int = 2) -> str:
    """The p99's confidence interval "[lo, hi]"; an upper side that this many requests
    cannot bound says how many it needs (the table's note says what it means)."""
    from analysis.predictability import requests_needed

    if not pair or (pair[0] is None and pair[1] is None):
        return f"not enough requests (needs {requests_needed(99):,})"
    lo, hi = pair
    upper = _num(hi, digits) if hi is not None else f"needs {requests_needed(99):,}"
    return f"[{_num(lo, digits)}, {upper}]"


def _yesno(value: Any) -> str:
    if value is None:
        return _DASH
    return "yes" if value else "no"


def _target(row: dict[str, Any]) -> str:
    """Target of a point: the rate for open loop, the number of clients for closed loop."""
    if row.get("concurrency") is not None:
        return f"{row['concurrency']} clients"
    if row.get("target_rate_rps") is not None:
        return f"{float(row['target_rate_rps']):g} rps"
    return _DASH


def _as_text(value: Any) -> str:
    if value is None:
        return _DASH
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str, ensure_ascii=False)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


def _first(row: dict[str, Any], *keys: str) -> Any:
    """Value of the first key present with a non-None value."""
    for key in keys:
        if row.get(key) is not None:
            return row[key]
    return None


def _result(row: dict[str, Any]) -> dict[str, Any]:
    """A results row with the canonical keys filled from their aliases."""
    latency = dict(row.get("latency_ms") or {})
    return {
        **row,
        "latency_ms": latency,
        "target_rate_rps": _first(row, "target_rate_rps", "target_rps"),
        "p99_ci_ms": _first(row, "p99_ci_ms") or latency.get("p99_ci"),
        "reasons": _first(row, "reasons", "verdict_reasons") or [],
    }


def _conversion(row: dict[str, Any]) -> dict[str, Any]:
    tolerance = row.get("tolerance")
    if tolerance is None and (row.get("atol") is not None or row.get("rtol") is not None):
        parts = [f"{k} {_sci(row.get(k))}" for k in ("atol", "rtol") if row.get(k) is not None]
        tolerance = ", ".join(parts)
    elif tolerance is not None and not isinstance(tolerance, str):
        tolerance = _sci(tolerance)
    return {**row, "tolerance": tolerance}


def _deployment(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "version": _first(row, "version", "platform_version")}


def _spec_json(spec: Any) -> str | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            return spec  # not JSON: show it as stored
    return json.dumps(spec, indent=2, default=str, ensure_ascii=False)


def _data_uri(png_path: str | Path) -> str:
    """Embed a PNG file as a data URI so the report needs no side files."""
    data = Path(png_path).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _embedded(block: dict[str, Any]) -> dict[str, Any]:
    """A section or part with its images embedded, and the keys the template reads."""
    return {"notes": [], "tables": [], **block,
            "images": [{"caption": c, "src": _data_uri(path)}
                       for c, path in block.get("images", [])]}


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(_TEMPLATES)),
        # Everything shown comes from specs, error messages, provenance: escape it all.
        autoescape=True,
        # A typo in the template should fail loudly, not render as empty.
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=_num, sci=_sci, ci=_ci, yesno=_yesno, target=_target, text=_as_text)
    return env


def result_row(
    summary: PointSummary,
    *,
    platform: str,
    batch_size: int,
    arrival: str,
    verdict: str,
    verdict_reasons: list[str],
    meets_slo: bool | None,
    target_rate_rps: float | None = None,
    concurrency: int | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """One ``report["results"]`` entry from a point's summary and verdict."""
    return {
        "label": label,
        "platform": platform,
        "batch_size": batch_size,
        "arrival": arrival,
        "target_rate_rps": target_rate_rps,
        "concurrency": concurrency,
        "n_ok": summary.n_ok,
        "n_failed": summary.n_failed,
        "throughput_rps": summary.throughput_rps,
        "latency_ms": dict(summary.latency_ms),
        "p99_ci_ms": summary.p99_ci_ms,
        # 0.0 for closed loop, where lateness is not meaningful (see summarize_point).
        "late_send_pct": summary.late_send_pct,
        "meets_slo": meets_slo,
        "verdict": verdict,
        "reasons": list(verdict_reasons),
    }


def render_report(report: dict[str, Any], out_dir: Path) -> Path:
    """Render ``report`` (structure in the module docstring) to ``out_dir/report.html``.

    Returns the path of the written file.  Raises FileNotFoundError if an image
    listed in ``report["images"]`` does not exist: a report silently missing its
    plots would look complete.
    """
    run = dict(report["run"])
    images = [
        {"caption": caption, "src": _data_uri(path)} for caption, path in report.get("images", [])
    ]
    html = (
        _environment()
        .get_template("report.html")
        .render(
            run=run,
            answer=report.get("answer"),
            verdict=(run.get("verdict") or "").upper(),
            results=[_result(r) for r in report.get("results", [])],
            conversions=[_conversion(c) for c in report.get("conversions", [])],
            deployments=[_deployment(d) for d in report.get("deployments", [])],
            provenance=report.get("provenance", {}),
            images=images,
            spec_json=_spec_json(run.get("spec")),
            sections=[{**_embedded(sec),
                       "parts": [_embedded(part) for part in sec.get("parts", [])]}
                      for sec in report.get("sections", [])],
        )
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "report.html"
    out.write_text(html, encoding="utf-8")
    return out
