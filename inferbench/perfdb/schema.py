"""The results schema (SQLAlchemy Core). Alembic migrations in perfdb/migrations create it.

Every table is keyed by `run_id` so runs never mix; measurement tables add `platform` and
`point` (one batch size under one workload). Raw per-request records are kept so any
percentile can be recomputed exactly later.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

runs = Table(
    "runs", metadata,
    Column("run_id", String(250), primary_key=True),
    Column("name", String(80), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("spec_hash", String(16), nullable=False),
    # running -> complete | partial (some platform or point failed; what was measured is kept)
    # | aborted (the DAG run ended without the analysis: its stored data are kept)
    Column("status", String(16), nullable=False),
    Column("verdict", String(8)),  # VALID | INVALID, set by analyze
    Column("verdict_reasons", JSON),
    Column("report_path", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    # Added by migration i4_analysis: sweep grouping, hardware, data quality, analysis facts.
    Column("sweep_id", String(80), index=True),  # groups the runs of one sweep
    Column("hardware", String(200)),  # device the server ran on, e.g. "cpu:2vcpu" or a GPU name
    Column("quality_ok", Boolean),  # data-quality expectations passed (analysis/quality.py)
    Column("quality_reasons", JSON),  # failed expectations; the run is kept, marked
    Column("analysis", JSON),  # per-run analysis facts: machine ceilings, model FLOPs/bytes
)

def _run_fk() -> ForeignKey:
    return ForeignKey("runs.run_id", ondelete="CASCADE")

models = Table(
    "models", metadata,
    Column("run_id", String(250), _run_fk(), primary_key=True),
    Column("model_name", String(200), primary_key=True),
    Column("family", String(32), nullable=False),
    Column("hyperparams", JSON, nullable=False),
    Column("n_parameters", BigInteger, nullable=False),
    Column("artifact_path", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

conversions = Table(
    "conversions", metadata,
    Column("run_id", String(250), _run_fk(), primary_key=True),
    Column("format", String(32), primary_key=True),
    Column("artifact_path", Text, nullable=False),
    Column("tool", Text, nullable=False),  # which exporter produced it
    Column("max_abs_diff", Float, nullable=False),
    Column("atol", Float, nullable=False),
    Column("rtol", Float, nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("duration_s", Float, nullable=False),
)

deployments = Table(
    "deployments", metadata,
    Column("run_id", String(250), _run_fk(), primary_key=True),
    Column("platform", String(32), primary_key=True),
    Column("config_index", Integer, primary_key=True, server_default="0"),
    Column("endpoint", Text),
    Column("platform_version", Text),
    Column("cold_start_s", Float),
    Column("status", String(16), nullable=False),  # measured | partial | failed
    Column("error", Text),
)

points = Table(
    "points", metadata,
    Column("run_id", String(250), _run_fk(), primary_key=True),
    Column("platform", String(32), primary_key=True),
    Column("config_index", Integer, primary_key=True, server_default="0"),
    Column("point", Integer, primary_key=True),
    Column("batch_size", Integer, nullable=False),
    Column("arrival", String(16), nullable=False),
    Column("concurrency", Integer),
    Column("target_rate_rps", Float),
    Column("started_ns", BigInteger, nullable=False),
    Column("ended_ns", BigInteger, nullable=False),
    Column("stop_reason", String(32), nullable=False),
    Column("complete", Boolean, nullable=False),  # False: the point was cut short
    Column("client_cpu_s", Float),
    # Share of a 1 s busy loop, run just before the point, lost to host stalls > the late
    # threshold: the floor for late sends on this host, whatever the generator does.
    Column("host_stall_pct", Float),
    # The load generator's niceness during the point (load/priority.py; -10 where the host
    # allowed it to ask for priority over the server, else what it had).
    Column("issuer_nice", Integer),
    # Its SCHED_FIFO priority during the point where it could take one (it then runs the
    # moment it wakes, ahead of a server that keeps every core busy); NULL: normal policy.
    Column("issuer_realtime", Integer),
    # Requests sent again after the server closed their idle keep-alive connection (their
    # latency includes the lost attempt; migration i24_resent_requests). NULL: not counted.
    Column("resent_requests", Integer),
    # The server's own view of the point (backends/server_stats.py): requests it completed,
    # and their mean queue and compute time; NULL where the platform reports none.
    Column("server_requests", Integer),
    Column("server_queue_ms", Float),
    Column("server_compute_ms", Float),
    # Through an emulated link (spec.network, migration i21_network): the mean transmit time
    # each way, the link's delay plus the bytes at its bandwidth; NULL on the loopback.
    Column("transmit_up_ms", Float),
    Column("transmit_down_ms", Float),
    # ... and the mean time a request waited for the link, both ways: behind other
    # requests for its bandwidth, and a new connection's handshake.
    Column("link_wait_ms", Float),
    # With a pipeline (spec.pipeline, migration i22_pipeline): the mean pre- and
    # post-processing time per request, on the client (outside the measured latency) or in
    # the server (inside it, from the server's own counters); NULL where it did not run.
    Column("client_preprocess_ms", Float),
    Column("client_postprocess_ms", Float),
    Column("server_preprocess_ms", Float),
    Column("server_postprocess_ms", Float),
    # Where the server times each request's whole stay (Triton's success.ns; the FastAPI
    # server and MLServer from its head parsed to its answer written, less the body's
    # waits): the mean time outside its queue, model and processing (migration
    # i22_pipeline); NULL where it does not say.
    Column("server_handling_ms", Float),
    # The request's time on the wire and in the client, inside its latency (migration
    # i23_request_timing): the server's wait for a request's body after its head (where it
    # times it), the client's time from the scheduled send to the bytes written, and from
    # the answer's first byte to its last.
    Column("server_receive_ms", Float),
    Column("client_send_ms", Float),
    Column("client_receive_ms", Float),
    # The family's predicted latency at the point's offered rate (migration
    # i15_family_predictions; see `family_predictions`): NULL without a prediction, for a
    # rate that is not Poisson, or beyond the predicted capacity.
    Column("predicted_mean_ms", Float),
    Column("predicted_p99_ms", Float),
)

requests = Table(
    "requests", metadata,
    Column("run_id", String(250), _run_fk(), primary_key=True),
    Column("platform", String(32), primary_key=True),
    Column("config_index", Integer, primary_key=True, server_default="0"),
    Column("point", Integer, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("scheduled_ns", BigInteger, nullable=False),
    Column("sent_ns", BigInteger, nullable=False),
    Column("first_byte_ns", BigInteger),
    Column("done_ns", BigInteger),
    Column("status", Integer, nullable=False),  # HTTP status; 0 = no response (timeout, reset)
    Column("bytes_sent", Integer, nullable=False),
    Column("bytes_received", Integer, nullable=False),
    # Added by migration i19_sequence_lengths: a variable-length workload's request, its
    # longest sample's length and the sequence axis it was sent with (NULL otherwise).
    Column("seq_len", Integer),
    Column("padded_len", Integer),
    # Added by migration i22_pipeline: with pre- / post-processing on the client, the
    # client's time for this request's payload, measured on the load generator's host
    # (inferbench/processing/client.py); its latency does not include it. NULL otherwise.
    Column("client_preprocess_ms", Float),
    Column("client_postprocess_ms", Float),
)

resource_samples = Table(
    "resource_samples", metadata,
    Column("run_id", String(250), _run_fk(), primary_key=True),
    Column("platform", String(32), primary_key=True),
    Column("config_index", Integer, primary_key=True, server_default="0"),
    Column("source", String(16), primary_key=True),  # server | client | gpu0, gpu1, ...
    Column("t_ns", BigInteger, primary_key=True),
    Column("cpu_pct", Float),
    Column("rss_bytes", BigInteger),
    Column("gpu_util_pct", Float),
    Column("gpu_mem_bytes", BigInteger),
    Column("gpu_power_w", Float),
    Column("gpu_energy_mj", BigInteger),  # NVML's total-energy counter at t_ns, if the GPU has it
)

provenance = Table(
    "provenance", metadata,
    Column("run_id", String(250), _run_fk(), primary_key=True),
    Column("platform", String(32), primary_key=True),  # '' for run-wide facts
    Column("config_index", Integer, primary_key=True, server_default="0"),
    Column("facts", JSON, nullable=False),
)

# One row per measurement point, written by analyze from the raw requests above.
results = Table(
    "results", metadata,
    Column("run_id", String(250), _run_fk(), primary_key=True),
    Column("platform", String(32), primary_key=True),
    Column("config_index", Integer, primary_key=True, server_default="0"),
    Column("point", Integer, primary_key=True),
    Column("batch_size", Integer, nullable=False),
    Column("n_ok", Integer, nullable=False),
    Column("n_failed", Integer, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("throughput_rps", Float, nullable=False),
    Column("late_send_pct", Float, nullable=False),
    Column("latency_ms", JSON, nullable=False),  # mean, p50, p90, p95, p99, p99.9, max
    Column("hdr_histogram", Text),  # encoded HdrHistogram of latency in microseconds
    Column("meets_slo", Boolean),
    Column("verdict", String(8), nullable=False),
    Column("reasons", JSON, nullable=False),
    # Added by migration i4_analysis: cost / energy / CO2 per point (analysis/cost.py).
    Column("usd_per_hour", Float),
    Column("cost_per_million_usd", Float),
    Column("energy_j_per_request", Float),
    Column("energy_method", String(32)),  # nvml_power | rapl | estimate_cpu_tdp
    Column("co2_g_per_request", Float),
    # Added by migration i13_capacities: the rate an open-loop schedule really sent (its
    # requests over the start to the last scheduled send); the achieved rate is judged
    # against it, not against the nominal rate a Poisson count strays from.
    Column("sent_rps", Float),
)

# Scheduling decisions: one row per scheduled DAG run, made by the cluster policy when Airflow
# creates the run and recorded here by the run's own tasks (operators/scheduling.py). Not
# keyed to `runs`: the first task records it before any stage has written a `runs` row, and
# stand-in jobs never write one.
sched_jobs = Table(
    "sched_jobs", metadata,
    Column("dag_id", String(250), primary_key=True),
    Column("run_id", String(250), primary_key=True),
    Column("seq", BigInteger, nullable=False, unique=True),  # order first recorded
    Column("policy", String(16), nullable=False),
    Column("worker", String(64), nullable=False),  # the Airflow pool
    Column("predicted_s", Float, nullable=False),
    Column("order_key", Float, nullable=False),  # smaller runs first
    Column("priority_weight", BigInteger, nullable=False),  # of the job's first task
    Column("submitted_at", DateTime(timezone=True), nullable=False),  # decided (its order)
    Column("key_ref_at", DateTime(timezone=True), nullable=False),  # the key's reference time
    Column("loads", JSON, nullable=False),  # what placement saw: worker -> [jobs, work_s]
)

# One row per server configuration a platform ran under (migration i3b_server_config): the
# label names it in reports ("db=on,delay=500us,inst=2"), the knobs are its ServerConfig.
server_configs = Table(
    "server_configs", metadata,
    Column("run_id", String(250), _run_fk(), primary_key=True),
    Column("platform", String(32), primary_key=True),
    Column("config_index", Integer, primary_key=True),
    Column("label", String(200), nullable=False),
    Column("knobs", JSON, nullable=False),
)

# Capacity at SLO per family (migration i13_capacities), written by analyze from the results
# above with analysis/capacity.py: a family is a platform x server configuration x batch size
# of the run, its points the rungs of a load ladder.
capacities = Table(
    "capacities", metadata,
    Column("run_id", String(250), _run_fk(), primary_key=True),
    Column("platform", String(32), primary_key=True),
    Column("config_index", Integer, primary_key=True),
    Column("batch_size", Integer, primary_key=True),
    Column("slo_percentile", Float, nullable=False),  # the run's SLO the rungs were judged by
    Column("slo_ms", Float, nullable=False),
    Column("open_loop", Boolean, nullable=False),  # False: offered load is clients
    Column("n_rungs", Integer, nullable=False),
    # The rung the capacity is read from (NULL: no rung holds): its point, offered load
    # (req/s or clients) and latency at the SLO percentile.
    Column("capacity_point", Integer),
    Column("capacity_offered", Float),
    Column("capacity_rps", Float),  # open loop: the offered rate; closed: the achieved one
    Column("capacity_items_per_s", Float),  # x batch size
    Column("latency_at_slo_ms", Float),
    Column("search_cap_reached", Boolean, nullable=False),  # top rung holds: a lower bound
    # The lowest failing load above the capacity: offered, point, verdict, reason,
    # latency_ms, achieved_rps. NULL when there is none.
    Column("capacity_bracket", JSON),
    Column("usd_per_hour", Float),
    Column("cost_per_million_usd", Float),  # per million requests at capacity
    Column("cost_per_million_items_usd", Float),  # per million inferences at capacity
    Column("energy_j_per_request", Float),  # measured at the capacity rung
    Column("energy_method", String(32)),
    Column("answer", Text, nullable=False),  # the family's answer in words
)

# The load stage's prediction per family (migration i15_family_predictions), written by
# collect from load.json: a light profile of the server before the family's ladder
# (1..c + 1 requests in flight) and the queueing model fitted to it (analysis/prediction.py).
# The report recomputes the curve from `levels`.
family_predictions = Table(
    "family_predictions", metadata,
    Column("run_id", String(250), _run_fk(), primary_key=True),
    Column("platform", String(32), primary_key=True),
    Column("config_index", Integer, primary_key=True),
    Column("batch_size", Integer, primary_key=True),
    Column("parallelism", Integer, nullable=False),  # c: the configuration's instances
    Column("dynamic_batching", Boolean, nullable=False),
    Column("profile_s", Float),  # wall time the profile took
    Column("levels", JSON, nullable=False),  # Level.to_dict() per level, its latency law too
    Column("model", JSON),  # ServiceModel.to_dict(); NULL when profiling failed
    Column("model_name", Text),  # the queue in words; NULL when unmodelled or no model
    Column("unmodelled", Text),  # why the model gives no curve (dynamic batching, ...)
    Column("capacity_rps", Float),  # the model's capacity (c / D_c), not the SLO's
    Column("slo_capacity_rps", Float),  # the highest Poisson rate predicted within the SLO
    Column("guided_start", Float),  # where the search started because of it (NULL: unguided)
    Column("error", Text),  # why there is no prediction (profiling failed, ...)
)

# Added by migration i18_model_registry: model files users add by name
# (`inferbench models add NAME FILE`) and name in a spec's model.registered.
registered_models = Table(
    "registered_models", metadata,
    Column("name", String(64), primary_key=True),
    Column("format", String(16), nullable=False),   # onnx | torchscript | savedmodel
    Column("stored_path", Text, nullable=False),    # the registry's own copy
    Column("source_path", Text, nullable=False),    # where it was added from
    Column("sha256", String(64), nullable=False),   # of the copy (checked before each use)
    Column("size_bytes", BigInteger, nullable=False),
    Column("signature", JSON, nullable=False),      # what the file says about its inputs
    Column("description", Text, nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False),
)
