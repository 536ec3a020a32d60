"""Scheduling of benchmark jobs over worker pools: a job-length predictor, placement and
ordering policies (rr_fcfs, rr_sjf, qa_sjf) as pure functions, the decision store, and a
simulator of the same policies. Nothing here imports Airflow; operators/scheduling.py is
the Airflow glue that applies these decisions through a cluster policy."""
