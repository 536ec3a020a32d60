"""The benchmark spec checked whole when a run is triggered, in Airflow's API server; and
the run named after its spec.

Airflow validates each DAG Param on its own (its JSON schema), so a conf whose fields are
each fine but do not fit together (a batch size above max_batch_size, a grid over its cap,
a plan over the run's time budget) would create a run that fails in its first stage. This
middleware sits in front of the trigger endpoint of the benchmark DAG, which the UI's
trigger form and the REST API both call, and answers such a conf with HTTP 400 and the
spec's own error (the field, the value, the fix) before any run exists. A spec asking for a
GPU where no GPU worker exists (inferbench/scheduling/workers.py) is refused the same way:
its run could only fail.

A trigger without a run id (the UI's form sends none) gets one that starts with the spec's
name, so the run, its directory and its report say which benchmark they are.

The plugin is registered through the `airflow.plugins` entry point (pyproject.toml), so
every Airflow that has InferBench installed loads it: the embedded default and the cluster.
It also registers the scheduler's run-end listener that hands a freed worker to the next
waiting run (operators/run_end.py).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from inferbench.errors import InferBenchError
from inferbench.pipeline import BENCHMARK_DAG_ID
from operators import run_end

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TRIGGER_PATH = re.compile(rf"(.*/)?api/v2/dags/{re.escape(BENCHMARK_DAG_ID)}/dagRuns/?")
MAX_BODY_BYTES = 1 << 20  # a spec is a few kB; Airflow answers anything odd itself
RUN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,80}")  # BenchmarkSpec.name's pattern


def named_run_id(body: bytes) -> bytes | None:
    """The trigger body with a run id that carries the spec's name (`<name>__<UTC time>`)
    when the caller gave none (the UI's trigger form gives none): its runs would otherwise
    be `manual__<time>`, and so would their run directories. None: leave the body as is
    (a run id given, or a body Airflow answers itself)."""
    from datetime import UTC, datetime

    from inferbench.spec import example_spec

    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict) or payload.get("dag_run_id"):
        return None
    conf = payload.get("conf")
    name = conf.get("name") if isinstance(conf, dict) else None
    if conf is None:
        name = example_spec().name  # no conf: the DAG's defaults, the demo spec
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name):
        return None  # a bad name: the spec check answers it
    payload["dag_run_id"] = f"{name}__{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}"
    return json.dumps(payload).encode()


def conf_problem(body: bytes) -> str | None:
    """Why the trigger request's conf is not a valid benchmark spec, or None when it is
    (or when the body is not a trigger Airflow would accept anyway: it answers that)."""
    from inferbench.spec import spec_from_conf

    try:
        payload = json.loads(body)
    except ValueError:
        return None
    conf = payload.get("conf") if isinstance(payload, dict) else None
    if not isinstance(conf, dict):
        return None  # no conf: the DAG's defaults, the demo spec
    try:
        spec = spec_from_conf(conf, source="the trigger's conf")
    except InferBenchError as exc:
        return str(exc)
    return worker_problem(spec.hardware)


def worker_problem(hardware: str) -> str | None:
    """Why no worker can take a run with spec `hardware` (a GPU asked where only CPU
    workers exist), or None. Reads the worker pools from Airflow's metadata database."""
    from airflow.utils.session import create_session

    from inferbench.platforms import DeviceKind
    from inferbench.scheduling.workers import eligible_workers, job_class, no_worker_reason
    from operators.scheduling import worker_pools

    if job_class(hardware) is DeviceKind.CPU:
        return None  # every worker has CPUs; no pool at all is the scheduler's to log
    with create_session() as session:
        pools = worker_pools(session)
    return None if eligible_workers(pools, hardware) else no_worker_reason(hardware, pools)


class SpecCheckMiddleware:
    """ASGI middleware: a POST to the benchmark DAG's trigger endpoint whose conf is not a
    valid spec gets 400 {"detail": reason}; every other request passes untouched."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope.get("method") != "POST"
                or not TRIGGER_PATH.fullmatch(scope.get("path", ""))):
            await self.app(scope, receive, send)
            return
        messages, body = [], b""
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if not message.get("more_body") or len(body) > MAX_BODY_BYTES:
                break
        # In a thread: the check may read Airflow's database, which would block the loop.
        problem = (await asyncio.to_thread(conf_problem, body)
                   if len(body) <= MAX_BODY_BYTES else None)
        if problem is not None:
            answer = json.dumps({"detail": f"invalid benchmark spec: {problem}"}).encode()
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(answer)).encode())]})
            await send({"type": "http.response.body", "body": answer})
            return

        renamed = named_run_id(body) if len(body) <= MAX_BODY_BYTES else None
        if renamed is not None:
            messages = [{"type": "http.request", "body": renamed, "more_body": False}]
            scope = {**scope, "headers": [
                *((k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"),
                (b"content-length", str(len(renamed)).encode())]}

        async def replay() -> Message:  # the app reads the body this middleware read
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


class InferBenchPlugin(AirflowPlugin):
    name = "inferbench"
    # The scheduler's DAG-run listener: a worker freed at run end goes to the next run.
    listeners = [run_end]
    fastapi_root_middlewares = [{"middleware": SpecCheckMiddleware, "args": [], "kwargs": {},
                                 "name": "InferBench spec check at trigger"}]
