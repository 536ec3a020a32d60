"""The Airflow image's local settings: the InferBench job scheduling cluster policy, which
puts every task of a benchmark run into its worker's pool and queue with the run's priority
(operators/scheduling.py). The embedded default writes the same import (inferbench up)."""

from operators.scheduling import task_instance_mutation_hook  # noqa: F401
