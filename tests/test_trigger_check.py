"""The spec checked whole at trigger (operators/trigger_check.py), in front of a small ASGI
app standing in for Airflow's API server. The real API server is exercised by
tests/test_e2e_scheduler.py (a mismatched conf gets HTTP 400 and no run)."""

from __future__ import annotations

import asyncio
import json

from inferbench.pipeline import BENCHMARK_DAG_ID
from operators.trigger_check import SpecCheckMiddleware, conf_problem

TRIGGER = f"/api/v2/dags/{BENCHMARK_DAG_ID}/dagRuns"


def _call(path: str, body: bytes, method: str = "POST", chunk: int = 7) -> tuple[int, bytes, bytes]:
    """(status, response body, the body the app behind the middleware read)."""
    seen = bytearray()

    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen.extend(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"created"})

    pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]
    incoming = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
                for i, p in enumerate(pieces)]
    sent: list[dict] = []

    async def receive():
        return incoming.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    asyncio.run(SpecCheckMiddleware(app)(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), bytes(seen)


def _trigger(conf) -> bytes:
    return json.dumps({"dag_run_id": "r1", "logical_date": None, "conf": conf}).encode()


def test_a_conf_whose_fields_do_not_fit_together_is_refused_with_the_reason():
    body = _trigger({"platforms": ["triton"], "formats": ["torchscript"]})
    status, answer, seen = _call(TRIGGER, body)
    assert status == 400 and seen == b""  # Airflow never saw it: no run is created
    detail = json.loads(answer)["detail"]
    assert "platform 'triton' serves the 'onnx' format" in detail
    assert "fix: add 'onnx' to formats" in detail


def test_a_valid_conf_reaches_airflow_byte_for_byte():
    body = _trigger({"name": "ok", "batch_sizes": [1, 2]})
    assert _call(TRIGGER, body) == (200, b"created", body)


def test_a_trigger_without_a_run_id_gets_one_named_after_its_spec():
    """The UI's trigger form sends no run id: Airflow would name the run manual__<time>."""
    for conf, name in (({"name": "resnet-sweep"}, "resnet-sweep"), (None, "demo-cnn")):
        body = json.dumps({"logical_date": None, "conf": conf}).encode()
        status, _, seen = _call(TRIGGER, body)
        payload = json.loads(seen)
        assert status == 200 and payload["conf"] == conf
        assert payload["dag_run_id"].startswith(f"{name}__2"), payload


def test_what_the_check_leaves_to_airflow_passes_untouched():
    bad_spec = _trigger({"platforms": ["triton"], "formats": ["torchscript"]})
    for path, body, method in [
            (TRIGGER, b"{not json", "POST"),                      # Airflow answers 422
            (TRIGGER, _trigger(None), "POST"),                    # no conf: the defaults
            (TRIGGER, json.dumps({"conf": "x"}).encode(), "POST"),  # Airflow's type check
            (TRIGGER, bad_spec, "GET"),                           # listing runs
            ("/api/v2/dags/another_dag/dagRuns", bad_spec, "POST"),
    ]:
        assert _call(path, body, method) == (200, b"created", body), (path, method)


def test_conf_problem_names_an_unknown_field_with_the_allowed_ones():
    problem = conf_problem(_trigger({"max_batch": 8}))
    assert "unknown key 'max_batch'" in problem and "fix: remove or rename it" in problem
    assert conf_problem(_trigger({})) is None
