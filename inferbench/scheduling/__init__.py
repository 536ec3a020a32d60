"""Scheduling of benchmark jobs over worker pools: a job-length predictor, placement and
ordering policies (policies.py) and the per-job decision as pure functions, the
decisions' record in the results database, and a simulator of the same policies. Nothing
here imports Airflow; operators/scheduling.py is the Airflow glue that makes and applies the
decisions through a cluster policy and records them from the runs' tasks."""
