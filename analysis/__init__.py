"""Pure analysis of InferBench measurements.

Everything here works on plain numpy arrays and dicts: no database, no Airflow.
``percentiles`` computes exact (nearest-rank) latency statistics and their
confidence intervals, ``summary`` turns the raw per-request timestamps of one
measurement point into a :class:`~analysis.summary.PointSummary`, ``verdict``
decides whether a point / a run is VALID, ``plots`` draws latency CDFs and
``report`` renders the single-file offline HTML report.
"""
