"""The flat "point record" every cross-run analysis works on, and helpers to read it.

A point record is one dict per measured point (one platform x batch size x load level of one
run), as :func:`inferbench.perfdb.queries.point_records` returns it. Analyses only rely on
the keys below; extra keys (new platforms, server-side batching knobs, queue statistics) pass
through untouched, and :func:`config_label` picks up any ``config`` dict so new configuration
columns group correctly without code changes.

Keys used: run_id, platform, format, hardware, batch_size, arrival, target_rate_rps,
concurrency, throughput_rps, latency_ms (dict: p50, p90, p95, p99, p99.9, max, p99_ci),
hdr_histogram (optional), verdict, usd_per_hour, cost_per_million_usd, hyperparams (dict),
config (optional dict of extra configuration knobs), server_config (optional: the label of
the server configuration the point ran under, e.g. "db=on,inst=1"), config_index, point.
The points of one *family* (run x platform x server configuration x batch size) differ only
in offered load: they are the rungs of its load ladder (see :mod:`analysis.capacity`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from analysis.percentiles import percentile_key


def offered_load(row: Mapping[str, Any]) -> float | None:
    """Offered load of a point: the target rate (open loop) or the clients (closed loop)."""
    if row.get("target_rate_rps") is not None:
        return float(row["target_rate_rps"])
    if row.get("concurrency") is not None:
        return float(row["concurrency"])
    return None


def latency_at(row: Mapping[str, Any], percentile: float) -> float | None:
    """Latency (ms) of a point at ``percentile`` (in percent).

    Exact from the stored nearest-rank percentiles when the percentile is one of them;
    otherwise from the point's HdrHistogram (3 significant digits), or None.
    """
    latency = row.get("latency_ms") or {}
    key = percentile_key(percentile)
    if latency.get(key) is not None:
        return float(latency[key])
    encoded = row.get("hdr_histogram")
    if encoded:
        from analysis.percentiles import hdr_decode

        hist = hdr_decode(encoded)
        if hist.get_total_count():
            return hist.get_value_at_percentile(percentile) / 1000.0
    return None


def items_per_s(row: Mapping[str, Any]) -> float:
    """Samples served per second: requests/s times the batch size of each request."""
    return float(row.get("throughput_rps") or 0.0) * int(row.get("batch_size") or 1)


def config_key(row: Mapping[str, Any], *, with_load: bool = False) -> tuple:
    """What identifies a configuration: platform, format, hardware, model, batch size, the
    server configuration, any extra ``config`` knobs, and (``with_load``) the offered load."""
    extra = tuple(sorted((row.get("config") or {}).items()))
    key = (row.get("platform"), row.get("format"), row.get("hardware"),
           row.get("model_name"), row.get("batch_size"), row.get("server_config"), extra)
    return (*key, offered_load(row)) if with_load else key


def config_label(row: Mapping[str, Any], *, with_load: bool = False,
                 with_model: bool = False, with_server: bool = True) -> str:
    """Human label of :func:`config_key`, e.g. ``onnxruntime/onnx b8 [db=on,inst=1] @ 40 rps``
    (prefixed by the model's name with ``with_model``, for rows of several models; the server
    configuration only ``with_server`` and when the row names one)."""
    parts = [str(row.get("platform"))]
    if row.get("format"):
        parts[0] += f"/{row['format']}"
    if with_model and row.get("model_name"):
        parts.insert(0, str(row["model_name"]))
    parts.append(f"b{row.get('batch_size')}")
    if with_server and row.get("server_config"):
        parts.append(f"[{row['server_config']}]")
    parts += [f"{k}={v}" for k, v in sorted((row.get("config") or {}).items())]
    label = " ".join(parts)
    if with_load:
        load = offered_load(row)
        unit = "rps" if row.get("target_rate_rps") is not None else "clients"
        label += f" @ {load:g} {unit}" if load is not None else ""
    return label


def group_by(rows: Iterable[Mapping[str, Any]], key) -> dict[Any, list[Mapping[str, Any]]]:
    """Rows grouped by ``key(row)``, insertion-ordered."""
    out: dict[Any, list[Mapping[str, Any]]] = {}
    for row in rows:
        out.setdefault(key(row), []).append(row)
    return out


def labeller(rows: Iterable[Mapping[str, Any]]):
    """A :func:`config_label` that names the model, and the server configuration, only when
    the rows hold several."""
    rows = list(rows)
    many = len({r.get("model_name") for r in rows}) > 1
    servers = len({r.get("server_config") for r in rows}) > 1

    def label(row: Mapping[str, Any], *, with_load: bool = False) -> str:
        return config_label(row, with_load=with_load, with_model=many, with_server=servers)

    return label
