"""The embedded single-machine default: a real PostgreSQL and a real Airflow, all state
under the InferBench home, started as background processes."""
