"""A small client of Airflow 3's public REST API (/api/v2): trigger a DAG run with the
benchmark spec as conf and follow it. Standard library only."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from inferbench.errors import InferBenchError

FINAL_STATES = ("success", "failed")


class AirflowClient:
    def __init__(self, base_url: str, username: str | None = None,
                 password: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.username, self.password = username, password
        self._token: str | None = None

    def _get_token(self) -> str:
        if self.username:  # a real deployment: user and password
            body = json.dumps({"username": self.username, "password": self.password}).encode()
            req = urllib.request.Request(f"{self.base_url}/auth/token", data=body,
                                         headers={"Content-Type": "application/json"})
        else:  # the embedded default: simple auth manager, every user an admin
            req = urllib.request.Request(f"{self.base_url}/auth/token")
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return json.loads(response.read())["access_token"]
        except urllib.error.HTTPError as exc:
            raise InferBenchError(f"Airflow refused a token at {self.base_url}/auth/token "
                                  f"(HTTP {exc.code}); check the username/password") from None

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        if self._token is None:
            self._token = self._get_token()
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.base_url}/api/v2{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {self._token}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                raw = response.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise InferBenchError(f"Airflow API {method} {path} answered HTTP {exc.code}: "
                                  f"{detail}") from None
        except urllib.error.URLError as exc:
            raise InferBenchError(f"Airflow API at {self.base_url} unreachable: "
                                  f"{exc.reason}") from None

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, run_id: str | None, conf: dict[str, Any]) -> dict[str, Any]:
        """The created run (its `dag_run_id`); with run_id None the server names it."""
        return self._call("POST", f"/dags/{dag_id}/dagRuns",
                          {"dag_run_id": run_id, "logical_date": None, "conf": conf})

    def get_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}")

    def set_run_state(self, dag_id: str, run_id: str, state: str) -> dict[str, Any]:
        """Mark a run "success" or "failed" by hand (its running tasks are stopped), as the
        UI's "Mark as" does."""
        return self._call("PATCH", f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}",
                          {"state": state})

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        out = self._call("GET", f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}"
                                "/taskInstances?limit=1000")
        return out["task_instances"]

    def pools(self) -> dict[str, dict[str, Any]]:
        out = self._call("GET", "/pools?limit=1000")
        return {p["name"]: p for p in out["pools"]}

    def set_pool(self, name: str, slots: int, description: str, create: bool) -> None:
        body = {"name": name, "slots": slots, "description": description,
                "include_deferred": False}
        if create:
            self._call("POST", "/pools", body)
        else:
            self._call("PATCH", f"/pools/{urllib.parse.quote(name)}", body)

    def delete_pool(self, name: str) -> None:
        self._call("DELETE", f"/pools/{urllib.parse.quote(name)}")

    def wait_for_run(self, dag_id: str, run_id: str, timeout_s: float, poll_s: float = 2.0,
                     on_progress: Callable[[list[dict]], None] | None = None) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.get_run(dag_id, run_id)["state"]
            if on_progress is not None:
                on_progress(self.task_instances(dag_id, run_id))
            if state in FINAL_STATES:
                return state
            time.sleep(poll_s)
        raise InferBenchError(f"DAG run {run_id} of {dag_id} did not finish within "
                              f"{timeout_s:.0f} s; it goes on in Airflow ({self.base_url})")

    def wait_for_dag(self, dag_id: str, timeout_s: float, hint: str = "") -> None:
        """Wait until the dag-processor has parsed the DAG (first start: ~10-30 s)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self._call("GET", f"/dags/{dag_id}")
                return
            except InferBenchError as exc:
                if "HTTP 404" not in str(exc) and "unreachable" not in str(exc):
                    raise
            time.sleep(1)
        errors = self._call("GET", "/importErrors")
        raise InferBenchError(f"DAG {dag_id!r} did not appear within {timeout_s:.0f} s; import "
                              f"errors: {json.dumps(errors)[:2000]}; {hint}")
