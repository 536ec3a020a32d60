"""analyze: from PostgreSQL alone, summarise every point, judge it, price it (cost, energy,
CO2), check data quality, count the model's FLOPs for the roofline, write the results rows,
each family's capacity at the SLO (analysis/capacity.py) and the run's verdict, then build the
HTML report from the database (inferbench/reporting.py) and print the summary and the answer
(the Airflow task log shows them).

It runs whatever happened upstream: a platform that failed makes the run `partial` and
INVALID with the reason, while the points that were measured are still summarised.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import delete, insert, update

from inferbench.errors import InferBenchError
from inferbench.load.http import resent_note
from inferbench.perfdb import queries, schema, writer
from inferbench.platforms import gpu_index
from inferbench.server_grid import server_configs
from inferbench.stages.common import StageContext
from inferbench.stages.point_verdict import judge_point_records


def _summarise_point(ctx: StageContext, point: dict[str, Any],
                     arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any], np.ndarray]:
    from analysis.capacity import sent_rate_rps
    from analysis.percentiles import hdr_encode

    spec = ctx.spec
    open_loop = point["arrival"] != "closed_loop"  # every other arrival process is open loop
    judged = judge_point_records(spec, arrays, started_ns=point["started_ns"],
                                 ended_ns=point["ended_ns"], complete=point["complete"],
                                 stop_reason=point["stop_reason"], open_loop=open_loop)
    summary, latency_ms = judged.summary, judged.latencies_ms
    verdict, reasons, meets_slo = judged.verdict, judged.reasons, judged.meets_slo
    if point.get("host_stall_pct") is not None:
        reasons = [*reasons, f"host stall share just before the point: "
                   f"{point['host_stall_pct']:.2f} % of the time in stalls > "
                   f"{spec.late_send_threshold_ms:g} ms (the floor for late sends on this host)"]
    if point.get("issuer_nice") is not None:
        realtime = point.get("issuer_realtime")
        reasons = [*reasons, f"load generator at niceness {point['issuer_nice']}"
                   + ("" if realtime is None else f", real-time (SCHED_FIFO {realtime})")]
    reasons = [*reasons, *resent_note(point.get("resent_requests"))]
    row = {
        "run_id": ctx.run_id, "platform": point["platform"],
        "config_index": point["config_index"], "point": point["point"],
        "batch_size": point["batch_size"], "n_ok": summary.n_ok, "n_failed": summary.n_failed,
        "duration_s": summary.duration_s, "throughput_rps": summary.throughput_rps,
        "late_send_pct": summary.late_send_pct,
        "latency_ms": {**summary.latency_ms, "p99_ci": list(summary.p99_ci_ms)},
        "hdr_histogram": hdr_encode(latency_ms * 1000.0) if len(latency_ms) else None,
        "meets_slo": meets_slo, "verdict": verdict, "reasons": reasons,
        # What the schedule really sent: the capacity rule judges the achieved rate against
        # it, as the load stage's search did when it measured the rung.
        "sent_rps": sent_rate_rps(arrays["scheduled_ns"], point["started_ns"],
                                  point["ended_ns"], arrays["done_ns"]) if open_loop else None,
    }
    return row, latency_ms


def _judge_run(ctx: StageContext, families: list, failed: list[str],
               deployments: list[dict]) -> tuple[str, list[str]]:
    """The run's verdict from the rung each family's answer rests on (its capacity rung,
    or its lowest when none holds) and the platforms that failed. A capacity search drives
    rungs into overload on purpose, where the load generator may fall behind: those rungs
    are INVALID as measurements but decide nothing, so they do not invalidate the run."""
    from analysis.capacity import family_label
    from analysis.verdict import judge_run

    deciding = [(family_label(f), f.deciding_rung) for f in families]
    verdict, reasons = judge_run([(f"{label} at {rung.offered:g}", rung.verdict)
                                  for label, rung in deciding if rung is not None], failed)
    if verdict != "VALID":  # say why, not only which
        errors = {_deployment_name(ctx, d["platform"], d["config_index"]): d.get("error")
                  for d in deployments}
        reasons = [f"point {label} at {rung.offered:g} is INVALID: "
                   + "; ".join(rung.row.get("reasons") or [])
                   for label, rung in deciding if rung is not None and rung.verdict != "VALID"]
        reasons += [f"platform {name} failed: "
                    + (errors.get(name) or "no measurements were collected") for name in failed]
        if not deciding and not failed:
            reasons.append("no points were measured")
    else:
        reasons = [f"the answer of each of the {len(deciding)} families rests on a VALID "
                   "point, and no platform failed"]
    return verdict, [*reasons, *(c for f in families for c in f.caveats())]


def _deployment_name(ctx: StageContext, platform: str, config_index: int) -> str:
    """"triton", or "triton [db=on,delay=500us,inst=1]" when the spec sweeps the server."""
    configs = server_configs(ctx.spec)
    if len(configs) == 1:
        return platform
    label = next((c.label for c in configs if c.index == config_index), f"#{config_index}")
    return f"{platform} [{label}]"


def _unmeasured_deployments(ctx: StageContext, deployments: list[dict]) -> list[str]:
    measured = {(d["platform"], d["config_index"]) for d in deployments
                if d["status"] == "measured"}
    return [_deployment_name(ctx, p.value, c.index) for p in ctx.spec.platforms
            for c in server_configs(ctx.spec) if (p.value, c.index) not in measured]


def _devices(tables: dict[str, list[dict]]) -> dict[tuple[str, int], str]:
    """Where each deployment's server ran the model, as its serve stage asked the server
    (collect keeps it in the deployment's provenance). Deployments recorded before the
    device was asked have none: every platform then ran on the CPU."""
    return {(p["platform"], p["config_index"]): p["facts"].get("device") or "cpu"
            for p in tables["provenance"] if p["platform"]}


def _hardware(tables: dict[str, list[dict]], device: str) -> str:
    """The label of `device` on this run's host (analysis.cost.hardware_name)."""
    from analysis.cost import hardware_name

    facts = next((p["facts"] for p in tables["provenance"] if p["platform"] == ""),
                 next((p["facts"] for p in tables["provenance"]), {}))
    return hardware_name(facts.get("gpus"), facts.get("cpu_logical_cores"), device)


def _cost_energy(ctx: StageContext, row: dict[str, Any], point: dict[str, Any],
                 price, grid_g_per_kwh: float, device: str) -> dict[str, Any]:
    """Price, cost per million requests, energy and CO2 of one point. Energy, where the
    model ran on the GPU: the GPU's NVML total-energy counter over the point where it has
    one, else its NVML power samples integrated over the point; otherwise an estimate from
    the server's CPU use (labelled as such), even on a host with GPUs: their power is not
    this model's. RAPL is not sampled by the resource sampler yet."""
    from analysis.cost import (
        co2_g,
        cost_per_million_requests,
        energy_estimate_cpu_j,
        energy_from_nvml_counter_j,
        energy_from_power_j,
    )

    out: dict[str, Any] = {"usd_per_hour": price.usd_per_hour if price else None}
    out["cost_per_million_usd"] = cost_per_million_requests(out["usd_per_hour"],
                                                            row["throughput_rps"])
    lo, hi = point["started_ns"], point["ended_ns"]
    energy_j, method = None, None
    with ctx.db.connect() as conn:
        index = gpu_index(device)
        gpu = queries.resource_series(conn, ctx.run_id, point["platform"], f"gpu{index or 0}")
        server = queries.resource_series(conn, ctx.run_id, point["platform"], "server")
    in_point = (gpu["t_ns"] >= lo) & (gpu["t_ns"] <= hi)
    in_gpu = in_point & np.isfinite(gpu["gpu_power_w"])
    in_cpu = (server["t_ns"] >= lo) & (server["t_ns"] <= hi) & np.isfinite(server["cpu_pct"])
    counted = (energy_from_nvml_counter_j(gpu["gpu_energy_mj"][in_point])
               if index is not None else None)
    if counted is not None:
        energy_j, method = counted, "nvml_energy_counter"
    elif index is not None and in_gpu.sum() >= 2:
        energy_j, method = energy_from_power_j(gpu["t_ns"][in_gpu],
                                               gpu["gpu_power_w"][in_gpu]), "nvml_power"
    elif in_cpu.any():
        energy_j = energy_estimate_cpu_j(float(server["cpu_pct"][in_cpu].mean()),
                                         (hi - lo) / 1e9)
        method = "estimate_cpu_tdp"
    per_request = energy_j / row["n_ok"] if energy_j is not None and row["n_ok"] else None
    out.update(energy_j_per_request=per_request, energy_method=method,
               co2_g_per_request=co2_g(per_request, grid_g_per_kwh)
               if per_request is not None else None)
    return out


def _analysis_facts(tables: dict[str, list[dict]]) -> dict[str, Any]:
    """Model FLOPs/bytes from the ONNX graph and this machine's CPU ceilings (roofline)."""
    from analysis.roofline import count_graph
    from inferbench.metrics.cpu_ceilings import measure_cpu_ceilings

    facts: dict[str, Any] = {"cpu_ceilings": measure_cpu_ceilings()}
    onnx_conv = next((c for c in tables["conversions"] if c["format"] == "onnx"), None)
    if onnx_conv:
        try:
            cost = count_graph(onnx_conv["artifact_path"])
            facts["model_cost"] = {"flops": cost.flops, "bytes": cost.bytes,
                                   "flops_by_op": cost.flops_by_op}
        except Exception as exc:  # noqa: BLE001 - a roofline gap must not lose the run
            facts["model_cost_error"] = f"{type(exc).__name__}: {exc}"
    return facts


def _latency_by_length(ctx: StageContext, tables: dict[str, list[dict]],
                       arrays: dict[tuple, dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    """A variable-length workload's latency per length bucket, per point."""
    from analysis.sequence_lengths import latency_by_length
    from inferbench.load.sequence_lengths import buckets_of

    lengths = ctx.spec.workload.sequence_length
    if lengths is None:
        return []
    edges = buckets_of(lengths, ctx.spec.model.sequence)
    rows = []
    for point in tables["points"]:
        records = arrays[(point["platform"], point["config_index"], point["point"])]
        if "seq_len" not in records:
            continue
        for bucket in latency_by_length(records, edges):
            rows.append({"platform": point["platform"], "config_index": point["config_index"],
                         "point": point["point"], "batch_size": point["batch_size"],
                         "padding": lengths.padding.value, **bucket})
            p99 = bucket["p99_ms"]
            print(f"{point['platform']} b{point['batch_size']} point {point['point']} length "
                  f"{bucket['length_from']}-{bucket['length_to']} (sent padded to "
                  f"{bucket['mean_padded_len']:.0f} on average): {bucket['n_ok']} requests, "
                  f"p50 {bucket['p50_ms']:.2f} ms, p99 "
                  + (f"{p99:.2f} ms" if p99 is not None else "not enough requests"),
                  flush=True)
    return rows


def run(ctx: StageContext) -> dict[str, Any]:
    import os

    from analysis.capacity import capacities
    from analysis.cost import load_grid_intensity, load_prices, match_price
    from analysis.quality import validate_run
    from inferbench.reporting import build_run_report, format_summary, run_summary

    with ctx.db.connect() as conn:
        tables = queries.run_tables(conn, ctx.run_id)
        arrays = {(p["platform"], p["config_index"], p["point"]): queries.request_arrays(
            conn, ctx.run_id, p["platform"], p["point"], p["config_index"])
            for p in tables["points"]}
    devices = _devices(tables)
    labels = {device: _hardware(tables, device) for device in {*devices.values(), "cpu"}}
    prices, instance = load_prices(), os.environ.get("INFERBENCH_INSTANCE")
    price_of = {device: match_price(label, prices, instance) for device, label in labels.items()}
    hardware = ", ".join(sorted({labels[d] for d in devices.values()})) or labels["cpu"]
    region = os.environ.get("INFERBENCH_GRID_REGION", "world").lower()
    grid = load_grid_intensity()
    if region not in grid:
        raise InferBenchError(f"INFERBENCH_GRID_REGION {region!r} is not in "
                              f"analysis/data/grid_intensity.csv; known: {', '.join(grid)}")
    results, quality_points = [], []
    for point in tables["points"]:
        point_arrays = arrays[(point["platform"], point["config_index"], point["point"])]
        row, latency_ms = _summarise_point(ctx, point, point_arrays)
        row["deployment"] = _deployment_name(ctx, point["platform"], point["config_index"])
        device = devices.get((point["platform"], point["config_index"]), "cpu")
        row.update(_cost_energy(ctx, row, point, price_of[device], grid[region], device))
        results.append(row)
        quality_points.append({
            "label": f"{row['deployment']} batch {point['batch_size']}",
            "latencies_ms": latency_ms, "latency_ms": row["latency_ms"],
            "throughput_rps": row["throughput_rps"], "n_ok": row["n_ok"],
            "n_failed": row["n_failed"], "n_requests": len(point_arrays["status"]),
            # What the schedule really sent: a short Poisson rung's count strays from the
            # nominal rate by about 1/sqrt(n), which is not a server answering too much.
            "target_rate_rps": row["sent_rps"] or point["target_rate_rps"]})
    # Great Expectations when installed (extra `quality`), else its pure-function twin.
    from analysis import quality_ge

    quality_engine = "great_expectations" if quality_ge.available() else "analysis.quality"
    quality_ok, quality_reasons = (quality_ge.validate_run_ge if quality_ge.available()
                                   else validate_run)(quality_points)
    by_length = _latency_by_length(ctx, tables, arrays)
    failed = _unmeasured_deployments(ctx, tables["deployments"])
    status = "partial" if failed else "complete"

    db_rows = [{c.name: r.get(c.name) for c in schema.results.columns} for r in results]
    with ctx.db.begin() as conn:
        conn.execute(delete(schema.results).where(schema.results.c.run_id == ctx.run_id))
        if db_rows:
            conn.execute(insert(schema.results), db_rows)
        # Read back through the query every other reader uses (summary, report, recommend),
        # so the stored capacities are the ones they compute.
        families = capacities(queries.point_records(conn, run_ids=[ctx.run_id]),
                              slo_percentile=ctx.spec.slo.percentile,
                              slo_ms=ctx.spec.slo.latency_ms)
        writer.replace_capacities(conn, ctx.run_id, [f.to_dict() for f in families])
        verdict, reasons = _judge_run(ctx, families, failed, tables["deployments"])
        if not quality_ok:  # kept and marked, not dropped: the reasons say what failed
            reasons = [*reasons, *(f"data quality: {q}" for q in quality_reasons)]
        writer.finish_run(conn, ctx.run_id, status=status, verdict=verdict, reasons=reasons,
                          report_path=None)
        conn.execute(update(schema.runs).where(schema.runs.c.run_id == ctx.run_id).values(
            hardware=hardware, quality_ok=quality_ok, quality_reasons=quality_reasons,
            analysis={**_analysis_facts(tables), "quality_engine": quality_engine,
                      "latency_by_length": by_length}))
    report_dir = ctx.run_dir.report_dir
    with ctx.db.connect() as conn:
        report_path = build_run_report(conn, ctx.run_id, report_dir)
    with ctx.db.begin() as conn:
        conn.execute(update(schema.runs).where(schema.runs.c.run_id == ctx.run_id)
                     .values(report_path=str(report_path)))
    with ctx.db.connect() as conn:
        summary = run_summary(conn, ctx.run_id)
    # The Airflow task log carries these lines: the capacities, the points, the answer and
    # the report's path, so the task log alone answers the question.
    print(format_summary(summary), flush=True)
    return {"run_id": ctx.run_id, "status": status, "verdict": verdict, "reasons": reasons,
            "report": str(report_path), "points": len(results), "families": len(families),
            "answer": summary["answer"], "quality_ok": quality_ok}
