"""Exact latency percentiles, their confidence intervals and HdrHistogram encoding.

Percentiles are nearest-rank order statistics: the p-th percentile of n values is
the value of rank ``ceil(p/100 * n)`` (1-based) in sorted order, i.e. always one of
the measured values, never interpolated or rounded.  This is what numpy calls
``method="inverted_cdf"``, but numpy computes the rank in floating point and gets
it wrong at some points (``np.percentile(1..1000, 99.9, method="inverted_cdf")``
returns 1000 because ``0.999 * 1000 > 999`` in binary floating point); here the
rank is computed with exact rational arithmetic.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hdrh.histogram import HdrHistogram

#: The percentiles every point reports (in percent).
PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0, 99.9)

# HdrHistogram range: 1 us .. 3600 s, 3 significant digits (0.1 % value precision).
HDR_LOWEST_US = 1
HDR_HIGHEST_US = 3_600_000_000
HDR_SIGNIFICANT_DIGITS = 3


def percentile_key(p: float) -> str:
    """Dictionary key of percentile ``p`` (in percent): 50.0 -> "p50", 99.9 -> "p99.9"."""
    return f"p{float(p):g}"


def nearest_rank(n: int, p: float) -> int:
    """1-based nearest rank of the ``p``-th percentile (in percent) among ``n`` values.

    ``ceil(p/100 * n)``, at least 1, computed exactly: ``p`` is taken as the
    decimal number it prints as (99.9 means 999/10, not the binary float nearby).
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {p}")
    # Fraction(str(p)): the shortest repr of a float is the decimal the user wrote.
    return max(1, math.ceil(Fraction(str(float(p))) * n / 100))


def _sorted_finite(values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size and not np.all(np.isfinite(arr)):
        # A NaN/inf latency is a bug upstream; silently dropping it would bias the tail.
        raise ValueError("values contain NaN or infinite entries")
    return np.sort(arr)


def exact_percentile(values: np.ndarray, p: float, *, assume_sorted: bool = False) -> float | None:
    """Nearest-rank ``p``-th percentile (``p`` in percent) of ``values``; None if empty."""
    arr = np.asarray(values, dtype=np.float64).ravel() if assume_sorted else _sorted_finite(values)
    if arr.size == 0:
        return None
    return float(arr[nearest_rank(arr.size, p) - 1])


def exact_percentiles(values: np.ndarray) -> dict[str, float | None]:
    """Mean, nearest-rank percentiles (:data:`PERCENTILES`) and max of ``values``.

    Keys: "mean", "p50", "p90", "p95", "p99", "p99.9", "max".  Every percentile is
    one of the input values (never interpolated).  Empty input gives None for
    every key, never NaN, so the result is JSON-safe.
    """
    arr = _sorted_finite(values)
    keys = ["mean", *(percentile_key(p) for p in PERCENTILES), "max"]
    if arr.size == 0:
        return {k: None for k in keys}
    out: dict[str, float | None] = {"mean": float(arr.mean())}
    for p in PERCENTILES:
        out[percentile_key(p)] = float(arr[nearest_rank(arr.size, p) - 1])
    out["max"] = float(arr[-1])
    return out


# --------------------------------------------------------------------------- CIs


def _binomial_cdf_and_sf(n: int, q: float) -> tuple[int, np.ndarray, np.ndarray]:
    """Binomial(n, q) CDF F(k) = P(B <= k) and survival S(k) = P(B > k) on a window.

    Returns ``(k0, cdf, sf)`` with ``cdf[i] = F(k0 + i)`` and ``sf[i] = S(k0 + i)``.
    Outside the window the probability mass is negligible (< 1e-30), so F = 0 left of
    it and F = 1 right of it.  The window keeps this O(sqrt(n)) for millions of
    requests; the tail sums are computed from the right so that small upper-tail
    probabilities do not suffer from cancellation in ``1 - F``.
    """
    mean = n * q
    sd = math.sqrt(n * q * (1.0 - q))
    half = int(15 * sd + 60)
    lo = max(0, math.floor(mean) - half)
    hi = min(n, math.ceil(mean) + half)
    k = np.arange(lo, hi + 1)
    lq, l1q = math.log(q), math.log1p(-q)
    lgn = math.lgamma(n + 1)
    logpmf = np.array(
        [lgn - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lq + (n - i) * l1q for i in k]
    )
    pmf = np.exp(logpmf)
    cdf = np.cumsum(pmf)
    # sf[i] = sum(pmf[i+1:]) accumulated from the right.
    sf = np.concatenate([np.cumsum(pmf[::-1])[::-1][1:], [0.0]])
    return lo, cdf, sf


def p99_confidence_bounds(n: int, q: float = 0.99, confidence: float = 0.95) -> tuple[int, int]:
    """Order-statistic ranks ``(l, u)`` (1-based) bracketing the ``q``-quantile.

    Distribution-free: with B ~ Binomial(n, q) the number of samples below the true
    quantile, ``P(x_(l) <= Q_q <= x_(u)) >= P(l <= B <= u - 1)``.  Each tail gets at
    most ``(1 - confidence) / 2``: ``l`` is the largest rank with ``P(B < l) <= a/2``
    and ``u`` the smallest with ``P(B >= u) <= a/2`` (equal-tailed, conservative).

    ``q`` is a fraction (0.99 for p99, 0.999 for p99.9).  When ``n`` is too small
    for a side to be bounded at that confidence the rank is 0 (no lower bound) or
    ``n + 1`` (no upper bound): e.g. 100 samples cannot bound p99 from above.
    Example: ``p99_confidence_bounds(10, 0.5) == (2, 9)`` (the textbook median CI).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n == 0:
        return 0, 1
    alpha_half = (1.0 - confidence) / 2.0
    # Tiny relative slack so that a tail that equals a/2 exactly (in exact
    # arithmetic) is not rejected because of floating-point noise in the sums.
    tol = alpha_half * (1.0 + 1e-9)
    k0, cdf, sf = _binomial_cdf_and_sf(n, q)
    ks = np.arange(k0, k0 + cdf.size)
    # Lower: largest l with F(l - 1) <= a/2, i.e. largest k = l - 1 with F(k) <= a/2.
    # F(k0 - 1) is negligible (0 when k0 == 0), so if no k in the window
    # qualifies, k = k0 - 1 does and l = k0 (0 meaning "no lower bound").
    ok_lo = ks[cdf <= tol]
    lower = min(int(ok_lo[-1]) + 1 if ok_lo.size else k0, n)
    # Upper: smallest u with S(u - 1) = P(B >= u) <= a/2, i.e. smallest k = u - 1.
    ok_hi = ks[sf <= tol]
    upper = int(ok_hi[0]) + 1 if ok_hi.size else n + 1
    return lower, min(upper, n + 1)


def quantile_ci(
    values: np.ndarray, q: float, confidence: float = 0.95
) -> tuple[float | None, float | None]:
    """Distribution-free confidence interval of the ``q``-quantile (``q`` a fraction).

    The bounds are the order statistics of the ranks given by
    :func:`p99_confidence_bounds`.  A side that cannot be bounded with this many
    samples (or empty input) is None rather than a made-up number.
    """
    arr = _sorted_finite(values)
    n = int(arr.size)
    if n == 0:
        return None, None
    lo, hi = p99_confidence_bounds(n, q, confidence)
    return (
        float(arr[lo - 1]) if 1 <= lo <= n else None,
        float(arr[hi - 1]) if 1 <= hi <= n else None,
    )


# ------------------------------------------------------------------- HdrHistogram


def hdr_encode(latencies_us: np.ndarray) -> str:
    """Encode latencies (integer microseconds) as a base64 compressed HdrHistogram.

    Range 1 us .. 3600 s with 3 significant digits.  Values outside the range are
    clamped to it (0 us -> 1 us, > 1 h -> 1 h) so that the total count stays equal
    to the number of requests; hdrhistogram would silently drop them otherwise.
    """
    hist = HdrHistogram(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_SIGNIFICANT_DIGITS)
    arr = np.asarray(latencies_us)
    if arr.size:
        if not np.all(np.isfinite(arr)):
            raise ValueError("latencies contain NaN or infinite entries")
        ints = np.clip(np.rint(arr).astype(np.int64), HDR_LOWEST_US, HDR_HIGHEST_US)
        # One record_value call per distinct value instead of per request: far
        # fewer Python-level calls for a million requests.
        uniq, counts = np.unique(ints, return_counts=True)
        for value, count in zip(uniq.tolist(), counts.tolist(), strict=True):
            hist.record_value(value, count)
    return hist.encode().decode("ascii")


def hdr_decode(s: str | bytes) -> HdrHistogram:
    """Decode a string produced by :func:`hdr_encode` back into an HdrHistogram."""
    return HdrHistogram.decode(s.encode("ascii") if isinstance(s, str) else s)
