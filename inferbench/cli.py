"""The `inferbench` command line. InferBenchError is caught here, once: message, exit 1."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from inferbench.errors import InferBenchError
from inferbench.pipeline import BENCHMARK_DAG_ID as DAG_ID

DEFAULT_PORT = 8080


def _cmd_validate(args: argparse.Namespace) -> int:
    from inferbench.spec import load_spec

    spec = load_spec(args.spec)
    print(f"{args.spec}: valid (spec hash {spec.spec_hash()}, model {spec.model.name}, "
          f"platforms {', '.join(p.value for p in spec.platforms)})")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from inferbench.spec import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


class StageTerminated(SystemExit):
    """SIGTERM (the task's on_kill, `docker stop`) as an exception, so the stage's finally
    blocks run (measure stops its server, load records what it measured) before the process
    exits 128 + 15. A SystemExit: asyncio lets only it and KeyboardInterrupt out of its
    callbacks, and a plain Exception could be swallowed by a handler on the way."""

    def __str__(self) -> str:
        return "the stage was terminated (SIGTERM)"


def _terminate(signum: int, frame: object) -> None:
    # A second SIGTERM must not interrupt the cleanup the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise StageTerminated(128 + signum)


def _cmd_stage(args: argparse.Namespace) -> int:
    from inferbench.pipeline import result_line, validate_stage_args
    from inferbench.stages import run_stage
    from inferbench.stages.common import make_context

    signal.signal(signal.SIGTERM, _terminate)
    # Checked before the context is built: a wrong name or option fails without touching
    # the run directory or the database.
    stage = validate_stage_args(args.name, args.platform, args.config)
    result = run_stage(stage, make_context(args.run), args.platform, args.config)
    # The operator reads this line and pushes it to XCom.
    print(result_line(result), flush=True)
    return 0


def _embedded_env() -> dict[str, str]:
    from inferbench import paths
    from inferbench.embedded.postgres import database_url

    home = paths.home()
    return {"INFERBENCH_HOME": str(home), "INFERBENCH_DB_URL": database_url(home, "inferbench")}


def _dags_folder() -> Path:
    from inferbench import paths

    root = paths.project_root()
    if root is None:
        raise InferBenchError("the embedded default runs from a source checkout (dags/ is not "
                              "installed); clone the repository and run scripts/setup.sh")
    return root / "dags"


def _use_runtime(home: Path, port: int, runtime: str) -> dict[str, str]:
    """The stage runtime is the Airflow workers' environment, fixed when the stack starts;
    refuse to silently keep another one running."""
    from inferbench.containers import RUNTIME_ENV
    from inferbench.netutil import poll_http_ok

    marker = home / "runtime"
    running = marker.read_text().strip() if marker.exists() else "local"
    if running != runtime and poll_http_ok(f"http://127.0.0.1:{port}/api/v2/monitor/health",
                                           0.5):
        raise InferBenchError(f"the embedded stack is running with runtime {running!r}, not "
                              f"{runtime!r}; fix: `inferbench down`, then start it again")
    home.mkdir(parents=True, exist_ok=True)
    marker.write_text(runtime)
    os.environ[RUNTIME_ENV] = runtime
    return {RUNTIME_ENV: runtime}


def _start_embedded(port: int, runtime: str = "local") -> str:
    from inferbench import paths
    from inferbench.embedded.airflow import start_airflow
    from inferbench.embedded.postgres import ensure_postgres

    home = paths.home()
    ensure_postgres(home)
    env = {**_embedded_env(), **_use_runtime(home, port, runtime)}
    os.environ.update(env)
    from inferbench import perfdb

    perfdb.migrate(env["INFERBENCH_DB_URL"])
    return start_airflow(home, _dags_folder(), port=port, extra_env=env, wait_for_dag=DAG_ID)


def _cmd_up(args: argparse.Namespace) -> int:
    url = _start_embedded(args.port, args.runtime)
    print(f"Airflow UI and REST API: {url}  (DAG {DAG_ID}); results DB: "
          f"{os.environ['INFERBENCH_DB_URL']}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    from inferbench import paths
    from inferbench.embedded.airflow import stop_airflow
    from inferbench.embedded.postgres import stop_postgres

    stop_airflow(paths.home())
    stop_postgres(paths.home())
    print("embedded Airflow and PostgreSQL stopped")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from inferbench.airflow_api import AirflowClient
    from inferbench.reporting import format_summary
    from inferbench.spec import load_spec

    spec = load_spec(args.spec)
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else \
        (lambda *a: print(*a, flush=True))
    from inferbench import paths

    say(f"starting the embedded Airflow + PostgreSQL (home {paths.home()}) ...")
    url = _start_embedded(args.port, args.runtime)
    client = AirflowClient(url)
    client.unpause(DAG_ID)
    # No run id of ours: the API server names the run after the spec, as for the UI's
    # trigger form (operators/trigger_check.py).
    run_id = client.trigger(DAG_ID, None, spec.model_dump(mode="json"))["dag_run_id"]
    say(f"triggered {DAG_ID} run {run_id}; watch it at {url}/dags/{DAG_ID}/runs/{run_id}")
    seen: dict[str, str] = {}

    def progress(task_instances: list[dict[str, Any]]) -> None:
        for ti in task_instances:
            # Mapped tasks (one per server configuration) have one instance per map index.
            index = ti.get("map_index", -1)
            name = ti["task_id"] + (f"[{index}]" if index is not None and index >= 0 else "")
            if ti.get("state") and seen.get(name) != ti["state"]:
                seen[name] = ti["state"]
                if ti["state"] not in ("scheduled", "queued"):
                    say(f"  {name:<22} {ti['state']}")

    state = client.wait_for_run(DAG_ID, run_id, timeout_s=args.timeout, on_progress=progress)
    summary = run_summary(run_id)
    summary["airflow_state"] = state
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(format_summary(summary))
    return 0 if summary.get("verdict") == "VALID" else 1


def run_summary(run_id: str) -> dict[str, Any]:
    """The run's summary (inferbench.reporting.run_summary) from the configured database."""
    from inferbench import perfdb
    from inferbench.reporting import run_summary as summary_of
    from inferbench.stages.common import db_url_from_env

    with perfdb.engine(db_url_from_env()).connect() as conn:
        return summary_of(conn, run_id)


def _cmd_summary(args: argparse.Namespace) -> int:
    from inferbench.reporting import format_summary

    if "INFERBENCH_DB_URL" not in os.environ:
        os.environ.update(_embedded_env())
    summary = run_summary(args.run_id)
    print(json.dumps(summary, default=str) if args.json else format_summary(summary))
    return 0


def _add_runtime_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runtime", choices=("local", "docker"), default="local",
                   help="where stages run: local processes, or containers of the stage image "
                   "(build it with scripts/build-images.sh); fixed while the stack runs")
# --- analysis commands: report, leaderboard, recommend; all from PostgreSQL ---

def _results_db():
    from inferbench import perfdb
    from inferbench.stages.common import db_url_from_env

    if not os.environ.get("INFERBENCH_DB_URL"):
        from inferbench import paths
        from inferbench.embedded.postgres import ensure_postgres

        ensure_postgres(paths.home())  # the embedded default: start it if it is down (< 1 s)
        os.environ.update(_embedded_env())
    return perfdb.engine(db_url_from_env())


def _cmd_report(args: argparse.Namespace) -> int:
    from inferbench import paths
    from inferbench.reporting import build_run_report, build_sweep_report

    if (args.run_id is None) == (args.sweep is None):
        raise InferBenchError("give either RUN_ID or --sweep SWEEP_ID (one of them)")
    with _results_db().connect() as conn:
        if args.sweep:
            out = Path(args.out or paths.home() / "sweeps" / args.sweep / "report")
            path = build_sweep_report(conn, args.sweep, out)
        else:
            out = Path(args.out) if args.out else paths.RunDir(args.run_id).report_dir
            path = build_run_report(conn, args.run_id, out)
    print(f"report: {path}")
    return 0


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from analysis.leaderboard import (
        DEFAULT_COLUMNS,
        FAMILY_COLUMNS,
        format_html,
        format_table,
        rank_families,
        sort_rows,
    )
    from inferbench.perfdb import queries

    with _results_db().connect() as conn:
        columns, rows = (queries.leaderboard_rows(conn) if args.points
                         else queries.capacity_leaderboard_rows(conn))
    if args.sort is not None:
        rows = sort_rows(rows, args.sort, columns)
    elif args.points:
        rows = sort_rows(rows, "items_per_s", columns)
    else:  # the recommender's rule
        rows = rank_families(rows)
    rows = rows[: args.limit]
    shown = [c for c in (DEFAULT_COLUMNS if args.points else FAMILY_COLUMNS) if c in columns]
    if args.sort is not None and args.sort not in shown:
        shown.insert(0, args.sort)
    if args.html:
        title = "Leaderboard (points)" if args.points else "Leaderboard (capacity at SLO)"
        Path(args.html).write_text(format_html(rows, shown, title=title), encoding="utf-8")
        print(f"leaderboard: {args.html} ({len(rows)} rows)")
    else:
        print(format_table(rows, shown))
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from analysis.capacity import answer, capacities
    from analysis.recommend import recommend
    from inferbench.perfdb import queries

    with _results_db().connect() as conn:
        records = queries.point_records(conn, sweep_id=args.sweep)
    recs = recommend(records, slo_percentile=args.slo_percentile, slo_ms=args.slo_ms,
                     budget_usd_per_hour=args.budget_usd_per_hour, top=args.top)
    if args.json:
        print(json.dumps([asdict(r) for r in recs], default=str))
        return 0 if recs else 1
    print(answer(capacities(records, slo_percentile=args.slo_percentile, slo_ms=args.slo_ms),
                 slo_percentile=args.slo_percentile, slo_ms=args.slo_ms,
                 budget_usd_per_hour=args.budget_usd_per_hour))
    if not recs:
        return 1
    for r in recs:
        print(f"{r.rank}. {r.label} on {r.hardware} (ranked by {r.ranked_by})")
        for line in r.evidence:
            print(f"     - {line}")
    return 0
def _cmd_models(args: argparse.Namespace) -> int:
    from inferbench import perfdb
    from inferbench.models import registry

    if args.action != "list" and not args.name:
        raise InferBenchError(f"models {args.action} needs the model's NAME; fix: inferbench "
                              f"models {args.action} NAME" + (" FILE" if args.action == "add"
                                                               else ""))
    engine = _results_db()
    perfdb.migrate(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        if args.action == "add":
            if not args.file:
                raise InferBenchError("models add needs NAME and FILE; fix: inferbench models "
                                      "add NAME path/to/model.onnx")
            models = [registry.add(conn, args.name, Path(args.file), args.description)]
        elif args.action == "list":
            models = registry.list_models(conn)
        elif args.action == "show":
            models = [registry.get(conn, args.name)]
        else:
            models = [registry.remove(conn, args.name)]
    if args.json:
        print(json.dumps([m.to_json() for m in models]))
    elif args.action == "list":
        for m in models:
            print(f"{m.name:24} {m.format:12} {m.size_bytes / 1e6:9.1f} MB  {m.sha256[:12]}  "
                  f"{m.description}")
        if not models:
            print("no registered models (add one: inferbench models add NAME FILE)")
    else:
        (m,) = models
        done = {"add": "added", "remove": "removed", "show": "registered"}[args.action]
        print(f"{done}: {m.name} ({m.format}, {m.size_bytes} bytes, sha256 {m.sha256})")
        if args.action != "remove":
            for i in m.signature.inputs:
                dims = "unknown" if i.dims is None else list(i.dims)
                print(f"  input {i.name}: {i.dtype or 'type unknown'} per sample {dims}")
            print(f"  stored at {m.stored_path}; in a spec: \"model\": {{\"registered\": "
                  f"\"{m.name}\"}}")
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    from inferbench.load.standalone import format_load_summary, run_load

    summary = run_load(args)
    print(json.dumps(summary, default=str) if args.json else format_load_summary(summary))
    return 0 if summary["verdict"] == "VALID" else 1


def _cmd_predict(args: argparse.Namespace) -> int:
    from inferbench.load.predict_cli import format_prediction, run_predict

    out = run_predict(args)
    print(json.dumps(out) if args.json else format_prediction(out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inferbench", description="Benchmarks of DL "
                                     "inference serving, orchestrated by Airflow.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="check a spec file; exit 1 naming each bad field")
    p.add_argument("spec")
    p.set_defaults(func=_cmd_validate)
    p = sub.add_parser("schema", help="print the spec's JSON schema")
    p.set_defaults(func=_cmd_schema)
    p = sub.add_parser("run", help="run a benchmark through the embedded Airflow and print "
                       "its summary")
    p.add_argument("spec")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="Airflow api-server port")
    p.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the run")
    _add_runtime_option(p)
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("summary", help="print a finished run's summary from PostgreSQL")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_summary)
    p = sub.add_parser("up", help="start the embedded PostgreSQL and Airflow")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    _add_runtime_option(p)
    p.set_defaults(func=_cmd_up)
    p = sub.add_parser("down", help="stop the embedded PostgreSQL and Airflow")
    p.set_defaults(func=_cmd_down)
    p = sub.add_parser("load", help="benchmark an already-running endpoint (no Airflow) and "
                       "print its summary")
    from inferbench.load.load_args import add_arguments as _load_arguments

    _load_arguments(p)
    p.set_defaults(func=_cmd_load)
    p = sub.add_parser("predict", help="profile an already-running endpoint lightly and "
                       "predict its latency under Poisson load (queueing model)")
    from inferbench.load.load_args import add_predict_arguments

    add_predict_arguments(p)
    p.set_defaults(func=_cmd_predict)
    from inferbench.pipeline import CONFIG_STAGES, PLATFORM_STAGES, Stage, stage_help

    # No argparse `choices` for the name: a wrong one goes through the same check as the
    # operator's, with the project's message and exit code.
    p = sub.add_parser("models", help="the model registry: add your model file by name, "
                       "then name it in a spec (\"model\": {\"registered\": NAME})")
    p.add_argument("action", choices=("add", "list", "show", "remove"))
    p.add_argument("name", nargs="?", help="the model's name (add, show, remove)")
    p.add_argument("file", nargs="?", help="add: an ONNX (.onnx), TorchScript (.pt) file or "
                   "a SavedModel directory")
    p.add_argument("--description", default="", help="add: a line saying what it is")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_models)
    p = sub.add_parser("stage", help="run one stage of a run (what the Airflow tasks call)",
                       epilog=stage_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="STAGE", help=f"one of: {', '.join(Stage)}")
    p.add_argument("--run", required=True, help="run id")
    p.add_argument("--platform", help=f"serving platform, for {', '.join(PLATFORM_STAGES)}")
    p.add_argument("--config", type=int, help="server configuration index (see the spec's "
                   f"server section), for {', '.join(CONFIG_STAGES)}")
    p.set_defaults(func=_cmd_stage)
    p = sub.add_parser("report", help="regenerate the HTML report of a run (or a sweep) from "
                       "PostgreSQL alone")
    p.add_argument("run_id", nargs="?")
    p.add_argument("--sweep", help="report every run sharing this sweep_id")
    p.add_argument("--out", help="output folder (default: the run's / sweep's report folder)")
    p.set_defaults(func=_cmd_report)
    p = sub.add_parser("leaderboard", help="every family's capacity at its run's SLO, best "
                       "first (or every point with --points), or sorted by any column")
    p.add_argument("--points", action="store_true", help="list the points (view "
                   "`leaderboard`) instead of the families (view `capacity_leaderboard`)")
    p.add_argument("--sort", help="a column of the view (lower-is-better ones such as p99_ms "
                   "sort ascending); default: the recommender's rule (families), items_per_s "
                   "(points)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--html", metavar="FILE", help="write an HTML table instead of printing")
    p.set_defaults(func=_cmd_leaderboard)
    p = sub.add_parser("recommend", help="top configurations within an SLO (and a budget), "
                       "with the evidence")
    p.add_argument("--slo-percentile", type=float, default=99.0)
    p.add_argument("--slo-ms", type=float, required=True)
    p.add_argument("--budget-usd-per-hour", type=float)
    p.add_argument("--sweep", help="only the runs of this sweep")
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_recommend)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InferBenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
