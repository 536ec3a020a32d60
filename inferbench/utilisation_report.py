"""The report's "Resource use" section: CPU, memory and GPU per point (within its
measurement window) and per server configuration (over everything it served), and the CPU
time series of each configuration (analysis/utilisation.py says what each figure is)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection

from analysis import plots
from analysis.utilisation import point_utilisation
from inferbench.perfdb import queries
from inferbench.reporting import _table

MB = 1e6


def _mb(value: float | None) -> float | None:
    return None if value is None else value / MB


def _figures(u: dict) -> list:
    server, client = u.get("server", {}), u.get("client", {})
    gpus = [v for k, v in u.items() if k.startswith("gpu")]
    gpu_util = [g["gpu_util_pct_mean"] for g in gpus if g["gpu_util_pct_mean"] is not None]
    gpu_mem = [g["gpu_mem_bytes_max"] for g in gpus if g["gpu_mem_bytes_max"] is not None]
    return [server.get("cpu_pct_mean"), server.get("cpu_pct_max"),
            _mb(server.get("rss_bytes_max")), client.get("cpu_pct_mean"),
            float(np.mean(gpu_util)) if gpu_util else None,
            _mb(max(gpu_mem)) if gpu_mem else None]


COLUMNS = ["server CPU mean (%)", "server CPU max (%)", "server RSS max (MB)",
           "client CPU mean (%)", "GPU util mean (%)", "GPU memory max (MB)"]


def utilisation_section(conn: Connection, records: Sequence[dict], runs: Sequence[dict],
                        config_label: Callable, out_dir: Path) -> dict[str, Any]:
    samples = {r["run_id"]: queries.resource_samples_by_config(conn, r["run_id"]) for r in runs}
    many_runs = len(runs) > 1
    per_point, windows = [], {}
    for rec in records:
        key = (rec["run_id"], rec["platform"], rec.get("config_index") or 0)
        own = samples.get(rec["run_id"], {}).get(key[1:], [])
        u = point_utilisation(own, rec["started_ns"], rec["ended_ns"])
        per_point.append([config_label(rec, with_load=True), *_figures(u)])
        label = (f"{rec['run_id']}: " if many_runs else "") + rec["platform"] + (
            f" [{rec['server_config']}]" if rec.get("server_config") else "")
        lo, hi, _ = windows.get(key, (rec["started_ns"], rec["ended_ns"], label))
        windows[key] = (min(lo, rec["started_ns"]), max(hi, rec["ended_ns"]), label)
    per_config, series = [], {}
    for (run_id, platform, config), (lo, hi, label) in windows.items():
        own = samples.get(run_id, {}).get((platform, config), [])
        per_config.append([label, *_figures(point_utilisation(own, lo, hi))])
        if own:
            t0 = own[0]["t_ns"]
            by_source: dict[str, tuple[list, list]] = {}
            for s in own:
                value = s["cpu_pct"] if s["cpu_pct"] is not None else s.get("gpu_util_pct")
                if value is not None:
                    ts, vs = by_source.setdefault(s["source"], ([], []))
                    ts.append((s["t_ns"] - t0) / 1e9)
                    vs.append(value)
            series[label] = {k: (np.asarray(t), np.asarray(v)) for k, (t, v) in
                             by_source.items()}
    images = []
    if series:
        images.append(("CPU (and GPU) use over time, per server configuration",
                       plots.utilisation_png(series, out_dir / "utilisation.png",
                                             title="Resource use over time")))
    return {"id": "utilisation", "title": "Resource use: CPU, memory, GPU",
            "notes": ["Sampled while the points were measured (server: the serving process "
                      "tree; client: the load generator; GPU: NVML where present). CPU in "
                      "percent of one core. Per point: the samples within its measurement "
                      "window; per configuration: over every point it served."]
            + ([] if series else ["No resource samples were recorded for these runs."]),
            "tables": [_table(["configuration", *COLUMNS], per_config),
                       _table(["point", *COLUMNS], per_point)],
            "images": images}
