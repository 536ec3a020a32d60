"""Containers a killed attempt left running (docker runtime), removed by the next stage.

When the process that runs a stage container (the Airflow task) is killed outright, nothing
stops that container or the serving containers its stage started, and the stage's Docker
proxy died with the process, so the stage cannot even stop its servers itself. The runner
of the next stage container cleans up instead:

- every stage container has a name unique to its home, run, stage, platform and
  configuration: a leftover of the same stage (an earlier attempt) is found by that name
  and removed before the new one starts;
- a run's stages that control servers run one at a time (the DAG runs one measure at a
  time, then the teardown), so when one starts, any other such stage container of the run
  is a killed attempt's, and so is (before measure or serve) any serving container of the
  run: both are removed, so that a measurement never shares the machine with them;
- after the stop stage (the teardown), no serving container of its platform (and
  configuration) is left, even one whose serve was killed before it recorded the container.

Each removal is logged with the container's last lines, the only record of what it did
after its task process died.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from inferbench import containers
from inferbench.pipeline import SERVER_STAGES, Stage

LOG_TAIL = 20
_SERVER_STAGE_ROLES = frozenset(str(stage) for stage in SERVER_STAGES)
_STARTS_SERVERS = (Stage.MEASURE, Stage.SERVE)


def stage_container_name(home: Path, run_id: str, stage: str, platform: str | None,
                         config: int | None) -> str:
    """The Docker name of one stage's container: readable, and the digest keeps runs of
    other homes (and run ids only Docker-unsafe characters tell apart) apart."""
    identity = "\0".join([str(home), run_id, stage, platform or "", str(config)])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    parts = [stage, platform, None if config is None else str(config)]
    return "-".join(["inferbench", *(p for p in parts if p is not None), digest])


def remove_before_stage(client: Any, *, name: str, run_id: str, stage: str, log: Any) -> None:
    """Remove what killed attempts left that the stage `stage` (container `name`) of run
    `run_id` must not run beside."""
    import docker.errors

    try:
        earlier = client.containers.get(name)
    except docker.errors.NotFound:
        earlier = None
    if earlier is not None and earlier.labels.get(containers.LABEL_RUN) == run_id:
        _remove(earlier, "an earlier attempt of this stage", log)
    if stage not in _SERVER_STAGE_ROLES:
        return
    for container in containers.run_containers(client, run_id):
        role = container.labels.get(containers.LABEL_ROLE, "")
        if role in _SERVER_STAGE_ROLES:
            _remove(container, "a server stage of this run that an earlier task left", log)
        elif role.startswith(containers.SERVER_ROLE_PREFIX) and stage in _STARTS_SERVERS:
            _remove(container, "a server of this run that an earlier task left", log)


def remove_servers(client: Any, *, run_id: str, platform: str, config: int | None,
                   log: Any) -> None:
    """After the teardown: remove the serving containers of `platform` (configuration
    `config`, or all) of run `run_id` that the stop stage did not find."""
    for container in containers.run_containers(client, run_id):
        if serves(container.labels.get(containers.LABEL_ROLE, ""), platform, config):
            _remove(container, "a server the stop stage did not find (its serve task was "
                    "killed before recording it)", log)


def serves(role: str, platform: str, config: int | None) -> bool:
    """Whether a container of role `role` serves `platform` (configuration `config`, or
    any)."""
    if config is None:
        return role.startswith(f"{containers.SERVER_ROLE_PREFIX}{platform}:")
    return role == containers.server_role(platform, config)


def _remove(container: Any, why: str, log: Any) -> None:
    import docker.errors

    try:
        tail = container.logs(tail=LOG_TAIL).decode(errors="replace").rstrip()
    except docker.errors.APIError:
        tail = ""
    log.warning("removing container %s (%s, %s): %s; its last lines:\n%s", container.name,
                container.labels.get(containers.LABEL_ROLE), container.status, why,
                tail or "(none)")
    containers.remove(container)
