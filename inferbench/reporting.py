"""Builds the HTML report of a run or of a sweep from PostgreSQL alone (what `inferbench
report` and the analyze stage call): reads point records and raw requests, runs the pure
analyses in analysis/, draws the plots and renders analysis/templates/report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection

from inferbench.errors import InferBenchError
from inferbench.perfdb import queries

# Hyper-parameters a sweep may vary; heat maps fix the ones not on their axes.
SWEEP_PARAMS = ("depth", "width", "batch_size", "target_rate_rps", "concurrency", "family")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if np.isnan(value):
            return "-"
        return f"{value:.{digits}g}" if abs(value) < 1e-2 or abs(value) >= 1e5 \
            else f"{value:.{digits}f}"
    return str(value)


def _table(columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"columns": columns, "rows": [[_fmt(v) for v in row] for row in rows]}


def _latency_series(conn: Connection, records: list[dict], label_run: bool) -> dict:
    from analysis.points import labeller

    config_label = labeller(records)
    series = {}
    for r in records:
        arrays = queries.request_arrays(conn, r["run_id"], r["platform"], r["point"])
        ok = (arrays["status"] == 200) & (arrays["done_ns"] >= 0)
        label = config_label(r, with_load=True)
        if label_run:
            label = f"{r.get('name')} {label}"
        series[label] = (arrays["done_ns"][ok] - arrays["scheduled_ns"][ok]) / 1e6
    return series


def analysis_sections(conn: Connection, records: list[dict], runs: list[dict],
                      out_dir: Path, *, slo_percentile: float, slo_ms: float,
                      label_run: bool = False) -> tuple[list[dict], list[tuple[str, Path]]]:
    """Every analysis section of the report, and the CDF image for the latency section."""
    from analysis import plots
    from analysis.heatmap import heat_map
    from analysis.latency import load_curves, throughput_at_slo
    from analysis.leaderboard import sort_rows
    from analysis.points import items_per_s, labeller, latency_at
    from analysis.recommend import recommend
    from analysis.roofline import attained_gflops, load_ceilings

    config_label = labeller(records)
    sections: list[dict] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    pct = slo_percentile

    recs = recommend(records, slo_percentile=pct, slo_ms=slo_ms)
    sections.append({"id": "recommendations", "title": "Recommendations under the SLO",
                     "notes": [f"SLO: p{pct:g} <= {slo_ms:g} ms. Top configurations that are "
                               "VALID and within it, cheapest per million requests first "
                               "(items/s where no price is known)."]
                     + ([] if recs else ["No configuration is VALID and within the SLO."]),
                     "tables": [_table(["rank", "configuration", "hardware", "ranked by",
                                        "evidence"],
                                       [[x.rank, x.label, x.hardware, x.ranked_by,
                                         "; ".join(x.evidence)] for x in recs])],
                     "images": []})

    series = {k: v for k, v in _latency_series(conn, records, label_run).items() if len(v)}
    cdf_images: list[tuple[str, Path]] = []
    lat_images = []
    if series:
        cdf_images.append(("Latency CDF from the scheduled send, per configuration",
                           plots.latency_cdf_png(series, out_dir / "latency_cdf.png",
                                                 title="Latency CDF", slo_ms=slo_ms)))
        lat_images.append(("Latency density (Gaussian KDE, Silverman bandwidth)",
                           plots.kde_png(series, out_dir / "latency_kde.png",
                                         title="Latency KDE", slo_ms=slo_ms)))
    sections.append({"id": "latency", "title": "Latency distributions (KDE)",
                     "notes": [] if series else ["No latencies recorded."], "tables": [],
                     "images": lat_images})

    curves = load_curves(records, pct)
    at_slo = throughput_at_slo(records, pct, slo_ms)
    images = [("Load curves", plots.load_curves_png(curves, out_dir / "load_curves.png",
                                                     percentile=pct, slo_ms=slo_ms))] \
        if curves else []
    sections.append({"id": "load", "title": "Tail latency vs offered load; throughput at SLO",
                     "notes": ["Throughput at SLO: per configuration, the highest offered load "
                               f"whose point is VALID with p{pct:g} <= {slo_ms:g} ms."],
                     "tables": [_table(["configuration", "offered load", "throughput (rps)",
                                        "items/s", f"p{pct:g} (ms)", "run"],
                                       [[label, r and r.get("target_rate_rps")
                                         or (r and r.get("concurrency")),
                                         r and r["throughput_rps"], r and items_per_s(r),
                                         r and latency_at(r, pct), r and r["run_id"]]
                                        for label, r in at_slo.items()])],
                     "images": images})

    from analysis.server_split import split_rows

    split = split_rows(records, lambda r: config_label(r, with_load=True))
    sections.append({"id": "server-split", "title": "Where the time goes: queue / compute / "
                     "transmit and client",
                     "notes": ["Mean latency from the scheduled send, split by the server's own "
                               "counters over the point (Triton's statistics extension, the "
                               "FastAPI server's batcher, TorchServe's frontend counters): "
                               "time in the server's queue, time computing, and the rest "
                               "(transmission, protocol handling, client delay). Means only: "
                               "tails do not add up. Platforms without such counters "
                               "(MLServer, TF Serving) are not listed."]
                     + ([] if split else ["No server reported statistics for these points."]),
                     "tables": [_table(["configuration", "server requests", "mean (ms)",
                                        "queue (ms)", "compute (ms)", "rest (ms)",
                                        "queue / compute / rest (%)"], split)],
                     "images": []})

    cost_rows = [[config_label(r, with_load=True), r.get("run_id"), r.get("hardware"),
                  r.get("usd_per_hour"), r.get("cost_per_million_usd"),
                  r.get("energy_j_per_request"), r.get("energy_method"),
                  r.get("co2_g_per_request")] for r in records]
    sections.append({"id": "cost", "title": "Cost, energy and CO2",
                     "notes": ["Cost per million requests = $/hour / (requests/s x 3600) x 1e6, "
                               "prices from analysis/data/instance_prices.csv (editable).",
                               "energy method `estimate_cpu_tdp` is an ESTIMATE (server CPU use "
                               "x an assumed 10 W per busy core), not a measurement; "
                               "`nvml_power` integrates NVML power samples.",
                               "CO2 from analysis/data/grid_intensity.csv (region "
                               "INFERBENCH_GRID_REGION, default world)."],
                     "tables": [_table(["configuration", "run", "hardware", "$/hour",
                                        "$ per 1M requests", "J/request", "energy method",
                                        "g CO2/request"], cost_rows)], "images": []})

    roof_points, roof_rows, ceilings = [], [], []
    for run in runs:
        facts = run.get("analysis") or {}
        model_cost, cpu = facts.get("model_cost"), facts.get("cpu_ceilings")
        if cpu:
            ceilings.append((f"this CPU ({run.get('hardware')}, measured)",
                             cpu["peak_gflops"], cpu["mem_gbs"]))
        if not model_cost:
            continue
        for r in (x for x in records if x["run_id"] == run["run_id"]):
            p50 = latency_at(r, 50)
            if not p50:
                continue
            intensity = model_cost["flops"] / model_cost["bytes"] if model_cost["bytes"] else 0
            attained = attained_gflops(model_cost["flops"], r["batch_size"], p50)
            label = config_label(r, with_load=True)
            if label_run:
                label = f"{run.get('name')} {label}"
            roof_points.append((label, intensity, attained))
            roof_rows.append([label, model_cost["flops"], model_cost["bytes"], intensity,
                              attained])
    ceilings = ceilings[:1] + [(c.name, c.peak_gflops, c.mem_gbs) for c in load_ceilings()
                               if c.name in ("H100 SXM5", "A100 SXM4 80GB", "L4", "T4")]
    images = [("Roofline", plots.roofline_png(roof_points, ceilings, out_dir / "roofline.png"))]
    sections.append({"id": "roofline", "title": "Roofline",
                     "notes": ["FLOPs and compulsory bytes per sample counted from the ONNX "
                               "graph (analysis/roofline.py); attained = FLOPs x batch / p50 "
                               "latency. CPU ceilings from a numpy matmul / copy "
                               "microbenchmark; accelerator ceilings from "
                               "analysis/data/accelerators.csv (datasheets)."],
                     "tables": [_table(["configuration", "FLOPs/sample", "bytes/sample",
                                        "FLOP/byte", "attained GFLOP/s"], roof_rows),
                                _table(["ceiling", "peak GFLOP/s", "bandwidth GB/s"],
                                       [list(c) for c in ceilings])],
                     "images": images})

    images, notes = [], []
    for platform in sorted({r["platform"] for r in records}):
        mine = [r for r in records if r["platform"] == platform]
        for metric_name, metric in ((f"p{pct:g} latency (ms)", lambda r: latency_at(r, pct)),
                                    ("throughput (items/s)", items_per_s)):
            hm = heat_map(mine, "depth", "batch_size", metric, metric_name=metric_name,
                          vary_free=SWEEP_PARAMS)
            if not hm.x_values:
                continue
            slug = f"heat_{platform}_{'lat' if 'latency' in metric_name else 'tp'}.png"
            images.append((f"{platform}: {metric_name} over depth x batch size, fixed "
                           f"{hm.fixed}", plots.heat_map_png(hm, out_dir / slug,
                                                             title=f"{platform}: {metric_name}")))
    if len({(r.get("hyperparams") or {}).get("depth") for r in records}) < 2:
        notes.append("Only one model depth here: a sweep over depths (runs sharing a sweep_id) "
                     "fills the depth axis.")
    sections.append({"id": "heatmaps", "title": "Heat maps (depth x batch size)",
                     "notes": notes, "tables": [], "images": images})

    sections.append({"id": "quality", "title": "Data quality",
                     "notes": ["Expectations: non-negative latencies, monotone percentiles, "
                               "achieved <= offered rate + 10 %, counts consistent; run by a "
                               "Great Expectations suite (analysis/quality_ge.py) or its pure "
                               "twin (analysis/quality.py). A failing run is kept and marked."],
                     "tables": [_table(["run", "passed", "engine", "failed expectations"],
                                       [[r["run_id"], "n/a" if r.get("quality_ok") is None
                                         else ("yes" if r["quality_ok"] else "NO"),
                                         (r.get("analysis") or {}).get("quality_engine"),
                                         "; ".join(r.get("quality_reasons") or [])]
                                        for r in runs])], "images": []})

    known = ["throughput_rps", "cost_per_million_usd"]
    board = sort_rows([{**r, "p50_ms": latency_at(r, 50), "p99_ms": latency_at(r, 99),
                        "items_per_s": items_per_s(r)} for r in records],
                      "items_per_s", known + ["items_per_s"])
    sections.append({"id": "leaderboard", "title": "Leaderboard (these points, by items/s)",
                     "notes": ["`inferbench leaderboard --sort COLUMN` sorts every run in the "
                               "database by any column of the leaderboard view."],
                     "tables": [_table(["configuration", "run", "hardware", "items/s",
                                        "p50 (ms)", "p99 (ms)", "verdict", "$ per 1M req"],
                                       [[config_label(r, with_load=True), r["run_id"],
                                         r.get("hardware"), r["items_per_s"], r["p50_ms"],
                                         r["p99_ms"], r["verdict"],
                                         r.get("cost_per_million_usd")] for r in board])],
                     "images": []})
    return sections, cdf_images


def build_run_report(conn: Connection, run_id: str, out_dir: Path) -> Path:
    """The report of one run, from PostgreSQL alone."""
    from analysis.report import render_report
    from inferbench.spec import parse_spec

    run = queries.run_row(conn, run_id)
    if run is None:
        raise InferBenchError(f"run {run_id!r} is not in the results database; fix: check the "
                              "id (`inferbench leaderboard` lists runs)")
    spec = parse_spec(run["spec"], source=f"spec of run {run_id!r}")
    tables = queries.run_tables(conn, run_id)
    records = queries.point_records(conn, run_ids=[run_id])
    sections, cdf = analysis_sections(conn, records, [run], Path(out_dir),
                                      slo_percentile=spec.slo.percentile,
                                      slo_ms=spec.slo.latency_ms)
    provenance = {}
    for p in tables["provenance"]:
        provenance.update({f"{p['platform']}: {k}" if k.startswith("platform") else k: v
                           for k, v in p["facts"].items()})
    results = [{**r, "target_rate_rps": r.get("target_rate_rps")} for r in records]
    return render_report({"run": run, "results": results, "conversions": tables["conversions"],
                          "deployments": tables["deployments"], "provenance": provenance,
                          "images": cdf, "sections": sections}, Path(out_dir))


def build_sweep_report(conn: Connection, sweep_id: str, out_dir: Path) -> Path:
    """The report of every run sharing ``sweep_id``, from PostgreSQL alone."""
    from analysis.report import render_report
    from inferbench.spec import parse_spec

    run_ids = queries.sweep_run_ids(conn, sweep_id)
    if not run_ids:
        raise InferBenchError(f"no run has sweep_id {sweep_id!r}; fix: check the label (runs "
                              "get it from the spec's sweep_id field)")
    runs = [queries.run_row(conn, rid) for rid in run_ids]
    spec = parse_spec(runs[0]["spec"], source=f"spec of run {run_ids[0]!r}")
    records = queries.point_records(conn, sweep_id=sweep_id)
    sections, cdf = analysis_sections(conn, records, runs, Path(out_dir),
                                      slo_percentile=spec.slo.percentile,
                                      slo_ms=spec.slo.latency_ms, label_run=True)
    bad = [r for r in runs if r["verdict"] != "VALID"]
    reasons = [f"run {r['run_id']} ({r['name']}) is {r['verdict']}: "
               + "; ".join(r.get("verdict_reasons") or []) for r in bad]
    run = {"run_id": sweep_id, "name": f"sweep {sweep_id} ({len(runs)} runs)",
           "status": "complete" if all(r["status"] == "complete" for r in runs) else "partial",
           "verdict": "INVALID" if bad else "VALID",
           "verdict_reasons": reasons or [f"all {len(runs)} runs are VALID"],
           "created_at": runs[0]["created_at"], "spec": runs[0]["spec"]}
    results = [{**r, "platform": f"{r['name']}: {r['platform']}"} for r in records]
    return render_report({"run": run, "results": results, "conversions": [],
                          "deployments": [], "provenance": {"runs": run_ids},
                          "images": cdf, "sections": sections}, Path(out_dir))
