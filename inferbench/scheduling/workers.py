"""Workers and their hardware class.

A worker is an Airflow pool of one slot (and, in the cluster, the Celery queue of the same
name) called `<class>-worker-<n>`, the class being where it can run a model: `cpu` or
`gpu` (the platforms' DeviceKind). The name carries the class so that the job scheduler
can route a run from the pools alone, with nothing else to keep in step:
- a run whose spec asks for a GPU (`hardware` "gpu" or "gpu:<index>") goes only to a GPU
  worker, and is refused at trigger when there is none;
- a CPU run goes to the CPU workers, or, where the cluster has none, to the GPU workers
  (a GPU worker has CPUs; its results are labelled by the CPU the model ran on).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from inferbench.errors import InferBenchError
from inferbench.platforms import DeviceKind, device_kind

POOL_SUFFIX = "-worker-"
POOL_NAME = re.compile(rf"^({'|'.join(k.value for k in DeviceKind)}){POOL_SUFFIX}(\d+)$")
WORKER_CLASS_ENV = "INFERBENCH_WORKER_CLASS"
# How many runs of a scheduled DAG may be active at once: far more than there are workers,
# because the worker pools, not the run count, limit what runs at once. A run held back by
# max_active_runs has no task instances yet and waits in Airflow's own first-come queue of
# runs, where no scheduling policy can order or place it; an active run waits in its
# worker's pool, where the policy's priority weights decide who goes next.
MAX_ACTIVE_RUNS = 1024
# How many waiting runs and task instances the scheduler examines per loop: all of those
# that wait side by side in the workers' pools, so that the policy's priorities, not the
# order of a partial scan, decide who goes next (the embedded default and the compose
# cluster both set it).
SCHEDULER_LOOP_SIZE = 256
SCHEDULER_LOOP_ENV = {"AIRFLOW__SCHEDULER__MAX_DAGRUNS_PER_LOOP_TO_SCHEDULE":
                      str(SCHEDULER_LOOP_SIZE),
                      "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": str(SCHEDULER_LOOP_SIZE)}
# The pool of runs waiting for their worker: no slots, so nothing in it runs. A run placed
# on a worker that another job holds waits here, whole, until that job's run ends and the
# policy hands the worker to it (operators/scheduling.py, "dispatch"). Waiting in the
# worker's own pool instead would let a waiting job's first task take the worker between
# two tasks of the job holding it.
HOLD_POOL = "inferbench-waiting"
HOLD_POOL_DESCRIPTION = ("Benchmark runs waiting for their worker (no slots: the job "
                         "scheduler moves a run to its worker's pool when the worker is free)")


def worker_pool(hardware: DeviceKind | str, index: int) -> str:
    return f"{DeviceKind(hardware).value}{POOL_SUFFIX}{index}"


def parse_worker_pool(name: str) -> tuple[DeviceKind, int] | None:
    """(class, index) of a worker pool's name; None for any other pool."""
    match = POOL_NAME.fullmatch(name)
    return (DeviceKind(match[1]), int(match[2])) if match else None


def worker_names(n: int, hardware: DeviceKind | str = DeviceKind.CPU) -> list[str]:
    """Pool names of n workers of one class: <class>-worker-0 .. <class>-worker-(n-1)."""
    if n < 1:
        raise InferBenchError(f"number of workers {n!r} must be >= 1")
    return [worker_pool(hardware, i) for i in range(n)]


def sort_workers(names: Iterable[str]) -> list[str]:
    """The worker pools among `names`, CPU workers first, each class by index."""
    parsed = [(p, n) for n in names if (p := parse_worker_pool(n))]
    order = list(DeviceKind)
    return [n for p, n in sorted(parsed, key=lambda pn: (order.index(pn[0][0]), pn[0][1]))]


def job_class(hardware: str) -> DeviceKind:
    """The worker class a run needs: its spec's `hardware` device kind."""
    return device_kind(hardware)


def eligible_workers(workers: Sequence[str], hardware: str) -> list[str]:
    """The workers a run with spec `hardware` may go to (see the module's doc); empty when
    none can take it."""
    by_class = {k: [w for w in workers if (p := parse_worker_pool(w)) and p[0] is k]
                for k in DeviceKind}
    if job_class(hardware) is DeviceKind.GPU:
        return by_class[DeviceKind.GPU]
    return by_class[DeviceKind.CPU] or by_class[DeviceKind.GPU]


def no_worker_reason(hardware: str, workers: Sequence[str]) -> str:
    """Why a run with spec `hardware` has no worker, naming the fix."""
    return (f"hardware {hardware!r} needs a {job_class(hardware).value.upper()} worker, and "
            f"none exists (worker pools: {list(workers) or 'none'}); fix: add a "
            f"{job_class(hardware).value}{POOL_SUFFIX}<n> worker (docker-compose.yaml's "
            "worker block; `INFERBENCH_WORKER_CLASS=gpu inferbench up` on a GPU host), or set "
            'hardware to "cpu"')


def host_class(env: dict[str, str] | None = None) -> DeviceKind:
    """The class of this host's workers: INFERBENCH_WORKER_CLASS when set, else `gpu` when
    NVML sees a GPU, else `cpu`."""
    import os

    value = (env if env is not None else os.environ).get(WORKER_CLASS_ENV, "").strip()
    if value:
        try:
            return DeviceKind(value)
        except ValueError:
            raise InferBenchError(
                f"{WORKER_CLASS_ENV} {value!r} is not a worker class; fix: set one of "
                f"{[k.value for k in DeviceKind]!r} or unset it") from None
    from inferbench.metrics.provenance import nvml_gpus

    return DeviceKind.GPU if nvml_gpus() else DeviceKind.CPU
