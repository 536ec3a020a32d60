"""Pure analysis of InferBench measurements.

Everything here works on plain numpy arrays and dicts: no database, no Airflow.
``percentiles`` computes exact (nearest-rank) latency statistics and their
confidence intervals, ``summary`` turns the raw per-request timestamps of one
measurement point into a :class:`~analysis.summary.PointSummary`, ``verdict``
decides whether a point / a run is VALID, ``plots`` draws latency CDFs and
``report`` renders the single-file offline HTML report.

Across runs (over "point records", see ``points``): ``capacity`` (the rung judgement the
load stage's search shares, each family's capacity at SLO and its bracket, the one ranking
rule and the one-line answer), ``latency`` (CDF, KDE), ``recommend`` (top families by that
rule, within a budget, with their evidence),
``cost`` (price, energy, CO2), ``roofline`` (ONNX FLOP/byte counts, ceilings),
``heatmap`` (a metric over two hyper-parameters), ``quality`` / ``quality_ge`` (data-quality
expectations) and ``leaderboard`` (sorting and formatting the SQL view's rows).
"""
