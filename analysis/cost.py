"""Cost, energy and CO2 per request.

Tables are editable CSV files in ``analysis/data`` (comment lines start with ``#``):
``instance_prices.csv`` (provider, instance, device, usd_per_hour) and ``grid_intensity.csv``
(region, g_co2_per_kwh, source). Pure functions; the loaders only read those files.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inferbench.errors import InferBenchError
from inferbench.platforms import gpu_index

DATA = Path(__file__).parent / "data"
# Used only for the CPU estimate when nothing better is measured: watts per fully busy
# logical core. ~10 W/core is a mid-range server figure (e.g. a 200 W TDP, 20-core part);
# results computed with it are labelled `estimate_cpu_tdp` in the data and the report.
DEFAULT_TDP_W_PER_CORE = 10.0


@dataclass(frozen=True)
class Price:
    provider: str
    instance: str
    device: str
    usd_per_hour: float


def _csv_rows(path: Path) -> list[dict[str, str]]:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return list(csv.DictReader(lines))


def load_prices(path: Path | None = None) -> list[Price]:
    path = path or DATA / "instance_prices.csv"
    out = []
    for i, row in enumerate(_csv_rows(path), start=2):
        try:
            out.append(Price(row["provider"], row["instance"], row["device"],
                             float(row["usd_per_hour"])))
        except (KeyError, TypeError, ValueError):
            raise InferBenchError(
                f"{path}: row {i} {row!r} is not provider,instance,device,usd_per_hour with a "
                "number in usd_per_hour; fix the row") from None
    return out


def load_grid_intensity(path: Path | None = None) -> dict[str, float]:
    path = path or DATA / "grid_intensity.csv"
    return {r["region"].strip().lower(): float(r["g_co2_per_kwh"]) for r in _csv_rows(path)}


CPU_LABEL_PREFIX = "cpu:"


def is_gpu_label(hardware: str | None) -> bool:
    """Whether a result's hardware label (hardware_name) names a GPU."""
    return bool(hardware) and not str(hardware).startswith(CPU_LABEL_PREFIX)


def hardware_name(gpus: list[dict] | None, cpu_logical_cores: int | None,
                  device: str = "cpu") -> str:
    """The device string a result is labelled and priced by: where the model ran. On a
    GPU (``device`` "gpu") the first GPU's name; on the CPU ``cpu:<N>vcpu``, whatever GPUs
    the host also has (a model served on the CPU is never labelled, priced or metered as
    a GPU)."""
    index = gpu_index(device)
    if index is None:
        return f"{CPU_LABEL_PREFIX}{cpu_logical_cores or 0}vcpu"
    if index >= len(gpus or []):
        raise InferBenchError(f"a server reported running its model on {device}, but the "
                              f"host's provenance lists {len(gpus or [])} GPU(s) (NVML); fix: "
                              "install nvidia-ml-py on the GPU worker")
    return str(gpus[index].get("name"))


def match_price(hardware: str, prices: list[Price], instance: str | None = None) -> Price | None:
    """The price row for ``hardware``: by instance name if given, else the cheapest row whose
    ``device`` is a case-insensitive substring of ``hardware`` (None if none matches)."""
    if instance:
        named = [p for p in prices if p.instance == instance]
        if not named:
            raise InferBenchError(f"instance {instance!r} is not in the price table; known: "
                                  f"{', '.join(sorted({p.instance for p in prices}))}; fix: "
                                  "add a row to analysis/data/instance_prices.csv")
        return named[0]
    hits = [p for p in prices if p.device.lower() in hardware.lower()]
    return min(hits, key=lambda p: p.usd_per_hour, default=None)


def cost_per_million_requests(usd_per_hour: float | None, throughput_rps: float) -> float | None:
    """$/hour / (requests/s * 3600) * 1e6; None without a price or with no throughput."""
    if usd_per_hour is None or throughput_rps <= 0:
        return None
    return usd_per_hour / (throughput_rps * 3600.0) * 1e6


def energy_from_power_j(t_ns: np.ndarray, power_w: np.ndarray) -> float:
    """Energy (J) from sampled power: trapezoid over the sample times (what NVML's power
    readings, as the sampler stores them, allow)."""
    t = np.asarray(t_ns, dtype=np.float64) / 1e9
    p = np.asarray(power_w, dtype=np.float64)
    if t.size < 2:
        return 0.0
    order = np.argsort(t)
    t, p = t[order], p[order]
    return float(np.sum((p[1:] + p[:-1]) * 0.5 * np.diff(t)))


def energy_from_nvml_counter_j(energy_mj: np.ndarray) -> float | None:
    """Energy (J) between the first and last of time-ordered readings of NVML's total-energy
    counter (mJ, 64-bit: it does not wrap); None with fewer than two readings or when the
    counter went back (the driver reloaded between them)."""
    e = np.asarray(energy_mj, dtype=np.float64)
    e = e[np.isfinite(e)]
    if e.size < 2 or np.any(np.diff(e) < 0):
        return None
    return float(e[-1] - e[0]) / 1e3


def energy_from_counter_j(start_uj: int, end_uj: int, max_range_uj: int) -> float:
    """Energy (J) between two readings of a wrapping counter (RAPL ``energy_uj``, whose range
    is ``max_energy_range_uj``): one wrap is corrected."""
    delta = end_uj - start_uj
    if delta < 0:
        delta += max_range_uj + 1
    return delta / 1e6


def energy_estimate_cpu_j(cpu_pct_mean: float, duration_s: float,
                          tdp_w_per_core: float = DEFAULT_TDP_W_PER_CORE) -> float:
    """An ESTIMATE (not a measurement): mean CPU use (% of one core, psutil's convention,
    may exceed 100) x watts per busy core x duration."""
    return cpu_pct_mean / 100.0 * tdp_w_per_core * duration_s


def co2_g(energy_j: float, g_co2_per_kwh: float) -> float:
    """Grams CO2e of ``energy_j`` at a grid intensity (1 kWh = 3.6e6 J)."""
    return energy_j / 3.6e6 * g_co2_per_kwh
