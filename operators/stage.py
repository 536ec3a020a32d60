"""The stage operator: runs `inferbench stage <name> --run <id>` as one Airflow task.

The stage code itself knows nothing of Airflow; this operator only decides where the
command runs (the runtime), passes the spec, streams the stage's output into the task log
and pushes the stage's result (its last `RESULT {json}` line) to XCom. The local runtime
runs a child process; a Docker runtime slots in beside it with the same command line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

STAGES = ("generate", "convert", "serve", "load", "collect", "stop", "analyze")
PLATFORM_STAGES = ("serve", "load", "collect", "stop")
RUNTIMES = ("local",)
RESULT_PREFIX = "RESULT "
SPEC_ENV = "INFERBENCH_SPEC_JSON"  # same name as inferbench.stages.common.SPEC_ENV


class StageFailed(AirflowException):
    """A stage process exited non-zero; carries the tail of its output."""

    def __init__(self, stage: str, returncode: int, tail: list[str]) -> None:
        super().__init__(f"stage {stage!r} exited with code {returncode}; last output:\n"
                         + "\n".join(tail))
        self.returncode = returncode
        self.tail = tail


class StageOperator(BaseOperator):
    """Run one benchmark stage for the DAG run's spec (the DAG params).

    :param stage: one of generate, convert, serve, load, collect, stop, analyze.
    :param platform: the serving platform, for serve/load/collect/stop; the task is skipped
        when the run's spec does not list it.
    :param runtime: where the stage runs: 'local' (a child process on the worker).
    """

    template_fields = ("stage", "platform")
    ui_color = "#e8f4fd"

    def __init__(self, *, stage: str, platform: str | None = None, runtime: str = "local",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if stage not in STAGES:
            raise ValueError(f"Invalid `stage` value {stage!r}, expected one of "
                             f"{', '.join(map(repr, STAGES))}.")
        if (stage in PLATFORM_STAGES) != (platform is not None):
            need = "needs" if stage in PLATFORM_STAGES else "takes no"
            raise ValueError(f"stage {stage!r} {need} `platform`")
        if runtime not in RUNTIMES:
            raise ValueError(f"Invalid `runtime` value {runtime!r}, expected one of "
                             f"{', '.join(map(repr, RUNTIMES))}.")
        self.stage, self.platform, self.runtime = stage, platform, runtime
        self._process: subprocess.Popen | None = None

    def command(self, run_id: str) -> list[str]:
        argv = [sys.executable, "-m", "inferbench", "stage", self.stage, "--run", run_id]
        return argv + (["--platform", self.platform] if self.platform else [])

    def execute(self, context: Any) -> Any:
        params = context["params"]
        spec = params.dump() if hasattr(params, "dump") else dict(params)
        if self.platform and self.platform not in spec.get("platforms", []):
            raise AirflowSkipException(f"platform {self.platform!r} is not in this run's spec")
        env = {**os.environ, SPEC_ENV: json.dumps(spec)}
        return self._run_local(self.command(context["run_id"]), env)

    def _run_local(self, argv: list[str], env: dict[str, str]) -> Any:
        self.log.info("running %s", " ".join(argv))
        self._process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True, bufsize=1,
                                         start_new_session=True)
        result, tail = None, []
        assert self._process.stdout is not None
        for line in self._process.stdout:
            line = line.rstrip("\n")
            if line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX):])
                continue
            self.log.info("%s", line)
            tail = (tail + [line])[-30:]
        returncode = self._process.wait()
        if returncode != 0:
            raise StageFailed(self.stage, returncode, tail)
        return result

    def on_kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
