"""docker-compose.yaml's cluster driven from Python: a project with freshly generated
secrets in its own .env file, brought up, reached over its REST API, and taken down with its
volumes. The cluster tests and the cluster scheduling benchmark use it; a user runs the same
compose commands by hand (README, "The cluster")."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferbench.errors import InferBenchError
from inferbench.netutil import free_port
from inferbench.paths import project_root
from inferbench.pipeline import BENCHMARK_DAG_ID


def _checkout() -> Path:
    """docker-compose.yaml and scripts/ live in the source checkout."""
    root = project_root()
    if root is None:
        raise InferBenchError("the compose cluster runs from a source checkout (docker-compose."
                              "yaml, scripts/); fix: run from a clone of the project")
    return root


def cluster_env(home: Path, workers: int = 2, worker_class: str = "cpu",
                **settings: str) -> dict[str, str]:
    """The .env of a fresh cluster: new secrets, free host ports, `workers` workers of
    `worker_class` (its compose profile), INFERBENCH_HOME at `home`; `settings` add to or
    override it (e.g. INFERBENCH_SCHED_POLICY)."""
    return {"POSTGRES_PASSWORD": secrets.token_urlsafe(16),
            "RESULTS_DB_PASSWORD": secrets.token_urlsafe(16),
            "AIRFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(12),
            "REDIS_PASSWORD": secrets.token_urlsafe(16),
            "AIRFLOW_JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW_FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "INFERBENCH_HOME": str(home), "INFERBENCH_DB_PORT": str(free_port()),
            "INFERBENCH_API_PORT": str(free_port()), "COMPOSE_PROFILES": worker_class,
            "INFERBENCH_WORKER_CLASS": worker_class, "INFERBENCH_WORKERS": str(workers),
            **settings}


@dataclass
class ComposeCluster:
    """One compose project of docker-compose.yaml with its own .env file (in `home`, which
    is also its INFERBENCH_HOME, so nothing of it lands in the checkout)."""

    project: str
    home: Path
    env: dict[str, str]

    @classmethod
    def create(cls, project: str, home: Path, **env_kw: Any) -> ComposeCluster:
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o777)  # the Airflow containers' user writes run folders here
        env = cluster_env(home, **env_kw)
        (home / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        return cls(project, home, env)

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(["docker-compose", "--env-file", str(self.home / ".env"),
                               "-p", self.project, *args], cwd=_checkout(), capture_output=True,
                              text=True, timeout=timeout)

    def checked(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        done = self.compose(*args, timeout=timeout)
        if done.returncode != 0:
            raise InferBenchError(f"docker-compose {' '.join(args)} failed (exit "
                                  f"{done.returncode}): {(done.stdout + done.stderr)[-3000:]}")
        return done

    def up(self) -> None:
        self.checked("up", "-d")

    def down(self) -> subprocess.CompletedProcess:
        """Everything of the project, its volumes included (a failure is returned, not
        raised: this runs in clean-up paths)."""
        return self.compose("down", "-v", "--remove-orphans")

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['INFERBENCH_API_PORT']}"

    @property
    def results_url(self) -> str:
        """The results database through the results role, from this host."""
        return (f"postgresql+psycopg://inferbench:{self.env['RESULTS_DB_PASSWORD']}@127.0.0.1:"
                f"{self.env['INFERBENCH_DB_PORT']}/inferbench")

    def client(self):
        from inferbench.airflow_api import AirflowClient

        return AirflowClient(self.api_url, "admin", self.env["AIRFLOW_ADMIN_PASSWORD"])

    def wait_for_api(self, dag_id: str = BENCHMARK_DAG_ID, timeout_s: float = 300.0):
        """A client of the cluster's API once it serves `dag_id` (which it unpauses)."""
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            client = self.client()  # a fresh token each try: the API may not have been up
            try:
                client.unpause(dag_id)  # answers once the API is up and the DAG is parsed
                return client
            except Exception as exc:  # not up yet, or the DAG not parsed yet
                last = exc
                time.sleep(3)
        raise InferBenchError(f"the cluster's API did not serve {dag_id!r} in {timeout_s:.0f} "
                              f"s: {last}")


def build_images(env: Mapping[str, str] | None = None, timeout_s: float = 3000) -> None:
    """scripts/build-images.sh: every image of the cluster (cached layers make a rebuild
    quick)."""
    done = subprocess.run(["bash", str(_checkout() / "scripts" / "build-images.sh")],
                          capture_output=True, text=True, timeout=timeout_s,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise InferBenchError("scripts/build-images.sh failed: "
                              f"{(done.stdout + done.stderr)[-3000:]}")
