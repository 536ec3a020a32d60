"""analyze: from PostgreSQL alone, summarise every point, judge it, write the results rows,
the run's verdict, the latency CDF and the HTML report.

It runs whatever happened upstream: a platform that failed makes the run `partial` and
INVALID with the reason, while the points that were measured are still summarised.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import delete, insert

from inferbench.perfdb import queries, schema, writer
from inferbench.stages.common import StageContext


def _summarise_point(ctx: StageContext, point: dict[str, Any],
                     arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any], np.ndarray]:
    from analysis.percentiles import hdr_encode
    from analysis.summary import summarize_point
    from analysis.verdict import judge_point

    spec = ctx.spec
    open_loop = point["arrival"] == "poisson"
    summary = summarize_point(arrays["scheduled_ns"], arrays["sent_ns"], arrays["done_ns"],
                              arrays["status"], started_ns=point["started_ns"],
                              ended_ns=point["ended_ns"], open_loop=open_loop,
                              late_threshold_ms=spec.late_send_threshold_ms)
    ok = (arrays["status"] == 200) & (arrays["done_ns"] >= 0)
    latency_ms = (arrays["done_ns"][ok] - arrays["scheduled_ns"][ok]) / 1e6
    verdict, reasons, meets_slo = judge_point(
        summary, latencies_ms=latency_ms, complete=point["complete"],
        stop_reason=point["stop_reason"], min_duration_s=spec.min_duration_s,
        min_requests=spec.min_requests, slo_percentile=spec.slo.percentile,
        slo_latency_ms=spec.slo.latency_ms, open_loop=open_loop,
        max_late_pct=spec.max_late_send_pct)
    if point.get("host_stall_pct") is not None:
        reasons = [*reasons, f"host stall share just before the point: "
                   f"{point['host_stall_pct']:.2f} % of the time in stalls > "
                   f"{spec.late_send_threshold_ms:g} ms (the floor for late sends on this host)"]
    row = {
        "run_id": ctx.run_id, "platform": point["platform"], "point": point["point"],
        "batch_size": point["batch_size"], "n_ok": summary.n_ok, "n_failed": summary.n_failed,
        "duration_s": summary.duration_s, "throughput_rps": summary.throughput_rps,
        "late_send_pct": summary.late_send_pct,
        "latency_ms": {**summary.latency_ms, "p99_ci": list(summary.p99_ci_ms)},
        "hdr_histogram": hdr_encode(latency_ms * 1000.0) if len(latency_ms) else None,
        "meets_slo": meets_slo, "verdict": verdict, "reasons": reasons,
    }
    return row, latency_ms


def _unmeasured_platforms(ctx: StageContext, deployments: list[dict]) -> list[str]:
    measured = {d["platform"] for d in deployments if d["status"] == "measured"}
    return [p.value for p in ctx.spec.platforms if p.value not in measured]


def run(ctx: StageContext) -> dict[str, Any]:
    from analysis.plots import latency_cdf_png
    from analysis.report import render_report
    from analysis.verdict import judge_run

    with ctx.db.connect() as conn:
        run_row = queries.run_row(conn, ctx.run_id)
        tables = queries.run_tables(conn, ctx.run_id)
        arrays = {(p["platform"], p["point"]): queries.request_arrays(
            conn, ctx.run_id, p["platform"], p["point"]) for p in tables["points"]}
        resources = queries.resource_summary(conn, ctx.run_id)
    results, series = [], {}
    for point in tables["points"]:
        row, latency_ms = _summarise_point(ctx, point, arrays[(point["platform"],
                                                               point["point"])])
        row["arrival"], row["concurrency"] = point["arrival"], point["concurrency"]
        row["target_rate_rps"] = point["target_rate_rps"]
        server = resources.get((point["platform"], "server"), {})
        row["server_cpu_pct_mean"] = server.get("cpu_pct_mean")
        results.append(row)
        series[f"{point['platform']} batch {point['batch_size']}"] = latency_ms
    failed = _unmeasured_platforms(ctx, tables["deployments"])
    labelled = {f"{r['platform']} batch {r['batch_size']}": r for r in results}
    verdict, reasons = judge_run([(label, r["verdict"]) for label, r in labelled.items()],
                                 failed)
    if verdict != "VALID":  # say why, not only which
        errors = {d["platform"]: d.get("error") for d in tables["deployments"]}
        reasons = [f"point {label} is INVALID: " + "; ".join(r["reasons"])
                   for label, r in labelled.items() if r["verdict"] != "VALID"]
        reasons += [f"platform {name} failed: "
                    + (errors.get(name) or "no measurements were collected") for name in failed]
        if not labelled and not failed:
            reasons.append("no points were measured")
    status = "partial" if failed else "complete"

    report_dir = ctx.run_dir.report_dir
    report_dir.mkdir(parents=True, exist_ok=True)
    images = []
    if any(len(v) for v in series.values()):
        cdf = latency_cdf_png({k: v for k, v in series.items() if len(v)},
                              report_dir / "latency_cdf.png",
                              title=f"Latency CDF - {ctx.spec.name}",
                              slo_ms=ctx.spec.slo.latency_ms)
        images.append(("Latency from the scheduled send, per platform and batch size", cdf))
    run_info = {**(run_row or {}), "status": status, "verdict": verdict,
                "verdict_reasons": reasons}
    provenance = {}
    for p in tables["provenance"]:
        provenance.update({f"{p['platform']}: {k}" if k.startswith("platform") else k: v
                           for k, v in p["facts"].items()})
    report_path = render_report({
        "run": run_info, "results": results, "conversions": tables["conversions"],
        "deployments": tables["deployments"], "provenance": provenance, "images": images,
    }, report_dir)

    db_rows = [{c.name: r[c.name] for c in schema.results.columns} for r in results]
    with ctx.db.begin() as conn:
        conn.execute(delete(schema.results).where(schema.results.c.run_id == ctx.run_id))
        if db_rows:
            conn.execute(insert(schema.results), db_rows)
        writer.finish_run(conn, ctx.run_id, status=status, verdict=verdict, reasons=reasons,
                          report_path=str(report_path))
    return {"run_id": ctx.run_id, "status": status, "verdict": verdict, "reasons": reasons,
            "report": str(report_path), "points": len(results)}
