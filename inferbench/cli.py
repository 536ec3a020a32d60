"""The `inferbench` command line. InferBenchError is caught here, once: message, exit 1."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from inferbench.errors import InferBenchError

DAG_ID = "inferbench_benchmark"
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


def _cmd_stage(args: argparse.Namespace) -> int:
    from inferbench.stages import PLATFORM_STAGES, STAGES
    from inferbench.stages.common import make_context

    if args.name not in STAGES:
        raise InferBenchError(f"unknown stage {args.name!r}; stages: {', '.join(STAGES)}")
    if (args.name in PLATFORM_STAGES) != (args.platform is not None):
        raise InferBenchError(f"stage {args.name!r} "
                              + ("needs --platform" if args.name in PLATFORM_STAGES
                                 else "takes no --platform"))
    ctx = make_context(args.run)
    func = STAGES[args.name]
    result = func(ctx, args.platform) if args.platform else func(ctx)
    # The operator reads this line and pushes it to XCom.
    print("RESULT " + json.dumps(result, default=str), flush=True)
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


def _start_embedded(port: int) -> str:
    from inferbench import paths
    from inferbench.embedded.airflow import start_airflow
    from inferbench.embedded.postgres import ensure_postgres

    home = paths.home()
    ensure_postgres(home)
    env = _embedded_env()
    os.environ.update(env)
    from inferbench import perfdb

    perfdb.migrate(env["INFERBENCH_DB_URL"])
    return start_airflow(home, _dags_folder(), port=port, extra_env=env, wait_for_dag=DAG_ID)


def _cmd_up(args: argparse.Namespace) -> int:
    url = _start_embedded(args.port)
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


def _new_run_id(name: str) -> str:
    return f"ib_{name}_{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}_{uuid.uuid4().hex[:6]}"


def _cmd_run(args: argparse.Namespace) -> int:
    from inferbench.airflow_api import AirflowClient
    from inferbench.spec import load_spec

    spec = load_spec(args.spec)
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else \
        (lambda *a: print(*a, flush=True))
    from inferbench import paths

    say(f"starting the embedded Airflow + PostgreSQL (home {paths.home()}) ...")
    url = _start_embedded(args.port)
    client = AirflowClient(url)
    client.unpause(DAG_ID)
    run_id = _new_run_id(spec.name)
    client.trigger(DAG_ID, run_id, spec.model_dump(mode="json"))
    say(f"triggered {DAG_ID} run {run_id}; watch it at {url}/dags/{DAG_ID}/runs/{run_id}")
    seen: dict[str, str] = {}

    def progress(task_instances: list[dict[str, Any]]) -> None:
        for ti in task_instances:
            if ti.get("state") and seen.get(ti["task_id"]) != ti["state"]:
                seen[ti["task_id"]] = ti["state"]
                if ti["state"] not in ("scheduled", "queued"):
                    say(f"  {ti['task_id']:<22} {ti['state']}")

    state = client.wait_for_run(DAG_ID, run_id, timeout_s=args.timeout, on_progress=progress)
    summary = run_summary(run_id)
    summary["airflow_state"] = state
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(format_summary(summary))
    return 0 if summary.get("verdict") == "VALID" else 1


def run_summary(run_id: str) -> dict[str, Any]:
    from inferbench import perfdb
    from inferbench.perfdb import queries
    from inferbench.stages.common import db_url_from_env

    with perfdb.engine(db_url_from_env()).connect() as conn:
        run = queries.run_row(conn, run_id)
        if run is None:
            raise InferBenchError(f"run {run_id!r} is not in the results database (did the "
                                  "generate task fail? see the Airflow task logs)")
        tables = queries.run_tables(conn, run_id)
    results = [{"platform": r["platform"], "batch_size": r["batch_size"],
                "throughput_rps": r["throughput_rps"], "latency_ms": r["latency_ms"],
                "late_send_pct": r["late_send_pct"], "n_ok": r["n_ok"],
                "n_failed": r["n_failed"], "meets_slo": r["meets_slo"],
                "verdict": r["verdict"], "reasons": r["reasons"]} for r in tables["results"]]
    best = pick_best(results)
    return {
        "run_id": run_id, "name": run["name"], "status": run["status"],
        "verdict": run["verdict"], "reasons": run["verdict_reasons"],
        "report": run["report_path"],
        "throughput_rps": best["throughput_rps"] if best else None,
        "latency_ms": best["latency_ms"] if best else None,
        "best": {"platform": best["platform"], "batch_size": best["batch_size"]} if best else None,
        "deployments": [{k: d[k] for k in ("platform", "platform_version", "cold_start_s",
                                           "status", "error")} for d in tables["deployments"]],
        "results": results,
    }


def pick_best(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The configuration to recommend: VALID and within the SLO, highest throughput."""
    candidates = [r for r in results if r["verdict"] == "VALID" and r["meets_slo"]]
    return max(candidates, key=lambda r: r["throughput_rps"], default=None)


def format_summary(s: dict[str, Any]) -> str:
    lines = [f"run {s['run_id']}: {s['verdict']} ({s['status']})"]
    lines += [f"  - {reason}" for reason in s.get("reasons") or []]
    header = f"  {'platform':<12} {'batch':>5} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} " \
             f"{'late %':>6} {'SLO':>4} verdict"
    lines += ["", header]
    for r in s["results"]:
        lat = r["latency_ms"] or {}
        lines.append(
            f"  {r['platform']:<12} {r['batch_size']:>5} {r['throughput_rps']:>8.1f} "
            f"{_ms(lat.get('p50')):>8} {_ms(lat.get('p99')):>8} {r['late_send_pct']:>6.2f} "
            f"{'yes' if r['meets_slo'] else 'no':>4} {r['verdict']}")
    for d in s["deployments"]:
        cold = f"{d['cold_start_s']:.2f} s" if d["cold_start_s"] is not None else "-"
        lines.append(f"  {d['platform']}: {d['status']}, cold start {cold}, {d['platform_version']}"
                     + (f" - {d['error']}" if d["error"] else ""))
    if s.get("best"):
        lines.append(f"best within the SLO: {s['best']['platform']} at batch "
                     f"{s['best']['batch_size']}")
    lines.append(f"report: {s['report']}")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _cmd_summary(args: argparse.Namespace) -> int:
    if "INFERBENCH_DB_URL" not in os.environ:
        os.environ.update(_embedded_env())
    summary = run_summary(args.run_id)
    print(json.dumps(summary, default=str) if args.json else format_summary(summary))
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
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("summary", help="print a finished run's summary from PostgreSQL")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_summary)
    p = sub.add_parser("up", help="start the embedded PostgreSQL and Airflow")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.set_defaults(func=_cmd_up)
    p = sub.add_parser("down", help="stop the embedded PostgreSQL and Airflow")
    p.set_defaults(func=_cmd_down)
    p = sub.add_parser("stage", help="run one stage of a run (what the Airflow tasks call)")
    p.add_argument("name")
    p.add_argument("--run", required=True, help="run id")
    p.add_argument("--platform")
    p.set_defaults(func=_cmd_stage)
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
