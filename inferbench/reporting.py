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

# What a sweep may vary between families; heat maps fix the ones not on their axes (the
# offered load is not one: a family's rungs span it, and its capacity sums them up).
FAMILY_PARAMS = ("depth", "width", "batch_size", "family", "server_config")


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


def _latency_series(conn: Connection, shown: list[tuple[str, dict]]) -> dict:
    from analysis.summary import request_latencies_ms

    series = {}
    for label, r in shown:
        arrays = queries.request_arrays(conn, r["run_id"], r["platform"], r["point"],
                                        r.get("config_index") or 0)
        ok, latency_ms = request_latencies_ms(arrays)
        series[label] = latency_ms[ok]
    return series


def _representatives(families, family_label) -> list[tuple[str, dict]]:
    """One point per family for the per-point plots (CDF, KDE, roofline): its capacity rung,
    or its lowest rung where none holds. A ladder of ten rungs per family would otherwise
    put ten curves per family on one plot."""
    shown = []
    for f in families:
        rung = f.capacity or (f.rungs[0] if f.rungs else None)
        if rung is not None:
            shown.append((f"{family_label(f)} @ {f.load_text(rung.offered)}", dict(rung.row)))
    return shown


def analysis_sections(conn: Connection, records: list[dict], runs: list[dict],
                      out_dir: Path, *, slo_percentile: float, slo_ms: float
                      ) -> tuple[list[dict], list[tuple[str, Path]], str]:
    """Every analysis section of the report, the CDF image for the latency section, and the
    answer (the banner: analysis.capacity.answer)."""
    from analysis import plots
    from analysis.capacity import (
        MIN_ACHIEVED_RATIO,
        answer,
        capacities,
        family_labeller,
        rank,
    )
    from analysis.cost import is_gpu_label
    from analysis.heatmap import heat_map
    from analysis.points import labeller, latency_at
    from analysis.recommend import recommend
    from analysis.roofline import attained_gflops, ceiling_for_gpu, load_ceilings

    config_label = labeller(records)
    sections: list[dict] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    pct = slo_percentile

    families = capacities(records, slo_percentile=pct, slo_ms=slo_ms)
    family_label = family_labeller(families)
    ranked = rank(families)
    slo = f"p{pct:g} <= {slo_ms:g} ms"
    recs = recommend(records, slo_percentile=pct, slo_ms=slo_ms)
    sections.append({"id": "recommendations", "title": "Recommendations under the SLO",
                     "notes": [f"SLO: {slo}. Families (platform x server configuration x "
                               "batch size) ranked by capacity at SLO in items/s, or by cost "
                               "per million inferences at capacity where prices differ; ties "
                               "by tail latency. Capacity: the highest offered load whose "
                               f"rung is VALID, within the SLO, achieves >= "
                               f"{MIN_ACHIEVED_RATIO:.0%} of the offered rate and has no "
                               "errors."]
                     + ([] if recs else [answer(families, slo_percentile=pct,
                                               slo_ms=slo_ms, label=family_label)]),
                     "tables": [_table(["rank", "configuration", "hardware", "ranked by",
                                        "evidence"],
                                       [[x.rank, x.label, x.hardware, x.ranked_by,
                                         "; ".join(x.evidence)] for x in recs])],
                     "images": []})

    shown = _representatives(families, family_label)
    series = {k: v for k, v in _latency_series(conn, shown).items() if len(v)}
    cdf_images: list[tuple[str, Path]] = []
    lat_images = []
    if series:
        cdf_images.append(("Latency CDF from the scheduled send, per configuration",
                           plots.latency_cdf_png(series, out_dir / "latency_cdf.png",
                                                 title="Latency CDF", slo_ms=slo_ms)))
        lat_images.append(("Latency density (Gaussian KDE of log latency, Silverman "
                           "bandwidth; log axis)",
                           plots.kde_png(series, out_dir / "latency_kde.png",
                                         title="Latency KDE", slo_ms=slo_ms)))
    sections.append({"id": "latency", "title": "Latency distributions (KDE)",
                     "notes": ["One curve per family: its capacity rung (its lowest rung where "
                               "none holds)."] if series else ["No latencies recorded."],
                     "tables": [],
                     "images": lat_images})

    labelled = [(family_label(f), f) for f in families]
    images = [("Capacity at SLO per family: one marker per rung of its load ladder",
               plots.capacity_png(labelled, out_dir / "load_curves.png", percentile=pct,
                                  slo_ms=slo_ms))] if any(f.rungs for f in families) else []
    sections.append({"id": "load", "title": "Capacity at SLO: tail latency vs offered load, "
                     "throughput vs latency",
                     "notes": [f"Capacity of a family: the highest offered load whose rung is "
                               f"VALID (measurement verdict) and holds ({slo}, achieved >= "
                               f"{MIN_ACHIEVED_RATIO:.0%} of the offered rate, no failed "
                               "request); closed loop: "
                               "the throughput that rung achieved. Bracket: the lowest load "
                               "above it whose rung failed, and why. A family whose top rung "
                               "still holds has only a lower bound (search cap reached)."],
                     "tables": [_table(["configuration", "rungs", "capacity (req/s)",
                                        "capacity (items/s)", f"p{pct:g} at capacity (ms)",
                                        "search cap reached", "bracket", "answer"],
                                       [[label, len(f.rungs), f.capacity_rps,
                                         f.capacity_items_per_s, f.latency_ms,
                                         "yes" if f.search_cap_reached else "no",
                                         "-" if f.bracket is None else
                                         f"{f.load_text(f.bracket.offered)}: "
                                         f"{f.bracket.reason}", f.statement()]
                                        for label, f in labelled]),
                                _table(["configuration", "point", "offered", "achieved (rps)",
                                        f"p{pct:g} (ms)", "verdict", "rung"],
                                       [[label, r.point, f.load_text(r.offered),
                                         r.achieved_rps, r.latency_ms, r.verdict,
                                         "holds" if r.holds else r.reason]
                                        for label, f in labelled for r in f.rungs])],
                     "images": images})

    from inferbench.prediction_report import prediction_section

    predicted = prediction_section(
        labelled, queries.family_prediction_rows(conn, run_ids=[r["run_id"] for r in runs]),
        out_dir, slo_percentile=pct, slo_ms=slo_ms)
    if predicted is not None:  # no heading where no family was predicted
        sections.append(predicted)

    from inferbench.predictability_report import predictability_section
    from inferbench.utilisation_report import utilisation_section

    sections.append(predictability_section(conn, records, families, family_label,
                                           config_label, slo_ms))
    sections.append(utilisation_section(conn, records, runs, config_label, out_dir))

    by_length = [(r["run_id"], row) for r in runs
                 for row in (r.get("analysis") or {}).get("latency_by_length") or []]
    if by_length:  # variable-length workloads only
        sections.append({
            "id": "sequence-lengths", "title": "Latency by sequence length",
            "notes": ["Each request's length is its longest sample's; it was sent padded as "
                      "the workload's padding says: max (to the model's sequence: one shape "
                      "for every server), buckets (up to the next bucket) or none (its own "
                      "length: dynamic shapes). The padded column is the mean sequence axis "
                      "sent. Latency from the scheduled send; p99 only from "
                      "100 requests in a bucket."],
            "tables": [_table(["run", "platform", "config", "batch", "point", "padding",
                               "length", "requests", "p50 (ms)", "p99 (ms)", "padded to"],
                              [[run_id, b["platform"], b["config_index"], b["batch_size"],
                                b["point"], b["padding"],
                                f"{b['length_from']}-{b['length_to']}", b["n_ok"],
                                b["p50_ms"], b["p99_ms"] if b["p99_ms"] is not None
                                else "too few requests", b["mean_padded_len"]]
                               for run_id, b in by_length])],
            "images": []})

    from analysis.server_split import SPLIT_HEADER, latency_split, split_rows

    def split_label(r):
        return config_label(r, with_load=True)

    split = split_rows(records, split_label)
    bars = [(split_label(r), s) for r in records if (s := latency_split(r)) is not None]
    sections.append({"id": "server-split", "title": "Where the time goes: link, queue, "
                     "compute and the rest",
                     "notes": ["Mean latency from the scheduled send, split into what is "
                               "measured of it: with a pipeline (spec.pipeline), pre- and "
                               "post-processing (a client's measured per payload on the load "
                               "generator's host and added to the mean, since it happens "
                               "before the send and after the answer; a server's from its "
                               "counters); the load generator's send (from the scheduled "
                               "send to the bytes written) and, without a link, its read of "
                               "the answer; through an emulated link (spec.network), the "
                               "time waiting for the link (behind other requests for its "
                               "bandwidth, a new connection's handshake) and the transmit time "
                               "each way (the link's delay plus the request's or response's "
                               "bytes at its bandwidth), and without one the server's wait "
                               "for the body's bytes; the server's own counters over the "
                               "point (Triton's statistics extension, the FastAPI server's "
                               "batcher, TorchServe's frontend counters, MLServer's metrics "
                               "with its runtime's inference time): time in its queue and "
                               "computing, and where it times each request's whole stay, "
                               "its handling around them; and the rest (the loopback, "
                               "thread wake-ups, HTTP handling no timer sees). "
                               "Means only: tails do not add up. \"-\": not measured (no "
                               "link, or a platform without counters: TF Serving)."]
                     + ([] if split else ["Neither a server nor a link reported a split of "
                                          "these points."]),
                     "tables": [_table(SPLIT_HEADER, split)],
                     "images": [("Mean latency by part", plots.latency_split_png(
                         bars, out_dir / "latency_split.png"))] if bars else []})

    at_capacity = [[label, f.run_id, f.hardware, f.usd_per_hour, f.capacity_rps,
                    f.cost_per_million_usd, f.cost_per_million_items_usd,
                    f.energy_j_per_request, f.energy_method]
                   for label, f in labelled if f.capacity is not None]
    cost_rows = [[config_label(r, with_load=True), r.get("run_id"), r.get("hardware"),
                  r.get("usd_per_hour"), r.get("cost_per_million_usd"),
                  r.get("energy_j_per_request"), r.get("energy_method"),
                  r.get("co2_g_per_request")] for r in records]
    sections.append({"id": "cost", "title": "Cost, energy and CO2",
                     "notes": ["At capacity (first table): cost per million requests = "
                               "$/hour / (capacity req/s x 3600) x 1e6, per million "
                               "inferences divided by the batch size; energy per request as "
                               "measured at the capacity rung. Per point (second table): the "
                               "same at the throughput each rung achieved.",
                               "Prices from analysis/data/instance_prices.csv (editable).",
                               "energy method `estimate_cpu_tdp` is an ESTIMATE (server CPU use "
                               "x an assumed 10 W per busy core), not a measurement; "
                               "`nvml_energy_counter` is the GPU's NVML total-energy counter "
                               "over the point; `nvml_power` integrates NVML power samples "
                               "(GPUs without the counter).",
                               "CO2 from analysis/data/grid_intensity.csv (region "
                               "INFERBENCH_GRID_REGION, default world)."],
                     "tables": [_table(["configuration", "run", "hardware", "$/hour",
                                        "capacity (req/s)", "$ per 1M requests",
                                        "$ per 1M inferences", "J/request", "energy method"],
                                       at_capacity),
                                _table(["point", "run", "hardware", "$/hour",
                                        "$ per 1M requests", "J/request", "energy method",
                                        "g CO2/request"], cost_rows)], "images": []})

    roof_points, roof_rows, cpu_ceilings = [], [], []
    for run in runs:
        facts = run.get("analysis") or {}
        model_cost, cpu = facts.get("model_cost"), facts.get("cpu_ceilings")
        if cpu:  # measured where analyze ran: the run's host
            cpu_ceilings.append(("this host's CPU (measured)", cpu["peak_gflops"],
                                 cpu["mem_gbs"]))
        if not model_cost:
            continue
        for label, r in shown:
            p50 = latency_at(r, 50)
            if r["run_id"] != run["run_id"] or not p50:
                continue
            intensity = model_cost["flops"] / model_cost["bytes"] if model_cost["bytes"] else 0
            attained = attained_gflops(model_cost["flops"], r["batch_size"], p50)
            roof_points.append((label, intensity, attained))
            roof_rows.append([label, model_cost["flops"], model_cost["bytes"], intensity,
                              attained])
    # The GPUs models ran on get their own roofs, found by the name NVML gave them.
    known, gpu_notes, used, ceilings = load_ceilings(), [], set(), cpu_ceilings[:1]
    for gpu in sorted({r["hardware"] for _, r in shown if is_gpu_label(r.get("hardware"))}):
        match = ceiling_for_gpu(gpu, known)
        if match is None:
            gpu_notes.append(f"No ceiling for the GPU {gpu!r}: add its row, with a nvml_name "
                             "pattern matching that name, to analysis/data/accelerators.csv.")
            continue
        used.add(match.name)
        ceilings.append((f"{match.name} (this GPU: {gpu}, datasheet)", match.peak_gflops,
                         match.mem_gbs))
    ceilings += [(f"{c.name} (reference)", c.peak_gflops, c.mem_gbs) for c in known
                 if c.name in ("H100 SXM5", "A100 SXM4 80GB", "L4", "T4") and c.name not in used]
    images = [("Roofline", plots.roofline_png(roof_points, ceilings, out_dir / "roofline.png"))]
    sections.append({"id": "roofline", "title": "Roofline",
                     "notes": ["FLOPs and compulsory bytes per sample counted from the ONNX "
                               "graph (analysis/roofline.py); attained = FLOPs x batch / p50 "
                               "latency, at each family's capacity rung. CPU ceilings from a "
                               "numpy matmul / copy microbenchmark; the roof of each GPU a "
                               "model ran on from analysis/data/accelerators.csv (datasheets), "
                               "matched by the name NVML gives it; ceilings marked "
                               "(reference) are other accelerators no model here ran on."]
                     + gpu_notes,
                     "tables": [_table(["configuration", "FLOPs/sample", "bytes/sample",
                                        "FLOP/byte", "attained GFLOP/s"], roof_rows),
                                _table(["ceiling", "peak GFLOP/s", "bandwidth GB/s"],
                                       [list(c) for c in ceilings])],
                     "images": images})

    images, notes = [], []
    # One cell value per family (its capacity, and the latency there), not per rung: the
    # rungs of a ladder differ only in offered load.
    heat_rows = [{**f.rungs[0].row, "capacity_items_per_s": f.capacity_items_per_s,
                  "latency_at_capacity_ms": f.latency_ms} for f in families if f.rungs]
    maps: dict[str, list] = {}  # per metric: (platform, map); drawn on one colour scale
    for platform in sorted({r["platform"] for r in heat_rows}):
        mine = [r for r in heat_rows if r["platform"] == platform]
        for slug, metric_name, metric in (
                ("lat", f"p{pct:g} at capacity (ms)", lambda r: r["latency_at_capacity_ms"]),
                ("tp", "capacity at SLO (items/s)", lambda r: r["capacity_items_per_s"])):
            hm = heat_map(mine, "depth", "batch_size", metric, metric_name=metric_name,
                          vary_free=FAMILY_PARAMS)
            # A map of one row or one column is a table, not a grid: the results show it.
            if len(hm.x_values) >= 2 and len(hm.y_values) >= 2:
                maps.setdefault(slug, []).append((platform, hm))
    for slug, of_metric in maps.items():
        finite = np.concatenate([hm.values[np.isfinite(hm.values)] for _, hm in of_metric])
        scale = (float(finite.min()), float(finite.max())) if finite.size else None
        for platform, hm in of_metric:
            images.append((f"{platform}: {hm.metric} over depth x batch size, fixed "
                           f"{hm.fixed} (one colour scale for every platform)",
                           plots.heat_map_png(hm, out_dir / f"heat_{platform}_{slug}.png",
                                              title=f"{platform}: {hm.metric}", scale=scale)))
    if len({(r.get("hyperparams") or {}).get("depth") for r in records}) < 2:
        notes.append("Only one model depth here: a sweep over depths (runs sharing a sweep_id) "
                     "fills the depth axis.")
    if not images:
        notes.append("No grid to show: a heat map needs at least two depths and two batch "
                     "sizes of one platform.")
    sections.append({"id": "heatmaps", "title": "Heat maps of capacity at SLO (depth x batch "
                     "size)",
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

    ranks = {id(r.family): r for r in ranked}
    board = [*(r.family for r in ranked), *(f for f in families if id(f) not in ranks)]
    sections.append({"id": "leaderboard", "title": "Leaderboard (families, by capacity at "
                     "SLO)",
                     "notes": ["The recommendations' rule over every family; families with no "
                               "rung within the SLO come last. `inferbench leaderboard` ranks "
                               "every run in the database the same way (`--points` lists the "
                               "points)."],
                     "tables": [_table(["rank", "configuration", "run", "hardware",
                                        "capacity (req/s)", "capacity (items/s)",
                                        f"p{pct:g} at capacity (ms)", "$ per 1M inferences",
                                        "ranked by", "answer"],
                                       [[ranks[id(f)].rank if id(f) in ranks else "-",
                                         family_label(f), f.run_id, f.hardware,
                                         f.capacity_rps, f.capacity_items_per_s, f.latency_ms,
                                         f.cost_per_million_items_usd,
                                         ranks[id(f)].ranked_by if id(f) in ranks else "-",
                                         f.statement()] for f in board])],
                     "images": []})
    return sections, cdf_images, answer(families, slo_percentile=pct, slo_ms=slo_ms,
                                        label=family_label)


def _with_rungs(records: list[dict], slo_percentile: float, slo_ms: float) -> list[dict]:
    """The report's results rows: each point with whether it holds as a rung of its family's
    ladder (analysis.capacity), beside its verdict and SLO flag."""
    from analysis.capacity import judge_point_rung

    sweep = len({r.get("server_config") for r in records}) > 1
    out = []
    for r in records:
        rung = judge_point_rung(r, slo_percentile=slo_percentile, slo_ms=slo_ms)
        out.append({**r, "rung": None if rung is None else
                    ("holds" if rung.holds else f"fails: {rung.reason}"),
                    # A server sweep: name the configuration each point ran under.
                    "platform": f"{r['platform']} [{r.get('server_config')}]" if sweep
                    else r["platform"]})
    return out


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
    sections, cdf, answer = analysis_sections(conn, records, [run], Path(out_dir),
                                              slo_percentile=spec.slo.percentile,
                                              slo_ms=spec.slo.latency_ms)
    provenance = {}
    for p in tables["provenance"]:
        provenance.update({f"{p['platform']}: {k}" if k.startswith("platform") else k: v
                           for k, v in p["facts"].items()})
    if spec.resources.server_cpus is not None:
        provenance["CPUs"] = cpu_split_text(spec.resources.server_cpus)
    results = _with_rungs(records, spec.slo.percentile, spec.slo.latency_ms)
    return render_report({"run": run, "answer": answer, "results": results,
                          "conversions": tables["conversions"],
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
    sections, cdf, answer = analysis_sections(conn, records, runs, Path(out_dir),
                                              slo_percentile=spec.slo.percentile,
                                              slo_ms=spec.slo.latency_ms)
    bad = [r for r in runs if r["verdict"] != "VALID"]
    reasons = [f"run {r['run_id']} ({r['name']}) is {r['verdict']}: "
               + "; ".join(r.get("verdict_reasons") or []) for r in bad]
    run = {"run_id": sweep_id, "name": f"sweep {sweep_id} ({len(runs)} runs)",
           "status": "complete" if all(r["status"] == "complete" for r in runs) else "partial",
           "verdict": "INVALID" if bad else "VALID",
           "verdict_reasons": reasons or [f"all {len(runs)} runs are VALID"],
           "created_at": runs[0]["created_at"], "spec": runs[0]["spec"]}
    results = [{**r, "platform": f"{r['name']}: {r['platform']}"}
               for r in _with_rungs(records, spec.slo.percentile, spec.slo.latency_ms)]
    return render_report({"run": run, "answer": answer, "results": results,
                          "conversions": [], "deployments": [],
                          "provenance": {"runs": run_ids}, "images": cdf,
                          "sections": sections}, Path(out_dir))


# --- the run's summary: what `inferbench summary` and the analyze task's log print ---

def cpu_split_text(server_cpus: str) -> str:
    """Where the server and the load generator ran, for a run that pinned them."""
    return (f"server kept on CPUs {server_cpus} (resources.server_cpus), the load generator "
            "on the worker's other CPUs")


def run_summary(conn: Connection, run_id: str) -> dict[str, Any]:
    """A finished run's summary from PostgreSQL alone: per family its capacity at the run's
    SLO and bracket, per point its numbers, and the run's one-line answer (the same rule as
    the report's banner and recommendations: analysis.capacity.rank)."""
    from analysis.capacity import answer, capacities, family_labeller, judge_point_rung, rank

    run = queries.run_row(conn, run_id)
    if run is None:
        raise InferBenchError(f"run {run_id!r} is not in the results database (did the "
                              "generate task fail? see the Airflow task logs)")
    tables = queries.run_tables(conn, run_id)
    records = queries.point_records(conn, run_ids=[run_id])
    slo = run["spec"]["slo"]
    pct, slo_ms = float(slo["percentile"]), float(slo["latency_ms"])
    labels = {(c["platform"], c["config_index"]): c["label"] for c in tables["server_configs"]}
    from inferbench.prediction_report import prediction_summary

    predictions = {(p["platform"], p["config_index"], p["batch_size"]): p
                   for p in queries.family_prediction_rows(conn, run_ids=[run_id])}
    families = capacities(records, slo_percentile=pct, slo_ms=slo_ms)
    label = family_labeller(families)
    ranked = rank(families)
    ranks = {id(r.family): r for r in ranked}
    best = ranked[0].family if ranked else None
    results = []
    for r in records:
        rung = judge_point_rung(r, slo_percentile=pct, slo_ms=slo_ms)
        results.append({
            "platform": r["platform"], "config_index": r["config_index"],
            "server_config": r.get("server_config"), "batch_size": r["batch_size"],
            "point": r["point"], "arrival": r["arrival"],
            "target_rate_rps": r["target_rate_rps"], "concurrency": r["concurrency"],
            "throughput_rps": r["throughput_rps"], "latency_ms": r["latency_ms"],
            "late_send_pct": r["late_send_pct"], "n_ok": r["n_ok"], "n_failed": r["n_failed"],
            "meets_slo": r["meets_slo"], "verdict": r["verdict"], "reasons": r["reasons"],
            "rung_holds": None if rung is None else rung.holds,
            "rung_reason": None if rung is None else rung.reason,
            # what the family's prediction gave at the point's rate (None: no prediction)
            "predicted_mean_ms": r.get("predicted_mean_ms"),
            "predicted_p99_ms": r.get("predicted_p99_ms")})
    return {
        "run_id": run_id, "name": run["name"], "status": run["status"],
        "verdict": run["verdict"], "reasons": run["verdict_reasons"],
        "report": run["report_path"],
        "slo": {"percentile": pct, "latency_ms": slo_ms},
        "answer": answer(families, slo_percentile=pct, slo_ms=slo_ms, label=label),
        "best": None if best is None else {
            "label": label(best), "platform": best.platform, "batch_size": best.batch_size,
            "server_config": best.server_config, "config_index": best.config_index,
            "capacity_rps": best.capacity_rps,
            "capacity_items_per_s": best.capacity_items_per_s,
            "cost_per_million_usd": best.cost_per_million_usd,
            "cost_per_million_items_usd": best.cost_per_million_items_usd,
            "ranked_by": ranked[0].ranked_by},
        # The best family's capacity rung, as measured.
        "throughput_rps": best.capacity.achieved_rps if best and best.capacity else None,
        "latency_ms": best.capacity.row.get("latency_ms") if best and best.capacity else None,
        "families": [{**{k: v for k, v in f.to_dict().items() if k != "run_id"},
                      "label": label(f),
                      "rank": ranks[id(f)].rank if id(f) in ranks else None,
                      "ranked_by": ranks[id(f)].ranked_by if id(f) in ranks else None,
                      "prediction": prediction_summary(predictions.get(
                          (f.platform, f.config_index, f.batch_size)))}
                     for f in families],
        "deployments": [{**{k: d[k] for k in ("platform", "platform_version", "cold_start_s",
                                              "status", "error")},
                         "config_index": d["config_index"],
                         "server_config": labels.get((d["platform"], d["config_index"]))}
                        for d in tables["deployments"]],
        "results": results,
        "server_cpus": (run["spec"].get("resources") or {}).get("server_cpus"),
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_summary(s: dict[str, Any]) -> str:
    """The summary as text: the verdict, the families' capacities, the points, the
    deployments and the answer."""
    from analysis.capacity import rate_text

    pct = s["slo"]["percentile"]
    lines = [f"run {s['run_id']}: {s['verdict']} ({s['status']})"]
    lines += [f"  - {reason}" for reason in s.get("reasons") or []]
    fams = s.get("families") or []
    if fams:
        width = max(len(f["label"]) for f in fams)
        lines += ["", f"  capacity at SLO p{pct:g} <= {s['slo']['latency_ms']:g} ms, per "
                  "family (platform x server configuration x batch size):",
                  f"  {'#':>2} {'family':<{width}} {'rungs':>5} {'req/s':>9} {'items/s':>9} "
                  f"{f'p{pct:g} ms':>8} {'$/1M inf':>9}  bracket (lowest failing load above)"]
        for f in sorted(fams, key=lambda f: (f["rank"] is None, f["rank"] or 0)):
            cap = f["capacity_rps"]
            ge = ">=" if f["search_cap_reached"] else ""
            bracket = f["capacity_bracket"]
            unit = "req/s" if f["open_loop"] else "clients"
            why = ("search cap reached" if f["search_cap_reached"] else
                   f"{bracket['offered']:g} {unit}: {bracket['reason']}" if bracket else
                   f["answer"])
            cost = f["cost_per_million_items_usd"]
            lines.append(
                f"  {f['rank'] or '-':>2} {f['label']:<{width}} {f['n_rungs']:>5} "
                f"{(ge + rate_text(cap)) if cap is not None else '-':>9} "
                f"{(ge + rate_text(f['capacity_items_per_s'])) if cap is not None else '-':>9} "
                f"{_ms(f['latency_at_slo_ms']):>8} "
                f"{f'{cost:.4g}' if cost is not None else '-':>9}  {why}")
    predicted = [f for f in fams if f.get("prediction")]
    if predicted:
        lines += ["", "  predicted before each ladder (queueing model of a light profile):"]
    for f in predicted:
        p = f["prediction"]
        if p["error"]:
            what = f"no prediction: {p['error']}"
        elif p["unmodelled"]:
            what = f"not modelled: {p['unmodelled']}"
        else:
            within, top = p["slo_capacity_rps"], p["capacity_rps"]
            what = (f"{p['model_name']}; capacity "
                    + ("-" if top is None else f"{rate_text(top)} req/s")
                    + ", within the SLO up to "
                    + ("no rate" if within is None else f"{rate_text(within)} req/s")
                    + ("" if p["guided_start"] is None else
                       f"; search started at {rate_text(p['guided_start'])} req/s"))
        lines.append(f"  {f['label']}: {what}")
    header = f"  {'platform':<12} {'batch':>5} {'offered':>10} {'rps':>8} {'p50 ms':>8} " \
             f"{'p99 ms':>8} {'late %':>6} {'SLO':>4} verdict  rung"
    lines += ["", "  points (SLO: the point's percentile within the SLO; verdict: whether its "
              "measurements can be trusted):", header]
    sweep = len({r.get("server_config") for r in s["results"]}) > 1
    for r in s["results"]:
        lat = r["latency_ms"] or {}
        offered = (f"{r['target_rate_rps']:g} rps" if r.get("target_rate_rps") is not None
                   else f"{r['concurrency']} cl" if r.get("concurrency") is not None else "-")
        rung = "-" if r.get("rung_holds") is None else \
            ("holds" if r["rung_holds"] else f"fails: {r['rung_reason']}")
        lines.append(
            f"  {r['platform']:<12} {r['batch_size']:>5} {offered:>10} "
            f"{r['throughput_rps']:>8.1f} {_ms(lat.get('p50')):>8} {_ms(lat.get('p99')):>8} "
            f"{r['late_send_pct']:>6.2f} {'yes' if r['meets_slo'] else 'no':>4} "
            f"{r['verdict']:<8} {rung}" + (f"  [{r.get('server_config')}]" if sweep else ""))
    for d in s["deployments"]:
        cold = f"{d['cold_start_s']:.2f} s" if d["cold_start_s"] is not None else "-"
        name = f"{d['platform']} [{d.get('server_config')}]" if sweep else d["platform"]
        lines.append(f"  {name}: {d['status']}, cold start {cold}, {d['platform_version']}"
                     + (f" - {d['error']}" if d["error"] else ""))
    if s.get("server_cpus") is not None:
        lines.append(f"  {cpu_split_text(s['server_cpus'])}")
    lines += ["", s["answer"], f"report: {s['report']}"]
    return "\n".join(lines)
